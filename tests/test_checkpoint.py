"""Training checkpoints: JSON + safetensors round trip, and every random generator restored."""

import os
import random

import numpy as np
import pytest
import torch

from lexner.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state


def test_rng_state_round_trips_python_numpy_and_torch_through_a_checkpoint(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.normal()  # a cached Gaussian is part of numpy's state too
    save_checkpoint(tmp_path / "c", {"rng": rng_state(), "step": 7})
    expected = (random.random(), np.random.normal(), np.random.rand(3).tolist(), torch.rand(3).tolist())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    state = load_checkpoint(tmp_path / "c")
    assert state["step"] == 7
    set_rng_state(state["rng"])
    assert (random.random(), np.random.normal(), np.random.rand(3).tolist(), torch.rand(3).tolist()) == expected


def test_a_checkpoint_without_numpy_state_still_restores_the_rest(tmp_path):
    torch.manual_seed(3)
    old = {k: v for k, v in rng_state().items() if k in ("python", "torch")}  # as written before numpy was saved
    expected = torch.rand(2).tolist()
    set_rng_state(old)
    assert torch.rand(2).tolist() == expected


def test_a_state_nested_too_deep_to_rebuild_is_a_damaged_checkpoint(tmp_path):
    """Nesting that read_json still reads (900 levels) overflowed the rebuilding: a RecursionError traceback."""
    import pytest

    from lexner.checkpoint import STATE_FILE
    from lexner.fileio import DataFormatError

    save_checkpoint(tmp_path / "ck", {"a": torch.zeros(2)})
    (tmp_path / "ck" / STATE_FILE).write_text("[" * 900 + "]" * 900, encoding="utf-8")
    with pytest.raises(DataFormatError, match="damaged or edited"):
        load_checkpoint(tmp_path / "ck")


def test_a_checkpoint_in_a_folder_whose_name_is_not_utf8_loads(tmp_path):
    """``--resume`` of a run whose folder name is a legacy GBK one (lone surrogates, refused by safetensors)."""
    folder = tmp_path / os.fsdecode(b"\xc4\xa3\xd0\xcd")
    try:
        folder.mkdir()
    except (OSError, UnicodeError):
        pytest.skip("this file system takes only UTF-8 names")
    save_checkpoint(folder / "c", {"weights": torch.arange(3.0), "step": 2})
    state = load_checkpoint(folder / "c")
    assert state["step"] == 2 and state["weights"].tolist() == [0.0, 1.0, 2.0]
