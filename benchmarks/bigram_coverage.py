"""How many bigrams of a dataset's dev and test text a model's bigram vocabulary knows.

    python benchmarks/bigram_coverage.py --dataset msra --settings 3:50000 3:all 1:all \\
        --model default= --out benchmarks/results/bigram_coverage_msra.json

A setting ``MIN_COUNT:PRETRAINED`` builds the vocabulary as ``lexner train --bigram-min-count MIN_COUNT
--pretrained-bigrams PRETRAINED`` would from the dataset's train split and the bigram vectors under the data
root; ``--model NAME=DIR`` reads a saved model's vocabulary instead (``default=``: the bundled model).  For each,
on dev and test: the share of bigram tokens (one per character, as the taggers read them) that map to the
unknown entry, and the share that are unknown although the vector file has them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import load_model, machine_info, named_model, recorded_path, write_result  # noqa: E402


def setting(text: str) -> tuple[int, int | None]:
    count, _, first = text.partition(":")
    if not (count.isdigit() and (first == "all" or first.isdigit())):
        raise argparse.ArgumentTypeError(f"expected MIN_COUNT:PRETRAINED (e.g. 3:50000 or 3:all), got {text!r}")
    return int(count), None if first == "all" else int(first)


def coverage(vocab, sentences, pretrained: set[str]) -> dict:
    from lexner.features import bigrams
    from lexner.text import normalize

    tokens = [b for s in sentences for b in bigrams(normalize(s.text))]
    unknown = [b for b in tokens if b not in vocab]
    with_vector = sum(b in pretrained for b in unknown)
    return {"tokens": len(tokens), "unknown_pct": round(100 * len(unknown) / len(tokens), 2),
            "unknown_with_vector_pct": round(100 * with_vector / len(tokens), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="a named dataset (msra, weibo, cluener)")
    parser.add_argument("--settings", nargs="*", type=setting, default=[], metavar="MIN_COUNT:PRETRAINED")
    parser.add_argument("--model", action="append", default=[], type=named_model, metavar="NAME=DIR")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from lexner.api import build_tagger, default_embeddings
    from lexner.data import load_dataset
    from lexner.vectors import read_word2vec

    train, dev, test = (load_dataset(args.dataset, split) for split in ("train", "dev", "test"))
    path = default_embeddings()["bigrams"]
    if path is None:
        raise SystemExit("no bigram vectors under the data root (set LEXNER_DATA)")
    pretrained = set(read_word2vec(path)[0])
    rows = []

    def measure(what: dict, vocab) -> None:
        row = {**what, "vocabulary": len(vocab), "dev": coverage(vocab, dev, pretrained),
               "test": coverage(vocab, test, pretrained)}
        print(json.dumps(row, ensure_ascii=False), flush=True)
        rows.append(row)

    for min_count, first in args.settings:
        tagger = build_tagger("bilstm_crf", train, {"hidden": 2, "char_dim": 2, "bigram_dim": 50},
                              {"bigrams": path}, bigram_min_count=min_count, pretrained_bigrams=first)
        measure({"bigram_min_count": min_count, "pretrained_bigrams": "all" if first is None else first},
                tagger.featurizer.bigrams)
    for name, directory in args.model:
        measure({"model": name, "model_dir": recorded_path(directory) if directory else "bundled"},
                load_model(directory).featurizer.bigrams)
    result = {"benchmark": "bigram_coverage", "dataset": args.dataset, "bigram_vectors": path.name,
              "pretrained_bigrams_in_file": len(pretrained), "sentences": {"train": len(train), "dev": len(dev),
                                                                           "test": len(test)},
              "rows": rows, "machine": machine_info()}
    write_result(args.out, result)


if __name__ == "__main__":
    main()
