"""Running a bidirectional LSTM over a right-padded batch, and reversing sentences within their lengths."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..onnx_encoder import bfloat16_bilstm


def check_even_hidden(hidden: int, bidirectional: bool = True) -> None:
    """A model config's ``hidden`` (both directions together): at least one unit per direction, split evenly."""
    directions = 2 if bidirectional else 1
    if hidden < directions or hidden % directions:
        raise ValueError(f"hidden must be {'an even number ≥ 2' if bidirectional else '≥ 1'} (both directions "
                         f"together), got {hidden}")


def reverse_within_length(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each row's first ``lengths[b]`` positions along dim 1, leaving the padding in place."""
    length = x.shape[1]
    steps = torch.arange(length, device=x.device).unsqueeze(0)  # shape: (1, T)
    index = torch.where(steps < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - steps, steps)  # shape: (B, T)
    return x.gather(1, index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x))


def run_bilstm(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``lstm`` (batch-first, bidirectional) over the padded batch ``x`` of shape (B, T, input), each row up to
    its length; the outputs at padding positions are zeros.  Shape: (B, T, output).

    On CUDA (and under CPU autocast) the batch is packed (cuDNN runs both directions in one call).  On the CPU, torch's LSTM over a
    packed batch projects the input one time step at a time, while over a plain tensor it projects all steps
    in one matrix product; so there each direction runs unpacked on its own: the forward direction over ``x``
    (padding comes after every real position, so it cannot reach them), the backward one over each sentence
    reversed within its length, its output reversed back.  Outside training, a batch without padding (one
    sentence per ``tag()`` call) runs both directions in one call of ``lstm`` (~1.1x faster ``tag()``); training
    steps keep one path for every batch.  Same equations, same weights, outputs equal to the
    packed run's up to float rounding (tested); benchmarks/README.md gives the training speed-up.  CPU inference
    runs a bfloat16 copy instead where ``lexner.load(runtime="torch-bf16")`` attached one
    (:mod:`lexner.onnx_encoder`).
    """
    fast = bfloat16_bilstm(lstm, x, lengths)  # a bfloat16 copy, if attached (CPU inference)
    if fast is not None:
        return fast
    if x.device.type != "cpu" or not lstm.bidirectional or lstm.dropout or torch.is_autocast_enabled("cpu"):
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        h, _ = lstm(packed)
        return pad_packed_sequence(h, batch_first=True, total_length=x.shape[1])[0]
    if not lstm.training and bool((lengths == x.shape[1]).all()):  # no padding, e.g. one sentence: one call
        return lstm(x)[0]
    mask = (torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None].to(x.device)).unsqueeze(-1)
    zeros = x.new_zeros(1, x.shape[0], lstm.hidden_size)
    layer_input = x
    for layer in range(lstm.num_layers):
        outputs = []
        for suffix, reverse in (("", False), ("_reverse", True)):
            params = [getattr(lstm, f"{name}_l{layer}{suffix}") for name in ("weight_ih", "weight_hh")]
            if lstm.bias:
                params += [getattr(lstm, f"{name}_l{layer}{suffix}") for name in ("bias_ih", "bias_hh")]
            source = reverse_within_length(layer_input, lengths) if reverse else layer_input
            h = torch.lstm(source, (zeros, zeros), params, lstm.bias, 1, 0.0, lstm.training, False, True)[0]
            outputs.append(reverse_within_length(h, lengths) if reverse else h)
        layer_input = torch.cat(outputs, dim=-1) * mask
    return layer_input
