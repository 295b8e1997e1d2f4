"""Whether tensors are still as they were: the one rule by which copies made from a model's weights (ONNX
Runtime sessions, bfloat16 LSTMs, the CPU search's constrained scores) notice that the weights changed.

A snapshot holds the tensors themselves (not their addresses, which a replacement could reuse), their version
counters, which in-place changes move, and where their data lies, which ``tensor.data = other`` changes (how
the trainer swaps in averaged weights, ``lexner.train.WeightAverage``) without moving the counter.  A fused
optimiser step (``torch.optim.Adam(fused=True)``) does not move them, so the holders of such copies also drop
them whenever their module is put in training mode.
"""

from __future__ import annotations

import torch

Snapshot = tuple[tuple[torch.Tensor, int, int], ...]


def snapshot(tensors: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> Snapshot:
    return tuple((tensor, tensor._version, tensor.data_ptr()) for tensor in tensors)


def unchanged(taken: Snapshot, tensors: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> bool:
    """Whether ``tensors`` are the very tensors of ``taken``, in order, none changed in place or given other data
    since."""
    return len(taken) == len(tensors) and all(
        tensor is then and tensor._version == version and tensor.data_ptr() == address
        for tensor, (then, version, address) in zip(tensors, taken))
