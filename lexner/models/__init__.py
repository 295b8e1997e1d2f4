"""Registered taggers, by the name used on the command line and in saved ``config.json`` files.

A tagger's class is imported when first asked for (the classes import torch), so that the names alone —
``MODEL_NAMES``, which the command line's parser offers — cost nothing to read.  ``MODELS`` (every class by its
name) is made once, on first use; a tagger added to it is known to :func:`model_class` from then on."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..fileio import ModelFormatError

if TYPE_CHECKING:
    from .base import Tagger
    from .bert import BertCRF
    from .bilstm_crf import BiLSTMCRF
    from .flat import FLAT
    from .lattice_lstm import LatticeLSTM
    from .softlexicon import SoftLexicon

# A tagger's name (its class's ``name``) -> the module and class that define it.
_CLASSES = {"bilstm_crf": ("bilstm_crf", "BiLSTMCRF"), "softlexicon": ("softlexicon", "SoftLexicon"),
            "lattice_lstm": ("lattice_lstm", "LatticeLSTM"), "flat": ("flat", "FLAT"), "bert_crf": ("bert", "BertCRF")}
MODEL_NAMES = tuple(_CLASSES)
_MODELS: dict[str, type[Tagger]] | None = None  # MODELS, once made


def _imported(name: str) -> type[Tagger]:
    module, cls = _CLASSES[name]
    return getattr(importlib.import_module(f".{module}", __name__), cls)


def model_class(name: str) -> type[Tagger]:
    known = _MODELS if _MODELS is not None else _CLASSES
    try:
        if name in known:
            return _MODELS[name] if _MODELS is not None else _imported(name)
    except TypeError:  # unhashable: a hostile config.json's "model" may be any JSON value
        pass
    raise ModelFormatError(f"unknown model {name!r}; known models are {sorted(known)}")


def __getattr__(name: str):
    global _MODELS
    if name == "MODELS":
        if _MODELS is None:
            _MODELS = {n: _imported(n) for n in MODEL_NAMES}
        return _MODELS
    if name == "Tagger":
        from .base import Tagger

        return Tagger
    for tagger, (_, cls) in _CLASSES.items():
        if name == cls:
            return _imported(tagger)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["FLAT", "MODELS", "MODEL_NAMES", "BertCRF", "BiLSTMCRF", "LatticeLSTM", "ModelFormatError", "SoftLexicon",
           "Tagger", "model_class"]


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))  # the names imported when first used too (tab completion)
