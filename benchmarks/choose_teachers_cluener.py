"""Pick the CLUENER teachers of the multi-task student (#17/#19) by ensemble dev F1 (the carved CLUENER dev split
only): the softlexicon seeds, the FLAT seeds, or both (whichever runs have a model)."""
import sys
from pathlib import Path

import torch

import lexner
from lexner.data import load_dataset
from lexner.evaluate import evaluate
from lexner.fileio import write_json

torch.set_num_threads(1)
dev = load_dataset("cluener", "dev")
sl = [str(p) for p in sorted(Path("runs/cluener_sl").glob("seed*/model")) if (p / "config.json").exists()]
flat = [str(p) for p in sorted(Path("runs/cluener_flat").glob("seed*/model")) if (p / "config.json").exists()]
sets = {name: paths for name, paths in (("softlexicon", sl), ("flat", flat), ("softlexicon+flat", sl + flat)) if paths}
sets = {name: paths for name, paths in sets.items() if name != "softlexicon+flat" or (sl and flat)}
scores = {}
for name, paths in sets.items():
    model = lexner.load(paths, onnx=False) if len(paths) > 1 else lexner.load(paths[0], onnx=False)
    scores[name] = round(100 * evaluate(model, dev)["micro"]["f1"], 2)
    print(name, len(paths), scores[name], file=sys.stderr, flush=True)
# the multi-task model the bundled one was exported from, its CLUENER head (self-distillation), alone: members of
# an ensemble need one label set, so it is not mixed with the single-task models
multi = "runs/multi_weibomap/seed1/model"
sets["multi"] = [multi]
scores["multi"] = round(100 * evaluate(lexner.load(multi, onnx=False), dev, labels="cluener")["micro"]["f1"], 2)
print("multi", 1, scores["multi"], file=sys.stderr, flush=True)
best = max(scores, key=scores.get)
write_json("runs/cluener_teacher_choice.json", {"dev_f1": scores, "chosen": best, "teachers": sets[best]})
print(" ".join(f"--teacher cluener={p}" for p in sets[best]))
