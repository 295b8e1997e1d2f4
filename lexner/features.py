"""Turning texts into padded tensor batches (the preprocessing step shared by every tagger).

A batch holds the characters of each sentence and, when the featurizer has a lexicon, its *lattice*: every
lexicon word matched in the sentence with its head (first character) and tail (last character) position.
Lattice-LSTM and FLAT both read the lattice from the same :class:`Batch`.
"""

from __future__ import annotations

import itertools
import os
import re
from collections import Counter
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch

from .data import Sentence
from .fileio import DataFormatError, read_json, write_json
from .lexicon import Lexicon, code_points
from .schemes import MAX_ENTITY_TYPES, TYPE_NAME_RULE, PathReader, Span, bioes_tags, is_type_name, spans_to_tags
from .text import normalize, normalize_many
from .vocab import UNK, Vocab

END = "</s>"  # the right neighbour of a sentence's last character in its bigram
LEXICON_FILE = "lexicon.json"
CHAR_KEYS = ("chars", "bigrams", "tags")  # per-character fields, padded to the longest sentence
WORD_KEYS = ("word_ids", "word_heads", "word_tails")  # per-word fields, padded to the most words
TOKENIZER_DIR = "tokenizer"  # a pretrained encoder's tokenizer, for models with BERT features
MAX_WORD_LENGTH = 100  # the longest lexicon min_length a saved model may ask for
DEFAULT_LABELS = "default"  # the name of a one-head model's label set
LABEL_SET_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what a label set (head) may be called
MODEL_FILES = ("chars.json", "bigrams.json", LEXICON_FILE, TOKENIZER_DIR)  # what a featurizer saves


def bigrams(normalized: str) -> list[str]:
    """The bigram at each position: the character and its right neighbour (``</s>`` after the last)."""
    return [a + b for a, b in zip(normalized, normalized[1:])] + ([normalized[-1] + END] if normalized else [])


# A bigram as one int64 key, for looking up many at once (Featurizer.encode_many): its first code point times
# _KEY_BASE plus its second, END counting as one more code point past Unicode's
_END_CODE = 0x110000
_KEY_BASE = _END_CODE + 1


class _BigramKeys:
    """A bigram vocabulary as sorted keys (see _KEY_BASE) with their ids, searched with numpy."""

    def __init__(self, vocab: Vocab):
        self.vocab, self.size = vocab, len(vocab)  # what it was made from (a vocabulary may grow)
        pairs = [(ord(token[0]) * _KEY_BASE + (ord(token[1]) if len(token) == 2 else _END_CODE), i)
                 for token, i in vocab.index.items() if len(token) == 2 or token[1:] == END]
        pairs.sort()
        self.keys = np.array([key for key, _ in pairs], dtype=np.int64)
        self.ids = np.array([i for _, i in pairs], dtype=np.int64)
        self.unknown = vocab.index[UNK]

    def lookup(self, codes: np.ndarray, last: np.ndarray) -> np.ndarray:
        """The ids of the bigrams of texts whose code points ``codes`` are laid end to end, ``last`` holding
        where each text ends (the index of its last character): what :func:`bigrams` and ``Vocab.encode``
        give for each text, in one array."""
        keys = codes * _KEY_BASE
        keys[:-1] += codes[1:]
        keys[last] = codes[last] * _KEY_BASE + _END_CODE
        if not len(self.keys):
            return np.full(len(keys), self.unknown, dtype=np.int64)
        at = np.searchsorted(self.keys, keys).clip(max=len(self.keys) - 1)
        return np.where(self.keys[at] == keys, self.ids[at], self.unknown)


@dataclass
class Batch:
    """A padded batch of sentences.  ``B`` sentences, ``T`` = the longest length, ``M`` = the most words."""

    chars: torch.Tensor  # shape: (B, T), long; 0 = padding
    bigrams: torch.Tensor  # shape: (B, T), long
    mask: torch.Tensor  # shape: (B, T), bool; True on real characters
    lengths: torch.Tensor  # shape: (B,), long; every length ≥ 1
    tags: torch.Tensor | None = None  # shape: (B, T), long; gold BIOES tag ids (training only)
    # The lattice (only with a lexicon).  Words are sorted by (head, tail) within each sentence.
    word_ids: torch.Tensor | None = None  # shape: (B, M), long; lexicon id + 1, 0 = padding
    word_heads: torch.Tensor | None = None  # shape: (B, M), long; index of the word's first character
    word_tails: torch.Tensor | None = None  # shape: (B, M), long; index of the word's last character
    word_mask: torch.Tensor | None = None  # shape: (B, M), bool; True on real words
    # Word pieces of a pretrained encoder (only with a tokenizer), without [CLS]/[SEP].
    piece_ids: torch.Tensor | None = None  # shape: (B, P), long; padded with 0
    piece_lengths: torch.Tensor | None = None  # shape: (B,), long; pieces per sentence (may be 0)
    char_piece: torch.Tensor | None = None  # shape: (B, T), long; each character's piece, -1 = none
    # Decoding constraints (only when some position is constrained, see lexner.tagging.ModelLine).
    allowed: torch.Tensor | None = None  # shape: (B, T, number of tags), bool; tags the decoder may choose
    labels: str | None = None  # the label set (head) that tags and allowed belong to; None: the default
    # Distillation targets (see lexner.distill): a teacher's emission scores or tag marginals per character.
    soft: torch.Tensor | None = None  # shape: (B, T, number of tags), float
    soft_mask: torch.Tensor | None = None  # shape: (B,), bool; the sentences that have soft targets (None: all)
    soft_kind: str = ""  # "mse": match emission scores; "kl": match CRF tag marginals
    soft_weight: float = 1.0

    def to(self, device: torch.device | str) -> "Batch":
        if self.chars.device == torch.device(device):  # already there (collate makes CPU batches)
            return self
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return Batch(**{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in moved.items()})

    def __len__(self) -> int:
        return self.chars.shape[0]


class LabelSet:
    """One head's entity types, its BIOES tags and each tag's id (a multi-task model has several)."""

    def __init__(self, entity_types: Sequence[str]):
        self.entity_types = list(entity_types)
        self.tags = bioes_tags(self.entity_types)
        self.tag_index = {t: i for i, t in enumerate(self.tags)}
        self.reader = PathReader(self.tags)
        self._allowed_rows: dict[str | tuple[str, ...], torch.Tensor] = {}

    def encode(self, spans: Sequence[Span], length: int) -> list[int]:
        """Gold tag ids; entities of a type this label set does not know are tagged ``O``."""
        known = [s for s in spans if f"S-{s.label}" in self.tag_index]
        return [self.tag_index[t] for t in spans_to_tags(known, length, "BIOES")]

    def decode(self, paths: Sequence[Sequence[int]]) -> list[list[Span]]:
        """The entity spans of each path of tag ids."""
        return self.reader.spans(paths)

    def allowed_row(self, allowed: str | tuple[str, ...]) -> torch.Tensor:
        """A (number of tags,) bool row: for a string, True for the tags whose BIOES prefix is in it (``"OBS"``);
        for a tuple, True for the tags it names (``("B-ORG",)``)."""
        row = self._allowed_rows.get(allowed)
        if row is None:
            row = torch.tensor([(t in allowed) if isinstance(allowed, tuple) else (t[0] in allowed)
                                for t in self.tags])
            self._allowed_rows[allowed] = row
        return row


def _pad(rows: Sequence[Sequence[int]], width: int) -> torch.Tensor:
    """``rows`` right-padded with 0 to ``width``, as one (len(rows), width) long tensor: every value is written
    at once, in row order, into the positions the rows' lengths leave unpadded."""
    if len(rows) == 1 and len(rows[0]) == width:  # one row, nothing to pad (tag() of one sentence): one call
        return torch.from_numpy(np.array(rows, dtype=np.int64))
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    padded = np.zeros((len(rows), width), dtype=np.int64)
    padded[np.arange(width) < lengths[:, None]] = (
        np.concatenate(rows) if isinstance(rows[0], np.ndarray)  # encode_many's arrays
        else np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum())))
    return torch.from_numpy(padded)


def _lengths(rows: Iterable[Sequence]) -> np.ndarray:
    """The length of each row (int64)."""
    return np.fromiter(map(len, rows), dtype=np.int64)


def _mask(lengths: np.ndarray, width: int) -> torch.Tensor:
    """(len(lengths), width) bool: True on the first ``lengths[b]`` positions of row b (numpy is cheaper than
    torch for the small tensors of one call)."""
    return torch.from_numpy(np.arange(width) < lengths[:, None])


class Featurizer:
    """Holds the vocabularies, the BIOES tag set and (for lattice models) the lexicon; encodes texts."""

    def __init__(self, chars: Vocab, bigram_vocab: Vocab, entity_types: Sequence[str] | Mapping[str, Sequence[str]],
                 lexicon: Lexicon | None = None, pieces=None):
        """``entity_types``: the types of a one-head model, or ``{name: types}`` for a multi-task model with
        one head per label set, the first being the default one."""
        self.pieces = pieces  # a lexner.pieces.PieceEncoder for models with BERT features
        self.chars = chars
        self.bigrams = bigram_vocab
        self._set_types(entity_types)
        self.lexicon = lexicon
        self._bigram_keys: _BigramKeys | None = None  # made by encode_many when first needed

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
        lexicon: Lexicon | None = None,
        pieces=None,
        bigram_min_count: int = 1,
        label_sets: Mapping[str, Sequence[str]] | None = None,
    ) -> "Featurizer":
        """Vocabularies from the training sentences, plus extra tokens (e.g. those with pretrained vectors).

        ``bigram_min_count``: train's bigrams seen fewer times are left out (unless in ``extra_bigrams``), which
        makes a model much smaller (MSRA train has 303k distinct bigrams, half of them seen once).
        ``label_sets``: ``{name: types}`` of a multi-task model (default: one head with the sentences' types).
        """
        char_counts, bigram_counts = cls.count_tokens(sentences)
        types = {span.label for s in sentences for span in s.spans}
        return cls(
            Vocab.build(char_counts, extra=extra_chars),
            Vocab.build(bigram_counts, min_count=bigram_min_count, extra=extra_bigrams),
            label_sets if label_sets is not None else sorted(types),
            lexicon,
            pieces,
        )

    @property
    def word_vocab(self) -> list[str]:
        """Tokens of the word embedding table: padding, then the lexicon's words (id = lexicon id + 1)."""
        return ["<pad>"] + (self.lexicon.words if self.lexicon is not None else [])

    def encode_one(self, text: str, spans: Sequence[Span] | None = None, labels: str | None = None
                   ) -> dict[str, list[int]]:
        """Ids of one non-empty text (its gold BIOES tags in label set ``labels`` with ``spans``; its lattice
        with a lexicon)."""
        if not text:
            raise ValueError("cannot encode an empty text; filter empty texts out first")
        norm = normalize(text)
        item = {"chars": self.chars.encode(norm), "bigrams": self.bigrams.encode(bigrams(norm))}
        if spans is not None:
            item["tags"] = self.label_set(labels).encode(spans, len(text))
        return self._add_lattice(item, text, norm)

    def encode_many(self, texts: Sequence[str]) -> list[dict[str, Sequence[int]]]:
        """:meth:`encode_one` of each non-empty text (no gold tags), the characters, bigrams and lattices of all
        of them looked up at once: several times cheaper per text than one call each (``tag_batch`` encodes so),
        but dearer for a single text (the numpy calls' overhead), which goes to :meth:`encode_one` instead.  The
        fields are int64 arrays (views into one array per field), not lists: the garbage collector does not
        track arrays, so thousands of items alive during ``tag_batch`` do not bring on a full collection."""
        if len(texts) == 1:
            return [self.encode_one(texts[0])]
        if not all(texts):
            raise ValueError("cannot encode an empty text; filter empty texts out first")
        norms = normalize_many(texts)
        joined = "".join(norms)
        ends = list(itertools.accumulate(map(len, norms)))
        keys = self._bigram_keys
        if keys is None or keys.vocab is not self.bigrams or keys.size != len(self.bigrams):  # made, or grown
            keys = self._bigram_keys = _BigramKeys(self.bigrams)
        codes = code_points(joined)
        char_ids = np.array(self.chars.encode(joined), dtype=np.int64)
        bigram_ids = keys.lookup(codes, np.array(ends, dtype=np.int64) - 1)
        items = [{"chars": char_ids[start:end], "bigrams": bigram_ids[start:end]}
                 for start, end in zip([0, *ends], ends)]
        if self.lexicon is not None:
            matches, bounds = self.lexicon.match_many(norms, normalized=True)  # rows (start, end, word id)
            fields = {"word_ids": matches[:, 2] + 1, "word_heads": matches[:, 0].copy(),
                      "word_tails": matches[:, 1] - 1}
            for item, a, b in zip(items, bounds.tolist(), bounds[1:].tolist()):
                item.update({name: values[a:b] for name, values in fields.items()})
        if self.pieces is not None:
            for item, text in zip(items, texts):
                item["piece_ids"], item["char_piece"] = self.pieces.encode(text)
        return items

    def _add_lattice(self, item: dict, text: str, norm: str) -> dict:
        """``item`` with the lattice of ``text`` (normalised: ``norm``) if there is a lexicon, and its word
        pieces if there is a tokenizer."""
        if self.lexicon is not None:
            matches = self.lexicon.match_spans(norm, normalized=True)  # (start, end, word id)
            item["word_ids"] = [word_id + 1 for _, _, word_id in matches]
            item["word_heads"] = [start for start, _, _ in matches]
            item["word_tails"] = [end - 1 for _, end, _ in matches]
        if self.pieces is not None:
            item["piece_ids"], item["char_piece"] = self.pieces.encode(text)
        return item

    def collate(self, items: Sequence[dict], labels: str | None = None) -> Batch:
        """Pad encoded texts (from :meth:`encode_one`) into a :class:`Batch` for the head of ``labels``."""
        lengths = _lengths(item["chars"] for item in items)
        longest = int(lengths.max())
        padded = {k: _pad([item[k] for item in items], longest) for k in CHAR_KEYS if k in items[0]}
        padded["mask"] = _mask(lengths, longest)
        if "word_ids" in items[0]:
            counts = _lengths(item["word_ids"] for item in items)
            most = max(int(counts.max()), 1)
            padded.update({k: _pad([item[k] for item in items], most) for k in WORD_KEYS})
            padded["word_mask"] = _mask(counts, most)
        allowed = self.allowed([item.get("constraints") for item in items], longest, labels)
        if allowed is not None:
            padded["allowed"] = allowed
        with_soft = [b for b, item in enumerate(items) if "soft" in item]
        if with_soft:
            soft = torch.zeros(len(items), longest, len(items[with_soft[0]]["soft"][0]))
            for b in with_soft:
                soft[b, : len(items[b]["soft"])] = torch.as_tensor(items[b]["soft"])
            padded["soft"] = soft
            if len(with_soft) < len(items):  # e.g. noisy variants of distilled sentences: gold tags only
                padded["soft_mask"] = torch.zeros(len(items), dtype=torch.bool)
                padded["soft_mask"][with_soft] = True
        if "piece_ids" in items[0]:
            piece_lengths = torch.tensor([len(item["piece_ids"]) for item in items])
            padded["piece_ids"] = _pad([item["piece_ids"] for item in items], max(int(piece_lengths.max()), 1))
            padded["piece_lengths"] = piece_lengths
            padded["char_piece"] = _pad([[k + 1 for k in item["char_piece"]] for item in items], longest) - 1
        return Batch(lengths=torch.from_numpy(lengths), labels=labels, **padded)

    def allowed(self, constraints: Sequence[dict | None], length: int, labels: str | None = None
                ) -> torch.Tensor | None:
        """The (B, length, number of tags) bool mask of the tags the decoder may choose, from each sentence's
        ``{position: allowed tag prefixes or tags}`` (see ``lexner.tagging.ModelLine``); None when nothing is
        constrained."""
        if not any(constraints):
            return None
        label_set = self.label_set(labels)
        allowed = torch.ones(len(constraints), length, len(label_set.tags), dtype=torch.bool)
        for b, constrained in enumerate(constraints):
            for position, prefixes in (constrained or {}).items():
                allowed[b, position] = label_set.allowed_row(prefixes)
        return allowed

    def encode(self, texts: Sequence[str], spans: Sequence[Sequence[Span]] | None = None,
               labels: str | None = None) -> Batch:
        """Pad and encode non-empty texts; with ``spans``, also the gold BIOES tags of label set ``labels``."""
        return self.collate([self.encode_one(t, None if spans is None else spans[i], labels)
                             for i, t in enumerate(texts)], labels)

    def head_with_tags(self, name: str | None, tags: Sequence[str]) -> str | None:
        """The label set that answers one named ``name`` whose tags are ``tags`` (in any order): the set of that
        name, else the default set, else the only other one, with those tags; None when none or several fit
        (the bundled model's ``weibo`` head answers a one-task Weibo model's default set)."""
        wanted = sorted(tags)
        for candidate in (name, self.default_labels):
            if candidate in self.label_sets and sorted(self.label_sets[candidate].tags) == wanted:
                return candidate
        fitting = [head for head, label_set in self.label_sets.items() if sorted(label_set.tags) == wanted]
        return fitting[0] if len(fitting) == 1 else None

    def label_set(self, labels: str | None = None) -> LabelSet:
        """The label set named ``labels`` (None: the default one)."""
        if labels is None:
            return self.label_sets[self.default_labels]
        try:
            return self.label_sets[labels]
        except KeyError:
            raise ValueError(f"no label set {labels!r}; this model has {', '.join(self.label_sets)}") from None

    def add_label_set(self, name: str, types: Sequence[str]) -> None:
        """A new label set ``name`` with ``types`` after the others (the default one stays the default)."""
        if name in self.label_sets:
            raise ValueError(f"label set {name!r} exists already")
        self._set_types({**{n: ls.entity_types for n, ls in self.label_sets.items()}, name: list(types)})

    def rename_types(self, names: dict[str, str]) -> None:
        """Rename entity types (``{"NR": "PER"}``) in every label set that has them; tag ids keep their
        positions, so a trained model's weights still fit.  Types not in ``names`` keep their name."""
        known = {t for label_set in self.label_sets.values() for t in label_set.entity_types}
        if unknown := sorted(set(names) - known):
            raise ValueError(f"cannot rename {unknown}: not types of this model ({', '.join(sorted(known))})")
        renamed = {}
        for name, label_set in self.label_sets.items():
            types = [names.get(t, t) for t in label_set.entity_types]
            if unnamed := [t for t in label_set.entity_types if not names.get(t, t)]:
                raise ValueError(f"renaming {unnamed[0]} to an empty name (head {name!r}) would leave it unnamed")
            if merged := sorted({t for t in types if types.count(t) > 1}):
                sources = [t for t in label_set.entity_types if names.get(t, t) == merged[0]]
                raise ValueError(f"renaming would merge {' and '.join(sources)} into {merged[0]} in head {name!r} "
                                 f"(its types: {', '.join(label_set.entity_types)}); rename the other one too")
            renamed[name] = types
        self._set_types(renamed if len(renamed) > 1 else renamed[self.default_labels])

    def _set_types(self, entity_types: Sequence[str] | Mapping[str, Sequence[str]]) -> None:
        """The label sets and what follows from them (the default set's types, BIOES tags and tag ids)."""
        named = entity_types if isinstance(entity_types, Mapping) else {DEFAULT_LABELS: entity_types}
        if not named:
            raise ValueError("a model needs at least one label set")
        bad = [name for name in named if not (isinstance(name, str) and LABEL_SET_NAME.fullmatch(name))]
        if bad:
            raise ValueError(f"label set names must be 1-64 letters, digits, _ or -: {bad}")
        if bad := sorted({repr(t)[:40] for types in named.values() for t in types if not is_type_name(t)}):
            raise ValueError(f"entity type names must each be {TYPE_NAME_RULE}: {', '.join(bad[:10])}")
        if many := [f"{name} ({len(types)})" for name, types in named.items() if len(types) > MAX_ENTITY_TYPES]:
            raise ValueError(f"at most {MAX_ENTITY_TYPES} entity types per label set, got {', '.join(many)} (a column "
                             "of ids read as types?)")
        self.label_sets = {name: LabelSet(types) for name, types in named.items()}
        self.default_labels = next(iter(self.label_sets))
        default = self.label_sets[self.default_labels]
        self.entity_types, self.tags, self.tag_index = default.entity_types, default.tags, default.tag_index

    @property
    def multi_task(self) -> bool:
        return len(self.label_sets) > 1

    def decode_paths(self, paths: Sequence[Sequence[int]], labels: str | None = None) -> list[list[Span]]:
        """The entity spans of each path of tag ids of label set ``labels``."""
        return self.label_set(labels).decode(paths)

    # persistence ---------------------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> None:
        directory = Path(directory)
        self.chars.save(directory / "chars.json")
        self.bigrams.save(directory / "bigrams.json")
        if self.lexicon is not None:
            write_json(directory / LEXICON_FILE, {"min_length": self.lexicon.min_length, "words": self.lexicon.words})
        if self.pieces is not None:
            self.pieces.save(directory / TOKENIZER_DIR)

    @classmethod
    def load(cls, directory: str | os.PathLike, entity_types: Sequence[str]) -> "Featurizer":
        directory = Path(directory)
        lexicon = None
        if (directory / LEXICON_FILE).exists():  # read_json refuses what is not a regular file (a FIFO, a device)
            saved = read_json(directory / LEXICON_FILE)
            if not isinstance(saved, dict) or not isinstance(saved.get("words"), list):
                raise DataFormatError(directory / LEXICON_FILE, None, "not a lexner lexicon file")
            if set(map(type, saved["words"])) - {str}:  # map: one pass in C
                raise DataFormatError(directory / LEXICON_FILE, None, "every word must be a string")
            min_length = saved.get("min_length", 2)
            if type(min_length) is not int or not 1 <= min_length <= MAX_WORD_LENGTH:
                raise DataFormatError(directory / LEXICON_FILE, None,
                                      f"min_length must be an integer in [1, {MAX_WORD_LENGTH}], got {min_length!r}")
            if not all(map(str.strip, saved["words"])):
                raise DataFormatError(directory / LEXICON_FILE, None, "an empty word")
            lexicon = Lexicon(saved["words"], min_length=min_length, aligned=True)  # ids = embedding rows
        pieces = None
        if (directory / TOKENIZER_DIR).is_dir():
            from .pieces import PieceEncoder

            pieces = PieceEncoder.load(directory / TOKENIZER_DIR)
        return cls(Vocab.load(directory / "chars.json"), Vocab.load(directory / "bigrams.json"), entity_types,
                   lexicon, pieces)
