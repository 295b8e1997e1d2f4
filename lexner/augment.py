"""Noise augmentation of labelled training sentences; every method keeps the entity spans exact.

A sentence is handled as a list of segments — entity mentions and the text between them — so that a method
can change a segment's length and the spans follow.  Methods (``TrainConfig.augment``, ``lexner train
--augment mention,case,space``):

* ``mention`` — same-type mention replacement (Dai & Adel 2020): each mention, with probability ½ and at least
  one per sentence, becomes another mention of its type drawn from the training data;
* ``case`` — Latin letter case: each run of Latin letters becomes upper, lower or title case;
* ``space`` — whitespace between Latin letters and digits, the only whitespace a tagger sees (see
  :mod:`lexner.tagging`: whitespace between Chinese characters is removed before the model runs, full-width
  forms and Traditional characters are normalised for every lookup, so noise of those kinds would reach the
  model unchanged and is not generated): a space or tab inserted where a letter meets a digit or a word
  boundary of a Latin run (``iPhone15`` → ``iPhone 15``), inside entities too.

:class:`Augmenter` picks one applicable method per sentence.  The trainer replaces a fraction of the training
sentences (``augment_ratio``) by noisy variants, drawn anew every epoch from a generator seeded by the epoch,
so a resumed run sees the same variants.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from typing import Callable, Sequence

from .data import Sentence
from .schemes import Span

Segment = tuple[str, "str | None"]  # a piece of text and its entity type (None: outside any entity)
_LATIN_RUN = re.compile(r"[A-Za-z]+")
_LATIN_GAP = re.compile(r"(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])|(?<=[a-z])(?=[A-Z])")


def segments(sentence: Sentence) -> list[Segment]:
    """The sentence as entity and non-entity pieces (an overlapping span is left out)."""
    out: list[Segment] = []
    position = 0
    for span in sorted(sentence.spans):
        if span.start < position:
            continue
        if span.start > position:
            out.append((sentence.text[position : span.start], None))
        out.append((sentence.text[span.start : span.end], span.label))
        position = span.end
    if position < len(sentence.text):
        out.append((sentence.text[position:], None))
    return out


def from_segments(pieces: Sequence[Segment]) -> Sentence:
    """The sentence made of ``pieces``, its spans where the labelled pieces now sit."""
    spans, position = [], 0
    for text, label in pieces:
        if label is not None and text:
            spans.append(Span(position, position + len(text), label))
        position += len(text)
    return Sentence("".join(text for text, _ in pieces), spans)


def replace_mentions(pieces: list[Segment], rng: random.Random, mentions: dict[str, list[str]]) -> list[Segment] | None:
    chosen = [k for k, (_, label) in enumerate(pieces) if label is not None and len(mentions.get(label, ())) > 1]
    if not chosen:
        return None
    picked = [k for k in chosen if rng.random() < 0.5] or [rng.choice(chosen)]
    out = list(pieces)
    for k in picked:
        text, label = out[k]
        out[k] = (rng.choice([m for m in rng.sample(mentions[label], 2) if m != text] or [text]), label)
    return out


def change_case(pieces: list[Segment], rng: random.Random, mentions=None) -> list[Segment] | None:
    if not any(_LATIN_RUN.search(text) for text, _ in pieces):
        return None
    style = rng.choice([str.upper, str.lower, str.title])
    return [(_LATIN_RUN.sub(lambda m: style(m.group()), text), label) for text, label in pieces]


def insert_spaces(pieces: list[Segment], rng: random.Random, mentions=None) -> list[Segment] | None:
    gaps = [(k, m.start()) for k, (text, _) in enumerate(pieces) for m in _LATIN_GAP.finditer(text)]
    if not gaps:
        return None
    k, at = rng.choice(gaps)
    text, label = pieces[k]
    return [*pieces[:k], (text[:at] + rng.choice(" \t") + text[at:], label), *pieces[k + 1 :]]


METHODS: dict[str, Callable[[list[Segment], random.Random, dict], "list[Segment] | None"]] = {
    "mention": replace_mentions,
    "case": change_case,
    "space": insert_spaces,
}


class Augmenter:
    """Noisy variants of sentences by ``methods`` (names in :data:`METHODS`), with the mentions of ``train``
    (per type) as the pool for ``mention``."""

    def __init__(self, methods: Sequence[str], train: Sequence[Sentence]):
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown augmentation {unknown}; choose from {', '.join(METHODS)}")
        self.methods = list(dict.fromkeys(methods))
        pool: dict[str, set[str]] = defaultdict(set)
        for s in train:
            for span in s.spans:
                pool[span.label].add(s.text[span.start : span.end])
        self.mentions = {label: sorted(texts) for label, texts in pool.items()}

    def __call__(self, sentence: Sentence, rng: random.Random) -> Sentence:
        """A variant by one of the methods that applies to the sentence (tried in random order); the
        sentence itself when none does."""
        pieces = segments(sentence)
        for method in rng.sample(self.methods, len(self.methods)):
            changed = METHODS[method](pieces, rng, self.mentions)
            if changed is not None:
                return from_segments(changed)
        return sentence
