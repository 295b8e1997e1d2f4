"""Linear-chain CRF: pytorch-crf's log-likelihood plus a vectorised Viterbi constrained to legal BIOES paths."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torchcrf import CRF

from .schemes import allowed_transitions


class ConstrainedCRF(CRF):
    """A :class:`torchcrf.CRF` (``batch_first``) whose decoding never outputs an illegal tag sequence.

    Training uses the unconstrained log-likelihood (``forward``); :meth:`viterbi` adds ``-inf`` to the scores of
    transitions that the tag scheme forbids (``I-LOC`` after ``B-PER``, ``E-`` without ``B-``, ...).
    """

    def __init__(self, tags: Sequence[str]):
        super().__init__(len(tags), batch_first=True)
        start, trans, end = (torch.from_numpy(a) for a in allowed_transitions(tags))
        self.register_buffer("allowed_start", start, persistent=False)
        self.register_buffer("allowed_transitions", trans, persistent=False)
        self.register_buffer("allowed_end", end, persistent=False)

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood per sentence.  Every sentence must have ``mask[:, 0]`` true.

        The same quantity as pytorch-crf's ``-CRF.forward(..., reduction="mean")`` (tested to agree within
        float rounding, values and gradients) with fewer operations: the gold path's score in one gather over
        all positions instead of a loop over them, and the forward algorithm adding each position's emissions
        after the log-sum-exp (they do not depend on the previous tag)."""
        emissions = emissions.float()
        weights = mask.to(emissions.dtype)
        lengths = mask.sum(1)
        gold = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # shape: (B, T)
        moves = self.transitions[tags[:, :-1], tags[:, 1:]]  # shape: (B, T - 1)
        last = tags.gather(1, (lengths - 1).unsqueeze(1)).squeeze(1)
        score = (self.start_transitions[tags[:, 0]] + (gold * weights).sum(1) + (moves * weights[:, 1:]).sum(1)
                 + self.end_transitions[last])
        alpha = self.start_transitions + emissions[:, 0]  # shape: (B, K)
        for t in range(1, emissions.shape[1]):
            step = torch.logsumexp(alpha.unsqueeze(2) + self.transitions, dim=1) + emissions[:, t]
            alpha = torch.where(mask[:, t : t + 1], step, alpha)
        log_partition = torch.logsumexp(alpha + self.end_transitions, dim=1)
        return (log_partition - score).mean()

    def log_marginals(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log P(tag at position t = k | sentence) under this (unconstrained) CRF, by forward-backward:
        shape (B, T, K), differentiable; rows at padding positions are meaningless (mask them out).

        Scaled forward-backward: each position's forward and backward scores are kept normalised (shifted by
        their log-sum-exp, which changes no marginal), and the marginals are ``log_softmax(alpha + beta)`` per
        position rather than ``alpha + beta - log Z``.  The unscaled sums grow with the sentence and the
        emissions' size (thousands), and in float32 their cancellation made the gradient wrong — in a student
        being distilled it pushed the emissions ever larger, training diverged (see benchmarks/README.md)."""
        emissions = emissions.to(torch.promote_types(emissions.dtype, torch.float32))  # half: float32; double stays
        batch, length, _ = emissions.shape

        def normalised(scores: torch.Tensor) -> torch.Tensor:
            return scores - torch.logsumexp(scores, dim=-1, keepdim=True)

        alphas = [normalised(self.start_transitions + emissions[:, 0])]
        for t in range(1, length):
            step = normalised(torch.logsumexp(alphas[-1].unsqueeze(2) + self.transitions, dim=1) + emissions[:, t])
            alphas.append(torch.where(mask[:, t : t + 1], step, alphas[-1]))
        # beta_t(k): log-sum of the scores of every continuation after position t from tag k, end included
        lengths = mask.sum(1)
        beta = normalised(self.end_transitions.expand(batch, -1))
        betas = [beta] * length
        for t in range(length - 2, -1, -1):
            step = torch.logsumexp(self.transitions + (emissions[:, t + 1] + betas[t + 1]).unsqueeze(1), dim=2)
            betas[t] = torch.where((lengths > t + 1).unsqueeze(1), normalised(step), beta)
        return torch.log_softmax(torch.stack(alphas, 1) + torch.stack(betas, 1), dim=-1)  # shape: (B, T, K)

    def decode(self, emissions: torch.Tensor, mask: torch.Tensor | None = None) -> list[list[int]]:
        """The constrained :meth:`viterbi` (pytorch-crf's own ``decode`` would allow illegal tag sequences)."""
        if mask is None:
            mask = torch.ones(emissions.shape[:2], dtype=torch.bool, device=emissions.device)
        return self.viterbi(emissions, mask.bool())

    def viterbi(self, emissions: torch.Tensor, mask: torch.Tensor,
                allowed: torch.Tensor | None = None) -> list[list[int]]:
        """Best legal tag sequence of each sentence (lists of lengths ``mask.sum(1)``).

        emissions: (B, T, K) scores; mask: (B, T) bool, left-aligned, ``mask[:, 0]`` all true; ``allowed``:
        (B, T, K) bool or None — at each position only the allowed tags may be chosen (a constraint on the
        search, not an edit of its result).  The constraints must leave every sentence a legal path (a forced
        word whole, never part of one): where they do not, a ValueError (:data:`NO_LEGAL_PATH`), never a
        garbage path.

        Ties: at every choice the lowest tag index among the scores within ``TIE`` × (a bound on the size of the
        sentence's path scores at that position, from its own scores only) of the best wins, so that float noise
        of a few units in the last place — padding a sentence into a batch changes its emissions by ~1e-7 —
        never changes a path that was an exact tie (batched tagging equals one by one).  The price: a choice may
        keep a lower-index tag up to that tolerance below the best, so on long sentences the path found can score
        slightly below the exact optimum (random emissions of size ~3: 5 of 40 sentences of 500 characters, by at
        most 0.016 in log-score; tagging cuts texts into pieces of at most 500).

        On CPU the search runs in numpy: the same float32 sums in the same order as the torch search used on
        GPUs (so the same paths, ties included), without torch's per-operation overhead, which dominated tagging
        one sentence at a time (``tests/test_crf.py`` checks they agree).
        """
        emissions = emissions.detach().float()
        if emissions.device.type == "cpu":
            em = emissions.numpy()
            if allowed is not None:
                em = np.where(allowed.numpy(), em, np.float32(-np.inf))
            return _search_numpy(em, mask.numpy(), *self._constrained_numpy())
        with torch.no_grad():
            neg = torch.tensor(float("-inf"), device=emissions.device)
            if allowed is not None:
                emissions = torch.where(allowed, emissions, neg)
            return _search_torch(emissions, mask, *self.constrained_scores())

    def constrained_scores(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The start (K,), transition (K, K) and end (K,) scores with ``-inf`` where the tag scheme forbids."""
        with torch.no_grad():
            neg = torch.tensor(float("-inf"), device=self.transitions.device)
            return (torch.where(self.allowed_start, self.start_transitions, neg),
                    torch.where(self.allowed_transitions, self.transitions, neg),
                    torch.where(self.allowed_end, self.end_transitions, neg))

    def _constrained_numpy(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, float]]:
        """:meth:`constrained_scores` in numpy (CPU parameters), with the bounds of their sizes the tie tolerance
        reads (:func:`_bounds_numpy`).  Kept from one search to the next while the three score parameters hold
        the same values, byte for byte (a few hundred bytes compared: no optimiser step, in place or not, fused
        or not, through ``.data`` or not, goes unseen)."""
        values = tuple(p.detach().cpu().numpy().tobytes()
                       for p in (self.start_transitions, self.transitions, self.end_transitions))
        kept = self.__dict__.get("_numpy_scores")
        if kept is not None and kept[0] == values:
            return kept[1]
        pairs = ((self.allowed_start, self.start_transitions), (self.allowed_transitions, self.transitions),
                 (self.allowed_end, self.end_transitions))
        start, trans, end = (np.where(allowed.numpy(), score.detach().float().numpy(), np.float32(-np.inf))
                             for allowed, score in pairs)
        scores = (start, trans, end, _bounds_numpy(start, trans))
        self.__dict__["_numpy_scores"] = (values, scores)
        return scores


BLOCK_VALUES = 1 << 16  # the numpy search makes the candidates of this many (K, K, B) values at a time
TIE = 2e-6  # scores closer to the best than this fraction of a bound on their size tie with it


def _finite_sizes(a: np.ndarray) -> np.ndarray:
    """|a| where finite, 0 where not (the -inf of forbidden transitions and constrained tags)."""
    return np.where(np.isfinite(a), np.abs(a), 0.0)


def _bounds_numpy(start: np.ndarray, trans: np.ndarray) -> tuple[float, float]:
    """The parts of :func:`_tolerances_numpy`'s bound that the scores alone give: 1 + the largest finite start
    score's size, and the largest finite transition score's size."""
    return 1.0 + _finite_sizes(start).max(), _finite_sizes(trans).max()


def _tolerances_numpy(em: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    """(T, B) from (T, K, B) emissions and :func:`_bounds_numpy`: how far below the best a score at each position
    of each sentence still ties with it — TIE times a bound on the size of any of that sentence's path scores
    there (its own emissions only, so a sentence's decisions never depend on the others in its batch)."""
    per_position = np.abs(em).max(1)  # shape: (T, B)
    if not np.isfinite(per_position).all():  # decoding constraints put -inf among the emissions: finite ones
        per_position = _finite_sizes(em).max(1)
    steps = np.arange(em.shape[0], dtype=em.dtype)[:, None]  # float32, as in torch
    first, per_step = bounds
    return TIE * (first + np.cumsum(per_position, 0) + steps * per_step)


def _tolerances_torch(em: torch.Tensor, start: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
    """:func:`_tolerances_numpy` in torch."""
    finite = lambda a: torch.where(torch.isfinite(a), a.abs(), torch.zeros_like(a))  # noqa: E731
    steps = torch.arange(em.shape[1], device=em.device)
    return TIE * (1.0 + finite(start).max() + finite(em).amax(2).cumsum(1) + steps * finite(trans).max())


NO_LEGAL_PATH = ("no legal tag sequence for a sentence: its tag scores are not finite (a model whose weights "
                 "diverged?), or the decoding constraints leave it none (a bug of lexner's: please report it with "
                 "the text)")


def _search_torch(emissions: torch.Tensor, mask: torch.Tensor, start: torch.Tensor, trans: torch.Tensor,
                  end: torch.Tensor) -> list[list[int]]:
    """Viterbi over (B, T, K) emissions with (already constrained) start/transition/end scores, in torch."""
    batch, length, _ = emissions.shape
    lengths = mask.sum(1)  # shape: (B,)
    score = start + emissions[:, 0]  # shape: (B, K)
    history = []
    tolerance = _tolerances_torch(emissions, start, trans)  # shape: (B, T)
    for t in range(1, length):
        # shape: (B, K_prev, K_next)
        candidates = score.unsqueeze(2) + (trans + emissions[:, t].unsqueeze(1))  # the numpy search's order
        best = candidates.amax(dim=1)
        score = torch.where(mask[:, t : t + 1], best, score)
        # the lowest index within the tolerance of the best (uint8: argmax returns the first maximum)
        history.append((candidates >= (best - tolerance[:, t : t + 1]).unsqueeze(1)).to(torch.uint8).argmax(dim=1))
    final = score + end
    if not torch.isfinite(final.amax(dim=1)).all():
        raise ValueError(NO_LEGAL_PATH)
    last = tolerance.gather(1, (lengths - 1).unsqueeze(1))  # each sentence's own last position
    current = (final >= final.amax(dim=1, keepdim=True) - last).to(torch.uint8).argmax(dim=1)
    path = torch.zeros(batch, length, dtype=torch.long, device=emissions.device)
    for t in range(length - 1, 0, -1):
        active = lengths > t
        path[:, t] = current
        previous = history[t - 1].gather(1, current.unsqueeze(1)).squeeze(1)
        current = torch.where(active, previous, current)
    path[:, 0] = current
    return [row[:n].tolist() for row, n in zip(path.cpu(), lengths.cpu().tolist())]


def _search_numpy(em: np.ndarray, mask: np.ndarray, start: np.ndarray, trans: np.ndarray, end: np.ndarray,
                  bounds: tuple[float, float] | None = None) -> list[list[int]]:
    """:func:`_search_torch` in numpy (float32 arrays, ``mask`` bool): the same float32 sums in the same order,
    so the same paths.  The loop over positions only adds and takes maxima, in place, over views made in C, a
    block of positions at a time (the candidates of a whole batch made at once cost more to write and read back
    from memory than the sums themselves); which previous tag each choice came from (the lowest index within the
    tolerance) is found afterwards: for one sentence at all positions at once, then traced back in plain Python
    (per-call overhead is what costs most on short inputs); for a batch along each sentence's traced path only.
    ``bounds``: those of :func:`_bounds_numpy` (None: found here)."""
    batch, length, tags = em.shape
    if batch == 0:
        return []
    lengths = mask.sum(1)
    full = bool((lengths == length).all())  # no padding (e.g. one sentence)
    # (T, K, B): the sentences innermost, so that every operation below runs along rows of B values
    em = np.ascontiguousarray(em.transpose(1, 2, 0))
    tolerance = _tolerances_numpy(em, bounds or _bounds_numpy(start, trans))  # shape: (T, B)
    moves = trans[:, :, None]  # shape: (K_prev, K_next, 1)
    best = np.empty((length, tags, batch), dtype=em.dtype)  # best score of each tag at each position
    best[0] = start[:, None] + em[0]
    # Past a sentence's end the search runs on over its padding unmasked: those scores are never read (its
    # final scores are taken at its own last position, and its path is traced back from there).
    add, maximum = np.add, np.maximum.reduce
    block = max(1, BLOCK_VALUES // (tags * tags * batch))  # positions whose candidates stay in the cache
    for first in range(1, length, block):
        # shape: (positions, K_prev, K_next, B), the previous tag outermost, so that the maximum over it is
        # taken between whole contiguous (K_next, B) blocks; emission + transition here, the previous scores
        # added step by step (the torch search's order)
        candidates = em[first : first + block, None] + moves
        for step, previous, out in zip(candidates, best[first - 1 :, :, None], best[first : first + block]):
            add(step, previous, out=step)  # previous: (K_prev, 1, B)
            maximum(step, 0, out=out)  # step.max(0) without its Python wrapper
    rows = np.arange(batch)
    final = best[lengths - 1, :, rows] + end  # each sentence's scores at its own last position, shape (B, K)
    if not np.isfinite(final.max(1)).all():
        raise ValueError(NO_LEGAL_PATH)
    last = tolerance[lengths - 1, rows][:, None]  # shape (B, 1)
    current = (final >= final.max(1, keepdims=True) - last).argmax(1)
    # Which previous tag a tag came from: the lowest one whose candidate is within the tolerance of the best
    if batch == 1:  # for every tag at every position at once (small), then traced back in plain Python
        if not 1 < length <= block + 1:  # not all in one block (the last one's alone are left): all again
            candidates = (em[1:, None] + moves) + best[:-1, :, None]  # shape: (T - 1, K_prev, K, 1)
        candidates = candidates[..., 0]
        history = (candidates >= (best[1:, :, 0] - tolerance[1:])[:, None, :]).argmax(1)  # shape: (T - 1, K)
        tag, steps, n = int(current[0]), history.tolist(), int(lengths[0])
        path = [tag] * n
        for t in range(n - 1, 0, -1):
            tag = path[t - 1] = steps[t - 1][tag]
        return [path]
    path = np.zeros((batch, length), dtype=np.int64)
    for t in range(length - 1, 0, -1):  # for the traced tag of each sentence only
        path[:, t] = current
        chosen = (trans[:, current] + em[t, current, rows]) + best[t - 1]  # shape: (K_prev, B)
        previous = (chosen >= best[t, current, rows] - tolerance[t]).argmax(0)
        current = previous if full else np.where(lengths > t, previous, current)
    path[:, 0] = current
    return [row[:n].tolist() for row, n in zip(path, lengths.tolist())]
