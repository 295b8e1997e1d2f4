"""A model-agnostic trainer: bucketed batches, optimiser and schedule, early stopping on dev F1,
atomic best-model and epoch checkpoints, ``resume``, and a JSON-lines log."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import platform
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from . import distributed
from .augment import Augmenter, check_methods
from .checkpoint import STATE_FILE, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .data import Sentence, check_sentences
from .features import Batch
from .evaluate import evaluate
from .export import provenance, recordable
from .fileio import (DataFormatError, atomic_directory, discard_directory, old_versions, read_json,
                     recover_directory, stale_copies, write_bytes, write_json)
from .models import Tagger
from .models.base import CONFIG_FILE as MODEL_CONFIG, WEIGHTS_FILE
from .models.embedder import current_key
from .tagging import iter_model_lines, piece_length
from .train_config import TASK_PREFIX, TrainConfig
from .vocab import UNK_ID

log = logging.getLogger(__name__)

MODEL_DIR = "model"  # the best model so far, a loadable model directory
CHECKPOINT_DIR = "checkpoint"  # the state after the last finished epoch, for --resume
LOG_FILE = "log.jsonl"
RESULTS_FILE = "results.json"
CONFIG_FILE = "train_config.json"
RUN_FILES = (MODEL_DIR, CHECKPOINT_DIR, LOG_FILE, RESULTS_FILE, CONFIG_FILE)  # what a run writes into out_dir
REPLACED_DIR = ".replaced"  # a run replaced by --force, kept until the new run's first checkpoint
SET_ASIDE_MARK = ".complete"  # in REPLACED_DIR once all of the replaced run is in it


class TrainingError(RuntimeError):
    pass


class WeightAverage:
    """An exponential moving average of parameters (Polyak averaging): after step t each average moves towards
    its parameter by ``1 - d`` with ``d = min(decay, (1 + t) / (10 + t))``, so early steps are not frozen in
    by a decay meant for a long run."""

    def __init__(self, params: Sequence[torch.nn.Parameter], decay: float):
        self.params = list(params)
        self.decay = decay
        self.averages = [p.detach().clone() for p in self.params]

    def update(self, step: int) -> None:
        weight = 1.0 - min(self.decay, (1.0 + step) / (10.0 + step))
        with torch.no_grad():
            for average, p in zip(self.averages, self.params):
                average.lerp_(p, weight)

    def load(self, averages: Sequence[torch.Tensor]) -> None:
        if len(averages) != len(self.params) or any(a.shape != p.shape for a, p in zip(averages, self.params)):
            raise TrainingError("the checkpoint's weight averages do not match the model's parameters")
        self.averages = [a.to(p.device, p.dtype).clone() for a, p in zip(averages, self.params)]

    def _swap(self) -> None:
        for k, p in enumerate(self.params):  # exchanges the tensors, copying nothing
            p.data, self.averages[k] = self.averages[k], p.data

    @contextlib.contextmanager
    def swapped(self) -> Iterator[None]:
        """The parameters hold the averages inside the block, their own values again after it."""
        self._swap()
        try:
            yield
        finally:
            self._swap()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


LOCK_FILE = ".lock"


def previous_run(out_dir: Path) -> list[str]:
    """What an earlier run left in ``out_dir``: the RUN_FILES present, with the previous versions that
    :class:`lexner.fileio.atomic_directory` may have left (:func:`lexner.fileio.old_versions`)."""
    found = []
    for name in RUN_FILES:
        found += [name] if (out_dir / name).exists() else []
        found += [old.name for old in old_versions(out_dir / name)]
    return found


def saved_folder_around(path: Path) -> Path | None:
    """The folder that ``path`` is, or lies inside, whose files a save replaces whole: a model directory
    (``path`` itself: its config and weights) or a run's ``model/`` or ``checkpoint/`` (``path`` or a folder
    above it); None if none.  (A model directory above ``path`` is not replaced while it holds anything else.)"""
    path = path.resolve()
    if (path / MODEL_CONFIG).is_file() and (path / WEIGHTS_FILE).is_file():
        return path
    for folder in (path, *path.parents):
        if folder.name in (MODEL_DIR, CHECKPOINT_DIR) and any((folder.parent / n).is_file()
                                                              for n in (LOG_FILE, CONFIG_FILE)):
            return folder
    return None


def check_out_dir(out_dir: str | os.PathLike, resume: bool = False, replace: bool = False,
                  probe_lock: bool = True) -> None:
    """Refuse, before any work, an output folder a run cannot write or would lose an earlier run in: a path that
    is not a folder, one that is or lies inside a model directory or another run's ``model/`` or
    ``checkpoint/`` (replaced whole when that is saved again), one under a folder that cannot be written, one
    a training is running in (``probe_lock``: the caller does not hold its lock), or one holding a previous run
    (unless it is resumed, ``resume``, or replaced, ``replace``)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise TrainingError(f"{out_dir} exists and is not a directory; give another --out")
    if (inside := saved_folder_around(out_dir)) is not None:
        where = "is" if inside == out_dir.resolve() else f"lies inside {inside}, which is"
        raise TrainingError(f"{out_dir} {where} a saved model or checkpoint, replaced whole when saved again "
                            "(a run there would be lost); give another --out")
    existing = next(p for p in (out_dir, *out_dir.absolute().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        to_create = f" (to create {out_dir})" if existing != out_dir else ""
        raise TrainingError(f"cannot write into {existing}{to_create}; give another --out")
    if probe_lock and (out_dir / LOCK_FILE).exists():
        lock_directory(out_dir).close()  # a running training's folder: refused naming it
    found = previous_run(out_dir)
    if found and not (resume or replace):
        raise TrainingError(f"{out_dir} holds a previous run ({', '.join(found)}); give --resume (Trainer.resume()) "
                            "to continue it, --force (Trainer(replace=True)) to replace it, or another --out")


def set_aside_previous_run(out_dir: Path) -> None:
    """``--force``: move what an earlier run wrote into ``out_dir`` (:func:`previous_run`; nothing else in the
    folder) into ``out_dir/.replaced``, deleted once the new run has written its first checkpoint.  A
    ``.replaced`` left by a ``--force`` run that stopped before its first checkpoint still holds the run being
    replaced: it stays, and what that attempt wrote is removed."""
    aside = out_dir / REPLACED_DIR
    remove_stale_copies(aside)  # what a stopped removal of an earlier .replaced left
    found = previous_run(out_dir)
    if aside.is_dir() and not (aside / SET_ASIDE_MARK).exists() and not any((aside / n).exists() for n in found):
        # a set-aside stopped part-way (or the lexner before the mark left it, nothing of the same names here):
        # what is still here belongs to the run being replaced too
        for name in found:
            os.replace(out_dir / name, aside / name)
        (aside / SET_ASIDE_MARK).touch()
        log.info("the previous run in %s is set aside in %s (finishing a --force run's stopped set-aside)", out_dir,
                 aside)
        return
    if not found:
        return
    if aside.exists() and not (out_dir / CHECKPOINT_DIR).exists():
        for name in found:
            path = out_dir / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        log.info("%s still holds the run being replaced (the last --force run here stopped before its first "
                 "checkpoint); that attempt's files are removed", aside)
        return
    if aside.exists():  # the attempt that set it aside reached a checkpoint: it is the run being replaced now
        discard_directory(aside)
    aside.mkdir()
    for name in found:
        os.replace(out_dir / name, aside / name)
    (aside / SET_ASIDE_MARK).touch()  # complete: a stop before this mark is finished by the next --force
    log.info("the previous run in %s is set aside in %s until this run's first checkpoint", out_dir, aside)


def remove_stale_copies(final: Path) -> None:
    """Remove what stopped saves and removals left beside ``final`` (:func:`lexner.fileio.stale_copies`); only
    for a training holding the folder's lock."""
    if stale := stale_copies(final):
        for folder in stale:
            shutil.rmtree(folder)
        log.info("removed %d folder(s) a stopped save or removal of %s left", len(stale), final)


LOCKED_BYTE = 1 << 20  # Windows locks a byte range, unreadable to others: one far past the pid the file holds


def _lock_exclusively(handle) -> None:
    """Locks an open file for this process or raises OSError at once: ``flock`` on POSIX, ``msvcrt.locking``
    of one byte on Windows (released, like flock, when the file is closed or the process ends)."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        handle.seek(LOCKED_BYTE)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        return
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)


def lock_directory(directory: Path):
    """An exclusive lock on ``directory`` (a ``.lock`` file holding the owner's pid), held while the returned
    file stays open; a second training into the same directory fails at once, naming the holder."""
    import os

    handle = open(directory / LOCK_FILE, "a+", encoding="utf-8")
    try:
        _lock_exclusively(handle)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise TrainingError(f"{directory} is in use by another training (pid {holder}); give another --out, "
                            "or wait for it to finish") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def make_optimizer(groups: list[dict], config: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser of ``config``, as one fused kernel per step where torch has it for the device.

    Adam and SGD update every parameter at every step, the large embedding tables included (their rows keep
    moving on their momentum when absent from the batch).  torch's default on CPU is a Python loop of several
    elementwise kernels per parameter; the fused kernel computes the same update in one pass over memory
    (see benchmarks/README.md for the effect on training speed) and differs from it only by
    floating-point rounding (``tests/test_train.py`` checks the losses of the first steps agree).
    """
    kwargs = {"lr": config.lr, "weight_decay": config.weight_decay}
    if config.optimizer == "adam":
        factory = torch.optim.Adam
    else:
        factory, kwargs["momentum"] = torch.optim.SGD, config.momentum
    try:
        return factory(groups, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):  # an older torch, or a device without the fused kernel
        return factory(groups, **kwargs)


def read_as_unknown(batch: Batch, p: float, generator: torch.Generator) -> None:
    """``--unk-dropout``: each real character's and bigram's id in ``batch`` replaced by the unknown id with
    probability ``p`` (independently; padding stays padding).  The batch gets new tensors (its own are left as
    collation made them)."""
    for name in ("chars", "bigrams"):
        ids = getattr(batch, name)
        dropped = (torch.rand(ids.shape, generator=generator) < p) & batch.mask
        setattr(batch, name, ids.masked_fill(dropped, UNK_ID))


POOL_BATCHES = 50  # bucketed_batches sorts sentences by length within pools of this many batches


def batch_sizes(n: int, batch_size: int, min_size: int = 1) -> list[int]:
    """The sizes of :func:`bucketed_batches`'s batches of ``n`` sentences, in the order they are cut: each pool
    of ``POOL_BATCHES`` batches cut into ``batch_size`` sentences, a batch left with fewer than ``min_size``
    joining the one cut before it."""
    sizes: list[int] = []
    pool = batch_size * POOL_BATCHES
    for k in range(0, n, pool):
        m = min(pool, n - k)
        for j in range(0, m, batch_size):
            size = min(batch_size, m - j)
            if size < min_size and sizes:
                sizes[-1] += size
            else:
                sizes.append(size)
    return sizes


def bucketed_batches(lengths: Sequence[int], batch_size: int, rng: random.Random,
                     min_size: int = 1) -> list[list[int]]:
    """Shuffle, sort within pools of 50 batches by length, cut into batches, shuffle the batches.

    Sentences of similar length share a batch (little padding) while every epoch sees a new order.  A batch
    left with fewer than ``min_size`` sentences (the last of a pool) joins the one cut before it: under
    ``torchrun`` every process needs a sentence of every batch (``min_size`` = the number of processes), and
    skipping the short batch would leave out the same longest sentences of the last pool every epoch.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = batch_size * POOL_BATCHES
    ranked = [i for k in range(0, len(order), pool) for i in sorted(order[k : k + pool], key=lambda i: lengths[i])]
    batches, start = [], 0
    for size in batch_sizes(len(ranked), batch_size, min_size):
        batches.append(ranked[start : start + size])
        start += size
    rng.shuffle(batches)
    return batches


class BucketBatchSampler(torch.utils.data.Sampler):
    """:func:`bucketed_batches` reshuffled every epoch (``set_epoch``), each rank taking its share.

    Every rank draws the same global batches from the same seeded generator and keeps the sentences
    ``rank::world_size`` of each, as ``DistributedSampler`` does with indices.  A global batch is thus the batch
    a single process with the same ``batch_size`` trains on, which makes N processes equal one — except a batch
    left with fewer sentences than processes, which joins the one before it (:func:`bucketed_batches`).

    Multi-task training (``tasks[i]`` = the task of sentence i): a batch holds sentences of one task only.
    With ``temperature`` 1 every sentence is seen once per epoch; above 1, task t gets a share of the epoch's
    batches proportional to ``n_t ** (1 / temperature)`` (small corpora are repeated, large ones see a part
    of their sentences; about the same number of batches as at temperature 1: each share is rounded, and a task
    keeps at least one).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 tasks: Sequence[int] | None = None, temperature: float = 1.0):
        self.lengths, self.batch_size, self.seed = list(lengths), batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        tasks = [0] * len(self.lengths) if tasks is None else list(tasks)
        self.members = [[i for i, t in enumerate(tasks) if t == task] for task in range(max(tasks, default=0) + 1)]
        full = [len(batch_sizes(len(m), batch_size, world_size)) for m in self.members]  # each sentence once
        logs = [math.log(len(m)) if m else -math.inf for m in self.members]  # in log space: n ** (1 / 0.01) overflows
        weights = [math.exp((x - max(logs)) / temperature) for x in logs]
        self.counts = full if temperature == 1 else [
            max(1, round(sum(full) * w / sum(weights))) if m else 0 for m, w in zip(self.members, weights)]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        """This epoch's global batches."""
        rng = random.Random(self.seed * 100_003 + self.epoch)
        if len(self.members) == 1:
            return bucketed_batches(self.lengths, self.batch_size, rng, self.world_size)
        out = []
        for members, count in zip(self.members, self.counts):
            drawn: list[list[int]] = []
            while len(drawn) < count:  # a repeated corpus is reshuffled for each pass
                local = bucketed_batches([self.lengths[i] for i in members], self.batch_size, rng, self.world_size)
                drawn.extend([members[j] for j in batch] for batch in local)
            out.extend(drawn[:count])
        rng.shuffle(out)
        return out

    def shards(self) -> Iterator[tuple[list[int], int]]:
        """This rank's share of each of this epoch's global batches, with the global batch's size (every global
        batch gives each rank a sentence: see :func:`bucketed_batches`; :class:`Trainer` refuses a batch size or
        a corpus smaller than the number of processes)."""
        for batch in self.batches():
            yield batch[self.rank :: self.world_size], len(batch)

    def __iter__(self) -> Iterator[list[int]]:
        return (shard for shard, _ in self.shards())

    def __len__(self) -> int:
        return sum(self.counts)


@dataclass
class Task:
    """One corpus of a training: its sentences train the head of label set ``head`` — by default the one named
    like the task, ``name`` (None: the default head of a one-head model) — its dev set takes part in model
    selection, its test set is scored at the end.  Several tasks may train one head (e.g. Weibo's named
    mentions mapped into MSRA's types, see :data:`lexner.data.TYPE_MAPS`); scores are reported per task."""

    name: str | None
    train: Sequence[Sentence]
    dev: Sequence[Sentence]
    test: Sequence[Sentence] | None = None
    head: str | None = None
    type_map: dict[str, str] | None = None  # how the corpus's own types were renamed into the head's, if they were

    def __post_init__(self) -> None:
        where = f"task {self.name}: " if self.name else ""
        check_sentences(self.train, f"{where}the training data")
        check_sentences(self.dev, f"{where}the dev data")
        if self.test is not None:
            check_sentences(self.test, f"{where}the test data")

    @property
    def labels(self) -> str | None:
        """The label set (head) this task trains and is scored with."""
        return self.head if self.head is not None else self.name


TAUGHT_BY = "\0teachers"  # data_fingerprints' keys beside the tasks' names (no task is named so)
UNLABELLED = "\0unlabelled"


def data_fingerprints(tasks: Sequence[Task], teachers: Sequence = (), unlabelled: Sequence[str] = ()
                      ) -> dict[str, str]:
    """A SHA-256 of each task's training and dev sentences (texts and spans), by task name ("" for a one-head
    model), and with distillation of the teachers (each one's task and weights) and of the unlabelled texts: a
    checkpoint records them, so that ``--resume`` on other data — another file, a dev split carved otherwise,
    other teachers — is refused instead of comparing dev scores of different sentences or going on with
    soft targets of another kind."""
    out = {}
    for task in tasks:
        digest = hashlib.sha256()
        for part in (task.train, task.dev):
            for s in part:
                digest.update(json.dumps([s.text, [list(span) for span in s.spans]], ensure_ascii=False).encode())
            digest.update(b"\0")
        out[task.name or ""] = digest.hexdigest()
    if teachers:
        digest = hashlib.sha256()
        for teacher in teachers:
            scope, teacher = teacher if isinstance(teacher, tuple) else (None, teacher)
            digest.update(json.dumps(scope).encode())
            for name, value in sorted(teacher.state_dict().items()):
                digest.update(name.encode())
                digest.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        out[TAUGHT_BY] = digest.hexdigest()
    if unlabelled:
        out[UNLABELLED] = hashlib.sha256("\n".join(unlabelled).encode()).hexdigest()
    return out


def changed_inputs(recorded: dict[str, str], now: dict[str, str]) -> list[str]:
    """What differs between a checkpoint's :func:`data_fingerprints` and this run's, in words (none: the
    same).  A checkpoint distilled before teachers and unlabelled texts were recorded has no word on them."""
    older = TAUGHT_BY in now and TAUGHT_BY not in recorded
    changed = sorted(k for k in now.keys() | recorded.keys()
                     if now.get(k) != recorded.get(k) and not (older and k in (TAUGHT_BY, UNLABELLED)))
    shown = {TAUGHT_BY: "other teachers (--teacher)", UNLABELLED: "other unlabelled texts (--unlabelled)"}
    sentences = [name or "the training" for name in changed if name not in shown]
    return ([f"other sentences ({', '.join(sentences)} data: its training or dev split differs)"] if sentences
            else []) + [shown[k] for k in changed if k in shown]


def teachers_by_task(tasks: Sequence[Task], teachers: Sequence) -> dict[str | None, list]:
    """Each task's teachers (by task name): ``teachers`` holds taggers, which teach every task, and
    ``(task name, tagger)`` pairs, which teach the task of that name alone."""
    names = [task.name for task in tasks]
    out: dict[str | None, list] = {name: [] for name in names}
    for teacher in teachers:
        scope, teacher = teacher if isinstance(teacher, tuple) else (None, teacher)
        if scope is None:
            for name in names:
                out[name].append(teacher)
        elif scope in out:
            out[scope].append(teacher)
        elif names == [None]:
            raise TrainingError(f"a teacher for task {scope!r}: this training has one task, which every teacher "
                                "teaches (give the teacher without a task name)")
        else:
            raise TrainingError(f"a teacher for task {scope!r}: no such task; the tasks are {', '.join(names)}")
    for name, given in out.items():  # a teacher twice would only count double in its task's ensemble: a slip
        keys = [Path(t).resolve() if isinstance(t, (str, os.PathLike)) else id(t) for t in given]
        twice = next((t for t, key in zip(given, keys) if keys.count(key) > 1), None)
        if twice is not None:
            what = f"task {name!r}" if name is not None else "the training"
            raise TrainingError(f"teacher {twice} is given twice for {what}; give each teacher once (an ensemble "
                                "averages its members: a repeated one would only count double)")
    return out


def cut_long(sentences: Sequence[Sentence], max_length: int) -> list[Sentence]:
    """Cut sentences longer than ``max_length`` into pieces, never through an entity where avoidable."""
    if max_length <= 0:
        return list(sentences)
    out = []
    for s in sentences:
        start = 0
        while len(s.text) - start > max_length:
            end = start + max_length
            for span in s.spans:  # move the cut before an entity it would split
                if span.start < end < span.end and span.start > start:
                    end = span.start
            out.append(_piece(s, start, end))
            start = end
        out.append(_piece(s, start, len(s.text)))
    return out


def _piece(s: Sentence, start: int, end: int) -> Sentence:
    spans = [type(sp)(max(sp.start, start) - start, min(sp.end, end) - start, sp.label)
             for sp in s.spans if sp.start < end and sp.end > start]
    return Sentence(s.text[start:end], spans)


LOSS_CHECK_STEPS = 32
"""On CUDA, the training loss is read from the device (and checked for NaN/inf) once every this many steps, so
that the host queues the next steps' kernels instead of waiting for each step to end; on the CPU, every step.
A loss that is not finite stops training naming its step either way; on CUDA up to this many steps more have run
on the spoilt weights by then, which the stop discards (the last epoch's checkpoint is kept)."""

KEPT_ON_RESUME = ("optimizer", "ema", "distill")
"""Settings a resumed run must share with its checkpoint: the optimizer's saved state is another optimizer's,
averaged (ema) and raw dev scores must not be compared, and a distilled run goes on without its teachers as a
plain one (and a plain one would start distilling half-way)."""


FREE_ON_RESUME = ("bert_path", "lean", "block_elements", "checkpoint_elements")
"""Model settings a resumed run may change: where the pretrained encoder was read from (its weights come from
the checkpoint; its tokenizer must be the same, compared by :func:`_model_settings`) and how FLAT trades memory
for time (the same computation)."""


def _model_settings(model: Tagger) -> dict[str, Any]:
    """A model's settings (``--set``) as a checkpoint records them, with a fingerprint of its word-piece
    tokenizer, if it has one (``tokenizer``)."""
    config = model.config
    settings = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(vars(config))
    if (pieces := getattr(model.featurizer, "pieces", None)) is not None:  # its vocabulary, special tokens and
        vocab = sorted(pieces.tokenizer.get_vocab().items())               # how it reads a probe (casing, accents)
        settings["tokenizer"] = hashlib.sha256(json.dumps(
            [vocab, pieces.cls_id, pieces.sep_id, pieces.pad_id, pieces.encode(TOKENIZER_PROBE)],
            ensure_ascii=False).encode()).hexdigest()
    return settings


def _vocabularies(model: Tagger) -> str:
    """A fingerprint of what each embedding row and tag of ``model`` stands for: its characters, bigrams,
    lexicon words and every head's tags, in order.  A resume refuses a model built otherwise (the same sizes
    with the lexicon's files given in another order put every word's weights on another word)."""
    f = model.featurizer
    content = [f.chars.tokens, f.bigrams.tokens, f.lexicon.words if f.lexicon is not None else None,
               {name: list(label_set.tags) for name, label_set in f.label_sets.items()}]
    return hashlib.sha256(json.dumps(content, ensure_ascii=False).encode("utf-8", "surrogatepass")).hexdigest()


TOKENIZER_PROBE = "Apple CEO Zoë Smith, ＡＢＣ１２３ 2008年在北京 iPhone15 café"


def _kept_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """What of recorded model settings a resume must keep: all but :data:`FREE_ON_RESUME`, and of an encoder's
    configuration all but what only says where and by which version it was written (``_name_or_path``,
    ``transformers_version``, ``dtype``).  Applied to the checkpoint's record and to this run's alike (records
    written before this rule hold those keys too)."""
    kept = {k: v for k, v in settings.items() if k not in FREE_ON_RESUME}
    if isinstance(kept.get("bert_config"), dict):
        kept["bert_config"] = {k: v for k, v in kept["bert_config"].items()
                               if not k.startswith("_") and k not in ("transformers_version", "dtype", "torch_dtype")}
    return kept


def _by_key(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings with a nested configuration (an encoder's) spread out as ``bert_config.hidden_size``, so that an
    error can name the one key that differs."""
    out = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out.update({f"{key}.{inner}": v for inner, v in value.items()})
        else:
            out[key] = value
    return out


def _check_state(state: dict[str, Any], state_file: Path) -> None:
    """``DataFormatError`` naming ``state_file`` for a checkpoint value of the wrong kind or out of range (an
    edited or damaged file), before anything is restored from it."""
    def number(v):
        return type(v) in (int, float) and math.isfinite(v)

    epoch = state.get("epoch")
    checks = {"epoch": lambda v: type(v) is int and v >= 1, "step": lambda v: type(v) is int and v >= 0,
              "best_epoch": lambda v: type(v) is int and 0 <= v and (type(epoch) is not int or v <= epoch),
              "best_f1": lambda v: number(v) and -1 <= v <= 1,
              "model": lambda v: isinstance(v, dict) and all(isinstance(t, torch.Tensor) for t in v.values()),
              "optimizer": lambda v: isinstance(v, dict), "rng": lambda v: isinstance(v, dict),
              "rng_ranks": lambda v: isinstance(v, list) and all(isinstance(r, dict) for r in v)}
    if bad := [k for k, ok in checks.items() if k in state and not ok(state[k])]:
        raise DataFormatError(state_file, None, f"{', '.join(f'{k} {state[k]!r:.40}' for k in bad)}: not what a "
                                                "lexner trainer writes (damaged or edited)")


def _shown(value) -> str:
    return f"{value:g}" if isinstance(value, float) else (str(value) or "none")


class Trainer:
    """Trains one :class:`Tagger` and writes everything into ``out_dir``.

    ``out_dir/model/`` — the best model on dev (a loadable model directory, replaced atomically);
    ``out_dir/checkpoint/`` — the state after the last finished epoch (for ``resume``);
    ``out_dir/log.jsonl`` — one JSON object per epoch; ``out_dir/results.json`` — final scores.
    """

    def __init__(self, model: Tagger, config: TrainConfig, out_dir: str | Path, progress: bool = True,
                 replace: bool = False):
        """``replace``: a previous run in ``out_dir`` is set aside when this one starts and deleted after its first
        checkpoint (see :func:`set_aside_previous_run`); without it, and without a checkpoint :meth:`resume`
        continues, such a folder is refused (:func:`check_out_dir`)."""
        # a no-op unless launched by torchrun; a group joined here is left at the end of fit
        self.world, device, self._joined = distributed.setup(config.device)
        config = dataclasses.replace(config, device=device)
        self.model = model.to(config.device)
        model.source = None  # its weights change from here on: not what its directory holds (reload_recipe)
        self.config = config
        self.out_dir = Path(out_dir)
        self.replace = replace
        self.resume_asked = False  # resume() was called (whether or not there was a checkpoint)
        self.progress = progress and self.world.main
        self.amp_dtype = self._amp_dtype()
        # reading a step's loss waits for the device: on CUDA it is read (and checked) every LOSS_CHECK_STEPS steps
        self.check_every = 1 if torch.device(config.device).type == "cpu" else LOSS_CHECK_STEPS
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        if self.world.distributed:
            self.net: torch.nn.Module = DistributedDataParallel(
                self.model, device_ids=[self.model.device] if device.startswith("cuda") else None,
                # a shard may match no word (word cells unused); a multi-task step uses one head
                find_unused_parameters=model.reads.words or model.featurizer.multi_task)
        else:
            self.net = self.model
        # dropout masks from the seed (each rank its own), not from whatever torch's generator held (a resumed
        # run takes the checkpoint's generators instead)
        torch.manual_seed(config.seed * 7919 + self.world.rank)
        encoder = {id(p) for p in model.encoder_parameters()}
        params = [p for p in model.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if id(p) not in encoder], "lr_scale": 1.0}]
        if encoder:  # a pretrained encoder learns at encoder_lr, scaled by the same schedule
            groups.append({"params": [p for p in params if id(p) in encoder],
                           "lr_scale": config.encoder_lr / config.lr})
        self.optimizer = make_optimizer(groups, config)
        self.ema = WeightAverage(params, config.ema) if config.ema else None
        if config.augment:  # a method this model cannot use fails now, before any data is read
            try:
                check_methods(config.augment.split(","), model.featurizer.lexicon)
            except ValueError as err:
                raise TrainingError(str(err)) from None
        if config.unk_dropout and not model.reads.chars:
            raise TrainingError(f"unk_dropout: {model.name} does not read characters or bigrams (nothing to drop)")
        self.epoch = 0  # epochs finished
        self.checkpointed = 0  # the epoch the checkpoint on disk was written after (0: none)
        self.best_f1 = -1.0
        self.best_epoch = 0
        self.step = 0
        self.data: dict[str, str] | None = None  # data_fingerprints of the run (of the checkpoint resumed, if any)

    def _amp_dtype(self) -> torch.dtype | None:
        if not self.config.amp:
            return None
        if not self.config.device.startswith("cuda"):
            log.warning("--amp %s is for CUDA; training on %s in float32", self.config.amp, self.config.device)
            return None
        return torch.bfloat16 if self.config.amp == "bf16" else torch.float16

    def _lr_at(self, epoch: int, step_in_first_epoch: int | None, steps_per_epoch: int) -> float:
        lr = self.config.lr / (1.0 + self.config.lr_decay * epoch)
        warm = int(self.config.warmup * steps_per_epoch)
        if step_in_first_epoch is not None and step_in_first_epoch < warm:
            lr *= (step_in_first_epoch + 1) / warm
        return lr

    # --- checkpoints -----------------------------------------------------------------------------------
    def _save_checkpoint(self, rngs: list[dict[str, Any]]) -> None:
        """The checkpoint (rank 0); ``rngs``: every rank's random generators (:func:`distributed.gather`)."""
        save_checkpoint(self.out_dir / CHECKPOINT_DIR, {
            "epoch": self.epoch, "best_f1": self.best_f1, "best_epoch": self.best_epoch, "step": self.step,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "rng": rngs[0],
            **({"rng_ranks": rngs[1:]} if len(rngs) > 1 else {}),  # each rank its own dropout masks on --resume
            "train_config": dataclasses.asdict(self.config), "model_config": _model_settings(self.model),
            "vocabularies": _vocabularies(self.model),
            **({"data": self.data} if self.data else {}),
            **({"scaler": self.scaler.state_dict()} if self.scaler is not None else {}),
            **({"ema": self.ema.averages} if self.ema is not None else {}),
        })
        self.checkpointed = self.epoch

    def _check_out_dir(self) -> None:
        """:func:`check_out_dir` for this trainer: a folder whose run it resumed (or already trained) is its own."""
        check_out_dir(self.out_dir, resume=self.epoch > 0 or self.resume_asked, replace=self.replace,
                      probe_lock=getattr(self, "_lock", None) is None)  # resume() refused what it cannot continue

    def _take_lock(self) -> None:
        """Lock ``out_dir`` for this process (once): two trainings never write into one directory."""
        if getattr(self, "_lock", None) is None:
            self._made_dir = not self.out_dir.exists()
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._lock = lock_directory(self.out_dir)

    def _release_lock(self) -> None:
        """Unlock ``out_dir``; a folder this trainer created that holds nothing but the lock (a run refused while
        preparing) is removed, lock file first, while the lock is still held."""
        if getattr(self, "_lock", None) is not None:
            empty = self._made_dir and [p.name for p in self.out_dir.iterdir()] == [LOCK_FILE]
            if empty:
                with contextlib.suppress(OSError):  # Windows deletes no open file: then after it is closed
                    (self.out_dir / LOCK_FILE).unlink()
            self._lock.close()
            self._lock = None
            if empty:
                with contextlib.suppress(OSError):  # not empty after all: another process's files came meanwhile
                    (self.out_dir / LOCK_FILE).unlink(missing_ok=True)
                    self.out_dir.rmdir()

    def resume(self) -> bool:
        """Continue from ``out_dir/checkpoint`` if there is one; returns whether it did.  A checkpoint of another
        model (other weight names or shapes) is refused before anything is loaded; if it fails later, the trainer
        is half-loaded and should not be trained further."""
        self.resume_asked = True
        if self.world.main:
            self._take_lock()
        try:
            return self._resume()
        except BaseException:  # the directory is not this trainer's after all: another may take it
            self._release_lock()
            raise

    def _resume(self) -> bool:
        if self.world.main:  # one process puts things right, the others read after it
            for name in (MODEL_DIR, CHECKPOINT_DIR):  # a stop between a save's two renames: its previous version
                recover_directory(self.out_dir / name)
            for name in (MODEL_DIR, CHECKPOINT_DIR, REPLACED_DIR):
                remove_stale_copies(self.out_dir / name)
            aside = self.out_dir / REPLACED_DIR
            if (not self.replace and aside.is_dir() and not (aside / SET_ASIDE_MARK).exists()
                    and not any((self.out_dir / p.name).exists() for p in aside.iterdir() if p.name != CONFIG_FILE)):
                # a --force stopped while setting this run aside, and now --resume: the run is put back together
                for moved in [p for p in aside.iterdir()  # the stopped attempt's settings record gives way
                              if p.name == CONFIG_FILE or not (self.out_dir / p.name).exists()]:
                    os.replace(moved, self.out_dir / moved.name)
                if not any(aside.iterdir()):
                    aside.rmdir()
                    log.info("put back the files a stopped --force had set aside in %s", aside)
        distributed.barrier()
        path = self.out_dir / CHECKPOINT_DIR
        if not path.is_dir() and not self.replace and (self.out_dir / REPLACED_DIR).is_dir():
            raise TrainingError(f"{self.out_dir / REPLACED_DIR} holds the run that a --force run here was replacing "
                                "when it stopped, before its first checkpoint: give --force to replace it again, or "
                                f"move its files back into {self.out_dir} to --resume it")
        if not path.is_dir():
            # a run stopped before its first checkpoint left its config and perhaps its first epoch's model and
            # log line: resuming it is starting it again, those files replaced (decided once, by rank 0)
            unfinished = [p for p in previous_run(self.out_dir) if not p.startswith(CONFIG_FILE)]
            restart = distributed.broadcast(self._first_epoch_only(unfinished) if self.world.main else None)
            if not self.replace and unfinished and not restart:
                raise TrainingError(f"{self.out_dir} holds a previous run but no checkpoint to resume from; give "
                                    "--force (Trainer(replace=True)) to replace it, or another --out")
            if not self.replace and unfinished and self.world.main:
                for name in unfinished:
                    target = self.out_dir / name
                    discard_directory(target) if target.is_dir() else target.unlink()
                log.info("%s: no checkpoint yet (the run stopped in its first epoch's saves): it starts again, its "
                         "first epoch's files (%s) replaced", self.out_dir, ", ".join(unfinished))
            distributed.barrier()
            return False
        state = load_checkpoint(path)
        if missing := [k for k in ("model", "optimizer", "rng", "epoch", "best_f1", "best_epoch", "step")
                       if k not in state]:  # what every trainer has written
            raise TrainingError(f"{path / STATE_FILE} lacks {', '.join(missing)}: not a lexner trainer's checkpoint "
                                "(damaged or edited)")
        _check_state(state, path / STATE_FILE)
        previous = {**dataclasses.asdict(TrainConfig()), **state.get("train_config", {})}  # older: the defaults
        if changed := [f"--{key.replace('_', '-')} {_shown(previous[key])}, not {_shown(getattr(self.config, key))}"
                       for key in KEPT_ON_RESUME if previous[key] != getattr(self.config, key)]:
            raise TrainingError(f"{path} was written with {', '.join(changed)}: resume with the settings it was "
                                f"trained with (lexner {'distill' if previous['distill'] else 'train'})")
        # weights named as before the embedding tables moved into the Embedder are renamed
        weights = {current_key(k): v for k, v in state["model"].items()}
        own = self.model.state_dict()
        differ = [f"{k} {tuple(v.shape)} there, {tuple(own[k].shape)} here" for k, v in weights.items()
                  if k in own and v.shape != own[k].shape][:3]
        if missing := len(own.keys() - weights.keys()):
            differ.append(f"{missing} weight(s) missing there")
        if extra := len(weights.keys() - own.keys()):
            differ.append(f"{extra} weight(s) unknown here")
        if differ:
            found = "; ".join(differ)
            raise TrainingError(f"{path} was written for another model ({found}): resume with the model, data and "
                                "vocabulary settings it was trained with")
        if (vocabularies := state.get("vocabularies")) is not None and vocabularies != _vocabularies(self.model):
            raise TrainingError(f"{path} was written for a model whose characters, bigrams, lexicon words or tags "
                                "differ from this one's (same sizes, other entries or order): resume with the data, "
                                "vector and lexicon files, in the order, and the vocabulary options it was "
                                "trained with")
        if (saved := state.get("model_config")) is not None:
            now = _model_settings(self.model)
            if "tokenizer" not in saved:  # recorded before the tokenizer's fingerprint was: not compared
                now.pop("tokenizer", None)
            saved, now = _kept_settings(saved), _kept_settings(now)
        if saved is not None and saved != now:
            saved, now = _by_key(saved), _by_key(now)
            changed = [f"{k} {saved.get(k)!r:.60}, not {now.get(k)!r:.60}" for k in sorted(saved.keys() | now.keys())
                       if saved.get(k) != now.get(k)]
            raise TrainingError(f"{path} was written for a model with {', '.join(changed)} (--set): resume with the "
                                "model settings it was trained with")
        try:
            self.model.load_state_dict(weights)
            settings = [{k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups]
            self.optimizer.load_state_dict(state["optimizer"])  # (refuses another number of groups)
            for group, current in zip(self.optimizer.param_groups, settings):  # the saved moments, this run's
                group.update(current)  # settings (--encoder-lr, --weight-decay, --momentum may change)
            others = state.get("rng_ranks", [])  # ranks 1, 2, ... of the run that wrote it
            if self.world.rank == 0:
                set_rng_state(state["rng"])
            elif self.world.rank <= len(others):
                set_rng_state(others[self.world.rank - 1])
            # else (more processes than the run that wrote it): the rank's own seed, as at the start
            if self.scaler is not None and "scaler" in state:
                self.scaler.load_state_dict(state["scaler"])
            if self.ema is not None:
                self.ema.load(state["ema"])
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as err:
            raise DataFormatError(path / STATE_FILE, None, f"cannot be restored ({type(err).__name__}: {err}): the "
                                  "checkpoint is damaged or edited") from None
        self.epoch, self.best_f1, self.best_epoch, self.step = (
            state["epoch"], state["best_f1"], state["best_epoch"], state["step"])
        self.checkpointed = self.epoch
        self.data = state.get("data")  # checkpoints written before it was recorded: None, not checked
        self._adopt_later_model()
        log.info("resumed from %s after epoch %d (best dev F1 %.4f at epoch %d)",
                 path, self.epoch, self.best_f1, self.best_epoch)
        return True

    def _settings_record(self, cfg: TrainConfig) -> dict[str, Any]:
        """What ``train_config.json`` says: this run's settings and, for a resumed run, each resume's changes
        (``resumed``: after which epoch, each changed setting as [before, after]), so that settings no epoch
        ran with before a resume are not claimed for the whole run."""
        record: dict[str, Any] = dataclasses.asdict(cfg)
        path = self.out_dir / CONFIG_FILE
        if not (self.epoch and path.is_file()):
            return record
        before = read_json(path)
        if not isinstance(before, dict):
            return record
        history = before.pop("resumed", [])
        if changed := {k: [before[k], v] for k, v in record.items() if k in before and before[k] != v}:
            history.append({"after_epoch": self.epoch, "changed": changed})
        return {**record, **({"resumed": history} if history else {})}

    def _adopt_later_model(self) -> None:
        """An epoch's better model is saved before its checkpoint: a stop between the two leaves in ``model/`` the
        model of an epoch the checkpoint does not hold (the checkpoint's best is gone).  It stays the best so
        far, with the epoch and dev scores its card records, so that results name the model they score."""
        card_file = self.out_dir / MODEL_DIR / MODEL_CONFIG
        config = read_json(card_file) if card_file.is_file() else {}
        card = config.get("card") if isinstance(config, dict) else None
        epoch, dev = (card.get("epoch"), card.get("dev")) if isinstance(card, dict) else (None, None)
        try:
            f1 = selection_f1(dev) if isinstance(epoch, int) and epoch > self.epoch else None
        except (KeyError, TypeError, AttributeError):  # a card of another shape: nothing to adopt
            f1 = None
        if f1 is not None:
            log.warning("%s holds the model of epoch %d, saved after the checkpoint's epoch %d: it stays the best "
                        "model so far (dev F1 %.4f); the checkpoint's best, of epoch %d, was replaced by it",
                        self.out_dir / MODEL_DIR, epoch, self.epoch, f1, self.best_epoch)
            self.best_f1, self.best_epoch = f1, epoch

    # --- training --------------------------------------------------------------------------------------
    def fit(self, train: Sequence[Sentence], dev: Sequence[Sentence], test: Sequence[Sentence] | None = None,
            model_card: dict[str, Any] | None = None) -> dict[str, Any]:
        """Train until ``epochs`` or early stopping; returns the best model's scores (every rank gets them).

        Under ``torchrun`` every rank trains on its share of each global batch of ``batch_size`` sentences
        (gradients are averaged by DistributedDataParallel, weighted so that a global batch counts as one
        batch of a single process); rank 0 alone evaluates, logs and writes models and checkpoints.
        ``out_dir`` is locked from :meth:`resume` or the start of ``fit`` to its end.
        """
        return self.fit_tasks([Task(None, train, dev, test)], model_card)

    def fit_tasks(self, tasks: Sequence[Task], model_card: dict[str, Any] | None = None, teachers: Sequence = (),
                  unlabelled: Sequence[str] = ()) -> dict[str, Any]:
        """:meth:`fit` for several corpora (multi-task: each task trains the head of its label set, batches
        hold one task's sentences, sampled as ``task_temperature`` says).  The model is selected on the tasks' dev
        sets as ``task_selection`` says (pooled micro F1 by default, their mean, or one task's); results hold each
        task's scores under ``tasks``.

        Distillation (``distill`` "mse" or "kl"): ``teachers`` (trained taggers with the student's tags) give
        training characters soft targets (see :mod:`lexner.distill`).  A teacher teaches every task, or, given
        as a pair ``(task name, tagger)``, that task alone; a task without teachers trains on its gold tags
        only, and several teachers of a task are an ensemble (averaged).  A task with a ``type_map`` may have
        teachers of its corpus's original types (taught through the map, see ``lexner.distill.mapped_tags``).
        ``unlabelled`` texts train the first task's head on its teachers' soft targets alone (in batches of
        their own).  With augmentation, a noisy variant trains on its gold tags alone (the teachers' targets
        belong to the original text)."""
        try:
            return self._fit(list(tasks), model_card, list(teachers), list(unlabelled))
        except BaseException:
            if self.replace and getattr(self, "_lock", None) is not None and (self.out_dir / REPLACED_DIR).is_dir():
                log.warning("the run this one replaces is kept in %s until a run here writes its first checkpoint",
                            self.out_dir / REPLACED_DIR)
            raise
        finally:
            self._release_lock()
            if self._joined:  # the trainer joined the process group: it leaves it
                distributed.shutdown()
                self._joined = False

    def _soft_items(self, tasks: list[Task], teachers: list, unlabelled: list[str]) -> tuple[list[dict], list[int]]:
        """The training items with the teachers' soft targets, and for each the index of its task (unlabelled
        texts: one more index, after the tasks)."""
        from .distill import teacher_head, teacher_targets

        featurizer, cfg = self.model.featurizer, self.config
        of_task = teachers_by_task(tasks, teachers)
        items, task_of = [], []
        groups = [(k, task, task.train) for k, task in enumerate(tasks)]
        if unlabelled:
            # as the tagger sees them (whitespace between Chinese characters removed, a line break a new text),
            # cut as training sentences are
            views = [Sentence(line.view) for text in unlabelled for line in iter_model_lines(text)]
            groups.append((len(tasks), tasks[0], cut_long(views, cfg.max_length)))
        taught = 0
        for k, task, sentences in groups:
            name, chosen = task.labels, of_task[task.name]
            targets: Sequence = [None] * len(sentences)
            if chosen:
                tags = featurizer.label_set(name).tags
                heads = [teacher_head(t, name, tags) for t in chosen]
                for teacher, head in zip(chosen, heads):
                    log.info("task %s: %s teaches through its head %s", task.name or "train",
                             teacher.source or "a teacher", head or teacher.featurizer.default_labels)
                try:
                    targets = teacher_targets(chosen, [s.text for s in sentences], cfg.distill,
                                              tags, heads, cfg.eval_batch_size,
                                              task.type_map, f"soft targets ({task.name or 'train'})"
                                              if self.progress else None)
                except ValueError as err:  # a teacher of other types
                    raise TrainingError(str(err)) from None
                taught += len(sentences)
            for s, target in zip(sentences, targets):
                item = featurizer.encode_one(s.text, s.spans if k < len(tasks) else None, name)
                if target is not None:
                    item["soft"] = target
                items.append(item)
                task_of.append(k)
        log.info("distillation (%s, weight %g): soft targets from %d teacher(s) for %d of %d sentences (%d "
                 "unlabelled)", cfg.distill, cfg.distill_weight, len(teachers), taught, len(items), len(unlabelled))
        return items, task_of

    def _check_world(self, sizes: Iterable[int] = ()) -> None:
        """Under ``torchrun``, a TrainingError unless every global batch can give each process a sentence: the
        batch size and each corpus (``sizes``: its training sentences) at least the number of processes."""
        n = self.world.size
        if n > 1 and self.config.batch_size < n:
            raise TrainingError(f"--batch-size {self.config.batch_size} is smaller than the {n} processes of this "
                                "run: each global batch gives every process at least one sentence")
        if n > 1 and (small := min(sizes, default=n)) < n:
            raise TrainingError(f"a corpus of {small} training sentence(s) is smaller than the {n} processes of "
                                "this run: each global batch gives every process at least one sentence")

    def _first_epoch_only(self, names: list[str]) -> bool:
        """Whether run files ``names`` (found without a checkpoint) are those of a lexner run stopped in its first
        epoch's saves: beside its ``train_config.json``, a model whose card says epoch 1 and a log of epoch 1
        alone, nothing else (a ``model/`` of anyone else's is never taken for one)."""
        if not names or not set(names) <= {MODEL_DIR, LOG_FILE} or not (self.out_dir / CONFIG_FILE).is_file():
            return False
        try:
            if MODEL_DIR in names:
                card = read_json(self.out_dir / MODEL_DIR / MODEL_CONFIG).get("card")
                if not isinstance(card, dict) or card.get("epoch") != 1:
                    return False
            records = log_records(self.out_dir / LOG_FILE) if LOG_FILE in names else []
        except (DataFormatError, OSError, AttributeError):
            return False
        return all(r.get("epoch") == 1 for _, r in records)

    def _fit(self, tasks: list[Task], model_card: dict[str, Any] | None, teachers: list,
             unlabelled: list[str]) -> dict[str, Any]:
        cfg = self.config
        main = self.world.main
        self._check_world()  # the batch size, before the data's preparation (the corpora: once cut, below)
        if main:
            self._check_out_dir()  # a folder another training holds is refused, naming it
            self._take_lock()  # before the data's preparation (minutes with soft targets): no training slips in
            self._check_out_dir()  # and what a run that ended meanwhile left is seen
        data = data_fingerprints(tasks, teachers, unlabelled)
        if self.data is not None and (found := changed_inputs(self.data, data)):
            raise TrainingError(f"{self.out_dir / CHECKPOINT_DIR} was trained with {' and '.join(found)}: resume with "
                                "the data it was trained with (the same files, --dataset, --dev-fraction, "
                                "--dev-blocks, teachers and unlabelled texts)")
        self.data = data
        log_path = self.out_dir / LOG_FILE
        if self.epoch and main and log_path.is_file():  # resumed: the log continues after the checkpoint's epoch
            # (a kill after an epoch's log line but before its checkpoint: that epoch is redone, its line dropped)
            lines = [line for line, r in log_records(log_path) if "final" not in r and r["epoch"] <= self.epoch]
            write_bytes(log_path, "".join(line + "\n" for line in lines).encode("utf-8"))  # whole or not at all
        items, task_of, heads = self._prepare(tasks, teachers, unlabelled)
        self._check_world(task_of.count(k) for k in range(max(task_of, default=-1) + 1))  # unlabelled texts too
        settings = self._settings_record(cfg)
        if main:
            if self.replace and self.epoch == 0:
                set_aside_previous_run(self.out_dir)
            write_json(self.out_dir / CONFIG_FILE, settings)
        # what every saved model's card says, beside what the caller adds (command, data files, ...): enough to
        # train it again — the settings (seed included, and each resume's changes), the libraries' versions and
        # the fingerprints of the data
        model_card = {"lexner": provenance(), "device": cfg.device, "threads": torch.get_num_threads(),
                      "train_data": "+".join(t.name or "train" for t in tasks), "train_config": settings,
                      "versions": {"python": platform.python_version(), "torch": torch.__version__,
                                   "numpy": np.__version__},
                      "data_sha256": {f"({k[1:]})" if k.startswith("\0") else k or "sentences": v
                                      for k, v in data.items()},  # "(teachers)", "(unlabelled)": no task's name
                      **recordable(model_card or {})}
        sentences = [s for task in tasks for s in task.train]
        augmenters = ([Augmenter(cfg.augment.split(","), task.train, self.model.featurizer.lexicon)
                       for task in tasks] if cfg.augment else None)
        sampler = BucketBatchSampler([len(item["chars"]) for item in items], cfg.batch_size, cfg.seed,
                                     self.world.rank, self.world.size, task_of, cfg.task_temperature)
        multi_task = len(tasks) > 1
        if multi_task:  # every parameter holds a gradient from the first step on (see _step)
            for p in self.model.parameters():
                if p.requires_grad and p.grad is None:
                    p.grad = torch.zeros_like(p)
        bad_epochs = self.epoch - self.best_epoch
        spent = [f"it has trained {self.epoch} epochs, --epochs is {cfg.epochs} (raise --epochs)"] \
            if self.epoch >= cfg.epochs else []
        if cfg.patience and bad_epochs >= cfg.patience:
            spent.append(f"it had stopped early, no better dev F1 in its last {bad_epochs} epochs (raise --patience)")
        if spent and main:  # resumed: say why nothing trains
            log.warning("no epoch to train: %s; the best model is scored as it is", "; ".join(spent))
        fit_started, epoch_seconds = time.perf_counter(), 0.0
        while self.epoch < cfg.epochs and not (cfg.patience and bad_epochs >= cfg.patience):
            if cfg.max_minutes and epoch_seconds and distributed.broadcast(  # at least one epoch per fit
                    time.perf_counter() - fit_started + epoch_seconds > cfg.max_minutes * 60 if main else None):
                log.info("stopping after %d epochs: the next would end past --max-minutes %g", self.epoch,
                         cfg.max_minutes)
                break
            started = time.perf_counter()
            sampler.set_epoch(self.epoch)
            epoch_items = items if augmenters is None else self._augmented(items, sentences, task_of, tasks,
                                                                           augmenters)
            lr, total, seen = self._train_epoch(sampler, epoch_items, task_of, heads, multi_task)
            self._end_epoch(tasks, model_card, lr, total, seen, started)
            bad_epochs = self.epoch - self.best_epoch
            epoch_seconds = time.perf_counter() - started
        if cfg.patience and bad_epochs >= cfg.patience:
            log.info("early stopping after epoch %d: no better dev F1 for %d epochs (best %.4f at epoch %d)",
                     self.epoch, cfg.patience, self.best_f1, self.best_epoch)
        results = distributed.broadcast(self.finish(tasks) if main else None)
        distributed.barrier()
        return results

    def _prepare(self, tasks: list[Task], teachers: list, unlabelled: list[str]
                 ) -> tuple[list[dict], list[int], list[str | None]]:
        """Check the tasks and settings; the encoded training items, each item's task index and each task
        index's head (unlabelled text, with distillation, is one more index after the tasks')."""
        cfg = self.config
        for task in tasks:
            self.model.featurizer.label_set(task.labels)  # an unknown label set fails before any work
            pieces = list(cut_long(task.train, cfg.max_length))
            task.train = [s for s in pieces if s.text]
            what = f" of task {task.name}" if task.name is not None else ""
            if len(pieces) > len(task.train):  # nothing to learn from, but not dropped without a word
                log.info("%d empty training text(s)%s left out", len(pieces) - len(task.train), what)
            if not task.train:
                raise TrainingError(f"no training sentences{what} (the training data is empty or holds only empty "
                                    "texts)")
            if not any(s.spans for s in task.train):
                raise TrainingError(f"no entities in the training sentences{what}: a model would have nothing to "
                                    "learn (is the data in the format and tag scheme it was read as?)")
            if not any(s.text for s in task.dev):
                raise TrainingError(f"no dev sentences{what}: model selection needs a non-empty dev set")
            known = set(self.model.featurizer.label_set(task.labels).entity_types)
            if (dev_types := {span.label for s in task.dev for span in s.spans}) and not dev_types & known:
                raise TrainingError(f"the dev sentences{what} have none of the model's entity types "
                                    f"({', '.join(sorted(known))}) but {', '.join(sorted(dev_types))}: dev F1 would "
                                    "be 0 whatever the model learns (the dev file of another corpus?)")
        if cfg.task_selection.startswith(TASK_PREFIX):
            names = [str(t.name) for t in tasks] if len(tasks) > 1 else []  # one task alone has no name
            chosen = cfg.task_selection.removeprefix(TASK_PREFIX)
            if chosen not in names:
                raise TrainingError(f"task_selection {cfg.task_selection!r}: no task {chosen!r} among those trained "
                                    f"({', '.join(names) or 'one task alone'})")
        self.model.set_piece_length(piece_length([len(s.text) for task in tasks for s in task.train]))
        log.info("texts longer than %d characters will be tagged in pieces (lexner.tagging.piece_length)",
                 self.model.max_length)
        if bool(teachers) != bool(cfg.distill):
            raise TrainingError("distillation needs both teachers and a kind (distill: mse or kl)")
        if unlabelled and not teachers:
            raise TrainingError("unlabelled text needs teachers")
        if unlabelled and not teachers_by_task(tasks, teachers)[tasks[0].name]:
            raise TrainingError(f"unlabelled text trains the first task's head ({tasks[0].name}) on its teachers' "
                                "soft targets, and that task has no teacher: give it one, or list a taught task "
                                "first")
        heads = [task.labels for task in tasks] + [tasks[0].labels]
        if teachers:
            items, task_of = self._soft_items(tasks, teachers, unlabelled)
        else:
            items = [self.model.featurizer.encode_one(s.text, s.spans, task.labels) for task in tasks
                     for s in task.train]
            task_of = [k for k, task in enumerate(tasks) for _ in task.train]
        return items, task_of, heads

    def _train_epoch(self, sampler: BucketBatchSampler, items: list[dict], task_of: list[int],
                     heads: list[str | None], multi_task: bool) -> tuple[float, float, float]:
        """One pass over this epoch's batches; returns the last learning rate, the summed loss and the number
        of sentences (over every rank)."""
        cfg = self.config
        self.model.train()
        total, seen, lr = 0.0, 0, cfg.lr
        steps_per_epoch = len(sampler)
        unknowns = torch.Generator().manual_seed((cfg.seed * 1_000_003 + self.epoch) * 1_009 + self.world.rank)
        bar = tqdm(sampler.shards(), desc=f"epoch {self.epoch + 1}/{cfg.epochs}", unit="batch",
                   total=steps_per_epoch, disable=not self.progress, leave=False)
        pending: list[tuple[torch.Tensor, int]] = []  # each unchecked step's loss (on the device) and sentences
        for k, (ids, global_size) in enumerate(bar):
            lr = self._lr_at(self.epoch, k if self.epoch == 0 else None, steps_per_epoch)
            for group in self.optimizer.param_groups:
                group["lr"] = lr * group["lr_scale"]
            batch = self.model.featurizer.collate([items[i] for i in ids], heads[task_of[ids[0]]])
            if cfg.unk_dropout:
                read_as_unknown(batch, cfg.unk_dropout, unknowns)
            if batch.soft is not None:
                batch.soft_kind, batch.soft_weight = cfg.distill, cfg.distill_weight
            pending.append((self._step(batch.to(cfg.device), len(ids) * self.world.size / global_size, multi_task),
                            len(ids)))
            seen += len(ids)
            if len(pending) == self.check_every:
                total += self._checked_losses(pending, k)
                pending = []
                bar.set_postfix(loss=f"{total / seen:.3f}", refresh=False)
        if pending:
            total += self._checked_losses(pending, k)
        total, seen = distributed.all_sum([total, seen])
        return lr, total, seen

    def _checked_losses(self, pending: list[tuple[torch.Tensor, int]], last: int) -> float:
        """The sum of loss × sentences over the steps up to batch ``last`` (its index in the epoch) not yet
        checked, their losses read from the device at once (one synchronisation); a TrainingError names the first
        step whose loss is not finite."""
        losses = torch.stack([loss for loss, _ in pending]).tolist()
        if all(math.isfinite(x) for x in losses):
            return sum(x * n for x, (_, n) in zip(losses, pending))
        k, value = next((last - len(losses) + 1 + i, x) for i, x in enumerate(losses) if not math.isfinite(x))
        kept = (f"the last good checkpoint (epoch {self.epoch}) is in {self.out_dir / CHECKPOINT_DIR}"
                if self.epoch else "no epoch had finished, so there is no checkpoint yet")
        raise TrainingError(f"loss became {value} at epoch {self.epoch + 1}, batch {k + 1}; {kept}. Try a lower "
                            "--lr or --clip.")

    def _step(self, batch: Batch, share: float, multi_task: bool) -> torch.Tensor:
        """One optimisation step on ``batch`` (``share``: this rank's part of the global batch); its loss (a
        tensor on the device: reading it waits for the device, which :meth:`_checked_losses` does once for
        several steps)."""
        cfg = self.config
        with torch.autocast(device_type=cfg.device.split(":")[0], dtype=self.amp_dtype,
                            enabled=self.amp_dtype is not None):
            loss = self.net(batch)  # the tagger's loss: mean over this rank's sentences
        objective = loss * share  # DDP averages over ranks: weight each shard by its share of the global batch
        # a multi-task step leaves the other heads without gradients: zeros instead of None keep every parameter
        # in the fused optimiser's lists from the first step (fused SGD fails on a parameter that joins later)
        self.optimizer.zero_grad(set_to_none=not multi_task)
        if self.scaler is not None:
            self.scaler.scale(objective).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            objective.backward()
        if cfg.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.step += 1
        if self.ema is not None:
            self.ema.update(self.step)
        return loss.detach()

    def _end_epoch(self, tasks: list[Task], model_card: dict[str, Any], lr: float, total: float, seen: float,
                   started: float) -> None:
        """Score dev, keep the model if it is the best so far, log the epoch and write the checkpoint."""
        main = self.world.main
        train_seconds = time.perf_counter() - started
        raw_f1 = None
        if self.ema is not None and main:  # the raw weights' score, beside the averaged ones' (which select)
            raw_f1 = selection_f1(self.scores(self.model, tasks, "dev"))
        with self.ema.swapped() if self.ema is not None else contextlib.nullcontext():
            dev_scores = distributed.broadcast(self.scores(self.model, tasks, "dev") if main else None)
            self.epoch += 1
            improved = selection_f1(dev_scores) > self.best_f1
            if improved:
                self.best_f1, self.best_epoch = selection_f1(dev_scores), self.epoch
                if main:
                    with atomic_directory(self.out_dir / MODEL_DIR) as tmp:
                        self.model.save(tmp, extra={"card": {**model_card, "epoch": self.epoch, "dev": dev_scores}},
                                        half=False)  # full precision, even from a float16 --init-from model
        rngs = distributed.gather(rng_state())
        if main:
            self._log_epoch(lr, total, seen, train_seconds, started, dev_scores, improved, raw_f1)
            self._save_checkpoint(rngs)
            if self.replace and (self.out_dir / REPLACED_DIR).exists():  # the run --force replaced: no longer needed
                discard_directory(self.out_dir / REPLACED_DIR)
        self.checkpointed = distributed.broadcast(self.checkpointed)  # every rank knows what rank 0 wrote

    def _augmented(self, encoded: list[dict], sentences: list[Sentence], task_of: list[int], tasks: list[Task],
                   augmenters: list[Augmenter]) -> list[dict]:
        """This epoch's training items: ``augment_ratio`` of them replaced by noisy variants, drawn from a
        generator seeded by the seed and the epoch (a resumed run draws the same).  A variant longer than
        ``max_length`` characters (a longer mention put in) is not taken: training sentences are cut to it."""
        rng = random.Random(self.config.seed * 1_000_003 + self.epoch)
        items = list(encoded)  # the labelled sentences' items first, then any unlabelled text's (kept as they are)
        longest = self.config.max_length or math.inf
        for i in rng.sample(range(len(sentences)), round(self.config.augment_ratio * len(sentences))):
            k = task_of[i]
            variant = augmenters[k](sentences[i], rng)
            if variant is not sentences[i]:
                item = self.model.featurizer.encode_one(variant.text, variant.spans, tasks[k].labels)
                if len(item["chars"]) <= longest:
                    items[i] = item
        return items

    def _log_epoch(self, lr: float, total: float, seen: float, train_seconds: float, started: float,
                   dev_scores: dict, improved: bool, raw_f1: float | None = None) -> None:
        dev = selection_scores(dev_scores)
        record = {
            "epoch": self.epoch, "lr": lr, "train_loss": total / max(seen, 1),
            "train_seconds": round(train_seconds, 2),
            "sentences_per_second": round(seen / train_seconds, 1),
            "seconds": round(time.perf_counter() - started, 2),
            "dev": dev, "best": improved,
            **{k: dev_scores[k] for k in ("NE", "NM") if k in dev_scores},
        }
        if "tasks" in dev_scores:
            record["tasks"] = {name: scores["micro"] for name, scores in dev_scores["tasks"].items()}
        if raw_f1 is not None:
            record["dev_raw_f1"] = raw_f1  # with ema: dev F1 of the weights before averaging
        if self.world.distributed:
            record["processes"] = self.world.size
        append_to_log(self.out_dir / LOG_FILE, record)
        per_task = "".join(f", {name} {scores['f1']:.4f}" for name, scores in record.get("tasks", {}).items())
        raw = f" (raw weights {raw_f1:.4f})" if raw_f1 is not None else ""
        log.info("epoch %d: loss %.4f, dev P %.4f R %.4f F1 %.4f%s%s%s (%.0f s, %.1f sent/s)",
                 self.epoch, record["train_loss"], dev["precision"], dev["recall"], dev["f1"], raw, per_task,
                 " *" if improved else "", record["seconds"], record["sentences_per_second"])

    def scores(self, model: Tagger, tasks: Sequence[Task], split: str) -> dict[str, Any]:
        """The scores of ``model`` on each task's ``split`` ("dev" or "test"): :func:`evaluate`'s for one task;
        for several, ``{"tasks": {name: scores}, "mean": the unweighted mean of their micro P/R/F1, "pooled": micro
        P/R/F1 over all their entities, "selection": which selects (``task_selection``)}``; mean and pooled also
        give the tasks' gold (``support``) and ``predicted`` entities in all, as one task's micro scores do."""
        batch_size = self.config.eval_batch_size
        if len(tasks) == 1:
            return evaluate(model, getattr(tasks[0], split), batch_size, labels=tasks[0].labels)
        per_task = {t.name: evaluate(model, getattr(t, split), batch_size, labels=t.labels) for t in tasks
                    if getattr(t, split) is not None}
        mean = {k: sum(s["micro"][k] for s in per_task.values()) / len(per_task) for k in ("precision", "recall", "f1")}
        found = sum(round(s["micro"]["recall"] * s["micro"]["support"]) for s in per_task.values())  # true positives
        predicted = sum(s["micro"]["predicted"] for s in per_task.values())
        gold = sum(s["micro"]["support"] for s in per_task.values())
        precision = found / predicted if predicted else 0.0
        recall = found / gold if gold else 0.0
        pooled = {"precision": precision, "recall": recall,
                  "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0}
        counts = {"support": gold, "predicted": predicted}
        return {"tasks": per_task, "mean": {**mean, **counts}, "pooled": {**pooled, **counts},
                "selection": self.config.task_selection}

    def _earlier_test_scores(self) -> dict[str, Any] | None:
        """A resumed run without a test set: the test scores an earlier run wrote into ``results.json``, if they
        are of the model that is still the best (the same epoch's); scores of a model since replaced are dropped,
        with a warning."""
        path = self.out_dir / RESULTS_FILE
        try:
            earlier = read_json(path) if path.is_file() else None
        except (OSError, ValueError):
            return None
        if not isinstance(earlier, dict) or "test" not in earlier:
            return None
        if earlier.get("best_epoch") == self.best_epoch:
            log.info("%s keeps the test scores an earlier run gave epoch %d's model, still the best", path,
                     self.best_epoch)
            return earlier["test"]
        log.warning("%s: the test scores an earlier run wrote were of epoch %s's model; the best is now epoch %d's, "
                    "not scored on test (no test set given): evaluate it with lexner evaluate", path,
                    earlier.get("best_epoch"), self.best_epoch)
        return None

    def finish(self, tasks: Sequence[Task]) -> dict[str, Any]:
        """Reload the best model, score it on dev (and test), write ``results.json`` and log the scores."""
        best = Tagger.load(self.out_dir / MODEL_DIR, device=self.config.device)
        results: dict[str, Any] = {"best_epoch": self.best_epoch, "epochs_run": self.epoch,
                                   "dev": self.scores(best, tasks, "dev")}
        if any(t.test is not None for t in tasks):
            results["test"] = self.scores(best, tasks, "test")
        elif (earlier := self._earlier_test_scores()) is not None:
            results["test"] = earlier
        history = epoch_records(self.out_dir / LOG_FILE)
        results["train_seconds"] = round(sum(r["seconds"] for r in history), 1)
        write_json(self.out_dir / RESULTS_FILE, results)
        append_to_log(self.out_dir / LOG_FILE, {  # the final scores end the log
            "final": True, "best_epoch": self.best_epoch,
            **{k: selection_scores(results[k]) for k in ("dev", "test") if k in results}})
        for split in ("dev", "test"):
            if split in results:
                log.info("best model (epoch %d) on %s: F1 %.4f", self.best_epoch, split,
                         selection_scores(results[split])["f1"])
        self.model = best
        return results


def append_to_log(log_file: Path, record: dict[str, Any]) -> None:
    """Add ``record`` as the last line of the training log ``log_file``, ended by ``\\n`` on every system as the
    lines a resume keeps are rewritten (text mode would end it by ``\\r\\n`` on Windows)."""
    with open(log_file, "a", encoding="utf-8", newline="") as out:
        out.write(json.dumps(record) + "\n")


def log_records(log_file: Path) -> list[tuple[str, dict[str, Any]]]:
    """Each record of a training log with its line.  A last line cut short (a stop or a full disk while it was
    written) is left out, with a warning; any other line that is not an epoch's or the final record is a
    ``DataFormatError`` naming the file and line."""
    try:
        text = Path(log_file).read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataFormatError(log_file, None, f"not valid UTF-8 at byte {err.start} (damaged?)") from None
    lines = text.splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            if number == len(lines) and not text.endswith("\n"):
                log.warning("%s:%d: a last line cut short, left out", log_file, number)
                continue
            record = None
        if not isinstance(record, dict) or not ("final" in record or _epoch_record(record)):
            raise DataFormatError(log_file, number, "not a training log's record (damaged or edited)")
        records.append((line, record))
    return records


def _epoch_record(record: dict[str, Any]) -> bool:
    """Whether ``record`` is an epoch's as the trainer writes it: a positive integer epoch and the seconds it
    took (which the run's results add up)."""
    epoch, seconds = record.get("epoch"), record.get("seconds")
    return (type(epoch) is int and epoch >= 1 and type(seconds) in (int, float) and math.isfinite(seconds)
            and seconds >= 0)


def epoch_records(log_file: Path) -> list[dict[str, Any]]:
    """The per-epoch records of a training log (without the final scores line)."""
    return [r for _, r in log_records(log_file) if "final" not in r]


def selection_scores(scores: dict[str, Any]) -> dict[str, float]:
    """The scores that select a model: micro P/R/F1, or for several tasks their pooled or mean scores, or one
    task's micro P/R/F1 (``task:NAME``)."""
    if "tasks" not in scores:
        return scores["micro"]
    selection = scores.get("selection", "mean")
    if selection.startswith(TASK_PREFIX):
        return scores["tasks"][selection.removeprefix(TASK_PREFIX)]["micro"]
    return scores[selection]


def selection_f1(scores: dict[str, Any]) -> float:
    return selection_scores(scores)["f1"]
