"""Turning texts into padded tensor batches (the preprocessing step shared by every tagger)."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterable, Sequence

import torch

from .data import Sentence
from .schemes import Span, bioes_tags, spans_to_tags, tags_to_spans
from .text import normalize
from .vocab import Vocab

END = "</s>"  # the right neighbour of a sentence's last character in its bigram


def bigrams(normalized: str) -> list[str]:
    """The bigram at each position: the character and its right neighbour (``</s>`` after the last)."""
    return [a + b for a, b in zip(normalized, normalized[1:])] + ([normalized[-1] + END] if normalized else [])


@dataclass
class Batch:
    """A padded batch of sentences.  ``B`` sentences, ``T`` = the longest length."""

    chars: torch.Tensor  # shape: (B, T), long; 0 = padding
    bigrams: torch.Tensor  # shape: (B, T), long
    mask: torch.Tensor  # shape: (B, T), bool; True on real characters
    lengths: torch.Tensor  # shape: (B,), long; every length ≥ 1
    tags: torch.Tensor | None = None  # shape: (B, T), long; gold BIOES tag ids (training only)

    def to(self, device: torch.device | str) -> "Batch":
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return Batch(**{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in moved.items()})

    def __len__(self) -> int:
        return self.chars.shape[0]


class Featurizer:
    """Holds the vocabularies and the BIOES tag set, and encodes texts into a :class:`Batch`."""

    def __init__(self, chars: Vocab, bigram_vocab: Vocab, entity_types: Sequence[str]):
        self.chars = chars
        self.bigrams = bigram_vocab
        self.entity_types = list(entity_types)
        self.tags = bioes_tags(self.entity_types)
        self.tag_index = {t: i for i, t in enumerate(self.tags)}

    @staticmethod
    def count_tokens(sentences: Iterable[Sentence]) -> tuple[Counter, Counter]:
        """Character and bigram counts (normalised) of ``sentences``."""
        char_counts: Counter = Counter()
        bigram_counts: Counter = Counter()
        for s in sentences:
            norm = normalize(s.text)
            char_counts.update(norm)
            bigram_counts.update(bigrams(norm))
        return char_counts, bigram_counts

    @classmethod
    def build(
        cls,
        sentences: Sequence[Sentence],
        extra_chars: Iterable[str] = (),
        extra_bigrams: Iterable[str] = (),
    ) -> "Featurizer":
        """Vocabularies from the training sentences, plus extra tokens (e.g. those with pretrained vectors)."""
        char_counts, bigram_counts = cls.count_tokens(sentences)
        types = {span.label for s in sentences for span in s.spans}
        return cls(
            Vocab.build(char_counts, extra=extra_chars),
            Vocab.build(bigram_counts, extra=extra_bigrams),
            sorted(types),
        )

    def encode_one(self, text: str, spans: Sequence[Span] | None = None) -> dict[str, list[int]]:
        """Ids of one non-empty text (and of its gold BIOES tags when ``spans`` is given)."""
        if not text:
            raise ValueError("cannot encode an empty text; filter empty texts out first")
        norm = normalize(text)
        item = {"chars": self.chars.encode(norm), "bigrams": self.bigrams.encode(bigrams(norm))}
        if spans is not None:
            item["tags"] = self.encode_tags(spans, len(text))
        return item

    @staticmethod
    def collate(items: Sequence[dict[str, list[int]]]) -> Batch:
        """Pad encoded texts (from :meth:`encode_one`) into a :class:`Batch`."""
        lengths = torch.tensor([len(item["chars"]) for item in items])
        longest = int(lengths.max())
        padded = {}
        for key in items[0]:
            tensor = torch.zeros(len(items), longest, dtype=torch.long)
            for i, item in enumerate(items):
                tensor[i, : len(item[key])] = torch.tensor(item[key])
            padded[key] = tensor
        mask = torch.arange(longest)[None, :] < lengths[:, None]
        return Batch(padded["chars"], padded["bigrams"], mask, lengths, padded.get("tags"))

    def encode(self, texts: Sequence[str], spans: Sequence[Sequence[Span]] | None = None) -> Batch:
        """Pad and encode non-empty texts; with ``spans``, also the gold BIOES tags."""
        return self.collate([self.encode_one(t, None if spans is None else spans[i]) for i, t in enumerate(texts)])

    def encode_tags(self, spans: Sequence[Span], length: int) -> list[int]:
        """Gold tag ids; entities of a type the model does not know are tagged ``O``."""
        known = [s for s in spans if f"S-{s.label}" in self.tag_index]
        return [self.tag_index[t] for t in spans_to_tags(known, length, "BIOES")]

    def decode_tags(self, ids: Sequence[int]) -> list[Span]:
        return tags_to_spans([self.tags[i] for i in ids], "BIOES")

    # persistence ---------------------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> None:
        directory = Path(directory)
        self.chars.save(directory / "chars.json")
        self.bigrams.save(directory / "bigrams.json")

    @classmethod
    def load(cls, directory: str | os.PathLike, entity_types: Sequence[str]) -> "Featurizer":
        directory = Path(directory)
        return cls(Vocab.load(directory / "chars.json"), Vocab.load(directory / "bigrams.json"), entity_types)
