"""The small files in data/fixtures/ hold the same four sentences in every supported format."""

from pathlib import Path

import pytest

from lexner.data import detect_format, read_file

FIXTURES = Path(__file__).resolve().parent.parent / "data" / "fixtures"


@pytest.mark.parametrize("name, fmt", [("tiny.bio", "conll"), ("tiny.bmes", "conll"), ("tiny.bioes", "conll"),
                                       ("tiny.weibo", "weibo"), ("tiny.jsonl", "jsonl")])
def test_every_format_reads_the_same_sentences(name, fmt):
    assert detect_format(FIXTURES / name) == fmt
    assert read_file(FIXTURES / name) == read_file(FIXTURES / "tiny.jsonl")
    assert len(read_file(FIXTURES / name)) == 4
