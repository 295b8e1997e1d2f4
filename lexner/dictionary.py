"""Typed user dictionaries: words whose every occurrence must be tagged as a given entity type.

A :class:`Dictionary` only finds where its words occur; the tagger then *constrains its decoder* so that each
selected occurrence is exactly one entity of the word's type (``B-``/``I-``/``E-`` or ``S-`` tags on those
characters), and decodes the rest of the sentence around it — it never edits entities after decoding.

Which occurrences are selected: leftmost first, and at one start the longest word; one that begins or ends
inside a run of Latin letters and digits (``NBA`` in ``WNBA``) is none; an occurrence overlapping
one already selected is skipped (``{"北京": LOC, "北京大学": ORG}`` on ``北京大学在北京`` forces ``北京大学``/ORG
and the second ``北京``/LOC).  Words are matched after lexner's normalisation (full-width ASCII = ASCII), on
the characters the model sees (whitespace removed, see :mod:`lexner.tagging`): an occurrence that would put an
entity boundary where whitespace forbids one (inside ``北 京``, say), or one longer than the tagger's pieces, is
no candidate — it is not forced, and the occurrences it overlaps are chosen as if it were not there — and a word
holding whitespace the model does not see (``北 京``; only whitespace between Latin letters or digits, ``Elon
Musk``, is seen), a line break or a control character (``深\u200b圳``) never matches: adding one warns.  Types
must be types the model knows: anything else is refused when the dictionary is given (the decoder has no tag
for it).
"""

from __future__ import annotations

import logging
import os
from typing import Callable, Iterable, Mapping, Sequence

from .fileio import DataFormatError, iter_lines
from .lexicon import MAX_WORD_LENGTH, Lexicon
from .text import normalize, read_back_traditional
from .tagging import base_before, is_combining, is_latin_alnum, iter_model_lines

log = logging.getLogger(__name__)


def warn_if_unseen(word: str, what: str, where: str = "") -> None:
    """A warning if ``word`` (a dictionary or lexicon word, ``what``) holds what the model never sees — whitespace
    other than between Latin letters or digits, a line break, a control character — so that it can never match
    (``where``: the file and line it came from), showing the word as the model sees it; or one longer than
    :data:`lexner.lexicon.MAX_WORD_LENGTH` characters, which is never matched."""
    if len(word) > MAX_WORD_LENGTH:
        log.warning("%s%s %r… (%d characters) can never match: words longer than %d characters are not matched",
                    f"{where}: " if where else "", what, word[:20], len(word), MAX_WORD_LENGTH)
        return
    seen = "".join(line.view for line in iter_model_lines(word))
    if seen != word:
        log.warning("%s%s %r can never match: the model does not see its whitespace (except between Latin letters "
                    "or digits), line breaks or control characters; as it sees the text: %r",
                    f"{where}: " if where else "", what, word, seen)


class Dictionary:
    """Words and their entity types, matched with Aho-Corasick (no torch)."""

    def __init__(self, entries: Mapping[str, str] | Iterable[tuple[str, str]] = ()):
        self._lexicon = Lexicon([], min_length=1)
        self.types: dict[int, str] = {}  # word id → type, the words' Traditional spellings as read back too
        self._variants: set[int] = set()  # ids of those spellings (not words given)
        self.where: dict[str, str] = {}  # type → "file:line" giving it, for errors (Dictionary.read fills it)
        self.add(entries)

    def add(self, entries: Mapping[str, str] | Iterable[tuple[str, str]], where: str | None = None) -> None:
        """Add ``{word: type}`` entries (or pairs); a word given again takes the new type.  ``where``: where they
        were given (``file:line``), for warnings."""
        if isinstance(entries, (str, bytes, os.PathLike)):
            raise TypeError("a dictionary is {word: type} or (word, type) pairs, not a file name or one string; "
                            "for a file of word<TAB>TYPE lines: Dictionary.read(path)")
        if not isinstance(entries, (Mapping, Iterable)):
            raise TypeError(f"a dictionary is {{word: type}} or (word, type) pairs, got {type(entries).__name__}")
        items = entries.items() if isinstance(entries, Mapping) else entries
        given: dict[str, tuple[str, str]] = {}  # normal form → (word, type) given for it in these entries
        for item in items:
            if isinstance(item, str) or not isinstance(item, Sequence) or len(item) != 2:
                raise TypeError(f"a dictionary entry is a (word, type) pair, got {item!r}")
            word, label = item
            if not isinstance(word, str) or not word.strip():
                raise ValueError(f"a dictionary word must be a non-empty string, got {word!r}")
            if not isinstance(label, str) or not label.strip():
                raise ValueError(f"the type of {word!r} must be a non-empty string, got {label!r}")
            try:
                word.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(f"dictionary word {word!r} holds a lone surrogate") from None
            warn_if_unseen(word.strip(), "dictionary word", where)  # stripped, as the lexicon keeps it
            key, label = normalize(word.strip()), label.strip()
            if key in given and given[key][1] != label:  # 騰訊 and 腾讯, ＡＢＣ and ABC: one word to the matcher
                log.warning("dictionary word %r is %s but %r, the same word to the matcher, is %s; the later type "
                            "counts", given[key][0], given[key][1], word, label)
            given[key] = (word, label)
            self._put(word, label)

    def update(self, other: "Dictionary") -> None:
        """Add the entries of another dictionary (checked when they were added there)."""
        for word, label in other.items():
            self._put(word, label)
        for label, where in other.where.items():
            self.where.setdefault(label, where)

    def copy(self) -> "Dictionary":
        """Another dictionary with the same entries (word ids too), changed apart from this one."""
        other = Dictionary()
        other._lexicon = Lexicon(self._lexicon.words, min_length=1)  # normal forms already: ids kept in order
        other.types, other._variants, other.where = dict(self.types), set(self._variants), dict(self.where)
        return other

    def _put(self, word: str, label: str) -> None:
        """``word`` as ``label``, and its Traditional spelling as read back (:func:`read_back_traditional`: 钱钟书
        also matches 錢鍾書, read as 钱锺书) unless that is a word given itself."""
        (word_id,) = self._lexicon.add([word])
        self.types[word_id] = label
        self._variants.discard(word_id)
        if (variant := read_back_traditional(self._lexicon.words[word_id])) is not None:  # of the normal form
            (variant_id,) = self._lexicon.add([variant])
            if variant_id not in self.types or variant_id in self._variants:
                self.types[variant_id] = label
                self._variants.add(variant_id)

    @classmethod
    def read(cls, path: str | os.PathLike) -> "Dictionary":
        """A ``word<TAB>TYPE`` file (UTF-8, one entry per line; empty lines skipped).  A word given again with
        another type takes the later one, with a warning naming both lines."""
        given: dict[str, tuple[int, str, str]] = {}  # normal form → (line, type, word) where it was last given
        for lineno, line in iter_lines(path):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != 2 or not fields[0].strip() or not fields[1].strip():
                raise DataFormatError(path, lineno, f"expected 'WORD<TAB>TYPE', got {line[:60]!r}")
            word, label = fields[0].strip(), fields[1].strip()
            key = normalize(word)  # ＡＢＣ and ABC are one word to the matcher
            if key in given and given[key][1] != label:
                before, before_type, before_word = given[key]
                also = f" ({before_word!r} there, the same word to the matcher)" if before_word != word else ""
                log.warning("%s:%d: %r is %s here but %s on line %d%s; the later type counts", path, lineno, word,
                            label, before_type, before, also)
            given[key] = (lineno, label, word)
        dictionary = cls()
        for lineno, label, word in given.values():
            dictionary.add([(word, label)], where=f"{path}:{lineno}")
        for lineno, label, _ in sorted(given.values()):
            dictionary.where.setdefault(label, f"{path}:{lineno}")
        return dictionary

    def __len__(self) -> int:
        return len(self.types) - len(self._variants)

    def items(self) -> list[tuple[str, str]]:
        """``(word, type)`` pairs (words normalised)."""
        return [(self._lexicon.words[i], label) for i, label in self.types.items() if i not in self._variants]

    @property
    def labels(self) -> set[str]:
        return set(self.types.values())

    def occurrences(self, text: str, allowed: Callable[[int, int], bool] | None = None) -> list[tuple[int, int, str]]:
        """``(start, end, type)`` of the selected occurrences in ``text``: leftmost first, longest at a start,
        none overlapping, none inside a longer run of Latin letters and digits.  ``allowed(start, end)``: whether
        an occurrence can be forced there at all (the tagger's whitespace and piece-length rules); one that
        cannot is no candidate, so it takes no other's place."""
        chosen: list[tuple[int, int, str]] = []
        end_of_last = 0
        for match in sorted(self._lexicon.match(text), key=lambda m: (m.start, -m.end)):
            if match.start >= end_of_last and not _inside_latin_word(text, match.start, match.end) and (
                    allowed is None or allowed(match.start, match.end)):
                chosen.append((match.start, match.end, self.types[match.word_id]))
                end_of_last = match.end
        return chosen


def _inside_latin_word(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` begins or ends inside a run of Latin letters and digits (``NBA`` in ``WNBA``,
    ``iPhone`` in ``iPhone15``, ``Jose`` in ``Jose\u0301``, whose accent belongs to its last letter): such a word
    is not one of the dictionary's."""
    return (start > 0 and is_latin_alnum(text[start]) and is_latin_alnum(base_before(text, start, 0))) or (
        end < len(text) and is_latin_alnum(base_before(text, end, start))
        and (is_latin_alnum(text[end]) or is_combining(text[end])))
