"""What a tagger sees of a text, splitting long texts into pieces, and putting the pieces' entities back together.

**Lines and whitespace.**  A text is tagged line by line: a line break (whatever ``str.splitlines`` splits at:
LF, CR, CRLF, U+2028/2029, ...) is a hard boundary, and each line is tagged exactly as if it were a text of its
own.  Within a line the model sees the characters without their whitespace (lexner's models are trained on
Chinese text, which has none), except whitespace between two Latin letters or digits (``Elon Musk``, ``iPhone
15``; :func:`is_latin_alnum`, a combining diacritic counting as the letter it follows).  Entities are then
constrained in the decoder, never edited afterwards: an entity cannot start or end at a kept whitespace
character (it may only be inside one), and cannot run across removed whitespace — so no entity ever starts or
ends with whitespace, holds whitespace other than between Latin letters/digits, or crosses a line break.
Control and format characters (NUL, zero-width space, soft hyphen, BOM, ...: ``CONTROLS``) are left out of the
view too, but mark no boundary: an entity may run across them, never start or end on one.  Offsets always
index the original text (:class:`ModelLine` maps them back, in memory proportional to the number of runs of
whitespace and control characters).

A text longer than ``max_length`` is cut after sentence-final punctuation into pieces of at most
``max_length`` characters (consecutive sentences are packed together); a single sentence that is still too
long is cut into windows of ``max_length`` that overlap by ``overlap`` characters.  Entities found in
overlapping windows are merged at the middle of each overlap: the left window's entities that start before
the middle, the right window's from the middle on, and an entity that would overlap one already kept is
dropped — so no entity is reported twice and offsets always index the whole text (:class:`WindowMerger`; an
entity the left window's end may have cut short is taken from the right window, where it starts the same).
"""

from __future__ import annotations

import itertools
import math
import numbers
import re
from bisect import bisect_left, bisect_right
from typing import Callable, Iterable, Iterator, Sequence

from dataclasses import dataclass, field

from .entity import Entity
from .schemes import Span, entity_prefixes
from .text import normalize

# Every code point for which str.isspace() is true (checked against it in tests/test_tagging.py).
WHITESPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# Every control (Unicode category Cc) and format (Cf) character that is not whitespace — NUL, zero-width space
# and joiners, soft hyphen, byte-order mark, direction marks, ... as Unicode 15.1 has them (checked against
# unicodedata in tests/test_tagging.py).  The model never sees them and no entity starts or ends on one, but
# unlike whitespace they mark no boundary: ``北\u200b京`` is one word.
CONTROLS = ("\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e"
            "\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
            "\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f")
_SPACE_RUN = re.compile(f"[{WHITESPACE}]+")
_HIDDEN_RUN = re.compile(f"[{WHITESPACE}{CONTROLS}]+")  # what the model does not see
_LINE_BREAK = re.compile("\r\n|[\n\x0b\x0c\r\x1c\x1d\x1e\x85\u2028\u2029]")  # what str.splitlines splits at

# What may stand at a position of a line's view (see ModelLine.constraints): tag prefixes allowed there.
INSIDE = "OI"  # kept whitespace between Latin letters/digits: only inside an entity, or outside
BEFORE_GAP = "OES"  # the character before removed whitespace: an entity must end here
AFTER_GAP = "OBS"  # the character after removed whitespace: an entity must start here
ALONE = "OS"  # removed whitespace on both sides


def is_latin_alnum(char: str) -> bool:
    """A Latin letter (ASCII, Latin-1, Extended-A/B or Extended Additional — Vietnamese ạ, ọ — full-width
    included) or a digit 0-9.  Only full-width forms are normalised first (the other mappings never make or
    unmake a Latin letter, and OpenCC's costs a microsecond a call: this runs per dictionary match)."""
    c = normalize(char) if "\uff01" <= char <= "\uff5e" else char
    return (c.isascii() and c.isalnum()) or (("\u00c0" <= c <= "\u024f" or "\u1e00" <= c <= "\u1eff") and c.isalpha())


def base_before(text: str, position: int, floor: int) -> str:
    """The character before ``position`` (not before ``floor``), past any combining diacritics (U+0300–U+036F,
    the accent of a decomposed ``ë``), which belong to the letter before them."""
    k = position - 1
    while k > floor and is_combining(text[k]):
        k -= 1
    return text[k]


def is_combining(char: str) -> bool:
    """A combining diacritic (U+0300–U+036F), which belongs to the letter before it."""
    return "\u0300" <= char <= "\u036f"


@dataclass
class ModelLine:
    """One line of a text as the model sees it: ``view`` (the line without removable whitespace), where its
    characters sit in the original text, and the tag prefixes allowed at positions of ``view`` that whitespace
    restricts (``constraints``; every other position allows all).

    Positions are kept compactly, one pair per stretch of characters that is contiguous in both: ``starts``
    (where each stretch begins in ``view``) and ``origins`` (where it begins in the text) — a line without
    removed whitespace is one stretch, whatever its length."""

    view: str
    starts: tuple[int, ...]  # tuples: the garbage collector stops tracking them (thousands live in tag_batch)
    origins: tuple[int, ...]
    constraints: dict[int, str] = field(default_factory=dict)

    def offset(self, position: int) -> int:
        """Where ``view[position]`` sits in the original text."""
        k = bisect_right(self.starts, position) - 1
        return self.origins[k] + position - self.starts[k]

    def to_text(self, span: Span) -> Span:
        """A span of ``view`` as a span of the original text."""
        return Span(self.offset(span.start), self.offset(span.end - 1) + 1, span.label)

    def allows(self, start: int, end: int) -> bool:
        """Whether whitespace lets ``view[start:end]`` be one entity (its tags' prefixes are allowed there)."""
        prefixes = entity_prefixes(end - start)
        return all(prefix in self.constraints.get(start + k, prefix) for k, prefix in enumerate(prefixes))

    def with_forced(self, occurrences: Sequence[tuple[int, int, str]]) -> dict[int, str | tuple[str, ...]]:
        """``constraints`` plus, for each ``(start, end, type)`` of ``view`` that whitespace allows there, the
        single BIOES tag each of its characters must take (a tuple of one tag name)."""
        merged: dict[int, str | tuple[str, ...]] = dict(self.constraints)
        for start, end, label in occurrences:
            if self.allows(start, end):
                prefixes = entity_prefixes(end - start)
                merged.update({start + k: (f"{prefix}-{label}",) for k, prefix in enumerate(prefixes)})
        return merged


def iter_model_lines(text: str) -> Iterator[ModelLine]:
    """The non-empty lines of ``text`` as the model sees them (see the module's docstring), one at a time."""
    start = 0
    for found in _LINE_BREAK.finditer(text):
        line = _model_line(text, start, found.start())
        if line.view:
            yield line
        start = found.end()
    line = _model_line(text, start, len(text))
    if line.view:
        yield line


def _model_line(text: str, start: int, end: int) -> ModelLine:
    if not _HIDDEN_RUN.search(text, start, end):  # most lines: nothing to remove, one stretch
        return ModelLine(text[start:end], (0,), (start,))
    parts: list[tuple[bool, int, int]] = []  # (holds whitespace, start, end) in order: the visible stretches
    position = start  # and the runs of whitespace, each with any control characters next to it
    for run in _HIDDEN_RUN.finditer(text, start, end):
        if run.start() > position:
            parts.append((False, position, run.start()))
        if _SPACE_RUN.search(text, run.start(), run.end()):
            parts.append((True, run.start(), run.end()))
        position = run.end()  # a run of control characters alone just goes, as if it were not there
    if position < end:
        parts.append((False, position, end))
    pieces: list[str] = []
    starts: list[int] = []
    origins: list[int] = []
    size = 0  # characters of the view so far
    constraints: dict[int, str] = {}
    must_end, must_start = set(), set()  # view positions next to removed whitespace

    def keep(a: int, b: int) -> None:
        nonlocal size
        if not (origins and origins[-1] + size - starts[-1] == a):  # not contiguous with the last stretch
            starts.append(size)
            origins.append(a)
        pieces.append(text[a:b])
        size += b - a

    for k, (space, a, b) in enumerate(parts):
        if not space:
            keep(a, b)
        elif 0 < k < len(parts) - 1:  # whitespace with text on both sides (at a line's ends it just goes)
            if is_latin_alnum(base_before(text, a, start)) and is_latin_alnum(text[b]):
                for kept in _SPACE_RUN.finditer(text, a, b):  # its whitespace, not its control characters
                    constraints.update(dict.fromkeys(range(size, size + kept.end() - kept.start()), INSIDE))
                    keep(kept.start(), kept.end())
            else:
                must_end.add(size - 1)
                must_start.add(size)
    for k in must_end | must_start:
        constraints[k] = ALONE if k in must_end and k in must_start else BEFORE_GAP if k in must_end else AFTER_GAP
    return ModelLine("".join(pieces), tuple(starts), tuple(origins), constraints)


# A trained model tags texts in pieces about as long as most of its training sentences (lexner.train sets it):
# a model trained on sentences of up to ~100 characters scores lower on long lines than on the same sentences
# in pieces (benchmarks/piece_length.py).  The piece length is the training lengths' 99th percentile, between
# MIN_PIECE_LENGTH and MAX_PIECE_LENGTH (the length of models saved without one).
PIECE_QUANTILE = 0.99
MIN_PIECE_LENGTH = 64
MAX_PIECE_LENGTH = 500
PIECE_LENGTH_LIMIT = 5000  # what set_piece_length takes at most: memory per piece grows with it (FLAT: squared)


def piece_length(lengths: Sequence[int]) -> int:
    """The piece length for a model trained on sentences of ``lengths`` characters (see PIECE_QUANTILE)."""
    if not lengths:
        raise ValueError("piece_length needs at least one training length")
    ordered = sorted(lengths)
    return min(MAX_PIECE_LENGTH, max(MIN_PIECE_LENGTH, ordered[math.ceil(PIECE_QUANTILE * len(ordered)) - 1]))


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


def split_windows(text: str, max_length: int, overlap: int,
                  whole: Sequence[tuple[int, int]] = ()) -> list[tuple[int, int]]:
    """Windows (start, end) covering ``text``, each at most ``max_length`` long, in order.

    Consecutive windows touch (end == next start) except inside an over-long sentence, where they overlap
    by ``overlap`` characters.  ``whole``: spans (start, end) that no window may cut — begin or end strictly
    inside — (forced dictionary words): a window's end, or the next one's start, moves back to the span's start
    (or a start forward to its end), so such overlaps can be longer or shorter; a span longer than a window
    cannot stay whole (:func:`tag_texts` forces no such word).
    """
    if max_length < 1 or not 0 <= overlap < max_length:
        raise ValueError(f"need max_length ≥ 1 and 0 ≤ overlap < max_length, got {max_length}, {overlap}")
    if len(text) <= max_length:
        return [(0, len(text))]
    inside = {p for s, e in whole if e - s <= max_length for p in range(s + 1, e)}  # where no cut may fall

    def allowed(position: int, floor: int) -> int:
        """The last position at or before ``position`` and after ``floor`` that is not inside a span; if there is
        none, the first one after ``position`` (the end of the span it is inside)."""
        for candidate in range(position, floor, -1):
            if candidate not in inside:
                return candidate
        while position in inside:
            position += 1
        return position

    windows: list[tuple[int, int]] = []
    for start, end in _pieces_not_cutting(sentence_pieces(text), inside):
        if windows and end - windows[-1][0] <= max_length and windows[-1][1] == start:
            windows[-1] = (windows[-1][0], end)  # pack with the previous sentence
            continue
        while end - start > max_length:
            cut = allowed(start + max_length, start)
            windows.append((start, cut))
            start = allowed(max(start + 1, cut - overlap), start)
            if allowed(start + max_length, start) <= cut:  # a window from there would end no further on
                start = cut
        windows.append((start, end))
    return windows


def _pieces_not_cutting(pieces: list[tuple[int, int]], inside: set[int]) -> Iterator[tuple[int, int]]:
    """Sentence pieces, those whose boundary falls inside a span that must stay whole joined together."""
    current = None
    for start, end in pieces:
        if current is not None and start in inside:
            current = (current[0], end)
            continue
        if current is not None:
            yield current
        current = (start, end)
    if current is not None:
        yield current


class WindowMerger:
    """Puts the entities of a line's windows back together, one window at a time in order (so that nothing but
    the last kept entity's end need be remembered): a window keeps the entities that start between the
    middles of its overlaps with its neighbours, and none that would overlap one already kept.  An entity that
    ends at the window's end, where the next window overlaps it and holds its start, may be cut short there: if
    the next window finds an entity at the same start, that one is kept (it sees what follows), else this one."""

    def __init__(self, windows: Sequence[tuple[int, int]]):
        self.windows = windows
        self.last_end = 0
        self.deferred: Span | None = None  # an entity the previous window left to this one to confirm

    def add(self, k: int, found: Sequence[Span]) -> list[Span]:
        """The entities kept of window ``k``'s (offsets relative to the window), with offsets into the line."""
        windows, (start, end) = self.windows, self.windows[k]
        low = (start + windows[k - 1][1] + 1) // 2 if k and windows[k - 1][1] > start else start
        following = windows[k + 1][0] if k + 1 < len(windows) and windows[k + 1][0] < end else None
        high = (following + end + 1) // 2 if following is not None else end
        spans = [Span(span.start + start, span.end + start, span.label) for span in found]
        kept = []
        if self.deferred is not None:
            kept.append(next((s for s in spans if s.start == self.deferred.start), self.deferred))
            self.last_end, self.deferred = kept[0].end, None
        for s in spans:
            if low <= s.start < high and s.start >= self.last_end:
                if s.end == end and following is not None and s.start >= following:
                    self.deferred = s  # perhaps cut short by this window's end: the next window holds it
                    break
                kept.append(s)
                self.last_end = s.end
        return kept


@dataclass
class _Line:
    """A line being tagged: which text it belongs to, its view, constraints (with their positions sorted, to
    take each window's share without scanning them all), windows and merger."""

    text: int
    line: ModelLine
    constraints: dict[int, str | tuple[str, ...]]
    positions: tuple[int, ...]
    windows: tuple[tuple[int, int], ...]
    merger: WindowMerger

    def window_constraints(self, k: int) -> dict[int, str | tuple[str, ...]]:
        """The constraints of window ``k``, relative to it (no window cuts a forced word: :func:`tag_texts` forces
        none longer than a window, and :func:`split_windows` keeps the others whole)."""
        a, b = self.windows[k]
        return {p - a: self.constraints[p] for p in self.positions[bisect_left(self.positions, a):
                                                                 bisect_left(self.positions, b)]}


def tag_texts(tagger, texts: Iterable[str], batch_size: int = 64, labels: str | None = None,
              progress: Callable[[int], None] | None = None) -> list[list]:
    """``tagger.tag_batch(texts)``: each text's lines as the model sees them (:func:`iter_model_lines`), each
    line's windows (:func:`split_windows`), the tagger's typed dictionary as decoding constraints, the pieces
    decoded by ``tagger.decode_pieces`` in blocks of ``tagger.block_pieces`` and their entities merged back
    (:class:`WindowMerger`) with offsets into the original texts.  Everything streams: lines are cut, and
    windows' entities merged, as their block comes, so beyond the texts and the entities found, memory is
    bounded by one block (a 30 MB line is as cheap per character as a sentence) — except with a typed dictionary,
    whose occurrences in a line, and the constraints they make, are found for the whole line before it is cut
    (a few hundred bytes per forced character; a helper measured by hand 32 MB more for a 156,000-character line
    of 45,000 place names; not yet streamed).  ``progress``, if given, is
    called after each batch with how many texts are done — within a block an estimate, the block's texts in
    proportion to its pieces decoded — and never with fewer than before (batching does not depend on it)."""
    import torch  # imported on first use: lexner.tagging stays light for callers that only map offsets

    if isinstance(texts, str):
        raise TypeError("tag_batch() expects a sequence of str, got a single str; use tag()")
    if isinstance(texts, (set, frozenset)):  # the results come in the texts' order, which a set lacks
        raise TypeError(f"tag_batch() expects an ordered sequence of str, got a {type(texts).__name__} (no order to "
                        "give the results in): pass a list")
    tagger.check_head(labels)  # an unknown head, or one lacking a dictionary type, fails before any work
    try:
        texts = list(texts)  # any iterable (a generator is read once)
    except TypeError:
        raise TypeError(f"tag_batch() expects an iterable of str, got {type(texts).__name__}") from None
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f"tag_batch() expects str items, got {type(text).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer ≥ 1, got {batch_size!r}")
    batch_size = int(batch_size)  # numpy's integers too
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be a function of the texts done (or None), got {type(progress).__name__}")
    if tagger.block_pieces < 1 or tagger.max_length < 1:
        raise ValueError(f"block_pieces and max_length must be ≥ 1, got {tagger.block_pieces}, {tagger.max_length}")
    dictionary = tagger.dictionary

    def pieces() -> Iterator[tuple[_Line, int]]:
        for i, text in enumerate(texts):
            for line in iter_model_lines(text):
                occurrences = dictionary.occurrences(  # a word longer than a piece cannot be forced whole
                    line.view, lambda s, e: e - s <= tagger.max_length and line.allows(s, e)) if dictionary else []
                constraints = line.with_forced(occurrences) if occurrences else line.constraints
                windows = tuple(split_windows(line.view, tagger.max_length, tagger.overlap,  # see ModelLine
                                              [(s, e) for s, e, _ in occurrences]))
                state = _Line(i, line, constraints, tuple(sorted(constraints)), windows, WindowMerger(windows))
                for k in range(len(windows)):
                    yield state, k

    results: list[list] = [[] for _ in texts]
    was_training = tagger.training
    if was_training:  # a loaded model is in eval mode already: nothing changes, so threads may share it
        tagger.eval()
    try:
        with torch.inference_mode():
            stream = pieces()
            while block := list(itertools.islice(stream, tagger.block_pieces)):
                views = [state.line.view[slice(*state.windows[k])] for state, k in block]
                limits = [state.window_constraints(k) if state.constraints else {} for state, k in block]
                done = None
                if progress is not None:  # within a block, its share of the texts as its pieces are decoded
                    first, last, n = block[0][0].text, block[-1][0].text, len(block)
                    done = lambda decoded: progress(first + (last - first) * decoded // n)  # noqa: E731
                for (state, k), spans in zip(block, tagger.decode_pieces(views, limits, batch_size, labels, done)):
                    text = texts[state.text]
                    for span in state.merger.add(k, spans):
                        s = state.line.to_text(span)
                        results[state.text].append(Entity(s.start, s.end, s.label, text[s.start : s.end]))
                if progress is not None:
                    progress(block[-1][0].text)  # the texts before the block's last one are done
            if progress is not None:
                progress(len(texts))
    finally:
        if was_training:
            tagger.train()
    return results
