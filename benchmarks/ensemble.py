"""Ensembles and distilled students beside their members, on one dataset's dev and test, in one run.

    python benchmarks/ensemble.py --members runs/weibo_sl/seed1/model runs/weibo_sl/seed2/model ... \
        --students runs/weibo_student/seed1/model ... --dataset weibo --out benchmarks/results/ensemble_weibo.json

Scores every member, the ensemble of all members (``lexner.load([...])``: their tag marginals averaged before
the constrained decoding) and every ``--students`` model (e.g. distilled from that ensemble) on dev and test
with ``lexner.evaluate`` (micro P/R/F1, exact spans).  Speed: ``tag()`` one sentence per call on the first
``--speed-sentences`` test sentences, one thread, each system timed in turn (best of ``--repeat`` rounds).
Report test F1 only for choices made on dev.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import load_model, machine_info, positive_int, recorded_path, write_result  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", nargs="+", required=True, type=Path, help="the ensemble's model directories")
    parser.add_argument("--students", nargs="*", default=[], type=Path, help="other models to score beside them")
    parser.add_argument("--dataset", default="weibo")
    parser.add_argument("--speed-sentences", type=positive_int, default=300)
    parser.add_argument("--repeat", type=positive_int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import torch

    from lexner.data import load_dataset
    from lexner.evaluate import evaluate

    torch.set_num_threads(1)
    splits = {split: load_dataset(args.dataset, split) for split in ("dev", "test")}
    systems = {f"member:{recorded_path(path)}": load_model(path, onnx=False) for path in args.members}  # in torch
    systems["ensemble"] = load_model([str(p) for p in args.members], onnx=False)
    systems.update({f"student:{recorded_path(path)}": load_model(path, onnx=False) for path in args.students})
    # each system through its head with the first member's types (a multi-task member: e.g. the bundled model's
    # weibo head), as the ensemble takes it; a system without one, through its default head
    wanted = systems["ensemble"].featurizer.label_set()
    labels = {}
    for name, tagger in systems.items():
        head = None if name == "ensemble" else tagger.featurizer.head_with_tags(None, wanted.tags)
        labels[name] = None if head == tagger.featurizer.default_labels else head
    texts = [s.text for s in splits["test"][: args.speed_sentences]]
    chars = sum(map(len, texts))
    best = dict.fromkeys(systems, float("inf"))
    for _ in range(args.repeat):
        for name, tagger in systems.items():
            tagger.tag(texts[0], labels=labels[name])  # warm-up
            started = time.perf_counter()
            for text in texts:
                tagger.tag(text, labels=labels[name])
            best[name] = min(best[name], time.perf_counter() - started)
    rows = []
    for name, tagger in systems.items():
        scores = {split: evaluate(tagger, sentences, labels=labels[name])["micro"]
                  for split, sentences in splits.items()}
        rows.append({"system": name, **({"head": labels[name]} if labels[name] else {}),
                     **{f"{split}_{k}": round(100 * v[k], 2) for split, v in scores.items()
                        for k in ("precision", "recall", "f1")},
                     "chars_per_second_one_per_call": round(chars / best[name])})
        print(json.dumps(rows[-1]), flush=True)

    def summary(kind: str) -> dict:
        picked = [r for r in rows if r["system"].startswith(kind)]
        if not picked:
            return {}
        tests = [r["test_f1"] for r in picked]
        return {"n": len(picked), "test_f1_mean": round(statistics.mean(tests), 2),
                "test_f1_stdev": round(statistics.stdev(tests), 2) if len(tests) > 1 else 0.0,
                "dev_f1_mean": round(statistics.mean(r["dev_f1"] for r in picked), 2),
                "chars_per_second_mean": round(statistics.mean(r["chars_per_second_one_per_call"] for r in picked))}

    result = {"benchmark": "ensemble", "dataset": args.dataset, "rows": rows,
              "members": summary("member:"), "students": summary("student:"),
              "speed_sentences": len(texts), "torch_threads": 1, "machine": machine_info()}
    print(json.dumps({"members": result["members"], "students": result["students"]}))
    write_result(args.out, result)


if __name__ == "__main__":
    main()
