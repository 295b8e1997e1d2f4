"""A model on test sets in Simplified and converted to Traditional Chinese (OpenCC ``s2t``), same scorer.

    python benchmarks/traditional.py --out benchmarks/results/traditional_default.json      # the bundled model
    python benchmarks/traditional.py --model runs/x/model --limit 1000

Datasets: MSRA test (types renamed to the model's where it uses PER/LOC/ORG) and Weibo test with named
mentions only, mapped to PER/LOC/ORG (PER.NAM → PER, LOC.NAM and GPE.NAM → LOC, ORG.NAM → ORG; nominal
mentions dropped) — the comparison lexner's issue on real text uses.  Each sentence is converted with
OpenCC's ``s2t`` as a whole; where that changes its length (never seen on these sets) it is converted
character by character, so entity offsets stay valid.  F1 is exact-span micro F1 (seqeval strict).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import count, load_model, machine_info, positive_int, recorded_path, write_result  # noqa: E402

MSRA_TYPES = {"NR": "PER", "NS": "LOC", "NT": "ORG"}
WEIBO_NAMED = {"PER.NAM": "PER", "LOC.NAM": "LOC", "GPE.NAM": "LOC", "ORG.NAM": "ORG"}


def to_traditional(text: str, converter) -> str:
    converted = converter.convert(text)
    if len(converted) == len(text):
        return converted
    return "".join(c2 if len(c2 := converter.convert(c)) == 1 else c for c in text)


def relabel(sentences, names: dict[str, str], keep_unmapped: bool):
    from lexner.data import Sentence
    from lexner.schemes import Span

    out = []
    for s in sentences:
        spans = [Span(a, b, names.get(label, label)) for a, b, label in s.spans if keep_unmapped or label in names]
        out.append(Sentence(s.text, spans))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a saved model directory (default: the bundled model)")
    parser.add_argument("--limit", type=count, default=0, help="first N sentences of each test set (0: all)")
    parser.add_argument("--threads", type=positive_int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    import opencc
    import torch

    from lexner.data import Sentence, load_dataset
    from lexner.evaluate import evaluate

    torch.set_num_threads(args.threads)
    tagger = load_model(args.model)
    types = set(tagger.featurizer.entity_types)
    msra = load_dataset("msra", "test")
    msra = relabel(msra, MSRA_TYPES, True) if "PER" in types else msra
    sets = {"msra_test": msra, "weibo_test_named": relabel(load_dataset("weibo", "test"), WEIBO_NAMED, False)}
    s2t = opencc.OpenCC("s2t")
    rows = []
    for name, sentences in sets.items():
        sentences = sentences[: args.limit] if args.limit else sentences
        traditional = [Sentence(to_traditional(s.text, s2t), s.spans) for s in sentences]
        changed = sum(a.text != b.text for a, b in zip(sentences, traditional))
        row = {"dataset": name, "sentences": len(sentences), "sentences_changed_by_s2t": changed}
        for script, data in (("simplified", sentences), ("traditional", traditional)):
            started = time.perf_counter()
            scores = evaluate(tagger, data)
            row[script] = {"f1": round(100 * scores["micro"]["f1"], 2),
                           "precision": round(100 * scores["micro"]["precision"], 2),
                           "recall": round(100 * scores["micro"]["recall"], 2),
                           "per_type_f1": {k: round(100 * v["f1"], 2) for k, v in scores["per_type"].items()},
                           "seconds": round(time.perf_counter() - started, 2)}
        row["gap"] = round(row["simplified"]["f1"] - row["traditional"]["f1"], 2)
        print(json.dumps(row, ensure_ascii=False), flush=True)
        rows.append(row)
    result = {"benchmark": "traditional", "model": recorded_path(args.model) if args.model else "bundled default model",
              "rows": rows, "machine": machine_info()}
    write_result(args.out, result)


if __name__ == "__main__":
    main()
