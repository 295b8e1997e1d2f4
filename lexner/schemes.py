"""Tag schemes (BIO, BIOES, BMES) and entity spans: the one place where they are converted.

Spans are ``(start, end, label)`` with ``end`` exclusive.  Models always use BIOES internally; files may be in
any of the three schemes, which :func:`detect_scheme` recognises from the tag prefixes.
"""

from __future__ import annotations

import re
from typing import Iterable, NamedTuple, Sequence

import numpy as np

SCHEMES = ("BIO", "BIOES", "BMES")


class Span(NamedTuple):
    start: int
    end: int  # exclusive
    label: str


def split_tag(tag: str) -> tuple[str, str | None]:
    """``"B-PER.NAM"`` → ``("B", "PER.NAM")``; ``"O"`` → ``("O", None)``.  Raises ValueError otherwise."""
    if tag == "O":
        return "O", None
    if len(tag) > 2 and tag[1] in "-_" and tag[0] in "BIMES":
        if not is_type_name(tag[2:]):
            raise ValueError(f"tag {tag!r}: its type must be {TYPE_NAME_RULE}")
        return tag[0], tag[2:]
    raise ValueError(f"not a tag in BIO/BIOES/BMES form: {tag!r}")


def detect_scheme(tags: Iterable[str]) -> str:
    """Return ``"BMES"`` if any tag uses ``M-``, else ``"BIOES"`` if any uses ``E-``/``S-``, else ``"BIO"``."""
    prefixes = {split_tag(tag)[0] for tag in tags}
    if "M" in prefixes:
        if "I" in prefixes:
            raise ValueError("tags mix M- (BMES) and I- (BIO/BIOES) prefixes")
        return "BMES"
    if prefixes & {"E", "S"}:
        return "BIOES"
    return "BIO"


def tags_to_spans(tags: Sequence[str], scheme: str | None = None) -> list[Span]:
    """Read entity spans from a tag sequence.

    Ill-formed sequences are read leniently, as conlleval does: an ``I-``/``M-``/``E-`` tag that does not
    continue an open entity of its type starts a new entity (the Weibo files contain ``I-`` without ``B-``).
    Use :func:`count_ill_formed` to report how many such tags a file has.
    """
    scheme = scheme or detect_scheme(tags)
    spans: list[Span] = []
    start, label = None, None

    def close(end: int) -> None:
        nonlocal start, label
        if start is not None:
            spans.append(Span(start, end, label))
        start, label = None, None

    for i, tag in enumerate(tags):
        prefix, kind = split_tag(tag)
        if prefix == "M":
            prefix = "I"
        if prefix == "O":
            close(i)
        elif prefix == "B":
            close(i)
            start, label = i, kind
        elif prefix == "S":
            close(i)
            spans.append(Span(i, i + 1, kind))
        else:  # I or E
            if start is None or label != kind:
                close(i)
                start, label = i, kind
            if prefix == "E":
                close(i + 1)
    close(len(tags))
    return spans


def ill_formed(tags: Sequence[str], scheme: str | None = None) -> list[int]:
    """Positions of the tags that break the scheme's grammar (e.g. ``I-X`` not after ``B-X``/``I-X``)."""
    scheme = scheme or detect_scheme(tags)
    spans = tags_to_spans(tags, scheme)
    canonical = spans_to_tags(spans, len(tags), scheme)
    written = [prefix if label is None else f"{prefix}-{label}" for prefix, label in map(split_tag, tags)]
    return [k for k, (a, b) in enumerate(zip(written, canonical)) if a != b]  # B_PER is B-PER written otherwise


def count_ill_formed(tags: Sequence[str], scheme: str | None = None) -> int:
    """Number of tags that break the scheme's grammar."""
    return len(ill_formed(tags, scheme))


def spans_to_tags(spans: Iterable[Span], length: int, scheme: str = "BIOES") -> list[str]:
    """Write spans as a tag sequence of ``length`` in ``scheme``.  Overlapping spans raise ValueError."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; expected one of {SCHEMES}")
    inside = "M" if scheme == "BMES" else "I"
    tags = ["O"] * length
    for start, end, label in sorted(spans):
        if not 0 <= start < end <= length:
            raise ValueError(f"span ({start}, {end}, {label!r}) outside a sequence of length {length}")
        if any(tag != "O" for tag in tags[start:end]):
            raise ValueError(f"span ({start}, {end}, {label!r}) overlaps another span")
        if scheme == "BIO":
            tags[start:end] = [f"B-{label}"] + [f"I-{label}"] * (end - start - 1)
        else:
            tags[start:end] = [f"{prefix}-{label}" for prefix in entity_prefixes(end - start, inside)]
    return tags


def entity_prefixes(length: int, inside: str = "I") -> str:
    """The BIOES (BMES: ``inside="M"``) prefixes of one entity of ``length`` characters: ``S``, ``BE``, ``BIE``..."""
    return "S" if length == 1 else "B" + inside * (length - 2) + "E"


TYPE_NAME_RULE = ("a non-empty string of at most 200 printable characters without whitespace, not starting or "
                  "ending with '-'")
MAX_ENTITY_TYPES = 1000  # per label set: its CRF has (4 × types + 1)² transitions


def is_type_name(name: object) -> bool:
    """An entity type name: a non-empty string of printable characters without whitespace (it is written into
    ``B-TYPE`` tags of whitespace-separated CoNLL lines, and must read back; no control or format character, no
    lone surrogate, which UTF-8 cannot store), at most 200 of them, that neither starts nor ends with ``-`` (the
    scorer, seqeval, strips those: ``X-`` and ``X`` would be scored as one type)."""
    return (isinstance(name, str) and 0 < len(name) <= 200 and name.isprintable() and " " not in name
            and not name.startswith("-") and not name.endswith("-"))


def bioes_tags(entity_types: Sequence[str]) -> list[str]:
    """The model's tag set for these entity types: ``O`` then ``B/I/E/S`` of each type, in order."""
    return ["O"] + [f"{p}-{t}" for t in entity_types for p in "BIES"]


def allowed_transitions(tags: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which BIOES transitions are legal, as boolean arrays.

    Returns ``(start, transitions, end)``: ``start[j]`` — tag j may begin a sentence; ``transitions[i, j]`` —
    tag j may follow tag i; ``end[i]`` — tag i may end a sentence.
    """
    parsed = [split_tag(tag) for tag in tags]
    prefixes = np.array([p for p, _ in parsed])
    kinds = np.array([k or "" for _, k in parsed], dtype=object)
    start = np.isin(prefixes, ("O", "B", "S"))
    end = np.isin(prefixes, ("O", "E", "S"))
    continues = np.isin(prefixes, ("I", "E")) & (kinds[:, None] == kinds[None, :])  # [i, j]: j goes on i's entity
    trans = np.where(end[:, None], start[None, :], continues)  # after O/E/S what may start; after B/I, its rest
    return start, trans, end


class PathReader:
    """:func:`tags_to_spans` for paths of tag ids over one BIOES tag set.  A path is read as a string (a
    character per tag id) with two regular expressions of the BIOES grammar: the paths it allows (every path the
    constrained CRF finds) are found in one match, and their entities — ``B I* E`` or ``S`` of one type — in one
    scan; any other path is read leniently by :func:`tags_to_spans`, so the spans are the same either way.  (A
    few C calls per path: cheaper than array operations for the one path of a ``tag()`` call, a little dearer per
    character for a batch — ``benchmarks/results/tag_stages_*_vs_e9e780b.json``, spans 0.050 → 0.012 ms a call,
    0.123 → 0.144 µs a character batched.)"""

    def __init__(self, tags: Sequence[str]):
        self.tags = list(tags)
        parsed = [split_tag(tag) for tag in self.tags]
        self.labels = [label for _, label in parsed]
        types = list(dict.fromkeys(label for prefix, label in parsed if prefix != "O"))
        complete = self.tags == bioes_tags(types)  # lexner's own tag sets; any other (B_PER, ...) is read leniently
        code = {tag: re.escape(chr(i)) for i, tag in enumerate(self.tags)}
        entity = "|".join(f"{code['B-' + t]}{code['I-' + t]}*{code['E-' + t]}|{code['S-' + t]}"
                          for t in types) if complete else ""
        self._entity = re.compile(entity or "(?!)")  # (?!) matches nothing
        self._legal = re.compile(f"(?:{code['O']}|{entity})*" if complete else "(?!)")

    def spans(self, paths: Sequence[Sequence[int]]) -> list[list[Span]]:
        """The entity spans of each path."""
        legal, entities, labels, found = self._legal.fullmatch, self._entity.finditer, self.labels, []
        for path in paths:
            text = "".join(map(chr, path))
            found.append([Span(m.start(), m.end(), labels[ord(text[m.start()])]) for m in entities(text)]
                         if legal(text) else tags_to_spans([self.tags[t] for t in path], "BIOES"))
        return found
