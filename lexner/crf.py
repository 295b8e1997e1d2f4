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
        """Mean negative log-likelihood per sentence.  Every sentence must have ``mask[:, 0]`` true."""
        return -self(emissions.float(), tags, mask, reduction="mean")

    @torch.no_grad()
    def viterbi(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """Best legal tag sequence of each sentence (lists of lengths ``mask.sum(1)``).

        emissions: (B, T, K) scores; mask: (B, T) bool, left-aligned, ``mask[:, 0]`` all true.
        """
        emissions = emissions.float()
        neg = torch.tensor(float("-inf"), device=emissions.device)
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
