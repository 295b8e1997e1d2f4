"""A model-agnostic trainer: bucketed batches, optimiser and schedule, early stopping on dev F1,
atomic best-model and epoch checkpoints, ``resume``, and a JSON-lines log."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from . import distributed
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .data import Sentence
from .evaluate import evaluate
from .fileio import atomic_directory, recover_directory, write_json
from .models import Tagger

log = logging.getLogger(__name__)

MODEL_DIR = "model"  # the best model so far, a loadable model directory
CHECKPOINT_DIR = "checkpoint"  # the state after the last finished epoch, for --resume
LOG_FILE = "log.jsonl"


class TrainingError(RuntimeError):
    pass


@dataclass
class TrainConfig:
    epochs: int = 50
    batch_size: int = 10
    optimizer: str = "sgd"  # "sgd" (with momentum) or "adam"; SGD beat Adam (lr 1e-3) on Weibo dev for BiLSTM-CRF
    lr: float = 0.02
    lr_decay: float = 0.05  # lr / (1 + lr_decay * epoch), applied per epoch (the papers' schedule)
    momentum: float = 0.9  # SGD only
    weight_decay: float = 0.0
    clip: float = 5.0  # max gradient norm; 0 disables clipping
    warmup: float = 0.0  # fraction of the first epoch's steps with a linear warm-up
    patience: int = 10  # stop after this many epochs without a better dev F1; 0 = never
    seed: int = 1
    device: str = "cpu"
    max_length: int = 0  # training sentences longer than this are cut into pieces; 0 = no limit
    eval_batch_size: int = 64
    encoder_lr: float = 2e-5  # a pretrained encoder's (BERT's) learning rate, on the same schedule
    amp: str = ""  # "bf16" or "fp16": automatic mixed precision on CUDA (the CRF stays float32); "" = off
    max_minutes: float = 0.0  # time budget: no epoch starts that would likely end past it (judged by the last
    # epoch's time; the first epoch always runs); 0 = no limit

    def __post_init__(self) -> None:
        """Every setting checked for type and range, so that a bad one fails before any work, naming itself."""
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.amp not in ("", "bf16", "fp16"):
            raise ValueError(f"amp must be 'bf16', 'fp16' or '' (off), got {self.amp!r}")
        at_least = {"epochs": 1, "batch_size": 1, "eval_batch_size": 1, "patience": 0, "max_length": 0}
        for name, low in at_least.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer ≥ {low}, got {value!r}")
        ranges = {"lr": (0, math.inf, False), "encoder_lr": (0, math.inf, True), "lr_decay": (0, math.inf, True),
                  "momentum": (0, 1, True), "weight_decay": (0, math.inf, True), "clip": (0, math.inf, True),
                  "warmup": (0, 1, True), "max_minutes": (0, math.inf, True)}
        for name, (low, high, low_allowed) in ranges.items():
            value = getattr(self, name)
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                  and (value >= low if low_allowed else value > low) and value <= high)
            if not ok:
                bound = f"{'≥' if low_allowed else '>'} {low}" + (f" and ≤ {high}" if high != math.inf else "")
                raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
        if self.lr > 1:
            log.warning("lr %g is far above the usual range (Adam ~1e-3, SGD ~1e-2): training may diverge", self.lr)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


LOCK_FILE = ".lock"


def lock_directory(directory: Path):
    """An exclusive lock on ``directory`` (a ``.lock`` file holding the owner's pid), held while the returned
    file stays open; a second training into the same directory fails at once, naming the holder."""
    import fcntl
    import os

    handle = open(directory / LOCK_FILE, "a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
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


def bucketed_batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffle, sort within pools of 50 batches by length, cut into batches, shuffle the batches.

    Sentences of similar length share a batch (little padding) while every epoch sees a new order.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = batch_size * 50
    batches = []
    for k in range(0, len(order), pool):
        chunk = sorted(order[k : k + pool], key=lambda i: lengths[i])
        batches.extend(chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


class BucketBatchSampler(torch.utils.data.Sampler):
    """:func:`bucketed_batches` reshuffled every epoch (``set_epoch``), each rank taking its share.

    Every rank draws the same global batches from the same seeded generator and keeps the sentences
    ``rank::world_size`` of each, as ``DistributedSampler`` does with indices.  A global batch is thus exactly
    the batch a single process with the same ``batch_size`` trains on, which makes N processes equal one.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.lengths, self.batch_size, self.seed = list(lengths), batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def shards(self) -> Iterator[tuple[list[int], int]]:
        """This rank's share of each of this epoch's global batches, with the global batch's size.  A global
        batch too small to give every rank a sentence is skipped (by every rank)."""
        rng = random.Random(self.seed * 100_003 + self.epoch)
        for batch in bucketed_batches(self.lengths, self.batch_size, rng):
            if len(batch) >= self.world_size:
                yield batch[self.rank :: self.world_size], len(batch)

    def __iter__(self) -> Iterator[list[int]]:
        return (shard for shard, _ in self.shards())

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)


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


class Trainer:
    """Trains one :class:`Tagger` and writes everything into ``out_dir``.

    ``out_dir/model/`` — the best model on dev (a loadable model directory, replaced atomically);
    ``out_dir/checkpoint/`` — the state after the last finished epoch (for ``resume``);
    ``out_dir/log.jsonl`` — one JSON object per epoch; ``out_dir/results.json`` — final scores.
    """

    def __init__(self, model: Tagger, config: TrainConfig, out_dir: str | Path, progress: bool = True):
        self.world, device = distributed.setup(config.device)  # a no-op unless launched by torchrun
        config = dataclasses.replace(config, device=device)
        self.model = model.to(config.device)
        self.config = config
        self.out_dir = Path(out_dir)
        self.progress = progress and self.world.main
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        if self.world.distributed:
            self.net: torch.nn.Module = DistributedDataParallel(
                self.model, device_ids=[self.model.device] if device.startswith("cuda") else None,
                find_unused_parameters=model.uses_lexicon)  # a shard may match no word: word cells unused
            torch.manual_seed(config.seed * 7919 + self.world.rank)  # different dropout masks on each rank
        else:
            self.net = self.model
        encoder = {id(p) for p in model.encoder_parameters()}
        params = [p for p in model.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if id(p) not in encoder], "lr_scale": 1.0}]
        if encoder:  # a pretrained encoder learns at encoder_lr, scaled by the same schedule
            groups.append({"params": [p for p in params if id(p) in encoder],
                           "lr_scale": config.encoder_lr / config.lr})
        self.optimizer = make_optimizer(groups, config)
        self.epoch = 0  # epochs finished
        self.best_f1 = -1.0
        self.best_epoch = 0
        self.step = 0

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
    def _save_checkpoint(self) -> None:
        save_checkpoint(self.out_dir / CHECKPOINT_DIR, {
            "epoch": self.epoch, "best_f1": self.best_f1, "best_epoch": self.best_epoch, "step": self.step,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "rng": rng_state(),
            "train_config": dataclasses.asdict(self.config),
            **({"scaler": self.scaler.state_dict()} if self.scaler is not None else {}),
        })

    def _take_lock(self) -> None:
        """Lock ``out_dir`` for this process (once): two trainings never write into one directory."""
        if getattr(self, "_lock", None) is None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._lock = lock_directory(self.out_dir)

    def _release_lock(self) -> None:
        if getattr(self, "_lock", None) is not None:
            self._lock.close()
            self._lock = None

    def resume(self) -> bool:
        """Continue from ``out_dir/checkpoint`` if there is one; returns whether it did."""
        if self.world.main:
            self._take_lock()
        path = recover_directory(self.out_dir / CHECKPOINT_DIR)
        if not path.is_dir():
            return False
        state = load_checkpoint(path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.best_f1, self.best_epoch, self.step = (
            state["epoch"], state["best_f1"], state["best_epoch"], state["step"])
        log_path = self.out_dir / LOG_FILE
        # a kill after the log line but before the checkpoint: that epoch is redone, its line dropped
        if log_path.is_file() and self.world.main:
            lines = [line for line in log_path.read_text(encoding="utf-8").splitlines()
                     if line.strip() and json.loads(line)["epoch"] <= self.epoch]
            log_path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        log.info("resumed from %s after epoch %d (best dev F1 %.4f at epoch %d)",
                 path, self.epoch, self.best_f1, self.best_epoch)
        return True

    # --- training --------------------------------------------------------------------------------------
    def fit(self, train: Sequence[Sentence], dev: Sequence[Sentence], test: Sequence[Sentence] | None = None,
            model_card: dict[str, Any] | None = None) -> dict[str, Any]:
        """Train until ``epochs`` or early stopping; returns the best model's scores (every rank gets them).

        Under ``torchrun`` every rank trains on its share of each global batch of ``batch_size`` sentences
        (gradients are averaged by DistributedDataParallel, weighted so that a global batch counts as one
        batch of a single process); rank 0 alone evaluates, logs and writes models and checkpoints.
        ``out_dir`` is locked from :meth:`resume` or the start of ``fit`` to its end.
        """
        try:
            return self._fit(train, dev, test, model_card)
        finally:
            self._release_lock()

    def _fit(self, train: Sequence[Sentence], dev: Sequence[Sentence], test: Sequence[Sentence] | None,
             model_card: dict[str, Any] | None) -> dict[str, Any]:
        cfg = self.config
        main = self.world.main
        train = [s for s in cut_long(train, cfg.max_length) if s.text]
        if not train:
            raise TrainingError("no training sentences (the training data is empty or holds only empty texts)")
        if not any(s.text for s in dev):
            raise TrainingError("no dev sentences: model selection needs a non-empty dev set")
        if main:
            self._take_lock()
            write_json(self.out_dir / "train_config.json", dataclasses.asdict(cfg))
        encoded = [self.model.featurizer.encode_one(s.text, s.spans) for s in train]
        sampler = BucketBatchSampler([len(s.text) for s in train], cfg.batch_size, cfg.seed,
                                     self.world.rank, self.world.size)
        steps_per_epoch = len(sampler)
        bad_epochs = self.epoch - self.best_epoch
        fit_started, epoch_seconds = time.perf_counter(), 0.0
        while self.epoch < cfg.epochs and not (cfg.patience and bad_epochs >= cfg.patience):
            if cfg.max_minutes and epoch_seconds and distributed.broadcast(  # at least one epoch per fit
                    time.perf_counter() - fit_started + epoch_seconds > cfg.max_minutes * 60 if main else None):
                log.info("stopping after %d epochs: the next would end past --max-minutes %g", self.epoch,
                         cfg.max_minutes)
                break
            started = time.perf_counter()
            sampler.set_epoch(self.epoch)
            self.model.train()
            total, seen = 0.0, 0
            bar = tqdm(sampler.shards(), desc=f"epoch {self.epoch + 1}/{cfg.epochs}", unit="batch",
                       total=steps_per_epoch, disable=not self.progress, leave=False)
            for k, (ids, global_size) in enumerate(bar):
                lr = self._lr_at(self.epoch, k if self.epoch == 0 else None, steps_per_epoch)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr * group["lr_scale"]
                batch = self.model.featurizer.collate([encoded[i] for i in ids]).to(cfg.device)
                with torch.autocast(device_type=cfg.device.split(":")[0], dtype=self.amp_dtype,
                                    enabled=self.amp_dtype is not None):
                    loss = self.net(batch)  # the tagger's loss: mean over this rank's sentences
                if not torch.isfinite(loss):
                    kept = (f"the last good checkpoint (epoch {self.epoch}) is in {self.out_dir / CHECKPOINT_DIR}"
                            if self.epoch else "no epoch had finished, so there is no checkpoint yet")
                    raise TrainingError(f"loss became {loss.item()} at epoch {self.epoch + 1}, batch {k + 1}; "
                                        f"{kept}. Try a lower --lr or --clip.")
                # DDP averages over ranks: weight each shard by its share of the global batch
                objective = loss * (len(ids) * self.world.size / global_size)
                self.optimizer.zero_grad(set_to_none=True)
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
                total += loss.item() * len(ids)
                seen += len(ids)
                bar.set_postfix(loss=f"{total / seen:.3f}", refresh=False)
            total, seen = distributed.all_sum([total, seen])
            train_seconds = time.perf_counter() - started
            scores = evaluate(self.model, dev, cfg.eval_batch_size) if main else None
            dev_scores = distributed.broadcast(scores)
            self.epoch += 1
            f1 = dev_scores["micro"]["f1"]
            improved = f1 > self.best_f1
            if improved:
                self.best_f1, self.best_epoch = f1, self.epoch
                if main:
                    with atomic_directory(self.out_dir / MODEL_DIR) as tmp:
                        self.model.save(tmp, extra={"card": {**(model_card or {}), "epoch": self.epoch,
                                                             "dev": dev_scores}})
            bad_epochs = self.epoch - self.best_epoch
            if main:
                self._log_epoch(lr, total, seen, train_seconds, started, dev_scores, improved)
                self._save_checkpoint()
            epoch_seconds = time.perf_counter() - started
        results = distributed.broadcast(self.finish(dev, test) if main else None)
        distributed.barrier()
        return results

    def _log_epoch(self, lr: float, total: float, seen: float, train_seconds: float, started: float,
                   dev_scores: dict, improved: bool) -> None:
        record = {
            "epoch": self.epoch, "lr": lr, "train_loss": total / max(seen, 1),
            "train_seconds": round(train_seconds, 2),
            "sentences_per_second": round(seen / train_seconds, 1),
            "seconds": round(time.perf_counter() - started, 2),
            "dev": dev_scores["micro"], "best": improved,
            **{k: dev_scores[k] for k in ("NE", "NM") if k in dev_scores},
        }
        if self.world.distributed:
            record["processes"] = self.world.size
        with open(self.out_dir / LOG_FILE, "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
        log.info("epoch %d: loss %.4f, dev P %.4f R %.4f F1 %.4f%s (%.0f s, %.1f sent/s)",
                 self.epoch, record["train_loss"], dev_scores["micro"]["precision"],
                 dev_scores["micro"]["recall"], dev_scores["micro"]["f1"], " *" if improved else "",
                 record["seconds"], record["sentences_per_second"])

    def finish(self, dev: Sequence[Sentence], test: Sequence[Sentence] | None) -> dict[str, Any]:
        """Reload the best model, score it on dev (and test), write ``results.json``."""
        best = Tagger.load(self.out_dir / MODEL_DIR, device=self.config.device)
        results: dict[str, Any] = {"best_epoch": self.best_epoch, "epochs_run": self.epoch,
                                   "dev": evaluate(best, dev, self.config.eval_batch_size)}
        if test is not None:
            results["test"] = evaluate(best, test, self.config.eval_batch_size)
        history = [json.loads(line) for line in open(self.out_dir / LOG_FILE, encoding="utf-8")]
        results["train_seconds"] = round(sum(r["seconds"] for r in history), 1)
        write_json(self.out_dir / "results.json", results)
        self.model = best
        return results
