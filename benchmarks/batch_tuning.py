"""``tag_batch`` throughput of one model over a grid of batch sizes and token caps, per runtime, in one run.

    python benchmarks/batch_tuning.py --out benchmarks/results/batch_tuning_default_cpu.json

One process tags all of MSRA test with ``tag_batch(texts, batch_size=B)`` under ``tagger.batch_tokens = T``
for every (runtime, B, T) in turn, ``--repeat`` rounds; each setting's best round counts (load on a shared
machine drifts, and the rounds interleave the settings).  This is how the defaults of ``tag_batch`` (batch
size) and ``Tagger.batch_tokens`` are chosen: the setting with the highest throughput across runtimes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a model directory (default: the bundled model)")
    parser.add_argument("--runtimes", nargs="+", default=["torch", "onnx-int8"],
                        choices=["torch", "onnx", "onnx-int8"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[16, 32, 64, 128])
    parser.add_argument("--batch-tokens", nargs="+", type=int, default=[1024, 2048, 4096, 8192])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--limit", type=int, default=0, help="first N MSRA test sentences (0: all)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import torch

    import lexner
    from lexner.data import load_dataset
    from machine import machine_info, write_result

    torch.set_num_threads(args.threads)
    texts = [s.text for s in load_dataset("msra", "test")]
    texts = texts[: args.limit] if args.limit else texts
    chars = sum(map(len, texts))
    onnx = {"torch": False, "onnx": "float32", "onnx-int8": "int8"}
    taggers = {runtime: lexner.load(args.model, onnx=onnx[runtime]) for runtime in args.runtimes}
    settings = [(r, b, t) for r in args.runtimes for b in args.batch_sizes for t in args.batch_tokens]
    default_tokens = next(iter(taggers.values())).batch_tokens  # the class default, before the grid sets it
    best: dict[tuple, float] = {}
    for tagger in taggers.values():
        tagger.tag_batch(texts[:64])  # warm-up, untimed
    for _ in range(args.repeat):
        for runtime, batch_size, tokens in settings:
            tagger = taggers[runtime]
            tagger.batch_tokens = tokens
            started = time.perf_counter()
            tagger.tag_batch(texts, batch_size=batch_size)
            seconds = time.perf_counter() - started
            best[runtime, batch_size, tokens] = min(best.get((runtime, batch_size, tokens), float("inf")), seconds)
            print(json.dumps({"runtime": runtime, "batch_size": batch_size, "batch_tokens": tokens,
                              "chars_per_second": round(chars / seconds)}), file=sys.stderr, flush=True)
    rows = [{"runtime": r, "batch_size": b, "batch_tokens": t, "chars_per_second": round(chars / best[r, b, t])}
            for r, b, t in settings]
    for row in rows:
        print(json.dumps(row))
    result = {"benchmark": "batch_tuning", "texts": "msra/test", "sentences": len(texts), "characters": chars,
              "model": args.model or "bundled", "torch_threads": args.threads, "repeat": args.repeat,
              "defaults": {"batch_tokens": default_tokens}, "rows": rows,
              "machine": machine_info()}
    write_result(args.out, result)


if __name__ == "__main__":
    main()
