"""BiLSTM-CRF over character and character-bigram embeddings (Zhang & Yang 2018's char+bichar baseline).

x_j = [e^c(c_j); e^b(c_j c_{j+1})] → dropout → BiLSTM → dropout → linear → CRF.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..features import Batch, Featurizer
from ..onnx_encoder import Graph
from .base import Tagger
from .embedder import Embedder
from .recurrent import check_even_hidden, run_bilstm


@dataclass
class BiLSTMCRFConfig:
    zero_allowed: ClassVar[tuple[str, ...]] = ("bigram_dim",)  # int settings that may be 0 (others: ≥ 1)
    char_dim: int = 50  # the pretrained character vectors are 50-d
    bigram_dim: int = 50  # 0 turns bigrams off
    hidden: int = 200  # both directions together (100 each), as in the paper's baseline
    layers: int = 1
    dropout: float = 0.5  # on the embeddings and on the LSTM output

    def __post_init__(self) -> None:
        check_even_hidden(self.hidden)


class BiLSTMCRF(Tagger):
    name = "bilstm_crf"
    Config = BiLSTMCRFConfig

    def __init__(self, config: BiLSTMCRFConfig, featurizer: Featurizer):
        super().__init__(config, featurizer)
        self.embed = Embedder(featurizer, config.char_dim, config.bigram_dim)
        self.dropout = nn.Dropout(config.dropout)
        self.lstm = nn.LSTM(
            self.embed.width, config.hidden // 2, num_layers=config.layers,
            batch_first=True, bidirectional=True,
        )
        self.make_output(config.hidden)

    def features(self, batch: Batch) -> torch.Tensor:
        x = self.dropout(self.embed.characters(batch))  # shape: (B, T, char_dim + bigram_dim)
        return self.dropout(run_bilstm(self.lstm, x, batch.lengths))  # shape: (B, T, hidden)

    def onnx_features(self, graph: Graph) -> str:
        return graph.bilstm(self.lstm, self.embed.onnx_characters(graph))
