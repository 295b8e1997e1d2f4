"""Why MSRA test scores lie below dev: entities seen in training against unseen ones.

    python benchmarks/unseen.py --models default= student=runs/msra_student_kl_fixed/seed1/model \
        --out benchmarks/results/unseen_msra.json

An entity is *seen* when its surface text occurs with its type as an entity of MSRA train (the part left after
the dev split is carved; ``lexner.evaluate.mentions``).  Recorded:

* the seen share of the gold entities of dev and test;
* the same share for contiguous blocks of the training file (each block against the rest of the file): dev is
  drawn at random from the training file's sentences, so it shares documents — and their names — with train;
  a block of consecutive sentences shares fewer;
* for each model (``--models NAME=DIR``; an empty DIR is the bundled model), micro P/R/F1 on dev and test,
  overall and for seen and unseen entities apart (``lexner.evaluate.evaluate(..., seen=train)``).

The test scores here are an analysis of models already chosen on dev, not a selection.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import (count, load_model, machine_info, named_model, positive_int, recorded_path,  # noqa: E402
                     write_result)


def seen_share(sentences, trained_on: set) -> dict:
    found = [(s.text[span.start:span.end], span.label) for s in sentences for span in s.spans]
    share = sum(m in trained_on for m in found) / len(found) if found else 0.0
    return {"sentences": len(sentences), "entities": len(found), "seen_share": round(100 * share, 1)}


def block_shares(path: Path, size: int, blocks: int) -> list[dict]:
    """The seen share of ``blocks`` evenly spread runs of ``size`` consecutive sentences of the file at ``path``,
    each against the rest of the file."""
    from lexner.data import read_file
    from lexner.evaluate import mentions

    sentences = read_file(path)
    step = max((len(sentences) - size) // max(blocks - 1, 1), 1)
    rows = []
    for first in range(0, step * blocks, step)[:blocks]:
        block = sentences[first:first + size]
        rest = sentences[:first] + sentences[first + size:]
        rows.append({"first": first, **seen_share(block, mentions(rest))})
    return rows


def percent(scores: dict) -> dict:
    """P/R/F1 as percentages; counts (``support``, ``predicted``) as they are."""
    return {k: round(100 * v, 2) if k in ("precision", "recall", "f1") else v for k, v in scores.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=[], type=named_model, metavar="NAME=DIR",
                        help="models to score (an empty DIR: the bundled model)")
    parser.add_argument("--limit", type=count, default=0, help="the first N sentences of dev and test only (0: all)")
    parser.add_argument("--blocks", type=positive_int, default=8,
                        help="contiguous blocks of the training file to measure")
    parser.add_argument("--threads", type=positive_int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    import torch

    from lexner.data import dataset_path, load_dataset
    from lexner.evaluate import evaluate, mentions

    torch.set_num_threads(args.threads)
    train = load_dataset("msra", "train")
    splits = {name: load_dataset("msra", name) for name in ("dev", "test")}
    splits = {name: sentences[: args.limit] if args.limit else sentences for name, sentences in splits.items()}
    trained_on = mentions(train)
    result = {"benchmark": "unseen", "dataset": "msra",
              "splits": {name: seen_share(sentences, trained_on) for name, sentences in splits.items()},
              "blocks": block_shares(dataset_path("msra", "train"), len(splits["dev"]), args.blocks),
              "models": {}}
    print(json.dumps({k: result[k] for k in ("splits", "blocks")}, ensure_ascii=False), flush=True)
    for name, folder in args.models:
        tagger = load_model(folder)
        row = {"model": recorded_path(folder) if folder else "bundled default model"}
        for split, sentences in splits.items():
            scores = evaluate(tagger, sentences, seen=train)
            row[split] = {part: percent(scores[part]) for part in ("micro", "seen", "unseen")}
        print(json.dumps({name: row}, ensure_ascii=False), flush=True)
        result["models"][name] = row
    result["machine"] = machine_info()
    write_result(args.out, result)


if __name__ == "__main__":
    main()
