"""Faster CPU runtimes for inference of the taggers with a BiLSTM encoder (bilstm_crf, softlexicon): ONNX
Runtime (``pip install "lexner[onnx]"``) and torch in bfloat16::

    ner = lexner.load(onnx=True)               # ONNX Runtime, float32: the same outputs as torch
    ner = lexner.load(onnx="int8")             # int8 LSTM weights: faster, outputs close
    ner = lexner.load(runtime="torch-bf16")    # torch with a bfloat16 copy of the LSTM: outputs close

**ONNX Runtime** runs a tagger's whole encoder, from a batch's ids to the default head's tag scores, as one ONNX
graph built from its weights when this is called (nothing is written to the model directory): embedding lookups,
the model's own input features (softlexicon's pooled word sets), the BiLSTM and the head's linear layer. Another
head of a multi-task model gets a graph of its own the first time it is asked for (ONNX Runtime would compute
every head of one graph on every call). Each model writes its part as
:meth:`~lexner.models.base.Tagger.onnx_features`, next to its torch ``features`` and with the same operations
(tests check that they agree); the :class:`Graph` here supplies the BiLSTM — per layer one ONNX ``LSTM`` node over
both directions, given each sentence's length (``sequence_lens``), so a padded batch is right for every sentence
(padding positions come out as zeros, as in torch) — and the head. One ONNX Runtime call per batch replaces some
thirty small torch operations, which cost more than the arithmetic when ``tag()`` is called one sentence at a
time. Every CPU inference batch, one sentence or many, then runs in ONNX Runtime; training, gradients, CUDA and
saving are unaffected (torch runs them). float32 outputs equal torch's up to float rounding
(``tests/test_onnx_encoder.py`` bounds the tag scores' difference; the decoder's tie rule keeps such noise from
changing a path).

``onnx="int8"`` quantizes the graph's LSTM weights to int8 (ONNX Runtime's dynamic quantization,
``DynamicQuantizeLSTM``, activations quantized per call; everything else stays float32).  Outputs are then close
to, not equal to, float32's, and since the activations' scale is taken per call, a sentence's result can depend
on the other sentences of its batch; ``benchmarks/onnx_encoder.py`` measures speed and F1 of the runtimes side
by side.

``runtime="torch-bf16"`` runs a bfloat16 copy of each LSTM in torch (inputs rounded to bfloat16, outputs back
in float32; the rest of the model stays float32): no extra dependency and outputs close to float32's
(``tests/test_runtime_bf16.py`` bounds the difference).  A sentence's hidden states can differ by rounding between a batch and a
call of its own (the kernels block differently), rarely enough to change an entity.  It pays on CPUs with
native bfloat16 arithmetic (AVX512-BF16, AMX); elsewhere torch emulates it and it may be slower than float32.

Sessions (ONNX Runtime's, beside the tagger; bfloat16 copies, beside each LSTM) are kept beside the modules, not
in them (a tagger still pickles and copies, without them), and only while the weights they were built from stay
as they were: putting the tagger in training mode (``tagger.train()``, as every training loop does) drops them,
and so does a weight replaced (``add_words`` grows the word table), given other data (``p.data = ...``) or
changed in place outside training (its version counter moves; a fused optimiser step does not move it, hence the
first rule) — torch runs the model from then on.  ONNX Runtime uses as many threads as torch did when the
session was built.  A model directory can carry the choice (``lexner export --runtime onnx-int8`` writes
``"runtime": "onnx-int8"`` into its config.json); :func:`lexner.load` then applies it unless told otherwise.
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

# each module's session (a tagger's ONNX Runtime session, an nn.LSTM's Bfloat16Session), where its weights are
# kept and a snapshot of them when it was built; beside the module, not in it, so that a tagger still pickles and
# copies (without its sessions).  The entry holds tensors and dictionaries, never a module: it keeps none alive.
_SESSIONS: "weakref.WeakKeyDictionary[nn.Module, tuple[Any, tuple, Snapshot]]" = weakref.WeakKeyDictionary()
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
    """Run ``tagger`` in CPU inference as ``runtime`` says (torch: as it is) and record it in ``tagger.runtime``.
    A tagger without a BiLSTM is refused (``ValueError``) for any other runtime; ONNX Runtime not installed
    raises ``ImportError``."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}; got {runtime!r}")
    if runtime == "torch":
        drop_sessions(tagger)  # whatever ran it before
    elif runtime == "torch-bf16":
        lstms = _bilstms_of(tagger, "run in bfloat16")
        drop_sessions(tagger)
        for lstm in lstms:
            attach(lstm, Bfloat16Session(lstm))
    else:
        use_onnx(tagger, precision=ONNX_PRECISIONS[runtime])
    tagger.runtime = runtime


def _bilstms_of(tagger: nn.Module, what: str) -> list[nn.LSTM]:
    """The BiLSTMs of ``tagger``; ``ValueError`` if it has none (``what``: what would have been done)."""
    lstms = bilstms(tagger)
    if not lstms:
        raise ValueError(f"{getattr(tagger, 'name', type(tagger).__name__)} has no BiLSTM encoder to {what}")
    return lstms


class Bfloat16Session:
    """A bfloat16 copy of an ``nn.LSTM`` run by torch: float32 ``x`` (B, T, input) and ``lengths`` in, float32
    outputs (B, T, 2 × hidden) out, as :func:`lexner.models.recurrent.run_bilstm` gives them."""

    def __init__(self, lstm: nn.LSTM):
        self.lstm = copy.deepcopy(lstm).to(torch.bfloat16).eval()  # a copy: no session of its own

    def run(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        from .models.recurrent import run_bilstm

        return run_bilstm(self.lstm, x.to(torch.bfloat16), lengths).float()


class _DropPreprocessingHint(logging.Filter):
    """ONNX Runtime's quantizer advises shape inference through the root logger; lexner's graphs need none."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Please consider to run pre-processing")


def _int8(graph: bytes) -> bytes:
    """``graph`` with its LSTM weights quantized to int8 (ONNX Runtime's dynamic quantization; other nodes stay
    float32)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    hint = _DropPreprocessingHint()
    root = logging.getLogger()
    root.addFilter(hint)
    try:
        with tempfile.TemporaryDirectory(prefix="lexner-onnx-") as tmp:
            source, target = Path(tmp, "float32.onnx"), Path(tmp, "int8.onnx")
            source.write_bytes(graph)
            quantize_dynamic(source, target, weight_type=QuantType.QInt8, op_types_to_quantize=["LSTM"])
            return target.read_bytes()
    finally:
        root.removeFilter(hint)


# the Batch fields an encoder graph may read, with their ONNX element types (every other one: int64)
_BOOL_INPUTS = ("word_mask",)


class Graph:
    """An ONNX graph being built from a tagger's modules, one node at a time: :meth:`input` declares a
    :class:`~lexner.features.Batch` field the graph reads, :meth:`weight` takes a module's tensor as it is now,
    :meth:`op` adds a node and returns the name of its output (names are made unique here)."""

    def __init__(self) -> None:
        self.nodes: list = []
        self.initializers: list = []
        self.inputs: dict[str, Any] = {}  # Batch field name -> its ONNX value info
        self.outputs: list = []
        self._names = 0

    def _name(self, hint: str) -> str:
        self._names += 1
        return f"{hint}_{self._names}"

    def input(self, field: str) -> str:
        """The Batch field ``field`` as an input of shape (B, T) or (B, M) ((B,) for ``lengths``)."""
        if field not in self.inputs:
            from onnx import TensorProto, helper

            kind = TensorProto.BOOL if field in _BOOL_INPUTS else TensorProto.INT64
            shape = ["batch"] if field == "lengths" else ["batch", f"{field}_length"]
            self.inputs[field] = helper.make_tensor_value_info(field, kind, shape)
        return field

    def constant(self, value: Any, dtype: Any = np.int64) -> str:
        """A constant tensor (``value`` as an array of ``dtype``)."""
        from onnx import numpy_helper

        name = self._name("constant")
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def weight(self, tensor: torch.Tensor, transpose: bool = False) -> str:
        """A weight of the model as it is now (floating point as float32), optionally transposed."""
        array = tensor.detach().cpu()
        array = (array.float() if array.is_floating_point() else array).numpy()
        return self.constant(array.T if transpose else array, array.dtype)

    def op(self, kind: str, *inputs: str, **attributes: Any) -> str:
        """A node of type ``kind`` over ``inputs``; returns its (one) output's name."""
        from onnx import helper

        output = self._name(kind.lower())
        self.nodes.append(helper.make_node(kind, list(inputs), [output], **attributes))
        return output

    def bilstm(self, lstm: nn.LSTM, x: str) -> str:
        """``lstm`` (batch-first, bidirectional, any number of layers) over ``x`` (B, T, input), each sentence up
        to its length (input ``lengths``): what :func:`lexner.models.recurrent.run_bilstm` gives (zeros past each
        length), time first — shape (T, B, 2 × hidden), as ONNX's LSTM works (see :func:`emissions_graph`)."""
        from onnx import TensorProto

        hidden = lstm.hidden_size
        onnx_order = [0, 3, 1, 2]  # torch stacks the gates i, f, g, o; ONNX wants i, o, f, g ("iofc")

        def gates(name: str) -> torch.Tensor:
            weight = getattr(lstm, name).detach().cpu().float()
            return weight.reshape(4, hidden, -1)[onnx_order].reshape(weight.shape)

        lengths = self.op("Cast", self.input("lengths"), to=TensorProto.INT32)
        both_directions = self.constant([0, 0, 2 * hidden])
        h = self.op("Transpose", x, perm=[1, 0, 2])  # time first
        for layer in range(lstm.num_layers):
            per_direction: dict[str, list[torch.Tensor]] = {"W": [], "R": [], "B": []}
            for suffix in ("", "_reverse"):
                per_direction["W"].append(gates(f"weight_ih_l{layer}{suffix}"))
                per_direction["R"].append(gates(f"weight_hh_l{layer}{suffix}"))
                per_direction["B"].append(torch.cat([gates(f"bias_ih_l{layer}{suffix}"),
                                                     gates(f"bias_hh_l{layer}{suffix}")]).flatten()
                                          if lstm.bias else torch.zeros(8 * hidden))
            w, r, b = (self.weight(torch.stack(per_direction[key])) for key in "WRB")
            y = self.op("LSTM", h, w, r, b, lengths, hidden_size=hidden, direction="bidirectional")
            # (T, 2, B, hidden) -> (T, B, 2, hidden) -> (T, B, 2 × hidden): forward, then backward
            h = self.op("Reshape", self.op("Transpose", y, perm=[0, 2, 1, 3]), both_directions)
        return h

    def output(self, name: str, value: str) -> None:
        """``value`` (float32, (B, T, width)) as the graph's output ``name``."""
        from onnx import TensorProto, helper

        self.nodes.append(helper.make_node("Identity", [value], [name]))
        self.outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", "length", None]))

    def serialize(self, precision: str = "float32") -> bytes:
        """The graph as an ONNX model, its LSTM weights quantized to int8 for ``precision`` "int8".  ONNX Runtime
        checks it when a session is made (a separate ``onnx.checker`` pass would copy every weight once more)."""
        from onnx import helper, load_from_string, numpy_helper

        def model(initializers: list) -> Any:
            graph = helper.make_graph(self.nodes, "lexner", list(self.inputs.values()), self.outputs, initializers)
            return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])

        if precision == "float32":
            return model(self.initializers).SerializeToString()
        # The quantizer rewrites the LSTM nodes and copies every other weight through its passes: the tables
        # that Gather nodes look up (the embeddings, most of the bytes) go through as one-row stand-ins and
        # come back afterwards.
        looked_up = {node.input[0] for node in self.nodes if node.op_type == "Gather"}
        tables = {t.name: t for t in self.initializers if t.name in looked_up}
        stand_ins = [numpy_helper.from_array(np.zeros((1, *t.dims[1:]), helper.tensor_dtype_to_np_dtype(t.data_type)),
                                             t.name) if t.name in tables else t for t in self.initializers]
        quantized = load_from_string(_int8(model(stand_ins).SerializeToString()))
        for tensor in quantized.graph.initializer:
            if tensor.name in tables:
                tensor.CopyFrom(tables[tensor.name])
        return quantized.SerializeToString()


def emissions_graph(tagger: nn.Module, labels: str | None = None) -> Graph:
    """The ONNX graph of ``tagger``'s inference, from a batch's ids to the tag scores of head ``labels`` (None:
    the default one; the output is named by its label set).  One head per graph: ONNX Runtime computes every
    output of a graph whichever are asked for (benchmarks/README.md measures what the other heads cost)."""
    graph = Graph()
    features = tagger.onnx_features(graph)  # time first: the linear layer is applied position by position, so
    linear = tagger.head(labels)[0]  # only its few tag scores need turning batch first, not the BiLSTM's output
    scores = graph.op("Add", graph.op("MatMul", features, graph.weight(linear.weight, transpose=True)),
                      graph.weight(linear.bias))
    graph.output(tagger.featurizer.default_labels if labels is None else labels,
                 graph.op("Transpose", scores, perm=[1, 0, 2]))
    return graph


class EmissionsSession:
    """ONNX Runtime sessions of :func:`emissions_graph`, one per head: the default head's is made at once,
    another's the first time it is asked for (each holds its own copy of the weights)."""

    def __init__(self, tagger: nn.Module, precision: str, threads: int) -> None:
        self.precision, self.threads = precision, threads
        self.default = tagger.featurizer.default_labels
        self.sessions: dict[str, Any] = {}
        self.inputs: list[str] = []
        self.add_head(tagger, self.default)

    def add_head(self, tagger: nn.Module, head: str) -> None:
        """Make the session of ``head`` from ``tagger``'s weights as they are now."""
        import onnxruntime as ort

        graph = emissions_graph(tagger, head)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        self.sessions[head] = ort.InferenceSession(graph.serialize(self.precision), options,
                                                   providers=["CPUExecutionProvider"])
        self.inputs = list(graph.inputs)

    def run(self, batch: Any, head: str) -> torch.Tensor:
        """The (B, T, number of tags) tag scores of ``batch`` for ``head``, which must have a session."""
        feed = {field: getattr(batch, field).numpy() for field in self.inputs}
        return torch.from_numpy(self.sessions[head].run([head], feed)[0])


# A snapshot of tensors holds the tensors themselves (not their addresses, which a replacement could reuse), their
# version counters, which in-place changes move, and where their data lies, which ``tensor.data = other`` changes
# (how the trainer swaps in averaged weights, lexner.train.WeightAverage) without moving the counter
Snapshot = tuple[tuple[torch.Tensor, int, int], ...]


def _snapshot(tensors: list[torch.Tensor]) -> Snapshot:
    return tuple((tensor, tensor._version, tensor.data_ptr()) for tensor in tensors)


def _unchanged(taken: Snapshot, tensors: list[torch.Tensor]) -> bool:
    """Whether ``tensors`` are the very tensors of ``taken``, in order, none changed in place or given other data
    since."""
    return len(taken) == len(tensors) and all(
        tensor is then and tensor._version == version and tensor.data_ptr() == address
        for tensor, (then, version, address) in zip(tensors, taken))


def _sources(module: nn.Module) -> tuple[tuple[dict, str], ...]:
    """Where the weights a session attached to ``module`` is built from are kept: an LSTM's weights; a tagger's
    parameters and buffers — each as the dictionary its module keeps it in (``_parameters``/``_buffers``, which
    refer to no module) and its name there, so that a weight replaced later is seen, cheaply."""
    modules = [module] if isinstance(module, nn.LSTM) else module.modules()
    return tuple((table, name) for owner in modules for table in (owner._parameters, owner._buffers)
                 for name, value in table.items() if value is not None)


def _weights(sources: tuple[tuple[dict, str], ...]) -> list[torch.Tensor]:
    return [table[name] for table, name in sources]


def session_of(module: nn.Module) -> Any | None:
    """The session attached to ``module`` (a tagger's :class:`EmissionsSession`, an LSTM's
    :class:`Bfloat16Session`), or None (none attached, or its weights changed since: then torch runs it, and the
    stale session is dropped)."""
    attached = _SESSIONS.get(module)
    if attached is None:
        return None
    session, sources, weights = attached
    if not _unchanged(weights, _weights(sources)):
        log.info("the weights of a %s changed after its session (%s) was built: torch runs it from now on",
                 type(module).__name__, type(session).__name__)
        del _SESSIONS[module]
        return None
    return session


def attach(module: nn.Module, session: Any | None) -> None:
    """Attach ``session`` to ``module`` (a tagger or an LSTM) for its current weights (None: detach)."""
    if session is None:
        _SESSIONS.pop(module, None)
    else:
        sources = _sources(module)
        _SESSIONS[module] = (session, sources, _snapshot(_weights(sources)))


def drop_sessions(tagger: nn.Module) -> bool:
    """Detach every session of ``tagger`` and its LSTMs; whether there was one."""
    return any([_SESSIONS.pop(module, None) is not None for module in (tagger, *bilstms(tagger))])


def use_onnx(tagger: nn.Module, threads: int | None = None, precision: str = "float32") -> int:
    """Run ``tagger``'s encoder and heads in ONNX Runtime (``threads`` intra-op threads; None: torch's thread
    count) in CPU inference, with float32 or int8 LSTM weights (``precision``); returns how many BiLSTMs it
    has.  A tagger without one is refused.  If the weights change afterwards (training), torch runs them again."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    try:
        importlib.import_module("onnx")  # builds the graph
        importlib.import_module("onnxruntime")
    except ImportError as err:
        raise ImportError('ONNX Runtime is an optional extra: pip install "lexner[onnx]"') from err
    lstms = _bilstms_of(tagger, "run in ONNX Runtime")
    for lstm in lstms:
        attach(lstm, None)
    attach(tagger, EmissionsSession(tagger, precision, torch.get_num_threads() if threads is None else threads))
    return len(lstms)


def _cpu_inference(module: nn.Module, x: torch.Tensor) -> bool:
    """Whether an attached session may run: inference on the CPU, no gradients wanted, a non-empty batch."""
    return not module.training and x.device.type == "cpu" and not torch.is_grad_enabled() and x.numel() > 0


def onnx_emissions(tagger: nn.Module, batch: Any) -> torch.Tensor | None:
    """The tag scores of ``batch`` from the tagger's attached ONNX Runtime sessions (a head without one yet gets
    one, from the weights it has then), or None where torch must compute them (no session or a stale one,
    training, not on the CPU, gradients wanted, an empty batch)."""
    if not _cpu_inference(tagger, batch.chars):
        return None
    session = session_of(tagger)
    if session is None:
        return None
    head = session.default if batch.labels is None else batch.labels
    if head not in session.sessions:
        session.add_head(tagger, head)
        attach(tagger, session)  # the snapshot now holds the new head's weights too
    return session.run(batch, head)


def bfloat16_bilstm(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor | None:
    """The BiLSTM's output for the padded batch ``x`` from its attached :class:`Bfloat16Session`, or None where
    torch must run it (as for :func:`onnx_emissions`)."""
    if not _cpu_inference(lstm, x):
        return None
    session = session_of(lstm)
    return None if session is None else session.run(x, lengths)
