"""Training settings: :class:`TrainConfig`, whose fields are also ``lexner train``'s options.  Kept apart from
the trainer, which imports torch, so that building the command line (``lexner --help``) does not."""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


def setting(default: Any, help: str, **argparse_options: Any) -> Any:
    """A :class:`TrainConfig` field with its command-line help (and argparse options such as ``choices``)."""
    return dataclasses.field(default=default, metadata={"help": help, **argparse_options})


TASK_PREFIX = "task:"  # task_selection "task:NAME": select on that task's dev F1


@dataclass
class TrainConfig:
    """How to train: each setting's help is also its ``lexner train --option``'s (the options are made from
    these fields; ``device`` comes from ``--device``)."""

    epochs: int = setting(50, "the most epochs")
    batch_size: int = setting(10, "sentences per batch")
    optimizer: str = setting("sgd", "sgd (with momentum) or adam; SGD beat Adam (lr 1e-3) on Weibo dev for "
                                    "BiLSTM-CRF", choices=("sgd", "adam"))
    lr: float = setting(0.02, "learning rate")
    lr_decay: float = setting(0.05, "lr / (1 + decay * epoch), applied per epoch (the papers' schedule)")
    momentum: float = setting(0.9, "SGD momentum")
    weight_decay: float = setting(0.0, "L2 weight decay")
    clip: float = setting(5.0, "max gradient norm; 0 disables clipping")
    warmup: float = setting(0.0, "fraction of the first epoch's steps with a linear warm-up")
    patience: int = setting(10, "early stopping: stop after this many epochs without a better dev F1; 0: never")
    seed: int = setting(1, "random seed (initialisation, batches, dropout, augmentation)")
    device: str = "cpu"
    max_length: int = setting(0, "training sentences longer than this are cut into pieces; 0: no limit (the "
                                 "piece length the model records follows the cut sentences' lengths)")
    eval_batch_size: int = setting(64, "sentences per batch when scoring dev and test")
    encoder_lr: float = setting(2e-5, "learning rate of a pretrained encoder (bert_crf, flat with bert_path), on "
                                      "the same schedule")
    amp: str = setting("", "automatic mixed precision on CUDA, bf16 or fp16 (the CRF stays float32); ignored on "
                           "CPU", choices=("", "bf16", "fp16"))
    max_minutes: float = setting(0.0, "time budget: no epoch starts that would likely end past it (judged by the "
                                      "last epoch's time; the first epoch always runs); 0: no limit")
    task_selection: str = setting("pooled", "multi-task model selection on dev: pooled (micro P/R/F1 over every "
                                            "task's dev entities together: a small, noisy dev set weighs little), "
                                            "mean (the unweighted mean of the tasks' F1) or task:NAME (that task's "
                                            "own dev F1: the other tasks train beside it as auxiliaries)",
                                  metavar="pooled|mean|task:NAME")
    task_temperature: float = setting(1.0, "multi-task sampling: a task's share of batches is proportional to "
                                           "its size ** (1 / T); 1 keeps each sentence once per epoch, larger "
                                           "values give small corpora more")
    augment: str = setting("", "augmentation, comma-separated: mention (same-type mention replacement), case "
                               "(Latin letter case), space (whitespace between Latin letters/digits), neighbour "
                               "(non-entity words by their nearest lexicon words; lattice taggers), tfidf "
                               "(low-TF-IDF non-entity words by other uninformative words), noise (insert/delete a "
                               "non-entity character, swap adjacent words); empty: off", metavar="METHODS")
    augment_ratio: float = setting(0.2, "with augment: fraction of training sentences replaced by a noisy "
                                        "variant, anew each epoch")
    distill: str = setting("", "with teachers (lexner distill): mse matches their emission scores, kl their CRF tag "
                               "marginals", choices=("", "mse", "kl"))
    distill_weight: float = setting(1.0, "with teachers: weight of the soft-target loss beside the gold tags' loss")
    unk_dropout: float = setting(0.0, "each training character and bigram is read as unknown with this "
                                      "probability, drawn anew every batch, so that the model learns to tag from "
                                      "context what it never saw (new names); 0: off")
    ema: float = setting(0.0, "exponential moving average of the weights with this decay per step (e.g. 0.999): "
                              "dev scores, model selection and the saved model use the averaged weights, and the "
                              "log also gives the raw weights' dev F1; 0: off")

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
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must be an integer in [0, 2**32 - 1] (numpy's seeds), got {self.seed!r}")
        ranges = {"lr": (0, math.inf, False), "encoder_lr": (0, math.inf, True), "lr_decay": (0, math.inf, True),
                  "momentum": (0, 1, True), "weight_decay": (0, math.inf, True), "clip": (0, math.inf, True),
                  "warmup": (0, 1, True), "max_minutes": (0, math.inf, True),
                  "task_temperature": (0, math.inf, False), "augment_ratio": (0, 1, True),
                  "distill_weight": (0, math.inf, True), "ema": (0, 1, True), "unk_dropout": (0, 1, True)}
        for name, (low, high, low_allowed) in ranges.items():
            value = getattr(self, name)
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                  and (value >= low if low_allowed else value > low) and value <= high)
            if not ok:
                bound = f"{'≥' if low_allowed else '>'} {low}" + (f" and ≤ {high}" if high != math.inf else "")
                raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
        if self.task_selection not in ("pooled", "mean") and not (
                self.task_selection.startswith(TASK_PREFIX) and len(self.task_selection) > len(TASK_PREFIX)):
            raise ValueError(f"task_selection must be 'pooled', 'mean' or 'task:NAME', got {self.task_selection!r}")
        if self.distill not in ("", "mse", "kl"):
            raise ValueError(f"distill must be 'mse', 'kl' or '' (off), got {self.distill!r}")
        if self.augment:
            from .augment import METHODS

            unknown = [m for m in self.augment.split(",") if m not in METHODS]
            if unknown:
                raise ValueError(f"augment must name methods among {', '.join(METHODS)} (comma-separated), got "
                                 f"{unknown}")
        if self.ema >= 1:
            raise ValueError(f"ema must be < 1 (a decay per step; 0 is off), got {self.ema!r}")
        if self.unk_dropout >= 1:
            raise ValueError(f"unk_dropout must be < 1 (a probability; 0 is off), got {self.unk_dropout!r}")
        if self.lr > 1:
            log.warning("lr %g is far above the usual range (Adam ~1e-3, SGD ~1e-2): training may diverge", self.lr)
