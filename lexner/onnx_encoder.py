"""Faster CPU runtimes for inference of the taggers with a BiLSTM encoder (bilstm_crf, softlexicon): ONNX
Runtime (``pip install "lexner[onnx]"``) and torch in bfloat16::

    ner = lexner.load(onnx=True)               # ONNX Runtime, float32: the same outputs as torch
    ner = lexner.load(onnx="int8")             # int8 LSTM weights: faster, outputs close
    ner = lexner.load(runtime="torch-bf16")    # torch with a bfloat16 copy of the LSTM: outputs close

**ONNX Runtime** runs a tagger's whole encoder, from a batch's ids to the default head's tag scores, as one ONNX
graph built from its weights when this is called, or read from the model directory where it carries one made from
the same weights (``lexner export --onnx-graph int8``: :func:`carried_graph`; building takes the onnx package's
import and, for int8, the quantizer — seconds — reading it a few milliseconds): embedding lookups,
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

import contextlib
import copy
import hashlib
import importlib.util
import logging
import sys
import tempfile
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .runtimes import GRAPH_FILES, ONNX_PRECISIONS, PRECISIONS, RUNTIMES

# each module's session (a tagger's ONNX Runtime session, an nn.LSTM's Bfloat16Session), where its weights are
# kept and a snapshot of them when it was built; beside the module, not in it, so that a tagger still pickles and
# copies (without its sessions).  The entry holds tensors and dictionaries, never a module: it keeps none alive.
_SESSIONS: "weakref.WeakKeyDictionary[nn.Module, tuple[Any, tuple, Snapshot]]" = weakref.WeakKeyDictionary()
# what the graphs built here compute, as a number: raise it with any change to a graph's nodes, so that no graph a
# model directory carries from before is used
GRAPH_FORMAT = 1
GRAPH_IR_VERSION = 8  # the ONNX IR version graphs are written in (ONNX Runtime 1.16, the oldest allowed, reads ≤ 9)
ONNX_INSTALL = 'pip install "lexner[onnx]"'  # the optional extra: onnx builds graphs, onnxruntime runs them
ONNX_EXTRA = f"ONNX Runtime is an optional extra: {ONNX_INSTALL}"
BUILD_EXTRA = f"building an ONNX graph needs the onnx package: {ONNX_INSTALL}"

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
    """An ONNX graph being built from ``tagger``'s modules, one node at a time: :meth:`input` declares a
    :class:`~lexner.features.Batch` field the graph reads, :meth:`weight` takes a module's tensor as it is now,
    :meth:`lookup` looks ids up in one of its tables, :meth:`op` adds a node and returns the name of its output
    (names are made unique here).  The tables (embeddings, counts: most of a model's bytes) are not copied into
    the graph: each is an input named by the tagger's name for it (``embed.words.weight``), fed the tagger's own
    tensor at every call (:class:`EmissionsSession`), so the graph stays small enough to build fast and for a
    model directory to carry (:data:`GRAPH_FILES`)."""

    def __init__(self, tagger: nn.Module) -> None:
        self.nodes: list = []
        self.initializers: list = []
        self.inputs: dict[str, Any] = {}  # Batch field name -> its ONNX value info
        self.tables: dict[str, Any] = {}  # the tagger's name of a table -> its ONNX value info
        self.outputs: list = []
        self._names = 0
        self._tagger_names = {id(t): name for name, t in (*tagger.named_parameters(), *tagger.named_buffers())}

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

    def lookup(self, table: torch.Tensor, field: str) -> str:
        """The rows of ``table`` (a 2-D parameter or buffer of the tagger: an embedding table, counts) at the ids
        of Batch field ``field``; the table is an input of the graph (see :class:`Graph`)."""
        from onnx import helper

        name = self._tagger_names[id(table)]
        if name not in self.tables:
            kind = helper.np_dtype_to_tensor_dtype(_table_array(table).dtype)
            self.tables[name] = helper.make_tensor_value_info(name, kind, [f"{name}_rows", *table.shape[1:]])
        return self.op("Gather", name, self.input(field))

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

    def serialize(self, precision: str = "float32", metadata: dict[str, str] | None = None) -> bytes:
        """The graph as an ONNX model, its LSTM weights quantized to int8 for ``precision`` "int8", with
        ``metadata`` as the model's metadata properties.  ONNX Runtime checks it when a session is made."""
        from onnx import helper, load_from_string

        graph = helper.make_graph(self.nodes, "lexner", [*self.inputs.values(), *self.tables.values()],
                                  self.outputs, self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
        if precision == "int8":
            model = load_from_string(_int8(model.SerializeToString()))
        model.ir_version = GRAPH_IR_VERSION  # not the onnx package's newest: older ONNX Runtimes read the graph too
        helper.set_model_props(model, dict(metadata or {}))
        return model.SerializeToString()


def emissions_graph(tagger: nn.Module, labels: str | None = None) -> Graph:
    """The ONNX graph of ``tagger``'s inference, from a batch's ids to the tag scores of head ``labels`` (None:
    the default one; the output is named by its label set).  One head per graph: ONNX Runtime computes every
    output of a graph whichever are asked for (benchmarks/README.md measures what the other heads cost)."""
    graph = Graph(tagger)
    features = tagger.onnx_features(graph)  # time first: the linear layer is applied position by position, so
    linear = tagger.head(labels)[0]  # only its few tag scores need turning batch first, not the BiLSTM's output
    scores = graph.op("Add", graph.op("MatMul", features, graph.weight(linear.weight, transpose=True)),
                      graph.weight(linear.bias))
    graph.output(tagger.featurizer.default_labels if labels is None else labels,
                 graph.op("Transpose", scores, perm=[1, 0, 2]))
    return graph


class EmissionsSession:
    """ONNX Runtime sessions of :func:`emissions_graph`, one per head: the default head's is made at once (from the
    graph ``carried`` by the model directory when it was made from these weights, see :func:`carried_graph`),
    another's the first time it is asked for.  Each is fed the tagger's tables at every call (:class:`Graph`)."""

    def __init__(self, tagger: nn.Module, precision: str, threads: int, carried: bytes | None = None) -> None:
        self.precision, self.threads = precision, threads
        self.default = tagger.featurizer.default_labels
        # head -> (its session, the Batch fields it reads, its tables by the tagger's names); None: torch runs it
        self.sessions: dict[str, tuple[Any, list[str], dict[str, np.ndarray]] | None] = {}
        if carried is None or not self._use(tagger, self.default, carried, check=True):
            self.add_head(tagger, self.default)

    def add_head(self, tagger: nn.Module, head: str) -> None:
        """Make the session of ``head`` from ``tagger``'s weights as they are now."""
        try:
            model = graph_bytes(tagger, head, self.precision)
        except ImportError as err:  # ONNX Runtime is there, the onnx package that builds graphs is not
            raise ImportError(BUILD_EXTRA) from err
        self._use(tagger, head, model, check=False)

    def _use(self, tagger: nn.Module, head: str, model: bytes, check: bool) -> bool:
        """Make the session of ``head`` from ``model`` (a serialized graph of :func:`graph_bytes`); with ``check``,
        only if its metadata says it is this head's, at this precision, from these very weights (else False)."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        # a carried graph may be damaged: ONNX Runtime then prints a banner ("EP Error ... Falling back") with
        # print() before it fails — onto standard error, not among the records on standard output
        quiet = contextlib.redirect_stdout(sys.stderr) if check else contextlib.nullcontext()
        try:
            with quiet:
                session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except Exception as err:  # ONNX Runtime's own error classes: a carried file it cannot read is not used
            if not check:
                raise
            log.warning("the model directory's ONNX graph (%s) cannot be used (%s): building one",
                        GRAPH_FILES[self.precision], str(err).splitlines()[0] if str(err) else type(err).__name__)
            return False
        meta = session.get_modelmeta().custom_metadata_map
        tables = [name for name in meta.get("tables", "").split(",") if name]
        live = dict((*tagger.named_parameters(), *tagger.named_buffers()))
        if check:
            expected = graph_metadata(tagger, head, self.precision, tables) if all(t in live for t in tables) else {}
            if any(meta.get(key) != value for key, value in expected.items()) or not expected:
                log.warning("the model directory's ONNX graph (%s) was made from other weights or by another lexner: "
                            "building one (lexner export --onnx-graph %s writes a new one)",
                            GRAPH_FILES[self.precision], self.precision)
                return False
        fields = [i.name for i in session.get_inputs() if i.name not in tables]
        self.sessions[head] = (session, fields, {name: _table_array(live[name]) for name in tables})
        return True

    def run(self, batch: Any, head: str) -> torch.Tensor:
        """The (B, T, number of tags) tag scores of ``batch`` for ``head``, which must have a session."""
        session, fields, tables = self.sessions[head]
        feed = {field: getattr(batch, field).numpy() for field in fields}
        return torch.from_numpy(session.run([head], {**feed, **tables})[0])


def _table_array(table: torch.Tensor) -> np.ndarray:
    """A table as the graph reads it: the tensor's own memory where it can be (float32 and int64 tables)."""
    table = table.detach().cpu()
    return (table.float() if table.is_floating_point() else table).contiguous().numpy()


def weights_digest(tagger: nn.Module, tables: list[str]) -> str:
    """A SHA-1 digest of every parameter and buffer of ``tagger`` but ``tables`` (by name, dtype, shape, bytes):
    what a graph built from the tagger holds, so that a carried graph is used only with the weights it holds."""
    digest = hashlib.sha1()
    for name, tensor in tagger.state_dict().items():
        if name not in tables:
            tensor = tensor.detach().cpu().contiguous()
            digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
            digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def graph_metadata(tagger: nn.Module, head: str, precision: str, tables: list[str]) -> dict[str, str]:
    """What a graph's metadata says of it: lexner's graph format, head, precision, tables and weights."""
    return {"lexner_graph_format": str(GRAPH_FORMAT), "head": head, "precision": precision,
            "tables": ",".join(tables), "weights_sha1": weights_digest(tagger, tables)}


def graph_bytes(tagger: nn.Module, head: str | None, precision: str) -> bytes:
    """The serialized :func:`emissions_graph` of ``head`` (None: the default one) at ``precision``, with the
    metadata :class:`EmissionsSession` checks a carried graph by."""
    head = tagger.featurizer.default_labels if head is None else head
    graph = emissions_graph(tagger, head)
    return graph.serialize(precision, graph_metadata(tagger, head, precision, list(graph.tables)))


def graphs_can_be_built() -> bool:
    """Whether the packages that build (onnx) and quantize (onnxruntime) graphs are installed."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime"))


def carried_graph(tagger: nn.Module, precision: str) -> bytes | None:
    """The default head's graph at ``precision`` that the directory ``tagger`` was loaded from carries (``lexner
    export --onnx-graph``), or None.  Used only if made from the tagger's weights as they are (checked when the
    session is made): with it, ``lexner.load(runtime="onnx-int8")`` neither builds nor quantizes a graph, nor
    imports the onnx package (another head's graph is built when first asked for; without the onnx package,
    torch runs that head)."""
    source = getattr(tagger, "source", None)
    path = Path(source, GRAPH_FILES[precision]) if source is not None else None
    if path is None or not path.is_file():
        return None
    graph = path.read_bytes()
    if _EXTERNAL_DATA_KEY in graph:  # lexner's graphs hold every weight; older ONNX Runtimes read such paths unchecked
        log.warning("%s refers to data in other files, which lexner's graphs never do: not used", path)
        return None
    return graph


# the key of an ONNX tensor's external data entries (a file, or a memory address) as its serialized bytes hold it;
# a weight's bytes holding it by chance only costs building the graph
_EXTERNAL_DATA_KEY = b"location"


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
    lstms = _bilstms_of(tagger, "run in ONNX Runtime")
    carried = carried_graph(tagger, precision)
    if importlib.util.find_spec("onnxruntime") is None or (carried is None and not graphs_can_be_built()):
        raise ImportError(ONNX_EXTRA)
    for lstm in lstms:
        attach(lstm, None)
    attach(tagger, EmissionsSession(tagger, precision, torch.get_num_threads() if threads is None else threads,
                                    carried))
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
        try:
            session.add_head(tagger, head)
        except ImportError as err:  # a carried graph ran the default head without the onnx package
            log.warning("head %r runs in torch: %s", head, err)
            session.sessions[head] = None
        attach(tagger, session)  # the snapshot now holds the new head's weights too
    return None if session.sessions[head] is None else session.run(batch, head)


def bfloat16_bilstm(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor | None:
    """The BiLSTM's output for the padded batch ``x`` from its attached :class:`Bfloat16Session`, or None where
    torch must run it (as for :func:`onnx_emissions`)."""
    if not _cpu_inference(lstm, x):
        return None
    session = session_of(lstm)
    return None if session is None else session.run(x, lengths)
