"""Training sentences/s of 1 process vs N data-parallel processes (torchrun, gloo on CPU / NCCL on GPU).

    python benchmarks/ddp_speed.py --model bilstm_crf --processes 1 2 --epochs 1 \
        --out benchmarks/results/ddp_speed_cpu.json

Each setting runs ``lexner train`` on Weibo train (dev for the end-of-epoch evaluation) for ``--epochs``
epochs with one torch thread per process, one setting after the other in one run; the speed is the
trainer's own ``sentences_per_second`` (training time only, evaluation excluded) from ``log.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import positive_int  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="bilstm_crf")
    parser.add_argument("--processes", nargs="+", type=positive_int, default=[1, 2])
    parser.add_argument("--epochs", type=positive_int, default=1)
    parser.add_argument("--batch-size", type=positive_int, default=32, help="the global batch")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from machine import machine_info, write_result

    from lexner.train import epoch_records

    rows = []
    with tempfile.TemporaryDirectory(prefix="lexner-ddp-") as tmp:
        for n in args.processes:
            out = Path(tmp) / f"p{n}"
            launch = [sys.executable] if n == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                      "--nproc_per_node", str(n)]
            cmd = [*launch, "-m", "lexner", "train", "--model", args.model, "--dataset", "weibo", "--out", str(out),
                   "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--patience", "0",
                   "--threads", "1", "--no-progress", "--device", args.device]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"ddp_speed: {n} process(es) failed:\n{done.stderr[-3000:]}")
            log = epoch_records(out / "log.jsonl")
            rows.append({"processes": n, "epochs": len(log),
                         "sentences_per_second": round(sum(r["sentences_per_second"] for r in log) / len(log), 1),
                         "train_seconds": round(sum(r["train_seconds"] for r in log), 1)})
            print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["sentences_per_second"]
    result = {"benchmark": "ddp_speed", "model": args.model, "dataset": "weibo", "global_batch": args.batch_size,
              "device": args.device, "rows": rows,
              "speedup": {str(r["processes"]): round(r["sentences_per_second"] / base, 2) for r in rows},
              "machine": machine_info()}
    write_result(args.out, result)


if __name__ == "__main__":
    main()
