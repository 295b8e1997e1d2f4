"""lexner serve's memory under a steady load, with torch's oneDNN primitive cache as it comes and bounded.

    pip install -e ".[serve]"     # and pytest: the server helpers are tests/test_serve.py's
    python benchmarks/serve_memory.py --out benchmarks/results/serve_memory_cpu.json

A server's memory grows under load as oneDNN (torch's CPU kernels) caches one LSTM "primitive" per input shape
— padded length × batch size, ~210 KB each, up to ``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` (1,024 unless set) — and
served traffic keeps bringing new shapes.  Each setting (the variable unset, or set to each ``--capacities``
value) runs ``lexner serve`` (bundled model unless ``--model``, one torch thread) in its own process for
``--seconds`` while ``--clients`` threads send MSRA test sentences (a seeded shuffle, one per request, each
client waiting for its answer); the server's resident memory is read every ``--interval`` seconds from
``/proc/PID/status`` (Linux).  The settings take turns, in alternating order over ``--rounds``, so that the
machine's drift meets them alike; requests/s is each run's count over its seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import count, positive_float, positive_int  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

VARIABLE = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"


def resident_mb(pid: int) -> float:
    """The resident memory of process ``pid`` in MiB (VmRSS)."""
    with open(f"/proc/{pid}/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS for process {pid}")


def setting_env(capacity: int | None) -> dict[str, str]:
    """This process's environment with the cache capacity set, or unset for None (oneDNN's default)."""
    env = {k: v for k, v in os.environ.items() if k != VARIABLE}
    return env if capacity is None else {**env, VARIABLE: str(capacity)}


def run(texts: list[str], capacity: int | None, args) -> dict:
    """One server under load for ``args.seconds``: its memory over time and the requests it answered."""
    from test_serve import request, served

    options = ["--model", args.model] if args.model else []
    with served(*options, threads=1, env=setting_env(capacity)) as (process, port):
        for text in texts[:20]:  # warm-up: the lexicon's automaton, oneDNN's first kernels
            request(port, "/tag", {"text": text})
        answered, failed, stop = [0] * args.clients, [], threading.Event()

        def client(number: int) -> None:
            order = random.Random(number).sample(texts, len(texts))
            while not stop.is_set():
                code, _ = request(port, "/tag", {"text": order[answered[number] % len(order)]})
                if code != 200:
                    failed.append(code)
                answered[number] += 1

        threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(args.clients)]
        samples = [{"seconds": 0, "rss_mb": resident_mb(process.pid)}]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        while (elapsed := time.perf_counter() - began) < args.seconds:
            time.sleep(min(args.interval, args.seconds - elapsed))
            samples.append({"seconds": round(time.perf_counter() - began), "rss_mb": resident_mb(process.pid)})
        stop.set()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - began
    half = [s["rss_mb"] for s in samples if s["seconds"] >= args.seconds / 2]
    return {"capacity": capacity, "requests": sum(answered), "failed": len(failed),
            "requests_per_second": round(sum(answered) / seconds, 1), "rss_mb": samples,
            "rss_mb_end": samples[-1]["rss_mb"], "rss_mb_growth_second_half": round(half[-1] - half[0], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--capacities", nargs="+", type=count, default=[256],
                        help=f"{VARIABLE} values set beside the unset default (0: no cache)")
    parser.add_argument("--seconds", type=positive_float, default=150.0, help="each run's load")
    parser.add_argument("--interval", type=positive_float, default=10.0, help="seconds between memory readings")
    parser.add_argument("--clients", type=positive_int, default=6)
    parser.add_argument("--rounds", type=positive_int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from machine import fail, machine_info, recorded_path, require, write_result

    if not os.path.exists(f"/proc/{os.getpid()}/status"):
        fail("reads a server's memory from /proc (Linux)")
    require("fastapi", "serve")
    require("uvicorn", "serve")
    require("pytest", "test")  # the server helpers are tests/test_serve.py's
    from lexner.data import load_dataset

    texts = [s.text for s in load_dataset("msra", "test")]
    settings: list[int | None] = [None, *args.capacities]
    runs = []
    for round_ in range(args.rounds):
        for capacity in settings if round_ % 2 == 0 else settings[::-1]:
            row = {"round": round_ + 1, **run(texts, capacity, args)}
            print(json.dumps({k: v for k, v in row.items() if k != "rss_mb"}), flush=True)
            runs.append(row)
    summary = {str(c) if c is not None else "unset": {
        "requests_per_second_median": statistics.median(r["requests_per_second"] for r in runs if r["capacity"] == c),
        "rss_mb_end_median": statistics.median(r["rss_mb_end"] for r in runs if r["capacity"] == c),
        "rss_mb_growth_second_half_median": statistics.median(r["rss_mb_growth_second_half"] for r in runs
                                                              if r["capacity"] == c)}
        for c in settings}
    print(json.dumps(summary))
    write_result(args.out, {"benchmark": "serve_memory", "model": recorded_path(args.model) if args.model else
                            "bundled default model", "variable": VARIABLE, "seconds": args.seconds,
                            "clients": args.clients, "rounds": args.rounds, "summary": summary, "runs": runs,
                            "machine": machine_info()})


if __name__ == "__main__":
    main()
