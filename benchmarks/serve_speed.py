"""lexner serve under load: requests/s and latency at 1 and 16 concurrent clients, beside tag() in-process.

    pip install -e ".[serve]"     # and pytest: the server helpers are tests/test_serve.py's
    python benchmarks/serve_speed.py --out benchmarks/results/serve_speed_cpu.json

Each request is one MSRA test sentence (``POST /tag {"text": ...}``) sent over HTTP/1.1 by ``--clients``
threads, each waiting for its answer before sending the next; the server is ``lexner serve`` (bundled model
unless ``--model``) in its own process with ``--threads`` torch threads.  Beside it, the same sentences
through ``tag()`` one at a time in this process: what a service costs over calling the library.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import positive_int  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--clients", nargs="+", type=positive_int, default=[1, 16])
    parser.add_argument("--requests", type=positive_int, default=400, help="requests per client count")
    parser.add_argument("--threads", type=positive_int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import torch
    from machine import load_model, machine_info, recorded_path, require, write_result

    require("fastapi", "serve")
    require("uvicorn", "serve")
    require("pytest", "test")  # the server helpers are tests/test_serve.py's
    from test_serve import request, serving

    from lexner.data import load_dataset

    texts = [s.text for s in load_dataset("msra", "test")[: args.requests]]
    torch.set_num_threads(args.threads)
    tagger = load_model(args.model)
    tagger.tag(texts[0])
    started = time.perf_counter()
    for text in texts:
        tagger.tag(text)
    in_process = len(texts) / (time.perf_counter() - started)

    rows = []
    with serving(*(["--model", args.model] if args.model else []), threads=args.threads) as port:
        for text in texts[:20]:  # warm-up
            request(port, "/tag", {"text": text})
        for clients in args.clients:
            def one(text: str) -> float:
                began = time.perf_counter()
                code, _ = request(port, "/tag", {"text": text})
                assert code == 200
                return time.perf_counter() - began

            began = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                latencies = sorted(pool.map(one, texts))
            seconds = time.perf_counter() - began
            row = {"clients": clients, "requests": len(texts), "requests_per_second": round(len(texts) / seconds, 1),
                   "p50_ms": round(1000 * statistics.median(latencies), 2),
                   "p99_ms": round(1000 * latencies[math.ceil(0.99 * len(latencies)) - 1], 2)}  # nearest rank
            print(json.dumps(row), flush=True)
            rows.append(row)
    result = {"benchmark": "serve_speed", "model": recorded_path(args.model) if args.model else "bundled default model",
              "threads": args.threads, "tag_in_process_calls_per_second": round(in_process, 1), "rows": rows,
              "machine": machine_info()}
    print(json.dumps({"tag_in_process_calls_per_second": result["tag_in_process_calls_per_second"]}))
    write_result(args.out, result)


if __name__ == "__main__":
    main()
