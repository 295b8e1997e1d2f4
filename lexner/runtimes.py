"""The names of the runtimes a tagger's encoder can run in, and of the ONNX graphs a model directory may carry:
apart from :mod:`lexner.onnx_encoder`, which imports torch, so that the command line's parser reads them cheaply."""

from __future__ import annotations

# the runtimes of lexner.load(runtime=...), lexner tag --runtime and config.json's "runtime"; None: as saved
RUNTIMES = ("torch", "torch-bf16", "onnx", "onnx-int8")
ONNX_PRECISIONS = {"onnx": "float32", "onnx-int8": "int8"}  # ONNX runtimes -> use_onnx's precision
PRECISIONS = tuple(ONNX_PRECISIONS.values())
# the default head's graph a model directory may carry, per precision (lexner export --onnx-graph)
GRAPH_FILES = {precision: f"encoder-{precision}.onnx" for precision in PRECISIONS}
