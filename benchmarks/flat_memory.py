"""FLAT peak memory and time per training step: the memory-lean path against the full-tensor path.

    python benchmarks/flat_memory.py --lengths 50 100 200 300 --lean-only 500 1000 --batch 10 \
        --cap-gb 16 --out benchmarks/results/flat_memory.json

Each measurement runs in a fresh subprocess: it builds FLAT (the paper's MSRA size: model 160, 8 heads,
FFN 480) with the data root's lexicon, takes a batch of ``--batch`` pieces of MSRA test text of the given
length (real text, so the lattice has its real density of matched words), runs one training step (forward,
backward, SGD step) whose peak memory is measured — the growth of the process's peak RSS (ru_maxrss) over
what model, lexicon and data already took — then times ``--steps`` more steps.  The full-tensor path runs
under an address-space cap (``--cap-gb``); where it exceeds the cap
the result says so instead of exhausting the machine.  On CUDA (``--device cuda``) peak memory is
``torch.cuda.max_memory_allocated`` growth instead.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import positive_float, positive_int  # noqa: E402


def child(args) -> None:
    import torch

    from lexner.api import build_tagger, default_embeddings
    from lexner.data import load_dataset
    from lexner.lexicon import Lexicon

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    text = "".join(s.text for s in load_dataset("msra", "test"))
    pieces = [text[k * args.length : (k + 1) * args.length] for k in range(args.batch)]
    # the words only (first column): parsing the vectors would raise the peak that the step is measured against
    lexicon = Lexicon.from_wordlist(default_embeddings()["words"])
    from lexner.data import Sentence

    tagger = build_tagger("flat", [Sentence(p) for p in pieces], {"lean": args.path == "lean"},
                          lexicon=lexicon).to(args.device)
    batch = tagger.featurizer.encode(pieces, [[] for _ in pieces]).to(args.device)
    optimizer = torch.optim.SGD(tagger.parameters(), lr=1e-3, momentum=0.9)
    tagger.train()

    def step():
        loss = tagger.loss(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    # Peak memory: the first step's growth of the lifetime peak over what model, data and lexicon already
    # took (ru_maxrss only rises, so it must be the first step; later steps reuse the same sizes).
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.max_memory_allocated()
    else:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    step()
    if cuda:
        torch.cuda.synchronize()
    after = torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    started = time.perf_counter()  # time: the steps after the first
    for _ in range(args.steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - started) / args.steps
    tokens = int(batch.mask.sum() + batch.word_mask.sum())
    print(json.dumps({"path": args.path, "length": args.length, "batch": args.batch,
                      "max_tokens": int(batch.chars.shape[1] + batch.word_ids.shape[1]), "tokens": tokens,
                      "step_seconds": round(seconds, 3), "peak_mb": round((after - before) / 2**20, 1)}))


def run_one(path: str, length: int, args) -> dict:
    cmd = [sys.executable, __file__, "--child", "--path", path, "--length", str(length), "--batch", str(args.batch),
           "--steps", str(args.steps), "--threads", str(args.threads), "--device", args.device]

    def cap():
        if path == "naive" and args.cap_gb and not args.device.startswith("cuda"):
            limit = int(args.cap_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    done = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=cap)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode == 0 and lines:
        return json.loads(lines[-1])
    tail = (done.stderr.strip().splitlines() or ["?"])[-1]
    return {"path": path, "length": length, "batch": args.batch, "failed": tail[:300],
            "cap_gb": args.cap_gb if path == "naive" else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", nargs="+", type=positive_int, default=[50, 100, 200, 300])
    parser.add_argument("--lean-only", nargs="*", type=positive_int, default=[500, 1000])
    parser.add_argument("--naive-also", nargs="*", type=positive_int, default=[500],
                        help="lengths of --lean-only at which the naive path is tried under the cap")
    parser.add_argument("--batch", type=positive_int, default=10)
    parser.add_argument("--steps", type=positive_int, default=2)
    parser.add_argument("--threads", type=positive_int, default=1)
    parser.add_argument("--cap-gb", type=positive_float, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--path", choices=["lean", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--length", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    from machine import machine_info, write_result

    rows = []
    for length in args.lengths + args.lean_only:
        paths = ["lean"] + (["naive"] if length in args.lengths or length in args.naive_also else [])
        for path in paths:
            row = run_one(path, length, args)
            print(json.dumps(row), flush=True)
            rows.append(row)
    ratios = {}
    for length in args.lengths:
        lean = next((r for r in rows if r["path"] == "lean" and r["length"] == length and "peak_mb" in r), None)
        naive = next((r for r in rows if r["path"] == "naive" and r["length"] == length and "peak_mb" in r), None)
        if lean and naive:
            ratios[str(length)] = {"peak_lean_over_naive": round(lean["peak_mb"] / naive["peak_mb"], 3),
                                   "time_lean_over_naive": round(lean["step_seconds"] / naive["step_seconds"], 3)}
    result = {"benchmark": "flat_memory", "device": args.device, "threads": args.threads, "batch": args.batch,
              "rows": rows, "ratios": ratios, "machine": machine_info()}
    print(json.dumps(ratios, indent=2))
    write_result(args.out, result)


if __name__ == "__main__":
    main()
