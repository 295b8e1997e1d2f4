"""Training throughput (sentences/s, forward + backward + clipping + optimiser step) by model and batch size.

    python benchmarks/train_speed.py --models bilstm_crf lattice_lstm --dataset weibo --batch-sizes 1 32 \
        --threads 1 --seconds 60 --out benchmarks/results/train_speed_weibo.json
    python benchmarks/train_speed.py --compare e5ece43 --dataset msra --batch-sizes 32 --optimizer adam \
        --out benchmarks/results/train_speed_msra_cpu_vs_e5ece43.json     # this tree against an older commit

All measurements run in one invocation, one after another, so that their ratios hold on a noisy machine.  Each
(model, batch size) trains for ``--seconds`` on length-bucketed batches of the training split with the
trainer's optimiser (``--optimizer``; SGD with momentum is the trainer's default) and gradient clipping at 5,
after ``--warmup`` batches that are not timed.

``--compare REV`` measures lexner at git revision REV (extracted with ``git archive``) and this working tree
side by side: for each model and batch size, REV and this tree (``--repeat N``: N such pairs, alternating which
runs first), each in a fresh process (the same script, with ``PYTHONPATH`` pointing at the tree under test), and
reports this tree's speed-up over REV (the median of the pairs' ratios, :func:`machine.paired_ratio`).  The
optimiser is whatever the tree under test's trainer builds (``lexner.train.make_optimizer`` where it exists).
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
from machine import count, machine_info, positive_float, positive_int, write_result  # noqa: E402

from lexner.train import bucketed_batches  # noqa: E402


def trainer_optimizer(tagger, name: str):
    """The optimiser the trainer of the lexner under test builds (older trees: torch's default constructors)."""
    params = [p for p in tagger.parameters() if p.requires_grad]
    lr = 2e-3 if name == "adam" else 0.01
    try:
        from lexner.train import TrainConfig, make_optimizer
    except ImportError:
        return (torch.optim.Adam(params, lr=lr) if name == "adam"
                else torch.optim.SGD(params, lr=lr, momentum=0.9))
    return make_optimizer([{"params": params}], TrainConfig(optimizer=name, lr=lr))


def measure(tagger, encoded, batch_size: int, seconds: float, warmup: int, device: str,
            optimizer_name: str = "sgd") -> dict:
    optimizer = trainer_optimizer(tagger, optimizer_name)
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
        torch.nn.utils.clip_grad_norm_(tagger.parameters(), 5.0)
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
            "characters_per_second": round(characters / elapsed, 1)}


def measure_models(args, overrides: dict[str, dict]) -> list[dict]:
    """Every (model, batch size) of ``args`` in this process, with the lexner on ``sys.path``."""
    from lexner.api import build_tagger, default_embeddings
    from lexner.data import load_dataset

    torch.set_num_threads(args.threads)
    train = load_dataset(args.dataset, "train")
    rows = []
    for model in args.models:
        torch.manual_seed(0)
        tagger = build_tagger(model, train, overrides.get(model), default_embeddings(),
                              bigram_min_count=args.bigram_min_count).to(args.device)
        sample = [s for s in train if s.text]
        if args.sentences and len(sample) > args.sentences:
            sample = random.Random(0).sample(sample, args.sentences)
        encoded = [tagger.featurizer.encode_one(s.text, s.spans) for s in sample]
        for batch_size in args.batch_sizes:
            row = {"model": model, "config": overrides.get(model, {}),
                   **measure(tagger, encoded, batch_size, args.seconds, args.warmup, args.device, args.optimizer)}
            row["epoch_seconds_estimate"] = round(len(train) / row["sentences_per_second"], 1)
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def compare(args, argv: list[str]) -> list[dict]:
    """Rows for REV and for this tree, interleaved per (model, batch size), each from a fresh process."""
    import subprocess

    from machine import alternating, lexner_at, lexner_tree, tree_env

    rows = []
    with lexner_at(args.compare) as (commit, tmp):
        trees = [(commit, tmp), ("working tree", lexner_tree())]
        keep = [a for a in argv if a not in ("--compare", args.compare)]
        keep = [a for i, a in enumerate(keep) if not (a == "--out" or (i and keep[i - 1] == "--out"))]
        for model in args.models:
            for batch_size in args.batch_sizes:
                for pair, (name, tree) in alternating(*trees, args.repeat):  # A B, B A, A B ...
                    worker = [sys.executable, __file__, *keep, "--worker", "--models", model,
                              "--batch-sizes", str(batch_size)]
                    done = subprocess.run(worker, env=tree_env(tree), capture_output=True, text=True)
                    if done.returncode != 0:
                        sys.exit(f"train_speed: {name} failed:\n{done.stderr[-3000:]}")
                    row = {"code": name, "pair": pair, **json.loads(done.stdout.strip().splitlines()[-1])}
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    return rows


def model_setting(text: str) -> tuple[str, str, object]:
    """An argparse type: ``MODEL:KEY=VALUE`` (the value JSON: ``false``, ``3``, ``"x"``) as its three parts."""
    model, colon, setting = text.partition(":")
    key, equals, value = setting.partition("=")
    if not (colon and equals and model and key):
        raise argparse.ArgumentTypeError(f"expected MODEL:KEY=VALUE, got {text!r}")
    try:
        return model, key, json.loads(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"the value of {text!r} is not JSON (false, 3, \"name\")") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["bilstm_crf", "lattice_lstm"])
    parser.add_argument("--dataset", default="weibo")
    parser.add_argument("--batch-sizes", nargs="+", type=positive_int, default=[1, 32])
    parser.add_argument("--threads", type=positive_int, default=1)
    parser.add_argument("--seconds", type=positive_float, default=60)
    parser.add_argument("--warmup", type=count, default=3)
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    parser.add_argument("--bigram-min-count", type=int, default=1)
    parser.add_argument("--sentences", type=count, default=0,
                        help="encode a seeded sample of this many training sentences for the batches (0: all)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--set", action="append", default=[], metavar="MODEL:KEY=VALUE", type=model_setting,
                        help="model config override, e.g. lattice_lstm:bidirectional=false")
    parser.add_argument("--compare", metavar="REV", help="also measure lexner at this git revision, side by side")
    parser.add_argument("--repeat", type=positive_int, default=1,
                        help="with --compare: alternate REV and this tree this many times per model (median ratio)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    overrides: dict[str, dict] = {}
    for model, key, value in args.set:
        overrides.setdefault(model, {})[key] = value
    if args.compare and not args.worker:
        rows = compare(args, sys.argv[1:])
    else:
        rows = measure_models(args, overrides)
    if args.worker:
        return
    result = {"benchmark": "train_speed", "dataset": args.dataset, "threads": args.threads, "device": args.device,
              "optimizer": args.optimizer, "rows": rows, "machine": machine_info()}
    if args.compare:
        from machine import paired_ratio

        result["baseline"] = next(r["code"] for r in rows if r["code"] != "working tree")
        for model in args.models:
            for batch_size in args.batch_sizes:
                speeds = [(r["pair"], r["code"], r["sentences_per_second"]) for r in rows
                          if r["model"] == model and r["batch_size"] == batch_size]
                result.setdefault("speedup_vs_baseline", {}).setdefault(model, {})[f"batch {batch_size}"] = round(
                    paired_ratio(speeds, "working tree", result["baseline"]), 2)
    else:
        for model in args.models:
            speeds = {r["batch_size"]: r["sentences_per_second"] for r in rows if r["model"] == model}
            if len(speeds) > 1:
                smallest, largest = min(speeds), max(speeds)
                result.setdefault("speedup", {})[model] = {
                    f"batch {largest} / batch {smallest}": round(speeds[largest] / speeds[smallest], 2)}
    write_result(args.out, result)
    print(json.dumps(result.get("speedup_vs_baseline", result.get("speedup", {})), indent=2))


if __name__ == "__main__":
    main()
