"""Contextual character features from a pretrained BERT-style encoder, and the BERT-CRF tagger.

The encoder comes from a local checkpoint directory (``AutoModel.from_pretrained(path)``); nothing is ever
downloaded.  A saved lexner model keeps the encoder's config (in ``config.json``), its weights (in
``model.safetensors``) and its tokenizer (in ``tokenizer/``), so it reloads without the original path.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..features import Batch, Featurizer
from ..fileio import ModelFormatError, expand_home, read_json
from .base import Tagger
from .embedder import Inputs


def build_encoder(path: str, saved_config: dict[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
    """The encoder: rebuilt from ``saved_config`` (weights come with the lexner model) or loaded from the local
    checkpoint ``path`` (``config.json`` and ``model.safetensors``).  Returns it and its config as a plain dict.

    Only ``transformers``' built-in architectures are built: a config with an ``auto_map`` (code shipped beside
    the checkpoint) is refused, and weights are read from safetensors only (never a pickled ``.bin``).  Every
    refusal is a :class:`ModelFormatError` naming the file."""
    from transformers import AutoConfig, AutoModel

    if saved_config:
        config = dict(saved_config)
        _refuse_remote_code(config, "the encoder config in config.json")
        try:
            encoder = AutoModel.from_config(AutoConfig.for_model(config.pop("model_type", None), **config),
                                            add_pooling_layer=False, trust_remote_code=False)
        except Exception as err:  # transformers' config validation raises types of its own (a str hidden_size)
            raise ModelFormatError(f"the encoder config in config.json: {type(err).__name__}: {err}") from None
        return encoder, encoder.config.to_dict()
    checkpoint = expand_home(path) if path else None
    if checkpoint is None or not checkpoint.is_dir():
        raise FileNotFoundError(f"bert_path {path!r}: not a local checkpoint directory (nothing is downloaded)")
    config_file, weights_file = checkpoint / "config.json", checkpoint / "model.safetensors"
    if not config_file.is_file():
        raise ModelFormatError(f"{config_file}: missing (a checkpoint needs config.json and model.safetensors)")
    raw = read_json(config_file)
    if not isinstance(raw, dict):
        raise ModelFormatError(f"{config_file}: expected a JSON object")
    _refuse_remote_code(raw, str(config_file))
    if not weights_file.is_file():
        raise ModelFormatError(f"{weights_file}: missing; encoder weights are read from safetensors only "
                               "(a pickled pytorch_model.bin is never loaded)")
    try:
        config = AutoConfig.from_pretrained(str(checkpoint), local_files_only=True, trust_remote_code=False)
        encoder = AutoModel.from_pretrained(str(checkpoint), config=config, add_pooling_layer=False,
                                            local_files_only=True, use_safetensors=True, trust_remote_code=False)
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise ModelFormatError(f"{checkpoint}: not a loadable encoder checkpoint ({err})") from None
    return encoder, encoder.config.to_dict()


def _refuse_remote_code(config: dict[str, Any], where: str) -> None:
    if "auto_map" in config:
        raise ModelFormatError(f"{where}: has an auto_map (code shipped with the checkpoint); lexner never runs "
                               "code from a model or checkpoint directory")


class BertFeatures(nn.Module):
    """One contextual vector per character: the encoder's last layer at the character's word piece (zeros
    for characters without a piece, such as spaces).  Sequences longer than the encoder's maximum are run
    in overlapping windows; each piece takes its vector from the window where it sits most centrally."""

    def __init__(self, path: str, saved_config: dict[str, Any], pieces):
        super().__init__()
        self.encoder, self.encoder_config = build_encoder(path, saved_config)
        pieces.check_ids(self.encoder.config.vocab_size, "the tokenizer (tokenizer/ of the model directory)"
                         if saved_config else f"the tokenizer of {path}")
        self.dim = self.encoder.config.hidden_size
        # room for [CLS] and [SEP]; RoBERTa-style embeddings number positions from padding_idx + 1
        offset = getattr(getattr(self.encoder, "embeddings", None), "padding_idx", None)
        self.window = self.encoder.config.max_position_embeddings - 2 - (offset + 1 if offset is not None else 0)
        self.cls_id, self.sep_id, self.pad_id = pieces.cls_id, pieces.sep_id, pieces.pad_id

    def _run(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Encode pieces (B, L) of the given lengths, framed by [CLS] … [SEP]; returns (B, L, H)."""
        B, L = ids.shape
        framed = torch.full((B, L + 2), self.pad_id, dtype=torch.long, device=ids.device)
        framed[:, 0] = self.cls_id
        real = torch.arange(L, device=ids.device)[None, :] < lengths[:, None]
        framed[:, 1:-1] = torch.where(real, ids, torch.full_like(ids, self.pad_id))
        framed[torch.arange(B, device=ids.device), lengths + 1] = self.sep_id
        attention = torch.arange(L + 2, device=ids.device)[None, :] < (lengths + 2)[:, None]
        return self.encoder(input_ids=framed, attention_mask=attention.long()).last_hidden_state[:, 1:-1]

    def piece_states(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, P, H) states of the pieces (B, P).  A sentence longer than the window is encoded in windows
        starting every half window, as many as *it* needs, so that its states do not depend on the other
        sentences of the batch; each piece takes the window whose centre is nearest."""
        P, W = ids.shape[1], self.window
        if P <= W:
            return self._run(ids, lengths)
        stride = max(1, W // 2)
        states = torch.zeros(ids.shape[0], P, self.dim, device=ids.device)
        best = torch.full(ids.shape, float("inf"), device=ids.device)
        positions = torch.arange(P, device=ids.device, dtype=torch.float)
        for start in range(0, P, stride):
            # a sentence needs the window at `start` if it has pieces there not covered by the previous window
            needed = (lengths > start) & ((start == 0) | (lengths > start - stride + W))
            if not bool(needed.any()):
                continue
            out = self._run(ids[:, start : start + W], (lengths - start).clamp(0, W))
            width = out.shape[1]
            distance = (positions[start : start + width] - (start + W / 2)).abs().expand(len(ids), -1)
            better = needed[:, None] & (distance < best[:, start : start + width])
            states[:, start : start + width] = torch.where(better[..., None], out.float(),
                                                           states[:, start : start + width])
            best[:, start : start + width] = torch.where(better, distance, best[:, start : start + width])
        return states

    def forward(self, batch: Batch) -> torch.Tensor:
        """(B, T, H) character features."""
        states = self.piece_states(batch.piece_ids, batch.piece_lengths)
        index = batch.char_piece.clamp(min=0)
        gathered = states.gather(1, index.unsqueeze(-1).expand(-1, -1, states.shape[-1]))
        return gathered * (batch.char_piece >= 0).unsqueeze(-1)


def uses_encoder(config: Any) -> bool:
    """Whether a tagger config asks for BERT features: a checkpoint to read (``bert_path``) or an encoder config
    saved with the model (``bert_config``)."""
    return bool(getattr(config, "bert_path", "") or getattr(config, "bert_config", None))


def attach_encoder(tagger: Tagger, who: str) -> BertFeatures:
    """The BERT features of ``tagger`` (built from its config), the one place where a tagger wires an encoder
    in.  The tagger's own config copy records the encoder's config, so a saved model rebuilds it without the
    checkpoint; the config the caller passed is left as it was."""
    if tagger.featurizer.pieces is None:
        raise ValueError(f"{who} needs a featurizer with the encoder's tokenizer")
    bert = BertFeatures(tagger.config.bert_path, tagger.config.bert_config, tagger.featurizer.pieces)
    tagger.config = dataclasses.replace(tagger.config, bert_config=bert.encoder_config)
    return bert


@dataclass
class BertCRFConfig:
    bert_path: str = ""  # a local checkpoint directory (needed to build a new model, not to load a saved one)
    bert_config: dict = field(default_factory=dict)  # filled in from the checkpoint; lets the model reload
    dropout: float = 0.1


class BertCRF(Tagger):
    """BERT features of each character → dropout → linear → CRF."""

    name = "bert_crf"
    Config = BertCRFConfig

    @classmethod
    def inputs(cls, config: BertCRFConfig) -> Inputs:
        return Inputs(chars=False, pieces=True)  # the encoder's pieces are its only input

    def __init__(self, config: BertCRFConfig, featurizer: Featurizer):
        super().__init__(config, featurizer)
        self.bert = attach_encoder(self, "bert_crf")
        self.dropout = nn.Dropout(config.dropout)
        self.make_output(self.bert.dim)

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.bert.parameters())

    def features(self, batch: Batch) -> torch.Tensor:
        return self.dropout(self.bert(batch))
