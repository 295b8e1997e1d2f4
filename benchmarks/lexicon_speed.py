"""Lexicon matching throughput: characters per second of ``Lexicon.match`` on the MSRA test text.

    python benchmarks/lexicon_speed.py [--lexicon PATH] [--repeat 5] [--out benchmarks/results/lexicon_speed.json]

``--many``: ``Lexicon.match_many`` instead, its two ways side by side — the automaton text by text and the
numpy trie — on blocks of 1 to 4,096 consecutive test texts, the two taking each block in turn (CPU seconds,
best of ``--repeat`` passes over the text): where the trie starts to pay (``lexner.lexicon.TRIE_MIN_CHARS``).

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

from machine import count, machine_info, positive_int, recorded_path, write_result  # noqa: E402

from lexner.data import data_root, load_dataset  # noqa: E402
from lexner.lexicon import Lexicon  # noqa: E402


def trie_build_seconds(lexicon: Lexicon) -> float:
    import lexner.lexicon as module

    module.TRIE_MIN_CHARS, kept = 0, module.TRIE_MIN_CHARS
    try:
        started = time.perf_counter()
        lexicon.match_many(["北京"])  # builds the trie
        return time.perf_counter() - started
    finally:
        module.TRIE_MIN_CHARS = kept


def match_many_rows(lexicon: Lexicon, texts: list[str], repeat: int) -> list[dict]:
    """Per block size: CPU µs per character of ``match_many`` by the automaton and by the trie over all
    ``texts`` in blocks of that many, the two ways taking each block in turn (best of ``repeat`` passes)."""
    import lexner.lexicon as module
    from lexner.text import normalize_many

    norms = normalize_many(texts)
    chars = sum(map(len, norms))
    ways = {"automaton": 10**18, "trie": 0}  # TRIE_MIN_CHARS for each
    rows, kept = [], module.TRIE_MIN_CHARS
    try:
        for size in (1, 2, 8, 32, 64, 128, 256, 1024, 4096):
            blocks = [norms[k : k + size] for k in range(0, len(norms), size)]
            best = dict.fromkeys(ways, float("inf"))
            for r in range(repeat):
                spent = dict.fromkeys(ways, 0.0)
                for k, block in enumerate(blocks):
                    for way in (list(ways) if (k + r) % 2 == 0 else list(ways)[::-1]):
                        module.TRIE_MIN_CHARS = ways[way]
                        started = time.process_time()
                        lexicon.match_many(block, normalized=True)
                        spent[way] += time.process_time() - started
                best = {way: min(best[way], spent[way]) for way in ways}
            rows.append({"texts_per_call": size, "chars_per_call": round(chars / len(blocks)),
                         **{way: round(best[way] / chars * 1e6, 3) for way in ways}})
            print(rows[-1], flush=True)
    finally:
        module.TRIE_MIN_CHARS = kept
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lexicon", type=Path, default=None)
    parser.add_argument("--dataset", default="msra")
    parser.add_argument("--split", default="test")
    parser.add_argument("--repeat", type=positive_int, default=5)
    parser.add_argument("--limit", type=count, default=0, help="use only the first N sentences (0 = all)")
    parser.add_argument("--many", action="store_true", help="match_many: the automaton against the trie by block size")
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
    if args.many:
        result = {"benchmark": "lexicon_match_many", "lexicon_words": len(lexicon),
                  "texts": f"{args.dataset}/{args.split}", "characters": chars,
                  "trie_build_seconds": round(trie_build_seconds(lexicon), 3), "unit": "CPU µs per character",
                  "rows": match_many_rows(lexicon, texts, args.repeat), "machine": machine_info()}
        print(json.dumps(result, indent=2, ensure_ascii=False))
        write_result(args.out, result)
        return
    timings, matches = [], 0
    for _ in range(args.repeat):
        started = time.perf_counter()
        matches = sum(len(lexicon.match(t)) for t in texts)
        timings.append(time.perf_counter() - started)
    best = min(timings)
    result = {
        "benchmark": "lexicon_matching",
        "lexicon": recorded_path(args.lexicon) if args.lexicon else "$LEXNER_DATA/embeddings/word.50d.vec.xz",
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
