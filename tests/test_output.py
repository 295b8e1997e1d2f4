import json

import pytest

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
