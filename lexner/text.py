"""Text normalisation for vocabulary and lexicon lookups.

The pretrained vectors in the data root were trained on text in which full-width ASCII variants
(U+FF01..U+FF5E) were mapped to ASCII and U+3000 (ideographic space) to a space.  Lookups use the same
mapping.  It is strictly one code point to one code point, so offsets into the normalised text are offsets
into the user's original text.
"""

from __future__ import annotations

_FULLWIDTH_TABLE = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)}
_FULLWIDTH_TABLE[0x3000] = 0x20


def normalize(text: str) -> str:
    """Return ``text`` with full-width ASCII variants mapped to ASCII and U+3000 mapped to a space.

    The result has exactly ``len(text)`` code points.
    """
    return text.translate(_FULLWIDTH_TABLE)
