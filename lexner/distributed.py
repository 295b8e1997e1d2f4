"""Data-parallel training through PyTorch's own engine: ``torchrun`` + DistributedDataParallel.

``torchrun --nproc_per_node N -m lexner train ...`` starts N processes with ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK`` set; :func:`setup` joins them into one process group (NCCL on CUDA, gloo on CPU), and the
trainer then wraps the tagger in ``DistributedDataParallel``.  Without those variables everything here is a
no-op and training is the usual single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def world() -> World:
    """This process's place, from the variables ``torchrun`` sets (a single process without them)."""
    return World(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                 int(os.environ.get("LOCAL_RANK", 0)))


def setup(device: str) -> tuple[World, str, bool]:
    """Join the process group when launched by ``torchrun``; returns the world, this process's device
    (``cuda`` becomes ``cuda:LOCAL_RANK``) and whether this call joined the group (its caller then owns it and
    leaves it with :func:`shutdown`)."""
    w = world()
    if not w.distributed:
        return w, device, False
    if device.startswith("cuda"):
        device = f"cuda:{w.local_rank}"
        torch.cuda.set_device(device)
    if dist.is_initialized():
        return w, device, False
    dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return w, device, True


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def shutdown() -> None:
    if _active():
        dist.destroy_process_group()


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (identity in a single process)."""
    if not _active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank (``[obj]`` in a single process)."""
    if not _active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_sum(values: Sequence[float], device: str | torch.device = "cpu") -> list[float]:
    """Element-wise sum over ranks (identity in a single process)."""
    if not _active():
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def barrier() -> None:
    if _active():
        dist.barrier()
