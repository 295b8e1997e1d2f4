"""Does this tree tag exactly as lexner at git revision REV did?  For speed work that must not change outputs.

    python benchmarks/same_outputs.py --compare e176d8f --out benchmarks/results/same_outputs_vs_e176d8f.json

The bundled model (torch, and ONNX float32 and int8 when onnxruntime is installed) tags MSRA test, Weibo test and CLUENER
dev, plus the first 3,000 of those texts with a space and a line break put in, with ``tag_batch`` and (the first
1,500) one ``tag()`` call each, once with REV's lexner (extracted by ``git archive``) and once with this tree, each
in its own process; the result counts the texts whose entities differ.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def texts() -> list[str]:
    from lexner.data import load_dataset

    found = [s.text for name, split in (("msra", "test"), ("weibo", "test"), ("cluener", "dev"))
             for s in load_dataset(name, split)]
    return found + [t[: len(t) // 3] + " " + t[len(t) // 3 : len(t) // 2] + "\n" + t[len(t) // 2 :]
                    for t in found[:3000]]


def child(out: Path) -> None:
    import torch

    import lexner

    torch.set_num_threads(1)
    runtimes = {"torch": None} | ({"onnx": True, "int8": "int8"} if importlib.util.find_spec("onnxruntime") else {})
    batch = texts()
    found = {}
    for name, onnx in runtimes.items():
        tagger = lexner.load(onnx=onnx)
        found[f"tag_batch {name}"] = [[[e.start, e.end, e.label] for e in ents] for ents in tagger.tag_batch(batch)]
        found[f"tag {name}"] = [[[e.start, e.end, e.label] for e in tagger.tag(t)] for t in batch[:1500]]
    out.write_text(json.dumps(found))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", metavar="REV", help="the revision to compare with (required)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    if not args.compare:
        parser.error("--compare REV is required")
    from machine import lexner_at, machine_info, tree_env, write_result

    with lexner_at(args.compare) as (commit, baseline), tempfile.TemporaryDirectory() as folder:
        outputs = {}
        for name, tree in ((commit, baseline), ("this tree", None)):
            path = Path(folder) / f"{len(outputs)}.json"
            subprocess.run([sys.executable, __file__, "--child", str(path)], check=True, env=tree_env(tree))
            outputs[name] = json.loads(path.read_text())
    before, after = outputs[commit], outputs["this tree"]
    rows = {key: {"texts": len(before[key]), "entities": sum(map(len, before[key])),
                  "texts_differing": sum(a != b for a, b in zip(before[key], after[key]))} for key in before}
    for key, row in rows.items():
        print(f"{key}: {row['texts_differing']} of {row['texts']} texts differ ({row['entities']} entities)")
    write_result(args.out, {"benchmark": "same_outputs", "baseline": commit, "rows": rows, "machine": machine_info()})


if __name__ == "__main__":
    main()
