"""How ``lexner tag`` writes a tagged text: ``jsonl``, ``conll`` or ``text``."""

from __future__ import annotations

import json
from typing import Sequence

from .entity import Entity
from .schemes import Span, spans_to_tags

FORMATS = ("jsonl", "conll", "text")
# Characters str.splitlines breaks at that json.dumps leaves raw (it escapes those below U+0020 itself).
_LINE_SEPARATORS = str.maketrans({c: f"\\u{ord(c):04x}" for c in "\x85\u2028\u2029"})
_ESCAPE = str.maketrans({c: "\\" + c for c in "\\[]|"})


def _escape(text: str) -> str:
    return text.translate(_ESCAPE)


def render(text: str, entities: Sequence[Entity], fmt: str = "jsonl") -> str:
    """One tagged text in ``fmt``, ending in a newline.

    * ``jsonl`` — ``{"text": ..., "entities": [{"start", "end", "label", "text"}, ...]}`` on one line (also for
      readers that split at U+0085/U+2028/U+2029: those are written as JSON escapes);
    * ``conll`` — one ``character<TAB>BIOES tag`` line per character, then a blank line; whitespace
      characters are left out (as in CoNLL-style Chinese NER files), so the lines hold the other characters;
    * ``text`` — the text with each entity marked inline as ``[entity text|LABEL]``; a ``[``, ``|``, ``]`` or
      backslash of the text itself is written with a backslash before it (``\\[``), so marks are never
      ambiguous.
    """
    if fmt == "jsonl":
        line = json.dumps({"text": text, "entities": [e.to_dict() for e in entities]}, ensure_ascii=False)
        return line.translate(_LINE_SEPARATORS) + "\n"  # one physical line even for str.splitlines readers
    if fmt == "conll":
        tags = spans_to_tags([Span(e.start, e.end, e.label) for e in entities], len(text), "BIOES")
        return "".join(f"{c}\t{t}\n" for c, t in zip(text, tags) if not c.isspace()) + "\n"
    if fmt == "text":
        out, position = [], 0
        for e in entities:
            out += [_escape(text[position : e.start]), f"[{_escape(e.text)}|{e.label}]"]
            position = e.end
        return "".join(out) + _escape(text[position:]) + "\n"
    raise ValueError(f"unknown output format {fmt!r}; expected one of {', '.join(FORMATS)}")
