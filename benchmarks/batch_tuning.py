"""``tag_batch`` throughput of one model over a grid of batch sizes and token caps, per runtime, in one run.

    python benchmarks/batch_tuning.py --out benchmarks/results/batch_tuning_default_cpu.json

One process tags all of MSRA test with ``tag_batch(texts, batch_size=B)`` under ``tagger.batch_tokens = T``
for every (runtime, B, T) in turn, ``--repeat`` rounds; each setting's best round counts (load on a shared
machine drifts, and the rounds interleave the settings).  This is how the defaults of ``tag_batch`` (batch
size) and ``Tagger.batch_tokens`` are chosen: the setting with the highest throughput across runtimes.

``--groupings characters tokens`` adds how pieces are grouped into batches as a dimension of the grid
(``Tagger.tokens_include_words`` False / True; ``model``: the model's own), and records for each grouping, at
the default batch size and token cap, how many padded positions the batches hold per real character and per
real matched word.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import count, positive_int  # noqa: E402

GROUPINGS = {"model": None, "characters": False, "tokens": True}  # -> Tagger.tokens_include_words


def padding(tagger, texts: list[str], batch_size: int) -> dict[str, float]:
    """Padded positions of ``tag_batch(texts)``'s batches per real character and per real matched word."""
    sizes = {"characters": [0, 0], "words": [0, 0]}  # [padded, real]
    decode = tagger.decode

    def counting(batch):
        sizes["characters"][0] += batch.mask.numel()
        sizes["characters"][1] += int(batch.mask.sum())
        if batch.word_mask is not None:
            sizes["words"][0] += batch.word_mask.numel()
            sizes["words"][1] += int(batch.word_mask.sum())
        return decode(batch)

    tagger.decode = counting
    try:
        tagger.tag_batch(texts, batch_size=batch_size)
    finally:
        del tagger.decode
    return {kind: round(padded / real - 1, 4) for kind, (padded, real) in sizes.items() if real}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a model directory (default: the bundled model)")
    parser.add_argument("--runtimes", nargs="+", default=["torch", "onnx-int8"],
                        choices=["torch", "onnx", "onnx-int8"])
    parser.add_argument("--batch-sizes", nargs="+", type=positive_int, default=[16, 32, 64, 128])
    parser.add_argument("--batch-tokens", nargs="+", type=positive_int, default=[1024, 2048, 4096, 8192])
    parser.add_argument("--groupings", nargs="+", default=["model"], choices=list(GROUPINGS))
    parser.add_argument("--repeat", type=positive_int, default=3)
    parser.add_argument("--limit", type=count, default=0, help="first N MSRA test sentences (0: all)")
    parser.add_argument("--threads", type=positive_int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import torch

    from lexner.data import load_dataset
    from machine import load_model, machine_info, recorded_path, write_result

    torch.set_num_threads(args.threads)
    texts = [s.text for s in load_dataset("msra", "test")]
    texts = texts[: args.limit] if args.limit else texts
    chars = sum(map(len, texts))
    onnx = {"torch": False, "onnx": "float32", "onnx-int8": "int8"}
    taggers = {runtime: load_model(args.model, onnx=onnx[runtime]) for runtime in args.runtimes}
    settings = [(r, g, b, t) for r in args.runtimes for g in args.groupings for b in args.batch_sizes
                for t in args.batch_tokens]
    first = next(iter(taggers.values()))
    default_tokens = first.batch_tokens  # the class default, before the grid sets it
    default_size = inspect.signature(first.tag_batch).parameters["batch_size"].default
    model_grouping = first.tokens_include_words
    padded = {}
    for grouping in args.groupings:
        first.tokens_include_words = model_grouping if GROUPINGS[grouping] is None else GROUPINGS[grouping]
        padded[grouping] = padding(first, texts, default_size)
    best: dict[tuple, float] = {}
    for tagger in taggers.values():
        tagger.tag_batch(texts[:64])  # warm-up, untimed
    for _ in range(args.repeat):
        for runtime, grouping, batch_size, tokens in settings:
            tagger = taggers[runtime]
            tagger.batch_tokens = tokens
            tagger.tokens_include_words = model_grouping if GROUPINGS[grouping] is None else GROUPINGS[grouping]
            started = time.perf_counter()
            tagger.tag_batch(texts, batch_size=batch_size)
            seconds = time.perf_counter() - started
            key = runtime, grouping, batch_size, tokens
            best[key] = min(best.get(key, float("inf")), seconds)
            print(json.dumps({"runtime": runtime, "grouping": grouping, "batch_size": batch_size,
                              "batch_tokens": tokens, "chars_per_second": round(chars / seconds)}),
                  file=sys.stderr, flush=True)
    rows = [{"runtime": r, "grouping": g, "batch_size": b, "batch_tokens": t,
             "chars_per_second": round(chars / best[r, g, b, t])} for r, g, b, t in settings]
    for row in rows:
        print(json.dumps(row))
    result = {"benchmark": "batch_tuning", "texts": "msra/test", "sentences": len(texts), "characters": chars,
              "model": recorded_path(args.model) if args.model else "bundled", "torch_threads": args.threads,
              "repeat": args.repeat,
              "defaults": {"batch_size": default_size, "batch_tokens": default_tokens,
                           "tokens_include_words": model_grouping},
              "padding_per_real": padded, "rows": rows,
              "machine": machine_info()}
    write_result(args.out, result)


if __name__ == "__main__":
    main()
