"""Diagnosis of the MSRA student's instability (results/msra_softlexicon_student_kl, before the CRF marginals fix).

    python benchmarks/distill_diagnosis.py weights     # parameter norms: best model (epoch 8), last checkpoint, a teacher
    python benchmarks/distill_diagnosis.py radial      # NLL and KL gradients' radial component on the output layer
    python benchmarks/distill_diagnosis.py precision   # the KL gradient in float32 against float64, last checkpoint

Reads runs/msra_student_kl/seed1 (model = epoch 8, checkpoint = epoch 13) and the three teachers; prints only
(the figures quoted in benchmarks/README.md came from these three functions, run once each, on the 2-core VM
beside two trainings, with the unscaled log_marginals of the time — the fix changes what ``precision``
prints for float32).  Not part of the benchmark suite.
"""
import copy
import sys

import torch
from safetensors import safe_open

import lexner
from lexner.data import load_dataset
from lexner.distill import teacher_targets
from lexner.models.base import soft_loss

def weights():
    ep8 = lexner.load("runs/msra_student_kl/seed1/model", onnx=False).state_dict()
    f = safe_open("runs/msra_student_kl/seed1/checkpoint/trainer_state.safetensors", "pt")
    t = lexner.load("runs/msra_sl_allbigrams/seed1/model", onnx=False).state_dict()
    for k, v in ep8.items():
        if v.dtype.is_floating_point:
            w13 = f.get_tensor("s.model." + k)
            print(f"{k:40s} ep8 {v.norm():9.2f} ep13 {w13.norm():9.2f} teacher {t[k].norm() if k in t and t[k].shape == v.shape else float('nan'):9.2f} absmax13 {w13.abs().max():8.2f}")


def radial():
    train = load_dataset("msra", "train")[1000:1256]
    teachers = [lexner.load(p, onnx=False) for p in ("runs/msra_sl_allbigrams/seed1/model", "runs/msra_sl_biglex/seed1/model", "runs/msra_sl_h512/seed1/model")]
    m8 = lexner.load("runs/msra_student_kl/seed1/model", onnx=False)
    m13 = lexner.load("runs/msra_student_kl/seed1/model", onnx=False)
    f = safe_open("runs/msra_student_kl/seed1/checkpoint/trainer_state.safetensors", "pt")
    m13.load_state_dict({k[8:]: f.get_tensor(k) for k in f.keys() if k.startswith("s.model.")})
    targets = teacher_targets(teachers, [s.text for s in train], "kl", m8.featurizer.tags)
    for name, m in (("ep8", m8), ("ep13", m13)):
        m.eval()
        items = []
        for s, t in zip(train, targets):
            it = m.featurizer.encode_one(s.text, s.spans); it["soft"] = t; items.append(it)
        for part in ("nll", "kl"):
            m.zero_grad()
            tot = 0.0
            for k in range(0, len(items), 32):
                b = m.featurizer.collate(items[k:k+32]); b.soft_kind = "kl"
                em = m.emissions(b)
                loss = m.crf.nll(em, b.tags, b.mask) if part == "nll" else soft_loss(m.crf, em, b)
                loss.backward(); tot += loss.item()
            W = m.output.weight
            print(name, part, "loss %.3f" % (tot / 8), "grad.W/|W| %.4f" % ((W.grad * W).sum() / W.norm()).item(), "|grad W| %.4f" % W.grad.norm().item())


def precision():
    train = load_dataset("msra", "train")[1000:1128]
    teachers = [lexner.load(p, onnx=False) for p in ("runs/msra_sl_allbigrams/seed1/model", "runs/msra_sl_biglex/seed1/model", "runs/msra_sl_h512/seed1/model")]
    m = lexner.load("runs/msra_student_kl/seed1/model", onnx=False)
    f = safe_open("runs/msra_student_kl/seed1/checkpoint/trainer_state.safetensors", "pt")
    m.load_state_dict({k[8:]: f.get_tensor(k) for k in f.keys() if k.startswith("s.model.")})
    m.eval()
    targets = teacher_targets(teachers, [s.text for s in train], "kl", m.featurizer.tags)
    items = []
    for s, t in zip(train, targets):
        it = m.featurizer.encode_one(s.text, s.spans); it["soft"] = t; items.append(it)
    crf64 = copy.deepcopy(m.crf).double()
    for prec in ("float32", "float64"):
        m.zero_grad()
        for k in range(0, len(items), 32):
            b = m.featurizer.collate(items[k:k+32]); b.soft_kind = "kl"
            em = m.emissions(b)
            if prec == "float64":
                lm = crf64.log_marginals(em.double(), b.mask)
                t = b.soft.double()
                loss = ((torch.xlogy(t, t) - t * lm).sum(-1) * b.mask).sum(1).mean()
            else:
                loss = soft_loss(m.crf, em, b)
            loss.backward()
        W = m.output.weight
        print(prec, "grad.W/|W| %.4f" % ((W.grad * W).sum() / W.norm()).item(), "|grad W| %.4f" % W.grad.norm().item())


if __name__ == "__main__":
    torch.set_num_threads(1)
    {"weights": weights, "radial": radial, "precision": precision}[sys.argv[1]]()
