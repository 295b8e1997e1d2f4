"""Training throughput (sentences/s, forward + backward + optimiser step) by model and batch size.

    python benchmarks/train_speed.py --models bilstm_crf lattice_lstm --dataset weibo --batch-sizes 1 32 \
        --threads 1 --seconds 60 --out benchmarks/results/train_speed_weibo.json

All measurements run in one process, one after another, so that their ratios hold on a noisy machine.  Each
(model, batch size) trains for ``--seconds`` on length-bucketed batches of the training split (SGD with
momentum, as the trainer's default), after ``--warmup`` batches that are not timed.
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
from machine import machine_info  # noqa: E402

from lexner.api import build_tagger, default_embeddings  # noqa: E402
from lexner.data import load_dataset  # noqa: E402
from lexner.train import bucketed_batches  # noqa: E402


def measure(tagger, encoded, batch_size: int, seconds: float, warmup: int, device: str) -> dict:
    optimizer = torch.optim.SGD(tagger.parameters(), lr=0.01, momentum=0.9)
    batches = bucketed_batches([len(e["chars"]) for e in encoded], batch_size, random.Random(0))
    tagger.train()
    sentences = characters = steps = 0
    started = None
    for k, ids in enumerate(batches * 100):
        if k == warmup:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            started = time.perf_counter()
        batch = tagger.featurizer.collate([encoded[i] for i in ids]).to(device)
        loss = tagger.loss(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if started is not None:
            sentences += len(ids)
            characters += int(batch.lengths.sum())
            steps += 1
            if time.perf_counter() - started >= seconds:
                break
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    return {"batch_size": batch_size, "steps": steps, "sentences": sentences, "seconds": round(elapsed, 2),
            "sentences_per_second": round(sentences / elapsed, 2),
            "characters_per_second": round(characters / elapsed, 1),
            "epoch_seconds_estimate": round(len(encoded) / (sentences / elapsed), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["bilstm_crf", "lattice_lstm"])
    parser.add_argument("--dataset", default="weibo")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--set", action="append", default=[], metavar="MODEL:KEY=VALUE",
                        help="model config override, e.g. lattice_lstm:bidirectional=false")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train = load_dataset(args.dataset, "train")
    overrides: dict[str, dict] = {}
    for item in args.set:
        model, kv = item.split(":", 1)
        key, value = kv.split("=", 1)
        overrides.setdefault(model, {})[key] = json.loads(value)
    rows = []
    for model in args.models:
        torch.manual_seed(0)
        tagger = build_tagger(model, train, overrides.get(model), default_embeddings()).to(args.device)
        encoded = [tagger.featurizer.encode_one(s.text, s.spans) for s in train if s.text]
        for batch_size in args.batch_sizes:
            row = {"model": model, "config": overrides.get(model, {}),
                   **measure(tagger, encoded, batch_size, args.seconds, args.warmup, args.device)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    result = {"benchmark": "train_speed", "dataset": args.dataset, "threads": args.threads, "device": args.device,
              "rows": rows, "machine": machine_info()}
    for model in args.models:
        speeds = {r["batch_size"]: r["sentences_per_second"] for r in rows if r["model"] == model}
        if len(speeds) > 1:
            smallest, largest = min(speeds), max(speeds)
            result.setdefault("speedup", {})[model] = {
                f"batch {largest} / batch {smallest}": round(speeds[largest] / speeds[smallest], 2)}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result.get("speedup", {}), indent=2))


if __name__ == "__main__":
    main()
