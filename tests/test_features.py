"""Featurisation helpers (lexner.features)."""

import dataclasses

import numpy as np
import torch
from hypothesis import given, settings, strategies as st

from lexner.features import Batch, _pad


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(st.lists(st.lists(st.integers(0, 10**6), max_size=6), min_size=1, max_size=5), st.integers(0, 3))
def test_pad_right_pads_each_row_with_zeros(rows, extra):
    width = max(map(len, rows)) + extra
    padded = _pad(rows, width)
    assert padded.dtype == torch.long
    assert padded.tolist() == [row + [0] * (width - len(row)) for row in rows]
    assert torch.equal(_pad([np.array(row, dtype=np.int64) for row in rows], width), padded)  # encode_many's


def _featurizer():
    from conftest import toy_corpus

    from lexner.features import END, Featurizer
    from lexner.lexicon import Lexicon

    # bigrams seen in the corpus, one pretrained-style extra of each kind (a pair, one ending a text) and tokens
    # that are no bigram at all; characters that only normalised text has (Simplified, half-width)
    return Featurizer.build(toy_corpus(), extra_chars=["台", "湾", "A", " "],
                            extra_bigrams=["台湾", "国" + END, "x", "<s>" + END, "abc", "A "],
                            lexicon=Lexicon(["北京", "台湾", "张三", "ab", "👍👍"]))


FEATURIZER = _featurizer()
# characters of the toy corpus, Traditional ones, full-width and ideographic space, Latin, astral, a lone surrogate
ALPHABET = st.sampled_from(list("张三在北京工作李四住上海国臺灣台湾ＡＢab 　👍\ud83d") + ["\n"])


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(st.lists(st.text(ALPHABET, min_size=1, max_size=12), max_size=6))
def test_encode_many_equals_encode_one_of_each_text(texts):
    many = FEATURIZER.encode_many(texts)
    if len(texts) > 1:  # arrays (untracked by the garbage collector); one text goes to encode_one
        assert all(isinstance(v, np.ndarray) and v.dtype == np.int64 for item in many for v in item.values())
        many = [{k: v.tolist() for k, v in item.items()} for item in many]
    assert many == [FEATURIZER.encode_one(text) for text in texts]
    if len(texts) > 1:  # padded alike
        assert all(torch.equal(getattr(FEATURIZER.collate(FEATURIZER.encode_many(texts)), f.name), value)
                   for f in dataclasses.fields(Batch)
                   if isinstance(value := getattr(FEATURIZER.collate([FEATURIZER.encode_one(t) for t in texts]),
                                                  f.name), torch.Tensor))


def test_encode_many_follows_a_grown_bigram_vocabulary_and_refuses_empty_texts():
    import pytest

    featurizer = _featurizer()
    texts = ["北京人", "张三"]  # two: one text goes to encode_one
    assert featurizer.encode_many(texts)[0]["bigrams"][1] == 1  # 京人: unknown
    featurizer.bigrams.add("京人")
    assert featurizer.encode_many(texts)[0]["bigrams"].tolist() == featurizer.encode_one(texts[0])["bigrams"]
    assert featurizer.encode_many(texts)[0]["bigrams"][1] != 1
    with pytest.raises(ValueError, match="empty"):
        featurizer.encode_many(["北京", ""])


def test_one_text_encoded_by_hand():
    """The values themselves, not only encode_many against encode_one: 臺灣 read as 台湾 for every lookup,
    bigrams ending in </s>, lexicon words as (id + 1, first character, last character)."""
    from lexner.features import END

    chars, grams = FEATURIZER.chars.index, FEATURIZER.bigrams.index
    unknown = 1
    assert "京台" not in grams and "湾" + END not in grams and grams["台湾"] != unknown
    item = FEATURIZER.encode_one("北京臺灣")
    assert item["chars"] == [chars[c] for c in "北京台湾"]
    assert item["bigrams"] == [grams["北京"], unknown, grams["台湾"], unknown]
    assert (item["word_ids"], item["word_heads"], item["word_tails"]) == ([1, 2], [0, 2], [1, 3])  # 北京, 台湾


def test_gold_entities_of_a_type_the_label_set_lacks_are_tagged_o():
    from lexner.features import LabelSet
    from lexner.schemes import Span

    per = LabelSet(["PER"])
    assert per.encode([Span(0, 2, "LOC"), Span(2, 3, "PER")], 3) == [0, 0, per.tag_index["S-PER"]]
