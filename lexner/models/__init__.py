"""Registered taggers, by the name used on the command line and in saved ``config.json`` files."""

from __future__ import annotations

from .base import ModelFormatError, Tagger
from .bert import BertCRF
from .bilstm_crf import BiLSTMCRF
from .flat import FLAT
from .lattice_lstm import LatticeLSTM
from .softlexicon import SoftLexicon

MODELS: dict[str, type[Tagger]] = {cls.name: cls for cls in (BiLSTMCRF, SoftLexicon, LatticeLSTM, FLAT, BertCRF)}


def model_class(name: str) -> type[Tagger]:
    try:
        return MODELS[name]
    except KeyError:
        raise ModelFormatError(f"unknown model {name!r}; known models are {sorted(MODELS)}") from None


__all__ = ["MODELS", "ModelFormatError", "Tagger", "model_class"]
