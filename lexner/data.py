"""Datasets: sentences with entity spans, the readers for each supported file format, and named datasets.

Supported formats (``read_file(path, format="auto")``):

* ``conll`` — one character per line, ``CHAR<space or tab>TAG``, an empty line between sentences; tags in BIO,
  BIOES or BMES (detected per file);
* ``weibo`` — the original golden-horse Weibo files: ``TOKEN<TAB>TAG`` where TOKEN is a character followed by
  its position in its word (``科0``, ``80`` = the digit ``8`` at position 0); BIO tags;
* ``jsonl`` — one JSON object per line, ``{"text": ..., "entities": [{"start", "end", "label"}]}``, character
  offsets with ``end`` exclusive.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from .fileio import DataFormatError, iter_lines
from .schemes import Span, count_ill_formed, detect_scheme, split_tag, tags_to_spans

log = logging.getLogger(__name__)

FORMATS = ("conll", "weibo", "jsonl")


@dataclass
class Sentence:
    """A text and its entities as ``Span(start, end, label)`` with ``end`` exclusive."""

    text: str
    spans: list[Span] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.text)


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


def _read_char_per_line(path: str | os.PathLike, weibo: bool) -> list[Sentence]:
    blocks: list[tuple[int, list[str], list[str]]] = []  # (first line, characters, tags) per sentence
    chars: list[str] = []
    tags: list[str] = []
    for lineno, line in iter_lines(path):
        if not line.strip():
            chars, tags = [], []
            continue
        fields = line.split()
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
    # One scheme for the whole file: a BMES file's sentence with only B-/O tags is still BMES.
    try:
        scheme = detect_scheme(tag for _, _, block_tags in blocks for tag in block_tags)
    except ValueError as err:  # I- and M- both occur: name the sentence where the second one first appears
        seen: set[str] = set()
        for line, _, block_tags in blocks:
            seen.update(split_tag(tag)[0] for tag in block_tags)
            if {"I", "M"} <= seen:
                raise DataFormatError(path, line, f"{err} (in the file up to the sentence starting here)") from None
    ill_formed = sum(count_ill_formed(block_tags, scheme) for _, _, block_tags in blocks)
    if ill_formed:
        log.warning("%s: %d tag(s) break the %s scheme (e.g. I- without B-); read leniently as entity starts",
                    path, ill_formed, scheme)
    return [Sentence("".join(block_chars), tags_to_spans(block_tags, scheme)) for _, block_chars, block_tags in blocks]


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # a valid JSON escape (\\ud83d) that no UTF-8 file can hold


def read_jsonl(path: str | os.PathLike) -> list[Sentence]:
    sentences = []
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            text = obj["text"]
            raw = obj.get("entities", [])
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
            raise DataFormatError(path, lineno, f"expected a JSON object with 'text' and 'entities' ({err})") from None
        if not isinstance(text, str):
            raise DataFormatError(path, lineno, f"'text' must be a string, got {type(text).__name__}")
        surrogate = _LONE_SURROGATE.search(text)
        if surrogate:
            raise DataFormatError(path, lineno, f"'text' holds a lone surrogate U+{ord(surrogate.group()):04X} at "
                                                f"character {surrogate.start()} (half of an emoji's JSON escape?); "
                                                "UTF-8 cannot store it")
        if not isinstance(raw, list):
            raise DataFormatError(path, lineno, f"'entities' must be a list, got {type(raw).__name__}")
        spans = []
        for ent in raw:
            try:
                span = Span(ent["start"], ent["end"], str(ent["label"]))
            except (KeyError, TypeError):
                span = None
            if span is None or not all(type(x) is int for x in span[:2]):
                raise DataFormatError(path, lineno, f"an entity needs integer 'start', 'end' and a 'label': {ent!r}")
            if not 0 <= span.start < span.end <= len(text):
                raise DataFormatError(path, lineno, f"entity {tuple(span)} outside the text of length {len(text)}")
            spans.append(span)
        spans.sort()
        for a, b in zip(spans, spans[1:]):
            if b.start < a.end:
                raise DataFormatError(path, lineno, f"entities {tuple(a)} and {tuple(b)} overlap")
        sentences.append(Sentence(text, spans))
    return sentences


def detect_format(path: str | os.PathLike) -> str:
    path = Path(path)
    if any(s in (".jsonl", ".json") for s in path.suffixes):
        return "jsonl"
    for _, line in iter_lines(path):
        fields = line.split()
        if not fields:
            continue
        if line.lstrip().startswith("{"):
            return "jsonl"
        token = fields[0]
        return "weibo" if len(token) >= 2 and token[-1].isdigit() and _weibo_char(token) else "conll"
    return "conll"


def read_file(path: str | os.PathLike, format: str = "auto") -> list[Sentence]:
    """Read a dataset file in one of :data:`FORMATS` (``auto`` detects it)."""
    if format == "auto":
        format = detect_format(path)
    if format == "jsonl":
        return read_jsonl(path)
    if format in ("conll", "weibo"):
        return _read_char_per_line(path, weibo=format == "weibo")
    raise ValueError(f"unknown format {format!r}; expected 'auto' or one of {FORMATS}")


def write_jsonl(sentences: Iterable[Sentence], path: str | os.PathLike) -> None:
    with open(path, "w", encoding="utf-8") as out:
        for s in sentences:
            ents = [{"start": a, "end": b, "label": l} for a, b, l in s.spans]
            out.write(json.dumps({"text": s.text, "entities": ents}, ensure_ascii=False) + "\n")


# --- named datasets -------------------------------------------------------------------------------------

MSRA_DEV_SIZE = 2500
MSRA_DEV_SEED = 20180701

DATASETS: dict[str, dict[str, str]] = {
    "msra": {"train": "msra/train.char.bmes", "test": "msra/test.char.bmes"},
    "weibo": {"train": "weibo/train.all.bmes", "dev": "weibo/dev.all.bmes", "test": "weibo/test.all.bmes"},
}


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

    MSRA has no dev file: its ``dev`` is a fixed sample of :data:`MSRA_DEV_SIZE` training sentences drawn with
    seed :data:`MSRA_DEV_SEED`, and its ``train`` is the rest.  (The papers select epochs on MSRA test; we do not.)
    """
    if split not in ("train", "dev", "test"):
        raise ValueError(f"unknown split {split!r}; expected train, dev or test")
    if name == "msra" and split in ("train", "dev"):
        full = read_file(dataset_path(name, "train", root))
        dev_ids = set(random.Random(MSRA_DEV_SEED).sample(range(len(full)), MSRA_DEV_SIZE))
        keep = (lambda i: i in dev_ids) if split == "dev" else (lambda i: i not in dev_ids)
        return [s for i, s in enumerate(full) if keep(i)]
    return read_file(dataset_path(name, split, root))


def entity_types(sentences: Iterable[Sentence]) -> list[str]:
    return sorted({span.label for s in sentences for span in s.spans})


def report_unseen_labels(train: Sequence[Sentence], other: Sequence[Sentence], name: str) -> Counter:
    """Log (and return) entity types of ``other`` that never occur in ``train``: the model cannot predict them."""
    known = set(entity_types(train))
    unseen = Counter(span.label for s in other for span in s.spans if span.label not in known)
    if unseen:
        log.warning("%s has entity types absent from train (they will count as misses): %s", name, dict(unseen))
    return unseen
