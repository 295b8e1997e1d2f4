"""How ``lexner tag`` writes a tagged text: ``jsonl``, ``conll`` or ``text``."""

from __future__ import annotations

import json
from typing import Sequence

from .entity import Entity
from .schemes import Span, spans_to_tags

FORMATS = ("jsonl", "conll", "text")


def render(text: str, entities: Sequence[Entity], fmt: str = "jsonl") -> str:
    """One tagged text in ``fmt``, ending in a newline.

    * ``jsonl`` — ``{"text": ..., "entities": [{"start", "end", "label", "text"}, ...]}`` on one line;
    * ``conll`` — one ``character<TAB>BIOES tag`` line per character, then a blank line; whitespace
      characters are left out (as in CoNLL-style Chinese NER files), so the lines hold the other characters;
    * ``text`` — the text with each entity marked inline as ``[entity text|LABEL]``.
    """
    if fmt == "jsonl":
        return json.dumps({"text": text, "entities": [e.to_dict() for e in entities]}, ensure_ascii=False) + "\n"
    if fmt == "conll":
        tags = spans_to_tags([Span(e.start, e.end, e.label) for e in entities], len(text), "BIOES")
        return "".join(f"{c}\t{t}\n" for c, t in zip(text, tags) if not c.isspace()) + "\n"
    if fmt == "text":
        out, position = [], 0
        for e in entities:
            out += [text[position : e.start], f"[{e.text}|{e.label}]"]
            position = e.end
        return "".join(out) + text[position:] + "\n"
    raise ValueError(f"unknown output format {fmt!r}; expected one of {', '.join(FORMATS)}")
