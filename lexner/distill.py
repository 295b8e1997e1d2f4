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


def mapped_tags(teacher_tags: Sequence[str], student_tags: Sequence[str], type_map: dict[str, str]) -> np.ndarray:
    """The (teacher tags, student tags) 0/1 matrix that sums a teacher's tag marginals into the student's tags
    when the student's corpus had its types mapped (``lexner.data.TYPE_MAPS``): ``B-T`` → ``B-type_map[T]``,
    a type without an entry → ``O`` (its mentions are no entities for the student).  ``ValueError`` when a
    mapped tag is not the student's."""
    index = {t: i for i, t in enumerate(student_tags)}
    matrix = np.zeros((len(teacher_tags), len(student_tags)), dtype=np.float32)
    for row, tag in enumerate(teacher_tags):
        prefix, _, label = tag.partition("-")
        target = f"{prefix}-{type_map[label]}" if label in type_map else "O"
        if target not in index:
            raise ValueError(f"the teacher's tag {tag} maps to {target}, which is not among the student's tags "
                             f"{list(student_tags)}")
        matrix[row, index[target]] = 1.0
    return matrix


def teacher_head(teacher, name: str | None, tags: Sequence[str]) -> str | None:
    """The head of ``teacher`` that teaches a task named ``name`` whose tags are ``tags``: its head of that name,
    even with other types (a teacher of the corpus's original types, which :func:`teacher_targets` maps), else
    the one :meth:`Featurizer.head_with_tags` finds (a multi-task model, e.g. the bundled one, teaching a one-head
    student on its Weibo types); None (the default head, whose tags :func:`teacher_targets` then checks) when
    none is found."""
    featurizer = teacher.featurizer
    if name in featurizer.label_sets:
        return name
    head = featurizer.head_with_tags(name, tags)
    return None if head == featurizer.default_labels else head


def teacher_targets(teachers: Sequence, texts: Sequence[str], kind: str, tags: Sequence[str],
                    labels: Sequence[str | None] | None = None, batch_size: int = 64,
                    type_map: dict[str, str] | None = None, progress: str | None = None) -> list[np.ndarray]:
    """Per text, a float32 array (characters, tags) in the order of ``tags``: the teachers' mean emission
    scores (``kind`` "mse") or mean tag marginals ("kl").  ``labels[i]``: the head of teacher i (None: its
    default).  ``type_map``: the map the student's corpus had its types renamed with; a teacher with the
    corpus's original types then teaches through it (``kl`` only: marginals sum, see :func:`mapped_tags`).
    ``progress``: a progress bar (stderr) with this description, over every teacher's sentences."""
    from tqdm.auto import tqdm

    if kind not in KINDS:
        raise ValueError(f"distillation kind must be one of {KINDS}, got {kind!r}")
    if not teachers:
        raise ValueError("distillation needs at least one teacher")
    labels = list(labels) if labels is not None else [None] * len(teachers)
    total = [np.zeros((len(t), len(tags)), dtype=np.float32) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    bar = tqdm(total=len(teachers) * len(texts), desc=progress, unit="sentence", disable=progress is None)
    for teacher, head in zip(teachers, labels):
        label_set = teacher.featurizer.label_set(head)
        which = teacher.source or f"teacher {teachers.index(teacher) + 1}"
        if sorted(label_set.tags) == sorted(tags):  # the student's tags, perhaps in another order
            mapping = {t: t for t in label_set.entity_types}
        elif type_map is None:
            student_types = sorted({t.partition("-")[2] for t in tags} - {""})
            raise ValueError(f"{which}: the teacher's entity types {sorted(label_set.entity_types)} are not the "
                             f"student's {student_types} "
                             "(types named otherwise? lexner export --rename gives them the student's names)")
        elif kind != "kl":
            raise ValueError(f"{which}: a teacher of the corpus's original types teaches through its type map, "
                             "which needs kl distillation (marginals add up, emission scores do not)")
        elif not set(label_set.entity_types) & type_map.keys():  # else every tag would map to O: nothing taught
            raise ValueError(f"{which}: the teacher's entity types {sorted(label_set.entity_types)} are neither "
                             f"the student's nor any the corpus's types are renamed from ({sorted(type_map)}) "
                             "(types named otherwise? lexner export --rename gives them the student's names)")
        else:
            mapping = type_map
        try:
            matrix = mapped_tags(label_set.tags, tags, mapping)  # a permutation when the tags are the student's
        except ValueError as err:
            raise ValueError(f"{which}: {err}") from None
        crf = teacher.head(head)[1]
        teacher.eval()
        with torch.inference_mode():
            for k in range(0, len(order), batch_size):
                ids = [i for i in order[k : k + batch_size] if texts[i]]
                bar.update(len(order[k : k + batch_size]))
                if not ids:
                    continue
                batch = teacher.featurizer.collate([teacher.featurizer.encode_one(texts[i]) for i in ids], head)
                batch = batch.to(teacher.device)
                emissions = teacher.emissions(batch).float()
                out = emissions if kind == "mse" else crf.log_marginals(emissions, batch.mask).exp()
                out = out.cpu().numpy() @ matrix
                for row, i in enumerate(ids):
                    total[i] += out[row, : len(texts[i])]
    bar.close()
    return [t / len(teachers) for t in total]
