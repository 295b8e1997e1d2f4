"""Augmentation of labelled training sentences; every method keeps the entity spans exact.

A sentence is handled as a list of segments — entity mentions and the text between them — so that a method
can change a segment's length and the spans follow.  Methods (``TrainConfig.augment``, ``lexner train
--augment mention,neighbour,...``):

* ``mention`` — same-type mention replacement (Dai & Adel 2020): each mention, with probability ½ and at least
  one per sentence, becomes another mention of its type drawn from the training data;
* ``case`` — Latin letter case: each run of Latin letters (full-width and accented ones too) becomes upper,
  lower or title case;
* ``space`` — whitespace between Latin letters and digits, the only whitespace a tagger sees (see
  :mod:`lexner.tagging`: whitespace between Chinese characters is removed before the model runs, full-width
  forms and Traditional characters are normalised for every lookup, so noise of those kinds would reach the
  model unchanged and is not generated): a space or tab inserted where a letter meets a digit or a word
  boundary of a Latin run (``iPhone15`` → ``iPhone 15``), inside entities too;
* ``neighbour`` — lexicon-neighbour replacement: about ``WORD_SHARE`` of the non-entity words (cut by forward
  maximum matching with the model's lexicon), at least one, each become one of their ``NEIGHBOURS`` nearest
  words by cosine of the lexicon's vectors, among the lexicon words that occur in the training text, so the
  lattice changes as it would on real text;
* ``tfidf`` — low-information word replacement (Xie et al. 2020, UDA): a non-entity word is replaced with a
  probability that grows as its TF-IDF falls below the sentence's highest (``WORD_SHARE`` on average) by a word
  drawn from the training text's words, frequent (low-IDF) words likelier;
* ``noise`` — one edit per 20 non-entity characters: insert a character drawn from the training text's,
  delete one, or swap two adjacent words.

:class:`Augmenter` picks one applicable method per sentence (one that changes it: drawing what is there, such
as upper case for ``NBA``, counts as not applying).  The trainer replaces a fraction of the training
sentences (``augment_ratio``) by noisy variants, drawn anew every epoch from a generator seeded by the epoch,
so a resumed run sees the same variants.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter, defaultdict
from typing import Callable, Sequence

import numpy as np

from .data import Sentence
from .lexicon import Lexicon
from .schemes import Span
from .tagging import base_before, is_combining, is_latin_alnum

Segment = tuple[str, "str | None"]  # a piece of text and its entity type (None: outside any entity)


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


def replace_mentions(pieces: list[Segment], rng: random.Random, pool: "Augmenter") -> list[Segment] | None:
    mentions = pool.mentions
    chosen = [k for k, (_, label) in enumerate(pieces) if label is not None and len(mentions.get(label, ())) > 1]
    if not chosen:
        return None
    picked = [k for k in chosen if rng.random() < 0.5] or [rng.choice(chosen)]
    out = list(pieces)
    for k in picked:
        text, label = out[k]
        out[k] = (rng.choice([m for m in rng.sample(mentions[label], 2) if m != text] or [text]), label)
    return out


def _letter(char: str) -> bool:
    """A Latin letter as the tagger counts one (:func:`lexner.tagging.is_latin_alnum`: full-width and accented
    ones too), or a combining accent, which belongs to the letter before it."""
    return is_combining(char) or (char.isalpha() and is_latin_alnum(char))


def _latin_runs(text: str) -> list[tuple[int, int]]:
    """Where the runs of Latin letters of ``text`` start and end (``ＩＢＭ`` and ``José`` are one run each)."""
    runs, start = [], None
    for i, char in enumerate(text + "\0"):
        if _letter(char) and not (start is None and is_combining(char)):
            start = i if start is None else start
        elif start is not None:
            runs.append((start, i))
            start = None
    return runs


def _latin_gaps(text: str) -> list[int]:
    """Positions where a letter meets a digit, a digit a letter, or a lower-case letter an upper-case one
    (``iPhone15``: before ``P`` and ``1``), full-width forms included, never before a combining accent."""
    def kind(char: str) -> str | None:
        if not is_latin_alnum(char):
            return None
        return "digit" if not char.isalpha() else "lower" if char.islower() else "upper"

    out = []
    for at in range(1, len(text)):
        before, after = kind(base_before(text, at, 0)), kind(text[at])
        if before and after and before != after and not (before == "upper" and after == "lower"):
            out.append(at)
    return out


def _capitalized(run: str) -> str:
    """A run of Latin letters in title case: its first letter upper case, the rest lower (``str.title`` also
    capitalises after a combining accent: ``Jose\u0301phine`` → ``JoséPhine``)."""
    return run[:1].upper() + run[1:].lower()


def change_case(pieces: list[Segment], rng: random.Random, pool: "Augmenter") -> list[Segment] | None:
    runs = [_latin_runs(text) for text, _ in pieces]
    if not any(runs):
        return None
    style = rng.choice([str.upper, str.lower, _capitalized])

    def restyled(text: str, spans: list[tuple[int, int]]) -> str:
        out, position = [], 0
        for start, end in spans:
            out += [text[position:start], style(text[start:end])]
            position = end
        return "".join(out) + text[position:]

    return [(restyled(text, spans), label) for (text, label), spans in zip(pieces, runs)]


def insert_spaces(pieces: list[Segment], rng: random.Random, pool: "Augmenter") -> list[Segment] | None:
    gaps = [(k, at) for k, (text, _) in enumerate(pieces) for at in _latin_gaps(text)]
    if not gaps:
        return None
    k, at = rng.choice(gaps)
    text, label = pieces[k]
    return [*pieces[:k], (text[:at] + rng.choice(" \t") + text[at:], label), *pieces[k + 1 :]]


def _replace_words(pieces: list[Segment], pool: "Augmenter", choose: Callable[[list[str]], dict[int, str]]
                   ) -> list[Segment] | None:
    """Every non-entity piece cut into words; ``choose`` maps positions in the sentence's list of those words
    to their replacements."""
    words = [pool.words(text) if label is None else [] for text, label in pieces]
    replacements = choose([w for ws in words for w in ws])
    if not replacements:
        return None
    out, position = [], 0
    for (text, label), ws in zip(pieces, words):
        if label is None:
            text = "".join(replacements.get(position + i, w) for i, w in enumerate(ws))
            position += len(ws)
        out.append((text, label))
    return out


def replace_neighbours(pieces: list[Segment], rng: random.Random, pool: "Augmenter") -> list[Segment] | None:
    def choose(words: list[str]) -> dict[int, str]:
        candidates = [i for i, w in enumerate(words) if pool.neighbours(w)]
        if not candidates:
            return {}
        picked = [i for i in candidates if rng.random() < WORD_SHARE] or [rng.choice(candidates)]
        return {i: rng.choice(pool.neighbours(words[i])) for i in picked}

    return _replace_words(pieces, pool, choose)


def replace_uninformative(pieces: list[Segment], rng: random.Random, pool: "Augmenter") -> list[Segment] | None:
    def choose(words: list[str]) -> dict[int, str]:
        if not words:
            return {}
        counts = Counter(words)
        scores = [counts[w] / len(words) * pool.idf.get(w, pool.max_idf) for w in words]
        top = max(scores)
        gaps = [top - score for score in scores]
        mean_gap = sum(gaps) / len(gaps)
        # UDA's rule: a word is replaced with probability proportional to how far its TF-IDF lies below the
        # sentence's highest, WORD_SHARE on average; uniformly WORD_SHARE when all score alike
        chances = [min(WORD_SHARE * gap / mean_gap, 1.0) if mean_gap else WORD_SHARE for gap in gaps]
        picked = [i for i, chance in enumerate(chances) if rng.random() < chance]
        if not picked:
            picked = [max(range(len(words)), key=lambda i: (gaps[i], rng.random()))]
        return {i: pool.uninformative_word(rng) for i in picked}

    return _replace_words(pieces, pool, choose)


def inject_noise(pieces: list[Segment], rng: random.Random, pool: "Augmenter") -> list[Segment] | None:
    """One edit per 20 non-entity characters (at least one): insert a character drawn from the training
    text's, delete one, or swap two adjacent words; never inside an entity."""
    outside = [k for k, (text, label) in enumerate(pieces) if label is None and text]
    if not outside:
        return None
    out = list(pieces)
    for _ in range(max(1, sum(len(pieces[k][0]) for k in outside) // 20)):
        k = rng.choice(outside)
        text = out[k][0]
        words = pool.words(text)
        edit = rng.choice(("insert", "delete", "swap") if len(words) > 1 else ("insert", "delete"))
        if edit == "insert":
            at = rng.randrange(len(text) + 1)
            text = text[:at] + pool.common_char(rng) + text[at:]
        elif edit == "delete" and text:
            at = rng.randrange(len(text))
            text = text[:at] + text[at + 1 :]
        elif edit == "swap":
            i = rng.randrange(len(words) - 1)
            text = "".join(words[:i] + [words[i + 1], words[i]] + words[i + 2 :])
        out[k] = (text, None)
    return out


WORD_SHARE = 0.3  # neighbour and tfidf replace about this share of a sentence's non-entity words
NEIGHBOURS = 5  # a word's replacements by neighbour: its nearest words by cosine among the candidates

METHODS: dict[str, Callable[[list[Segment], random.Random, "Augmenter"], "list[Segment] | None"]] = {
    "mention": replace_mentions,
    "case": change_case,
    "space": insert_spaces,
    "neighbour": replace_neighbours,
    "tfidf": replace_uninformative,
    "noise": inject_noise,
}


def check_methods(methods: Sequence[str], lexicon: Lexicon | None) -> None:
    """``ValueError`` for a method that is unknown or cannot work with ``lexicon`` (the model's)."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown augmentation {unknown}; choose from {', '.join(METHODS)}")
    if "neighbour" in methods and (lexicon is None or lexicon.vectors is None):
        raise ValueError("augmentation 'neighbour' needs a lexicon with word vectors (a lattice tagger built "
                         "from a word2vec lexicon: softlexicon, lattice_lstm, flat)")


class Augmenter:
    """Noisy variants of sentences by ``methods`` (names in :data:`METHODS`), with what they draw from built
    from ``train``: the mentions of each type (``mention``), the words of non-entity text — cut by forward
    maximum matching with ``lexicon``, or into characters without one — with their document frequencies
    (``tfidf``) and their nearest neighbours by ``lexicon``'s vectors among the lexicon words found in
    ``train`` (``neighbour``, which needs a lexicon with vectors), and the characters (``noise``)."""

    def __init__(self, methods: Sequence[str], train: Sequence[Sentence], lexicon: Lexicon | None = None):
        self.methods = list(dict.fromkeys(methods))
        check_methods(self.methods, lexicon)
        self.lexicon = lexicon
        pool: dict[str, set[str]] = defaultdict(set)
        for s in train:
            for span in s.spans:
                pool[span.label].add(s.text[span.start : span.end])
        self.mentions = {label: sorted(texts) for label, texts in pool.items()}
        if {"tfidf", "neighbour", "noise"} & set(self.methods):
            self._count_words(train)

    def __call__(self, sentence: Sentence, rng: random.Random) -> Sentence:
        """A variant by one of the methods that applies to the sentence (tried in random order); the
        sentence itself when none does."""
        pieces = segments(sentence)
        for method in rng.sample(self.methods, len(self.methods)):
            changed = METHODS[method](pieces, rng, self)
            if changed is not None and changed != pieces:  # a method may draw what is there (upper case of NBA)
                return from_segments(changed)
        return sentence

    # what the word-level methods draw from ----------------------------------------------------------------
    def words(self, text: str) -> list[str]:
        """``text`` cut into words: at each position the longest lexicon word starting there, else one
        character (characters throughout without a lexicon); the words join to ``text``."""
        if self.lexicon is None:
            return list(text)
        longest = {}
        for match in self.lexicon.match(text):  # sorted by (start, end): the last per start is the longest
            longest[match.start] = match.end
        out, position = [], 0
        while position < len(text):
            end = longest.get(position, position + 1)
            out.append(text[position:end])
            position = end
        return out

    def _count_words(self, train: Sequence[Sentence]) -> None:
        document_frequency: Counter = Counter()
        chars: Counter = Counter()
        for s in train:
            outside = [text for text, label in segments(s) if label is None]
            document_frequency.update({w for text in outside for w in self.words(text)})
            chars.update(c for text in outside for c in text if not c.isspace())
        n = max(len(train), 1)
        self.idf = {w: math.log(n / df) for w, df in document_frequency.items()}
        self.max_idf = math.log(n) if n > 1 else 1.0
        # replacements for tfidf: frequent (low-idf) words are likelier, as in UDA
        self._uninformative = sorted(self.idf, key=lambda w: (self.idf[w], w))
        self._uninformative_weights = list(itertools.accumulate(self.max_idf - self.idf[w] + 1e-3
                                                                for w in self._uninformative))
        self._chars, counts = zip(*sorted(chars.items())) if chars else (("的",), (1,))
        self._char_weights = list(itertools.accumulate(counts))
        self._neighbours: dict[str, list[str]] = {}
        if self.lexicon is not None and self.lexicon.vectors is not None:
            found = sorted(w for w in document_frequency if len(w) > 1 and self.lexicon.id(w) is not None)
            self._candidate_ids = np.array([self.lexicon.id(w) for w in found], dtype=np.int64)
            vectors = self.lexicon.vectors[self._candidate_ids].astype(np.float32)
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            self._candidates, self._unit = found, vectors / np.maximum(norms, 1e-8)

    def uninformative_word(self, rng: random.Random) -> str:
        return rng.choices(self._uninformative, cum_weights=self._uninformative_weights)[0] if self._uninformative \
            else ""

    def common_char(self, rng: random.Random) -> str:
        return rng.choices(self._chars, cum_weights=self._char_weights)[0]

    def neighbours(self, word: str) -> list[str]:
        """The nearest lexicon words to ``word`` (cosine of their vectors) among those found in the training
        text; none for a word of one character or one without a vector (computed once per word)."""
        if word not in self._neighbours:
            self._neighbours[word] = []
            word_id = self.lexicon.id(word) if len(word) > 1 else None
            if word_id is not None and len(self._candidates) > 1:
                vector = self.lexicon.vectors[word_id].astype(np.float32)
                similarity = self._unit @ (vector / max(float(np.linalg.norm(vector)), 1e-8))
                # the word itself and its other spellings (one lexicon id, e.g. Traditional) are no neighbours
                similarity[self._candidate_ids == word_id] = -np.inf
                order = np.argsort(-similarity)[:NEIGHBOURS]
                self._neighbours[word] = [self._candidates[i] for i in order if np.isfinite(similarity[i])]
        return self._neighbours[word]
