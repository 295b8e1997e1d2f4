"""Lattice-LSTM (Zhang & Yang, ACL 2018), batched.

Character cell at position j (x_j = [e^c(c_j); e^b(c_j c_{j+1})]):
    [i_j; o_j; g_j] = [σ; σ; tanh](W_c [x_j; h_{j-1}] + b_c)
Word cell of each lexicon word w_{b,e} (head b, tail e), launched once h_b, c_b are known:
    [f; i^w; g^w] = [σ; σ; tanh](W_w [e^w(w); h_b] + b_w);   c^w = f ⊙ c_b + i^w ⊙ g^w
Merge at position e: with no word ending at e, c_e = (1 − i_e) ⊙ c_{e−1} + i_e ⊙ g_e; otherwise each arriving
word gets l_{b,e} = σ(W_l [x_e; c^w_{b,e}] + b_l) and c_e = α_e ⊙ g_e + Σ_b α_{b,e} ⊙ c^w_{b,e} where the α are
a softmax over (i_e, l_{b,e}, ...) element-wise.  h_e = o_e ⊙ tanh(c_e).  The backward direction runs the
same recurrence over each sentence reversed.

Batching: the recurrence steps over positions; at each step one matrix product serves every sentence, all the
word cells that start there are launched together, and the word cells that end there are gathered into a
padded (B, K, H) block whose padding is masked out of the softmax.  The two directions share that loop: the
reversed sentences join the batch, and each recurrent product is one batched matmul over the directions.
The schedule (which words start/end at each step) is built once per batch from the lattice in
:class:`~lexner.features.Batch`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..features import Batch, Featurizer
from .base import Tagger
from .embedder import Embedder, Inputs
from .recurrent import check_even_hidden, reverse_within_length


@dataclass
class LatticeLSTMConfig:
    zero_allowed: ClassVar[tuple[str, ...]] = ("bigram_dim",)  # int settings that may be 0 (others: ≥ 1)
    char_dim: int = 50  # the pretrained vectors are 50-d
    bigram_dim: int = 50  # 0 turns bigrams off
    word_dim: int = 50
    hidden: int = 200  # the paper's hidden size; split over the two directions when bidirectional
    bidirectional: bool = True
    dropout: float = 0.5  # on character inputs and on the lattice output
    word_dropout: float = 0.5  # on word embeddings (the reference code's gaz_dropout)

    def __post_init__(self) -> None:
        check_even_hidden(self.hidden, self.bidirectional)


@dataclass
class _Schedule:
    """For one direction of one batch: which word cells start and end at each position."""

    order: torch.Tensor  # flat word indices sorted by head: the words starting at one step are contiguous
    start_sizes: dict[int, int]  # step -> how many words start there (in ``order``)
    start_batch: dict[int, torch.Tensor]  # step -> the sentence of each word starting there
    # step s -> [(end step e, rows of the cells started at s that end at e, destination rows in e's block)]
    deliveries: dict[int, list[tuple[int, torch.Tensor, torch.Tensor]]]
    slots: dict[int, int]  # step e -> K_e, the most words ending at e in one sentence
    has_word: dict[int, torch.Tensor]  # step e -> (B, K_e) mask of real arriving words
    word_rows: torch.Tensor  # the (sentence, word) of each word of the first ``gather`` sentences, in flat order:
    word_cols: torch.Tensor  # where its embedding sits in the batch's (B, M) word table


def build_schedule(heads: list[list[int]], tails: list[list[int]], device: torch.device,
                   gather: int | None = None) -> _Schedule:
    """Schedule for words given per sentence as head/tail lists.  ``gather``: how many sentences' words the schedule's ``word_rows``/``word_cols`` list (None: all).

    Every index and mask is made on the host and sent to ``device`` in one copy (one transfer per batch, not
    one per tensor: on CUDA each small copy is a synchronisation)."""
    flat = [(b, m) for b in range(len(heads)) for m in range(len(heads[b]))]
    by_start: dict[int, list[int]] = defaultdict(list)
    arrivals: dict[int, list[int]] = defaultdict(list)  # end step -> flat indices
    slot_of: dict[int, int] = {}
    count: dict[tuple[int, int], int] = defaultdict(int)
    for j, (b, m) in enumerate(flat):
        by_start[heads[b][m]].append(j)
        end = tails[b][m]
        slot_of[j] = count[(b, end)]
        count[(b, end)] += 1
        arrivals[end].append(j)
    slots = defaultdict(int)
    for (_, end), n in count.items():
        slots[end] = max(slots[end], n)
    batch_size = len(heads)
    parts: list[list[int]] = []  # every tensor of the schedule, as a list of ints, in the order made

    def part(values: list[int]) -> int:
        parts.append(values)
        return len(parts) - 1

    masks = {}
    for end, js in arrivals.items():
        mask = [0] * (batch_size * slots[end])
        for j in js:
            mask[flat[j][0] * slots[end] + slot_of[j]] = 1
        masks[end] = part(mask)
    order, start_sizes, start_batch, deliveries = [], {}, {}, {}
    for step in sorted(by_start):
        js = by_start[step]
        order.extend(js)
        start_sizes[step] = len(js)
        start_batch[step] = part([flat[j][0] for j in js])
        groups: dict[int, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
        for row, j in enumerate(js):
            b, m = flat[j]
            end = tails[b][m]
            groups[end][0].append(row)
            groups[end][1].append(b * slots[end] + slot_of[j])
        deliveries[step] = [(end, part(rows), part(dest)) for end, (rows, dest) in groups.items()]
    order_part = part(order)
    gathered = [(b, m) for b, m in flat if gather is None or b < gather]
    rows_part, cols_part = part([b for b, _ in gathered]), part([m for _, m in gathered])
    moved = torch.tensor([v for p in parts for v in p], dtype=torch.long).to(device).split([len(p) for p in parts])
    has_word = {end: moved[k].view(batch_size, slots[end]).bool() for end, k in masks.items()}
    return _Schedule(moved[order_part], start_sizes, {step: moved[k] for step, k in start_batch.items()},
                     {step: [(end, moved[r], moved[d]) for end, r, d in groups] for step, groups in deliveries.items()},
                     dict(slots), has_word, moved[rows_part], moved[cols_part])


class LatticeDirection(nn.Module):
    """The weights of one direction of the lattice recurrence (run by :func:`run_lattice`)."""

    def __init__(self, input_dim: int, word_dim: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.char_x = nn.Linear(input_dim, 3 * hidden)  # W_c (input part) and b_c → i, o, g
        self.char_h = nn.Linear(hidden, 3 * hidden, bias=False)  # W_c (recurrent part)
        self.word_x = nn.Linear(word_dim, 3 * hidden)  # W_w (word part) and b_w → f, i, g
        self.word_h = nn.Linear(hidden, 3 * hidden, bias=False)  # W_w (h_b part)
        self.link_x = nn.Linear(input_dim, hidden)  # W_l (character part) and b_l
        self.link_c = nn.Linear(hidden, hidden, bias=False)  # W_l (word cell part)


def run_lattice(directions: list[LatticeDirection], xs: list[torch.Tensor], words: torch.Tensor,
                schedule: _Schedule) -> list[torch.Tensor]:
    """Run G directions in one loop over positions, as one batch of G·B sentences.

    xs: G × (B, T, input_dim), each already in its direction's order; words: (N, word_dim), the batch's words
    in flat (sentence, word) order; the schedule covers G·B sentences, direction g owning sentences g·B ..
    (g+1)·B − 1 with the same words.  Each recurrent product is one batched matmul over the G directions, so
    the bidirectional model costs one Python loop, not two.  Returns G × h: (B, T, H).
    """
    G, (B, length, _) = len(directions), xs[0].shape
    H = directions[0].hidden
    # Per-step slices made with unbind/split: their backward assembles one gradient tensor, where
    # indexing inside the loop would allocate a zero tensor of the full size at every step.
    char_gates = torch.cat([d.char_x(x) for d, x in zip(directions, xs)]).unbind(1)  # T × shape: (G·B, 3H)
    link_gates = torch.cat([d.link_x(x) for d, x in zip(directions, xs)]).unbind(1)  # T × shape: (G·B, H)
    all_words = torch.cat([d.word_x(words) for d in directions])  # shape: (G·N, 3H)
    starts = sorted(schedule.start_sizes)
    word_gates = dict(zip(starts, all_words[schedule.order].split([schedule.start_sizes[s] for s in starts])))
    char_h = torch.stack([d.char_h.weight.t() for d in directions])  # shape: (G, H, 3H)
    word_h = torch.stack([d.word_h.weight.t() for d in directions])  # shape: (G, H, 3H)
    link_c = torch.stack([d.link_c.weight.t() for d in directions])  # shape: (G, H, H)

    def per_direction(v: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Rows of direction g times weight[g]: v (G·B, ..., H) → (G·B, ..., out)."""
        return torch.bmm(v.reshape(G, -1, H), weight).view(*v.shape[:-1], weight.shape[-1])

    rows = G * B
    h = xs[0].new_zeros(rows, H)
    c = xs[0].new_zeros(rows, H)
    pending: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = defaultdict(list)
    outputs = []
    for t in range(length):
        i, o, g = (char_gates[t] + per_direction(h, char_h)).split(H, dim=-1)
        i, o, g = torch.sigmoid(i), torch.sigmoid(o), torch.tanh(g)
        if t in schedule.has_word:
            k = schedule.slots[t]
            cells, dest = zip(*pending.pop(t))
            # shape: (G·B, K, H): the word cells ending here, padded per sentence
            arriving = h.new_zeros(rows * k, H).index_copy(0, torch.cat(dest), torch.cat(cells)).view(rows, k, H)
            link = torch.sigmoid(link_gates[t].unsqueeze(1) + per_direction(arriving, link_c))  # shape: (G·B, K, H)
            mask = schedule.has_word[t]  # shape: (G·B, K)
            logits = torch.cat([i.unsqueeze(1), link.masked_fill(~mask.unsqueeze(2), float("-inf"))], dim=1)
            alpha = torch.softmax(logits, dim=1)  # shape: (G·B, 1+K, H)
            merged = alpha[:, 0] * g + (alpha[:, 1:] * arriving).sum(1)
            c = torch.where(mask.any(1, keepdim=True), merged, (1 - i) * c + i * g)
        else:
            c = (1 - i) * c + i * g
        h = o * torch.tanh(c)
        outputs.append(h)
        if t in word_gates:
            owners = schedule.start_batch[t]
            f, wi, wg = (word_gates[t] + per_direction(h, word_h)[owners]).split(H, dim=-1)
            cell = torch.sigmoid(f) * c[owners] + torch.sigmoid(wi) * torch.tanh(wg)  # shape: (n, H)
            for end, sel, dest in schedule.deliveries[t]:
                pending[end].append((cell[sel], dest))
    return list(torch.stack(outputs, dim=1).split(B))


class LatticeLSTM(Tagger):
    name = "lattice_lstm"
    Config = LatticeLSTMConfig
    tokens_include_words = True  # its work grows with the matched words
    min_word_length = 2
    @classmethod
    def inputs(cls, config: LatticeLSTMConfig) -> Inputs:
        return Inputs(words=True)

    def __init__(self, config: LatticeLSTMConfig, featurizer: Featurizer):
        super().__init__(config, featurizer)
        self.embed = Embedder(featurizer, config.char_dim, config.bigram_dim, config.word_dim)
        self.dropout = nn.Dropout(config.dropout)
        self.word_dropout = nn.Dropout(config.word_dropout)
        per_direction = config.hidden // 2 if config.bidirectional else config.hidden
        input_dim = self.embed.width
        self.forward_lattice = LatticeDirection(input_dim, config.word_dim, per_direction)
        self.backward_lattice = (
            LatticeDirection(input_dim, config.word_dim, per_direction) if config.bidirectional else None
        )
        self.make_output(per_direction * (2 if config.bidirectional else 1))

    def _lattice_lists(self, batch: Batch) -> tuple[list[list[int]], list[list[int]]]:
        """Each sentence's word heads and tails, read from the batch at once (on CUDA each read waits for the
        device); with the backward direction, the reversed sentences' after them (sentences B..2B−1)."""
        lengths, counts = batch.lengths.tolist(), batch.word_mask.sum(1).tolist()
        all_heads, all_tails = batch.word_heads.tolist(), batch.word_tails.tolist()
        heads = [row[:count] for row, count in zip(all_heads, counts)]
        tails = [row[:count] for row, count in zip(all_tails, counts)]
        if self.backward_lattice is not None:  # in the reversed sentence a word's tail comes first
            heads, tails = (heads + [[n - 1 - t for t in tb] for n, tb in zip(lengths, tails)],
                            tails + [[n - 1 - h for h in hb] for n, hb in zip(lengths, heads)])
        return heads, tails

    def features(self, batch: Batch) -> torch.Tensor:
        x = self.dropout(self.embed.characters(batch))  # shape: (B, T, char_dim + bigram_dim)
        words = self.word_dropout(self.embed.words(batch.word_ids))  # shape: (B, M, word_dim)
        directions, xs = [self.forward_lattice], [x]
        if self.backward_lattice is not None:  # the reversed sentences join the batch as sentences B..2B−1
            directions.append(self.backward_lattice)
            xs.append(reverse_within_length(x, batch.lengths))
        heads, tails = self._lattice_lists(batch)
        schedule = build_schedule(heads, tails, x.device, gather=len(x))  # the words listed once, not per direction
        hs = run_lattice(directions, xs, words[schedule.word_rows, schedule.word_cols], schedule)
        h = hs[0]
        if self.backward_lattice is not None:
            h = torch.cat([h, reverse_within_length(hs[1], batch.lengths)], dim=-1)
        return self.dropout(h)  # shape: (B, T, hidden)
