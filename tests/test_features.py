"""Featurisation helpers (lexner.features)."""

import torch
from hypothesis import given, settings, strategies as st

from lexner.features import _pad


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(st.lists(st.lists(st.integers(0, 10**6), max_size=6), min_size=1, max_size=5), st.integers(0, 3))
def test_pad_right_pads_each_row_with_zeros(rows, extra):
    width = max(map(len, rows)) + extra
    padded = _pad(rows, width)
    assert padded.dtype == torch.long
    assert padded.tolist() == [row + [0] * (width - len(row)) for row in rows]
