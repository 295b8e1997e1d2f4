"""The CPU runtimes of the encoder, measured: one model loaded four times — as is (torch), with ``onnx=True``
(its encoder, ids to tag scores, run by ONNX Runtime, see ``lexner.onnx_encoder``), with ``onnx="int8"`` (the
same with int8 LSTM weights) and with ``runtime="torch-bf16"`` (a bfloat16 copy of the LSTM in torch) — tagging the same MSRA test
sentences side by side in one run, one thread each, with the F1 of each on MSRA test (labels mapped to
PER/LOC/ORG as in ``peers.py``).

    pip install -e ".[bench,peers,onnx]"
    python benchmarks/onnx_encoder.py [--model DIR] [--limit 0] [--out benchmarks/results/onnx_encoder_cpu.json]

Single calls: ``tag()`` on each sentence; batched: ``tag_batch`` with batches of 64 (padded batches run in
ONNX Runtime too).  Rounds alternate between the four and the best of ``--repeat`` counts.
``*_sentences_differing`` counts the sentences where a runtime's entities differ from torch's;
``sentences_batched_differing_from_single`` those where a runtime's batched entities differ from its own single
calls (int8 quantizes activations per call, so a sentence's result may depend on its batch; bfloat16 kernels
may round a sentence differently in a batch).  ``--kernels`` also times the encoders alone (``emissions``: ids
to tag scores; torch, ONNX Runtime float32 and int8, torch bfloat16) on a batch of 1 and of 64 sentences of 40
characters (of as many as the sentences hold where ``--limit`` leaves fewer: the batch recorded is the one timed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import count, load_model, machine_info, positive_int, recorded_path, require, write_result  # noqa: E402
from peers import LABELS, entity_spans  # noqa: E402

import torch  # noqa: E402

from lexner.data import load_dataset  # noqa: E402
from lexner.evaluate import score_spans  # noqa: E402
from lexner.schemes import Span  # noqa: E402


KERNEL_BATCHES = (1, 64)  # sentences of KERNEL_LENGTH characters per timed batch
KERNEL_LENGTH = 40


def kernels(systems: dict, texts: list[str], repeat: int) -> list[dict]:
    """Each system's encoder alone (``emissions``: ids to tag scores) on the same encoded batches of the
    ``texts`` of at least 40 characters, cut to 40: a batch of :data:`KERNEL_BATCHES` sentences each, or of as
    many as there are (``--limit`` leaves fewer); each row records the batch it timed."""
    featurizer = systems["torch"].featurizer
    pieces = [t[:KERNEL_LENGTH] for t in texts if len(t) >= KERNEL_LENGTH]
    rows = []
    for size in sorted({min(size, len(pieces)) for size in KERNEL_BATCHES} - {0}):
        batch = featurizer.collate([featurizer.encode_one(t) for t in pieces[:size]])
        calls = 300 if size == 1 else 20
        best = dict.fromkeys(systems, float("inf"))
        with torch.inference_mode():
            for _ in range(repeat):
                for name, tagger in systems.items():
                    started = time.perf_counter()
                    for _ in range(calls):
                        tagger.emissions(batch)
                    best[name] = min(best[name], (time.perf_counter() - started) / calls)
        rows.append({"batch": size, "length": KERNEL_LENGTH,
                     **{f"{name}_ms": round(best[name] * 1e3, 3) for name in best},
                     **{f"{name}_speedup": round(best["torch"] / best[name], 2) for name in systems if name != "torch"}})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a model directory (default: the bundled model)")
    parser.add_argument("--limit", type=count, default=0, help="first N MSRA test sentences (0: all)")
    parser.add_argument("--repeat", type=positive_int, default=3)
    parser.add_argument("--kernels", action="store_true", help="also time the encoders alone")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    onnxruntime = require("onnxruntime", "onnx")

    torch.set_num_threads(1)
    systems = {"torch": load_model(args.model, onnx=False), "onnx": load_model(args.model, onnx=True),
               "onnx-int8": load_model(args.model, onnx="int8"),
               "torch-bf16": load_model(args.model, runtime="torch-bf16")}
    sentences = load_dataset("msra", "test")
    sentences = sentences[: args.limit] if args.limit else sentences
    texts = [s.text for s in sentences]
    gold = [[Span(sp.start, sp.end, LABELS[sp.label]) for sp in s.spans] for s in sentences]
    chars = sum(map(len, texts))
    rows, outputs = [], {}
    for kind, run in (("single call", lambda t: [t.tag(x) for x in texts]),
                      ("batch 64", lambda t: t.tag_batch(texts, batch_size=64))):
        best, found = {}, {}
        for name, tagger in systems.items():
            tagger.tag_batch(texts[:50])  # warm-up
        for _ in range(args.repeat):
            for name, tagger in systems.items():
                started = time.perf_counter()
                found[name] = run(tagger)
                best[name] = min(best.get(name, float("inf")), time.perf_counter() - started)
        f1 = {name: score_spans(gold, [entity_spans(es) for es in found[name]], [len(t) for t in texts])["micro"]["f1"]
              for name in systems}
        rows.append({"kind": kind, **{f"{name}_chars_per_second": round(chars / best[name]) for name in systems},
                     **{f"{name}_speedup": round(best["torch"] / best[name], 2) for name in systems if name != "torch"},
                     **{f"{name}_f1": round(100 * f1[name], 2) for name in systems},
                     "onnx_identical": found["torch"] == found["onnx"],
                     **{f"{name}_sentences_differing": sum(a != b for a, b in zip(found["torch"], found[name]))
                        for name in systems if name != "torch"}})
        outputs[kind] = found
        print(json.dumps(rows[-1]))
    # int8 quantizes activations per call (bfloat16 kernels block differently): a result may depend on its batch
    batched_vs_single = {name: sum(a != b for a, b in zip(outputs["single call"][name], outputs["batch 64"][name]))
                         for name in systems}
    print(json.dumps({"sentences_batched_differing_from_single": batched_vs_single}))
    result = {"benchmark": "onnx_encoder", "model": systems["torch"].name,
              "model_dir": recorded_path(args.model) if args.model else "bundled",
              "texts": "msra/test", "sentences": len(texts), "characters": chars,
              "onnxruntime": onnxruntime.__version__, "torch_threads": 1, "rows": rows,
              "sentences_batched_differing_from_single": batched_vs_single,
              **({"kernels": kernels(systems, texts, args.repeat), "kernels_of": "the encoder, ids to tag scores"}
                 if args.kernels else {}),
              "machine": machine_info()}
    if args.kernels:
        print(json.dumps(result["kernels"]))
    write_result(args.out, result)


if __name__ == "__main__":
    main()
