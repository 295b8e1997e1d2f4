"""Summarise committed training results: test P/R/F1 per seed and mean ± std per result folder.

    python benchmarks/summarize.py            # prints a Markdown table from benchmarks/results/*/seed*.json
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # lexner from this checkout
from lexner.export import command_words  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def selected_on_test(record: dict) -> bool:
    """Whether a run chose its epoch on its test file (``--dev`` and ``--test`` the same file: the papers' MSRA
    protocol, run once to explain a gap — not a result row)."""
    words = command_words(record.get("command") or "")
    given = {words[i]: os.path.normpath(words[i + 1]) for i in range(len(words) - 1) if words[i] in ("--dev", "--test")}
    return "--dev" in given and given.get("--dev") == given.get("--test")


def main() -> None:
    rows = ["| result | seed | best epoch / run | train time (s) | test P | test R | test F1 | NE F1 | NM F1 |",
            "|---|---|---|---|---|---|---|---|---|"]
    for folder in sorted(p for p in RESULTS.iterdir() if p.is_dir()):
        f1s = []
        for path in sorted(folder.glob("seed*.json")):
            rec = json.loads(path.read_text(encoding="utf-8"))
            res = rec["results"]
            test = res.get("test")
            if test is None or "micro" not in test:  # no test split, or a multi-task run (scores per task)
                continue
            if not selected_on_test(rec):  # shown, but no part of a mean
                f1s.append(test["micro"]["f1"])
            ne, nm = (pct(test[k]["f1"]) if k in test else "-" for k in ("NE", "NM"))
            name = f"{folder.name} (selected on test: not a result)" if selected_on_test(rec) else folder.name
            rows.append(f"| {name} | {rec['train_config']['seed']} | {res['best_epoch']} / {res['epochs_run']} "
                        f"| {res['train_seconds']:.0f} | {pct(test['micro']['precision'])} "
                        f"| {pct(test['micro']['recall'])} | {pct(test['micro']['f1'])} | {ne} | {nm} |")
        if len(f1s) > 1:
            rows.append(f"| **{folder.name}** | mean ± std of {len(f1s)} | | | | | "
                        f"**{100 * statistics.mean(f1s):.2f} ± {100 * statistics.stdev(f1s):.2f}** | | |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
