"""Copy the outcome of finished training runs into one committed result file per run.

    python benchmarks/collect.py runs/weibo_bilstm/seed1 runs/weibo_bilstm/seed2 ... --name weibo_bilstm_crf

Each run directory (written by ``lexner train --out DIR``) gives ``benchmarks/results/<name>/seed<N>.json``
holding: the training command (from the model card), the training settings, the per-epoch log, the best
model's dev/test scores, the lexner commit it was trained at (when the model card records it), and the
machine it was collected on (the same machine the run used: runs are collected where they ran; the machine's
date and commit are those of the collection).  An existing result file is replaced only with ``--force``; two
runs of one seed (one file) are refused; either way nothing is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import fail, machine_info, recorded_command, recorded_word, write_result  # noqa: E402

from lexner.export import command_words  # noqa: E402
from lexner.fileio import DataFormatError, read_json  # noqa: E402
from lexner.train import epoch_records  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def collect(run: Path) -> dict:
    """The result record of one finished run directory; a missing or damaged one raises ``OSError`` or
    ``DataFormatError`` naming it."""
    if not run.is_dir():
        raise FileNotFoundError(f"{run}: no such run directory (lexner train --out DIR)")
    config = read_json(run / "model" / "config.json")
    train_config = read_json(run / "train_config.json")
    results = read_json(run / "results.json")
    try:
        if not isinstance(train_config["seed"], int):  # it names the result file
            raise TypeError(f"train_config.json's seed is {train_config['seed']!r}, not a whole number")
        return {
            "model": config["model"],
            "model_config": config["config"],
            # the training command; older cards held full paths (recorded_command: none of this machine's)
            "command": recorded_command(command_words(config["card"].get("command") or "")) or None,
            "trained_at_commit": (config["card"].get("lexner") or {}).get("commit"),
            "train_data": recorded_word(config["card"].get("train_data") or "") or None,  # a file outside: …/
            "train_config": train_config,
            "results": results,
            "log": epoch_records(run / "log.jsonl"),
            "machine": machine_info(),
        }
    except (KeyError, TypeError, AttributeError) as err:  # JSON, but not what lexner train writes
        raise DataFormatError(run, None, f"not a finished lexner train run ({type(err).__name__}: {err})") from None


def collect_runs(runs: list[Path], name: str, note: str = "", results: Path = RESULTS,
                 force: bool = False) -> list[Path]:
    """Write ``results/<name>/seed<N>.json`` for each run directory; returns the paths written.  Every run is
    read and every target checked before anything is written: a missing or damaged run (``OSError``,
    ``DataFormatError``), two runs of one seed, or (unless ``force``) a result file that exists already
    (``FileExistsError``) writes none."""
    out = results / name
    targets: dict[Path, Path] = {}
    records = []
    for run in runs:
        record = collect(run)
        path = out / f"seed{record['train_config']['seed']}.json"
        if path in targets:
            raise FileExistsError(f"{targets[path]} and {run} both ran seed {record['train_config']['seed']}: "
                                  f"both would be {path}; collect them under different --name")
        if path.exists() and not force:
            raise FileExistsError(f"{path} exists (collected before); --force replaces it")
        targets[path] = run
        records.append((run, path, record))
    written = []
    for run, path, record in records:
        record["note"] = note
        write_result(path, record, indent=1)
        print(f"{run} -> {path}")
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--name", required=True, help="result folder, e.g. weibo_bilstm_crf")
    parser.add_argument("--note", default="", help="free text stored with every result (e.g. 'on a lent H100')")
    parser.add_argument("--results", type=Path, default=RESULTS, help="results folder (default: benchmarks/results)")
    parser.add_argument("--force", action="store_true", help="replace result files that exist")
    args = parser.parse_args()
    try:
        collect_runs(args.runs, args.name, args.note, args.results, force=args.force)
    except (OSError, DataFormatError) as err:
        fail(str(err))


if __name__ == "__main__":
    main()
