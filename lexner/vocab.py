"""Token vocabularies (characters, bigrams) with padding and unknown entries."""

from __future__ import annotations

import itertools
import os
from collections import Counter
from typing import Iterable, Sequence

from .fileio import DataFormatError, read_json, write_json

EXTRA_PRETRAINED_BIGRAMS = 50_000  # the most frequent pretrained bigrams join the vocabulary beside train's

PAD, UNK = "<pad>", "<unk>"
UNK_ID = 1  # every Vocab's id of UNK (id 0 is PAD)


class Vocab:
    """Maps tokens to ids; id 0 is padding and id 1 stands for every unknown token."""

    def __init__(self, tokens: Iterable[str] = ()):
        self.tokens: list[str] = [PAD, UNK]
        self.index: dict[str, int] = {PAD: 0, UNK: 1}
        for tok in tokens:
            self.add(tok)

    @classmethod
    def build(cls, counts: Counter, min_count: int = 1, extra: Iterable[str] = ()) -> "Vocab":
        """Tokens seen at least ``min_count`` times (most frequent first), then ``extra`` tokens."""
        vocab = cls(tok for tok, n in counts.most_common() if n >= min_count)
        for tok in extra:
            vocab.add(tok)
        return vocab

    def add(self, token: str) -> int:
        if not isinstance(token, str) or not token:  # Vocab.load refuses such a file: never write one
            raise ValueError(f"a vocabulary token must be a non-empty string, got {token!r}")
        if token not in self.index:
            self.index[token] = len(self.tokens)
            self.tokens.append(token)
        return self.index[token]

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self.index

    def encode(self, tokens: Sequence[str]) -> list[int]:
        return list(map(self.index.get, tokens, itertools.repeat(UNK_ID)))

    def save(self, path: str | os.PathLike) -> None:
        write_json(path, self.tokens)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Vocab":
        tokens = read_json(path)
        if not isinstance(tokens, list) or tokens[:2] != [PAD, UNK]:
            raise DataFormatError(path, None, f"not a lexner vocabulary (must start with {PAD!r}, {UNK!r})")
        if set(map(type, tokens)) != {str} or not all(tokens):
            raise DataFormatError(path, None, "every token must be a non-empty string")
        vocab = cls()
        vocab.tokens, vocab.index = tokens, dict(zip(tokens, range(len(tokens))))  # one pass in C: loads fast
        if len(vocab.index) != len(tokens):
            raise DataFormatError(path, None, "a token occurs twice")
        return vocab
