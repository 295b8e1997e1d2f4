"""FLAT (Li, Yan, Qiu & Huang, ACL 2020): a Transformer over the flat lattice.

Tokens are the n characters followed by the m matched words; token t spans head h[t] .. tail t[t] (a
character has h = t = its index).  Four relative distances between tokens i and j — h_i−h_j, t_i−h_j,
h_i−t_j, t_i−t_j — each through a sinusoid p_d, are fused into R_ij = ReLU(W_r [p_hh; p_th; p_ht; p_tt] + b_r),
and attention (Transformer-XL style, per head) scores
    A_ij = (q_i + u)·k_j + (q_i + v)·(R_ij W_R),   q = E W_q, k = E W_k (or E when keys are not projected).
Only the character outputs go to the tag layer and the CRF.

Memory and speed.  The reference code materialises several (N, N, d) tensors per sentence (four sinusoids, their
concatenation, the fused R, R W_R) and keeps them for the backward pass.  Here (``lean=True``):
* W_r [p;p;p;p] = Σ_k W_r^(k) p_{d_k}: each of the four projections is tabulated once per distance value,
  and since the four distances of a pair follow from h_i − h_j and the two tokens' lengths, R itself (with its
  ReLU) is tabulated per (length, length, h_i − h_j);
* (q_i + v)·(R_ij W_R) = R_ij · (W_R (q_i + v)): the query is projected into R's space, so R W_R is never formed;
* character keys, most of the pairs: a query meets all of them through the W = 2n − 1 rows of its length's
  slice, so its scores against those rows are one matrix product per query length, and each pair picks one
  scalar — no per-pair tensor of width d, forward or backward.  Word keys (few) gather their table rows;
* scores are built and consumed in blocks of query rows; when the batch's block tensors would exceed
  ``checkpoint_elements``, each block runs under activation checkpointing, so none outlives its block and the
  backward pass rebuilds them block by block (small batches skip the recomputation: it costs time).
``lean=False`` computes the same scores the reference way (kept for tests and the memory benchmark).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..features import Batch, Featurizer
from .base import Tagger
from .embedder import Embedder, Inputs
from .bert import attach_encoder, uses_encoder


@dataclass
class FLATConfig:
    # int settings that may be 0 (others: ≥ 1)
    zero_allowed: ClassVar[tuple[str, ...]] = ("bigram_dim", "block_elements", "checkpoint_elements")
    char_dim: int = 50  # the pretrained vectors are 50-d
    bigram_dim: int = 50  # 0 turns bigrams off
    word_dim: int = 50
    model_dim: int = 160  # the paper: 8 heads × 20 (Weibo: 8 × 16 = 128)
    heads: int = 8
    ffn_dim: int = 480  # the paper: 3 × model_dim (Weibo 384)
    layers: int = 1
    embed_dropout: float = 0.5
    ffn_dropout: float = 0.15
    output_dropout: float = 0.3
    attn_dropout: float = 0.0
    project_keys: bool = True  # the paper's W_k; the reference code's default (k_proj=False) leaves keys as they are
    scaled: bool = False  # divide scores by sqrt(head dim): neither the paper nor the reference default does
    lean: bool = True  # the memory-lean relative-position path (False: the reference full-tensor path)
    # lean path: query rows per block so that a block's character-key scores and word-key rows hold about this
    # many elements (64 MB).  Few large blocks trained MSRA ~1.5-2x faster than 2^20 (each block's backward
    # zero-fills a gradient of the whole table)
    block_elements: int = 1 << 24
    checkpoint_elements: int = 1 << 26  # lean path: recompute blocks in backward only when they total more
    # FLAT+BERT: a local BERT-style checkpoint whose features join each character's input (see models/bert.py)
    bert_path: str = ""
    bert_config: dict = field(default_factory=dict)  # filled in from the checkpoint; lets the model reload

    def __post_init__(self) -> None:
        if self.heads < 1 or self.model_dim < 1 or self.model_dim % self.heads:
            raise ValueError(f"model_dim {self.model_dim} must be a positive multiple of heads {self.heads}")


def gather_rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table[index]`` for a 2-D ``table`` and an index of any shape, by ``index_select``: the same values, but
    a backward pass that adds the gradients of repeated rows in a fixed order (advanced indexing's
    ``index_put_(accumulate=True)`` adds them in a different order on every run with several CPU threads, so
    FLAT's training was not reproducible there).  On CUDA, advanced indexing as before: there index_select's
    backward adds with atomic operations, in no fixed order."""
    if table.is_cuda:
        return table[index]
    return table.index_select(0, index.reshape(-1)).view(*index.shape, table.shape[-1])


def sinusoid_table(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """p_d for each d in ``positions``: p[2k] = sin(d / 10000^(2k/dim)), p[2k+1] = cos(...).  Shape (*, dim)."""
    k = torch.arange(0, dim, 2, dtype=torch.float32, device=positions.device)
    angles = positions.float().unsqueeze(-1) / torch.pow(10000.0, k / dim)  # shape: (*, dim/2)
    table = torch.zeros(*positions.shape, dim, device=positions.device)
    table[..., 0::2] = torch.sin(angles)
    table[..., 1::2] = torch.cos(angles[..., : dim // 2])
    return table


def relative_distances(heads: torch.Tensor, tails: torch.Tensor) -> list[torch.Tensor]:
    """The four (B, N, N) distances hh, th, ht, tt between every pair of tokens (i, j)."""
    pairs = ((heads, heads), (tails, heads), (heads, tails), (tails, tails))
    return [a.unsqueeze(2) - b.unsqueeze(1) for a, b in pairs]


class RelativeAttentionLayer(nn.Module):
    """One FLAT layer: relative multi-head attention, then the feed-forward block, post-norm residuals."""

    def __init__(self, config: FLATConfig):
        super().__init__()
        d, self.heads = config.model_dim, config.heads
        self.head_dim = d // config.heads
        self.config = config
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(d, d) if config.project_keys else nn.Identity()
        self.value = nn.Linear(d, d)
        self.fuse = nn.Linear(4 * d, d)  # W_r, b_r over [p_hh; p_th; p_ht; p_tt]
        self.rel = nn.Linear(d, d, bias=False)  # W_R
        self.u = nn.Parameter(torch.zeros(config.heads, self.head_dim))
        self.v = nn.Parameter(torch.zeros(config.heads, self.head_dim))
        nn.init.xavier_normal_(self.u)
        nn.init.xavier_normal_(self.v)
        self.out = nn.Linear(d, d)
        self.norm1 = nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, config.ffn_dim), nn.LeakyReLU(), nn.Dropout(config.ffn_dropout),
                                 nn.Linear(config.ffn_dim, d))
        self.norm2 = nn.LayerNorm(d)
        self.ffn_dropout = nn.Dropout(config.ffn_dropout)
        self.attn_dropout = nn.Dropout(config.attn_dropout)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        return x.view(B, N, self.heads, self.head_dim).transpose(1, 2)  # shape: (B, h, N, dh)

    # --- the position term (q_i + v)·(R_ij W_R), two ways ----------------------------------------------
    def position_scores_naive(self, qv: torch.Tensor, distances: list[torch.Tensor]) -> torch.Tensor:
        """The reference way: four (B, N, N, d) sinusoids, concatenated, fused, projected. Returns (B, h, N, N)."""
        d = self.config.model_dim
        p = torch.cat([sinusoid_table(dist, d) for dist in distances], dim=-1)  # shape: (B, N, N, 4d)
        r = F.relu(self.fuse(p))  # shape: (B, N, N, d)
        rw = r @ self.rel.weight.t()  # shape: (B, N, N, d), R W_R
        B, N = r.shape[:2]
        rw = rw.view(B, N, N, self.heads, self.head_dim)
        return torch.einsum("bhie,bijhe->bhij", qv, rw)

    def position_scores_lean(self, qv: torch.Tensor, heads: torch.Tensor, tails: torch.Tensor,
                             span: int) -> torch.Tensor:
        """Tabulated projections, query projected into R's space, scores per table row, blocks of query rows.

        The four distances of a pair are functions of (x = h_i − h_j, len_i, len_j): th = x + len_i − 1,
        ht = x − (len_j − 1), tt = x + (len_i − 1) − (len_j − 1).  So R = ReLU(W_r[p;p;p;p] + b_r) is tabulated
        once per (len_i, len_j, x) for the token lengths present in the batch.  A query i of length class a meets
        every character key through the rows (a, 1, ·), so its scores against all those rows are one matrix
        product per class, and each character pair then picks one scalar: no tensor of width d per character
        pair exists, forward or backward.  Word keys gather their rows (a_i, len_j, h_i − h_j).
        """
        d = self.config.model_dim
        lengths = tails - heads + 1  # shape: (B, N); 1 for characters
        present, length_id = torch.unique(lengths, return_inverse=True)  # shape: (K,), (B, N)
        extra = int(present.max()) - 1
        reach = span + extra  # every distance of every pair lies in [-reach, reach]
        sinus = sinusoid_table(torch.arange(-reach, reach + 1, device=qv.device), d)  # shape: (2R+1, d)
        hh, th, ht, tt = (sinus @ w.t() for w in self.fuse.weight.split(d, dim=1))  # each (2R+1, d)
        x = torch.arange(-span, span + 1, device=qv.device)  # h_i − h_j
        a = (present - 1).view(-1, 1, 1)  # len_i − 1, shape: (K, 1, 1)
        b = (present - 1).view(1, -1, 1)  # len_j − 1, shape: (1, K, 1)
        shift = reach + x  # row of distance 0 + x
        # shape: (K, K, 2S+1, d): R for every (len_i, len_j, x)
        table = F.relu(gather_rows(hh, shift).expand(len(present), len(present), -1, -1)
                       + gather_rows(th, shift + a) + gather_rows(ht, shift - b) + gather_rows(tt, shift + a - b)
                       + self.fuse.bias)
        K, width, T = len(present), 2 * span + 1, span + 1
        # character keys (length class 0: 1 is the shortest length and characters always have it):
        # column h_i − j + span of the query's class slice; word keys: a row of the whole table
        char_column = heads[:, :, None] - torch.arange(T, device=qv.device) + span  # shape: (B, N, T)
        word_index = ((length_id.unsqueeze(2) * K + length_id[:, None, T:]) * width
                      + heads.unsqueeze(2) - heads[:, None, T:] + span)  # shape: (B, N, M)
        # (q_i + v)·(R_ij W_R) = R_ij · (W_R-projected query): shape (B, N, h, d)
        w = self.rel.weight.view(self.heads, self.head_dim, d)
        query = torch.einsum("bhie,hec->bihc", qv, w)
        B, N = heads.shape
        per_row = B * self.heads * width + B * (N - T) * d  # elements of a block's scores and word rows, per query
        rows = max(1, self.config.block_elements // max(1, per_row))
        recompute = torch.is_grad_enabled() and N * per_row > self.config.checkpoint_elements
        blocks = []
        for start in range(0, N, rows):
            block = slice(start, start + rows)
            args = (table, length_id[:, block], char_column[:, block], word_index[:, block], query[:, block])
            if recompute:
                blocks.append(checkpoint(_position_block, *args, use_reentrant=False))
            else:
                blocks.append(_position_block(*args))
        return torch.cat(blocks, dim=1).transpose(1, 2)  # shape: (B, h, N, N)

    def forward(self, x: torch.Tensor, heads: torch.Tensor, tails: torch.Tensor, key_mask: torch.Tensor,
                span: int) -> torch.Tensor:
        """x: (B, N, d) tokens; heads/tails: (B, N) positions in [0, span]; key_mask: (B, N) True on real tokens."""
        q = self.split_heads(self.query(x))  # shape: (B, h, N, dh)
        k = self.split_heads(self.key(x))
        v = self.split_heads(self.value(x))
        content = torch.einsum("bhie,bhje->bhij", q + self.u.unsqueeze(1), k)  # (q_i + u)·k_j
        qv = q + self.v.unsqueeze(1)
        if self.config.lean:
            position = self.position_scores_lean(qv, heads, tails, span)
        else:
            position = self.position_scores_naive(qv, relative_distances(heads, tails))
        scores = content + position  # shape: (B, h, N, N)
        if self.config.scaled:
            scores = scores / math.sqrt(self.head_dim)
        scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        attention = self.attn_dropout(torch.softmax(scores, dim=-1))
        context = (attention @ v).transpose(1, 2).reshape(x.shape)  # shape: (B, N, d)
        x = self.norm1(x + self.ffn_dropout(self.out(context)))
        return self.norm2(x + self.ffn_dropout(self.ffn(x)))


def _position_block(table: torch.Tensor, classes: torch.Tensor, char_column: torch.Tensor,
                    word_index: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """Position scores of a block of query rows against every key.

    table: (K, K, W, d), R per (query length class, key length class, h_i − h_j); classes: (B, rows), each
    query's class; char_column: (B, rows, T), the row x of (class, 0) each character key reads; word_index:
    (B, rows, M), the row of the whole table each word key reads; query: (B, rows, h, d).  Character keys are
    most pairs, and a query meets them through one slice of W rows: one matrix product per query class, then a
    scalar per pair.  Word keys are few per query and of any class: their rows are gathered.  Returns
    (B, rows, h, T + M)."""
    B, rows, heads, d = query.shape
    K, width = table.shape[0], table.shape[2]
    slices = query.new_zeros(B, rows, heads, width)  # each query against its class's character-key rows
    for k in range(K):
        chosen = classes == k
        if chosen.any():
            slices[chosen] = query[chosen] @ table[k, 0].t()
    chars = slices.gather(3, char_column.unsqueeze(2).expand(-1, -1, heads, -1))  # shape: (B, rows, h, T)
    words = torch.einsum("bijc,bihc->bihj", gather_rows(table.reshape(-1, d), word_index), query)  # (B, rows, h, M)
    return torch.cat([chars, words], dim=3)


class FLAT(Tagger):
    name = "flat"
    Config = FLATConfig
    tokens_include_words = True  # its work grows with the matched words
    @classmethod
    def inputs(cls, config: FLATConfig) -> Inputs:
        return Inputs(words=True, pieces=uses_encoder(config))

    def __init__(self, config: FLATConfig, featurizer: Featurizer):
        super().__init__(config, featurizer)
        self.embed = Embedder(featurizer, config.char_dim, config.bigram_dim, config.word_dim)
        self.bert = attach_encoder(self, "flat with BERT features") if self.reads.pieces else None
        bert_dim = self.bert.dim if self.bert is not None else 0
        self.char_project = nn.Linear(self.embed.width + bert_dim, config.model_dim)
        self.word_project = nn.Linear(config.word_dim, config.model_dim)
        self.embed_dropout = nn.Dropout(config.embed_dropout)
        self.layers = nn.ModuleList(RelativeAttentionLayer(config) for _ in range(config.layers))
        self.output_dropout = nn.Dropout(config.output_dropout)
        self.make_output(config.model_dim)

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.bert.parameters()) if self.bert is not None else []

    def features(self, batch: Batch) -> torch.Tensor:
        chars = self.embed_dropout(self.embed.characters(batch))  # shape: (B, T, char_dim + bigram_dim)
        if self.bert is not None:  # contextual features, not dropped like the static embeddings
            chars = torch.cat([chars, self.bert(batch)], dim=-1)
        chars = self.char_project(chars)  # shape: (B, T, d)
        words = self.word_project(self.embed_dropout(self.embed.words(batch.word_ids)))  # shape: (B, M, d)
        x = torch.cat([chars, words], dim=1)  # shape: (B, T+M, d): characters, then words
        B, T = batch.chars.shape
        positions = torch.arange(T, device=x.device).expand(B, T)
        heads = torch.cat([positions, batch.word_heads], dim=1)  # shape: (B, T+M)
        tails = torch.cat([positions, batch.word_tails], dim=1)
        key_mask = torch.cat([batch.mask, batch.word_mask], dim=1)
        for layer in self.layers:
            x = layer(x, heads, tails, key_mask, span=T - 1)
        return self.output_dropout(x[:, :T])  # shape: (B, T, model_dim)
