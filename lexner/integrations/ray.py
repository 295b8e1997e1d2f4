"""Tagging corpora on a Ray cluster (``pip install "lexner[ray]"``)::

    import ray
    from lexner.integrations.ray import tag_dataset

    ds = ray.data.read_text("s3://bucket/corpus/")           # one text per row, in the "text" column
    tagged = tag_dataset(ds, model="models/news", workers=8)  # lazy, like every Ray Data transform
    tagged.write_parquet("s3://bucket/entities/")

Each worker is a Ray actor that loads the model once (from ``model``, a directory every node can read; None:
the bundled model) and tags the blocks Ray Data streams to it with :meth:`~lexner.Tagger.tag_batch`, so the
output is what ``tag_batch`` gives on one machine: an ``entities`` column beside the input's columns, each row a
list of ``{"start", "end", "label", "text"}`` with offsets into that row's text (a null text: none).  Rows keep
their order within a block; Ray Data keeps the blocks' order when its ``DataContext.execution_options
.preserve_order`` is set.

Ray is an optional dependency: nothing in lexner imports this module, and importing it without Ray fails with
the install hint.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

try:
    import ray.data
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError('lexner.integrations.ray needs Ray Data: pip install "lexner[ray]"') from err


class Tagging:
    """A Ray Data callable class: one loaded model per actor, tagging the ``column`` of each batch."""

    def __init__(self, model: str | None, column: str, output_column: str, labels: str | None, batch_size: int,
                 threads: int, onnx: bool | str | None = None):
        import torch

        import lexner

        torch.set_num_threads(threads)
        self.tagger = lexner.load(model, onnx=onnx)
        self.column, self.output_column = column, output_column
        self.labels, self.batch_size = labels, batch_size

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        if self.column not in batch:
            raise ValueError(f"the dataset has no column {self.column!r} (it has {sorted(batch)})")
        texts = [_text(value, self.column) for value in batch[self.column]]
        found = self.tagger.tag_batch(texts, batch_size=self.batch_size, labels=self.labels)
        return {**batch, self.output_column: [[e.to_dict() for e in entities] for entities in found]}


def _text(value: Any, column: str) -> str:
    """A cell of the text column as the text to tag: a null (None, or the NaN or ``pd.NA`` a pandas column holds
    for one) has no entities; anything else but a str is a TypeError naming its type (bytes are not decoded with
    a guessed encoding, and a number is no text)."""
    if isinstance(value, str):
        return value
    if _null(value):
        return ""
    hint = " (decode it first)" if isinstance(value, (bytes, bytearray)) else ""
    raise TypeError(f"column {column!r} holds a {type(value).__name__}, not a str{hint}: {value!r:.60}")


def _null(value: Any) -> bool:
    """Whether ``value`` is a missing value: None, a float NaN, or pandas' ``pd.NA``/``pd.NaT`` (pandas comes with
    Ray Data)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    try:
        import pandas
    except ImportError:
        return False
    return bool(pandas.api.types.is_scalar(value) and pandas.isna(value))


def tag_dataset(dataset: "ray.data.Dataset", model: str | os.PathLike | None = None, *, column: str = "text",
                output_column: str = "entities", labels: str | None = None, workers: int = 2,
                threads_per_worker: int = 1, rows_per_call: int = 1024, batch_size: int = 64,
                onnx: bool | str | None = None) -> "ray.data.Dataset":
    """``dataset`` with an ``output_column`` of the entities in each row's ``column``, tagged by ``workers``
    actors with ``threads_per_worker`` torch threads (and as many CPUs reserved) each; each call of an actor
    takes ``rows_per_call`` rows and tags them in batches of ``batch_size`` texts.  ``labels``: the head of a
    multi-task model (None: the default one); ``onnx``: as in :func:`lexner.load` (None: as the model directory
    says).  A loaded model can be given by the directory it was loaded from (``tagger.source``)."""
    columns = dataset.columns(fetch_if_missing=False)  # known without running the pipeline, or None
    if columns is not None and column not in columns:
        raise ValueError(f"the dataset has no column {column!r} (it has {columns})")
    if workers < 1 or threads_per_worker < 1 or rows_per_call < 1 or batch_size < 1:
        raise ValueError("workers, threads_per_worker, rows_per_call and batch_size must be ≥ 1")
    if model is not None:
        model = str(Path(model).resolve())
        if not Path(model).is_dir():
            raise FileNotFoundError(f"model directory {model} does not exist (workers load the model from a path "
                                    "every node can read)")
    return dataset.map_batches(
        Tagging, fn_constructor_kwargs={"model": model, "column": column, "output_column": output_column,
                                        "labels": labels, "batch_size": batch_size, "threads": threads_per_worker,
                                        "onnx": onnx},
        batch_size=rows_per_call, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=threads_per_worker)
