"""Whether tensors are still as they were: the one rule by which copies made from a model's weights (ONNX
Runtime sessions, bfloat16 LSTMs, the CPU search's constrained scores) notice that the weights changed.

A snapshot holds the tensors themselves (not their addresses, which a replacement could reuse) and their version
counters, which in-place changes move.  A fused optimiser step (``torch.optim.Adam(fused=True)``) does not move
them, so the holders of such copies also drop them whenever their module is put in training mode.
"""

from __future__ import annotations

import torch

Snapshot = tuple[tuple[torch.Tensor, int], ...]


def snapshot(tensors: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> Snapshot:
    return tuple((tensor, tensor._version) for tensor in tensors)


def unchanged(taken: Snapshot, tensors: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> bool:
    """Whether ``tensors`` are the very tensors of ``taken``, in order, none changed in place since."""
    return len(taken) == len(tensors) and all(
        tensor is then and tensor._version == version for tensor, (then, version) in zip(tensors, taken))
