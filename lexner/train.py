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
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

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

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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
        self.model = model.to(config.device)
        self.config = config
        self.out_dir = Path(out_dir)
        self.progress = progress
        params = [p for p in model.parameters() if p.requires_grad]
        if config.optimizer == "adam":
            self.optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                                             weight_decay=config.weight_decay)
        self.epoch = 0  # epochs finished
        self.best_f1 = -1.0
        self.best_epoch = 0
        self.step = 0

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
        })

    def resume(self) -> bool:
        """Continue from ``out_dir/checkpoint`` if there is one; returns whether it did."""
        path = recover_directory(self.out_dir / CHECKPOINT_DIR)
        if not path.is_dir():
            return False
        state = load_checkpoint(path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        self.epoch, self.best_f1, self.best_epoch, self.step = (
            state["epoch"], state["best_f1"], state["best_epoch"], state["step"])
        log.info("resumed from %s after epoch %d (best dev F1 %.4f at epoch %d)",
                 path, self.epoch, self.best_f1, self.best_epoch)
        return True

    # --- training --------------------------------------------------------------------------------------
    def fit(self, train: Sequence[Sentence], dev: Sequence[Sentence], test: Sequence[Sentence] | None = None,
            model_card: dict[str, Any] | None = None) -> dict[str, Any]:
        cfg = self.config
        self.out_dir.mkdir(parents=True, exist_ok=True)
        write_json(self.out_dir / "train_config.json", dataclasses.asdict(cfg))
        train = [s for s in cut_long(train, cfg.max_length) if s.text]
        encoded = [self.model.featurizer.encode_one(s.text, s.spans) for s in train]
        lengths = [len(s.text) for s in train]
        steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
        bad_epochs = self.epoch - self.best_epoch
        while self.epoch < cfg.epochs and not (cfg.patience and bad_epochs >= cfg.patience):
            started = time.perf_counter()
            rng = random.Random(cfg.seed * 100_003 + self.epoch)
            batches = bucketed_batches(lengths, cfg.batch_size, rng)
            self.model.train()
            total, seen = 0.0, 0
            bar = tqdm(batches, desc=f"epoch {self.epoch + 1}/{cfg.epochs}", unit="batch",
                       disable=not self.progress, leave=False)
            for k, ids in enumerate(bar):
                lr = self._lr_at(self.epoch, k if self.epoch == 0 else None, steps_per_epoch)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                batch = self.model.featurizer.collate([encoded[i] for i in ids]).to(cfg.device)
                loss = self.model.loss(batch)
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"loss became {loss.item()} at epoch {self.epoch + 1}, batch {k + 1}; the last good "
                        f"checkpoint is in {self.out_dir / CHECKPOINT_DIR}. Try a lower --lr or --clip.")
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.clip > 0:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip)
                self.optimizer.step()
                self.step += 1
                total += loss.item() * len(ids)
                seen += len(ids)
                bar.set_postfix(loss=f"{total / seen:.3f}", refresh=False)
            train_seconds = time.perf_counter() - started
            dev_scores = evaluate(self.model, dev, cfg.eval_batch_size)
            self.epoch += 1
            f1 = dev_scores["micro"]["f1"]
            improved = f1 > self.best_f1
            if improved:
                self.best_f1, self.best_epoch = f1, self.epoch
                with atomic_directory(self.out_dir / MODEL_DIR) as tmp:
                    self.model.save(tmp, extra={"card": {**(model_card or {}), "epoch": self.epoch,
                                                         "dev": dev_scores}})
            bad_epochs = self.epoch - self.best_epoch
            record = {
                "epoch": self.epoch, "lr": lr, "train_loss": total / max(seen, 1),
                "train_seconds": round(train_seconds, 2),
                "sentences_per_second": round(seen / train_seconds, 1),
                "seconds": round(time.perf_counter() - started, 2),
                "dev": dev_scores["micro"], "best": improved,
                **{k: dev_scores[k] for k in ("NE", "NM") if k in dev_scores},
            }
            with open(self.out_dir / LOG_FILE, "a", encoding="utf-8") as out:
                out.write(json.dumps(record) + "\n")
            log.info("epoch %d: loss %.4f, dev P %.4f R %.4f F1 %.4f%s (%.0f s, %.1f sent/s)",
                     self.epoch, record["train_loss"], dev_scores["micro"]["precision"],
                     dev_scores["micro"]["recall"], f1, " *" if improved else "", record["seconds"],
                     record["sentences_per_second"])
            self._save_checkpoint()
        return self.finish(dev, test)

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
