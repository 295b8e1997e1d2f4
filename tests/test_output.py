import json

import pytest
from hypothesis import given, settings, strategies as st

from lexner.entity import Entity
from lexner.output import render

TEXT = "张三 在北京"
ENTITIES = [Entity(0, 2, "PER", "张三"), Entity(4, 6, "LOC", "北京")]


def test_jsonl():
    record = json.loads(render(TEXT, ENTITIES, "jsonl"))
    assert record == {"text": TEXT, "entities": [
        {"start": 0, "end": 2, "label": "PER", "text": "张三"}, {"start": 4, "end": 6, "label": "LOC", "text": "北京"}]}


def test_conll_skips_whitespace_and_ends_with_a_blank_line():
    assert render(TEXT, ENTITIES, "conll") == "张\tB-PER\n三\tE-PER\n在\tO\n北\tB-LOC\n京\tE-LOC\n\n"


def test_text_marks_entities_inline():
    assert render(TEXT, ENTITIES, "text") == "[张三|PER] 在[北京|LOC]\n"
    assert render("", [], "text") == "\n"


def test_unknown_format():
    with pytest.raises(ValueError, match="unknown output format"):
        render(TEXT, ENTITIES, "xml")


def test_text_format_escapes_brackets_and_bars_of_the_text():
    from lexner.entity import Entity

    text = "[注]张三|李四\\"
    entities = [Entity(3, 5, "PER", "张三")]
    assert render(text, entities, "text") == "\\[注\\][张三|PER]\\|李四\\\\\n"
    odd_type = [Entity(3, 5, "A|B]", "张三")]  # a type name may hold the marks' characters too
    assert render(text, odd_type, "text") == "\\[注\\][张三|A\\|B\\]]\\|李四\\\\\n"


def unescape_text_format(line: str) -> str:
    """The text of a ``text``-format line, its marks removed and its escapes undone (what a reader does)."""
    out, k = [], 0
    while k < len(line):
        c = line[k]
        if c == "\\":
            code = line[k + 1]
            if code == "u":
                out.append(chr(int(line[k + 2 : k + 6], 16)))
                k += 6
                continue
            out.append({"n": "\n", "r": "\r"}.get(code, code))
            k += 2
        elif c == "[":
            end = line.index("|", k)
            out.append(line[k + 1 : end])  # entity texts hold no mark characters here
            k = line.index("]", end) + 1
        else:
            out.append(c)
            k += 1
    return "".join(out)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="张三\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029\\[]|u n", max_size=30))
def test_text_format_is_one_line_per_text_and_reads_back_to_the_text(text):
    entities = [Entity(k, k + 2, "PER", "张三") for k in range(len(text) - 1) if text[k : k + 2] == "张三"]
    line = render(text, entities, "text")
    assert line.endswith("\n") and len(line.splitlines()) == 1
    assert unescape_text_format(line[:-1]) == text
