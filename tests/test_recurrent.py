import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from lexner.models.recurrent import reverse_within_length, run_bilstm


def packed_reference(lstm, x, lengths):
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    return pad_packed_sequence(lstm(packed)[0], batch_first=True, total_length=x.shape[1])[0]


@settings(max_examples=25, deadline=None)
@given(lengths=st.lists(st.integers(1, 9), min_size=1, max_size=5), layers=st.integers(1, 2),
       bias=st.booleans(), seed=st.integers(0, 10_000))
def test_cpu_bilstm_equals_the_packed_run_with_gradients(lengths, layers, bias, seed):
    """The unpacked per-direction CPU path computes what the packed LSTM computes: outputs (zeros at padding)
    and the gradients of inputs and weights agree within float rounding."""
    torch.manual_seed(seed)
    lstm = torch.nn.LSTM(5, 3, num_layers=layers, bias=bias, batch_first=True, bidirectional=True)
    lengths_t = torch.tensor(lengths)
    x = torch.randn(len(lengths), max(lengths), 5)
    weights = torch.randn(len(lengths), max(lengths), 6)  # a random linear function of the outputs
    results = []
    for run in (run_bilstm, lambda m, v, n: packed_reference(m, v, n)):
        lstm.zero_grad()
        xi = x.clone().requires_grad_(True)
        out = run(lstm, xi, lengths_t)
        (out * weights).sum().backward()
        results.append((out.detach(), xi.grad, [p.grad.clone() for p in lstm.parameters()]))
    (out, gx, gw), (ref, rgx, rgw) = results
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    assert out[torch.arange(x.shape[1])[None, :] >= lengths_t[:, None]].abs().sum() == 0
    mask = (torch.arange(x.shape[1])[None, :] < lengths_t[:, None]).unsqueeze(-1)
    torch.testing.assert_close(gx * mask, rgx * mask, rtol=1e-5, atol=1e-6)
    for a, b in zip(gw, rgw):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_reverse_within_length_keeps_padding_in_place():
    x = torch.tensor([[0, 1, 2, 3], [4, 5, 0, 0]])
    assert reverse_within_length(x, torch.tensor([4, 2])).tolist() == [[3, 2, 1, 0], [5, 4, 0, 0]]


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_an_lstm_with_inner_dropout_keeps_the_packed_path(dropout):
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(4, 3, num_layers=2, dropout=dropout, batch_first=True, bidirectional=True).eval()
    x, lengths = torch.randn(2, 5, 4), torch.tensor([5, 3])
    torch.testing.assert_close(run_bilstm(lstm, x, lengths), packed_reference(lstm, x, lengths), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("layers", [1, 2])
def test_an_unpadded_batch_outside_training_runs_in_one_call_with_the_same_outputs(layers, monkeypatch):
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(5, 3, num_layers=layers, batch_first=True, bidirectional=True).eval()
    x, lengths = torch.randn(2, 7, 5), torch.tensor([7, 7])
    with torch.no_grad():
        expected = packed_reference(lstm, x, lengths)
        monkeypatch.setattr("lexner.models.recurrent.reverse_within_length", lambda *a: pytest.fail("reversed"))
        torch.testing.assert_close(run_bilstm(lstm, x, lengths), expected, rtol=1e-5, atol=1e-6)
