"""Word pieces of a BERT-style tokenizer, aligned with the characters of the text.

Only imported when a model uses a pretrained encoder (``pip install lexner[transformers]``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .fileio import ModelFormatError, expand_home, read_json

_SURROGATE = re.compile("[\ud800-\udfff]")
TOKENIZER_JSON = "tokenizer.json"
VOCAB_TXT = "vocab.txt"
SPECIAL_TOKENS = ("unk_token", "cls_token", "sep_token", "pad_token", "mask_token")
DEFAULT_SPECIAL = {"unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                   "mask_token": "[MASK]"}


def _tokenizer_settings(path: Path) -> dict:
    """Special tokens, casing and maximum length from the folder's JSON files (plain values only; every other
    key, ``auto_map`` and ``tokenizer_class`` included, is ignored)."""
    settings: dict = dict(DEFAULT_SPECIAL)
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        if not (path / name).is_file():
            continue
        saved = read_json(path / name)
        if not isinstance(saved, dict):
            raise ModelFormatError(f"{path / name}: expected a JSON object")
        for key in SPECIAL_TOKENS:
            value = saved.get(key)
            if isinstance(value, dict):  # a serialised AddedToken
                value = value.get("content")
            if value is not None and not isinstance(value, str):
                raise ModelFormatError(f"{path / name}: {key} must be a string, got {type(value).__name__}")
            if value:
                settings[key] = value
        if isinstance(saved.get("do_lower_case"), bool):
            settings["do_lower_case"] = saved["do_lower_case"]
        if isinstance(saved.get("model_max_length"), int):
            settings["model_max_length"] = saved["model_max_length"]
    return settings


def _wordpiece(vocab_file: Path, settings: dict):
    """BERT's WordPiece tokenizer from ``vocab.txt``, built by the ``tokenizers`` library (``BertTokenizerFast
    (vocab_file=...)`` silently ignores the file under transformers 5 and keeps only the special tokens, so that
    every piece would be [UNK]); its size is checked against the file's distinct lines."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import PreTrainedTokenizerFast

    # as tokenizers reads the file: lines split at \n only, trailing whitespace dropped (x and "x " are one piece)
    lines = [line.rstrip() for line in vocab_file.read_text(encoding="utf-8").split("\n")]
    lines = lines[:-1] if lines and not lines[-1] else lines
    wordpiece = BertWordPieceTokenizer(str(vocab_file), lowercase=settings.get("do_lower_case", True),
                                       **{k: settings[k] for k in DEFAULT_SPECIAL})
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=wordpiece._tokenizer, **settings)
    if tokenizer.vocab_size != len(set(lines)):
        raise ModelFormatError(f"{vocab_file}: {len(set(lines))} distinct pieces, but the tokenizer built from it "
                               f"has {tokenizer.vocab_size}")
    return tokenizer


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
    def load(cls, path: str | os.PathLike) -> "PieceEncoder":
        """The tokenizer in the folder ``path``, built from its data files only: ``tokenizer.json`` (any fast
        tokenizer) or else ``vocab.txt`` (BERT WordPiece), with the special tokens and casing read from
        ``tokenizer_config.json``/``special_tokens_map.json``.  Nothing in the folder is ever executed or
        unpickled: an ``auto_map`` or Python file there is ignored (``transformers``' ``AutoTokenizer`` would
        offer to run it), and nothing is downloaded.  A folder without a usable tokenizer raises
        :class:`~lexner.fileio.ModelFormatError` naming the file."""
        path = expand_home(path)  # as build_encoder reads bert_path: ~/models/... in quotes too
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: no such tokenizer/encoder directory (models are never downloaded)")
        settings = _tokenizer_settings(path)
        try:
            if (path / TOKENIZER_JSON).is_file():
                from transformers import PreTrainedTokenizerFast

                source = path / TOKENIZER_JSON
                tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(source), **settings)
            elif (path / VOCAB_TXT).is_file():
                source = path / VOCAB_TXT
                tokenizer = _wordpiece(source, settings)
            else:
                raise ModelFormatError(f"{path}: no {TOKENIZER_JSON} or {VOCAB_TXT}; a tokenizer is read only from "
                                       "these files (never from code in the folder)")
        except ModelFormatError:
            raise
        except Exception as err:  # the tokenizers library raises its own exception types for malformed files
            raise ModelFormatError(f"{source}: not a readable tokenizer ({type(err).__name__}: {err})") from None
        if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
            raise ModelFormatError(f"{source}: the tokenizer has no [CLS]/[SEP] tokens (a BERT-style one is needed)")
        encoder = cls(tokenizer)
        try:  # a character no vocabulary holds: a tokenizer whose unknown token is not in its vocabulary fails
            encoder.encode("龘\U0010fffd张三 Zoë")  # here, not at the first unknown character of a training or tagging
        except Exception as err:
            raise ModelFormatError(f"{source}: the tokenizer cannot encode a text ({type(err).__name__}: {err}); is "
                                   "its unknown token in its vocabulary?") from None
        return encoder

    def check_ids(self, vocab_size: int, where: str) -> None:
        """``ModelFormatError`` (naming ``where``) if a piece id could reach past the encoder's ``vocab_size``
        embedding rows (an IndexError on the first text holding such a piece) or a special token is missing."""
        vocab = self.tokenizer.get_vocab()
        ids = [self.cls_id, self.sep_id, self.pad_id, *vocab.values()]
        if max(ids) >= vocab_size or min(ids) < 0:
            beyond = sorted((i, t) for t, i in vocab.items() if i >= vocab_size)[:3]
            raise ModelFormatError(f"{where}: the tokenizer's ids reach {max(ids)}, past the encoder's {vocab_size} "
                                   f"embeddings ({', '.join(f'{t!r} {i}' for i, t in beyond)}: a special token the "
                                   "vocabulary lacks, added after it, or a tokenizer of another checkpoint)")

    def encode(self, text: str) -> tuple[list[int], list[int]]:
        """``(piece_ids, char_piece)``: the pieces, and for each character the index of its piece or -1."""
        safe = _SURROGATE.sub("\ufffd", text)
        # split_special_tokens (transformers ≥ 4.42 for fast tokenizers): "[SEP]" or "[PAD]" written in the text
        # is text, never the encoder's separator
        encoded = self.tokenizer(safe, add_special_tokens=False, return_offsets_mapping=True, truncation=False,
                                 verbose=False, split_special_tokens=True)
        char_piece = [-1] * len(text)
        for k, (start, end) in enumerate(encoded["offset_mapping"]):
            for c in range(start, end):
                if char_piece[c] < 0:
                    char_piece[c] = k
        return list(encoded["input_ids"]), char_piece

    def save(self, directory: str | os.PathLike) -> None:
        self.tokenizer.save_pretrained(str(directory))
