"""Copies of saved models to give away: a new directory never replacing user files, a model card without
machine paths, optionally renamed types and float16 weights (``lexner export``)."""

from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath
from typing import Any, Sequence

from .fileio import expand_home
from .models.base import Tagger, model_target


log = logging.getLogger(__name__)


class ExportError(ValueError):
    """An export that would overwrite something it must not."""


def provenance() -> dict:
    """lexner's version and, when it runs from its own git checkout (the folder above the package holds ``.git``
    and lexner's ``pyproject.toml``), the commit (recorded in model cards).  An installed or vendored lexner has
    no commit: asked in its folder, git answered for whatever repository holds that folder — a project whose
    ``.venv`` is inside its checkout, or that copies lexner in, recorded its own commit (``+dirty`` from its
    changes) as lexner's."""
    from . import __version__

    here = Path(__file__).resolve().parent
    if not (here.parent / ".git").exists() or not _is_lexner_project(here.parent / "pyproject.toml"):
        return {"version": __version__, "commit": None}
    try:
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "--short", "HEAD"], capture_output=True,
                                encoding="utf-8", errors="replace", timeout=5).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, encoding="utf-8", errors="replace", timeout=5).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, False
    return {"version": __version__, "commit": commit and commit + ("+dirty" if dirty else "")}


def _is_lexner_project(pyproject: Path) -> bool:
    """Whether ``pyproject`` is lexner's own (``name = "lexner"``)."""
    try:
        text = pyproject.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return re.search(r"""^name\s*=\s*(["'])lexner\1\s*(#.*)?$""", text, re.MULTILINE) is not None


def recordable(value: Any) -> Any:
    """``value`` (a card's or result file's strings, lists and dicts) with every string made writable as UTF-8: a
    path or argument whose bytes are not UTF-8 (a legacy GBK file name, a C locale) reaches Python as lone
    surrogates, which are recorded as their bytes' escapes (``\\xd1\\xb5``) instead of failing the first save
    after an epoch of training."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            pass
        try:
            raw = value.encode("utf-8", "surrogateescape")  # the bytes the surrogates stand for
        except UnicodeEncodeError:  # a surrogate that stands for no byte
            raw = value.encode("utf-8", "backslashreplace")
        return raw.decode("utf-8", "backslashreplace")
    if isinstance(value, dict):
        return {recordable(k): recordable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [recordable(v) for v in value]
    return value


def command_line(argv: Sequence[str]) -> str:
    """``argv`` as recorded in model cards and result files, without this machine's paths: the lexner program
    (its entry point or ``lexner/__main__.py``) as ``lexner``, each path as :func:`portable_path` writes it,
    each word quoted as a POSIX shell needs it (``'my data/train.bio'``), so that the command runs again."""
    words = list(argv)
    return recordable(" ".join(map(_quoted, map(portable_path, [_program(words[0]), *words[1:]] if words else []))))


def _quoted(word: str) -> str:
    """A word for a POSIX shell; the ``$LEXNER_DATA/`` that :func:`portable_path` puts first stays unquoted, so
    that the shell expands it."""
    prefix = "$LEXNER_DATA/"
    if word.startswith(prefix):
        return prefix + shlex.quote(word[len(prefix):])
    return shlex.quote(word)


def command_words(command: str) -> list[str]:
    """The words of a recorded :func:`command_line` (an older, unquoted one: split at whitespace — one holding
    unbalanced quotes, or a backslash, which quoting never leaves bare: a Windows path)."""
    try:
        words = shlex.split(command)
    except ValueError:  # unbalanced quotes
        return command.split()
    return command.split() if "\\" in command and "\\" not in "".join(words) else words


def portable_path(word: str) -> str:
    """An absolute path as recorded without this machine's layout: under the data root as ``$LEXNER_DATA/...``
    (a shell that sets it runs the command again), under the working directory relative to it; any other word
    as it is."""
    from .data import data_root

    path = Path(word)
    if not path.is_absolute():
        return word
    root = data_root().absolute()
    if path.is_relative_to(root):
        return f"$LEXNER_DATA/{path.relative_to(root).as_posix()}"
    if path.is_relative_to(Path.cwd()):
        return str(path.relative_to(Path.cwd()))
    return word


def _absolute_anywhere(word: str) -> PurePath | None:
    """``word`` as a path if it is absolute on POSIX or Windows (a card may come from either), else None."""
    for kind in (PurePosixPath, PureWindowsPath):
        if kind(word).is_absolute():
            return kind(word)
    return None


def _cut_path(word: str, names: int) -> str:
    """``word`` with an absolute path in it — the word itself, or what follows a ``NAME=`` (``--teacher
    msra=ABSOLUTE_DIR``, ``--out=ABSOLUTE_DIR``; the first ``=`` after which the rest is absolute, so a folder
    named ``a=b`` stays inside the path) — cut to its last ``names`` names, the machine's folders above them and
    its root or drive dropped; any other word as it is."""
    for cut in (-1, *(i for i, c in enumerate(word) if c == "=")):
        absolute = _absolute_anywhere(word[cut + 1:])
        if absolute is not None and absolute.parts[1:]:
            return word[:cut + 1] + str(PurePosixPath(*absolute.parts[1:][-names:]))
    return word


def _program(word: str) -> str:
    """A command's first word: the lexner program (its entry point or ``lexner/__main__.py``) as ``lexner``."""
    return "lexner" if word.endswith("__main__.py") or Path(word).name == "lexner" else word


def portable_card(card: dict, renames: dict[str, str]) -> dict:
    """The model card of an exported copy: per-type scores under the renamed types, the renames themselves
    (``renamed``: each type's name in the training data → its name now), and no path of the machine
    it was trained on (the command starts with ``lexner``; data files are named relative to the data root)."""
    def rename_types(scores):
        if isinstance(scores, dict) and isinstance(scores.get("per_type"), dict):
            scores = {**scores, "per_type": {renames.get(k, k): v for k, v in scores["per_type"].items()}}
        if isinstance(scores, dict) and isinstance(scores.get("tasks"), dict):  # a multi-task model's
            scores = {**scores, "tasks": {k: rename_types(v) for k, v in scores["tasks"].items()}}
        return scores

    def without_machine(path):  # a file, a teacher's TASK=DIR, a model: the last two names
        return _cut_path(path, 2) if isinstance(path, str) else path

    def data_relative(path):  # vectors and lexicons; a card written on Windows separates folders by backslashes
        if isinstance(path, str) and "embeddings/" in (slashed := path.replace("\\", "/")):
            return "$LEXNER_DATA/" + slashed[slashed.index("embeddings/"):]
        return without_machine(path)

    card = dict(card)
    for split in ("dev", "test"):
        if split in card:
            card[split] = rename_types(card[split])
    if renames:  # the data's own names of the types, for scoring on that data (lexner.evaluate)
        earlier = card.get("renamed") if isinstance(card.get("renamed"), dict) else {}
        composed = {old: renames.get(new, new) for old, new in earlier.items()}
        card["renamed"] = {**composed, **{old: new for old, new in renames.items() if old not in earlier.values()}}
    if isinstance(card.get("command"), str):
        words = command_words(card["command"])
        kept = [_cut_path(w, 1) for w in words[1:]]  # file names only
        card["command"] = " ".join(map(_quoted, [_program(words[0]), *kept] if words else []))
    if isinstance(card.get("embeddings"), dict):
        card["embeddings"] = {k: data_relative(v) for k, v in card["embeddings"].items()}
    if isinstance(card.get("lexicon"), str):  # one file, or several joined by " + "
        card["lexicon"] = " + ".join(data_relative(path) for path in card["lexicon"].split(" + "))
    for key in ("train_data", "init_from"):  # a training file, the model it continued
        if isinstance(card.get(key), str):
            card[key] = without_machine(card[key])
    if isinstance(card.get("teachers"), list):  # the teachers' folders, without the machine's path above them
        card["teachers"] = [without_machine(t) for t in card["teachers"]]
    return card


def export_target(out_dir: Path, force: bool, source: str | os.PathLike | None = None) -> Path:
    """Where ``export`` may write: a new or empty directory, or — with ``force`` — one that holds nothing but a
    lexner model (:func:`lexner.models.base.model_target`), never a folder inside the model directory ``source``
    being exported (which would then hold more than a model).  Anything else is refused before any work, so no
    user file is ever deleted.  Both may start with ``~`` (the home folder, as Tagger.save and load read it)."""
    out_dir = expand_home(out_dir)
    target, model = out_dir.resolve(), None if source is None else expand_home(source).resolve()
    if model is not None and target != model and target.is_relative_to(model):
        raise ExportError(f"{out_dir} lies inside the model directory {source} being exported (a model folder "
                          "holds the model alone); give a folder outside it")
    ancestor = next((p for p in target.parents if p.exists()), None)  # missing folders above are made
    if ancestor is not None and not ancestor.is_dir():
        raise ExportError(f"{out_dir}: {ancestor} is a file, not a directory")
    try:
        filled = model_target(out_dir)  # its refusals name the folder as it was given, as the others do
    except ValueError as err:
        raise ExportError(str(err)) from None
    if filled and not force:
        raise ExportError(f"{out_dir} holds a lexner model; give --force to replace it")
    return target


def export_model(tagger: Tagger, out_dir: str | Path, half: bool | None = None, renames: dict[str, str] | None = None,
                 force: bool = False, runtime: str | None = None, piece_length: int | None = None,
                 onnx_graphs: Sequence[str] = ()) -> Path:
    """Write ``tagger`` into ``out_dir`` (see :func:`export_target` for where that is allowed) with its model
    card made portable (:func:`portable_card`), its types renamed by ``renames`` in every head
    (``{"NR": "PER"}``), its weights in float16 with ``half`` (None: as the model it was loaded from stores them,
    float32 for one built in memory) and, with ``runtime`` (one of ``lexner.runtimes.RUNTIMES``),
    how :func:`lexner.load` runs its encoder by default (:mod:`lexner.onnx_encoder`; None: as the source model
    says) and, with ``piece_length``, the length of the pieces it tags long texts in (:meth:`Tagger.set_piece_length`).
    ``onnx_graphs``: precisions ("float32", "int8") whose ONNX graph of the default head the copy carries
    (:func:`lexner.onnx_encoder.carried_graph`: a load with that runtime then builds none); the copy also
    carries the graph of its ONNX runtime and those the source carried.  Returns the directory written."""
    from .onnx_encoder import ONNX_INSTALL, bilstms, carried_graph, graph_bytes, graphs_can_be_built
    from .runtimes import GRAPH_FILES, ONNX_PRECISIONS, RUNTIMES

    if runtime is not None and runtime not in RUNTIMES:
        raise ExportError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if unknown := [p for p in onnx_graphs if p not in GRAPH_FILES]:
        raise ExportError(f"an ONNX graph's precision must be one of {', '.join(GRAPH_FILES)}, got {unknown[0]!r}")
    asked = {*onnx_graphs, *([ONNX_PRECISIONS[runtime]] if runtime in ONNX_PRECISIONS else [])}
    if runtime not in (None, "torch") and not bilstms(tagger):
        raise ExportError(f"runtime {runtime!r} runs a BiLSTM encoder; {tagger.name} has none")
    if asked and not bilstms(tagger):
        raise ExportError(f"an ONNX graph runs a BiLSTM encoder; {tagger.name} has none")
    if asked and not graphs_can_be_built():
        raise ExportError(f"an ONNX graph is built with the onnx extra: {ONNX_INSTALL}")
    kept = tagger.metadata.get("runtime") if runtime is None else None  # the source's runtime, kept
    inherited = {p for p in GRAPH_FILES if carried_graph(tagger, p) is not None}  # and graphs: where possible
    inherited = (inherited | ({ONNX_PRECISIONS[kept]} if kept in ONNX_PRECISIONS else set())) - asked
    if inherited and not graphs_can_be_built():
        log.warning("the copy carries no ONNX graph, unlike %s: building one needs the onnx extra (%s)",
                    tagger.source, ONNX_INSTALL)
        inherited = set()
    graphs = sorted(asked | inherited)
    target = export_target(Path(out_dir), force, tagger.source)
    if piece_length is not None:
        tagger.set_piece_length(piece_length)
    renames = dict(renames or {})
    if renames:
        tagger.featurizer.rename_types(renames)
    extra = dict(tagger.metadata)
    if isinstance(extra.get("card"), dict) or renames:  # a model saved without a card gets one for its renames
        extra["card"] = portable_card(extra.get("card") if isinstance(extra.get("card"), dict) else {}, renames)
    if runtime == "torch":
        extra.pop("runtime", None)
    elif runtime is not None:
        extra["runtime"] = runtime
    def add_graphs(folder: Path) -> None:  # built from the weights as saved (float16 ones as a load gives them)
        from .fileio import write_bytes

        quiet = logging.getLogger(Tagger.__module__)  # its config's warnings were said when the source loaded
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            saved = Tagger.load(folder)  # the hidden folder being written, which the user never sees
        finally:
            quiet.setLevel(level)
        for precision in graphs:
            write_bytes(folder / GRAPH_FILES[precision], graph_bytes(saved, None, precision))

    # whole, graphs included, or not at all; half None: as the source stores them
    tagger.save(target, extra=extra, half=half, more=add_graphs if graphs else None)
    return target
