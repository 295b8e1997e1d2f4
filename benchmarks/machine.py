"""What every result file records about where and how it was produced."""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, NoReturn


REPOSITORY = Path(__file__).resolve().parent.parent
OUTSIDE = "…"  # what stands for the folders of a path outside the repository and the data root


def recorded_path(path: str | os.PathLike) -> str:
    """A path as result files record it and REPORT.md shows it, without this machine's folders: a relative path
    as given (the scripts run from the repository's root); under the data root as ``$LEXNER_DATA/...``; under
    the repository relative to it; anywhere else :data:`OUTSIDE` and at most its last two names, never one of
    its first two, where user names and a machine's layout are (``/scratch/me/b32/model`` → ``…/b32/model``,
    ``/users/me/model`` → ``…/model``), unless it has no other (``/tmp/model`` → ``…/model``), so that a reader
    still tells one outside model from another."""
    text = str(path)
    if not os.path.isabs(text):
        return text
    from lexner.data import data_root

    for candidate in (Path(os.path.normpath(text)), Path(text).resolve()):
        for root, prefix in ((data_root().absolute(), "$LEXNER_DATA/"), (REPOSITORY, "")):
            for base in (root, root.resolve()):
                if candidate.is_relative_to(base):
                    inside = candidate.relative_to(base).as_posix()
                    return prefix + inside if inside != "." else prefix.rstrip("/") or "."
    names = Path(os.path.normpath(text)).parts[1:]
    return "/".join([OUTSIDE, *(names[2:][-2:] or names[-1:])])


def recorded_word(word: str) -> str:
    """A command-line word with each absolute path in it as :func:`recorded_path` writes it: the word itself, or
    what follows ``NAME=`` or ``--option=``, each of a comma-separated list (``ens=/a/m1,/a/m2``)."""
    return re.sub(r"(?:^|(?<=[=,]))/[^,]*", lambda found: recorded_path(found.group()), word)


def recorded_command(argv: Iterable[str]) -> str:
    """``argv`` as result files record it: :func:`lexner.export.command_line` (quoted, the lexner program as
    ``lexner``) of its words with every path as :func:`recorded_path` writes it."""
    from lexner.export import command_line

    return command_line([recorded_word(word) for word in argv])


def portable_command(command: str) -> str:
    """A recorded command with the paths that older result files kept raw (``--out /scratch/x.json``) as
    :func:`recorded_path` writes them; a command without such a path as it is, byte for byte."""
    from lexner.export import command_words

    words = command_words(command)
    return command if [recorded_word(w) for w in words] == words else recorded_command(words)


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def lexner_tree() -> Path:
    """The folder holding the imported ``lexner`` package: the tree whose code runs, whose commit
    :func:`machine_info` records, and which a child process measuring "this tree" imports (:func:`tree_env`)."""
    import lexner

    return Path(lexner.__file__).resolve().parent.parent


def tree_env(tree: str | os.PathLike | None = None) -> dict[str, str]:
    """The environment for a child process that imports lexner from ``tree`` (default: :func:`lexner_tree`, this
    process's own), whatever PYTHONPATH or an installed lexner would otherwise give it."""
    return {**os.environ, "PYTHONPATH": str(tree or lexner_tree())}


def _commit() -> str:
    """The commit of the imported lexner's checkout (``+dirty`` with uncommitted changes), not that of the working
    directory, which may be another repository or none."""
    from lexner.export import provenance

    return provenance()["commit"] or "unknown"


def _bounded(convert, holds, wanted: str, name: str):
    """An argparse type: ``convert(text)``, refused unless ``holds`` of it (``argument --seconds: must be a number >
    0, got '0'``)."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not holds(value):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}")
        return value

    parse.__name__ = name
    return parse


# argparse types for the scripts' counts and durations (0 rounds, 0 seconds or 0 threads measure nothing, and
# some divided by zero); count: a --limit whose 0 means "all"
positive_int = _bounded(int, lambda n: n >= 1, "a whole number ≥ 1", "positive_int")
positive_float = _bounded(float, lambda x: 0 < x < math.inf, "a number > 0", "positive_float")
count = _bounded(int, lambda n: n >= 0, "a whole number ≥ 0", "count")


def fail(message: str) -> NoReturn:
    """End the script with a one-line error (exit code 1) that names the script: ``peers.py: message``."""
    sys.exit(f"{Path(sys.argv[0]).name}: {message}")


def load_model(folder=None, **options):
    """``lexner.load(folder or None, **options)`` (the bundled model for none); a missing or damaged model
    directory ends the script with a one-line error naming it (:func:`fail`), never a traceback."""
    import lexner

    try:
        return lexner.load(folder or None, **options)
    except (OSError, ValueError, ImportError) as err:  # no such directory, ModelFormatError, a runtime not installed
        fail(f"cannot load a model: {err}")


def require(module: str, extra: str):
    """``module``, imported; not installed, the script ends with one line naming the pip extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        fail(f"needs {module}, which is not installed ({err}): pip install -e '.[{extra}]'")


def named_model(spec: str) -> tuple[str, str]:
    """argparse type of a ``--models NAME=DIR`` word: ``(NAME, DIR)``, DIR empty for the bundled model where a
    script takes that.  A word without ``NAME=`` is refused (a bare directory was taken as the bundled model)."""
    name, sep, folder = spec.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"takes NAME=DIR (NAME= alone: the bundled model), got {spec!r}")
    return name, folder


def named_model_dir(spec: str) -> tuple[str, str]:
    """:func:`named_model` where a model directory is required (a script that measures a directory)."""
    name, folder = named_model(spec)
    if not folder:
        raise argparse.ArgumentTypeError(f"takes NAME=DIR with a model directory, got {spec!r}")
    return name, folder


def machine_info() -> dict:
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": _commit(),
        "command": recorded_command([os.path.basename(sys.executable)] + sys.argv),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        # runnable processes averaged over 1, 5 and 15 minutes when the result was written: how much other work
        # shared the machine (on the 2-core VM, trainings beside a benchmark show as ~2 or more)
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    return info


def write_result(path: Path | None, result: dict, indent: int = 2) -> None:
    """Write a result file (JSON, UTF-8, its folders made) atomically: a failure part way leaves the previous
    file, never a truncated one; no path: nothing is written."""
    from lexner.fileio import write_bytes

    if path is None:
        return
    write_bytes(path, (json.dumps(result, indent=indent, ensure_ascii=False) + "\n").encode("utf-8"))


@contextmanager
def lexner_at(revision: str) -> Iterator[tuple[str, str]]:
    """The ``lexner`` package as it was at git ``revision``, extracted (``git archive``) into a temporary folder:
    yields ``(short commit, folder)``; a process with ``PYTHONPATH=folder`` (and a working directory outside the
    checkout) imports that lexner.  For measuring an older commit side by side with this tree."""
    repo = Path(__file__).resolve().parent.parent
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", revision], check=True,
                            capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="lexner-baseline-") as folder:
        archive = subprocess.run(["git", "-C", str(repo), "archive", commit, "lexner"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
        yield commit, folder


def alternating(first, second, repeat: int) -> Iterator[tuple[int, object]]:
    """``(k, side)`` for ``repeat`` pairs of two sides, the k-th pair in the order first–second for even k and
    second–first for odd k, so that neither side always runs first: on a shared VM the same network measured
    0.93× when it ran second and 1.17× when it ran first (``infer_speed_ft_default_t3_vs_default*.json``)."""
    for k in range(repeat):
        for side in (first, second) if k % 2 == 0 else (second, first):
            yield k, side


def paired_ratio(values: Iterable[tuple[object, object, float]], numerator: object, denominator: object) -> float:
    """The median over pairs of ``numerator``'s value over ``denominator``'s: ``values`` are ``(pair, side,
    value)``.  A ratio of the two sides' medians pairs measurements from different moments, which a busy machine
    makes unlike (1.14× against a paired 1.00 in ``infer_speed_default_cpu_vs_960d0b4.json``)."""
    import statistics

    pairs: dict[object, dict[object, float]] = {}
    for pair, side, value in values:
        pairs.setdefault(pair, {})[side] = value
    return statistics.median(p[numerator] / p[denominator] for p in pairs.values()
                             if numerator in p and denominator in p)
