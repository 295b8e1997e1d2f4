"""How much domain words added at load time help a saved model: an oracle upper bound on MSRA test.

    python benchmarks/extra_words.py [--model lexner/default_model] [--limit 1500] [--min-length 3] \
        [--out benchmarks/results/extra_words_default.json]

The gold entity strings (of at least ``--min-length`` characters) that the model misses in the first
``--limit`` test sentences are added with ``lexner.load(model, extra_words=...)``; the same sentences are
scored before and after (labels mapped to PER/LOC/ORG as in ``peers.py``).  The words are exactly the missed
names, so this is the most adding words could do there, not what a user's word list would do.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import load_model, machine_info, positive_int, recorded_path, write_result  # noqa: E402
from peers import LABELS  # noqa: E402

from lexner.data import Sentence, load_dataset  # noqa: E402
from lexner.evaluate import evaluate  # noqa: E402
from lexner.schemes import Span  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="model directory (default: the bundled model)")
    parser.add_argument("--limit", type=positive_int, default=1500, help="the first N MSRA test sentences")
    parser.add_argument("--min-length", type=positive_int, default=3, help="shortest missed entity added as a word")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    sentences = [Sentence(s.text, [Span(sp.start, sp.end, LABELS[sp.label]) for sp in s.spans])
                 for s in load_dataset("msra", "test")[: args.limit]]
    plain = load_model(args.model)
    missed = []
    for sentence, entities in zip(sentences, plain.tag_batch([s.text for s in sentences])):
        found = {(e.start, e.end) for e in entities}
        missed += [(sentence.text, sp) for sp in sentence.spans
                   if (sp.start, sp.end) not in found and sp.end - sp.start >= args.min_length]
    words = sorted({text[sp.start : sp.end] for text, sp in missed})
    extended = load_model(args.model, extra_words=words)
    recovered = 0
    for (text, sp), entities in zip(missed, extended.tag_batch([text for text, _ in missed])):
        recovered += (sp.start, sp.end, sp.label) in {(e.start, e.end, e.label) for e in entities}
    record = {
        "benchmark": "extra_words",
        "model": recorded_path(args.model) if args.model else "bundled default model",
        "sentences": len(sentences),
        "words_added": len(words),
        "already_in_lexicon": sum(w in plain.featurizer.lexicon for w in words),
        "missed_entities": len(missed),
        "recovered": recovered,
        "before": evaluate(plain, sentences)["micro"],
        "after": evaluate(extended, sentences)["micro"],
        "machine": machine_info(),
    }
    print(json.dumps({k: v for k, v in record.items() if k != "machine"}, ensure_ascii=False))
    write_result(args.out, record, indent=1)


if __name__ == "__main__":
    main()
