import pytest

from lexner.models.bilstm_crf import BiLSTMCRF, BiLSTMCRFConfig
from tagger_contract import TaggerContract


class TestBiLSTMCRF(TaggerContract):
    model_name = "bilstm_crf"
    config = {"char_dim": 16, "bigram_dim": 8, "hidden": 24, "dropout": 0.2}


class TestBiLSTMCRFWithoutBigrams(TaggerContract):
    model_name = "bilstm_crf"
    config = {"char_dim": 16, "bigram_dim": 0, "hidden": 24, "dropout": 0.0}


def test_hidden_must_be_even(corpus):
    from lexner.features import Featurizer

    with pytest.raises(ValueError, match="even"):
        BiLSTMCRF(BiLSTMCRFConfig(hidden=25), Featurizer.build(corpus))


def test_tag_batch_caps_padded_tokens_per_batch(corpus):
    from lexner.api import build_tagger

    tagger = build_tagger("bilstm_crf", corpus, {"hidden": 8}).eval()
    tagger.batch_tokens = 200
    shapes = []
    decode = tagger.decode
    tagger.decode = lambda batch: (shapes.append(tuple(batch.chars.shape)), decode(batch))[1]
    texts = ["张三在北京"] * 50 + ["天" * 150] * 3
    alone = [tagger.tag(t) for t in texts[48:]]
    shapes.clear()
    assert tagger.tag_batch(texts, batch_size=64)[48:] == alone
    assert all(b * t <= 200 or b == 1 for b, t in shapes) and sum(b for b, _ in shapes) == len(texts)
