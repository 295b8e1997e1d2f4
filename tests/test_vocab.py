"""lexner.vocab.Vocab: padding/unknown ids, encoding, save/load."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from lexner.fileio import DataFormatError
from lexner.vocab import PAD, UNK, Vocab


def test_pad_and_unk_ids():
    vocab = Vocab()
    assert len(vocab) == 2
    assert vocab.tokens == [PAD, UNK]
    assert vocab.index[PAD] == 0 and vocab.index[UNK] == 1
    assert vocab.encode([PAD, UNK]) == [0, 1]


def test_tokens_get_ids_in_order_without_duplicates():
    vocab = Vocab(["北", "京", "北", PAD])
    assert vocab.tokens == [PAD, UNK, "北", "京"]
    assert vocab.add("京") == 3
    assert vocab.add("上") == 4
    assert len(vocab) == 5
    assert "北" in vocab and "海" not in vocab


def test_encode_unknown_is_one():
    vocab = Vocab(["北", "京"])
    assert vocab.encode(["北", "海", "京", "", "北京"]) == [2, 1, 3, 1, 1]
    assert vocab.encode([]) == []
    assert vocab.encode("京北") == [3, 2]  # any sequence of tokens


def test_build_min_count_order_and_extra():
    counts = Counter({"a": 5, "b": 1, "c": 3, "d": 3})
    vocab = Vocab.build(counts, min_count=2, extra=["z", "a"])
    assert vocab.tokens == [PAD, UNK, "a", "c", "d", "z"]
    assert Vocab.build(counts).tokens[2:] == ["a", "c", "d", "b"]


def test_save_load_round_trip(tmp_path):
    vocab = Vocab(["北", "京", "ＡＢ", " ", "😀", "\"q\""])
    path = tmp_path / "vocab.json"
    vocab.save(path)
    assert json.loads(path.read_text(encoding="utf-8")) == vocab.tokens
    loaded = Vocab.load(path)
    assert loaded.tokens == vocab.tokens
    assert loaded.index == vocab.index
    assert loaded.encode(["京", "x"]) == vocab.encode(["京", "x"]) == [3, 1]


@pytest.mark.parametrize(
    "content",
    [
        '{"tokens": ["<pad>", "<unk>"]}',
        '["<unk>", "<pad>", "a"]',
        '["a", "b"]',
        "[]",
        '"<pad>"',
        "null",
    ],
)
def test_load_rejects_non_vocab_json(tmp_path, content):
    path = tmp_path / "not_vocab.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataFormatError) as info:
        Vocab.load(path)
    assert "not_vocab.json" in str(info.value)


def test_load_rejects_invalid_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('["<pad>", "<unk>",\n  "a"', encoding="utf-8")
    with pytest.raises(DataFormatError) as info:
        Vocab.load(path)
    assert f"{path}:" in str(info.value)
