"""Registered taggers, by the name used on the command line and in saved ``config.json`` files.

A tagger's class is imported when first asked for (the classes import torch), so that the names alone —
``MODEL_NAMES``, which the command line's parser offers — cost nothing to read."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..fileio import ModelFormatError

if TYPE_CHECKING:
    from .base import Tagger

# A tagger's name (its class's ``name``) -> the module and class that define it.
_CLASSES = {"bilstm_crf": ("bilstm_crf", "BiLSTMCRF"), "softlexicon": ("softlexicon", "SoftLexicon"),
            "lattice_lstm": ("lattice_lstm", "LatticeLSTM"), "flat": ("flat", "FLAT"), "bert_crf": ("bert", "BertCRF")}
MODEL_NAMES = tuple(_CLASSES)


def model_class(name: str) -> type[Tagger]:
    try:
        module, cls = _CLASSES[name]
    except (KeyError, TypeError):
        raise ModelFormatError(f"unknown model {name!r}; known models are {sorted(MODEL_NAMES)}") from None
    return getattr(importlib.import_module(f".{module}", __name__), cls)


def __getattr__(name: str):
    if name == "MODELS":  # every tagger class by its name
        return {n: model_class(n) for n in MODEL_NAMES}
    if name == "Tagger":
        from .base import Tagger

        return Tagger
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["MODELS", "MODEL_NAMES", "ModelFormatError", "Tagger", "model_class"]
