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
