"""Every tagger on CUDA computes what it computes on the CPU, and training, saving and loading work there.

Skipped where torch sees no CUDA device (CI has none): run on a machine with one, ``pytest tests/test_cuda.py``.
Each tagger is the model of its contract test (``tagger_contract.py``), built on the CPU and copied to the GPU.
TF32 is switched off for the comparisons, so both sides compute in float32: emissions, losses and gradients
agree to 1e-4 (summation order differs), and decoded paths exactly.
"""

from __future__ import annotations

import copy
import importlib
import json

import pytest
import torch

import lexner
from lexner.api import build_tagger
from lexner.train import Trainer, TrainConfig, epoch_records, seed_everything
from tagger_contract import ODD_TEXTS

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

# (test module, contract class): every tagger, and the variants whose code paths differ
CONTRACTS = [("test_bilstm_crf", "TestBiLSTMCRF"), ("test_bilstm_crf", "TestBiLSTMCRFWithoutBigrams"),
             ("test_softlexicon", "TestSoftLexicon"), ("test_softlexicon", "TestSoftLexiconFrequencyWeights"),
             ("test_lattice_lstm", "TestLatticeLSTM"), ("test_lattice_lstm", "TestLatticeLSTMUnidirectional"),
             ("test_flat", "TestFLAT"), ("test_flat", "TestFLATReferenceVariant"), ("test_bert", "TestBertCRF")]
TOLERANCE = {"atol": 1e-4, "rtol": 1e-4}


@pytest.fixture(autouse=True)
def _float32_matmuls():
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@pytest.fixture(params=CONTRACTS, ids=[name for _, name in CONTRACTS])
def contract(request):
    module, name = request.param
    return getattr(importlib.import_module(module), name)()  # test_bert skips itself without transformers


def cpu_and_cuda(contract, seed=3):
    cpu = contract.make(seed=seed).eval()  # eval: no dropout, so both sides draw no random numbers
    return cpu, copy.deepcopy(cpu).to("cuda")


def test_emissions_loss_gradients_and_paths_match_the_cpu(contract, corpus):
    cpu, gpu = cpu_and_cuda(contract)
    assert gpu.device.type == "cuda"
    texts, spans = [s.text for s in corpus], [s.spans for s in corpus]
    batch = cpu.featurizer.encode(texts, spans)
    on_gpu = batch.to(gpu.device)
    with torch.no_grad():
        assert torch.allclose(cpu.emissions(batch), gpu.emissions(on_gpu).cpu(), **TOLERANCE)
        assert cpu.decode(batch) == gpu.decode(on_gpu)
    cpu.loss(batch).backward()
    gpu_loss = gpu.loss(on_gpu)
    assert gpu_loss.device.type == "cuda"
    gpu_loss.backward()
    assert [n for n, _ in cpu.named_parameters()] == [n for n, _ in gpu.named_parameters()]
    for (name, p), q in zip(cpu.named_parameters(), gpu.parameters()):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            assert torch.allclose(p.grad, q.grad.cpu(), atol=1e-4, rtol=1e-3), name
    assert cpu.tag_batch(texts + ODD_TEXTS, batch_size=8) == gpu.tag_batch(texts + ODD_TEXTS, batch_size=8)


def test_training_steps_follow_the_cpu(contract, corpus):
    """Twenty full-batch Adam steps from the same weights: the two loss curves stay within 1e-3 of each other."""
    cpu, gpu = cpu_and_cuda(contract)
    batch = cpu.featurizer.encode([s.text for s in corpus], [s.spans for s in corpus])
    curves = []
    for tagger, data in ((cpu, batch), (gpu, batch.to(gpu.device))):
        optimizer = torch.optim.Adam(tagger.parameters(), lr=0.01)
        curve = []
        for _ in range(20):
            optimizer.zero_grad()
            loss = tagger.loss(data)
            loss.backward()
            optimizer.step()
            curve.append(loss.item())
        curves.append(torch.tensor(curve))
    assert torch.allclose(curves[0], curves[1], atol=1e-3, rtol=1e-3), curves
    assert curves[1][-1] < curves[1][0]


def test_saved_on_cuda_loads_on_the_cpu_with_the_same_output(contract, tmp_path):
    _, gpu = cpu_and_cuda(contract)
    gpu.save(tmp_path / "m")
    texts = ["张三在北京工作。", "我和李四住在广州市附近"] + ODD_TEXTS
    on_cpu = lexner.load(tmp_path / "m")
    assert on_cpu.device.type == "cpu" and on_cpu.tag_batch(texts) == gpu.tag_batch(texts)
    again = lexner.load(tmp_path / "m", device="cuda")
    assert again.device.type == "cuda" and again.tag_batch(texts) == gpu.tag_batch(texts)


def test_forced_dictionary_words_decode_as_on_the_cpu(contract):
    cpu, gpu = cpu_and_cuda(contract)
    words = {"北京": "LOC", "北京大学": "PER", "李四": "LOC", "小明": "PER"}
    texts = ["张三在北京工作", "我和李四住在广州市附近", "北京大学在北京", "今天 王小明 到 上海"]
    for tagger in (cpu, gpu):
        tagger.add_dictionary(words)
    assert cpu.tag_batch(texts) == gpu.tag_batch(texts)
    assert (3, 5, "LOC") in {(e.start, e.end, e.label) for e in gpu.tag(texts[0])}


SMALL = {"char_dim": 16, "bigram_dim": 8, "hidden": 24, "dropout": 0.1}


def cuda_trainer(corpus, out, epochs, **overrides):
    seed_everything(3)
    tagger = build_tagger("bilstm_crf", corpus, SMALL, seed=3)
    config = TrainConfig(epochs=epochs, batch_size=4, lr=0.01, seed=3, patience=0, device="cuda", **overrides)
    return Trainer(tagger, config, out, progress=False)


@pytest.mark.parametrize("amp", ["", "bf16", "fp16"])
def test_trainer_on_cuda_learns_saves_and_resumes(corpus, tmp_path, amp):
    """The trainer's CUDA path (with each --amp): the loss falls, the model and results are written, the saved
    model loads on the CPU, and a run cut in two and resumed ends at the uninterrupted run's weights (to
    float32 round-off: cuDNN's kernels need not be bitwise reproducible)."""
    full = cuda_trainer(corpus, tmp_path / "full", epochs=4, amp=amp)
    assert (full.amp_dtype is None) == (amp == "") and (full.scaler is not None) == (amp == "fp16")
    results = full.fit(corpus[:15], corpus[15:], corpus[15:])
    log = epoch_records(tmp_path / "full" / "log.jsonl")
    assert log[-1]["train_loss"] < log[0]["train_loss"]
    assert json.load(open(tmp_path / "full" / "results.json", encoding="utf-8"))["test"]["micro"] == results["test"]["micro"]
    model = lexner.load(tmp_path / "full" / "model")
    assert model.device.type == "cpu" and model.metadata["card"]["device"] == "cuda"
    cuda_trainer(corpus, tmp_path / "cut", epochs=2, amp=amp).fit(corpus[:15], corpus[15:])
    second = cuda_trainer(corpus, tmp_path / "cut", epochs=4, amp=amp)
    assert second.resume()
    second.fit(corpus[:15], corpus[15:])
    full_state = lexner.load(tmp_path / "full" / "model").state_dict()
    cut_state = lexner.load(tmp_path / "cut" / "model").state_dict()
    for key in full_state:
        assert torch.allclose(full_state[key], cut_state[key], atol=1e-4), key


def test_cli_trains_and_tags_on_cuda(corpus, tmp_path, capsys):
    from lexner.cli import main
    from lexner.data import write_jsonl

    write_jsonl(corpus[:15], tmp_path / "train.jsonl")
    write_jsonl(corpus[15:], tmp_path / "dev.jsonl")
    assert main(["train", "--model", "bilstm_crf", "--train", str(tmp_path / "train.jsonl"), "--dev",
                 str(tmp_path / "dev.jsonl"), "--epochs", "2", "--batch-size", "4", "--set", "hidden=8", "--char-vectors", "none",
                 "--bigram-vectors", "none",
                 "--out", str(tmp_path / "run"), "--no-progress", "--device", "cuda"]) == 0
    capsys.readouterr()
    assert main(["tag", "--model", str(tmp_path / "run" / "model"), "--device", "cuda", "张三在北京工作。"]) == 0
    assert "张三在北京工作。" in capsys.readouterr().out
