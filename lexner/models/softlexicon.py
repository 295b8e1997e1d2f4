"""BiLSTM-CRF with soft lexicon features (after Ma et al., ACL 2020, "Simplify the Usage of Lexicon in Chinese
NER"): the lattice's words are pooled into each character's input instead of changing the recurrence.

For character j, the matched words fall into three sets by where j sits in them:
B(j) = words that begin at j, M(j) = words with j strictly inside, E(j) = words that end at j
(the lexicon's words have length ≥ 2, so the paper's fourth set S, single-character words, is the character
itself and left out).  Each set is the mean of its words' embeddings (zeros when empty; the paper weights by
corpus frequency, which would need counts taken over the test set too):

x_j = [e^c(c_j); e^b(c_j c_{j+1}); mean e^w(B(j)); mean e^w(M(j)); mean e^w(E(j))]
→ dropout → BiLSTM → dropout → linear → CRF.

It reads the same lattice batch as Lattice-LSTM and FLAT, but runs a plain (cuDNN-fast) LSTM over it, so it
tags almost as fast as the BiLSTM-CRF baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..features import Batch, Featurizer
from .base import Tagger
from .embedder import Embedder, Inputs
from .recurrent import run_bilstm


@dataclass
class SoftLexiconConfig:
    char_dim: int = 50
    bigram_dim: int = 50  # 0 turns bigrams off
    word_dim: int = 50  # the pretrained word vectors are 50-d
    hidden: int = 300  # both directions together
    layers: int = 1
    dropout: float = 0.5  # on the input features and on the LSTM output


def pooled_word_sets(words: torch.Tensor, heads: torch.Tensor, tails: torch.Tensor, word_mask: torch.Tensor,
                     length: int) -> torch.Tensor:
    """Mean word vectors of the B/M/E sets of every character: shape (B, T, 3 · D).

    ``words`` (B, M, D) are the matched words' vectors, ``heads``/``tails`` (B, M) their first and last
    character, ``word_mask`` (B, M) marks real words; ``length`` is T.
    """
    positions = torch.arange(length, device=words.device).view(1, 1, length)  # shape: (1, 1, T)
    h, t = heads.unsqueeze(-1), tails.unsqueeze(-1)  # shape: (B, M, 1)
    sets = torch.stack([h == positions, (h < positions) & (positions < t), t == positions], dim=1)
    sets = (sets & word_mask.view(word_mask.shape[0], 1, -1, 1)).to(words.dtype)  # shape: (B, 3, M, T)
    weights = sets / sets.sum(2, keepdim=True).clamp(min=1)
    pooled = torch.einsum("bsmt,bmd->btsd", weights, words)  # shape: (B, T, 3, D)
    return pooled.reshape(words.shape[0], length, -1)


class SoftLexicon(Tagger):
    name = "softlexicon"
    Config = SoftLexiconConfig
    @classmethod
    def inputs(cls, config: SoftLexiconConfig) -> Inputs:
        return Inputs(words=True)

    def __init__(self, config: SoftLexiconConfig, featurizer: Featurizer):
        super().__init__(config, featurizer)
        if config.hidden % 2:
            raise ValueError(f"hidden must be even (split over two directions), got {config.hidden}")
        self.embed = Embedder(featurizer, config.char_dim, config.bigram_dim, config.word_dim)
        self.dropout = nn.Dropout(config.dropout)
        self.lstm = nn.LSTM(
            self.embed.width + 3 * config.word_dim, config.hidden // 2,
            num_layers=config.layers, batch_first=True, bidirectional=True,
        )
        self.make_output(config.hidden)

    def features(self, batch: Batch) -> torch.Tensor:
        words = self.embed.words(batch.word_ids)  # shape: (B, M, word_dim); padding rows are zeros
        sets = pooled_word_sets(words, batch.word_heads, batch.word_tails, batch.word_mask, batch.chars.shape[1])
        x = self.dropout(torch.cat([self.embed.characters(batch), sets], dim=-1))
        return self.dropout(run_bilstm(self.lstm, x, batch.lengths))  # shape: (B, T, hidden)
