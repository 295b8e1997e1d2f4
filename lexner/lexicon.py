"""A lexicon (word list) and its matchers — Aho-Corasick for one text, a trie walked with numpy for many.
Knows nothing about torch or models."""

from __future__ import annotations

import itertools
import logging
import os
import threading
from contextlib import closing
from typing import Iterable, Iterator, NamedTuple, Sequence

import ahocorasick
import numpy as np

from .fileio import iter_lines
from .text import normalize, normalize_many

log = logging.getLogger(__name__)


def read_wordlist(path: str | os.PathLike) -> list[str]:
    """The words of a word-list file: one word per line; further whitespace-separated columns (frequencies,
    tags) are ignored, and so are blank lines."""
    with closing(iter_lines(path)) as lines:
        return _words(lines)


def _words(lines: Iterable[tuple[int, str]]) -> list[str]:
    return [fields[0] for _, line in lines if (fields := line.split())]


def read_words(path: str | os.PathLike, vectors: bool = True,
               progress: bool = False) -> tuple[list[str], np.ndarray | None]:
    """The words of a word2vec file with their vectors (None with ``vectors=False``: not parsed), or of a word
    list (see :func:`read_wordlist`) with None.  A word2vec file is one whose first line is ``COUNT DIM`` and
    whose next row has a token and at least DIM numbers (a word list may begin ``2019 5``, a word and its
    frequency).  The file is read once, so a pipe (``<(xzcat ...)``) loses nothing.  ``progress``: a bar while a
    word2vec file is read."""
    from .vectors import is_word2vec_header, read_word2vec

    with closing(iter_lines(path)) as lines:
        seen = []  # the first line and the first non-blank one after it
        for item in lines:
            seen.append(item)
            if len(seen) > 1 and item[1].strip():
                break
        rest = itertools.chain(seen, lines)
        if not seen or not is_word2vec_header(seen[0][1]):
            return _words(rest), None
        dim = int(seen[0][1].split()[1])
        row = seen[-1][1] if len(seen) > 1 else ""  # none: a header alone, or blank lines after it
        if not row.strip() or len(row.rstrip().split(" ")) > dim:
            return read_word2vec(path, lines=rest, vectors=vectors, progress=progress)
        log.warning("%s: line 1 reads like a word2vec header (COUNT DIM), but line %d is no token with %d numbers: "
                    "read as a word list", path, seen[-1][0], dim)
        return _words(rest), None


CODE_BITS = 21  # every code point is below 2 ** 21
# Lexicon.match_many: texts of fewer characters in all are matched one by one with the automaton: the trie's
# numpy calls cost more than they save on little text (benchmarks/results/lexicon_match_many.json: the automaton
# is cheaper per character for 316 characters a call, the trie for 1,260 and more)
TRIE_MIN_CHARS = 1024


def code_points(text: str) -> np.ndarray:
    """The code points of ``text`` (lone surrogates included), int64."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.int64)


class _Trie:
    """Words (normal forms) as a trie whose edges are sorted int64 keys ``parent node << CODE_BITS | code
    point``: walked one depth at a time for every position of many texts at once with numpy (see
    :meth:`Lexicon.match_many`); the same matches as the Aho-Corasick automaton, without a Python object per
    match.  Built in time and memory linear in the words' characters."""

    def __init__(self, words: dict[str, int]):
        """``words``: ``{normal form: word id}`` of the words to match."""
        forms = sorted(words, key=len, reverse=True)  # longest first: the words longer than d are a prefix
        lengths = np.fromiter(map(len, forms), dtype=np.int64, count=len(forms))
        self.depth = int(lengths[0]) if len(forms) else 0
        letters = code_points("".join(forms))
        firsts = np.cumsum(lengths) - lengths  # where each word starts in letters
        node = np.zeros(len(forms), dtype=np.int64)  # each word's node at the depth reached (0: the root)
        keys, children, count = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)], 1
        for d in range(self.depth):
            longer = int(np.searchsorted(-lengths, -d, side="left"))  # how many words are longer than d
            unique, inverse = np.unique(node[:longer] << CODE_BITS | letters[firsts[:longer] + d], return_inverse=True)
            keys.append(unique)
            children.append(np.arange(count, count + len(unique)))
            node[:longer] = count + inverse.reshape(-1)
            count += len(unique)
        every_key = np.concatenate(keys)
        order = np.argsort(every_key)  # each depth's keys are sorted, not all of them together
        self.keys, self.children = every_key[order], np.concatenate(children)[order]
        self.word = np.full(count, -1, dtype=np.int64)  # the word ending at each node, or -1
        self.word[node] = np.fromiter(map(words.__getitem__, forms), dtype=np.int64, count=len(forms))

    def match(self, codes: np.ndarray, limits: np.ndarray) -> np.ndarray:
        """(start, end, word id) rows of every word starting at each position of ``codes`` and ending by that
        position's ``limits`` (its text's end), sorted by (start, end)."""
        starts = np.arange(len(codes), dtype=np.int64)
        node = np.zeros(len(codes), dtype=np.int64)
        found = [np.zeros((0, 3), dtype=np.int64)]
        for d in range(self.depth):
            inside = starts + d < limits[starts]
            starts, node = starts[inside], node[inside]
            if not len(starts) or not len(self.keys):
                break
            key = node << CODE_BITS | codes[starts + d]
            at = np.minimum(np.searchsorted(self.keys, key), len(self.keys) - 1)
            edge = self.keys[at] == key
            starts, node = starts[edge], self.children[at[edge]]
            word = self.word[node]
            ends = word >= 0
            found.append(np.stack([starts[ends], starts[ends] + d + 1, word[ends]], axis=1))
        matches = np.concatenate(found)
        return matches[np.argsort(matches[:, 0] * (self.depth + 1) + matches[:, 1] - matches[:, 0], kind="stable")]


class Match(NamedTuple):
    start: int
    end: int  # exclusive
    word_id: int


MAX_WORD_LENGTH = 1000  # longer words are never matched: none is real, and pyahocorasick crashes on ~1M


class Lexicon:
    """An ordered set of words (normalised, see :func:`lexner.text.normalize`) with optional vectors.

    Word ids are positions in :attr:`words`.  :meth:`match` finds every occurrence of every word of at least
    ``min_length`` and at most :data:`MAX_WORD_LENGTH` characters in a text, in O(length of text + number of
    matches).
    """

    def __init__(self, words: Iterable[str], vectors: np.ndarray | None = None, min_length: int = 2,
                 aligned: bool = False):
        """``words`` are normalised and de-duplicated (first occurrence kept).  ``aligned``: keep every given
        word at its position instead — ids are positions, as in a saved model whose word embeddings are
        aligned with its word list; a word that normalises like an earlier one keeps its row but is never
        matched (the earlier one is)."""
        given = list(words)
        normalized = normalize_many(list(map(str.strip, given)))
        self.words: list[str] = []
        self._ids: dict[str, int] = {}
        if aligned:  # ids are positions; the first of several words with one normal form is the one matched
            self.words = given
            self._ids = dict(zip(reversed(normalized), range(len(normalized) - 1, -1, -1)))  # first one wins
            self._ids.pop("", None)
        else:
            for norm in normalized:
                if norm and norm not in self._ids:
                    self._ids[norm] = len(self.words)
                    self.words.append(norm)
        if vectors is not None and len(vectors) != len(self.words):
            raise ValueError(f"{len(vectors)} vectors for {len(self.words)} distinct words")
        self.vectors = vectors
        self.min_length = min_length
        self._automaton: ahocorasick.Automaton | None = None
        self._trie: _Trie | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        """Copies and pickles (``copy.deepcopy`` of a tagger, multiprocessing) leave out the lock and the
        matchers, which are built again on first use."""
        return {**self.__dict__, "_automaton": None, "_trie": None, "_lock": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    # construction -------------------------------------------------------------------------------------
    @classmethod
    def from_wordlist(cls, path: str | os.PathLike, min_length: int = 2) -> "Lexicon":
        """The words of a word list (see :func:`read_wordlist`)."""
        return cls(read_wordlist(path), min_length=min_length)

    @classmethod
    def from_word2vec(cls, path: str | os.PathLike, min_length: int = 2) -> "Lexicon":
        """The vocabulary of a word2vec text file is the lexicon, its vectors the word embeddings.

        Duplicate words after normalisation keep their first vector.
        """
        from .vectors import read_word2vec

        return cls._with_vectors(*read_word2vec(path), min_length=min_length)

    @classmethod
    def _with_vectors(cls, tokens: list[str], matrix: np.ndarray, min_length: int) -> "Lexicon":
        lex = cls(tokens, min_length=min_length)
        first = {}
        for i, tok in enumerate(normalize_many([t.strip() for t in tokens])):
            first.setdefault(tok, i)
        lex.vectors = matrix[[first[w] for w in lex.words]]
        return lex

    @classmethod
    def from_path(cls, path: str | os.PathLike, min_length: int = 2, progress: bool = False) -> "Lexicon":
        """A word2vec file if its first line is ``COUNT DIM``, otherwise a word list (:func:`read_words`)."""
        words, vectors = read_words(path, progress=progress)
        if vectors is not None:
            return cls._with_vectors(words, vectors, min_length)
        return cls(words, min_length=min_length)

    @classmethod
    def from_paths(cls, paths: str | os.PathLike | Sequence[str | os.PathLike], min_length: int = 2,
                   progress: bool = False) -> "Lexicon":
        """One file: :meth:`from_path`.  Several (word lists or word2vec files): the union of their words, in
        order, without vectors (a tagger built on it looks its words up in its word vectors)."""
        if isinstance(paths, (str, os.PathLike)):
            return cls.from_path(paths, min_length, progress)
        if len(paths) == 1:
            return cls.from_path(paths[0], min_length, progress)
        return cls([w for path in paths for w in cls.from_path(path, min_length, progress).words],
                   min_length=min_length)

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return normalize(word) in self._ids

    def id(self, word: str) -> int | None:
        return self._ids.get(normalize(word))

    def add(self, words: Iterable[str], vectors: np.ndarray | None = None) -> list[int]:
        """Add words (existing ones are kept) and return the ids of all given words.  A lexicon with vectors
        needs ``vectors``, one row per given word.  Everything is checked before anything changes: a refused
        call (an empty word, missing or misshapen vectors) leaves the lexicon as it was."""
        given = [normalize(word.strip()) for word in words]
        if not all(given):
            raise ValueError(f"cannot add an empty word (word {given.index('') + 1} of {len(given)})")
        with self._lock:  # no matcher is being built from the words meanwhile
            new: dict[str, int] = {}  # each word not in the lexicon -> where it is first given
            for k, word in enumerate(given):
                if word not in self._ids:
                    new.setdefault(word, k)
            if self.vectors is not None and new:
                if vectors is None:
                    raise ValueError("this lexicon has vectors: give a vector for each added word")
                rows = np.asarray(vectors)
                if rows.shape != (len(given), self.vectors.shape[1]):
                    raise ValueError(f"vectors must have one row of {self.vectors.shape[1]} per given word "
                                     f"({len(given)}), got shape {rows.shape}")
                self.vectors = np.concatenate([self.vectors, rows[list(new.values())].astype(self.vectors.dtype)])
            if new:
                self._automaton = self._trie = None  # built again on next use
            for word in new:
                self._ids[word] = len(self.words)
                self.words.append(word)
            return [self._ids[word] for word in given]

    # matching -----------------------------------------------------------------------------------------
    def _matcher(self, name: str, build):
        """The matcher kept in attribute ``name``, built by ``build()`` on first use — once, though several
        threads may tag with one model (``add`` drops the matchers, under the same lock)."""
        matcher = getattr(self, name)
        if matcher is None:
            with self._lock:
                if getattr(self, name) is None:
                    setattr(self, name, build())
                matcher = getattr(self, name)
        return matcher

    def _matchable(self) -> dict[str, int]:
        """The normalised forms (what texts are matched as) of the words that can match, with their ids."""
        return {word: i for word, i in self._ids.items() if self.min_length <= len(word) <= MAX_WORD_LENGTH}

    def _build(self) -> ahocorasick.Automaton:
        automaton = ahocorasick.Automaton()
        for word, word_id in self._matchable().items():
            automaton.add_word(word, (word_id, len(word)))
        if len(automaton) == 0:
            automaton.add_word("\0\0\0never", (-1, 0))  # pyahocorasick cannot finalise an empty automaton
        automaton.make_automaton()
        return automaton

    def match(self, text: str, normalized: bool = False) -> list[Match]:
        """Every occurrence of a lexicon word (length ≥ ``min_length``) in ``text``, sorted by (start, end).

        ``text`` is normalised first (unless ``normalized`` says the caller did); offsets index it as given.
        """
        return [Match._make(found) for found in self.match_spans(text, normalized)]

    def match_spans(self, text: str, normalized: bool = False) -> list[tuple[int, int, int]]:
        """:meth:`match` as plain ``(start, end, word_id)`` tuples (cheaper to make; what featurisation reads)."""
        automaton = self._matcher("_automaton", self._build)
        found = [(last + 1 - length, last + 1, word_id)
                 for last, (word_id, length) in automaton.iter(text if normalized else normalize(text))
                 if word_id >= 0]
        found.sort()
        return found

    def match_many(self, texts: Sequence[str], normalized: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`match_spans` of many texts at once, as arrays: ``(matches, bounds)``, int64 rows ``(start, end,
        word id)`` with offsets into their own text, text by text, each text's sorted by (start, end); text k's
        rows are ``matches[bounds[k]:bounds[k + 1]]``.  Much text is matched by a trie walked with numpy (no
        Python object per match), little text (under :data:`TRIE_MIN_CHARS`) by the automaton."""
        norms = list(texts) if normalized else normalize_many(list(texts))
        lengths = np.fromiter(map(len, norms), dtype=np.int64, count=len(norms))
        ends = np.cumsum(lengths)
        if not len(norms) or ends[-1] < TRIE_MIN_CHARS:
            counts = []  # each text's matches, flattened as they come

            def matched() -> Iterator[int]:
                for norm in norms:
                    found = self.match_spans(norm, normalized=True)
                    counts.append(len(found))
                    yield from itertools.chain.from_iterable(found)

            matches = np.fromiter(matched(), dtype=np.int64).reshape(-1, 3)
            return matches, np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
        trie = self._matcher("_trie", lambda: _Trie(self._matchable()))
        starts = ends - lengths
        matches = trie.match(code_points("".join(norms)), np.repeat(ends, lengths))
        bounds = np.searchsorted(matches[:, 0], np.concatenate([starts, ends[-1:]]))
        matches[:, :2] -= np.repeat(starts, np.diff(bounds))[:, None]
        return matches, bounds

    def count_uncovered(self, texts: Iterable[str]) -> np.ndarray:
        """How often each word (by id) occurs in ``texts`` where no longer matched word covers it — the
        statistic SoftLexicon's frequency weights use (so "北京" inside "北京大学" counts for "北京大学" only)."""
        counts = np.zeros(len(self.words), dtype=np.int64)
        for text in texts:
            reach = -1  # the furthest end of the matches seen; they start no later than the current one
            for start, end, word_id in sorted(self.match_spans(text), key=lambda m: (m[0], -m[1])):  # longer first
                if end > reach:  # not inside an earlier (or same-start, longer) match
                    counts[word_id] += 1
                    reach = end
        return counts
