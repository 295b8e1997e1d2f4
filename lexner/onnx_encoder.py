"""ONNX Runtime for the BiLSTM encoders of single-sentence calls (``pip install "lexner[onnx]"``)::

    ner = lexner.load(onnx=True)        # or use_onnx(ner) on a loaded tagger

At batch size 1 ONNX Runtime's LSTM kernel runs the bundled model's BiLSTM about twice as fast as torch's,
which makes ``tag()`` on one sentence about 1.4 times as fast (``benchmarks/onnx_encoder.py``, outputs
identical on MSRA test).  Only a batch of one sentence (what ``tag()`` on a one-line text runs) goes through
ONNX Runtime: the exported graph runs each direction over the whole padded length, which is right only when
there is no padding, so batches of several sentences run in torch as before.  Outputs equal torch's up to
float rounding (~1e-6; the decoder's tie rule keeps such noise from changing a path).

Each BiLSTM (an ``nn.LSTM`` run through :func:`lexner.models.recurrent.run_bilstm`) is exported when this is
called, in memory (~0.2 s for the bundled model); nothing is written to the model directory, and training,
CUDA and saving are unaffected.  Only CPU inference uses the sessions.
"""

from __future__ import annotations

import io
import warnings

import torch
from torch import nn

SESSION = "onnx_session"  # the attribute of an nn.LSTM that holds its ONNX Runtime session


class _Encoder(nn.Module):
    def __init__(self, lstm: nn.LSTM):
        super().__init__()
        self.lstm = lstm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(x)[0]


def use_onnx(tagger: nn.Module, threads: int = 1) -> int:
    """Run each bidirectional ``nn.LSTM`` of ``tagger`` through ONNX Runtime (``threads`` intra-op threads)
    for single sentences on the CPU; returns how many were exported.  A tagger without one is refused."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise ImportError('ONNX Runtime is an optional extra: pip install "lexner[onnx]"') from err
    lstms = [m for m in tagger.modules() if isinstance(m, nn.LSTM) and m.bidirectional and m.batch_first]
    if not lstms:
        raise ValueError(f"{getattr(tagger, 'name', type(tagger).__name__)} has no BiLSTM encoder to run in "
                         "ONNX Runtime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    for lstm in lstms:
        buffer = io.BytesIO()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter warns about batch-first LSTMs and dynamic axes
            torch.onnx.export(_Encoder(lstm).cpu().eval(), (torch.zeros(1, 2, lstm.input_size),), buffer,
                              input_names=["x"], output_names=["h"],
                              dynamic_axes={"x": {0: "batch", 1: "length"}, "h": {0: "batch", 1: "length"}},
                              dynamo=False)
        setattr(lstm, SESSION, ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"]))
    return len(lstms)


def single_sentence(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor | None:
    """The BiLSTM's output for ``x`` of shape (1, T, input) from its ONNX Runtime session, or None where
    torch must run it (no session, not one unpadded sentence, training, not on the CPU, gradients wanted)."""
    session = getattr(lstm, SESSION, None)
    if (session is None or x.shape[0] != 1 or lstm.training or x.device.type != "cpu" or torch.is_grad_enabled()
            or int(lengths[0]) != x.shape[1]):
        return None
    return torch.from_numpy(session.run(None, {"x": x.detach().float().numpy()})[0])
