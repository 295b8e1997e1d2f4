"""Datasets: sentences with entity spans, the readers for each supported file format, and named datasets.

Supported formats (``read_file(path, format="auto")``):

* ``conll`` — one character per line, ``CHAR<space or tab>TAG``, an empty line between sentences; tags in BIO,
  BIOES or BMES (detected per file);
* ``weibo`` — the original golden-horse Weibo files: ``TOKEN<TAB>TAG`` where TOKEN is a character followed by
  its position in its word (``科0``, ``80`` = the digit ``8`` at position 0); BIO tags;
* ``jsonl`` — one JSON object per line: lexner's ``{"text": ..., "entities": [{"start", "end", "label"}]}``
  (character offsets, ``end`` exclusive), CLUENER's native ``{"text", "label": {type: {mention: [[s, e]]}}}``
  (``e`` inclusive) or doccano's ``{"text", "label": [[s, e, type]]}`` — see :func:`read_jsonl`.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import random
import re
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from .fileio import COMPRESSORS, DataFormatError, atomic_file, iter_lines, leading_bom, loads_json
from .schemes import (TYPE_NAME_RULE, Span, detect_scheme, ill_formed, is_type_name, spans_to_tags, split_tag,
                      tags_to_spans)

log = logging.getLogger(__name__)

FORMATS = ("conll", "weibo", "jsonl")


@dataclass
class Sentence:
    """A text and its entities as ``Span(start, end, label)`` with ``end`` exclusive."""

    text: str
    spans: list[Span] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.text)


def check_sentences(value: Any, what: str) -> None:
    """``TypeError`` unless ``value`` is a sequence of :class:`Sentence` (a file name or a list of plain texts
    is what a caller of the Python API most likely passed; the message says how to read data)."""
    if isinstance(value, (str, bytes, os.PathLike)) or not isinstance(value, Sequence) or not all(
            isinstance(s, Sentence) for s in value):
        got = type(value).__name__ if not isinstance(value, Sequence) or isinstance(value, (str, bytes)) else \
            f"a {type(value).__name__} of {', '.join(sorted({type(s).__name__ for s in value}))}"
        raise TypeError(f"{what} must be a list of lexner.data.Sentence, got {got}: read a file with "
                        "lexner.data.read_file(path), a named corpus with load_dataset(name, split)")


# --- readers --------------------------------------------------------------------------------------------

_WEIBO_TOKEN = re.compile(r"^(.+?)(\d{1,2})$", re.DOTALL)


def _weibo_char(token: str) -> str | None:
    """The character of a golden-horse token: ``科0`` → ``科``; ``80`` → ``8``; ``\\ufffd\\ufffd0`` → ``\\ufffd``."""
    found = _WEIBO_TOKEN.match(token)
    if not found:
        return None
    char = found.group(1)
    if len(char) > 1 and set(char) == {"\ufffd"}:  # a damaged emoji: two replacement characters
        return "\ufffd"
    return char if len(char) == 1 else None


# A line whose character is a whitespace character other than space and tab: the character (Weibo: and its
# position digits), spaces or tabs, the tag.
_SPACE_CHARACTER_LINE = re.compile(r"([^ \t][0-9]*)[ \t]+(\S+)[ \t]*")


def _fields(line: str) -> list[str]:
    """A character-per-line file's line as its fields: ``[character (with Weibo's digits), tag]`` when it reads
    so — the character may itself be whitespace (U+3000, NBSP, ...) —, else its whitespace-separated fields."""
    fields = line.split()
    if (len(fields) != 2 or line[:1].isspace()) and (spaced := _SPACE_CHARACTER_LINE.fullmatch(line)):
        return list(spaced.groups())
    return fields


def _read_char_per_line(path: str | os.PathLike, lines: Iterable[tuple[int, str]], weibo: bool) -> list[Sentence]:
    blocks: list[tuple[int, list[str], list[str]]] = []  # (first line, characters, tags) per sentence
    chars: list[str] = []
    tags: list[str] = []
    for lineno, line in lines:
        if not line.strip():
            chars, tags = [], []
            continue
        fields = _fields(line)
        if len(fields) != 2:
            raise DataFormatError(path, lineno, f"expected 'CHAR TAG' (2 fields), got {len(fields)}: {line[:40]!r}")
        token, tag = fields
        char = _weibo_char(token) if weibo else token
        if char is None or len(char) != 1:
            what = "a character followed by its position digits" if weibo else "a single character"
            raise DataFormatError(path, lineno, f"expected {what}, got {token!r}")
        try:
            split_tag(tag)
        except ValueError as err:
            raise DataFormatError(path, lineno, str(err)) from None
        if not chars:
            blocks.append((lineno, chars, tags))
        chars.append(char)
        tags.append(tag)
    if len(blocks) > 2 and all(len(block_chars) == 1 for _, block_chars, _ in blocks):
        log.warning("%s: each of its %d sentences is one character long — a blank line after every line (line "
                    "endings doubled, CR CR LF?); sentences are separated by blank lines", path, len(blocks))
    # One scheme for the whole file: a BMES file's sentence with only B-/O tags is still BMES.
    try:
        scheme = detect_scheme(tag for _, _, block_tags in blocks for tag in block_tags)
    except ValueError as err:  # I- and M- both occur: name the sentence where the second one first appears
        seen: set[str] = set()
        for line, _, block_tags in blocks:
            seen.update(split_tag(tag)[0] for tag in block_tags)
            if {"I", "M"} <= seen:
                raise DataFormatError(path, line, f"{err} (in the file up to the sentence starting here)") from None
    bad_lines = [line + k for line, _, block_tags in blocks for k in ill_formed(block_tags, scheme)]
    if bad_lines:
        shown = ", ".join(map(str, bad_lines[:5])) + (", ..." if len(bad_lines) > 5 else "")
        log.warning("%s: %d tag(s) break the %s scheme (e.g. I- without B-), line(s) %s; read leniently as entity "
                    "starts", path, len(bad_lines), scheme, shown)
    return [Sentence("".join(block_chars), tags_to_spans(block_tags, scheme)) for _, block_chars, block_tags in blocks]


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # a valid JSON escape (\\ud83d) that no UTF-8 file can hold


JSON_LINES_HINT = " — the file must hold one JSON object per line (JSON Lines), not one JSON document"


def read_jsonl(path: str | os.PathLike) -> list[Sentence]:
    """One JSON object per line, each in one of three layouts (detected per record):

    * lexner's own: ``{"text": ..., "entities": [{"start": s, "end": e, "label": T}, ...]}``, ``end`` exclusive;
    * CLUENER's: ``{"text": ..., "label": {T: {mention: [[s, e], ...]}}}``, ``e`` **inclusive**, each mention
      checked against the text;
    * doccano's: ``{"text": ..., "label": [[s, e, T], ...]}`` (or ``"labels"``), ``e`` exclusive.

    A record with none of ``entities``/``label``/``labels`` is an error naming the file and line, as is any
    malformed label.  Overlapping entities are an error, except CLUENER's nested mentions (one pair in its
    training set: a book title holding a company name): there the longer mention is kept and the inner one
    dropped, counted in a warning with its line.
    """
    with closing(iter_lines(path)) as lines:
        return _read_jsonl(path, lines)


def _read_jsonl(path: str | os.PathLike, lines: Iterable[tuple[int, str]]) -> list[Sentence]:
    sentences = []
    dropped: list[int] = []
    for lineno, line in lines:
        if not line.strip():
            continue
        try:
            obj = loads_json(line)
        except (ValueError, RecursionError) as err:  # ValueError: JSONDecodeError, NaN, an integer too long
            # the first record, cut short: perhaps one JSON document over several lines
            hint = JSON_LINES_HINT if not sentences and isinstance(err, json.JSONDecodeError) else ""
            raise DataFormatError(path, lineno, f"not valid JSON ({err}){hint}") from None
        if not isinstance(obj, dict) or "text" not in obj:
            raise DataFormatError(path, lineno, "expected a JSON object with a 'text'"
                                  + (JSON_LINES_HINT if isinstance(obj, list) else ""))
        text = obj["text"]
        if not isinstance(text, str):
            raise DataFormatError(path, lineno, f"'text' must be a string, got {type(text).__name__}")
        surrogate = _LONE_SURROGATE.search(text)
        if surrogate:
            raise DataFormatError(path, lineno, f"'text' holds a lone surrogate U+{ord(surrogate.group()):04X} at "
                                                f"character {surrogate.start()} (half of an emoji's JSON escape?); "
                                                "UTF-8 cannot store it")
        try:
            spans, nested = _record_spans(obj, text)
        except ValueError as err:
            raise DataFormatError(path, lineno, str(err)) from None
        spans.sort()
        if nested:
            kept = _drop_nested(spans)
            dropped += [lineno] * (len(spans) - len(kept))
            spans = kept
        for a, b in zip(spans, spans[1:]):
            if b.start < a.end:
                raise DataFormatError(path, lineno, f"entities {tuple(a)} and {tuple(b)} overlap")
        sentences.append(Sentence(text, spans))
    if dropped:
        log.warning("%s: dropped %d mention(s) overlapping a longer one (kept the longer; of one span given two "
                    "types, the first type by name), line(s) %s", path, len(dropped),
                    ", ".join(map(str, sorted(set(dropped))[:10])))
    return sentences


def _label(value) -> str:
    if not is_type_name(value):
        raise ValueError(f"an entity label must be {TYPE_NAME_RULE}, got {value!r}")
    return value


def _offsets(start, end, text: str, what: str, inclusive: bool = False) -> tuple[int, int]:
    """``(start, end)`` of an entity given as ``start, end`` (``end`` exclusive, or ``inclusive`` as CLUENER
    writes it), checked against ``text``; the message quotes the offsets as given."""
    if type(start) is not int or type(end) is not int:
        raise ValueError(f"{what}: start and end must be integers, got {start!r}, {end!r}")
    given = f"[{start}, {end}] (end-inclusive)" if inclusive else f"({start}, {end})"
    if start < 0:
        raise ValueError(f"{what}: entity {given} starts at a negative offset")
    if end < start:
        raise ValueError(f"{what}: entity {given} ends before it starts")
    end = end + 1 if inclusive else end
    if end == start:
        raise ValueError(f"{what}: entity {given} is empty")
    if end > len(text):
        raise ValueError(f"{what}: entity {given} ends beyond the text of length {len(text)}")
    return start, end


def _record_spans(obj: dict, text: str) -> tuple[list[Span], int]:
    """The spans of one JSON record (see :func:`read_jsonl`), and — for CLUENER's layout — how many there were
    before nested ones are resolved (0 for the other layouts, where overlaps are errors)."""
    if "entities" in obj:
        raw = obj["entities"]
        if not isinstance(raw, list):
            raise ValueError(f"'entities' must be a list, got {type(raw).__name__}")
        spans = []
        for ent in raw:
            if not isinstance(ent, dict) or not {"start", "end", "label"} <= set(ent):
                raise ValueError(f"an entity needs integer 'start', 'end' and a 'label': {ent!r}")
            spans.append(Span(*_offsets(ent["start"], ent["end"], text, "entities"), _label(ent["label"])))
            if "text" in ent and ent["text"] != text[ent["start"]:ent["end"]]:  # lexner's own output carries it
                raise ValueError(f"entity ({ent['start']}, {ent['end']}) reads {text[ent['start']:ent['end']]!r}, "
                                 f"but its 'text' says {ent['text']!r} (offsets shifted?)")
        return spans, 0
    key = "label" if "label" in obj else "labels" if "labels" in obj else None
    if key is None:
        raise ValueError("a record needs 'entities' (lexner), 'label' (CLUENER or doccano) or 'labels' (doccano); "
                         f"found keys {sorted(obj)}")
    raw = obj[key]
    if isinstance(raw, dict):  # CLUENER: {type: {mention: [[start, end_inclusive], ...]}}
        spans = []
        for label, mentions in raw.items():
            _label(label)
            if not isinstance(mentions, dict) or not mentions:
                raise ValueError(f"CLUENER label {label!r}: expected {{mention: [[start, end], ...]}}, got {mentions!r}")
            for mention, positions in mentions.items():
                if (not isinstance(positions, list) or not positions
                        or not all(isinstance(x, list) and len(x) == 2 for x in positions)):
                    raise ValueError(f"CLUENER mention {mention!r}: expected a list of [start, end] pairs, got "
                                     f"{positions!r}")
                for a, b in positions:
                    start, end = _offsets(a, b, text, f"CLUENER mention {mention!r}", inclusive=True)
                    if text[start:end] != mention:
                        raise ValueError(f"CLUENER mention {mention!r} at [{a}, {b}] reads {text[start:end]!r} "
                                         "(offsets are end-inclusive)")
                    spans.append(Span(start, end, label))
        return spans, len(spans)
    if isinstance(raw, list):  # doccano: [[start, end, label], ...], end exclusive
        spans = []
        for item in raw:
            if not (isinstance(item, list) and len(item) == 3):
                raise ValueError(f"doccano '{key}': expected [start, end, label] items, got {item!r}")
            spans.append(Span(*_offsets(item[0], item[1], text, f"'{key}'"), _label(item[2])))
        return spans, 0
    raise ValueError(f"'{key}' must be a CLUENER object or a doccano list, got {raw!r}")


def _drop_nested(spans: list[Span]) -> list[Span]:
    """Of overlapping spans, keep the longest (then the first); the rest go."""
    kept: list[Span] = []
    for span in sorted(spans, key=lambda s: (-(s.end - s.start), s.start)):
        if all(span.end <= k.start or span.start >= k.end for k in kept):
            kept.append(span)
    return sorted(kept)


def is_tagged_line(line: str) -> bool:
    """Whether ``line`` reads as a character-per-line file's: a character (or a Weibo ``char+digit``),
    whitespace and a tag (``张 B-PER``, ``{ O``)."""
    fields = _fields(line)
    try:
        return len(fields) == 2 and len(fields[0]) <= 2 and bool(split_tag(fields[1]))
    except ValueError:
        return False


def _line_format(line: str) -> str:
    """The format a file whose first non-blank line is ``line`` is in (see :func:`detect_format`)."""
    if line.lstrip().startswith("{") and not is_tagged_line(line):  # a text may begin with {: "{ O"
        return "jsonl"
    token = _fields(line)[0]
    return "weibo" if len(token) >= 2 and token[-1].isdigit() and _weibo_char(token) else "conll"


def _sniffed(path: str | os.PathLike, lines: Iterator[tuple[int, str]]) -> tuple[str, Iterator[tuple[int, str]]]:
    """The format of the file ``lines`` are read from (by its suffix, else its first non-blank line) and its
    lines again, those read to decide included: the file is read once, so a pipe (``<(cmd)``, /dev/stdin)
    loses nothing."""
    suffixes = [suffix.lower() for suffix in Path(path).suffixes]
    while suffixes and suffixes[-1] in COMPRESSORS:  # x.jsonl.gz is JSON Lines; gold.json.conll is not
        suffixes.pop()
    if suffixes and suffixes[-1] in (".jsonl", ".json"):
        return "jsonl", lines
    seen = []
    for item in lines:
        seen.append(item)
        if item[1].split():
            return _line_format(item[1]), itertools.chain(seen, lines)
    return "conll", iter(seen)


def detect_format(path: str | os.PathLike) -> str:
    """``jsonl`` for a last suffix ``.json``/``.jsonl`` (before ``.gz``/``.xz``) or a first non-blank line that
    is a JSON object, ``weibo`` for a character with its position digits (``科0 B-ORG.NAM``), else ``conll``."""
    with closing(iter_lines(path)) as lines:
        return _sniffed(path, lines)[0]


def read_file(path: str | os.PathLike, format: str = "auto") -> list[Sentence]:
    """Read a dataset file in one of :data:`FORMATS` (``auto`` detects it), reading it once."""
    if format not in ("auto", *FORMATS):
        raise ValueError(f"unknown format {format!r}; expected 'auto' or one of {FORMATS}")
    with closing(iter_lines(path)) as lines:
        if format == "auto":
            format, lines = _sniffed(path, lines)
        if format == "jsonl":
            return _read_jsonl(path, lines)
        return _read_char_per_line(path, lines, weibo=format == "weibo")


def write_conll(sentences: Iterable[Sentence], path: str | os.PathLike, scheme: str = "BIOES") -> None:
    """``sentences`` as a character-per-line file (``character TAB tag``, a blank line after each sentence) in
    ``scheme`` (BIO, BIOES or BMES), which :func:`read_file` reads back.  Such a file cannot hold a whitespace
    character or an empty sentence: a sentence with one raises ``ValueError`` (:func:`write_jsonl` keeps any
    text).  Both writers replace ``path`` only when done (:func:`lexner.fileio.atomic_file`: compressed by a
    ``.gz``/``.xz`` suffix), and refuse spans that do not fit their sentence, naming it."""
    with atomic_file(path) as out:
        for k, s in enumerate(sentences):
            if not s.text or any(c.isspace() for c in s.text):
                raise ValueError(f"sentence {k} ({s.text[:20]!r}) is empty or holds whitespace, which a "
                                 "character-per-line file cannot hold; write_jsonl keeps it")
            tags = _tags(k, s, scheme)
            lines = "".join(f"{c}\t{t}\n" for c, t in zip(s.text, tags)) + "\n"
            out.write(leading_bom(lines) + lines if k == 0 else lines)


def write_jsonl(sentences: Iterable[Sentence], path: str | os.PathLike) -> None:
    """``sentences`` as JSONL, one record per line for every line reader (:func:`lexner.output.json_line`);
    see :func:`write_conll` for how the file is written."""
    from .output import json_line

    with atomic_file(path) as out:
        for k, s in enumerate(sentences):
            _tags(k, s)  # its spans fit it
            out.write(json_line({"text": s.text, "entities": [{"start": a, "end": b, "label": l}
                                                              for a, b, l in s.spans]}))


def _tags(k: int, sentence: Sentence, scheme: str = "BIOES") -> list[str]:
    """Sentence ``k``'s tags in ``scheme``; a ValueError naming it where its spans do not fit it (beyond its
    text, overlapping)."""
    try:
        return spans_to_tags(sentence.spans, len(sentence.text), scheme)
    except ValueError as err:
        raise ValueError(f"sentence {k} ({sentence.text[:20]!r}): {err}") from None


# --- named datasets -------------------------------------------------------------------------------------

MSRA_DEV_SIZE = 2500
MSRA_DEV_SEED = 20180701

CLUENER_DEV_SIZE = 1000
CLUENER_DEV_SEED = 20200401
CLUENER_TEST_SIZE = 1000
CLUENER_TEST_SEED = 20200402
# ``lexner train --train FILE`` without ``--dev``: the dev split is this fraction of FILE, a sample with this seed
# (fixed, not the training seed, so that runs with different seeds select on the same sentences)
TRAIN_DEV_FRACTION = 0.1
TRAIN_DEV_SEED = 20261202

DATASETS: dict[str, dict[str, str]] = {
    "msra": {"train": "msra/train.char.bmes", "test": "msra/test.char.bmes"},
    "weibo": {"train": "weibo/train.all.bmes", "dev": "weibo/dev.all.bmes", "test": "weibo/test.all.bmes"},
    # official dev/test not public here: both carved from train
    "cluener": {"train": "cluener/train.json", "dev": "cluener/train.json", "test": "cluener/train.json"},
}
# Splits carved from a named dataset's training file, in carving order: split → (size, seed).
CARVED: dict[str, dict[str, tuple[int, int]]] = {
    "msra": {"dev": (MSRA_DEV_SIZE, MSRA_DEV_SEED)},
    "cluener": {"test": (CLUENER_TEST_SIZE, CLUENER_TEST_SEED), "dev": (CLUENER_DEV_SIZE, CLUENER_DEV_SEED)},
}


# How a named dataset's types read in another named dataset's label set, for a corpus that also trains another
# head (``lexner train --dataset weibo:msra``): Weibo's and CLUENER's person, place and organisation names as
# MSRA's NR/NS/NT.  Types without an entry are left out (Weibo's nominal mentions, CLUENER's book, game,
# movie, position and scene), as MSRA annotates none of them.
TYPE_MAPS: dict[tuple[str, str], dict[str, str]] = {
    ("weibo", "msra"): {"PER.NAM": "NR", "LOC.NAM": "NS", "GPE.NAM": "NS", "ORG.NAM": "NT"},
    ("cluener", "msra"): {"name": "NR", "address": "NS", "company": "NT", "government": "NT",
                          "organization": "NT"},
}


def map_types(sentences: Iterable[Sentence], mapping: dict[str, str]) -> list[Sentence]:
    """The sentences with each span's type mapped; spans of types without an entry are left out."""
    return [Sentence(s.text, [Span(sp.start, sp.end, mapping[sp.label]) for sp in s.spans if sp.label in mapping])
            for s in sentences]


def data_root() -> Path:
    """The data root: ``$LEXNER_DATA`` if set, else ``data/`` (relative to the working directory)."""
    return Path(os.environ.get("LEXNER_DATA", "data"))


def dataset_path(name: str, split: str, root: str | os.PathLike | None = None) -> Path:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; named datasets are {sorted(DATASETS)}")
    if split not in DATASETS[name]:
        raise ValueError(f"dataset {name!r} has no file for split {split!r}")
    path = Path(root) if root is not None else data_root()
    path = path / DATASETS[name][split]
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: not found. Set LEXNER_DATA to the folder that holds {name}/ (see data/README.md)."
        )
    return path


def load_dataset(name: str, split: str, root: str | os.PathLike | None = None) -> list[Sentence]:
    """Sentences of a named dataset's split (``train``, ``dev`` or ``test``).

    Splits missing here are carved from the training file (:data:`CARVED`), each a fixed seeded sample of
    what the splits before it left: MSRA's ``dev`` (2,500, seed 20180701; the papers select epochs on MSRA
    test, we do not); CLUENER's ``test`` (1,000, seed 20200402), then its ``dev`` (1,000 of the rest, seed
    20200401) — CLUENER's official dev and test are not available here, so a model is selected on one carved
    split and reported on the other.  ``train`` is what remains.
    """
    if split not in ("train", "dev", "test"):
        raise ValueError(f"unknown split {split!r}; expected train, dev or test")
    if split != "train" and split not in CARVED.get(name, {}):
        return read_file(dataset_path(name, split, root))
    return _from_training_file(name, root)[split]


def load_splits(name: str, root: str | os.PathLike | None = None) -> dict[str, list[Sentence]]:
    """Every split of a named dataset, ``{"train": ..., "dev": ..., "test": ...}`` (no ``test`` where it has
    none), as :func:`load_dataset` gives them, each file read once (and its warnings logged once)."""
    splits = _from_training_file(name, root)
    for split in ("dev", "test"):
        if split not in splits and split in DATASETS[name]:
            splits[split] = read_file(dataset_path(name, split, root))
    return splits


def _from_training_file(name: str, root: str | os.PathLike | None) -> dict[str, list[Sentence]]:
    """``train`` and the splits carved from the training file (:data:`CARVED`), from one reading of it."""
    path = dataset_path(name, "train", root)
    rest = read_file(path)
    splits = {}
    for part, (size, seed) in CARVED.get(name, {}).items():
        splits[part], rest = carve(rest, size, seed, path, part)
    splits["train"] = rest
    return splits


def carve(sentences: Sequence[Sentence], size: int, seed: int, path: str | os.PathLike,
          part: str = "dev", blocks: int = 0) -> tuple[list[Sentence], list[Sentence]]:
    """``(chosen, rest)``: a seeded sample of ``size`` sentences (in file order) and the others, in file order.
    ``path`` names the file in the error when there are too few sentences to leave any for training.

    ``blocks`` > 0 samples runs of consecutive sentences instead of single ones: the file is cut into runs of
    ⌈size / blocks⌉ sentences and ``blocks`` of them are drawn (the last in file order cut short to make
    ``size``).  Sentences of one document sit together in a file, so a random sample shares every document —
    and its names — with the rest, and scores on it run high for new text; runs of sentences share fewer.  On
    MSRA, 83.7 % of the entities of its random 2,500-sentence dev occur in the rest of the file, 48–84 % of
    those of a run of 2,500 consecutive sentences, 71.6 % of its test set's
    (``benchmarks/results/unseen_msra.json``)."""
    if not 0 < size < len(sentences):
        raise DataFormatError(path, None, f"{len(sentences)} sentences, too few to carve a {part} split of {size} "
                                          "and keep some for training")
    rng = random.Random(seed)
    if blocks > 0:
        run = -(-size // blocks)
        slots = range(0, len(sentences) - run + 1, run)  # the whole runs of the file
        if len(slots) < blocks:
            raise DataFormatError(path, None, f"{len(sentences)} sentences, too few to carve a {part} split of "
                                              f"{size} as {blocks} runs of {run}")
        starts = sorted(rng.sample(slots, blocks))
        picked = set(itertools.islice((i for start in starts for i in range(start, start + run)), size))
    else:
        picked = set(rng.sample(range(len(sentences)), size))
    return ([s for i, s in enumerate(sentences) if i in picked],
            [s for i, s in enumerate(sentences) if i not in picked])


def entity_types(sentences: Iterable[Sentence]) -> list[str]:
    return sorted({span.label for s in sentences for span in s.spans})


def report_unseen_labels(train: Sequence[Sentence], other: Sequence[Sentence], name: str) -> Counter:
    """Log (and return) entity types of ``other`` that never occur in ``train``: the model cannot predict them."""
    known = set(entity_types(train))
    unseen = Counter(span.label for s in other for span in s.spans if span.label not in known)
    if unseen:
        log.warning("%s has entity types absent from train (they will count as misses): %s", name, dict(unseen))
    return unseen
