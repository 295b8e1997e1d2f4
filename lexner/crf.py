"""Linear-chain CRF: pytorch-crf's log-likelihood plus a vectorised Viterbi constrained to legal BIOES paths."""

from __future__ import annotations

from typing import Sequence

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

    def decode(self, emissions: torch.Tensor, mask: torch.Tensor | None = None) -> list[list[int]]:
        """The constrained :meth:`viterbi` (pytorch-crf's own ``decode`` would allow illegal tag sequences)."""
        if mask is None:
            mask = torch.ones(emissions.shape[:2], dtype=torch.bool, device=emissions.device)
        return self.viterbi(emissions, mask.bool())

    @torch.no_grad()
    def viterbi(self, emissions: torch.Tensor, mask: torch.Tensor,
                allowed: torch.Tensor | None = None) -> list[list[int]]:
        """Best legal tag sequence of each sentence (lists of lengths ``mask.sum(1)``).

        emissions: (B, T, K) scores; mask: (B, T) bool, left-aligned, ``mask[:, 0]`` all true; ``allowed``:
        (B, T, K) bool or None — at each position only the allowed tags may be chosen (a constraint on the
        search, not an edit of its result).  ``O`` must stay allowed everywhere, so a legal path always exists.
        """
        emissions = emissions.float()
        neg = torch.tensor(float("-inf"), device=emissions.device)
        if allowed is not None:
            emissions = torch.where(allowed, emissions, neg)
        start = torch.where(self.allowed_start, self.start_transitions, neg)  # shape: (K,)
        trans = torch.where(self.allowed_transitions, self.transitions, neg)  # shape: (K, K)
        end = torch.where(self.allowed_end, self.end_transitions, neg)  # shape: (K,)
        batch, length, _ = emissions.shape
        lengths = mask.sum(1)  # shape: (B,)
        score = start + emissions[:, 0]  # shape: (B, K)
        history = []
        for t in range(1, length):
            # shape: (B, K_prev, K_next)
            candidates = score.unsqueeze(2) + trans + emissions[:, t].unsqueeze(1)
            best, best_prev = candidates.max(dim=1)
            score = torch.where(mask[:, t : t + 1], best, score)
            history.append(best_prev)
        current = (score + end).argmax(dim=1)  # shape: (B,); the tag at each sentence's last position
        path = torch.zeros(batch, length, dtype=torch.long, device=emissions.device)
        for t in range(length - 1, 0, -1):
            active = lengths > t
            path[:, t] = current
            previous = history[t - 1].gather(1, current.unsqueeze(1)).squeeze(1)
            current = torch.where(active, previous, current)
        path[:, 0] = current
        return [row[:n].tolist() for row, n in zip(path.cpu(), lengths.cpu().tolist())]
