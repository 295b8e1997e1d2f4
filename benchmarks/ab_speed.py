"""Tagging speed of this tree against another revision, both in one process, in alternating rounds.

    python benchmarks/ab_speed.py --compare 3e21ba9 --rounds 7 --out benchmarks/results/ab_speed_vs_3e21ba9.json

On this 2-core VM the speed of a process drifts by 10-20 % within minutes, so two revisions measured one after
the other (even alternating processes, ``tag_stages.py --rounds``) differ by more than a change of a few per
cent.  Here lexner at ``REV`` is imported beside this tree's (its package extracted under another name), both
load the same model (this tree's bundled one unless ``--model``) with the same runtime, one thread, and each
round times both in turn, the order alternating: ``tag()`` one sentence per call over the first ``--single``
MSRA test sentences, then ``tag_batch`` over all of them (batch 64) — both in chunks (50 sentences, 1,024 texts)
that the two sides take in turn, so that the VM's drift, which moves within seconds, meets both alike.  Wall and
CPU seconds (``time.process_time``: a process waiting for a core accrues none) are both kept; the result gives
each round's ratios and their median.  The entities of the two sides
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

from machine import lexner_at, load_model, machine_info, positive_int, recorded_path, write_result  # noqa: E402

BASELINE = "lexner_baseline"  # the name REV's package is imported under
SINGLE_CHUNK = 50  # sentences one side tags one per call before the other side takes the same ones
BATCHED_CHUNK = 1024  # texts one side tags with tag_batch before the other side takes the same ones


def import_baseline(folder: str, into: str):
    """REV's ``lexner`` package (extracted in ``folder``) imported as :data:`BASELINE`: a link of that name to
    it in ``into`` (its modules import each other relatively, so they stay within the copy)."""
    link = Path(into) / BASELINE
    link.symlink_to(Path(folder) / "lexner", target_is_directory=True)
    sys.path.insert(0, into)
    return importlib.import_module(BASELINE)


def interleaved(sides: dict, chunks: list, work, first: int) -> dict[str, tuple[float, float]]:
    """Wall and CPU seconds of ``work(tagger, chunk)`` over all ``chunks`` for each side, the sides taking each
    chunk in turn (the order alternating from chunk to chunk, starting with side ``first``): both meet the VM's
    drift, which moves within seconds, in the same proportion."""
    spent = {name: [0.0, 0.0] for name in sides}
    names = list(sides)
    for k, chunk in enumerate(chunks):
        for name in (names if (k + first) % 2 == 0 else names[::-1]):
            wall, cpu = time.perf_counter(), time.process_time()
            work(sides[name], chunk)
            spent[name][0] += time.perf_counter() - wall
            spent[name][1] += time.process_time() - cpu
    return {name: (wall, cpu) for name, (wall, cpu) in spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", required=True, metavar="REV", help="the git revision to measure beside")
    parser.add_argument("--runtime", default="onnx-int8")
    parser.add_argument("--model", type=Path, help="model directory (default: this tree's bundled model)")
    parser.add_argument("--rounds", type=positive_int, default=7)
    parser.add_argument("--single", type=positive_int, default=1000, help="sentences tagged one per tag() call")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import torch

    from lexner.api import DEFAULT_MODEL
    from lexner.data import load_dataset

    torch.set_num_threads(1)
    model = args.model or DEFAULT_MODEL
    texts = [s.text for s in load_dataset("msra", "test")]
    chars_single, chars_all = sum(map(len, texts[: args.single])), sum(map(len, texts))
    with lexner_at(args.compare) as (commit, folder), tempfile.TemporaryDirectory() as links:
        baseline = import_baseline(folder, links)
        ours = load_model(model, runtime=args.runtime)  # first: a missing model is a clean error
        sides = {commit: baseline.load(model, runtime=args.runtime), "this tree": ours}
        outputs = [[[(e.start, e.end, e.label) for e in found] for found in tagger.tag_batch(texts, args.batch_size)]
                   for tagger in sides.values()]  # also the warm-up; as tuples (the two Entity classes never equal)
        differ = sum(a != b for a, b in zip(*outputs))
        single_chunks = [texts[k : min(k + SINGLE_CHUNK, args.single)] for k in range(0, args.single, SINGLE_CHUNK)]
        batched_chunks = [texts[k : k + BATCHED_CHUNK] for k in range(0, len(texts), BATCHED_CHUNK)]
        rounds = []
        for r in range(args.rounds):
            single = interleaved(sides, single_chunks, lambda tagger, chunk: [tagger.tag(text) for text in chunk], r)
            batched = interleaved(sides, batched_chunks,
                                  lambda tagger, chunk: tagger.tag_batch(chunk, args.batch_size), r)
            row = {name: {"single_chars_per_second": round(chars_single / single[name][0]),
                          "batched_chars_per_second": round(chars_all / batched[name][0]),
                          "single_cpu_chars_per_second": round(chars_single / single[name][1]),
                          "batched_cpu_chars_per_second": round(chars_all / batched[name][1])} for name in sides}
            for kind in ("single", "batched", "single_cpu", "batched_cpu"):
                key = f"{kind}_chars_per_second"
                row[f"{kind}_ratio"] = round(row["this tree"][key] / row[commit][key], 4)
            print(r + 1, row, flush=True)
            rounds.append(row)
    summary = {f"{kind}_ratio_median": statistics.median(row[f"{kind}_ratio"] for row in rounds)
               for kind in ("single", "batched", "single_cpu", "batched_cpu")}
    summary.update({f"{name} {kind}_chars_per_second_median": statistics.median(row[name][f"{kind}_chars_per_second"]
                                                                                for row in rounds)
                    for name in sides for kind in ("single", "batched")})
    print(summary)
    write_result(args.out, {"benchmark": "ab_speed", "model": recorded_path(args.model) if args.model else "bundled",
                            "runtime": args.runtime,
                            "texts": "msra/test", "sentences_single": args.single, "sentences_batched": len(texts),
                            "batch_size": args.batch_size, "compare": commit,
                            "texts_whose_entities_differ": differ, "summary": summary, "rounds": rounds,
                            "machine": machine_info()})


if __name__ == "__main__":
    main()
