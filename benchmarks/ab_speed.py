"""Tagging speed of this tree against another revision, both in one process, in alternating rounds.

    python benchmarks/ab_speed.py --compare 3e21ba9 --rounds 7 --out benchmarks/results/ab_speed_vs_3e21ba9.json

On this 2-core VM the speed of a process drifts by 10-20 % within minutes, so two revisions measured one after
the other (even alternating processes, ``tag_stages.py --rounds``) differ by more than a change of a few per
cent.  Here lexner at ``REV`` is imported beside this tree's (its package extracted under another name), both
load the same model (this tree's bundled one unless ``--model``) with the same runtime, one thread, and each
round times both in turn, the order alternating: ``tag()`` one sentence per call over the first ``--single``
MSRA test sentences, then ``tag_batch`` over all of them (batch 64).  A round's ratio compares two timings
taken seconds apart; the result gives each round's ratios and their median.  The entities of the two sides
are compared too (texts whose entities differ).
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import lexner_at, machine_info, write_result  # noqa: E402

BASELINE = "lexner_baseline"  # the name REV's package is imported under


def import_baseline(folder: str, into: str):
    """REV's ``lexner`` package (extracted in ``folder``) imported as :data:`BASELINE`: a link of that name to
    it in ``into`` (its modules import each other relatively, so they stay within the copy)."""
    link = Path(into) / BASELINE
    link.symlink_to(Path(folder) / "lexner", target_is_directory=True)
    sys.path.insert(0, into)
    return importlib.import_module(BASELINE)


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", required=True, metavar="REV", help="the git revision to measure beside")
    parser.add_argument("--runtime", default="onnx-int8")
    parser.add_argument("--model", type=Path, help="model directory (default: this tree's bundled model)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--single", type=int, default=1000, help="sentences tagged one per tag() call")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import torch

    import lexner
    from lexner.api import DEFAULT_MODEL
    from lexner.data import load_dataset

    torch.set_num_threads(1)
    model = args.model or DEFAULT_MODEL
    texts = [s.text for s in load_dataset("msra", "test")]
    chars_single, chars_all = sum(map(len, texts[: args.single])), sum(map(len, texts))
    with lexner_at(args.compare) as (commit, folder), tempfile.TemporaryDirectory() as links:
        baseline = import_baseline(folder, links)
        sides = {commit: baseline.load(model, runtime=args.runtime), "this tree": lexner.load(model, runtime=args.runtime)}
        outputs = [[[(e.start, e.end, e.label) for e in found] for found in tagger.tag_batch(texts, args.batch_size)]
                   for tagger in sides.values()]  # also the warm-up; as tuples (the two Entity classes never equal)
        differ = sum(a != b for a, b in zip(*outputs))
        rounds = []
        for r in range(args.rounds):
            order = list(sides) if r % 2 == 0 else list(sides)[::-1]
            row = {}
            for name in order:
                tagger = sides[name]
                single = timed(lambda: [tagger.tag(text) for text in texts[: args.single]])
                batched = timed(lambda: tagger.tag_batch(texts, batch_size=args.batch_size))
                row[name] = {"single_chars_per_second": round(chars_single / single),
                             "batched_chars_per_second": round(chars_all / batched)}
            for kind in ("single", "batched"):
                key = f"{kind}_chars_per_second"
                row[f"{kind}_ratio"] = round(row["this tree"][key] / row[commit][key], 4)
            print(r + 1, row, flush=True)
            rounds.append(row)
    summary = {f"{kind}_ratio_median": statistics.median(row[f"{kind}_ratio"] for row in rounds)
               for kind in ("single", "batched")}
    summary.update({f"{name} {kind}_chars_per_second_median": statistics.median(row[name][f"{kind}_chars_per_second"]
                                                                                for row in rounds)
                    for name in sides for kind in ("single", "batched")})
    print(summary)
    write_result(args.out, {"benchmark": "ab_speed", "model": str(args.model or "bundled"), "runtime": args.runtime,
                            "texts": "msra/test", "sentences_single": args.single, "sentences_batched": len(texts),
                            "batch_size": args.batch_size, "compare": commit,
                            "texts_whose_entities_differ": differ, "summary": summary, "rounds": rounds,
                            "machine": machine_info()})


if __name__ == "__main__":
    main()
