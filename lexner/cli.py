"""The ``lexner`` command: train, distill, evaluate, export, info, tag, serve."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import json
import logging
import os
import signal
import stat
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Sequence

log = logging.getLogger("lexner")


class CommandError(Exception):
    """A refused command (nothing was changed): ``lexner: error: MESSAGE`` on stderr, exit status 2."""


def _resolve_device(name: str) -> str:
    from .api import resolve_device

    try:
        return resolve_device(name)
    except ValueError as err:
        raise CommandError(f"--{err}") from None


def _task_spec(spec: str, windows: bool = sys.platform == "win32") -> tuple[str, list[Path | None]]:
    """``--task NAME:TRAIN[:DEV[:TEST]]`` as its name and three files (None where not given; DEV may be empty
    before TEST).  On Windows a drive's colon (``C:\\data\\train.bio``, ``C:/...``) belongs to its path."""
    parts = spec.split(":")
    if windows:
        for k in range(len(parts) - 2, 0, -1):  # never the name's part
            if len(parts[k]) == 1 and parts[k].isascii() and parts[k].isalpha() and parts[k + 1][:1] in ("\\", "/"):
                parts[k:k + 2] = [f"{parts[k]}:{parts[k + 1]}"]
    required = parts[:2] + (parts[3:] if len(parts) == 4 else parts[2:])
    if len(parts) not in (2, 3, 4) or not all(required):
        raise CommandError(f"--task {spec!r}: expected NAME:TRAIN[:DEV[:TEST]] (NAME:TRAIN::TEST without DEV)")
    return parts[0], [Path(p) if p else None for p in parts[1:]] + [None] * (4 - len(parts))


def _load_tasks(args) -> list:
    """The corpora to train on: one per ``--dataset`` (named by it; ``NAME:HEAD`` — its types mapped by
    ``TYPE_MAPS`` — trains the head of dataset HEAD, as task ``NAME-HEAD``) and per ``--task
    NAME:TRAIN[:DEV[:TEST]]``, or the one of ``--train``/``--dev``/``--test``.  Several make a multi-task model
    (one head per label set, the first the default); one trains a one-head model (``Task.name`` None), except
    with ``--init-from``, where the task's name chooses the saved model's head (``--train``: the default one)."""
    from .data import TRAIN_DEV_FRACTION, TRAIN_DEV_SEED, TYPE_MAPS, carve, load_splits, map_types, read_file
    from .features import LABEL_SET_NAME
    from .train import Task

    carving = " and ".join(option for option, given in (("--dev-fraction", args.dev_fraction is not None),
                                                          ("--dev-blocks", args.dev_blocks)) if given)
    one_head = args.train or args.dev or args.test
    if one_head and (args.dataset or args.task):  # refused before any data is read
        raise CommandError("--train/--dev/--test train a one-head model; with --dataset or --task, give every "
                           "corpus as --task NAME:TRAIN[:DEV[:TEST]]")
    if one_head and not args.train:
        raise CommandError("--dev and --test need --train")
    if one_head and carving and args.dev:
        raise CommandError(NO_CARVING.format(carving))
    if not (one_head or args.dataset or args.task):
        raise CommandError("give --dataset NAME, --task NAME:TRAIN[:DEV[:TEST]], or --train FILE [--dev FILE]")
    root = args.data_root
    tasks = []
    named = {}  # name → its splits: each file read once (weibo and weibo:msra share them)
    for spec in args.dataset or []:
        name, _, head = spec.partition(":")
        if name not in named:
            named[name] = load_splits(name, root)
        splits = [named[name].get(split) for split in ("train", "dev", "test")]
        if head:
            mapping = TYPE_MAPS[(name, head)]
            splits = [map_types(split, mapping) if split is not None else None for split in splits]
            tasks.append(Task(f"{name}-{head}", *splits, head=head, type_map=mapping))
        else:
            tasks.append(Task(name, *splits))

    carved = []  # the training files a dev split was carved from

    def from_files(train_path: Path, dev_path: Path | None, test_path: Path | None) -> tuple:
        """(train, dev, test) sentences; without a dev file, dev is a fixed seeded sample of train."""
        paths = {"training": train_path, "dev": dev_path, "test": test_path}
        train, dev, test = read = [read_file(path, args.format) if path else None for path in paths.values()]
        for (what, path), sentences in zip(paths.items(), read):
            if sentences is not None:
                _require_sentences(sentences, f"{path}: no {what} sentences")
        if dev is None:
            carved.append(train_path)
            fraction = TRAIN_DEV_FRACTION if args.dev_fraction is None else args.dev_fraction
            size = max(1, round(fraction * len(train)))
            dev, train = carve(train, size, TRAIN_DEV_SEED, train_path, blocks=args.dev_blocks)
            if any(s.spans for s in dev) and not any(s.spans for s in train):
                raise CommandError(f"{train_path}: every sentence with entities went to the dev split carved from it "
                                   f"({len(dev)} of {len(dev) + len(train)} sentences): give more training data, or "
                                   "a --dev file")
            log.info("no dev file: %d sentences of %s (%.0f%%, seed %d%s) are the dev split, %d train", len(dev),
                     train_path, 100 * fraction, TRAIN_DEV_SEED,
                     f", {args.dev_blocks} runs of consecutive sentences" if args.dev_blocks else "", len(train))
        return train, dev, test

    for spec in args.task or []:
        name, files = _task_spec(spec)
        tasks.append(Task(name, *from_files(*files)))
    if one_head:
        return [Task(None, *from_files(args.train, args.dev, args.test))]
    if carving and not carved:
        raise CommandError(NO_CARVING.format(carving))
    names = [t.name for t in tasks]
    if len(set(names)) != len(names) or not all(LABEL_SET_NAME.fullmatch(n) for n in names):
        raise CommandError(f"task names must be distinct and made of letters, digits, _ or -: {names}")
    if len(tasks) == 1 and args.init_from is None:  # a new one-head model; a saved model's heads go by name
        tasks[0].name = tasks[0].head = None
    return tasks


DEFAULT_TAGGER = "bilstm_crf"  # what lexner train builds without --model or --init-from
NO_CARVING = ("{}: no dev split is carved here (every corpus has a dev file, or is a named dataset with its "
              "own)")


def _train_config(**settings):
    from .train import TrainConfig

    try:
        return TrainConfig(**settings)
    except ValueError as err:
        option = str(err).split(" ", 1)[0].replace("_", "-")
        raise CommandError(f"--{option}: {err}") from None


# what a model trained further (--init-from) takes from the saved one: these options are refused with it
SAVED_WITH_THE_MODEL = ("--set", "--lexicon", "--char-vectors", "--bigram-vectors", "--word-vectors",
                        "--bigram-min-count", "--pretrained-bigrams")


def _progress(args) -> bool:
    """Progress bars unless --no-progress, and only where someone can watch them: with standard error a
    terminal (redirected to a log file, their redraws would fill it)."""
    return not args.no_progress and sys.stderr.isatty()


def _vector_tables(cls, config) -> set[str]:
    """The embedding tables with pretrained character or bigram vectors that a new model of class ``cls`` with
    the checked ``config`` has (bigrams: unless ``bigram_dim`` is 0)."""
    if not cls.inputs(config).chars:
        return set()
    return {"chars", "bigrams"} if getattr(config, "bigram_dim", 0) > 0 else {"chars"}


def cmd_train(args) -> int:
    from .api import EMBEDDING_FILES, build_tagger, default_embeddings, load_for_training
    from .data import data_root, entity_types, report_unseen_labels
    from . import distributed
    from .export import command_line, portable_path
    from .train import (REPLACED_DIR, TrainConfig, Trainer, TrainingError, check_out_dir, previous_run,
                        seed_everything, selection_scores, teachers_by_task)

    if not distributed.world().main:  # under torchrun: one process speaks
        logging.getLogger().setLevel(logging.WARNING)

    _use_threads(args)
    config = _train_config(device=_resolve_device(args.device),
                           **{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if f.metadata})
    from .models import model_class
    from .models.base import checked_config, parse_config_values

    if args.init_from is not None and (saved := [option for option in SAVED_WITH_THE_MODEL
                                                 if option in getattr(args, OPTIONS, {}).values()]):
        raise CommandError("--init-from: the settings, vocabularies, vectors and lexicon are the saved model's; "
                           f"leave out {', '.join(saved)}")
    model_name = args.model or DEFAULT_TAGGER
    try:
        model_config = parse_config_values(model_class(model_name), _key_values(args.set, "--set"))
        checked = checked_config(model_class(model_name), model_config)  # ranges, the model's rules (hidden even)
    except ValueError as err:
        raise CommandError(f"--set: {err}") from None  # before any data is read
    if model_name == "bert_crf" and args.init_from is None and not model_config.get("bert_path"):
        raise CommandError("bert_crf reads a local BERT checkpoint: give --set bert_path=DIR (its config.json, "
                           "weights and tokenizer; nothing is downloaded)")
    teachers = "teachers (lexner distill --teacher DIR)"
    several = "several tasks (--dataset or --task repeated)"
    corpora = 1 if args.train or args.dev or args.test else len(args.dataset or []) + len(args.task or [])
    for option, needs, unused in (
            ("--task-temperature", several, _given(args, "task_temperature") and corpora < 2),
            ("--task-selection", several, _given(args, "task_selection") and corpora < 2),
            ("--augment-ratio", "--augment", _given(args, "augment_ratio") and not config.augment),
            ("--pretrained-bigrams", "bigram vectors (not --bigram-vectors none)",
             _given(args, "pretrained_bigrams") and (args.bigram_vectors or "").lower() == "none"),
            ("--momentum", "--optimizer sgd", _given(args, "momentum") and config.optimizer != "sgd"),
            ("--encoder-lr", "a pretrained encoder (--set bert_path=DIR)", _given(args, "encoder_lr")
             and args.init_from is None and not model_config.get("bert_path")),  # a saved model may hold one
            ("--distill", teachers, _given(args, "distill") and not getattr(args, "teacher", None)),
            ("--distill-weight", teachers, _given(args, "distill_weight") and not getattr(args, "teacher", None))):
        if unused:
            raise CommandError(f"{option} has no effect without {needs}")
    if args.init_from is None:  # a new model: vectors for tables it lacks, a lexicon it does not read
        if args.lexicon and not model_class(model_name).inputs(checked).words:
            raise CommandError(f"--lexicon: {model_name} uses no lexicon; choose a lexicon tagger with --model "
                               "(softlexicon, lattice_lstm or flat)")
        tables = _vector_tables(model_class(model_name), checked)
        if model_class(model_name).inputs(checked).words:
            tables.add("words")
        for name in ("chars", "bigrams", "words"):
            given = getattr(args, f"{name[:-1]}_vectors")
            if given not in (None, "none") and name not in tables:
                raise CommandError(f"--{name[:-1]}-vectors has no effect: {model_name} (with these settings) has no "
                                   f"{name[:-1]} table to start from them")
    try:
        check_out_dir(args.out, args.resume, args.force)  # likewise: an --out that would lose a run
    except TrainingError as err:
        raise CommandError(str(err)) from None
    specs = [_teacher_spec(spec) for spec in getattr(args, "teacher", None) or []]
    if args.force:  # what --force sets aside (and deletes at the first checkpoint) must not be what it reads
        moved = [(args.out / name).resolve() for name in (*previous_run(args.out), REPLACED_DIR)]
        for option, path in [("--init-from", args.init_from), *(("--teacher", p) for _, p in specs)]:
            if path is not None and any(Path(path).resolve().is_relative_to(m) for m in moved):
                raise CommandError(f"{option} {path} lies inside the run in --out {args.out} that --force replaces; "
                                   "copy it elsewhere first (lexner export), or give another --out")
    tasks = _load_tasks(args)
    try:  # a teacher for a task this training lacks fails before any model is built or loaded
        teachers_by_task(tasks, [(task, path) if task is not None else path for task, path in specs])
    except TrainingError as err:
        raise CommandError(str(err)) from None
    for task in tasks:
        what = f" ({task.name})" if task.name else ""
        report_unseen_labels(task.train, task.dev, "dev" + what)
        if task.test is not None:
            report_unseen_labels(task.train, task.test, "test" + what)
        log.info("train %d, dev %d, test %s sentences%s; entity types %s", len(task.train), len(task.dev),
                 len(task.test) if task.test is not None else "-", what, entity_types(task.train))
    embeddings = default_embeddings(args.data_root)
    root = Path(args.data_root if args.data_root is not None else data_root())
    if (args.init_from is None and model_class(model_name).inputs(checked).words and not args.lexicon
            and args.word_vectors in (None, "none") and embeddings["words"] is None):
        raise CommandError(f"{model_name} reads lexicon words, and {root / EMBEDDING_FILES['words']} is not there: "
                           "set LEXNER_DATA or --data-root to the folder that holds embeddings/, or give --lexicon "
                           "FILE or --word-vectors FILE")
    for name, path in (("chars", args.char_vectors), ("bigrams", args.bigram_vectors), ("words", args.word_vectors)):
        if path is not None:
            embeddings[name] = None if path == "none" else path
        elif (embeddings[name] is None and args.init_from is None and distributed.world().main  # words: --lexicon
              and name in _vector_tables(model_class(model_name), checked)):
            looked = root / EMBEDDING_FILES[name]
            option = f"--{name[:-1]}-vectors"
            log.warning("no pretrained %s vectors: %s is not there (set LEXNER_DATA or --data-root to the folder "
                        "that holds embeddings/, or give %s FILE; %s none says to train without them): the %s "
                        "table starts random", name[:-1], looked, option, option, name[:-1])
    seed_everything(args.seed)
    label_sets = None
    if len(tasks) > 1:  # one head per label set, its types those of every task that trains it
        types: dict[str, set[str]] = {}
        for t in tasks:
            types.setdefault(t.labels, set()).update(entity_types(t.train))
        label_sets = {name: sorted(found) for name, found in types.items()}
    try:
        if args.init_from is not None:  # every head a task trains: its name (None: the default) and types
            heads: dict[str | None, set[str]] = {}
            for t in tasks:
                heads.setdefault(t.labels, set()).update(entity_types(t.train))
            tagger = load_for_training(args.init_from, heads)
            if args.model is not None and args.model != tagger.name:
                raise CommandError(f"--model {args.model}: {args.init_from} holds a {tagger.name} model")
        else:
            tagger = build_tagger(model_name, [s for t in tasks for s in t.train], model_config, embeddings,
                                  seed=args.seed, lexicon=args.lexicon, bigram_min_count=args.bigram_min_count,
                                  label_sets=label_sets, pretrained_bigrams=args.pretrained_bigrams,
                                  progress=_progress(args))
    except (ValueError, FileNotFoundError) as err:  # e.g. hidden odd, a head without a type, not a model
        raise CommandError(str(err)) from None
    try:
        trainer = Trainer(tagger, config, args.out, progress=_progress(args), replace=args.force)
        resumed = args.resume and trainer.resume()
    except TrainingError as err:
        raise CommandError(str(err)) from None
    if args.resume and not resumed:
        log.info("no checkpoint in %s; starting from scratch", args.out)
    if len(tasks) > 1:
        train_data = "+".join(t.name for t in tasks)
    else:  # one corpus: the dataset's name, or its training file (--train, or --task's TRAIN)
        train_data = (args.dataset or [portable_path(str(args.train or _task_spec(args.task[0])[1][0]))])[0]
    if args.init_from is not None:  # what built the model is what built the one it continues
        source = tagger.metadata.get("card") or {}
        card = {"init_from": str(args.init_from), **{k: source.get(k) for k in ("embeddings", "lexicon")}}
    else:
        card = {"embeddings": {k: portable_path(str(v)) if v else None for k, v in embeddings.items()},
                "lexicon": (" + ".join(map(str, args.lexicon or [embeddings.get("words")])) if tagger.reads.words
                            else None)}
    card = {"train_data": train_data, "command": command_line(args.argv), **card}
    teachers, unlabelled = _teachers_and_unlabelled(args, specs)
    if teachers:
        card["teachers"] = [str(t) for t in args.teacher]
    try:
        results = trainer.fit_tasks(tasks, model_card=card, teachers=teachers, unlabelled=unlabelled)
    except TrainingError as err:
        raise CommandError(str(err)) from None
    except OSError as err:  # e.g. the disk is full: the last good model and checkpoint are intact
        raise CommandError(f"writing into {args.out} failed: {err}; {_kept(trainer, args.out)}") from None
    except RuntimeError as err:  # under torchrun: a collective whose peer process ended (killed, out of memory)
        if not (trainer.world.distributed and _peer_lost(err)):
            raise
        said = str(err).splitlines()[0]
        log.debug("the error, as raised", exc_info=True)
        raise CommandError(f"rank {trainer.world.rank}: another process of this run ended ({said}); "
                           f"{_kept(trainer, args.out)}") from None
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: main() says "interrupted"; here, what is kept and how to go on
        if trainer.world.main and trainer.checkpointed:
            log.warning("stopped: %s holds the checkpoint written after epoch %d and, in model/, the best model so "
                        "far (epoch %d, dev F1 %.4f); the same command with --resume goes on from there", args.out,
                        trainer.checkpointed, trainer.best_epoch, trainer.best_f1)
        elif trainer.world.main:
            log.warning("stopped before the first epoch ended: nothing to resume in %s", args.out)
        raise
    if trainer.world.main:
        summary = {k: selection_scores(results[k]) for k in ("dev", "test") if k in results}
        if "selection" in results.get("dev", {}):  # several tasks: which of their scores these are
            summary["selection"] = results["dev"]["selection"]
        _print_json({"model": str(Path(args.out) / "model"), "best_epoch": results["best_epoch"], **summary})
    return 0


def _kept(trainer, out: str | os.PathLike) -> str:
    """What a training stopped by an error leaves in ``out`` and how to go on."""
    from .train import REPLACED_DIR

    aside = Path(out) / REPLACED_DIR
    if trainer.checkpointed:
        return (f"the checkpoint of epoch {trainer.checkpointed} and the best model so far are intact (--resume "
                "goes on from there)")
    if aside.exists():
        return f"no checkpoint had been written; the run --force replaced is in {aside} (--force again)"
    return "no checkpoint had been written (--resume starts the run again)"


def _peer_lost(err: RuntimeError) -> bool:
    """Whether ``err`` is a collective's report that another process of a ``torchrun`` run went away (gloo's
    words for it; any other error, an out-of-memory in NCCL say, keeps its traceback)."""
    return any(s in str(err) for s in ("Connection closed by peer", "Connection reset by peer", "remote worker"))


def _teacher_spec(spec: str) -> tuple[str | None, Path]:
    """``--teacher DIR`` (every task) or ``--teacher TASK=DIR`` (that task alone): (task name or None, DIR).
    A DIR that exists is taken whole, even with ``=`` in its name."""
    from .features import LABEL_SET_NAME

    task, sep, path = spec.partition("=")
    if not sep or Path(spec).exists():
        return None, Path(spec)
    if not LABEL_SET_NAME.fullmatch(task) or not path:
        raise CommandError(f"--teacher {spec!r}: expected DIR or TASK=DIR (TASK a task name of this training)")
    return task, Path(path)


def _labelled_lines(lines: list[str]) -> bool:
    """Whether most of these lines read as a character-per-line file's (``张 B-PER``)."""
    from .data import is_tagged_line

    return bool(lines) and sum(map(is_tagged_line, lines)) >= 0.9 * len(lines)


def _require_sentences(sentences: Sequence, message: str) -> None:
    """Refuse data read from a file that holds no sentence with text (``message`` says which)."""
    if not any(s.text for s in sentences):
        raise CommandError(f"{message} (the file is empty or holds only empty texts)")


def _teachers_and_unlabelled(args, specs: list[tuple[str | None, Path]]) -> tuple[list, list[str]]:
    """``lexner distill``: the teacher models (of ``specs``, see :func:`_teacher_spec`; a pair (task, model)
    for a teacher of one task) and the unlabelled texts (none for ``lexner train``)."""
    from .api import load
    from .data import load_dataset
    from .fileio import iter_lines

    unlabelled = []
    for path in getattr(args, "unlabelled", []):
        texts = [line.strip() for _, line in iter_lines(path)]
        if _labelled_lines([t for t in texts if t][:200]):
            raise CommandError(f"--unlabelled {path}: its lines are a character and a tag each (a CoNLL/BMES file); "
                               "--unlabelled takes one text per line (labelled data: --dataset or --task)")
        unlabelled += texts
    loaded = {}  # path → model: one copy of a model that teaches several tasks
    teachers = []
    for task, path in specs:
        if path not in loaded:  # torch, whatever runtime its directory asks for: the exact network's soft targets
            loaded[path] = load(path, device=_resolve_device(args.device), runtime="torch")
        teachers.append((task, loaded[path]) if task is not None else loaded[path])
    for name in getattr(args, "unlabelled_dataset", []):
        unlabelled += [s.text for s in load_dataset(name, "train", args.data_root)]
    unlabelled = [t for t in unlabelled if t]
    if teachers:
        log.info("%d teacher(s); %d unlabelled texts", len(teachers), len(unlabelled))
    return teachers, unlabelled


def cmd_evaluate(args) -> int:
    from .data import load_dataset, read_file
    from .evaluate import evaluate

    if not (args.file or args.dataset):  # before the model is loaded
        raise CommandError("give --dataset NAME [--split SPLIT] or --file PATH")
    if args.file and (args.dataset or args.split):
        raise CommandError(f"give --file or --dataset [--split], not both (--file {args.file} with "
                           f"{'--dataset ' + args.dataset if args.dataset else '--split ' + args.split})")
    args.split = args.split or "test"
    _require_stdout()
    _use_threads(args)
    if args.file:  # the data first: a mistake in it is named before the model takes its seconds to load
        sentences = read_file(args.file, args.format)
    else:
        sentences = load_dataset(args.dataset, args.split, args.data_root)
    if not any(s.text for s in sentences):
        raise CommandError(f"{args.file or f'{args.dataset} {args.split}'}: no sentences to score")
    seen = None
    if args.seen_from == "train" and args.dataset:
        seen = load_dataset(args.dataset, "train", args.data_root)
    elif args.seen_from:
        seen = read_file(args.seen_from, args.format)
        _require_sentences(seen, f"--seen-from {args.seen_from}: no sentences")
    tagger = _load_for_tagging(args, _extra_words(args))
    scores = evaluate(tagger, sentences, labels=args.labels, seen=seen, progress=_progress(args))
    members = getattr(tagger, "members", [tagger])  # an ensemble's members each run as their directory says
    scores["runtime"] = members[0].runtime if len(members) == 1 else [m.runtime for m in members]
    _print_json(scores)
    return 0


LEXICON_ADD_HELP = ("domain words added to a lattice model's lexicon: a word list (one word per line; further "
                    "whitespace-separated columns, such as frequencies, are ignored) or a word2vec file; repeatable")


def _extra_words(args) -> list[str]:
    """The words of every ``--lexicon-add`` file (word lists or word2vec files, :func:`lexner.lexicon.read_words`)."""
    from .lexicon import read_words

    return [word for path in args.lexicon_add or [] for word in read_words(path, vectors=False)[0]]


def _key_values(texts: Sequence[str], option: str) -> dict[str, str]:
    """``KEY=VALUE`` arguments of a repeatable option; a key given twice is refused (one would be lost)."""
    out: dict[str, str] = {}
    for text in texts:
        key, sep, value = text.partition("=")
        if not (sep and key):
            raise CommandError(f"{option} expects KEY=VALUE, got {text!r}")
        if key in out:
            raise CommandError(f"{option} {key}= given twice ({out[key]!r}, {value!r})")
        out[key] = value
    return out


def _fraction(text: str) -> float:
    try:
        if 0 < (value := float(text)) < 1:
            return value
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"expected a number between 0 and 1 (exclusive), got {text!r}")


def _count_or_all(text: str) -> int | None:
    if text == "all":
        return None
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a count or 'all', got {text!r}")
    return int(text)


def _folder(text: str) -> Path:
    """A folder argument: an empty one (an unset ``"$OUT"``) would be the current directory."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"needs a folder name, got {text!r}")
    return Path(text)


def _at_least(low: int, what: str = "an integer", high: float | None = None, kind: type = int):
    """An argparse type: a number of ``kind`` ≥ ``low`` (and ≤ ``high`` when given)."""
    bounds = f"≥ {low}" if high is None else f"from {low} to {high}"

    def parse(text: str) -> int | float:
        try:
            if low <= (value := kind(text)) and (high is None or value <= high):
                return value
        except ValueError:
            pass
        raise argparse.ArgumentTypeError(f"expected {what} {bounds}, got {text!r}")
    return parse


def _file_name(text: str) -> Path | None:
    """An output file's path; ``-`` is standard output (None), as ``--input -`` is standard input; a path
    ending in a separator names a folder (Path would drop the separator)."""
    if text == "-":
        return None
    if text.endswith(("/", os.sep)):
        raise argparse.ArgumentTypeError(f"{text!r} names a folder; give a file name (e.g. {text}tagged.jsonl)")
    return Path(text)


THREADS_HELP = ("torch threads, also ONNX Runtime's (0: torch's default, one per core; on a shared machine 1 is "
                "often faster)")


def _use_threads(args) -> None:
    """``--threads``, before any model is loaded (ONNX Runtime sessions take torch's thread count)."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)


def _tag_model_and_texts(args) -> None:
    """``lexner tag`` takes the model with ``--model``; without it, a first argument that is a model directory
    (the older form ``lexner tag DIR TEXT...``) is the model, and otherwise the bundled default model tags."""
    from .api import DEFAULT_MODEL
    from .models.base import CONFIG_FILE

    if args.model_dir is None:
        first = Path(args.text[0]) if args.text else None
        if first is not None and _names(args.text[0], lambda path: (path / CONFIG_FILE).is_file()):
            args.model_dir, args.text = first, args.text[1:]
        elif first is not None and _names(args.text[0], Path.is_dir):  # a model meant, not a text: say so
            inside = first / "model"
            hint = (f"; a training run's model is in its model/ folder: {inside}"
                    if (inside / CONFIG_FILE).is_file() else "")
            raise CommandError(f"{first} is a directory but not a model directory (no {CONFIG_FILE}){hint}")
        else:
            args.model_dir = DEFAULT_MODEL


def _dictionary(args):
    from .dictionary import Dictionary

    return Dictionary.read(args.dictionary) if getattr(args, "dictionary", None) else None


RUNTIME_HELP = ("how a BiLSTM encoder runs on the CPU: torch, torch-bf16 (a bfloat16 copy of the LSTM: faster on CPUs "
                "with bfloat16 arithmetic, outputs close), onnx (ONNX Runtime, same outputs, faster) or onnx-int8 "
                "(int8 weights, faster still, outputs close); default: what the model directory says, else torch "
                '(ONNX Runtime: pip install "lexner[onnx]")')


def _runtime_args(parser: argparse.ArgumentParser, help: str = RUNTIME_HELP, alias: bool = True) -> None:
    from .runtimes import RUNTIMES

    group = parser.add_mutually_exclusive_group()  # one of them, as lexner.load takes runtime= or onnx=
    group.add_argument("--runtime", choices=list(RUNTIMES), default=None, help=help)
    if alias:
        group.add_argument("--onnx", dest="runtime", action="store_const", const="onnx",
                           help="same as --runtime onnx")


def _load_for_tagging(args, extra_words: list[str], one_head: bool = True):
    """The model to tag with; ``one_head``: it tags with ``--labels`` only, checked now (lexner serve's requests
    choose their head, checked per request)."""
    from .api import load
    from .fileio import ModelFormatError

    try:
        model = args.model_dir
        if isinstance(model, list):  # lexner evaluate: none (the bundled model), one, or an ensemble
            model = None if not model else model[0] if len(model) == 1 else model
        tagger = load(model, device=_resolve_device(args.device), extra_words=extra_words,
                      dictionary=_dictionary(args), runtime=getattr(args, "runtime", None))
        if one_head:  # an unknown --labels, or one lacking a dictionary type, fails now
            try:
                tagger.check_head(args.labels)
            except ValueError as err:
                raise CommandError(f"--labels {args.labels}: {err}" if args.labels is not None else str(err)) from None
        return tagger
    except ModelFormatError:
        raise  # reported by main()
    except (ValueError, ImportError) as err:  # e.g. words for a model without a lexicon, a dictionary type it
        raise CommandError(str(err)) from None  # does not know, --onnx without ONNX Runtime installed


def _names(text: str, kind: Callable[[Path], bool]) -> bool:
    """Whether a command-line text names an existing path of a ``kind`` (``Path.is_file``, ``Path.is_dir``)."""
    try:
        return bool(text) and "\n" not in text and kind(Path(text))  # Path("") is "."
    except (OSError, ValueError):  # e.g. a long text is not a valid file name
        return False


def _warn_texts_that_look_like_files(texts: list[str]) -> None:
    """Positional arguments are texts; one that names a file (or is ``-``) was most likely meant as ``--input``,
    one that names a directory as a model (one per command: ``--model``)."""
    from .models.base import CONFIG_FILE

    for text in texts:
        if text == "-" or _names(text, Path.is_file):
            log.warning("%r is tagged as a text; to tag the lines of %s, use --input %s", text,
                        "standard input" if text == "-" else "that file", text)
        elif _names(text, Path.is_dir):
            model = " (a model directory: one model tags, --model DIR)" if (Path(text) / CONFIG_FILE).is_file() else ""
            log.warning("%r is tagged as a text, though it names a directory%s", text, model)


def _command_line_texts(texts: list[str], errors: str) -> list[str]:
    """The texts given as arguments (bytes that are not UTF-8 arrive as lone surrogates), as ``--errors`` says."""
    from .fileio import as_utf8_errors_say

    out = []
    for k, text in enumerate(texts, start=1):
        try:  # the argument's bytes read as UTF-8, also where the locale's encoding is not (a C locale: ASCII)
            text = os.fsencode(text).decode("utf-8", "surrogateescape")
        except UnicodeError:
            pass
        try:
            kept = as_utf8_errors_say(text, errors)
        except UnicodeEncodeError:
            raise CommandError(f"text {k} on the command line is not valid UTF-8 (--errors replace puts U+FFFD "
                               "for its bad bytes, --errors skip leaves it out)") from None
        if kept is None:
            log.warning("text %d on the command line is not valid UTF-8: left out (--errors skip)", k)
        else:
            out.append(kept)
    return out


def cmd_tag(args) -> int:
    from contextlib import nullcontext

    from .fileio import atomic_file
    from .output import render
    from concurrent.futures.process import BrokenProcessPool

    from .tagfile import page, tag_file, warn_no_conll_record

    _tag_model_and_texts(args)
    if args.output is None:
        _require_stdout()
    if args.input is None and not args.text:
        raise CommandError("give text to tag, or --input FILE (- for standard input)")
    if args.input is not None and args.text:
        raise CommandError(f"give texts or --input, not both (texts given: {args.text[:3]})")
    if args.input is None and _given(args, "workers"):
        raise CommandError("--workers shares an --input file among processes; texts on the command line are "
                           "tagged in one")
    if args.output is not None and not args.output.name:
        raise CommandError(f"--output needs a file name, got {str(args.output)!r}")
    _use_threads(args)
    extra = _extra_words(args)
    tagger = _load_for_tagging(args, extra)
    if args.input is None:
        texts = _command_line_texts(args.text, args.errors)
        _warn_texts_that_look_like_files(texts)
        blank = [k for k, text in enumerate(args.text, start=1) if not text or text.isspace()]  # numbered as given
        if blank and args.format == "conll":
            warn_no_conll_record(f"{len(blank)} text(s) on the command line", f"text {', '.join(map(str, blank))}")
        tagged = tagger.tag_batch(texts, args.batch_size, labels=args.labels)
        with atomic_file(args.output) if args.output is not None else nullcontext(sys.stdout) as out:
            with page(out, args.format) as records:
                records.write("".join(render(text, ents, args.format) for text, ents in zip(texts, tagged)))
        return 0
    try:
        tag_file(tagger, args.input, args.output, fmt=args.format, batch_size=args.batch_size,
                 workers=args.workers, errors=args.errors, labels=args.labels, progress=_progress(args),
                 extra_words=extra)
    except ValueError as err:  # the output is the input
        raise CommandError(str(err)) from None
    except BrokenProcessPool:  # a --workers process was killed (out of memory, kill -9): tag_file said what is kept
        raise CommandError("a tagging worker process ended unexpectedly (killed? out of memory? each worker "
                           "holds its own copy of the model: fewer --workers need less memory)") from None
    return 0


def _check_listen(host: str, port: int) -> None:
    """A CommandError naming ``--host``/``--port`` if the service could not listen there (a host that does not
    resolve or is not this machine's, a port in use or not allowed), as every other refusal is worded — not
    uvicorn's start-up lines and exit status 3.  The port is bound as uvicorn binds it (SO_REUSEADDR) and let
    go at once."""
    import errno
    import socket

    try:  # "" (uvicorn: every interface) as getaddrinfo spells it
        family, kind, proto, _, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as err:
        raise CommandError(f"--host {host}: cannot be resolved ({getattr(err, 'strerror', None) or err})") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as err:
            option = f"--host {host}" if err.errno == errno.EADDRNOTAVAIL else f"--port {port}"
            raise CommandError(f"{option}: cannot listen on {host}:{port} ({err.strerror or err})") from None


def cmd_serve(args) -> int:
    try:
        import uvicorn

        from .serve import create_app
    except ImportError as err:
        raise CommandError(f"lexner serve needs the serve extra ({err}): pip install 'lexner[serve]'") from None
    _check_listen(args.host, args.port)  # before the model takes its seconds to load
    _use_threads(args)
    tagger = _load_for_tagging(args, _extra_words(args), one_head=False)
    app = create_app(tagger, max_chars=args.max_chars, max_texts=args.max_texts, max_batch=args.batch_size,
                     batch_wait_ms=args.batch_wait_ms, max_waiting=args.max_waiting)
    # uvicorn's own lines say where it listens (the port chosen for --port 0); requests logged with --verbose
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=args.verbose)
    return 0


def cmd_export(args) -> int:
    from .api import load
    from .export import export_model, export_target

    renames = _key_values(args.rename, "--rename")
    try:
        export_target(args.out_dir, args.force, args.model_dir)  # refused before the model is even loaded
        tagger = load(args.model_dir, extra_words=_extra_words(args), onnx=False)
        target = export_model(tagger, args.out_dir, half=args.half, force=args.force, renames=renames,
                              runtime=args.runtime, piece_length=args.piece_length, onnx_graphs=args.onnx_graph)
    except ValueError as err:  # ExportError, or a --rename that names no type or merges two
        raise CommandError(str(err)) from None
    _print_json({"model": str(args.out_dir), "megabytes": _megabytes(target)}, indent=None)
    return 0


def _megabytes(folder: Path) -> float:
    """The size of the files under ``folder``, in MiB."""
    return round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20, 2)


def _print_json(value: Any, indent: int | None = 2) -> None:
    """What a command reports, as JSON on standard output: Chinese as it is, and a path whose bytes are not UTF-8
    (a legacy GBK folder name) with the byte escapes model cards use, not a UnicodeEncodeError."""
    from .export import recordable

    print(json.dumps(recordable(value), indent=indent, ensure_ascii=False))


def _require_stdout() -> None:
    """Refuses a command whose results go to standard output when there is none (started with ``>&-``): its
    work would be lost (print writes nowhere) or end in a traceback."""
    if sys.stdout is None:
        raise CommandError("standard output is closed: nowhere to write the results")


def cmd_info(args) -> int:
    from .runtimes import GRAPH_FILES

    _require_stdout()
    args.runtime = "torch"  # describing a model makes no ONNX Runtime session; its config's runtime is reported
    tagger = _load_for_tagging(args, [], one_head=False)
    folder = tagger.source
    about = {"path": str(folder), "megabytes": _megabytes(folder)} if folder is not None else {}
    runs = {"runtime": tagger.metadata.get("runtime", "torch"),  # what lexner.load gives unless told otherwise
            "onnx_graphs": [p for p, name in GRAPH_FILES.items() if folder is not None and (folder / name).is_file()]}
    _print_json({**about, **tagger.describe(), **runs})
    return 0


NO_PROGRESS_HELP = "no progress bars (they are drawn on standard error only when it is a terminal)"
TAG_DEVICE_HELP = "cpu, cuda, cuda:1, or auto (cuda when present)"
STANDARD_OUTPUT = "standard output"  # how errors writing it name it
GIVEN = "_given"  # the parsed arguments' set of the options given on the command line (by their dest)
OPTIONS = "_options"  # and which option (its long form) stored each of them: {dest: option}


def _given(args: argparse.Namespace, dest: str) -> bool:
    """Whether the option stored in ``dest`` was given, even with its default value."""
    return dest in getattr(args, GIVEN, ())


class _StoreOnce(argparse._StoreAction):
    """argparse's plain "store", refusing an option given twice: the first value would be lost silently
    (``--augment mention --augment case`` trained with case alone).  Records each option given (:func:`_given`)."""

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string is not None:  # an option (a positional argument is stored even when absent)
            given = vars(namespace).setdefault(GIVEN, set())
            if self.dest in given:
                parser.error(f"argument {'/'.join(self.option_strings)}: given more than once; it takes one value")
            given.add(self.dest)
            _record_option(namespace, self, option_string)
        super().__call__(parser, namespace, values, option_string)


class _Append(argparse._AppendAction):
    """argparse's "append", recording the option as :class:`_StoreOnce` does (for errors to name it)."""

    def __call__(self, parser, namespace, values, option_string=None):
        _record_option(namespace, self, option_string)
        super().__call__(parser, namespace, values, option_string)


def _record_option(namespace: argparse.Namespace, action: argparse.Action, option_string: str | None) -> None:
    """Remember which option stored into ``action.dest`` (its long form): an error about the file it named
    names the option too (:func:`_with_option`)."""
    if option_string is not None:
        long = [o for o in action.option_strings if o.startswith("--")]
        vars(namespace).setdefault(OPTIONS, {})[action.dest] = long[0] if long else option_string


class _Parser(argparse.ArgumentParser):
    """The parser of lexner and of its commands (add_subparsers makes them of this class too)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register("action", None, _StoreOnce)  # the default action
        self.register("action", "store", _StoreOnce)
        self.register("action", "append", _Append)


class _DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default after its help, unless it has none (None); an empty string shows as '', in the
    default and among the choices ({'',bf16,fp16})."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None:
            return action.help or ""
        if action.default == "":
            return f"{action.help or ''} (default: '')"
        return super()._get_help_string(action)

    def _metavar_formatter(self, action: argparse.Action, default_metavar: str):
        if action.choices is not None and action.metavar is None and "" in action.choices:
            shown = "{" + ",".join(repr(c) if c == "" else str(c) for c in action.choices) + "}"
            return lambda size: (shown,) * size if isinstance(size, int) else (shown,)
        return super()._metavar_formatter(action, default_metavar)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="lexner", description="Chinese NER with lexicon enhancement.")
    parser.add_argument("--version", action="version", version=f"lexner {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def data_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-root", default=None,
                       help="folder with msra/, weibo/, embeddings/ (default: $LEXNER_DATA or data/)")
        p.add_argument("--format", default="auto", choices=["auto", *DATA_FORMATS],
                       help="format of the data files given; auto detects it from the suffix or the first line")
        p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, or auto (cuda when present)")

    from . import tagging
    from .data import DATASETS, FORMATS as DATA_FORMATS, TRAIN_DEV_FRACTION, TYPE_MAPS
    from .fileio import UTF8_ERRORS
    from .models import MODEL_NAMES
    from .output import FORMATS as OUTPUT_FORMATS
    from .train_config import TrainConfig
    from .vocab import EXTRA_PRETRAINED_BIGRAMS

    def train_args(t: argparse.ArgumentParser) -> None:
        """The options of train and distill."""
        t.add_argument("--model", choices=sorted(MODEL_NAMES), help=f"the tagger to train (default: {DEFAULT_TAGGER})")
        t.add_argument("--init-from", type=Path, metavar="DIR",
                       help="train further a saved model (fine-tuning, e.g. the bundled model, whose folder "
                            "`lexner info` prints, on your own data): "
                            "its tagger, settings, vocabularies and lexicon are kept (--set, --lexicon and the "
                            "vector and vocabulary options are refused); a task trains the head of its name, and "
                            "one the model lacks gets a new head (a --train corpus: the default head, whose types "
                            "it must have)")
        t.add_argument("--dataset", choices=sorted(DATASETS) + [f"{a}:{b}" for a, b in TYPE_MAPS], action="append",
                       help="a named dataset under the data root; repeat it for a multi-task model with one head per "
                            "dataset, the first being the default (e.g. --dataset msra --dataset weibo); NAME:HEAD "
                            "also trains HEAD's head on NAME with its types mapped (e.g. weibo:msra: Weibo's named "
                            "persons, places and organisations as MSRA's NR/NS/NT)")
        t.add_argument("--task", action="append", metavar="NAME:TRAIN[:DEV[:TEST]]",
                       help="a corpus of a multi-task model from files, its head named NAME (without DEV: a seeded "
                            "sample of TRAIN, see --dev-fraction); repeatable")
        t.add_argument("--train", type=Path, help="training file (instead of --dataset)")
        t.add_argument("--dev", type=Path, help="dev file for model selection (without it: a seeded sample of "
                                                "--train, see --dev-fraction)")
        t.add_argument("--dev-fraction", type=_fraction, default=None, metavar="F",
                       help="a training file without a dev file: this fraction of its sentences (a fixed seeded "
                            f"sample) is the dev split (default: {TRAIN_DEV_FRACTION})")
        t.add_argument("--dev-blocks", type=_at_least(0), default=0, metavar="N",
                       help="with --dev-fraction: carve dev as N runs of consecutive sentences instead of single "
                            "sentences (0), so that it shares fewer documents and names with train and scores "
                            "nearer to new text")
        t.add_argument("--test", type=Path, help="test file, scored once with the best model")
        t.add_argument("--out", type=_folder, required=True, help="output folder (model/, checkpoint/, log.jsonl)")
        for f in dataclasses.fields(TrainConfig):  # one option per setting, help and default from TrainConfig
            if f.metadata:
                options = {k: v for k, v in f.metadata.items() if k != "help"}
                t.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default,
                               help=f.metadata["help"], **options)
        t.add_argument("--bigram-min-count", type=_at_least(1), default=1,
                       help="leave out train's bigrams seen fewer times (unless among the most frequent pretrained "
                            "ones): a smaller model")
        t.add_argument("--pretrained-bigrams", type=_count_or_all, default=EXTRA_PRETRAINED_BIGRAMS,
                       metavar="N|all", help="how many of the bigram vectors' file's first (most frequent) bigrams "
                                             "join the vocabulary beside train's, or all of them; the others of new "
                                             "text are unknown to the model")
        t.add_argument("--threads", type=_at_least(0), default=0, help=THREADS_HELP)
        t.add_argument("--char-vectors", help="word2vec file for characters, or 'none' (None: from the data root)")
        t.add_argument("--bigram-vectors", help="word2vec file for bigrams, or 'none' (None: from the data root)")
        t.add_argument("--word-vectors", help="word2vec file for lexicon words, or 'none' (None: from the data root)")
        t.add_argument("--lexicon", type=Path, action="append", metavar="FILE",
                       help="lexicon for lattice models: word list or word2vec file, repeatable for the union of "
                            "several (None: the word vectors' vocabulary); words with neither a vector nor a "
                            "match in the training texts are left out")
        t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="model config field, e.g. --set hidden=300 (repeatable)")
        t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
        t.add_argument("--force", action="store_true",
                       help="replace a previous run in OUT (its model/, checkpoint/, logs and results, kept in "
                            "OUT/.replaced until the first checkpoint; nothing else in the folder); without it (or "
                            "--resume) such a folder is refused")
        t.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)
        data_args(t)

    t = sub.add_parser("train", help="train a tagger", formatter_class=_DefaultsHelp)
    train_args(t)
    t.set_defaults(func=cmd_train)

    d = sub.add_parser("distill", help="train a student on gold tags plus the soft targets of trained teachers",
                       formatter_class=_DefaultsHelp)
    d.add_argument("--teacher", action="append", required=True, metavar="[TASK=]DIR",
                   help="a trained model whose outputs the student learns; repeat it for an ensemble (averaged); "
                        "TASK=DIR: it teaches that task of a multi-task training alone (e.g. msra=runs/m/model); "
                        "a task without teachers trains on its gold tags only")
    d.add_argument("--unlabelled", action="append", type=Path, default=[], metavar="FILE",
                   help="texts without labels (one per line) that add soft targets only; repeatable")
    d.add_argument("--unlabelled-dataset", action="append", choices=sorted(DATASETS), default=[], metavar="NAME",
                   help="a named dataset's training texts with their labels dropped (e.g. msra); repeatable")
    train_args(d)
    d.set_defaults(func=cmd_train, distill="kl")

    e = sub.add_parser("evaluate", help="score a saved model (several: their ensemble)", formatter_class=_DefaultsHelp)
    e.add_argument("model_dir", type=Path, nargs="*",
                   help="a saved model directory (none: the bundled model); several are scored as one ensemble "
                        "(tag marginals averaged)")
    e.add_argument("--dataset", choices=sorted(DATASETS),
                   help="a named dataset under the data root, scored on --split")
    e.add_argument("--split", choices=["train", "dev", "test"], help="the split of --dataset (default: test)")
    e.add_argument("--file", type=Path, help="a data file in any supported format")
    e.add_argument("--lexicon-add", type=Path, action="append", metavar="FILE",
                   help=LEXICON_ADD_HELP)
    e.add_argument("--dictionary", type=Path, metavar="FILE",
                   help="WORD<TAB>TYPE lines: every occurrence is forced to be an entity of that type")
    e.add_argument("--labels", metavar="NAME",
                   help="the label set (head) of a multi-task model to tag with (default: its first, e.g. PER/LOC/ORG)")
    e.add_argument("--seen-from", metavar="FILE",
                   help="the training data (a file; with --dataset, 'train' names its train split): adds scores "
                        "for entities seen there (same text and type) and for unseen ones")
    e.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)
    e.add_argument("--threads", type=_at_least(0), default=0, help=THREADS_HELP)
    _runtime_args(e)  # scores depend on it (int8 differs from torch): the output names the one used
    data_args(e)
    e.set_defaults(func=cmd_evaluate)

    x = sub.add_parser("export", help="copy a saved model, optionally compact (float16 weights)")
    x.add_argument("model_dir", type=Path, help="the saved model directory to copy")
    x.add_argument("out_dir", type=Path, help="where the copy goes: a new or empty directory, or one holding a "
                                              "lexner model (replaced only with --force)")
    precision = x.add_mutually_exclusive_group()
    precision.add_argument("--half", action="store_const", const=True, default=None,
                           help="store weights as float16 (about half the size; default: as model_dir stores them)")
    precision.add_argument("--float32", dest="half", action="store_const", const=False,
                           help="store weights as float32")
    x.add_argument("--force", action="store_true",
                   help="replace OUT_DIR if it holds a lexner model (a directory with anything else is never replaced)")
    x.add_argument("--rename", action="append", default=[], metavar="OLD=NEW",
                   help="rename an entity type in the copy (e.g. NR=PER); repeatable")
    x.add_argument("--lexicon-add", type=Path, action="append", metavar="FILE",
                   help=LEXICON_ADD_HELP)
    x.add_argument("--piece-length", metavar="N",
                   type=_at_least(1, "a number of characters", high=tagging.PIECE_LENGTH_LIMIT),
                   help="the copy tags texts longer than N characters in pieces of at most N (default: as the "
                        "source model; training sets it from the training sentences' lengths)")
    _runtime_args(x, alias=False, help="how lexner.load runs the copy's BiLSTM by default, written into its "
                                       "config.json: torch, torch-bf16, onnx or onnx-int8 (see lexner tag "
                                       "--runtime; default: as the source model says)")
    x.add_argument("--onnx-graph", action="append", default=[], choices=["float32", "int8"], metavar="PRECISION",
                   help="the copy carries the ONNX graph of its default head at this precision (float32 or int8; "
                        "repeatable), so that loading it with --runtime onnx / onnx-int8 builds none (needs the onnx "
                        "extra; the graph of an ONNX --runtime and those the source carries come along anyway)")
    x.set_defaults(func=cmd_export)

    g = sub.add_parser("tag", help="tag text (with the bundled model unless --model is given)",
                       formatter_class=_DefaultsHelp)
    g.add_argument("text", nargs="*", help="texts to tag (one record each on stdout, in --format; a file name is "
                                           "tagged as text, with a warning: use --input); a model directory as the "
                                           "first argument is taken as --model")
    g.add_argument("--model", "-m", dest="model_dir", type=Path, default=None,
                   help="a saved model directory (default: the bundled model, PER/LOC/ORG)")
    g.add_argument("--input", type=Path, help="a UTF-8 file, one text per line (only LF ends a line); - reads stdin")
    g.add_argument("--errors", default="strict", choices=UTF8_ERRORS,
                   help="a line of --input (or a text argument) that is not valid UTF-8: strict stops there (naming "
                        "file:line, after writing every line before it), skip leaves it out (reported), replace puts "
                        "U+FFFD for bad bytes")
    g.add_argument("--output", type=_file_name, help="output file (default, or -: stdout)")
    g.add_argument("--format", default="jsonl", choices=OUTPUT_FORMATS,
                   help="jsonl: one JSON object per input line; conll: char<TAB>tag lines; text: [entity|LABEL] "
                        "inline; html: one page with entities highlighted by type")
    g.add_argument("--lexicon-add", type=Path, action="append", metavar="FILE",
                   help=LEXICON_ADD_HELP)
    g.add_argument("--dictionary", type=Path, metavar="FILE",
                   help="WORD<TAB>TYPE lines: every occurrence is forced to be an entity of that type "
                        "(constrained decoding; leftmost, then longest match wins)")
    g.add_argument("--labels", metavar="NAME",
                   help="the label set (head) of a multi-task model to tag with (default: its first, e.g. PER/LOC/ORG)")
    g.add_argument("--batch-size", type=_at_least(1), default=64, help="texts per model call")
    g.add_argument("--workers", type=_at_least(0), default=1,
                   help="with --input: tagging processes, one core each (0: one per core); order is kept")
    g.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)
    g.add_argument("--threads", type=_at_least(0), default=0, help=THREADS_HELP + " (each of several --workers uses 1)")
    g.add_argument("--device", default="cpu", help=TAG_DEVICE_HELP)
    _runtime_args(g)
    g.set_defaults(func=cmd_tag)

    i = sub.add_parser("info", help="what a saved model is: kind, types, heads, size, how it was trained")
    i.add_argument("model_dir", type=Path, nargs="?", default=None,
                   help="a saved model directory (default: the bundled model)")
    i.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    i.set_defaults(func=cmd_info)

    v = sub.add_parser("serve", help="serve a model over HTTP (POST /tag, GET /health, GET /model)",
                       formatter_class=_DefaultsHelp)
    v.add_argument("--model", "-m", dest="model_dir", type=Path, default=None,
                   help="a saved model directory (default: the bundled model)")
    v.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    v.add_argument("--port", type=_at_least(0, "a port number", high=65535), default=8000,
                   help="port to listen on (0: any free port; the one chosen is printed)")
    v.add_argument("--max-chars", type=_at_least(1), default=10_000, help="longest text accepted (longer: 413)")
    v.add_argument("--max-texts", type=_at_least(1), default=256, help="most texts in one request (more: 413)")
    v.add_argument("--batch-size", type=_at_least(1), default=64, help="most texts tagged together (micro-batching)")
    v.add_argument("--batch-wait-ms", type=_at_least(0, "milliseconds", high=1000, kind=float), default=2.0,
                   help="how long a request waits for others to share its batch (0 to 1000)")
    v.add_argument("--max-waiting", type=_at_least(1), default=1_000_000,
                   help="characters queued to be tagged beyond which a request is answered 503 with Retry-After "
                        "(load shedding; a request alone in the queue is always taken)")
    v.add_argument("--threads", type=_at_least(0), default=0, help=THREADS_HELP)
    v.add_argument("--lexicon-add", type=Path, action="append", metavar="FILE",
                   help=LEXICON_ADD_HELP)
    v.add_argument("--dictionary", type=Path, metavar="FILE",
                   help="WORD<TAB>TYPE lines: every occurrence is forced to be an entity of that type")
    v.add_argument("--labels", default=None, help=argparse.SUPPRESS)  # requests choose their head
    v.add_argument("--device", default="cpu", help=TAG_DEVICE_HELP)
    _runtime_args(v)
    v.set_defaults(func=cmd_serve)
    for command in sub.choices.values():  # -v after the command too (lexner tag -v ...); SUPPRESS: when not
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,  # given there,
                             help="debug logging")  # the value given before the command stays
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is so that it unwinds as from Ctrl-C."""


def _terminated(signum, frame) -> None:
    raise Terminated()


def _with_option(args, message: str) -> str:
    """An error ``message`` that begins with a path given on the command line, with the option that gave it put
    in front (``--lexicon words.txt: no such file``): among many options and teachers, the one to fix is named."""
    for key, option in getattr(args, OPTIONS, {}).items():
        value = getattr(args, key, None)
        for given in value if isinstance(value, list) else [value]:
            if not isinstance(given, (str, os.PathLike)):
                continue
            given = str(given)
            for path in {given, given.partition("=")[2]} - {""}:  # --teacher TASK=DIR, --set KEY=DIR name DIR
                if message.startswith(f"{path}:"):  # the value as given: --teacher msra=DIR: no such ...
                    return f"{option} {given}{message[len(path):]}"
    return message


def main(argv: Sequence[str] | None = None) -> int:
    try:  # a Ctrl-C while the parser is built says no more than one later (the parser imports no torch)
        args = build_parser().parse_args(argv)
        args.argv = list(sys.argv) if argv is None else ["lexner", *argv]  # the command that ran, as recorded
        from .fileio import DataFormatError, ModelFormatError
    except KeyboardInterrupt:
        print("lexner: interrupted", file=sys.stderr)
        return 130
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")

    on_term = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is threading.main_thread():  # SIGTERM unwinds like Ctrl-C: temporary files go
        signal.signal(signal.SIGTERM, _terminated)
    stdout = sys.stdout
    named = stdout is not None and threading.current_thread() is threading.main_thread()  # sys.stdout is global
    try:
        if named:  # a full disk or a broken device behind standard output is named so
            from .fileio import NamedStream

            sys.stdout = NamedStream(stdout, STANDARD_OUTPUT)
        code = args.func(args)
        if named:
            sys.stdout.flush()  # what is still buffered fails here, said as any error is, not at the exit
        return code
    except KeyboardInterrupt as stop:  # files being written are left as they were (or kept as .partial)
        print(f"lexner: {'terminated' if isinstance(stop, Terminated) else 'interrupted'}", file=sys.stderr)
        return 143 if isinstance(stop, Terminated) else 130
    except (DataFormatError, ModelFormatError, CommandError) as err:
        print(f"lexner: error: {_with_option(args, str(err))}", file=sys.stderr)
        return 2
    except OSError as err:  # a file that cannot be read or written (missing, a directory, no space, ...)
        if _reader_gone(err):  # lexner tag ... | head: nothing more to say
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
            return 1
        where = f"{err.filename}: " if err.filename and str(err.filename) not in (err.strerror or "") else ""
        print(f"lexner: error: {_with_option(args, where + (err.strerror or str(err)))}", file=sys.stderr)
        return 2
    finally:
        if named:
            sys.stdout = stdout
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, on_term)


def _reader_gone(err: OSError) -> bool:
    """Whether ``err`` says that the program reading standard output went away: a broken pipe, which Windows
    reports as EINVAL ("Invalid argument") when it writes to a pipe whose reader has closed it (to a file or a
    console, EINVAL is an error like any other)."""
    if isinstance(err, BrokenPipeError):
        return True
    if sys.platform != "win32" or err.errno != errno.EINVAL or err.filename != STANDARD_OUTPUT:
        return False
    try:
        return stat.S_ISFIFO(os.fstat(sys.stdout.fileno()).st_mode)
    except (OSError, ValueError, AttributeError):  # closed, or a stream without a descriptor
        return False


def _utf8_stdout() -> None:
    """Standard output in UTF-8 with ``\\n`` line ends when it is not a terminal, as every ``--output`` file is:
    records redirected or piped are the same bytes whatever the locale (cp936 on Windows, ASCII under a C
    locale made them unreadable to lexner itself, and a character outside the encoding a traceback).  A terminal
    keeps its encoding; a character it cannot show is written as an escape (``\\U0001f600``)."""
    stream = sys.stdout
    if stream is None or not hasattr(stream, "reconfigure"):
        return
    try:
        if stream.isatty():
            stream.reconfigure(errors="backslashreplace")
        else:
            stream.reconfigure(encoding="utf-8", errors="strict", newline="")
    except (OSError, ValueError):  # a closed or replaced stream: written as it is
        pass


def entry() -> None:
    """The ``lexner`` command and ``python -m lexner``: :func:`main`, then the process ends with its exit code.
    A torchrun worker ends without Python's finalization (streams and log handlers flushed first): PyTorch's
    gloo and DistributedDataParallel objects torn down there aborted one worker run in ten or so after a
    training that had succeeded ("terminate called without an active exception", exit -6, so torchrun
    reported a failure).  So does a ``lexner tag --input -`` stopped while its reader thread still waits for
    standard input (:func:`lexner.tagfile.reading`): Python's exit aborted on that stream's lock (exit -6)."""
    _utf8_stdout()
    code = main()
    workers = sys.modules.get(f"{__package__}.distributed")  # imported with the trainer (not importing torch here)
    tagging = sys.modules.get(f"{__package__}.tagfile")
    if workers is not None and workers.world().distributed or tagging is not None and tagging.reading():
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # closed, or gone (None)
                stream.flush()
        os._exit(code or 0)
    raise SystemExit(code)
