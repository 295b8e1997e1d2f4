"""Knowledge distillation: what trained teachers say about each training character, as soft targets.

A student (any tagger) learns from gold tags (its CRF's negative log-likelihood) plus ``distill_weight`` times
a soft-target loss (``lexner.models.base.soft_loss``) against the teachers' outputs, computed here once before
training (teachers in eval mode, no dropout):

* ``mse`` — the mean of the teachers' emission scores, matched by squared error (as BERT → BiLSTM
  distillation does with logits);
* ``kl`` — the mean of the teachers' CRF tag marginals (forward-backward), matched by KL divergence.

Several teachers make an ensemble (their outputs averaged); in a multi-task training each task may have
teachers of its own (``lexner.train.teachers_by_task``).  Teachers may be any taggers with their own
vocabularies; they must have the student's tags (in any order: columns are matched by tag name).  Unlabelled
text adds characters with soft targets only.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

KINDS = ("mse", "kl")


def teacher_targets(teachers: Sequence, texts: Sequence[str], kind: str, tags: Sequence[str],
                    labels: Sequence[str | None] | None = None, batch_size: int = 64) -> list[np.ndarray]:
    """Per text, a float32 array (characters, tags) in the order of ``tags``: the teachers' mean emission
    scores (``kind`` "mse") or mean tag marginals ("kl").  ``labels[i]``: the head of teacher i (None: its
    default)."""
    if kind not in KINDS:
        raise ValueError(f"distillation kind must be one of {KINDS}, got {kind!r}")
    if not teachers:
        raise ValueError("distillation needs at least one teacher")
    labels = list(labels) if labels is not None else [None] * len(teachers)
    total = [np.zeros((len(t), len(tags)), dtype=np.float32) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for teacher, head in zip(teachers, labels):
        label_set = teacher.featurizer.label_set(head)
        if sorted(label_set.tags) != sorted(tags):
            which = teacher.source or f"teacher {teachers.index(teacher) + 1}"
            raise ValueError(f"{which}: the teacher's tags {label_set.tags} are not the student's {list(tags)} "
                             "(types named otherwise? lexner export --rename gives them the student's names)")
        columns = [label_set.tag_index[t] for t in tags]
        crf = teacher.head(head)[1]
        teacher.eval()
        with torch.inference_mode():
            for k in range(0, len(order), batch_size):
                ids = [i for i in order[k : k + batch_size] if texts[i]]
                if not ids:
                    continue
                batch = teacher.featurizer.collate([teacher.featurizer.encode_one(texts[i]) for i in ids], head)
                batch = batch.to(teacher.device)
                emissions = teacher.emissions(batch).float()
                out = emissions if kind == "mse" else crf.log_marginals(emissions, batch.mask).exp()
                out = out[..., columns].cpu().numpy()
                for row, i in enumerate(ids):
                    total[i] += out[row, : len(texts[i])]
    return [t / len(teachers) for t in total]
