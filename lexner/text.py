"""Text normalisation for vocabulary and lexicon lookups.

Lookups (characters, bigrams, lexicon words) use a normalised copy of the text:

* full-width ASCII variants (U+FF01..U+FF5E) become ASCII and U+3000 (ideographic space) a space — the
  pretrained vectors in the data root were trained on text normalised so — and so do the other spaces (no-break
  space, U+2000..U+200A, ...: ``SPACES``), so that ``Elon\u00a0Musk`` matches a dictionary's ``Elon Musk``;
* Traditional Chinese becomes Simplified (OpenCC's ``t2s``), so that a model trained on Simplified text
  reads Hong Kong and Taiwan text: a whole text is converted at once (so that OpenCC's phrase rules apply,
  e.g. 乾隆 keeps 乾 while 乾淨 becomes 干净); where that changes the text's length, each character is
  converted alone instead (a character whose conversion is not one character is kept).

The result always has exactly ``len(text)`` code points, so offsets into the normalised text are offsets into
the user's original text.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Sequence

# Every space separator (Unicode Zs) but U+0020 (checked against unicodedata in tests/test_text.py).
SPACES = "".join(map(chr, [0xA0, 0x1680, *range(0x2000, 0x200B), 0x202F, 0x205F, 0x3000]))
_FULLWIDTH_TABLE = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)}
_FULLWIDTH_TABLE.update(dict.fromkeys(map(ord, SPACES), 0x20))
_FULLWIDTH = re.compile(f"[\uff01-\uff5e{SPACES}]")
_SURROGATE = re.compile("[\ud800-\udfff]")


@lru_cache(maxsize=1)
def _t2s():
    import opencc  # imported on first use: `import lexner` stays light

    return opencc.OpenCC("t2s")


@lru_cache(maxsize=1)
def _s2t():
    import opencc

    return opencc.OpenCC("s2t")


def read_back_traditional(word: str) -> str | None:
    """``word`` (a normal form: :func:`normalize`'s output) written in Traditional characters (OpenCC's ``s2t``)
    and read back as lookups read text, where that is not ``word``: 钱钟书 → 錢鍾書 → 钱锺书, as ``t2s`` takes 鍾
    to 锺 — the form a Simplified dictionary word takes in Traditional text.  None where it is the same, or where
    the conversion changes the word's length."""
    if word.isascii():
        return None
    try:
        traditional = _s2t().convert(word)
    except UnicodeEncodeError:  # a lone surrogate
        return None
    if len(traditional) != len(word):
        return None
    back = normalize(traditional)
    return back if back != word else None


@lru_cache(maxsize=65536)
def _char_to_simplified(char: str) -> str:
    converted = _t2s().convert(char)
    return converted if len(converted) == 1 else char


def to_simplified(text: str) -> str:
    """``text`` in Simplified Chinese, one code point for one (see the module's docstring)."""
    if text.isascii():
        return text
    try:
        converted = _t2s().convert(text)
    except UnicodeEncodeError:  # a lone surrogate, which OpenCC cannot take: it maps to U+FFFD for lookups
        return to_simplified(_SURROGATE.sub("\ufffd", text))
    if len(converted) == len(text):
        return converted
    return "".join(_char_to_simplified(c) for c in text)


def _halfwidth(text: str) -> str:
    return text.translate(_FULLWIDTH_TABLE) if _FULLWIDTH.search(text) else text


def normalize(text: str) -> str:
    """``text`` with full-width ASCII variants mapped to ASCII, every space separator to U+0020 and Traditional
    characters to Simplified.  The result has exactly ``len(text)`` code points."""
    return to_simplified(_halfwidth(text))


def normalize_many(texts: Sequence[str]) -> list[str]:
    """:func:`normalize` of each text, converted in one OpenCC call (much faster for many short words)."""
    if not texts:
        return []
    joined = "\n".join(texts)
    if joined.count("\n") != len(texts) - 1 or "\r" in joined:  # a text holds a line break: one at a time
        return [normalize(t) for t in texts]
    parts = to_simplified(_halfwidth(joined)).split("\n")
    if len(parts) != len(texts) or list(map(len, parts)) != list(map(len, texts)):
        return [normalize(t) for t in texts]
    return parts
