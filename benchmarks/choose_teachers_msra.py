"""Pick the teacher set for the MSRA student (#15/#19) by ensemble dev F1 (MSRA's carved dev split only)."""
import sys

import torch

import lexner
from lexner.data import load_dataset
from lexner.evaluate import evaluate
from lexner.fileio import write_json

torch.set_num_threads(1)
dev = load_dataset("msra", "dev")
two = ["runs/msra_sl_allbigrams/seed1/model", "runs/msra_sl_biglex/seed1/model"]
sets = {"allbigrams+biglex": two,
        "allbigrams+biglex+h512": two + ["runs/msra_sl_h512/seed1/model"],
        "allbigrams+biglex+h512+lacchar": two + ["runs/msra_sl_h512/seed1/model", "runs/msra_sl_lacchar/seed1/model"]}
scores = {}
for name, paths in sets.items():
    scores[name] = round(100 * evaluate(lexner.load(paths, onnx=False), dev)["micro"]["f1"], 2)
    print(name, scores[name], file=sys.stderr, flush=True)
best = max(scores, key=scores.get)
write_json("runs/msra_teacher_choice.json", {"dev_f1": scores, "chosen": best, "teachers": sets[best]})
print(" ".join(f"--teacher {p}" for p in sets[best]))
