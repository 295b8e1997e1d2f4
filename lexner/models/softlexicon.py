"""BiLSTM-CRF with soft lexicon features (after Ma et al., ACL 2020, "Simplify the Usage of Lexicon in Chinese
NER"): the lattice's words are pooled into each character's input instead of changing the recurrence.

For character j, the matched words fall into three sets by where j sits in them:
B(j) = words that begin at j, M(j) = words with j strictly inside, E(j) = words that end at j
(the lexicon's words have length ≥ 2, so the paper's fourth set S, single-character words, is the character
itself and left out).  Each set is the mean of its words' embeddings (zeros when empty):

x_j = [e^c(c_j); e^b(c_j c_{j+1}); mean e^w(B(j)); mean e^w(M(j)); mean e^w(E(j))]
→ dropout → BiLSTM → dropout → linear → CRF.

``word_weights="frequency"`` weights the words as the paper does instead: v(S) = 3/Z · Σ_{w∈S} z(w) e^w(w),
Z = Σ z(w) over all of j's words in the three sets, with z(w) = 1 + how often w occurs in the training texts
not inside a longer matched word (:meth:`lexner.lexicon.Lexicon.count_uncovered`).  The paper counts over
train, dev and test; here only the training texts are counted (the +1 keeps words they lack), and the counts
are saved with the model.

It reads the same lattice batch as Lattice-LSTM and FLAT, but runs a plain (cuDNN-fast) LSTM over it, so it
tags almost as fast as the BiLSTM-CRF baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Iterable

import numpy as np
import torch
from torch import nn

from ..features import Batch, Featurizer
from ..onnx_encoder import Graph
from .base import Tagger
from .embedder import Embedder, Inputs
from .recurrent import check_even_hidden, run_bilstm


WORD_WEIGHTS = ("mean", "frequency")


@dataclass
class SoftLexiconConfig:
    zero_allowed: ClassVar[tuple[str, ...]] = ("bigram_dim",)  # int settings that may be 0 (others: ≥ 1)
    char_dim: int = 50
    bigram_dim: int = 50  # 0 turns bigrams off
    word_dim: int = 50  # the pretrained word vectors are 50-d
    hidden: int = 300  # both directions together
    layers: int = 1
    dropout: float = 0.5  # on the input features and on the LSTM output
    word_weights: str = "mean"  # or "frequency": each word weighted by its training-text count (the paper's)

    def __post_init__(self) -> None:
        check_even_hidden(self.hidden)
        if self.word_weights not in WORD_WEIGHTS:
            raise ValueError(f"word_weights must be one of {', '.join(WORD_WEIGHTS)}, got {self.word_weights!r}")


def pooled_word_sets(words: torch.Tensor, heads: torch.Tensor, tails: torch.Tensor, word_mask: torch.Tensor,
                     length: int, frequencies: torch.Tensor | None = None) -> torch.Tensor:
    """Pooled word vectors of the B/M/E sets of every character: shape (B, T, 3 · D).

    ``words`` (B, M, D) are the matched words' vectors, ``heads``/``tails`` (B, M) their first and last
    character, ``word_mask`` (B, M) marks real words; ``length`` is T.  Without ``frequencies`` each set is the
    mean of its words; with them ((B, M), positive), each word is weighted by its frequency over the sum of the
    frequencies of all the character's words (all three sets), times 3.
    """
    positions = torch.arange(length, device=words.device).view(1, length, 1)  # shape: (1, T, 1)
    h, t = heads.unsqueeze(1), tails.unsqueeze(1)  # shape: (B, 1, M)
    # position first: the (B, T · 3, M) matrix of the product below as it is made, nothing to permute
    sets = torch.stack([h == positions, (h < positions) & (positions < t), t == positions], dim=2)
    sets = (sets & word_mask.view(word_mask.shape[0], 1, 1, -1)).to(words.dtype)  # shape: (B, T, 3, M)
    if frequencies is None:  # 1 / count for the set's words: sets are 0 or 1, so x · (1 / n) is exactly x / n
        weights = sets * (1.0 / sets.sum(3, keepdim=True).clamp(min=1))
    else:
        sets = sets * frequencies.to(words.dtype).view(frequencies.shape[0], 1, 1, -1)
        weights = sets * (3.0 / sets.sum((2, 3), keepdim=True).clamp(min=1e-6))
    batch, _, sets_count, most = weights.shape
    # shape: (B, T · 3, M) @ (B, M, D): einsum("btsm,bmd->btsd") as one batched matrix product, cheaper to call
    pooled = weights.reshape(batch, length * sets_count, most) @ words
    return pooled.reshape(batch, length, -1)


def onnx_pooled_word_sets(graph: Graph, words: str, dim: int, frequencies: str | None) -> str:
    """:func:`pooled_word_sets` as nodes of an ONNX ``graph``, op for op: ``words`` (B, M, ``dim``) and
    ``frequencies`` (B, M) name values of the graph; heads, tails, the word mask and T come from its inputs."""
    from onnx import TensorProto

    length = graph.op("Gather", graph.op("Shape", graph.input("chars")), graph.constant(1))
    positions = graph.op("Unsqueeze", graph.op("Range", graph.constant(0), length, graph.constant(1)),
                         graph.constant([-1]))  # shape: (T, 1)
    second, third = graph.constant([1]), graph.constant([2])
    h, t = (graph.op("Unsqueeze", graph.input(name), second) for name in ("word_heads", "word_tails"))  # (B, 1, M)
    inside = graph.op("And", graph.op("Less", h, positions), graph.op("Less", positions, t))
    sets = graph.op("Concat", *(graph.op("Unsqueeze", s, third)
                                for s in (graph.op("Equal", h, positions), inside, graph.op("Equal", t, positions))),
                    axis=2)  # shape: (B, T, 3, M)
    real = graph.op("Unsqueeze", graph.input("word_mask"), graph.constant([1, 2]))  # shape: (B, 1, 1, M)
    sets = graph.op("Cast", graph.op("And", sets, real), to=TensorProto.FLOAT)
    if frequencies is None:
        total = graph.op("ReduceSum", sets, graph.constant([3]), keepdims=1)
        weights = graph.op("Mul", sets,
                           graph.op("Reciprocal", graph.op("Max", total, graph.constant(1.0, np.float32))))
    else:
        sets = graph.op("Mul", sets, graph.op("Unsqueeze", frequencies, graph.constant([1, 2])))
        total = graph.op("ReduceSum", sets, graph.constant([2, 3]), keepdims=1)
        weights = graph.op("Mul", sets, graph.op("Div", graph.constant(3.0, np.float32),
                                                 graph.op("Max", total, graph.constant(1e-6, np.float32))))
    # shape: (B, T · 3, M) @ (B, M, D) -> (B, T · 3, D) -> (B, T, 3 · D), one matrix product per sentence
    most = graph.op("Slice", graph.op("Shape", graph.input("word_ids")), second, third)  # [M]
    flat = graph.op("Reshape", weights, graph.op("Concat", graph.constant([0, -1]), most, axis=0))
    return graph.op("Reshape", graph.op("MatMul", flat, words), graph.constant([0, -1, 3 * dim]))


class SoftLexicon(Tagger):
    name = "softlexicon"
    Config = SoftLexiconConfig
    min_word_length = 2  # a one-character word would land in B and E (the paper's S set is the character itself)
    @classmethod
    def inputs(cls, config: SoftLexiconConfig) -> Inputs:
        return Inputs(words=True)

    def __init__(self, config: SoftLexiconConfig, featurizer: Featurizer):
        super().__init__(config, featurizer)
        self.embed = Embedder(featurizer, config.char_dim, config.bigram_dim, config.word_dim)
        # with frequency weights: z(w) - 1 per word-table row (row 0: padding), saved with the model; else None
        self.register_buffer("word_counts", torch.zeros(len(featurizer.word_vocab), dtype=torch.int32)
                             if config.word_weights == "frequency" else None)
        self.dropout = nn.Dropout(config.dropout)
        self.lstm = nn.LSTM(
            self.embed.width + 3 * config.word_dim, config.hidden // 2,
            num_layers=config.layers, batch_first=True, bidirectional=True,
        )
        self.make_output(config.hidden)

    def fit_corpus(self, texts: Iterable[str]) -> None:
        """With frequency weights: count the lexicon's words in the training ``texts``."""
        if self.word_counts is not None:
            counts = self.featurizer.lexicon.count_uncovered(texts)
            self.word_counts[1:] = torch.from_numpy(counts).to(self.word_counts)

    def _words_added(self, count: int) -> None:
        if self.word_counts is not None:  # new words were never counted: z(w) = 1
            self.word_counts = torch.cat([self.word_counts, self.word_counts.new_zeros(count)])

    def features(self, batch: Batch) -> torch.Tensor:
        words = self.embed.words(batch.word_ids)  # shape: (B, M, word_dim); padding rows are zeros
        frequencies = (None if self.word_counts is None  # z(w), in float: no int32 overflow
                       else self.word_counts[batch.word_ids].to(words.dtype) + 1)
        sets = pooled_word_sets(words, batch.word_heads, batch.word_tails, batch.word_mask, batch.chars.shape[1],
                                frequencies)
        x = self.dropout(torch.cat([self.embed.characters(batch), sets], dim=-1))
        return self.dropout(run_bilstm(self.lstm, x, batch.lengths))  # shape: (B, T, hidden)

    def onnx_features(self, graph: Graph) -> str:
        words = graph.lookup(self.embed.words.weight, "word_ids")
        frequencies = None
        if self.word_counts is not None:
            from onnx import TensorProto

            counts = graph.lookup(self.word_counts, "word_ids")
            frequencies = graph.op("Add", graph.op("Cast", counts, to=TensorProto.FLOAT),
                                   graph.constant(1.0, np.float32))
        x = graph.op("Concat", self.embed.onnx_characters(graph), onnx_pooled_word_sets(graph, words, self.embed.words.embedding_dim, frequencies),
                     axis=-1)
        return graph.bilstm(self.lstm, x)
