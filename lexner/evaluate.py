"""Entity-level evaluation with seqeval (strict mode: start, end and type must all match)."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Callable, Iterable, Sequence

from seqeval.metrics import classification_report
from seqeval.scheme import IOBES
from tqdm.auto import tqdm

from .data import Sentence
from .schemes import TYPE_NAME_RULE, Span, is_type_name, spans_to_tags

log = logging.getLogger(__name__)

# Weibo's papers report named (NE) and nominal (NM) mentions separately as well as overall.
SUBSETS: dict[str, Callable[[str], bool]] = {
    "NE": lambda label: label.endswith(".NAM"),
    "NM": lambda label: label.endswith(".NOM"),
}


def score_spans(gold: Sequence[Sequence[Span]], predicted: Sequence[Sequence[Span]], lengths: Sequence[int]) -> dict:
    """Precision, recall and F1 per type, micro and macro averaged, from seqeval in strict IOBES mode.

    Returns ``{"micro": {...}, "macro": {...}, "per_type": {type: {...}}}`` where each ``{...}`` holds
    ``precision``, ``recall``, ``f1`` (fractions in [0, 1]) and ``support`` (gold entities); ``micro`` and each
    type also ``predicted`` (predicted entities), so that scores of several sets can be pooled exactly and a
    precision of 0 for want of predictions told from a wrong one.  ``per_type`` and the macro average cover the
    types in the gold spans or the predictions (seqeval's rule): a type neither has is not scored.
    """
    if not len(gold) == len(predicted) == len(lengths):
        raise ValueError(f"{len(gold)} gold, {len(predicted)} predicted and {len(lengths)} lengths: one of each "
                         "per sentence")
    if bad := next((s.label for spans in (*gold, *predicted) for s in spans if not is_type_name(s.label)), None):
        raise ValueError(f"entity type {bad!r}: a type name is {TYPE_NAME_RULE} (seqeval would score 'X-' as 'X')")
    counted = {"predicted": sum(len(spans) for spans in predicted)}
    y_true = [spans_to_tags(g, n, "BIOES") for g, n in zip(gold, lengths)]
    y_pred = [spans_to_tags(p, n, "BIOES") for p, n in zip(predicted, lengths)]
    if not any(tag != "O" for seq in y_true + y_pred for tag in seq):
        zero = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
        return {"micro": {**zero, **counted}, "macro": dict(zero), "per_type": {}}
    report = classification_report(
        y_true, y_pred, mode="strict", scheme=IOBES, output_dict=True, zero_division=0
    )
    def clean(row: dict) -> dict:
        return {"precision": float(row["precision"]), "recall": float(row["recall"]),
                "f1": float(row["f1-score"]), "support": int(row["support"])}

    averages = {"micro avg", "macro avg", "weighted avg"}
    per_label = Counter(span.label for spans in predicted for span in spans)
    return {
        "micro": {**clean(report["micro avg"]), **counted},
        "macro": clean(report["macro avg"]),
        "per_type": {k: {**clean(v), "predicted": per_label[k]} for k, v in report.items() if k not in averages},
    }


def _only(spans: Sequence[Sequence[Span]], test: Callable[[str], bool]) -> list[list[Span]]:
    return [[s for s in sentence if test(s.label)] for sentence in spans]


def mentions(sentences: Iterable[Sentence]) -> set[tuple[str, str]]:
    """Every entity of ``sentences`` as ``(surface text, type)``."""
    return {(s.text[span.start:span.end], span.label) for s in sentences for span in s.spans}


def _split_by_seen(texts: Sequence[str], spans: Sequence[Sequence[Span]], seen: set[tuple[str, str]]
                   ) -> tuple[list[list[Span]], list[list[Span]]]:
    """``spans`` in two parts: those whose surface and type are in ``seen``, and the others."""
    inside, outside = [], []
    for text, row in zip(texts, spans):
        known = [(text[span.start:span.end], span.label) in seen for span in row]
        inside.append([span for span, k in zip(row, known) if k])
        outside.append([span for span, k in zip(row, known) if not k])
    return inside, outside


def _read_as(sentences: Sequence[Sentence], renamed: dict[str, str]) -> list[Sentence]:
    return [Sentence(s.text, [Span(sp.start, sp.end, renamed.get(sp.label, sp.label)) for sp in s.spans])
            for s in sentences]


def evaluate(tagger, sentences: Sequence[Sentence], batch_size: int = 64, labels: str | None = None,
             seen: Sequence[Sentence] | None = None, progress: bool = False) -> dict:
    """Tag ``sentences`` with ``tagger`` (with the head of label set ``labels`` of a multi-task model; None:
    its default head) and score against their gold spans.  A model exported with renamed types (its card's
    ``renamed``, e.g. NR → PER) is scored on data that uses the old names by reading them as the new ones.

    Adds ``NE``/``NM`` micro scores when the labels are Weibo-style ``*.NAM``/``*.NOM``.  With ``seen`` (the
    training sentences), adds ``seen``/``unseen`` micro scores: gold and predicted entities are split by
    whether their surface text with their type occurs as an entity in ``seen`` — how well the model
    generalises past the names it was trained on (the usual reason a test score lies below a dev score
    carved from the training data).  Each part also gives ``share``: its fraction of the gold entities.
    ``progress``: a progress bar (stderr) while tagging.
    """
    featurizer = getattr(tagger, "featurizer", None)  # any object with tag_batch() can be scored
    known = set(featurizer.label_set(labels).entity_types) if featurizer is not None else None
    card = (getattr(tagger, "metadata", None) or {}).get("card")
    renamed = card.get("renamed") if isinstance(card, dict) and isinstance(card.get("renamed"), dict) else {}
    renamed = {old: new for old, new in renamed.items() if known is not None and new in known}
    given = {span.label for s in sentences for span in s.spans}
    if any(label in renamed and label not in known for label in given):
        # the data uses the names before the model was exported with its types renamed (lexner export --rename):
        # all of them are read as the new ones at once (a swap PER ↔ LOC, a chain LOC → PER → X too)
        log.info("gold types read under the names the model was exported with: %s",
                 ", ".join(f"{old} → {new}" for old, new in sorted(renamed.items())))
        sentences = _read_as(sentences, renamed)
        seen = _read_as(seen, renamed) if seen is not None else None
    elif swapped := sorted(label for label in given if label in renamed and renamed[label] != label):
        log.warning("the model was exported with types renamed among its own names (%s), and the gold data uses "
                    "only names it has: they are read as the model's names now; if the data uses the names from "
                    "before the rename, score the model it was exported from instead",
                    ", ".join(f"{old} → {renamed[old]}" for old in swapped))
    unknown = Counter(span.label for s in sentences for span in s.spans if known is not None and span.label not in known)
    if unknown:
        heads = [name for name, label_set in featurizer.label_sets.items()
                 if name != labels and set(unknown) <= set(label_set.entity_types)]
        log.warning("the gold data has entity types the model does not know (they all count as misses): %s; the "
                    "model's types are %s%s", dict(unknown), sorted(known),
                    f"; its head {heads[0]!r} has them: score with labels={heads[0]!r} (lexner evaluate --labels "
                    f"{heads[0]})" if heads else "")
    texts = [s.text for s in sentences]
    options = {"labels": labels} if labels is not None else {}  # any tag_batch(texts, batch_size) will do
    with tqdm(total=len(texts), unit="sentence", desc="tagging", disable=not progress) as bar:
        if progress:
            options["progress"] = lambda done: bar.update(done - bar.n)
        tagged = tagger.tag_batch(texts, batch_size, **options)
    predicted = [[Span(e.start, e.end, e.label) for e in ents] for ents in tagged]
    gold = [s.spans for s in sentences]
    lengths = [len(t) for t in texts]
    if progress:  # seqeval's strict scoring takes seconds on a large set (8.5 s for 62k sentences), after the bar
        log.info("scoring %d sentences (seqeval, strict IOBES)", len(texts))
    result = score_spans(gold, predicted, lengths)
    labels = {span.label for spans in gold for span in spans}
    if labels and all(any(test(l) for test in SUBSETS.values()) for l in labels):
        for name, test in SUBSETS.items():
            result[name] = score_spans(_only(gold, test), _only(predicted, test), lengths)["micro"]
    if seen is not None:
        trained_on = mentions(seen)
        total = sum(map(len, gold))
        for name, g, p in zip(("seen", "unseen"), _split_by_seen(texts, gold, trained_on),
                              _split_by_seen(texts, predicted, trained_on)):
            result[name] = score_spans(g, p, lengths)["micro"]
            result[name]["share"] = result[name]["support"] / total if total else 0.0
    result["sentences"] = len(sentences)
    return result
