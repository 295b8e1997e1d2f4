"""How ``lexner tag`` writes a tagged text: ``jsonl``, ``conll`` or ``text``."""

from __future__ import annotations

import html
import json
import re
import zlib
from typing import Sequence

from .entity import Entity
from .schemes import Span, spans_to_tags

FORMATS = ("jsonl", "conll", "text", "html")
# Colours of the common types; any other type gets one from _PALETTE by a stable hash of its name.
_COLOURS = {"PER": "#f9c5c5", "LOC": "#c5e3f9", "ORG": "#c9f2c7", "GPE": "#dccbf7"}
_PALETTE = ("#ffe08a", "#f7cbe9", "#bfeee6", "#e3d7c1", "#d6f0a8", "#c7d2fe", "#fdd5b1", "#e2e8f0")
HTML_HEAD = """<!DOCTYPE html>
<html lang="zh"><head><meta charset="utf-8"><title>lexner entities</title>
<style>
body { font-family: "Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", sans-serif; line-height: 2.4; margin: 2em; }
.text { white-space: pre-wrap; border-bottom: 1px solid #eee; padding: 0.4em 0; }
mark.entity { border-radius: 0.3em; padding: 0.15em 0.3em; margin: 0 0.1em; }
mark.entity .label { font-size: 0.65em; font-weight: bold; margin-left: 0.4em; color: #333; vertical-align: middle; }
</style></head><body>
"""
HTML_TAIL = "</body></html>\n"
_LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"  # every character str.splitlines breaks at
_UNICODE_ESCAPES = {c: f"\\u{ord(c):04x}" for c in _LINE_BREAKS}
# jsonl: the line breaks json.dumps leaves raw (it escapes those below U+0020 itself)
_LINE_SEPARATORS = str.maketrans({c: e for c, e in _UNICODE_ESCAPES.items() if c >= " "})
# text format: the marks' characters after a backslash, every line break as an escape (\n and \r as such)
_ESCAPE = str.maketrans({**_UNICODE_ESCAPES, "\n": "\\n", "\r": "\\r", **{c: "\\" + c for c in "\\[]|"}})


def _escape(text: str) -> str:
    return text.translate(_ESCAPE)


def _html(text: str) -> str:
    """``text`` escaped for HTML, a lone surrogate (which no page can hold: UTF-8 cannot encode it, and a browser
    shows one as U+FFFD) as U+FFFD, so that the page can be written to a UTF-8 file."""
    return _SURROGATE.sub("\ufffd", html.escape(text))


_SURROGATE = re.compile("[\ud800-\udfff]")


def _colour(label: str) -> str:
    base = label.split(".")[0]  # Weibo's PER.NAM and PER.NOM share PER's colour
    return _COLOURS.get(base) or _PALETTE[zlib.crc32(base.encode("utf-8")) % len(_PALETTE)]


def json_line(record: dict) -> str:
    """``record`` as one line of JSON (UTF-8 text, newline-terminated) that every line reader sees as one line,
    ``str.splitlines`` too: U+0085, U+2028 and U+2029 written as JSON escapes."""
    return json.dumps(record, ensure_ascii=False).translate(_LINE_SEPARATORS) + "\n"


def render_html(text: str, entities: Sequence[Entity]) -> str:
    """A self-contained HTML page showing ``text`` with its entities highlighted by type:
    ``open("x.html", "w").write(lexner.render_html(text, ner.tag(text)))``."""
    return HTML_HEAD + render(text, entities, "html") + HTML_TAIL


def render(text: str, entities: Sequence[Entity], fmt: str = "jsonl") -> str:
    """One tagged text in ``fmt``, ending in a newline.

    * ``jsonl`` — ``{"text": ..., "entities": [{"start", "end", "label", "text"}, ...]}`` on one line (also for
      readers that split at U+0085/U+2028/U+2029: those are written as JSON escapes);
    * ``conll`` — one ``character<TAB>BIOES tag`` line per character, then a blank line; whitespace
      characters are left out (as in CoNLL-style Chinese NER files), so the lines hold the other characters;
    * ``text`` — the text with each entity marked inline as ``[entity text|LABEL]``; a ``[``, ``|``, ``]`` or
      backslash of the text or a label is written with a backslash before it (``\\[``), so marks are never
      ambiguous, and its line breaks as ``\\n``, ``\\r`` or ``\\uXXXX`` (U+000B, U+000C, U+001C–U+001E, U+0085,
      U+2028, U+2029), so that every text is one line;
    * ``html`` — one ``<div class="text">`` with each entity as ``<mark class="entity" data-label="LABEL">``
      (coloured by type, the label shown after it); a page is :data:`HTML_HEAD`, the texts' blocks, then
      :data:`HTML_TAIL` (see :func:`render_html`).
    """
    if fmt == "jsonl":
        return json_line({"text": text, "entities": [e.to_dict() for e in entities]})
    if fmt == "conll":
        tags = spans_to_tags([Span(e.start, e.end, e.label) for e in entities], len(text), "BIOES")
        return "".join(f"{c}\t{t}\n" for c, t in zip(text, tags) if not c.isspace()) + "\n"
    if fmt == "text":
        out, position = [], 0
        for e in entities:
            out += [_escape(text[position : e.start]), f"[{_escape(e.text)}|{_escape(e.label)}]"]
            position = e.end
        return "".join(out) + _escape(text[position:]) + "\n"
    if fmt == "html":
        out, position = ['<div class="text">'], 0
        for e in entities:
            label = _html(e.label)
            out += [_html(text[position : e.start]),
                    f'<mark class="entity" data-label="{label}" style="background: {_colour(e.label)}">'
                    f'{_html(e.text)}<span class="label">{label}</span></mark>']
            position = e.end
        return "".join(out) + _html(text[position:]) + "</div>\n"
    raise ValueError(f"unknown output format {fmt!r}; expected one of {', '.join(FORMATS)}")
