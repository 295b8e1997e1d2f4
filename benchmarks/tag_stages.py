"""Where one ``tag()`` call's time goes: each stage of tagging one sentence, timed on its own.

    python benchmarks/tag_stages.py --runtime onnx-int8 --compare c9b7341 \
        --out benchmarks/results/tag_stages_int8_vs_c9b7341.json

For each of the first ``--limit`` MSRA test sentences, one at a time, as ``tag()`` runs them: featurisation
(``encode_one``), collation into a batch of one, the tag scores (``emissions``), the constrained search
(``viterbi``) and reading spans from the path — then ``tag()`` itself on the same sentences (its pipeline
around those stages: lines, pieces, entities).  Milliseconds per sentence, best of ``--repeat`` rounds, 1 thread.
With ``--compare REV`` lexner at REV is measured the same way in processes of its own, this tree in others,
for ``--rounds`` rounds, the order reversed every other round (A B, B A, ...), each one's fastest round kept:
measured once each, one after the other, the second often came out slower even in stages no change touched (the
VM's speed drifts by 10-20 % within minutes).  ``ab_speed.py`` compares two revisions within one process.

``--batched``: ``tag_batch`` over those sentences instead (its own grouping into batches of ``--batch-size``),
each stage timed where the pipeline calls it — featurisation (``encode_many`` or ``encode_one``), collation,
tag scores, search, spans — and ``rest`` the remainder of the call (lines, grouping, merging, entities);
microseconds per character, from the round with the fastest ``tag_batch``.  Beside them, the garbage
collector's share of that round (``gc``, time inside the stages above, not added to them) and how many full
collections it made (``full_collections``).
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import positive_int  # noqa: E402

STAGES = ("encode", "collate", "emissions", "search", "spans")


def setup(runtime: str, limit: int) -> tuple:
    """The bundled model loaded with ``runtime`` (1 thread), its featurizer, its default head's CRF, and the
    first ``limit`` MSRA test texts."""
    import torch

    import lexner
    from lexner.data import load_dataset

    torch.set_num_threads(1)
    tagger = lexner.load(runtime=runtime)
    return tagger, tagger.featurizer, tagger.head(None)[1], [s.text for s in load_dataset("msra", "test")[:limit]]


def child(runtime: str, limit: int, repeat: int, out: Path) -> None:
    import torch

    tagger, featurizer, crf, texts = setup(runtime, limit)
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


def child_batched(runtime: str, limit: int, repeat: int, batch_size: int, out: Path) -> None:
    tagger, featurizer, crf, texts = setup(runtime, limit)
    spent = dict.fromkeys(STAGES, 0.0)
    running = set()  # stages being timed (encode_many may call encode_one: counted once)

    def timed(stage: str, method):
        def call(*args, **kwargs):
            if stage in running:
                return method(*args, **kwargs)
            running.add(stage)
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                spent[stage] += time.perf_counter() - started
                running.discard(stage)
        return call

    # instance attributes shadow the methods the pipeline calls, at this revision or an older one
    for owner, name, stage in ((featurizer, "encode_one", "encode"), (featurizer, "encode_many", "encode"),
                               (featurizer, "collate", "collate"), (tagger, "emissions", "emissions"),
                               (crf, "viterbi", "search"), (featurizer, "decode_paths", "spans")):
        if hasattr(owner, name):
            setattr(owner, name, timed(stage, getattr(owner, name)))
    collected = {"gc": 0.0, "full_collections": 0, "since": 0.0}  # the garbage collector's work, within the stages

    def on_collection(phase: str, info: dict) -> None:
        if phase == "start":
            collected["since"] = time.perf_counter()
        else:
            collected["gc"] += time.perf_counter() - collected["since"]
            collected["full_collections"] += info["generation"] == 2

    gc.callbacks.append(on_collection)
    chars = sum(map(len, texts))
    tagger.tag_batch(texts[:64], batch_size=batch_size)  # warm-up, untimed
    best: dict = {}
    for _ in range(repeat):
        for stage in STAGES:
            spent[stage] = 0.0
        collected.update(gc=0.0, full_collections=0)
        started = time.perf_counter()
        tagger.tag_batch(texts, batch_size=batch_size)
        total = time.perf_counter() - started
        if not best or total < best["tag_batch"]:
            best = {**spent, "rest": total - sum(spent.values()), "tag_batch": total, "gc": collected["gc"],
                    "full_collections": collected["full_collections"]}
    out.write_text(json.dumps({stage: value if stage == "full_collections" else round(value / chars * 1e6, 3)
                               for stage, value in best.items()}))


def measure(runtime: str, limit: int, repeat: int, pythonpath: str | None, batch_size: int | None = None) -> dict:
    from machine import tree_env

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "stages.json"
        env = tree_env(pythonpath)
        batched = ["--batched", "--batch-size", str(batch_size)] if batch_size else []
        subprocess.run([sys.executable, __file__, "--child", str(path), "--runtime", runtime, "--limit", str(limit),
                        "--repeat", str(repeat), *batched], check=True, env=env, cwd=folder)
        return json.loads(path.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtime", default="onnx-int8", help="lexner.load(runtime=...) of the bundled model")
    parser.add_argument("--limit", type=positive_int, default=2000, help="the first N MSRA test sentences")
    parser.add_argument("--repeat", type=positive_int, default=3)
    parser.add_argument("--compare", metavar="REV", help="also measure lexner at this git revision, in turn")
    parser.add_argument("--rounds", type=positive_int, default=3,
                        help="processes per revision, the order reversed every other round (A B, B A, ...); each "
                             "one's fastest round is kept, so that the VM's drift favours neither")
    parser.add_argument("--batched", action="store_true", help="tag_batch's stages instead of one tag() call's")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.batched:
            child_batched(args.runtime, args.limit, args.repeat, args.batch_size, args.child)
        else:
            child(args.runtime, args.limit, args.repeat, args.child)
        return
    from machine import lexner_at, lexner_tree, machine_info, write_result

    this_tree = str(lexner_tree())
    batch_size = args.batch_size if args.batched else None
    total = "tag_batch" if batch_size else "tag()"

    def in_turn(sources: dict[str, str]) -> dict[str, dict]:
        """Each source measured once per round, the order reversed every other round (A B, B A, A B ...); each
        one's fastest round (by its total) kept."""
        rounds: dict[str, list[dict]] = {name: [] for name in sources}
        for r in range(args.rounds):
            for name in (list(sources) if r % 2 == 0 else list(sources)[::-1]):
                rounds[name].append(measure(args.runtime, args.limit, args.repeat, sources[name], batch_size))
        return {name: min(measured, key=lambda row: row[total]) for name, measured in rounds.items()}

    if args.compare:
        with lexner_at(args.compare) as (commit, baseline):
            rows = in_turn({commit: baseline, "this tree": this_tree})
    else:
        rows = in_turn({"this tree": this_tree})
    for name, row in rows.items():
        print(name, json.dumps(row))
    write_result(args.out, {"benchmark": "tag_stages", "model": "bundled", "runtime": args.runtime,
                            "texts": "msra/test", "sentences": args.limit,
                            **({"batch_size": batch_size, "unit": "µs per character"} if batch_size
                               else {"unit": "ms per sentence"}),
                            "rounds": args.rounds, "rows": rows, "machine": machine_info()})


if __name__ == "__main__":
    main()
