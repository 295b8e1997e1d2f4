"""How long the pieces should be that a model tags long texts in: dev F1 of one model at several piece lengths.

    python benchmarks/piece_length.py --out benchmarks/results/piece_length_default.json     # the bundled model
    python benchmarks/piece_length.py --model runs/msra/model --sets msra:1 msra:20

``lexner.tagging`` tags a line longer than the model's ``max_length`` in pieces (cut after sentence-final
punctuation, sentences packed up to that length).  The corpora lexner trains on hold short sentences (MSRA's
training blocks are at most ~100 characters), while users tag paragraphs and documents.  To see what the
piece length does on long text without looking at any test set, each ``DATASET:K`` joins K consecutive dev
sentences into one line (gold spans shifted; K = 1 leaves the dev set as it is) and scores the model on those
lines with every ``--lengths`` value and with the length the model was saved with.  Exact-span micro F1 with
the head named like the dataset (the default head if the model has none by that name); a set whose types the
head does not know is skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import load_model, machine_info, positive_int, recorded_path, write_result  # noqa: E402


def joined(sentences, k: int):
    """Every k consecutive sentences as one (the last group may be shorter)."""
    from lexner.data import Sentence
    from lexner.schemes import Span

    lines = []
    for i in range(0, len(sentences), k):
        text, spans = "", []
        for s in sentences[i : i + k]:
            spans += [Span(a + len(text), b + len(text), label) for a, b, label in s.spans]
            text += s.text
        lines.append(Sentence(text, spans))
    return lines


def dataset_and_join(text: str) -> tuple[str, int]:
    name, _, k = text.partition(":")
    if not (name and k.isdigit() and int(k) >= 1):
        raise argparse.ArgumentTypeError(f"expected DATASET:K (K ≥ 1), got {text!r}")
    return name, int(k)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a saved model directory (default: the bundled model)")
    parser.add_argument("--sets", nargs="+", type=dataset_and_join,
                        default=[("msra", 1), ("msra", 20), ("weibo", 1), ("weibo", 5), ("cluener", 1),
                                 ("cluener", 20)])
    parser.add_argument("--lengths", nargs="+", type=positive_int, default=[500, 300, 200, 150, 120, 100, 80, 64])
    parser.add_argument("--threads", type=positive_int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    import torch

    from lexner.data import load_dataset
    from lexner.evaluate import evaluate

    torch.set_num_threads(args.threads)
    tagger = load_model(args.model)
    saved = tagger.max_length
    heads = tagger.featurizer.label_sets
    rows = []
    for name, k in args.sets:
        head = name if name in heads and len(heads) > 1 else None
        known = set(tagger.featurizer.label_set(head).entity_types)
        renamed = (tagger.metadata.get("card") or {}).get("renamed") or {}  # as lexner.evaluate reads the gold
        dev = load_dataset(name, "dev")
        if not {renamed.get(sp.label, sp.label) for s in dev for sp in s.spans} <= known:
            print(f"skipped {name}: the model's head {head or 'default'} does not know its types", flush=True)
            continue
        lines = joined(dev, k)
        for length in sorted(set(args.lengths) | {saved}, reverse=True):
            tagger.set_piece_length(length)
            scores = evaluate(tagger, lines, labels=head)
            row = {"dataset": name, "head": head or "default", "join": k, "lines": len(lines),
                   "mean_chars": round(sum(len(s.text) for s in lines) / len(lines), 1),
                   "max_chars": max(len(s.text) for s in lines), "max_length": length,
                   "saved_max_length": length == saved, "f1": round(100 * scores["micro"]["f1"], 2)}
            print(json.dumps(row, ensure_ascii=False), flush=True)
            rows.append(row)
    result = {"benchmark": "piece_length", "split": "dev",
              "model": recorded_path(args.model) if args.model else "bundled default model",
              "saved_max_length": saved, "rows": rows, "machine": machine_info()}
    write_result(args.out, result)


if __name__ == "__main__":
    main()
