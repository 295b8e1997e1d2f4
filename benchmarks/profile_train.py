"""Where one training step's time goes, per tagger, on MSRA-shaped batches.

    python benchmarks/profile_train.py --models bilstm_crf softlexicon lattice_lstm flat --threads 1 \
        --steps 30 --out benchmarks/results/profile_train_cpu_1t.json

The taggers are built on the full MSRA training split (so the embedding tables and the optimiser's state have
their real sizes) and each step is a length-bucketed batch of ``--batch-size`` MSRA training sentences, trained
with the trainer's optimiser (``lexner.train.make_optimizer``; Adam by default).  A step is split into phases timed with ``time.perf_counter``
(after a device synchronisation on CUDA):

* ``collate``: padding the pre-encoded sentences into a ``Batch`` (featurisation itself — lexicon matching —
  happens once per training run and is reported separately as ``encode_seconds_per_sentence``);
* ``to_device``; ``embed_and_encode``: ``tagger.emissions`` (embeddings, lexicon pooling, LSTM/lattice/
  transformer, output layer); ``crf``: the CRF negative log-likelihood; ``backward``; ``clip``: gradient
  clipping; ``optimizer``: the optimiser step.

Each phase's share is the sum of its times over the measured steps; ``torch.profiler``'s table of the most
expensive operators over a few further steps is kept beside it (``top_ops``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from machine import count, machine_info, positive_int, write_result  # noqa: E402

from lexner.api import build_tagger, default_embeddings  # noqa: E402
from lexner.data import load_dataset  # noqa: E402
from lexner.train import TrainConfig, bucketed_batches, make_optimizer  # noqa: E402

PHASES = ("collate", "to_device", "embed_and_encode", "crf", "backward", "clip", "optimizer")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def profile(tagger, encoded: list[dict], batch_size: int, steps: int, warmup: int, device: str,
            optimizer_name: str, top: int) -> dict:
    params = [p for p in tagger.parameters() if p.requires_grad]
    optimizer = make_optimizer([{"params": params}], TrainConfig(optimizer=optimizer_name,
                                                                 lr=2e-3 if optimizer_name == "adam" else 0.02))
    batches = bucketed_batches([len(e["chars"]) for e in encoded], batch_size, random.Random(0))
    tagger.train()
    totals = dict.fromkeys(PHASES, 0.0)
    sentences = 0

    def step(ids: list[int], timed: bool) -> None:
        nonlocal sentences
        marks = [time.perf_counter()]

        def mark() -> None:
            _sync(device)
            marks.append(time.perf_counter())

        batch = tagger.featurizer.collate([encoded[i] for i in ids])
        mark()
        batch = batch.to(device)
        mark()
        emissions = tagger.emissions(batch)
        mark()
        loss = tagger.crf.nll(emissions, batch.tags, batch.mask)
        mark()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        mark()
        torch.nn.utils.clip_grad_norm_(tagger.parameters(), 5.0)
        mark()
        optimizer.step()
        mark()
        if timed:
            for name, a, b in zip(PHASES, marks, marks[1:]):
                totals[name] += b - a
            sentences += len(ids)

    for k in range(warmup):
        step(batches[k], timed=False)
    for k in range(warmup, warmup + steps):
        step(batches[k % len(batches)], timed=True)
    total = sum(totals.values())
    from torch.profiler import ProfilerActivity, profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    with torch_profile(activities=activities) as prof:
        for k in range(5):
            step(batches[(warmup + steps + k) % len(batches)], timed=False)
    sort_key = "self_cuda_time_total" if device.startswith("cuda") else "self_cpu_time_total"
    ops = sorted(prof.key_averages(), key=lambda e: getattr(e, sort_key.replace("cuda", "device"), 0)
                 or getattr(e, sort_key, 0), reverse=True)[:top]
    return {
        "batch_size": batch_size, "steps": steps, "seconds": round(total, 3),
        "sentences_per_second": round(sentences / total, 1),
        "phases_ms_per_step": {k: round(1000 * v / steps, 2) for k, v in totals.items()},
        "phases_share": {k: round(v / total, 3) for k, v in totals.items()},
        "top_ops": [{"op": e.key, "calls": e.count, "self_cpu_ms": round(e.self_cpu_time_total / 1000, 2)}
                    for e in ops],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["bilstm_crf", "softlexicon", "lattice_lstm", "flat"])
    parser.add_argument("--dataset", default="msra")
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    parser.add_argument("--threads", type=positive_int, default=1)
    parser.add_argument("--steps", type=positive_int, default=30)
    parser.add_argument("--warmup", type=count, default=3)
    parser.add_argument("--top", type=positive_int, default=12)
    parser.add_argument("--sentences", type=positive_int, default=4000,
                        help="training sentences encoded for the batches")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train = load_dataset(args.dataset, "train")
    rows = []
    for model in args.models:
        torch.manual_seed(0)
        tagger = build_tagger(model, train, None, default_embeddings(), bigram_min_count=3).to(args.device)
        sample = random.Random(0).sample([s for s in train if s.text], args.sentences)
        started = time.perf_counter()
        encoded = [tagger.featurizer.encode_one(s.text, s.spans) for s in sample]
        encode = (time.perf_counter() - started) / len(sample)
        row = {"model": model, "encode_seconds_per_sentence": round(encode, 6),
               **profile(tagger, encoded, args.batch_size, args.steps, args.warmup, args.device, args.optimizer,
                         args.top)}
        print(json.dumps({k: v for k, v in row.items() if k != "top_ops"}), flush=True)
        rows.append(row)
        del tagger
    result = {"benchmark": "profile_train", "dataset": args.dataset, "threads": args.threads,
              "device": args.device, "optimizer": args.optimizer, "rows": rows, "machine": machine_info()}
    write_result(args.out, result)


if __name__ == "__main__":
    main()
