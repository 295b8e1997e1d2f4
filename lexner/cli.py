"""The ``lexner`` command: train, evaluate, export, tag, serve."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

log = logging.getLogger("lexner")


class CommandError(Exception):
    """A refused command (nothing was changed): ``lexner: error: MESSAGE`` on stderr, exit status 2."""


def _provenance() -> dict:
    """lexner's version and, when it runs from a git checkout, the commit (recorded in model cards)."""
    import subprocess

    from . import __version__

    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=5).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=5).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, False
    return {"version": __version__, "commit": commit and commit + ("+dirty" if dirty else "")}


def _resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda was asked for, but torch sees no CUDA device")
    return name


def _load_tasks(args) -> list:
    """The corpora to train on: one per ``--dataset`` (named by it) and per ``--task NAME:TRAIN:DEV[:TEST]``, or
    the one of ``--train``/``--dev``/``--test``.  Several make a multi-task model (one head each, the first the
    default); one trains a one-head model (``Task.name`` None)."""
    from .data import DATASETS, load_dataset, read_file
    from .features import LABEL_SET_NAME
    from .train import Task

    root = args.data_root
    tasks = []
    for name in args.dataset or []:
        has_test = "test" in DATASETS[name]  # CLUENER's test split is not public
        tasks.append(Task(name, load_dataset(name, "train", root), load_dataset(name, "dev", root),
                          load_dataset(name, "test", root) if has_test else None))
    for spec in args.task or []:
        parts = spec.split(":")
        if len(parts) not in (3, 4) or not all(parts):
            raise CommandError(f"--task {spec!r}: expected NAME:TRAIN:DEV or NAME:TRAIN:DEV:TEST")
        name, files = parts[0], [Path(p) for p in parts[1:]]
        tasks.append(Task(name, *(read_file(f, args.format) for f in files)))
    if args.train or args.dev:
        if not (args.train and args.dev):
            raise CommandError("--train and --dev go together")
        if tasks:
            raise CommandError("--train/--dev train a one-head model; with --dataset or --task, give every corpus "
                               "as --task NAME:TRAIN:DEV[:TEST]")
        return [Task(None, read_file(args.train, args.format), read_file(args.dev, args.format),
                     read_file(args.test, args.format) if args.test else None)]
    if not tasks:
        raise SystemExit("error: give --dataset NAME, or --train FILE and --dev FILE")
    names = [t.name for t in tasks]
    if len(set(names)) != len(names) or not all(LABEL_SET_NAME.fullmatch(n) for n in names):
        raise CommandError(f"task names must be distinct and made of letters, digits, _ or -: {names}")
    if len(tasks) == 1:
        tasks[0].name = None
    return tasks


def _train_config(**settings):
    from .train import TrainConfig

    try:
        return TrainConfig(**settings)
    except ValueError as err:
        option = str(err).split(" ", 1)[0].replace("_", "-")
        raise CommandError(f"--{option}: {err}") from None


def cmd_train(args) -> int:
    import torch

    from .api import build_tagger, default_embeddings
    from .data import entity_types, report_unseen_labels
    from . import distributed
    from .train import TrainConfig, Trainer, TrainingError, seed_everything, selection_scores

    if not distributed.world().main:  # under torchrun: one process speaks
        logging.getLogger().setLevel(logging.WARNING)

    if args.threads < 0:
        raise CommandError(f"--threads must be ≥ 0 (0: torch's default), got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    config = _train_config(device=_resolve_device(args.device),
                           **{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if f.metadata})
    from .models import model_class
    from .models.base import parse_config_values

    try:
        model_config = parse_config_values(model_class(args.model), dict(_key_value(kv, "--set") for kv in args.set))
    except ValueError as err:
        raise CommandError(f"--set: {err}") from None  # before any data is read
    tasks = _load_tasks(args)
    for task in tasks:
        what = f" ({task.name})" if task.name else ""
        report_unseen_labels(task.train, task.dev, "dev" + what)
        if task.test is not None:
            report_unseen_labels(task.train, task.test, "test" + what)
        log.info("train %d, dev %d, test %s sentences%s; entity types %s", len(task.train), len(task.dev),
                 len(task.test) if task.test is not None else "-", what, entity_types(task.train))
    embeddings = default_embeddings(args.data_root)
    for name, path in (("chars", args.char_vectors), ("bigrams", args.bigram_vectors), ("words", args.word_vectors)):
        if path is not None:
            embeddings[name] = None if path == "none" else path
    seed_everything(args.seed)
    label_sets = {t.name: entity_types(t.train) for t in tasks} if len(tasks) > 1 else None
    try:
        tagger = build_tagger(args.model, [s for t in tasks for s in t.train], model_config, embeddings,
                              seed=args.seed, lexicon=args.lexicon, bigram_min_count=args.bigram_min_count,
                              label_sets=label_sets)
    except ValueError as err:  # e.g. a setting out of range, hidden odd
        raise CommandError(str(err)) from None
    trainer = Trainer(tagger, config, args.out, progress=not args.no_progress)
    try:
        resumed = args.resume and trainer.resume()
    except TrainingError as err:
        raise CommandError(str(err)) from None
    if args.resume and not resumed:
        log.info("no checkpoint in %s; starting from scratch", args.out)
    train_data = "+".join(t.name for t in tasks) if len(tasks) > 1 else (args.dataset or [str(args.train)])[0]
    card = {"train_data": train_data, "command": " ".join(sys.argv),
            "embeddings": {k: str(v) if v else None for k, v in embeddings.items()},
            "lexicon": str(args.lexicon or embeddings.get("words")) if tagger.uses_lexicon else None,
            "lexner": _provenance(), "threads": torch.get_num_threads(), "device": config.device}
    teachers, unlabelled = _teachers_and_unlabelled(args)
    if teachers:
        card["teachers"] = [str(t) for t in args.teacher]
    try:
        results = trainer.fit_tasks(tasks, model_card=card, teachers=teachers, unlabelled=unlabelled)
    except TrainingError as err:
        raise CommandError(str(err)) from None
    except OSError as err:  # e.g. the disk is full: the last good model and checkpoint are intact
        raise CommandError(f"writing into {args.out} failed: {err}; the last finished epoch's model and "
                           "checkpoint are intact") from None
    finally:
        distributed.shutdown()
    if trainer.world.main:
        summary = {k: selection_scores(results[k]) for k in ("dev", "test") if k in results}
        print(json.dumps({"model": str(Path(args.out) / "model"), "best_epoch": results["best_epoch"],
                          **summary}, indent=2))
    return 0


def _teachers_and_unlabelled(args) -> tuple[list, list[str]]:
    """``lexner distill``: the teacher models and the unlabelled texts (none for ``lexner train``)."""
    from .api import load
    from .data import load_dataset
    from .fileio import iter_lines

    teachers = [load(path, device=_resolve_device(args.device)) for path in getattr(args, "teacher", None) or []]
    unlabelled = [line.strip() for path in getattr(args, "unlabelled", []) for _, line in iter_lines(path)]
    for name in getattr(args, "unlabelled_dataset", []):
        unlabelled += [s.text for s in load_dataset(name, "train", args.data_root)]
    unlabelled = [t for t in unlabelled if t]
    if teachers:
        log.info("%d teacher(s); %d unlabelled texts", len(teachers), len(unlabelled))
    return teachers, unlabelled


def cmd_evaluate(args) -> int:
    from .data import load_dataset, read_file
    from .evaluate import evaluate

    tagger = _load_for_tagging(args, _extra_words(args))
    if args.file:
        sentences = read_file(args.file, args.format)
    elif args.dataset:
        sentences = load_dataset(args.dataset, args.split, args.data_root)
    else:
        raise SystemExit("error: give --dataset NAME [--split SPLIT] or --file PATH")
    scores = evaluate(tagger, sentences, labels=args.labels)
    print(json.dumps(scores, indent=2, ensure_ascii=False))
    return 0


def _extra_words(args) -> list[str]:
    """The words of every ``--lexicon-add`` file (first column of each non-empty line)."""
    from .fileio import iter_lines

    return [line.split()[0] for path in args.lexicon_add or [] for _, line in iter_lines(path) if line.strip()]


def _key_value(text: str, option: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not (sep and key):
        raise SystemExit(f"lexner: error: {option} expects KEY=VALUE, got {text!r}")
    return key, value


def _tag_model_and_texts(args) -> None:
    """``lexner tag`` takes the model with ``--model``; without it, a first argument that is a model directory
    (the older form ``lexner tag DIR TEXT...``) is the model, and otherwise the bundled default model tags."""
    from .api import DEFAULT_MODEL
    from .models.base import CONFIG_FILE

    if args.model_dir is None:
        first = Path(args.text[0]) if args.text else None
        if first is not None and (first / CONFIG_FILE).is_file():
            args.model_dir, args.text = first, args.text[1:]
        else:
            args.model_dir = DEFAULT_MODEL


def _dictionary(args):
    from .dictionary import Dictionary

    return Dictionary.read(args.dictionary) if getattr(args, "dictionary", None) else None


def _load_for_tagging(args, extra_words: list[str]):
    from .api import load
    from .fileio import ModelFormatError

    try:
        tagger = load(args.model_dir, device=_resolve_device(args.device), extra_words=extra_words,
                      dictionary=_dictionary(args))
        tagger.featurizer.label_set(args.labels)  # an unknown --labels fails before any text is read
        return tagger
    except ModelFormatError:
        raise  # reported by main()
    except ValueError as err:  # e.g. words for a model without a lexicon, a dictionary type it does not know
        raise CommandError(str(err)) from None


_WORKER_TAGGER = None


def _worker_init(model_dir: str, extra_words: list[str], dictionary: list[tuple[str, str]] | None) -> None:
    import torch

    from .api import load

    global _WORKER_TAGGER
    torch.set_num_threads(1)  # one core per worker process
    _WORKER_TAGGER = load(model_dir, extra_words=extra_words, dictionary=dictionary)


def _worker_tag(lines: list[str], batch_size: int, fmt: str, labels: str | None) -> str:
    from .output import render

    tagged = _WORKER_TAGGER.tag_batch(lines, batch_size, labels=labels)
    return "".join(render(t, es, fmt) for t, es in zip(lines, tagged))


def _chunks(lines, size: int):
    """Lists of ``size`` texts from ``(number, text)`` pairs.  If reading fails, the texts read before the
    failure come out first (as a last, shorter chunk), then the error."""
    chunk: list[str] = []
    try:
        for _, line in lines:
            chunk.append(line)
            if len(chunk) >= size:
                yield chunk
                chunk = []
    except Exception:
        if chunk:
            yield chunk
        raise
    if chunk:
        yield chunk


def cmd_tag(args) -> int:
    from .fileio import STDIN, atomic_file
    from .output import render

    _tag_model_and_texts(args)
    extra = _extra_words(args)
    tagger = _load_for_tagging(args, extra)
    if args.input is None:
        if not args.text:
            raise CommandError("give text to tag, or --input FILE (- for standard input)")
        with _page(sys.stdout, args.format):
            for text, ents in zip(args.text, tagger.tag_batch(args.text, args.batch_size, labels=args.labels)):
                sys.stdout.write(render(text, ents, args.format))
        return 0
    workers = args.workers if args.workers > 0 else (os.cpu_count() or 1)
    if tagger.device.type == "cuda":
        workers = 1  # one process feeds the GPU
    if args.output is None:
        with _page(sys.stdout, args.format):
            _tag_file(args, tagger, workers, extra, sys.stdout)
        return 0
    if str(args.input) != STDIN:
        _refuse_same_file(args.input, args.output)
    partial = args.output.with_name(args.output.name + ".partial")
    try:
        with atomic_file(args.output, partial=partial) as out, _page(out, args.format):
            _tag_file(args, tagger, workers, extra, out)  # an existing output survives a failed run
    except BaseException:
        if partial.exists():
            log.error("%s was left as it was; what was tagged before the failure is in %s", args.output, partial)
        raise
    return 0


@contextmanager
def _page(out, fmt: str):
    """``--format html``: the texts' blocks inside one page (its head first, its end also after a failure, so
    what was tagged can be looked at)."""
    from .output import HTML_HEAD, HTML_TAIL

    if fmt == "html":
        out.write(HTML_HEAD)
    try:
        yield
    finally:
        if fmt == "html":
            out.write(HTML_TAIL)


def cmd_serve(args) -> int:
    try:
        import uvicorn

        from .serve import create_app
    except ImportError as err:
        raise CommandError(f"lexner serve needs the serve extra ({err}): pip install 'lexner[serve]'") from None
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    tagger = _load_for_tagging(args, _extra_words(args))
    app = create_app(tagger, max_chars=args.max_chars, max_texts=args.max_texts, max_batch=args.batch_size,
                     batch_wait_ms=args.batch_wait_ms)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info" if args.verbose else "warning")
    return 0


def _refuse_same_file(source: Path, target: Path) -> None:
    if target.exists() and source.exists() and os.path.samefile(source, target):
        raise CommandError(f"--output {target} is the input file; writing it would destroy the input")


def _tag_file(args, tagger, workers: int, extra: list[str], out) -> None:
    """Tag ``args.input`` line by line into the open text stream ``out``, in input order.  If the input
    cannot be read to its end, every line before the failure is tagged and written before the error rises."""
    from tqdm.auto import tqdm

    from .fileio import iter_lines
    from .output import render

    bar = tqdm(unit="line", disable=args.no_progress or out is sys.stdout)
    skipped: list[int] = []
    lines = iter_lines(args.input, errors=args.errors, newline="\n", skipped=skipped)
    chunks = _chunks(lines, args.batch_size * 16)  # bounded memory: a few chunks in flight at most
    try:
        if workers == 1:
            for texts in chunks:
                out.write("".join(render(t, es, args.format)
                                  for t, es in zip(texts, tagger.tag_batch(texts, args.batch_size,
                                                                           labels=args.labels))))
                bar.update(len(texts))
        else:
            from collections import deque
            from concurrent.futures import ProcessPoolExecutor

            import multiprocessing

            spawn = multiprocessing.get_context("spawn")  # fork after torch has started threads can hang
            with ProcessPoolExecutor(workers, mp_context=spawn, initializer=_worker_init,
                                     initargs=(str(args.model_dir), extra,
                                               tagger.dictionary.items() if tagger.dictionary else None)) as pool:
                pending: deque = deque()

                def write_oldest() -> None:
                    n, future = pending.popleft()
                    out.write(future.result())
                    bar.update(n)

                try:
                    for texts in chunks:
                        pending.append((len(texts), pool.submit(_worker_tag, texts, args.batch_size, args.format,
                                                                args.labels)))
                        while len(pending) > 2 * workers:  # write in input order as results come
                            write_oldest()
                finally:  # also when reading failed: what was read is written first
                    while pending:
                        write_oldest()
    finally:
        bar.close()
        if skipped:
            shown = ", ".join(map(str, skipped[:20])) + (", ..." if len(skipped) > 20 else "")
            log.warning("%s: skipped %d line(s) that are not valid UTF-8 (--errors skip): line %s",
                        args.input, len(skipped), shown)


def cmd_export(args) -> int:
    from .api import load
    from .fileio import atomic_directory

    target = _export_target(args.out_dir, args.force)
    tagger = load(args.model_dir, extra_words=_extra_words(args))
    renames = dict(_key_value(kv, "--rename") for kv in args.rename)
    if renames:
        tagger.featurizer.rename_types(renames)
    extra = {k: v for k, v in tagger.metadata.items()
             if k not in ("format_version", "model", "entity_types", "label_sets")}
    if isinstance(extra.get("card"), dict):
        extra["card"] = _portable_card(extra["card"], renames)
    with atomic_directory(target) as tmp:
        tagger.save(tmp, extra=extra, half=args.half)
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    print(json.dumps({"model": str(args.out_dir), "megabytes": round(size / 2**20, 2)}))
    return 0


def _portable_card(card: dict, renames: dict[str, str]) -> dict:
    """The model card of an exported copy: per-type scores under the renamed types, and no path of the machine
    it was trained on (the command starts with ``lexner``; data files are named relative to the data root)."""
    def rename_types(scores):
        if isinstance(scores, dict) and isinstance(scores.get("per_type"), dict):
            scores = {**scores, "per_type": {renames.get(k, k): v for k, v in scores["per_type"].items()}}
        if isinstance(scores, dict) and isinstance(scores.get("tasks"), dict):  # a multi-task model's
            scores = {**scores, "tasks": {k: rename_types(v) for k, v in scores["tasks"].items()}}
        return scores

    def data_relative(path):
        if isinstance(path, str) and "embeddings/" in path:
            return "$LEXNER_DATA/" + path[path.index("embeddings/"):]
        return path

    card = dict(card)
    for split in ("dev", "test"):
        if split in card:
            card[split] = rename_types(card[split])
    if isinstance(card.get("command"), str):
        words = card["command"].split()
        if words and (words[0].endswith("__main__.py") or words[0].endswith("/lexner")):
            words[0] = "lexner"
        words = [words[0]] + [Path(w).name if w.startswith("/") else w for w in words[1:]]
        card["command"] = " ".join(words)
    if isinstance(card.get("embeddings"), dict):
        card["embeddings"] = {k: data_relative(v) for k, v in card["embeddings"].items()}
    card["lexicon"] = data_relative(card.get("lexicon"))
    if isinstance(card.get("teachers"), list):  # the teachers' folders, without the machine's path above them
        card["teachers"] = [str(Path(*Path(t).parts[-2:])) if isinstance(t, str) and t.startswith("/") else t
                            for t in card["teachers"]]
    return card


def _export_target(out_dir: Path, force: bool) -> Path:
    """Where ``export`` may write: a new or empty directory, or — with ``force`` — one that holds nothing but a
    lexner model.  Anything else is refused before any work, so no user file is ever deleted."""
    from .models.base import is_model_directory

    target = out_dir.resolve()
    if not target.exists():
        return target
    if not target.is_dir():
        raise CommandError(f"{out_dir} exists and is not a directory")
    if not any(target.iterdir()):
        return target
    if not is_model_directory(target):
        raise CommandError(f"{out_dir} is not empty and is not a lexner model directory; nothing was changed "
                           "(export into a new or empty directory)")
    if not force:
        raise CommandError(f"{out_dir} holds a lexner model; give --force to replace it")
    return target


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="lexner", description="Chinese NER with lexicon enhancement.")
    parser.add_argument("--version", action="version", version=f"lexner {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def data_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-root", default=None,
                       help="folder with msra/, weibo/, embeddings/ (default: $LEXNER_DATA or data/)")
        p.add_argument("--format", default="auto", choices=["auto", *DATA_FORMATS],
                       help="format of --train/--dev/--test/--file (default: detect)")
        p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, or auto (cuda when present)")

    from .data import DATASETS, FORMATS as DATA_FORMATS
    from .fileio import UTF8_ERRORS
    from .models import MODELS
    from .output import FORMATS as OUTPUT_FORMATS
    from .train import TrainConfig

    def train_args(t: argparse.ArgumentParser) -> None:
        """The options of train and distill."""
        t.add_argument("--model", default="bilstm_crf", choices=sorted(MODELS), help="the tagger to train")
        t.add_argument("--dataset", choices=sorted(DATASETS), action="append",
                       help="a named dataset under the data root; repeat it for a multi-task model with one head per "
                            "dataset, the first being the default (e.g. --dataset msra --dataset weibo)")
        t.add_argument("--task", action="append", metavar="NAME:TRAIN:DEV[:TEST]",
                       help="a corpus of a multi-task model from files, its head named NAME; repeatable")
        t.add_argument("--train", type=Path, help="training file (instead of --dataset)")
        t.add_argument("--dev", type=Path, help="dev file for model selection")
        t.add_argument("--test", type=Path, help="test file, scored once with the best model")
        t.add_argument("--out", type=Path, required=True, help="output folder (model/, checkpoint/, log.jsonl)")
        for f in dataclasses.fields(TrainConfig):  # one option per setting, help and default from TrainConfig
            if f.metadata:
                options = {k: v for k, v in f.metadata.items() if k != "help"}
                t.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default,
                               help=f.metadata["help"], **options)
        t.add_argument("--bigram-min-count", type=int, default=1,
                       help="leave out train's bigrams seen fewer times (unless among the most frequent pretrained "
                            "ones): a smaller model")
        t.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
        t.add_argument("--char-vectors", help="word2vec file for characters, or 'none' (None: from the data root)")
        t.add_argument("--bigram-vectors", help="word2vec file for bigrams, or 'none' (None: from the data root)")
        t.add_argument("--word-vectors", help="word2vec file for lexicon words, or 'none' (None: from the data root)")
        t.add_argument("--lexicon", type=Path,
                       help="lexicon for lattice models: word list or word2vec file (None: the word vectors' "
                            "vocabulary)")
        t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="model config field, e.g. --set hidden=300 (repeatable)")
        t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
        t.add_argument("--no-progress", action="store_true", help="no progress bars")
        data_args(t)

    t = sub.add_parser("train", help="train a tagger", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    train_args(t)
    t.set_defaults(func=cmd_train)

    d = sub.add_parser("distill", help="train a student on gold tags plus the soft targets of trained teachers",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d.add_argument("--teacher", action="append", type=Path, required=True, metavar="DIR",
                   help="a trained model whose outputs the student learns; repeat it for an ensemble (averaged)")
    d.add_argument("--unlabelled", action="append", type=Path, default=[], metavar="FILE",
                   help="texts without labels (one per line) that add soft targets only; repeatable")
    d.add_argument("--unlabelled-dataset", action="append", choices=sorted(DATASETS), default=[], metavar="NAME",
                   help="a named dataset's training texts with their labels dropped (e.g. msra); repeatable")
    train_args(d)
    d.set_defaults(func=cmd_train, distill="kl")

    e = sub.add_parser("evaluate", help="score a saved model")
    e.add_argument("model_dir", type=Path)
    e.add_argument("--dataset", choices=sorted(DATASETS))
    e.add_argument("--split", default="test", choices=["train", "dev", "test"])
    e.add_argument("--file", type=Path, help="a data file in any supported format")
    e.add_argument("--lexicon-add", type=Path, action="append", metavar="FILE",
                   help="domain words (one per line) added to a lattice model's lexicon; repeatable")
    e.add_argument("--dictionary", type=Path, metavar="FILE",
                   help="WORD<TAB>TYPE lines: every occurrence is forced to be an entity of that type")
    e.add_argument("--labels", metavar="NAME",
                   help="the label set (head) of a multi-task model to tag with (default: its first, e.g. PER/LOC/ORG)")
    data_args(e)
    e.set_defaults(func=cmd_evaluate)

    x = sub.add_parser("export", help="copy a saved model, optionally compact (float16 weights)")
    x.add_argument("model_dir", type=Path)
    x.add_argument("out_dir", type=Path)
    x.add_argument("--half", action="store_true", help="store weights as float16 (about half the size)")
    x.add_argument("--force", action="store_true",
                   help="replace OUT_DIR if it holds a lexner model (a directory with anything else is never replaced)")
    x.add_argument("--rename", action="append", default=[], metavar="OLD=NEW",
                   help="rename an entity type in the copy (e.g. NR=PER); repeatable")
    x.add_argument("--lexicon-add", type=Path, action="append", metavar="FILE",
                   help="domain words added to a lattice model's lexicon before exporting; repeatable")
    x.set_defaults(func=cmd_export)

    g = sub.add_parser("tag", help="tag text (with the bundled MSRA model unless --model is given)")
    g.add_argument("text", nargs="*", help="texts to tag (one record each on stdout, in --format); "
                                           "a model directory as the first argument is taken as --model")
    g.add_argument("--model", "-m", dest="model_dir", type=Path, default=None,
                   help="a saved model directory (default: the bundled MSRA model, PER/LOC/ORG)")
    g.add_argument("--input", type=Path, help="a UTF-8 file, one text per line (only LF ends a line); - reads stdin")
    g.add_argument("--errors", default="strict", choices=UTF8_ERRORS,
                   help="a line of --input that is not valid UTF-8: strict stops there (naming file:line, after "
                        "writing every line before it), skip leaves it out (reported), replace puts U+FFFD for bad bytes")
    g.add_argument("--output", type=Path, help="output file (default: stdout)")
    g.add_argument("--format", default="jsonl", choices=OUTPUT_FORMATS,
                   help="jsonl: one JSON object per input line; conll: char<TAB>tag lines; text: [entity|LABEL] "
                        "inline; html: one page with entities highlighted by type")
    g.add_argument("--lexicon-add", type=Path, action="append", metavar="FILE",
                   help="domain words (one per line) added to a lattice model's lexicon; repeatable")
    g.add_argument("--dictionary", type=Path, metavar="FILE",
                   help="WORD<TAB>TYPE lines: every occurrence is forced to be an entity of that type "
                        "(constrained decoding; leftmost, then longest match wins)")
    g.add_argument("--labels", metavar="NAME",
                   help="the label set (head) of a multi-task model to tag with (default: its first, e.g. PER/LOC/ORG)")
    g.add_argument("--batch-size", type=int, default=64)
    g.add_argument("--workers", type=int, default=1,
                   help="with --input: tagging processes, one core each (0: one per core); order is kept")
    g.add_argument("--no-progress", action="store_true")
    g.add_argument("--device", default="cpu")
    g.set_defaults(func=cmd_tag)

    v = sub.add_parser("serve", help="serve a model over HTTP (POST /tag, GET /health, GET /model)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    v.add_argument("--model", "-m", dest="model_dir", type=Path, default=None,
                   help="a saved model directory (default: the bundled model)")
    v.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    v.add_argument("--port", type=int, default=8000)
    v.add_argument("--max-chars", type=int, default=10_000, help="longest text accepted (longer: 413)")
    v.add_argument("--max-texts", type=int, default=256, help="most texts in one request (more: 413)")
    v.add_argument("--batch-size", type=int, default=64, help="most texts tagged together (micro-batching)")
    v.add_argument("--batch-wait-ms", type=float, default=2.0,
                   help="how long a request waits for others to share its batch")
    v.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    v.add_argument("--lexicon-add", type=Path, action="append", metavar="FILE",
                   help="domain words added to a lattice model's lexicon; repeatable")
    v.add_argument("--dictionary", type=Path, metavar="FILE",
                   help="WORD<TAB>TYPE lines: every occurrence is forced to be an entity of that type")
    v.add_argument("--labels", default=None, help=argparse.SUPPRESS)  # requests choose their head
    v.add_argument("--device", default="cpu")
    v.set_defaults(func=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    from .fileio import DataFormatError
    from .models import ModelFormatError

    try:
        return args.func(args)
    except (DataFormatError, ModelFormatError, FileNotFoundError, IsADirectoryError, CommandError) as err:
        print(f"lexner: error: {err}", file=sys.stderr)
        return 2
