"""Faster CPU runtimes for the BiLSTM encoders of inference: ONNX Runtime (``pip install "lexner[onnx]"``)
and torch in bfloat16::

    ner = lexner.load(onnx=True)               # ONNX Runtime, float32: the same outputs as torch
    ner = lexner.load(onnx="int8")             # int8 LSTM weights: faster, outputs close
    ner = lexner.load(runtime="torch-bf16")    # torch with a bfloat16 copy of the LSTM: outputs close

Each BiLSTM (an ``nn.LSTM`` run through :func:`lexner.models.recurrent.run_bilstm`) becomes one ONNX graph,
built from its weights when this is called (a few milliseconds; nothing is written to the model directory):
per layer one ONNX ``LSTM`` node over both directions, given each sentence's length (``sequence_lens``), so a
padded batch is right for every sentence — the backward direction starts at each sentence's own last character
and padding positions come out as zeros, as in torch.  Every CPU inference batch, one sentence or many, then
runs in ONNX Runtime; training, gradients, CUDA and saving are unaffected.  float32 outputs equal torch's up to
float rounding (~1e-6; the decoder's tie rule keeps such noise from changing a path).

``onnx="int8"`` quantizes the graph's LSTM weights to int8 (ONNX Runtime's dynamic quantization,
``DynamicQuantizeLSTM``, activations quantized per call).  Outputs are then close to, not equal to, float32's,
and since the activations' scale is taken per call, a sentence's result can depend on the other sentences of
its batch; ``benchmarks/onnx_encoder.py`` measures speed and F1 of the runtimes side by side.

``runtime="torch-bf16"`` runs a bfloat16 copy of each LSTM in torch (inputs rounded to bfloat16, outputs back
in float32; the rest of the model stays float32): no extra dependency and outputs close to float32's
(``tests/test_runtime_bf16.py`` bounds the difference).  A sentence's hidden states can differ by rounding between a batch and a
call of its own (the kernels block differently), rarely enough to change an entity.  It pays on CPUs with
native bfloat16 arithmetic (AVX512-BF16, AMX); elsewhere torch emulates it and it may be slower than float32.

Sessions (and bfloat16 copies) are kept beside the modules (a tagger still pickles and copies, without them)
with a fingerprint of the weights they were built from: once the weights change (training goes on), torch runs
the LSTM again.  ONNX Runtime uses as many threads as torch did when the sessions were built.  A model directory
can carry the choice (``lexner export --runtime onnx-int8`` writes ``"runtime": "onnx-int8"`` into its
config.json); :func:`lexner.load` then applies it unless told otherwise.
"""

from __future__ import annotations

import copy
import importlib
import logging
import tempfile
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

# each nn.LSTM's ONNX Runtime session and the fingerprint of the weights it was built from; kept beside the
# module, not in it, so that a tagger still pickles and copies (without its sessions)
_SESSIONS: "weakref.WeakKeyDictionary[nn.LSTM, tuple[Any, tuple]]" = weakref.WeakKeyDictionary()
# the runtimes of lexner.load(runtime=...), lexner tag --runtime and config.json's "runtime"; None: as saved
RUNTIMES = ("torch", "torch-bf16", "onnx", "onnx-int8")
ONNX_PRECISIONS = {"onnx": "float32", "onnx-int8": "int8"}  # ONNX runtimes -> use_onnx's precision
PRECISIONS = tuple(ONNX_PRECISIONS.values())

log = logging.getLogger(__name__)


def bilstms(tagger: nn.Module) -> list[nn.LSTM]:
    """The batch-first bidirectional ``nn.LSTM`` encoders of ``tagger`` (what the runtimes here can run)."""
    return [m for m in tagger.modules() if isinstance(m, nn.LSTM) and m.bidirectional and m.batch_first]


def runtime_of(runtime: str | None, onnx: bool | str | None, saved: object, where: object) -> str:
    """The runtime (one of :data:`RUNTIMES`) ``lexner.load(runtime=..., onnx=...)`` applies: ``runtime`` if
    given; else ``onnx`` (True or "float32": onnx, "int8": onnx-int8, False: torch); else the model directory's
    config.json ``"runtime"`` (``saved``, checked here; absent: torch)."""
    if saved is not None and saved not in RUNTIMES:
        from .fileio import ModelFormatError

        raise ModelFormatError(f"{where}: 'runtime' must be one of {', '.join(map(repr, RUNTIMES))}, got {saved!r}")
    if runtime is not None:
        if onnx is not None:
            raise ValueError("give runtime= or onnx=, not both")
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)} or None; got {runtime!r}")
        return runtime
    if onnx is None:
        return saved or "torch"
    if onnx is True or onnx is False:
        return "onnx" if onnx else "torch"
    if onnx not in PRECISIONS:
        raise ValueError(f"onnx must be True, False, None or one of {', '.join(PRECISIONS)}; got {onnx!r}")
    return next(name for name, precision in ONNX_PRECISIONS.items() if precision == onnx)


def use_runtime(tagger: nn.Module, runtime: str) -> None:
    """Run the BiLSTMs of ``tagger`` in CPU inference as ``runtime`` says (torch: as they are) and record it in
    ``tagger.runtime``.  A tagger without a BiLSTM is refused (``ValueError``) for any other runtime; ONNX
    Runtime not installed raises ``ImportError``."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}; got {runtime!r}")
    if runtime == "torch-bf16":
        lstms = _bilstms_of(tagger, "run in bfloat16")
        for lstm in lstms:
            attach(lstm, Bfloat16Session(lstm))
    elif runtime != "torch":
        use_onnx(tagger, precision=ONNX_PRECISIONS[runtime])
    tagger.runtime = runtime


def _bilstms_of(tagger: nn.Module, what: str) -> list[nn.LSTM]:
    """The BiLSTMs of ``tagger``; ``ValueError`` if it has none (``what``: what would have been done)."""
    lstms = bilstms(tagger)
    if not lstms:
        raise ValueError(f"{getattr(tagger, 'name', type(tagger).__name__)} has no BiLSTM encoder to {what}")
    return lstms


class Bfloat16Session:
    """A bfloat16 copy of an ``nn.LSTM`` run by torch, with an ONNX Runtime session's ``run`` signature (float32
    ``x`` and int32 ``lengths`` in, float32 ``h`` out), so that it attaches and goes stale the same way."""

    def __init__(self, lstm: nn.LSTM):
        self.lstm = copy.deepcopy(lstm).to(torch.bfloat16).eval()  # a copy: no session of its own

    def run(self, _outputs: Any, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        from .models.recurrent import run_bilstm

        x = torch.from_numpy(feed["x"]).to(torch.bfloat16)
        with torch.inference_mode():
            h = run_bilstm(self.lstm, x, torch.from_numpy(feed["lengths"]).long())
        return [h.float().numpy()]


class _DropPreprocessingHint(logging.Filter):
    """ONNX Runtime's quantizer advises shape inference through the root logger; the LSTM graph needs none."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Please consider to run pre-processing")


def _int8(graph: bytes) -> bytes:
    """``graph`` with its LSTM weights quantized to int8 (ONNX Runtime's dynamic quantization)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    hint = _DropPreprocessingHint()
    root = logging.getLogger()
    root.addFilter(hint)
    try:
        with tempfile.TemporaryDirectory(prefix="lexner-onnx-") as tmp:
            source, target = Path(tmp, "float32.onnx"), Path(tmp, "int8.onnx")
            source.write_bytes(graph)
            quantize_dynamic(source, target, weight_type=QuantType.QInt8)
            return target.read_bytes()
    finally:
        root.removeFilter(hint)


def _graph(lstm: nn.LSTM) -> bytes:
    """``lstm`` (batch-first, bidirectional, any number of layers) as an ONNX graph: inputs ``x`` (B, T, input)
    float32 and ``lengths`` (B,) int32, output ``h`` (B, T, 2 × hidden), zeros past each length."""
    from onnx import TensorProto, checker, helper, numpy_helper

    hidden = lstm.hidden_size
    onnx_order = [0, 3, 1, 2]  # torch stacks the gates i, f, g, o; ONNX wants i, o, f, g ("iofc")

    def gates(name: str) -> torch.Tensor:
        weight = getattr(lstm, name).detach().cpu().float()
        return weight.reshape(4, hidden, -1)[onnx_order].reshape(weight.shape)

    nodes = [helper.make_node("Transpose", ["x"], ["x_time_first"], perm=[1, 0, 2])]
    weights = [numpy_helper.from_array(np.array([0, 0, 2 * hidden], dtype=np.int64),
                                       "both_directions")]
    previous = "x_time_first"
    for layer in range(lstm.num_layers):
        per_direction = {"W": [], "R": [], "B": []}
        for suffix in ("", "_reverse"):
            per_direction["W"].append(gates(f"weight_ih_l{layer}{suffix}"))
            per_direction["R"].append(gates(f"weight_hh_l{layer}{suffix}"))
            per_direction["B"].append(torch.cat([gates(f"bias_ih_l{layer}{suffix}"),
                                                 gates(f"bias_hh_l{layer}{suffix}")]).flatten()
                                      if lstm.bias else torch.zeros(8 * hidden))
        for key, tensors in per_direction.items():
            weights.append(numpy_helper.from_array(torch.stack(tensors).numpy(), f"{key}{layer}"))
        nodes += [helper.make_node("LSTM", [previous, f"W{layer}", f"R{layer}", f"B{layer}", "lengths"], [f"y{layer}"],
                                   hidden_size=hidden, direction="bidirectional"),
                  # (T, 2, B, hidden) -> (T, B, 2, hidden) -> (T, B, 2 × hidden): forward, then backward
                  helper.make_node("Transpose", [f"y{layer}"], [f"y{layer}_by_sentence"], perm=[0, 2, 1, 3]),
                  helper.make_node("Reshape", [f"y{layer}_by_sentence", "both_directions"], [f"h{layer}"])]
        previous = f"h{layer}"
    nodes.append(helper.make_node("Transpose", [previous], ["h"], perm=[1, 0, 2]))
    graph = helper.make_graph(
        nodes, "bilstm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "length", lstm.input_size]),
         helper.make_tensor_value_info("lengths", TensorProto.INT32, ["batch"])],
        [helper.make_tensor_value_info("h", TensorProto.FLOAT, ["batch", "length", 2 * hidden])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    checker.check_model(model)
    return model.SerializeToString()


def _fingerprint(lstm: nn.LSTM) -> tuple:
    """Changes whenever a weight of ``lstm`` is changed in place (an optimiser step) or replaced."""
    return tuple((p.data_ptr(), p._version) for p in lstm._flat_weights)  # its parameters, cheaply


def session_of(lstm: nn.LSTM) -> Any | None:
    """The session (ONNX Runtime, or a :class:`Bfloat16Session`) attached to ``lstm``, or None (none attached,
    or its weights changed since: then torch runs it, and the stale session is dropped)."""
    attached = _SESSIONS.get(lstm)
    if attached is None:
        return None
    session, fingerprint = attached
    if fingerprint != _fingerprint(lstm):
        log.info("an LSTM's weights changed after its session (%s) was built: torch runs it from now on",
                 type(session).__name__)
        del _SESSIONS[lstm]
        return None
    return session


def attach(lstm: nn.LSTM, session: Any | None) -> None:
    """Attach ``session`` to ``lstm`` for its current weights (None: detach)."""
    if session is None:
        _SESSIONS.pop(lstm, None)
    else:
        _SESSIONS[lstm] = (session, _fingerprint(lstm))


def use_onnx(tagger: nn.Module, threads: int | None = None, precision: str = "float32") -> int:
    """Run each bidirectional ``nn.LSTM`` of ``tagger`` through ONNX Runtime (``threads`` intra-op threads;
    None: torch's thread count) in CPU inference, in float32 or with int8 weights (``precision``); returns how
    many there are.  A tagger without one is refused.  If the weights change afterwards (training), torch runs
    them again."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    try:
        importlib.import_module("onnx")  # builds the graphs
        import onnxruntime as ort
    except ImportError as err:
        raise ImportError('ONNX Runtime is an optional extra: pip install "lexner[onnx]"') from err
    lstms = _bilstms_of(tagger, "run in ONNX Runtime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads() if threads is None else threads
    options.inter_op_num_threads = 1
    for lstm in lstms:
        graph = _graph(lstm) if precision == "float32" else _int8(_graph(lstm))
        attach(lstm, ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"]))
    return len(lstms)


def onnx_bilstm(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor | None:
    """The BiLSTM's output for the padded batch ``x`` of shape (B, T, input) from its attached session, or
    None where torch must run it (no session or a stale one, training, not on the CPU, gradients wanted, an
    empty batch)."""
    if lstm.training or x.device.type != "cpu" or torch.is_grad_enabled() or x.numel() == 0:
        return None
    session = session_of(lstm)
    if session is None:
        return None
    feed = {"x": x.detach().float().numpy(), "lengths": lengths.to(torch.int32).numpy()}
    return torch.from_numpy(session.run(None, feed)[0])
