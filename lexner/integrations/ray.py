"""Tagging corpora on a Ray cluster (``pip install "lexner[ray]"``)::

    import ray
    from lexner.integrations.ray import tag_dataset

    ds = ray.data.read_text("s3://bucket/corpus/")           # one text per row, in the "text" column
    tagged = tag_dataset(ds, model="models/news", workers=8)  # lazy, like every Ray Data transform
    tagged.write_parquet("s3://bucket/entities/")

Each worker is a Ray actor that loads the model once (from ``model``, a directory every node can read; None: the
bundled model; a loaded tagger: the directory it was loaded from, with its runtime and dictionary) and tags the
blocks Ray Data streams to it with :meth:`~lexner.Tagger.tag_batch`, so the output is what ``tag_batch`` gives on
one machine: an ``entities`` column beside the input's columns (those passed through untouched, as Arrow data),
each row a list of ``{"start", "end", "label", "text"}`` with offsets into that row's text (a null text: none),
typed ``list<struct<start: int64, end: int64, label: string, text: string>>`` in every block. Rows keep their order
within a block; Ray Data keeps the blocks' order when its ``DataContext.execution_options.preserve_order`` is set.

Ray is an optional dependency: nothing in lexner imports this module, and importing it without Ray fails with
the install hint.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lexner.models import Tagger

try:
    import pyarrow as pa
    import ray.data
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError('lexner.integrations.ray needs Ray Data: pip install "lexner[ray]"') from err


class Tagging:
    """A Ray Data callable class: one loaded model per actor, tagging the ``column`` of each batch (an Arrow
    table, so the input's columns pass through as they are: no column converted to numpy and back)."""

    def __init__(self, recipe: tuple, column: str, output_column: str, labels: str | None, batch_size: int,
                 threads: int):
        import torch

        from lexner.api import reloaded

        torch.set_num_threads(threads)
        self.tagger = reloaded(recipe)  # lexner.api.reload_recipe: the driver's model, dictionary and runtime
        self.column, self.output_column = column, output_column
        self.labels, self.batch_size = labels, batch_size

    def __call__(self, batch: "pa.Table") -> "pa.Table":
        _check_columns(batch.column_names, self.column, self.output_column)
        texts = [_text(value, self.column) for value in batch.column(self.column).to_pylist()]
        found = self.tagger.tag_batch(texts, batch_size=self.batch_size, labels=self.labels)
        # typed, so that a block without a single entity has the same column type as the others (an inferred
        # list<null> there made the Parquet files of one write_parquet unreadable together)
        entities = pa.array([[e.to_dict() for e in row] for row in found], type=ENTITIES)
        return batch.append_column(self.output_column, entities)


ENTITIES = pa.list_(pa.struct([("start", pa.int64()), ("end", pa.int64()), ("label", pa.string()),
                               ("text", pa.string())]))


def _check_columns(columns: list[str], column: str, output_column: str) -> None:
    """The text column must be there and the output column must not (it would replace the input's)."""
    if column not in columns:
        raise ValueError(f"the dataset has no column {column!r} (it has {sorted(columns)})")
    if output_column in columns:
        raise ValueError(f"the dataset already has a column {output_column!r}; give another output_column")


def _text(value: Any, column: str) -> str:
    """A cell of the text column as the text to tag: a null (None, or a float NaN) has no entities; anything
    else but a str is a TypeError naming its type (bytes are not decoded with a guessed encoding, and a number is
    no text)."""
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    hint = " (decode it first)" if isinstance(value, (bytes, bytearray)) else ""
    raise TypeError(f"column {column!r} holds a {type(value).__name__}, not a str{hint}: {value!r:.60}")


def tag_dataset(dataset: "ray.data.Dataset", model: "str | os.PathLike | Tagger | None" = None, *,
                column: str = "text", output_column: str = "entities", labels: str | None = None,
                dictionary: Any = None, workers: int = 2, threads_per_worker: int = 1, rows_per_call: int = 1024,
                batch_size: int = 64, runtime: str | None = None,
                onnx: bool | str | None = None) -> "ray.data.Dataset":
    """``dataset`` with an ``output_column`` of the entities in each row's ``column``, tagged by up to ``workers``
    actors (as many as the CPUs left by the read tasks allow) with ``threads_per_worker`` torch threads (and as
    many CPUs reserved) each; each call of an actor
    takes ``rows_per_call`` rows and tags them in batches of ``batch_size`` texts.  ``labels``: the head of a
    multi-task model (None: the default one); ``dictionary``, ``runtime`` and ``onnx``: as in
    :func:`lexner.load`.  ``model`` may be a tagger loaded from a directory: the actors load that directory,
    with the tagger's runtime, dictionary and piece length (see :func:`lexner.api.reload_recipe`).

    The model is loaded once here, before the job is built, so that what would fail in every actor — a model
    directory that is not one, an unknown head, dictionary types the head lacks, a runtime not installed — fails
    here at once."""
    import lexner
    from lexner.api import KEEP, reload_recipe
    from lexner.models import Tagger

    columns = dataset.columns(fetch_if_missing=False)  # known without running the pipeline, or None
    if columns is not None:
        _check_columns(columns, column, output_column)
    if workers < 1 or threads_per_worker < 1 or rows_per_call < 1 or batch_size < 1:
        raise ValueError("workers, threads_per_worker, rows_per_call and batch_size must be ≥ 1")
    nodes = [n.get("Resources", {}).get("CPU", 0) for n in ray.nodes() if n.get("Alive")] if ray.is_initialized() else []
    if nodes and threads_per_worker > max(nodes):  # no node can ever hold such an actor: Ray would wait forever
        raise ValueError(f"threads_per_worker = {threads_per_worker} CPUs for one tagger, but the largest node of the "
                         f"Ray cluster has {max(nodes):g}")
    if isinstance(model, Tagger):
        if (dictionary, runtime, onnx) != (None, None, None):
            raise ValueError("a loaded tagger brings its own dictionary and runtime: give dictionary, runtime and "
                             "onnx to lexner.load, or a model directory here")
        tagger, recipe_runtime = model, None
    else:
        if model is not None:
            model = Path(model).resolve()
            if not model.is_dir():
                raise FileNotFoundError(f"model directory {model} does not exist (workers load the model from a "
                                        "path every node can read)")
        tagger = lexner.load(model, dictionary=dictionary, runtime=runtime, onnx=onnx)
        # none asked: each actor runs what the model directory says, as its node can (onnxruntime may be there)
        recipe_runtime = KEEP if runtime is None and onnx is None else None
    tagger.check_head(labels)
    return dataset.map_batches(
        Tagging, fn_constructor_kwargs={"recipe": reload_recipe(tagger, runtime=recipe_runtime), "column": column,
                                        "output_column": output_column, "labels": labels, "batch_size": batch_size,
                                        "threads": threads_per_worker},
        batch_size=rows_per_call, batch_format="pyarrow",
        # up to `workers` taggers, as many as the CPUs left by reading allow: a pool of a fixed size waits for all
        # its actors, which can take every CPU the read tasks need (the README's example hung on a 2-CPU machine)
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=workers),
        num_cpus=threads_per_worker)
