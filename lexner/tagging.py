"""Splitting long texts into pieces a tagger can take, and putting the pieces' entities back together.

A text longer than ``max_length`` is cut after sentence-final punctuation into pieces of at most
``max_length`` characters (consecutive sentences are packed together); a single sentence that is still too
long is cut into windows of ``max_length`` that overlap by ``overlap`` characters.  Entities found in
overlapping windows are merged at the middle of each overlap: the left window's entities that start before
the middle, the right window's from the middle on, and an entity that would overlap one already kept is
dropped — so no entity is reported twice and offsets always index the whole text.
"""

from __future__ import annotations

import re
from typing import Sequence

from .schemes import Span

SENTENCE_END = re.compile(r"[。！？!?；;…\n]+[”’」』）)]*")


def sentence_pieces(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence: cut after runs of sentence-final punctuation (and closing quotes)."""
    pieces, start = [], 0
    for found in SENTENCE_END.finditer(text):
        pieces.append((start, found.end()))
        start = found.end()
    if start < len(text):
        pieces.append((start, len(text)))
    return pieces


def split_windows(text: str, max_length: int, overlap: int) -> list[tuple[int, int]]:
    """Windows (start, end) covering ``text``, each at most ``max_length`` long, in order.

    Consecutive windows touch (end == next start) except inside an over-long sentence, where they overlap
    by ``overlap`` characters.
    """
    if max_length < 1 or not 0 <= overlap < max_length:
        raise ValueError(f"need max_length ≥ 1 and 0 ≤ overlap < max_length, got {max_length}, {overlap}")
    if len(text) <= max_length:
        return [(0, len(text))]
    windows: list[tuple[int, int]] = []
    for start, end in sentence_pieces(text):
        if windows and end - windows[-1][0] <= max_length and windows[-1][1] == start:
            windows[-1] = (windows[-1][0], end)  # pack with the previous sentence
            continue
        while end - start > max_length:
            windows.append((start, start + max_length))
            start += max_length - overlap
        windows.append((start, end))
    return windows


def merge_windows(windows: Sequence[tuple[int, int]], spans: Sequence[Sequence[Span]]) -> list[Span]:
    """Entities of the whole text from each window's entities (offsets relative to its window)."""
    merged: list[Span] = []
    for k, ((start, end), found) in enumerate(zip(windows, spans)):
        low = (start + windows[k - 1][1] + 1) // 2 if k and windows[k - 1][1] > start else start
        high = (windows[k + 1][0] + end + 1) // 2 if k + 1 < len(windows) and windows[k + 1][0] < end else end
        for span in found:
            s = Span(span.start + start, span.end + start, span.label)
            if low <= s.start < high and not (merged and merged[-1].end > s.start):
                merged.append(s)
    return merged
