"""Where one ``tag()`` call's time goes: each stage of tagging one sentence, timed on its own.

    python benchmarks/tag_stages.py --runtime onnx-int8 --compare c9b7341 \
        --out benchmarks/results/tag_stages_int8_vs_c9b7341.json

For each of the first ``--limit`` MSRA test sentences, one at a time, as ``tag()`` runs them: featurisation
(``encode_one``), collation into a batch of one, the tag scores (``emissions``), the constrained search
(``viterbi``) and reading spans from the path — then ``tag()`` itself on the same sentences (its pipeline
around those stages: lines, pieces, entities).  Milliseconds per sentence, best of ``--repeat`` rounds, 1 thread.
With ``--compare REV`` lexner at REV is measured the same way in a process of its own, this tree in another, in
turn.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

STAGES = ("encode", "collate", "emissions", "search", "spans")


def child(runtime: str, limit: int, repeat: int, out: Path) -> None:
    import torch

    import lexner
    from lexner.data import load_dataset

    torch.set_num_threads(1)
    tagger = lexner.load(runtime=runtime)
    featurizer, crf = tagger.featurizer, tagger.head(None)[1]
    texts = [s.text for s in load_dataset("msra", "test")[:limit]]
    best = dict.fromkeys((*STAGES, "tag()"), float("inf"))
    with torch.inference_mode():
        for _ in range(repeat):
            spent = dict.fromkeys(STAGES, 0.0)
            for text in texts:
                times = [time.perf_counter()]
                item = featurizer.encode_one(text)
                times.append(time.perf_counter())
                batch = featurizer.collate([item])
                times.append(time.perf_counter())
                scores = tagger.emissions(batch)
                times.append(time.perf_counter())
                paths = crf.viterbi(scores, batch.mask, batch.allowed)
                times.append(time.perf_counter())
                featurizer.decode_paths(paths)
                times.append(time.perf_counter())
                for stage, start, end in zip(STAGES, times, times[1:]):
                    spent[stage] += end - start
            for stage in STAGES:
                best[stage] = min(best[stage], spent[stage])
    for _ in range(repeat):
        started = time.perf_counter()
        for text in texts:
            tagger.tag(text)
        best["tag()"] = min(best["tag()"], time.perf_counter() - started)
    out.write_text(json.dumps({stage: round(seconds / len(texts) * 1e3, 4) for stage, seconds in best.items()}))


def measure(runtime: str, limit: int, repeat: int, pythonpath: str | None) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "stages.json"
        env = {**os.environ, **({"PYTHONPATH": pythonpath} if pythonpath else {})}
        subprocess.run([sys.executable, __file__, "--child", str(path), "--runtime", runtime, "--limit", str(limit),
                        "--repeat", str(repeat)], check=True, env=env, cwd=folder)
        return json.loads(path.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtime", default="onnx-int8", help="lexner.load(runtime=...) of the bundled model")
    parser.add_argument("--limit", type=int, default=2000, help="the first N MSRA test sentences")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--compare", metavar="REV", help="also measure lexner at this git revision, in turn")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.runtime, args.limit, args.repeat, args.child)
        return
    from machine import lexner_at, machine_info, write_result

    this_tree = str(Path(__file__).resolve().parent.parent)
    rows = {}
    if args.compare:
        with lexner_at(args.compare) as (commit, baseline):
            rows[commit] = measure(args.runtime, args.limit, args.repeat, baseline)
            rows["this tree"] = measure(args.runtime, args.limit, args.repeat, this_tree)
    else:
        rows["this tree"] = measure(args.runtime, args.limit, args.repeat, this_tree)
    for name, row in rows.items():
        print(name, json.dumps(row))
    write_result(args.out, {"benchmark": "tag_stages", "model": "bundled", "runtime": args.runtime,
                            "texts": "msra/test", "sentences": args.limit, "unit": "ms per sentence",
                            "rows": rows, "machine": machine_info()})


if __name__ == "__main__":
    main()
