"""The :class:`Tagger` contract every model implements, with save/load and ``tag`` written once here.

A model subclass supplies a config dataclass, what it reads (``inputs(config)``, see :mod:`.embedder`), its
layers in ``__init__(config, featurizer)`` (its embedding tables as one ``Embedder`` in ``self.embed``, ending
with ``make_output(width)``), and the per-character ``features(batch)`` that the output layer of each label set
turns into the emissions its CRF reads.  Everything else — heads, loss, constrained decoding, tagging text,
saving and loading a model directory — is shared.  A multi-task model (one head per label set, see
``Featurizer``) tags with its default head unless asked for another (``tag(text, labels="cluener")``).
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from ..crf import ConstrainedCRF
from ..dictionary import Dictionary, warn_if_unseen
from ..entity import Entity
from ..features import LABEL_SET_NAME, LEXICON_FILE, Batch, Featurizer
from ..fileio import (DataFormatError, ModelFormatError, atomic_directory, expand_home, read_json, utf8_name,
                      write_bytes, write_json)
from ..onnx_encoder import Graph, drop_sessions, onnx_emissions
from ..schemes import MAX_ENTITY_TYPES, TYPE_NAME_RULE, Span, is_type_name
from ..tagging import MAX_PIECE_LENGTH, PIECE_LENGTH_LIMIT, tag_texts
from ..text import normalize
from .embedder import Embedder, Inputs, current_key

log = logging.getLogger(__name__)

# 2: a multi-task model's label sets; 3: the embedding tables' weights under embed.* (read: every version)
FORMAT_VERSION = 3
CONFIG_FILE = "config.json"
# The keys of config.json that lexner reads (save() writes them, and any of its ``extra``)
WRITTEN_BY_SAVE = ("format_version", "model", "config", "entity_types", "label_sets", "piece_length")
"""config.json keys :meth:`Tagger.save` writes from the model itself; the others are its caller's (``extra``)."""
CONFIG_KEYS = (*WRITTEN_BY_SAVE, "card", "runtime")
WEIGHTS_FILE = "model.safetensors"


MAX_CONFIG_INT = (1 << 31) - 1  # bounds every integer setting; sizes are checked against the weights
MAX_LAYERS = 64  # layers are built in a Python loop: a huge count would hang before any check
_FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}
_INT_DTYPES = {torch.int32: "I32", torch.int64: "I64"}  # counts (softlexicon's word frequencies), stored exactly


_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def parse_config_values(cls, values: Mapping[str, str]) -> dict[str, Any]:
    """Settings given as text (``--set lean=false``) converted by the type of ``cls.Config``'s field: booleans
    from true/false (1/0, yes/no, on/off), numbers as numbers, strings as they are.  Unknown keys and values
    that do not convert raise ``ValueError`` naming the valid keys or the expected type."""
    fields = {f.name: f for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{unknown} are not settings of {cls.name}; its settings: {', '.join(sorted(fields))}")
    defaults = cls.Config()
    out = {}
    for key, text in values.items():
        default = getattr(defaults, key)
        try:
            if isinstance(default, bool):
                if text.lower() not in _TRUE | _FALSE:
                    raise ValueError
                out[key] = text.lower() in _TRUE
            elif isinstance(default, (int, float)):
                out[key] = type(default)(text)
            else:
                out[key] = text
        except ValueError:
            kind = "true or false" if isinstance(default, bool) else f"a{'n' if isinstance(default, int) else ''} " \
                f"{type(default).__name__}"
            raise ValueError(f"setting {key} must be {kind}, got {text!r}") from None
    return out


def checked_config(cls, values: Any):
    """``cls.Config`` from ``values`` (typed, as in config.json), each checked against its field's type and a sane
    range; ``ValueError`` names the setting."""
    if not isinstance(values, dict):
        raise ValueError(f"'config' must be a JSON object, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"config keys {unknown} are not settings of {cls.name} (its settings: {sorted(fields)})")
    defaults = cls.Config()
    for key, value in values.items():
        default = getattr(defaults, key)
        where = f"config {key}"
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ValueError(f"{where} must be true or false, got {value!r}")
        elif isinstance(default, int):
            limit = MAX_LAYERS if key == "layers" else MAX_CONFIG_INT
            low = 0 if key in getattr(cls.Config, "zero_allowed", ()) else 1  # a size of 0 is no layer at all
            if type(value) is not int or not low <= value <= limit:
                raise ValueError(f"{where} must be an integer in [{low}, {limit}], got {value!r}")
        elif isinstance(default, float):
            high = 1.0 if "dropout" in key else float(MAX_CONFIG_INT)
            if type(value) not in (int, float) or not (0.0 <= value <= high):  # NaN fails both comparisons
                raise ValueError(f"{where} must be a number in [0, {high:g}], got {value!r}")
        elif type(value) is not type(default):
            raise ValueError(f"{where} must be a {type(default).__name__}, got {type(value).__name__}")
    try:
        return cls.Config(**values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"config does not fit {cls.__name__}: {err}") from None


def _checked_config(cls, values: Any, config_file: Path):
    """:func:`checked_config` of a model directory's config.json; errors are ``ModelFormatError``."""
    try:
        return checked_config(cls, values)
    except ValueError as err:
        raise ModelFormatError(f"{config_file}: {err}") from None


def word_list(words: Iterable[str], what: str = "add_words()") -> list[str]:
    """``words`` read once into a list (an open file of one word per line too), refusing one string or a file
    name — iterated, it would give single characters — and items that are not str."""
    if isinstance(words, (str, bytes, os.PathLike)):
        raise TypeError(f"{what} expects words (a list, or an open file of one word per line), not one string or "
                        "a file name (it would add its characters)")
    try:
        words = list(words)
    except TypeError:
        raise TypeError(f"{what} expects words (a list, or an open file of one word per line), got "
                        f"{type(words).__name__}") from None
    for word in words:
        if not isinstance(word, str):
            raise TypeError(f"{what} expects words as str, got {type(word).__name__}")
    return words


@contextmanager
def _without_initialisation():
    """Build modules without running torch's parameter initialisers (the weights are loaded right after):
    their tensors are allocated but never written, so the operating system commits no memory for them until
    the saved weights are copied in — a config implying gigabytes costs nothing before it is refused."""
    from torch.nn import init

    names = ("normal_", "uniform_", "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_", "xavier_normal_",
             "trunc_normal_", "orthogonal_", "zeros_", "ones_", "constant_")
    saved = {name: getattr(init, name) for name in names}
    try:
        for name in names:
            setattr(init, name, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for name, function in saved.items():
            setattr(init, name, function)


def _build_for_loading(cls, config, featurizer: Featurizer, config_file: Path) -> "Tagger":
    try:
        with _without_initialisation():
            return cls(config, featurizer)
    except (ValueError, TypeError) as err:
        raise ModelFormatError(f"{config_file}: does not describe a buildable {cls.name}: {err}") from None
    except RuntimeError as err:  # e.g. sizes no machine could allocate
        raise ModelFormatError(f"{config_file}: the config's sizes cannot be built ({err})") from None


def _check_weights_header(weights_file: Path, expected: dict[str, tuple[tuple[int, ...], torch.dtype]]) -> None:
    """The safetensors header (read without loading any tensor) must hold weights of exactly the shapes the
    config implies (``expected``: key -> (shape, the model's dtype)): floating point where the model's are, the
    model's own integer type where it counts, so that nothing larger than the file is ever read into memory."""
    from safetensors import safe_open

    try:
        with utf8_name(weights_file) as name, safe_open(name, framework="pt") as handle:
            keys = list(handle.keys())
            header = {current_key(k): (tuple(handle.get_slice(k).get_shape()), handle.get_slice(k).get_dtype())
                      for k in keys}
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelFormatError(f"{weights_file}: not a readable safetensors file ({err})") from None
    if len(header) < len(keys):  # a weight under its present name and an older one: which would count?
        names = Counter(map(current_key, keys))
        twice = sorted(k for k in keys if names[current_key(k)] > 1)
        raise ModelFormatError(f"{weights_file}: {twice[:4]} name the same weights (a present name and an older one)")
    for key, (_, dtype) in header.items():
        wanted = expected[key][1] if key in expected else torch.float32
        allowed = _FLOAT_DTYPES if wanted.is_floating_point else {_INT_DTYPES.get(wanted)}
        if dtype not in allowed:
            raise ModelFormatError(f"{weights_file}: {key} has dtype {dtype}; it must be "
                                   + ("floating point" if wanted.is_floating_point else " or ".join(allowed)))
    if set(header) != set(expected):
        missing, extra = sorted(set(expected) - set(header)), sorted(set(header) - set(expected))
        raise ModelFormatError(f"{weights_file}: weights do not match config.json: missing {missing[:5]}, "
                               f"unexpected {extra[:5]}")
    for key, (shape, _) in expected.items():
        if header[key][0] != shape:
            raise ModelFormatError(f"{weights_file}: weights do not match config.json: {key} has shape "
                                   f"{list(header[key][0])}, the config implies {list(shape)}")


MAX_WEIGHT = 1e6  # a weight beyond it is damage or a crafted file (trained ones here stay below ~20)


def _absurd_weight(state: Mapping[str, torch.Tensor]) -> str | None:
    """The first floating-point weight of ``state`` holding NaN, inf or a magnitude beyond :data:`MAX_WEIGHT`
    (NaN makes the largest magnitude NaN, never within the bound), else None.  Saving refuses what loading would."""
    return next((key for key, tensor in state.items() if tensor.is_floating_point() and tensor.numel()
                 and not float(tensor.abs().max()) <= MAX_WEIGHT), None)


def _distinct_types(types: Any) -> bool:
    return (isinstance(types, list) and len(types) <= MAX_ENTITY_TYPES and all(map(is_type_name, types))
            and len(set(types)) == len(types))


def is_model_directory(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` holds a lexner model and nothing else (what ``export --force`` may replace)."""
    from ..features import MODEL_FILES
    from ..runtimes import GRAPH_FILES

    directory = Path(directory)
    try:
        meta = read_json(directory / CONFIG_FILE)
    except (DataFormatError, OSError, UnicodeDecodeError):
        return False
    known = {CONFIG_FILE, WEIGHTS_FILE, *MODEL_FILES, *GRAPH_FILES.values()}
    return (isinstance(meta, dict) and "format_version" in meta and "model" in meta
            and all(child.name in known for child in directory.iterdir()))


def model_target(directory: Path) -> bool:
    """Whether writing a model into ``directory`` replaces one (True: it holds a lexner model and nothing else)
    or fills a new or empty directory (False).  Anything else raises ``ValueError`` before anything is written,
    so no user file is ever lost: a file, a directory holding other files, and a model directory that holds
    the current directory (replacing it whole would delete the process's working directory)."""
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{directory} exists and is not a directory; nothing was written")
    filled = directory.is_dir() and any(directory.iterdir())
    if filled and not is_model_directory(directory):
        raise ValueError(f"{directory} is not empty and is not a lexner model directory; nothing was written "
                         "(write into a new or empty directory)")
    if filled and Path.cwd().resolve().is_relative_to(directory.resolve()):
        raise ValueError(f"{directory} holds the current directory, which replacing the model there would delete; "
                         "nothing was written (write it from another directory)")
    return filled


def soft_loss(crf: ConstrainedCRF, emissions: torch.Tensor, batch: Batch) -> torch.Tensor:
    """The distillation loss of a batch, per sentence (summed over its characters), averaged over sentences:
    ``mse`` — the mean squared difference between the student's and the teacher's emission scores of each
    character; ``kl`` — KL(teacher ‖ student) between their CRF tag marginals at each character.  Sentences
    without soft targets (``batch.soft_mask`` False) count as zero."""
    mask = batch.mask.unsqueeze(-1).float()
    if batch.soft_mask is not None:
        mask = mask * batch.soft_mask[:, None, None].float()
    if batch.soft_kind == "mse":
        per_char = ((emissions.float() - batch.soft) ** 2).mean(-1, keepdim=True)
    elif batch.soft_kind == "kl":
        teacher, log_student = batch.soft, crf.log_marginals(emissions, batch.mask)
        per_char = (torch.xlogy(teacher, teacher) - teacher * log_student).sum(-1, keepdim=True)
    else:
        raise ValueError(f"soft_kind must be 'mse' or 'kl', got {batch.soft_kind!r}")
    return (per_char * mask).sum((1, 2)).mean()


class Head(nn.Module):
    """The output layer and CRF of one extra label set of a multi-task model."""

    def __init__(self, width: int, tags: Sequence[str]):
        super().__init__()
        self.output = nn.Linear(width, len(tags))
        self.crf = ConstrainedCRF(tags)


class Tagger(nn.Module):
    """Base class of every lexner tagger."""

    name: ClassVar[str]
    Config: ClassVar[type]
    max_length: int = MAX_PIECE_LENGTH  # the piece length: tag_batch splits longer texts (set_piece_length)
    overlap: int = 50  # overlap of the pieces of one over-long sentence
    batch_tokens: int = 4096  # tag_batch: at most this many padded tokens per batch (long pieces, smaller batches)
    # What a piece costs in tag_batch, for grouping pieces of like cost (little padding) and for batch_tokens:
    # its characters, or, for taggers whose work grows with the matched words too (FLAT attends over them,
    # Lattice-LSTM runs a cell for each), its characters and words.  A softlexicon model pools its words before
    # an LSTM over characters, which pays for every padded character (benchmarks/README.md, "Tagging speed:
    # batches grouped by characters").
    tokens_include_words: ClassVar[bool] = False
    # the shortest lexicon word it can read: a model whose word sets are B/M/E (softlexicon) or whose word cells
    # span characters (Lattice-LSTM) has no place for a one-character word
    min_word_length: ClassVar[int] = 1
    block_pieces: int = 4096  # tag_batch: pieces encoded at a time (bounds memory on long inputs)

    def __init__(self, config: Any, featurizer: Featurizer):
        super().__init__()
        self.config = config
        self.featurizer = featurizer
        self.crf = ConstrainedCRF(featurizer.tags)  # the default label set's CRF (see make_output)
        self.metadata: dict[str, Any] = {}  # config.json's keys beside WRITTEN_BY_SAVE (card, runtime; by load)
        self.dictionary: Dictionary | None = None  # typed words forced into the decoded paths (add_dictionary)
        self.source: Path | None = None  # the model directory it was loaded from (None: built in memory)
        self.added_words: list[str] = []  # what add_words added since (worker processes add them again)
        self.stored_half = False  # whether that directory stores float16 weights (export keeps it so)
        self.runtime = "torch"  # how lexner.load set its BiLSTM to run (lexner.runtimes.RUNTIMES)
        self.embed: Embedder | None = None  # its embedding tables, if it reads characters or words
        if self.reads.words and featurizer.lexicon is None:
            raise ValueError(f"{self.name} needs a featurizer with a lexicon")
        if self.reads.words and featurizer.lexicon.min_length < self.min_word_length:
            raise ValueError(f"{self.name} needs a featurizer with a lexicon of words of length ≥ "
                             f"{self.min_word_length}")

    # --- what a model implements -----------------------------------------------------------------------
    @classmethod
    def inputs(cls, config: Any) -> Inputs:
        """What a model of this kind with ``config`` reads (by default characters and bigrams)."""
        return Inputs()

    def features(self, batch: Batch) -> torch.Tensor:
        """Per-character features of shape (B, T, width) for the characters of ``batch``, dropout applied:
        what every head's linear layer turns into tag scores (``width`` as given to :meth:`make_output`)."""
        raise NotImplementedError

    def onnx_features(self, graph: Graph) -> str:
        """:meth:`features` in inference (no dropout) as nodes of ``graph``, reading the same Batch fields
        (``graph.input``); returns the name of the result, time first: shape (T, B, width), as ONNX's LSTM
        leaves it (:meth:`lexner.onnx_encoder.Graph.bilstm`).  Models that ONNX Runtime can run
        (:mod:`lexner.onnx_encoder`) implement it with the same operations as :meth:`features`."""
        raise NotImplementedError(f"{self.name} does not run in ONNX Runtime")

    def make_output(self, width: int) -> None:
        """The heads: a linear layer from ``width`` features to the tag scores of each label set, with its CRF.
        The default label set's are ``output`` and ``crf``; a multi-task model's others are ``heads[name]``."""
        self.output = nn.Linear(width, len(self.featurizer.tags))
        self.heads = nn.ModuleDict({name: Head(width, label_set.tags)
                                    for name, label_set in self.featurizer.label_sets.items()
                                    if name != self.featurizer.default_labels})

    def head(self, labels: str | None = None) -> tuple[nn.Linear, ConstrainedCRF]:
        """The output layer and CRF of label set ``labels`` (None: the default one)."""
        name = self.featurizer.default_labels if labels is None else labels
        if name == self.featurizer.default_labels:
            return self.output, self.crf
        self.featurizer.label_set(name)  # a clear error for an unknown name
        head = self.heads[name]
        return head.output, head.crf

    def add_head(self, name: str, types: Sequence[str]) -> None:
        """A new, untrained head (output layer and CRF) for label set ``name`` with entity types ``types``:
        how a trained model learns a corpus of other types (``lexner train --init-from``)."""
        self.featurizer.add_label_set(name, types)
        width = self.output.in_features
        self.heads[name] = Head(width, self.featurizer.label_set(name).tags).to(self.device)

    def __setstate__(self, state: dict) -> None:
        """A copy (``copy.deepcopy``, or pickled to another process by a pool) gets no runtime session — they are
        kept apart from the model (:mod:`lexner.onnx_encoder`) — so it runs torch, and says so: it claimed the
        original's runtime while running torch.  ``lexner.load(path, runtime=...)`` where the copy is used, or
        ``lexner.onnx_encoder.use_runtime(copy, runtime)``, gives it one."""
        super().__setstate__(state)
        if "runtime" in self.__dict__:
            self.runtime = "torch"

    def train(self, mode: bool = True) -> "Tagger":
        """:meth:`nn.Module.train`; training mode also drops the runtime sessions ``lexner.load`` attached
        (:mod:`lexner.onnx_encoder`), which hold the weights as they were: torch runs the model from then on."""
        if mode and drop_sessions(self):
            self.runtime = "torch"
        return super().train(mode)

    def emissions(self, batch: Batch) -> torch.Tensor:
        """Tag scores of shape (B, T, number of tags) of the head of ``batch.labels``."""
        fast = onnx_emissions(self, batch)  # ONNX Runtime, if lexner.load attached a session (CPU inference)
        if fast is not None:
            return fast
        return self.head(batch.labels)[0](self.features(batch))

    def fit_corpus(self, texts: Iterable[str]) -> None:
        """Statistics a model takes from its training texts before training (e.g. softlexicon's word
        frequencies); none by default."""

    def encoder_parameters(self) -> list[nn.Parameter]:
        """Parameters of a pretrained encoder, trained with their own (lower) learning rate."""
        return []

    # --- shared ----------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def reads(self) -> Inputs:
        """What this model reads (:meth:`inputs` of its config)."""
        return self.inputs(self.config)

    def loss(self, batch: Batch) -> torch.Tensor:
        """Mean negative log-likelihood of the gold tags of ``batch`` (a scalar), plus, for distillation,
        ``soft_weight`` times the soft-target loss (see :func:`soft_loss`; a batch without gold tags has only
        that).  Under autocast the emissions may be half precision; the CRF always runs in float32."""
        if batch.tags is None and batch.soft is None:
            raise ValueError("loss() needs a batch encoded with gold spans or soft targets")
        emissions = self.emissions(batch)
        crf = self.head(batch.labels)[1]
        with torch.autocast(device_type=emissions.device.type, enabled=False):  # the CRF runs in float32
            total = crf.nll(emissions, batch.tags, batch.mask) if batch.tags is not None else 0.0
            if batch.soft is not None:
                total = total + batch.soft_weight * soft_loss(crf, emissions, batch)
            return total

    def forward(self, batch: Batch) -> torch.Tensor:
        """The training loss, so that ``DistributedDataParallel(tagger)(batch)`` works."""
        return self.loss(batch)

    def decode(self, batch: Batch) -> list[list[int]]:
        """Best legal BIOES tag ids of each sentence (in the label set of ``batch.labels``)."""
        return self.head(batch.labels)[1].viterbi(self.emissions(batch), batch.mask, batch.allowed)

    def add_words(self, words: Iterable[str]) -> int:
        """Add domain words to the lexicon of a lattice tagger; they take part in matching from now on.

        A new word's embedding is made by :meth:`Embedder.new_word_rows`.  Words already in the lexicon are left as they are.  Returns how many
        words were new.  The model saved afterwards keeps them.
        """
        lexicon = self.featurizer.lexicon
        if lexicon is None:
            raise ValueError(f"{self.name} does not use a lexicon; added words would have no effect")
        words = word_list(words)
        for word in words:
            try:
                word.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(f"word {word!r} holds a lone surrogate (half of an emoji?); it could not be "
                                 "saved") from None
        words = [w for w in (normalize(w.strip()) for w in words) if w]
        new = list(dict.fromkeys(w for w in words if w not in lexicon))
        for word in new:
            warn_if_unseen(word, "lexicon word")
        if not new:
            return 0
        rows = self.embed.new_word_rows(new)
        # the tables grow first and the words are matched last: a text tagged meanwhile in another thread never
        # meets a word id its tables (or runtime session) do not have yet
        self.embed.append_words(rows)
        self._words_added(len(new))
        if self.runtime != "torch":  # its session was made from the smaller table: made again (a carried graph
            from ..onnx_encoder import use_runtime  # reads the tables as inputs, so it still fits)

            use_runtime(self, self.runtime)
        lexicon.add(new, None if lexicon.vectors is None else rows.cpu().numpy())  # its vectors stay aligned
        self.added_words += new
        return len(new)

    def _words_added(self, count: int) -> None:
        """``count`` rows were added to the word table (:meth:`add_words`): per-word buffers grow to match."""

    def add_dictionary(self, entries: Mapping[str, str] | Iterable[tuple[str, str]] | Dictionary) -> int:
        """Force words to be tagged as given types: ``ner.add_dictionary({"腾讯": "ORG"})``.  Every selected
        occurrence (see :mod:`lexner.dictionary`) becomes exactly one entity of its type, by constraining the
        decoder.  Types the model does not know raise ``ValueError``; so do, in a multi-task model, types that no
        one head has all of (with the entries added before); tagging with a head that lacks one of the dictionary's
        types raises it then.  Returns the dictionary's size.  Kept in memory only (not saved with the model);
        ``ner.dictionary = None`` drops it."""
        extra = entries if isinstance(entries, Dictionary) else Dictionary(entries)
        heads = {name: set(label_set.entity_types) for name, label_set in self.featurizer.label_sets.items()}
        known = set().union(*heads.values())
        unknown = sorted(extra.labels - known)
        if unknown:
            where = [extra.where[label] for label in unknown if label in extra.where]
            raise ValueError(f"dictionary types {unknown} are not types of this model "
                             f"({', '.join(sorted(known))}): it has no tags for them"
                             + (f" (given at {', '.join(where)})" if where else ""))
        given = {word for word, _ in extra.items()}  # the types once these entries are in (a word given again
        kept = [] if self.dictionary is None else self.dictionary.items()  # takes the new one)
        wanted = extra.labels | {label for word, label in kept if word not in given}
        if not any(wanted <= types for types in heads.values()):
            where = [extra.where[label] for label in sorted(extra.labels) if label in extra.where]
            raise ValueError(f"dictionary types {sorted(wanted)} are not all types of one head "
                             f"({'; '.join(f'{n}: {sorted(t)}' for n, t in heads.items())}): no head could tag "
                             "with them" + (f" (given at {', '.join(where)})" if where else ""))
        merged = self.dictionary.copy() if self.dictionary is not None else Dictionary()
        merged.update(extra)
        self.dictionary = merged  # whole: a tag_batch running meanwhile keeps the dictionary it started with
        return len(self.dictionary)

    def describe(self) -> dict[str, Any]:
        """What the model is, as ``lexner info`` and ``lexner serve``'s ``GET /model`` show it: its kind, entity
        types (default head), every head's types, its size in parameters, the precision its directory stores
        (float16 after ``export --half``), its piece length (see :meth:`set_piece_length`), its lexicon's size,
        how it runs (torch or ONNX Runtime), how many words its typed dictionary forces (0: none) and its model
        card (how it was trained, from ``config.json``)."""
        featurizer = self.featurizer
        return {"model": self.name, "entity_types": featurizer.entity_types,
                "label_sets": {name: ls.entity_types for name, ls in featurizer.label_sets.items()},
                "parameters": sum(p.numel() for p in self.parameters()),
                "stored": "float16" if self.stored_half else "float32", "piece_length": self.max_length,
                "lexicon_words": len(featurizer.lexicon) if featurizer.lexicon is not None else None,
                "runtime": self.runtime, "dictionary_words": len(self.dictionary) if self.dictionary else 0,
                "card": self.metadata.get("card", {})}

    def check_head(self, labels: str | None) -> None:
        """Raise ``ValueError`` unless this model can tag with head ``labels`` (None: the default one): the head
        exists and knows every type of the typed dictionary; ``TypeError`` if ``labels`` is not a name."""
        if labels is not None and not isinstance(labels, str):
            raise TypeError(f"labels must be a head's name (a str) or None, got {type(labels).__name__}")
        label_set = self.featurizer.label_set(labels)  # an unknown name raises
        missing = sorted(self.dictionary.labels - set(label_set.entity_types)) if self.dictionary is not None else []
        if missing:
            head = f"head {labels!r}" if labels is not None else "the default head"
            raise ValueError(f"the dictionary's types {missing} are not types of {head} "
                             f"({', '.join(label_set.entity_types)}); tag with a head that has them, or leave them "
                             "out of the dictionary")

    def tag(self, text: str, labels: str | None = None) -> list[Entity]:
        """Entities of one text, with offsets into ``text``; ``labels``: the head of a multi-task model to
        tag with (None: the default one)."""
        if not isinstance(text, str):
            raise TypeError(f"tag() expects a str, got {type(text).__name__}")
        return self.tag_batch([text], labels=labels)[0]

    def tag_batch(self, texts: Iterable[str], batch_size: int = 64, labels: str | None = None,
                  progress: Callable[[int], None] | None = None) -> list[list[Entity]]:
        """Entities of each text.  Each line is tagged on its own, whitespace handled as ``lexner.tagging``
        describes; lines longer than ``max_length`` are tagged in pieces; pieces are grouped by length into
        batches of at most ``batch_size`` pieces and ``batch_tokens`` padded tokens (see
        ``tokens_include_words``).  ``labels``: as in :meth:`tag`; ``progress``: called now and then with how
        many texts are done.  The pipeline is :func:`lexner.tagging.tag_texts`; this model's part is
        :meth:`decode_pieces`."""
        return tag_texts(self, texts, batch_size, labels, progress)

    def decode_pieces(self, pieces: list[str], constraints: list[dict], batch_size: int,
                      labels: str | None, done: Callable[[int], None] | None = None) -> list[list[Span]]:
        """The spans of each piece (a whitespace-free view, see :mod:`lexner.tagging`) under its constraints
        (``{position: allowed tag prefixes or tags}``), in the label set ``labels``; ``done``, if given, is
        called after each batch with how many pieces are decoded."""
        encoded = self.featurizer.encode_many(pieces)
        for item, constrained in zip(encoded, constraints):
            if constrained:
                item["constraints"] = constrained
        # group by token count (see tokens_include_words): little padding, which FLAT pays quadratically; a
        # batch holds at most batch_size pieces and batch_tokens padded tokens (so few long ones)
        with_words = self.tokens_include_words
        tokens = [len(e["chars"]) + (len(e.get("word_ids", ())) if with_words else 0) for e in encoded]
        chunks: list[list[int]] = []
        for j in sorted(range(len(pieces)), key=tokens.__getitem__):
            if chunks and len(chunks[-1]) < batch_size and (len(chunks[-1]) + 1) * tokens[j] <= self.batch_tokens:
                chunks[-1].append(j)
            else:
                chunks.append([j])
        found: list = [None] * len(pieces)  # every piece's spans are set below (no empty list made per piece)
        decoded = 0
        for chunk in chunks:
            batch = self.featurizer.collate([encoded[j] for j in chunk], labels).to(self.device)
            for j, spans in zip(chunk, self.featurizer.decode_paths(self.decode(batch), labels)):
                found[j] = spans
            decoded += len(chunk)
            if done is not None:
                done(decoded)
        return found

    def set_piece_length(self, length: int) -> None:
        """Tag texts longer than ``length`` characters in pieces of at most ``length`` (see lexner.tagging); the
        windows of one over-long sentence overlap by a quarter of that, at most the default ``overlap``.  Saved
        with the model; training sets it from the training sentences (lexner.tagging.piece_length)."""
        if not isinstance(length, int) or isinstance(length, bool) or not 1 <= length <= PIECE_LENGTH_LIMIT:
            raise ValueError(f"the piece length must be an integer from 1 to {PIECE_LENGTH_LIMIT}, got {length!r}")
        overlap = min(Tagger.overlap, length // 4)
        # one attribute at a time, in the order that keeps every pair a thread tagging meanwhile may read a valid
        # one (overlap at most a quarter of the length): the overlap first when shrinking, the length first when
        # growing (a length of 9 read with the old overlap of 50 would have made windows that never advance)
        if length < self.max_length:
            self.overlap, self.max_length = overlap, length
        else:
            self.max_length, self.overlap = length, overlap

    # --- persistence -----------------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike, extra: Mapping[str, Any] | None = None,
             half: bool | None = None, more: Callable[[Path], None] | None = None) -> None:
        """Write ``config.json``, ``model.safetensors`` and the vocabularies into ``directory``: a new or empty
        directory, or one holding a lexner model and nothing else, which is replaced whole (no file of the old
        model stays behind to be read with the new one: another model's ``lexicon.json`` would be).  Anything
        else — a folder with other files, a file — is refused with ``ValueError`` before anything is written.

        ``extra``: top-level ``config.json`` keys beside lexner's own (the model card, the runtime); None: those
        the model was loaded with (:attr:`metadata`), so a loaded model saved again keeps its card and runtime.
        ``half``: store floating-point weights as float16 (about half the size; they are float32 again when
        loaded, so predictions may differ very slightly from the float32 model's); None: as the directory the model
        was loaded from stores them (float32 for a model built in memory), so the bundled model stays float16.
        ``more``: called with the folder being written once lexner's files are in it, to add files of its own
        (an export's ONNX graphs), which then land with the model or not at all."""
        extra = self.metadata if extra is None else extra
        half = self.stored_half if half is None else half
        directory = expand_home(directory)  # "~/models/m", where lexner.load("~/models/m") reads it
        filled = model_target(directory)
        # built beside it and swapped in (an empty folder too when a caller adds files): a failure leaves nothing
        if filled or not directory.exists() or more is not None:  # half-written
            with atomic_directory(directory.resolve()) as built:  # a link: the folder it points to
                self._write(built, extra, half)
                if more is not None:
                    more(built)
        else:
            self._write(directory, extra, half)
            if more is not None:
                more(directory)

    def _write(self, directory: Path, extra: Mapping[str, Any] | None, half: bool) -> None:
        """:meth:`save`'s files, written into the existing ``directory`` (nothing written if a weight cannot be
        stored in float16)."""
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        if (key := _absurd_weight(state)) is not None:
            raise ValueError(f"{key} holds NaN, infinite or absurdly large values (largest magnitude "
                             f"{state[key].abs().max().item():g}; beyond ±{MAX_WEIGHT:g} a model does not load)")
        if half:
            halved = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
            for name, value in halved.items():
                if value.is_floating_point() and not torch.isfinite(value).all():
                    raise ValueError(f"{name} holds values float16 cannot store (beyond ±65504, or not finite: "
                                     f"largest magnitude {state[name].abs().max().item():g}); save it in float32")
            state = halved
        meta = {
            "format_version": FORMAT_VERSION,
            "model": self.name,
            "config": dataclasses.asdict(self.config),
            "entity_types": self.featurizer.entity_types,
            **(extra or {}),
            "piece_length": self.max_length,
        }
        if self.featurizer.multi_task:  # one head per label set, the default one first
            meta["label_sets"] = {name: ls.entity_types for name, ls in self.featurizer.label_sets.items()}
        write_json(directory / CONFIG_FILE, meta)
        self.featurizer.save(directory)
        write_bytes(directory / WEIGHTS_FILE, save(state, metadata={"format": "pt", "model": self.name}))

    @staticmethod
    def load(directory: str | os.PathLike, device: str | torch.device = "cpu") -> "Tagger":
        """Rebuild the tagger saved in ``directory`` (any registered model) on ``device``."""
        from . import model_class

        directory = Path(directory)
        if directory.exists() and not directory.is_dir():
            raise ModelFormatError(f"{directory}: a file, not a model directory")
        if not directory.is_dir():
            from ..api import DEFAULT_MODEL

            bundled = f" (the bundled model is {DEFAULT_MODEL})" if directory.name == DEFAULT_MODEL.name else ""
            raise FileNotFoundError(f"{directory}: no such model directory{bundled}")
        for required in (CONFIG_FILE, WEIGHTS_FILE):
            if not (directory / required).is_file():
                inside = directory / "model"
                hint = (f"a training run's folder? its model is {inside}" if (inside / CONFIG_FILE).is_file()
                        else "is this a lexner model directory?")
                raise ModelFormatError(f"{directory}: missing {required}; {hint}")
        config_file, weights_file = directory / CONFIG_FILE, directory / WEIGHTS_FILE
        try:
            meta = read_json(config_file)
        except DataFormatError as err:
            raise ModelFormatError(str(err)) from None
        if not isinstance(meta, dict):
            raise ModelFormatError(f"{config_file}: expected a JSON object")
        version = meta.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ModelFormatError(f"{config_file}: 'format_version' missing or not a positive integer "
                                   f"(got {version!r}); a damaged file?")
        if version > FORMAT_VERSION:
            raise ModelFormatError(
                f"{config_file}: format_version {version!r}; this lexner reads versions up to "
                f"{FORMAT_VERSION} (upgrade lexner to load it)"
            )
        if not isinstance(meta.get("card", {}), dict):
            raise ModelFormatError(f"{config_file}: 'card' (the model card) must be a JSON object, "
                                   f"got {type(meta['card']).__name__}")
        name, types = meta.get("model"), meta.get("entity_types")
        if not isinstance(name, str):
            raise ModelFormatError(f"{config_file}: 'model' must name a tagger, got {name!r}")
        try:
            cls = model_class(name)
        except ModelFormatError as err:
            raise ModelFormatError(f"{config_file}: {err}") from None
        if not _distinct_types(types):
            raise ModelFormatError(f"{config_file}: 'entity_types' must be a list of at most {MAX_ENTITY_TYPES} "
                                   f"distinct type names (each {TYPE_NAME_RULE})")
        label_sets = meta.get("label_sets")
        if label_sets is not None:
            if not (isinstance(label_sets, dict) and label_sets and all(
                    isinstance(k, str) and LABEL_SET_NAME.fullmatch(k) and _distinct_types(v)
                    for k, v in label_sets.items())):
                raise ModelFormatError(f"{config_file}: 'label_sets' must map names (letters, digits, _ or -) to "
                                       f"lists of at most {MAX_ENTITY_TYPES} distinct type names (each "
                                       f"{TYPE_NAME_RULE})")
            if list(label_sets.values())[0] != types:
                raise ModelFormatError(f"{config_file}: the first of 'label_sets' must be 'entity_types'")
            types = label_sets
        config = _checked_config(cls, meta.get("config"), config_file)
        try:
            featurizer = Featurizer.load(directory, types)
        except (DataFormatError, FileNotFoundError) as err:  # a damaged file, or one of the model's files missing
            raise ModelFormatError(str(err)) from None
        if cls.inputs(config).words and featurizer.lexicon is None:
            raise ModelFormatError(f"{directory / LEXICON_FILE}: missing, and a {name} model reads lexicon words")
        model = _build_for_loading(cls, config, featurizer, config_file)  # no memory committed yet
        _check_weights_header(weights_file, {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()})
        try:
            with utf8_name(weights_file) as name:
                state = {current_key(k): v for k, v in load_file(name).items()}
        except (SafetensorError, OSError) as err:
            raise ModelFormatError(f"{weights_file}: not a readable safetensors file ({err})") from None
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ModelFormatError(f"{weights_file}: weights do not match config.json: {err}") from None
        if (key := _absurd_weight(model.state_dict())) is not None:
            raise ModelFormatError(f"{weights_file}: {key} holds NaN, infinite or absurdly large values (beyond "
                                   f"±{MAX_WEIGHT:g}; trained weights stay far below)")
        for key, tensor in model.state_dict().items():
            if not tensor.is_floating_point() and tensor.numel() and int(tensor.min()) < 0:
                raise ModelFormatError(f"{weights_file}: {key} holds negative counts")
        try:  # models saved before it was recorded: the default
            model.set_piece_length(meta.get("piece_length", Tagger.max_length))
        except ValueError as err:
            raise ModelFormatError(f"{config_file}: 'piece_length': {err}") from None
        model.metadata = {k: v for k, v in meta.items() if k not in WRITTEN_BY_SAVE}
        for key in meta:  # other keys are the saver's own metadata (save(extra=...)), but a near miss is a typo
            if key not in CONFIG_KEYS and (near := difflib.get_close_matches(key, CONFIG_KEYS, n=1, cutoff=0.8)):
                log.warning("%s: %r is not a key lexner reads; did you mean %r?", config_file, key, near[0])
        model.source = directory  # where it was loaded from (worker processes load it again from there)
        model.stored_half = any(v.dtype == torch.float16 for v in state.values())
        return model.to(device).eval()
