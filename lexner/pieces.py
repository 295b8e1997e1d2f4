"""Word pieces of a BERT-style tokenizer, aligned with the characters of the text.

Only imported when a model uses a pretrained encoder (``pip install lexner[transformers]``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_SURROGATE = re.compile("[\ud800-\udfff]")


class PieceEncoder:
    """Tokenises a text into word pieces (without special tokens) and maps each character to its piece.

    The tokenizer must be a *fast* one (it reports each piece's character offsets).  Characters inside a
    multi-character piece (a Latin word, a number) all map to that piece; characters the tokenizer drops
    (spaces, control characters) map to no piece (-1).  Lone surrogates, which the tokenizer cannot take,
    are replaced by U+FFFD one for one, so offsets still index the original text.
    """

    def __init__(self, tokenizer):
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("a fast tokenizer (tokenizer.json, or vocab.txt for BERT) is needed for offsets")
        self.tokenizer = tokenizer
        self.cls_id = tokenizer.cls_token_id
        self.sep_id = tokenizer.sep_token_id
        self.pad_id = tokenizer.pad_token_id or 0

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> "PieceEncoder":
        from transformers import AutoTokenizer

        if not Path(path).is_dir():
            raise FileNotFoundError(f"{path}: no such tokenizer/encoder directory (models are never downloaded)")
        return cls(AutoTokenizer.from_pretrained(str(path), use_fast=True, local_files_only=True))

    def encode(self, text: str) -> tuple[list[int], list[int]]:
        """``(piece_ids, char_piece)``: the pieces, and for each character the index of its piece or -1."""
        safe = _SURROGATE.sub("\ufffd", text)
        encoded = self.tokenizer(safe, add_special_tokens=False, return_offsets_mapping=True, truncation=False,
                                 verbose=False)
        char_piece = [-1] * len(text)
        for k, (start, end) in enumerate(encoded["offset_mapping"]):
            for c in range(start, end):
                if char_piece[c] < 0:
                    char_piece[c] = k
        return list(encoded["input_ids"]), char_piece

    def save(self, directory: str | os.PathLike) -> None:
        self.tokenizer.save_pretrained(str(directory))
