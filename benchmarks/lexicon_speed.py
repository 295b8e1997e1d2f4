"""Lexicon matching throughput: characters per second of ``Lexicon.match`` on the MSRA test text.

    python benchmarks/lexicon_speed.py [--lexicon PATH] [--repeat 5] [--out benchmarks/results/lexicon_speed.json]

The default lexicon is the word vocabulary of <data root>/embeddings/word.50d.vec.xz (the lexicon the
lattice taggers use).  Timing covers matching only (the automaton is built before the clock starts); the
build time is reported separately.  The best of ``--repeat`` passes is reported.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_info, write_result  # noqa: E402

from lexner.data import data_root, load_dataset  # noqa: E402
from lexner.lexicon import Lexicon  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lexicon", type=Path, default=None)
    parser.add_argument("--dataset", default="msra")
    parser.add_argument("--split", default="test")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N sentences (0 = all)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    path = args.lexicon or data_root() / "embeddings" / "word.50d.vec.xz"
    started = time.perf_counter()
    lexicon = Lexicon.from_path(path)
    load_seconds = time.perf_counter() - started
    started = time.perf_counter()
    lexicon.match("")  # builds the automaton
    build_seconds = time.perf_counter() - started

    texts = [s.text for s in load_dataset(args.dataset, args.split)]
    if args.limit:
        texts = texts[: args.limit]
    chars = sum(map(len, texts))
    timings, matches = [], 0
    for _ in range(args.repeat):
        started = time.perf_counter()
        matches = sum(len(lexicon.match(t)) for t in texts)
        timings.append(time.perf_counter() - started)
    best = min(timings)
    result = {
        "benchmark": "lexicon_matching",
        "lexicon": str(args.lexicon) if args.lexicon else "$LEXNER_DATA/embeddings/word.50d.vec.xz",
        "lexicon_words": len(lexicon),
        "texts": f"{args.dataset}/{args.split}",
        "sentences": len(texts),
        "characters": chars,
        "matches": matches,
        "matches_per_character": round(matches / chars, 3),
        "load_seconds": round(load_seconds, 2),
        "automaton_build_seconds": round(build_seconds, 2),
        "seconds_per_pass": [round(t, 4) for t in timings],
        "chars_per_second": round(chars / best),
        "machine": machine_info(),
    }
    print(json.dumps(result, indent=2, ensure_ascii=False))
    write_result(args.out, result)


if __name__ == "__main__":
    main()
