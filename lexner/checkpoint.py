"""Training checkpoints without pickle: tensors in safetensors, everything else in JSON."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from .fileio import DataFormatError, atomic_directory, read_json, utf8_name, write_bytes, write_json

STATE_FILE = "trainer_state.json"
TENSORS_FILE = "trainer_state.safetensors"


def _flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor in a nested dict/list by ``{"__tensor__": key}`` and collect it in ``tensors``."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().contiguous().cpu()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {"__dict__": [[k, _flatten(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    return obj


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict) and "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if isinstance(obj, dict) and "__dict__" in obj:
        return {k: _unflatten(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def save_checkpoint(directory: str | os.PathLike, state: dict[str, Any]) -> None:
    """Atomically write ``state`` (nested dicts/lists of tensors, numbers, strings) to ``directory``."""
    tensors: dict[str, torch.Tensor] = {}
    structure = _flatten(state, "s", tensors)
    with atomic_directory(directory) as tmp:
        write_bytes(Path(tmp) / TENSORS_FILE, save(tensors))
        write_json(Path(tmp) / STATE_FILE, structure)


def load_checkpoint(directory: str | os.PathLike) -> dict[str, Any]:
    """The state :func:`save_checkpoint` wrote into ``directory``; a damaged one (cut short, edited) is a
    ``DataFormatError`` naming the file (whether it holds the keys its writer wrote is the reader's to check).

    The tensors are copies: those safetensors loads keep its file memory-mapped while they live (an optimizer
    takes its state as it is), and Windows renames no folder holding a mapped file, so the next checkpoint after
    a resume could not set this one aside."""
    directory = Path(directory)
    try:
        with utf8_name(directory / TENSORS_FILE) as name:
            tensors = {key: tensor.clone() for key, tensor in load_file(name).items()}
    except SafetensorError as err:
        raise DataFormatError(directory / TENSORS_FILE, None, f"cannot be read ({err}): the checkpoint is "
                                                              "damaged") from None
    structure = read_json(directory / STATE_FILE)
    try:
        state = _unflatten(structure, tensors)
    except (KeyError, TypeError, ValueError, RecursionError) as err:  # a tensor it names is not there, a value of
        # another kind, nesting too deep to rebuild
        raise DataFormatError(directory / STATE_FILE, None, f"does not match {TENSORS_FILE} ({type(err).__name__}: "
                              f"{err}): the checkpoint is damaged or edited") from None
    if not isinstance(state, dict):
        raise DataFormatError(directory / STATE_FILE, None, "not a checkpoint's state: damaged or edited")
    return state


def rng_state() -> dict[str, Any]:
    """Every random generator training draws from: Python's, numpy's, torch's CPU one and, when CUDA is in use,
    each GPU's — so that ``--resume`` continues exactly as an uninterrupted run would."""
    version, internal, gauss = random.getstate()
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(internal), gauss], "torch": torch.get_rng_state(),
             "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(cached)]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    if "numpy" in state:  # checkpoints written before numpy's state was saved lack it
        kind, keys, position, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
