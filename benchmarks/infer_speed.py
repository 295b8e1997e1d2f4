"""Inference speed, load time, memory and size on disk of saved models.

    python benchmarks/infer_speed.py --models msra_bilstm_crf=runs/msra_bilstm/seed1/model \
        msra_lattice_lstm=runs/msra_lattice/seed1/model --batch-sizes 1 8 64 --threads 1 2 \
        --seconds 20 --out benchmarks/results/infer_speed_cpu.json

Each model is measured in its own fresh process (so load time and peak RSS are its own, and ``PYTHONPATH`` pins
the lexner it imports to this process's, :func:`machine.tree_env`), the models one after another in one run so
that their ratios hold on a noisy machine.  The text is MSRA test, sentence by
sentence, in file order.  Batch size 1 calls ``tag(text)`` once per sentence (how a service tags one
request); larger sizes call ``tag_batch(texts, batch_size=B)`` on chunks of B sentences.  Each
(threads, batch size) runs for ``--seconds`` after one untimed warm-up call.

``--compare REV --repeat N`` measures each model N times alternately with lexner at git revision REV
(extracted with ``git archive``) and with this tree — the pairs alternate which runs first — and reports this
tree's speed-up (the median of the pairs' ratios, :func:`machine.paired_ratio`): how
tagging speed changed, side by side in one run — by wall time and by the process's CPU time (steadier on a
machine other work shares: a process waiting for a core accrues no CPU time) — and the ratio of the median
load times (``lexner.load``, wall time) and of the first ``tag()`` call after it, which also builds what is
built lazily, such as the lexicon's matcher (load time alone understates how long a fresh process takes to
its first entities).
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

from machine import count, named_model_dir, positive_float, positive_int  # noqa: E402


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child(args) -> None:
    import torch

    from machine import load_model

    from lexner.data import load_dataset

    texts = [s.text for s in load_dataset("msra", "test")]
    if args.limit:
        texts = texts[: args.limit]
    rss_before_load = peak_rss_mb()
    started = time.perf_counter()
    tagger = load_model(args.model, **({"runtime": args.runtime} if args.runtime else {}))  # older revisions lack it
    load_seconds = time.perf_counter() - started
    started = time.perf_counter()
    tagger.tag(texts[0])  # the first call also builds what is built lazily (the lexicon's matcher)
    first_call_seconds = time.perf_counter() - started
    rss_after_load = peak_rss_mb()
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for batch_size in args.batch_sizes:
            tagger.tag_batch(texts[:batch_size], batch_size=batch_size)  # warm-up, untimed
            chars = sentences = 0
            started, cpu_started = time.perf_counter(), time.process_time()
            position = 0
            while time.perf_counter() - started < args.seconds:
                chunk = texts[position : position + batch_size] or texts[:batch_size]
                position = position + batch_size if position + batch_size < len(texts) else 0
                if batch_size == 1:
                    tagger.tag(chunk[0])
                else:
                    tagger.tag_batch(chunk, batch_size=batch_size)
                chars += sum(map(len, chunk))
                sentences += len(chunk)
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
            rows.append({"threads": threads, "batch_size": batch_size, "sentences": sentences,
                         "characters": chars, "seconds": round(elapsed, 2), "cpu_seconds": round(cpu, 2),
                         "chars_per_second": round(chars / elapsed), "chars_per_cpu_second": round(chars / cpu),
                         "sentences_per_second": round(sentences / elapsed, 1)})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(json.dumps({
        "model": tagger.name, "model_dir": str(args.model), "runtime": args.runtime,
        "load_seconds": round(load_seconds, 3),
        "first_call_seconds": round(first_call_seconds, 3),
        "disk_mb": round(disk_bytes(Path(args.model)) / 2**20, 2),
        "rss_mb_after_load": round(rss_after_load, 1), "load_rss_growth_mb": round(rss_after_load - rss_before_load, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1), "rows": rows,
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", required=True, type=named_model_dir, metavar="NAME=DIR",
                        help="saved model directories, each named (the name labels it in the report)")
    parser.add_argument("--batch-sizes", nargs="+", type=positive_int, default=[1, 8, 64])
    parser.add_argument("--threads", nargs="+", type=positive_int, default=[1, 2])
    parser.add_argument("--seconds", type=positive_float, default=20)
    parser.add_argument("--limit", type=count, default=0, help="use only the first N test sentences (0 = all)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--runtime", choices=["torch", "torch-bf16", "onnx", "onnx-int8"],
                        help="lexner.load(runtime=...) (default: as the model directory says)")
    parser.add_argument("--compare", metavar="REV",
                        help="measure each model with lexner at git revision REV and with this tree, alternately")
    parser.add_argument("--repeat", type=positive_int, default=1,
                        help="with --compare: this many REV/tree pairs (median)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    from machine import machine_info, write_result

    from contextlib import nullcontext

    from machine import alternating, lexner_at, paired_ratio, recorded_path, tree_env

    results = []
    with (lexner_at(args.compare) if args.compare else nullcontext((None, None))) as (commit, baseline):
        trees = (list(alternating((commit, baseline), ("this tree", None), args.repeat)) if args.compare
                 else [(0, (None, None))])
        for name, directory in args.models:
            for pair, (code, tree) in trees:
                cmd = [sys.executable, __file__, "--child", "--model", str(Path(directory).resolve()),
                       "--seconds", str(args.seconds), "--limit", str(args.limit),
                       "--batch-sizes", *map(str, args.batch_sizes), "--threads", *map(str, args.threads),
                       "--models", f"{name}={directory}", *(["--runtime", args.runtime] if args.runtime else [])]
                done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=tree_env(tree))
                if done.returncode != 0:
                    sys.exit(f"infer_speed: measuring {name} ({directory}) failed with exit code {done.returncode}")
                record = json.loads(done.stdout.strip().splitlines()[-1])
                record["name"] = name if code is None else f"{name} @ {code}"
                record["pair"] = pair
                record["model_dir"] = recorded_path(directory)  # not this machine's absolute path
                results.append(record)
                print(f"{record['name']}: load {record['load_seconds']} s, first call {record['first_call_seconds']} s, "
                      f"{record['disk_mb']} MB on disk, "
                      f"peak RSS {record['peak_rss_mb']} MB, " + ", ".join(
                          f"b{r['batch_size']}/t{r['threads']} {r['chars_per_second']}" for r in record["rows"]),
                      flush=True)
    result = {"benchmark": "infer_speed", "texts": "msra/test", "models": results, "machine": machine_info()}
    if args.compare:
        result["baseline"] = commit
        ratios = {}
        for name, _ in args.models:
            ours, theirs = f"{name} @ this tree", f"{name} @ {commit}"
            for r in results[0]["rows"]:
                key = (r["threads"], r["batch_size"])
                for field, kind in (("chars_per_second", "wall"), ("chars_per_cpu_second", "cpu")):
                    speeds = [(m["pair"], m["name"], row[field]) for m in results for row in m["rows"]
                              if (row["threads"], row["batch_size"]) == key]
                    ratios.setdefault(kind, {}).setdefault(name, {})[f"threads {key[0]}, batch {key[1]}"] = round(
                        paired_ratio(speeds, ours, theirs), 3)
            for field in ("load_seconds", "first_call_seconds"):
                times = [(m["pair"], m["name"], m[field]) for m in results]
                ratios.setdefault(field, {})[name] = round(paired_ratio(times, ours, theirs), 3)
        result["speedup_vs_baseline"] = ratios["wall"]
        result["cpu_time_speedup_vs_baseline"] = ratios["cpu"]
        result["load_seconds_ratio_vs_baseline"] = ratios["load_seconds"]  # this tree's median load time over REV's
        result["first_call_seconds_ratio_vs_baseline"] = ratios["first_call_seconds"]
    write_result(args.out, result)


if __name__ == "__main__":
    main()
