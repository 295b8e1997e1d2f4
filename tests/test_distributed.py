"""Data-parallel training: ``torchrun`` with 2 CPU processes (gloo) equals one process with the same global
batch; AMP switches off cleanly on CPU."""

import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from lexner.data import write_jsonl
from lexner.train import epoch_records
from conftest import toy_corpus

pytestmark = pytest.mark.slow  # starts several Python processes (about 30 s)


def train_args(tmp_path, out, model):
    no_dropout = ["--set", "dropout=0"] + (["--set", "word_dropout=0"] if model == "lattice_lstm" else [])
    return ["-m", "lexner", "train", "--model", model, "--train", str(tmp_path / "train.jsonl"),
            "--dev", str(tmp_path / "dev.jsonl"), "--out", str(out), "--epochs", "2", "--batch-size", "4",
            "--patience", "0", "--threads", "1", "--no-progress", "--device", "cpu", "--set", "hidden=16",
            *no_dropout, "--char-vectors", "none", "--bigram-vectors", "none", "--word-vectors", "none",
            *(["--lexicon", str(tmp_path / "words.txt")] if model == "lattice_lstm" else [])]


@pytest.mark.parametrize("model", ["bilstm_crf", "lattice_lstm"])
def test_two_processes_equal_one_with_the_same_global_batch(tmp_path, model):
    from tagger_contract import TOY_WORDS

    corpus = toy_corpus() * 2 + toy_corpus()[:3]  # 43 sentences: the last global batch of 3 splits 2 + 1, so each
    # shard's loss must be weighted by its share of the global batch (2/3 and 1/3, not 1/2 each)
    write_jsonl(corpus, tmp_path / "train.jsonl")
    write_jsonl(toy_corpus()[:6], tmp_path / "dev.jsonl")
    (tmp_path / "words.txt").write_text("\n".join(TOY_WORDS) + "\n", encoding="utf-8")
    single, parallel = tmp_path / "single", tmp_path / "ddp"
    subprocess.run([sys.executable, *train_args(tmp_path, single, model)], check=True, capture_output=True)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           *train_args(tmp_path, parallel, model)], capture_output=True, encoding="utf-8")
    assert done.returncode == 0, done.stderr[-3000:]
    a = load_file(str(single / "checkpoint" / "trainer_state.safetensors"))
    b = load_file(str(parallel / "checkpoint" / "trainer_state.safetensors"))
    keys = [k for k in a if k.startswith("s.model.")]
    assert keys and all(torch.allclose(a[k], b[k], atol=1e-5) for k in keys)
    log = epoch_records(parallel / "log.jsonl")
    assert [r["epoch"] for r in log] == [1, 2] and all(r["processes"] == 2 for r in log)
    assert (parallel / "results.json").is_file() and (parallel / "model" / "model.safetensors").is_file()


def test_a_failing_rank_stops_every_rank(tmp_path):
    write_jsonl(toy_corpus(), tmp_path / "train.jsonl")
    write_jsonl(toy_corpus()[:4], tmp_path / "dev.jsonl")
    # lr near float32's maximum: the first step sends weights to inf, the next loss is NaN (1e30 could leave a
    # huge but finite loss, and the test passed or failed with the machine)
    args = train_args(tmp_path, tmp_path / "run", "bilstm_crf") + ["--lr", "3e38", "--clip", "0"]
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           *args], capture_output=True, encoding="utf-8", timeout=300)
    assert done.returncode != 0 and "loss became" in done.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_asking_for_cuda_without_a_gpu_is_a_clear_error(tmp_path, capsys):
    from lexner.cli import main

    write_jsonl(toy_corpus(), tmp_path / "train.jsonl")
    assert main(["train", "--train", str(tmp_path / "train.jsonl"), "--dev", str(tmp_path / "train.jsonl"),
                 "--out", str(tmp_path / "run"), "--device", "cuda"]) == 2
    assert "lexner: error: --device cuda was asked for, but torch sees no CUDA device" in capsys.readouterr().err


def test_outside_torchrun_everything_is_one_process(monkeypatch):
    from lexner import distributed

    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    world, device, joined = distributed.setup("cuda:0")
    assert world == distributed.World(0, 1, 0) and not world.distributed and device == "cuda:0" and not joined
    assert distributed.broadcast({"a": 1}) == {"a": 1} and distributed.all_sum([1.0, 2.0]) == [1.0, 2.0]
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.world() == distributed.World(1, 4, 1) and not distributed.world().main


def test_tagger_and_batches_follow_the_device():
    from lexner.api import build_tagger

    tagger = build_tagger("bilstm_crf", toy_corpus(), {"hidden": 8}).to("cpu")
    batch = tagger.featurizer.encode(["张三在北京"]).to(tagger.device)
    assert batch.chars.device == tagger.device and tagger.device.type == "cpu"
    if torch.cuda.is_available():  # on a GPU machine: the same on CUDA
        tagger = tagger.to("cuda")
        assert tagger.featurizer.encode(["张三"]).to(tagger.device).chars.is_cuda
        assert tagger.tag("张三在北京") is not None


@pytest.mark.parametrize("workers", [1, 2])
def test_a_torchrun_worker_ends_without_finalization(monkeypatch, workers):
    """PyTorch's process-group objects torn down by Python's finalization aborted a worker now and then after
    a training that succeeded: ``lexner``'s entry ends a worker with ``os._exit`` (its exit code kept)."""
    import importlib

    from lexner import cli

    importlib.import_module("lexner.distributed")  # as the trainer does in a real run

    ended = []
    monkeypatch.setattr(cli, "main", lambda: 3)
    monkeypatch.setattr(cli.os, "_exit", lambda code: ended.append(code))
    monkeypatch.setenv("WORLD_SIZE", str(workers))
    with pytest.raises(SystemExit) as stop:  # reached only because os._exit is a stand-in here
        cli.entry()
    assert stop.value.code == 3 and ended == ([3] if workers > 1 else [])


def torchrun(args, **kw):
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           *args], capture_output=True, encoding="utf-8", timeout=300, **kw)


def test_resume_under_torchrun_reaches_the_uninterrupted_weights_with_dropout(tmp_path):
    """Each rank's random generators are checkpointed: after --resume, rank 1 no longer draws rank 0's dropout
    masks (all ranks took rank 0's state, and the run drifted from the uninterrupted one)."""
    write_jsonl(toy_corpus() * 2 + toy_corpus()[:2], tmp_path / "train.jsonl")
    write_jsonl(toy_corpus()[:6], tmp_path / "dev.jsonl")

    def args(out, epochs):
        given = train_args(tmp_path, tmp_path / out, "bilstm_crf")
        given[given.index("dropout=0")] = "dropout=0.5"
        given[given.index("--epochs") + 1] = str(epochs)
        return given

    for done in (torchrun(args("whole", 3)), torchrun(args("resumed", 1)), torchrun(args("resumed", 3) + ["--resume"])):
        assert done.returncode == 0, done.stderr[-3000:]
    a = load_file(str(tmp_path / "whole" / "checkpoint" / "trainer_state.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "checkpoint" / "trainer_state.safetensors"))
    keys = [k for k in a if k.startswith("s.model.")]
    assert keys and all(torch.equal(a[k], b[k]) for k in keys)


def test_a_batch_size_below_the_number_of_processes_is_refused(tmp_path):
    """--batch-size 1 with 2 processes skipped every batch and saved an untrained model, exit status 0."""
    write_jsonl(toy_corpus(), tmp_path / "train.jsonl")
    write_jsonl(toy_corpus()[:4], tmp_path / "dev.jsonl")
    args = train_args(tmp_path, tmp_path / "run", "bilstm_crf")
    args[args.index("--batch-size") + 1] = "1"
    done = torchrun(args)
    assert done.returncode != 0 and "--batch-size 1 is smaller than the 2 processes of this run" in done.stderr
    assert not (tmp_path / "run" / "model").exists()
    from lexner.data import Sentence

    joined, spans = "", []  # one training sentence, cut by --max-length into several
    for part in toy_corpus()[:8]:
        spans += [type(sp)(sp.start + len(joined), sp.end + len(joined), sp.label) for sp in part.spans]
        joined += part.text
    write_jsonl([Sentence(joined, spans)], tmp_path / "train.jsonl")
    args = train_args(tmp_path, tmp_path / "long", "bilstm_crf") + ["--max-length", "20"]
    done = torchrun(args)  # (was refused: its sentences were counted before the cut)
    assert done.returncode == 0 and len(joined) > 40, done.stderr[-3000:]


def test_a_rank_that_dies_leaves_the_others_a_clear_message_and_a_checkpoint_to_resume(tmp_path):
    """A process killed mid-epoch (here rank 1 ends itself in epoch 2): rank 0's collective fails, and it says
    what happened and what is kept instead of a gloo traceback."""
    write_jsonl(toy_corpus() * 2, tmp_path / "train.jsonl")
    write_jsonl(toy_corpus()[:4], tmp_path / "dev.jsonl")
    script = tmp_path / "dies.py"
    script.write_text(
        "import os\n"
        "import lexner.train as t\n"
        "step = t.Trainer._step\n"
        "def dying(self, *a, **k):\n"
        "    if self.world.rank == 1 and self.epoch == 1:\n"
        "        os._exit(9)\n"
        "    return step(self, *a, **k)\n"
        "t.Trainer._step = dying\n"
        "from lexner.cli import entry\n"
        "entry()\n", encoding="utf-8")
    args = train_args(tmp_path, tmp_path / "run", "bilstm_crf")[2:]  # without "-m lexner"
    done = torchrun([str(script), *args])
    assert done.returncode != 0
    said = [line for line in done.stderr.splitlines() if "lexner: " in line]
    assert said, done.stderr[-3000:]
    assert any("rank 0: another process of this run ended" in line and "the checkpoint of epoch 1" in line
               for line in said) or any("lexner: terminated" in line for line in said), said
    assert "[rank0]: Traceback" not in done.stderr
    assert (tmp_path / "run" / "checkpoint" / "trainer_state.json").is_file()


def test_only_a_collectives_report_of_a_lost_peer_is_taken_for_one():
    import torch.distributed as dist

    from lexner.cli import _peer_lost

    assert _peer_lost(RuntimeError("[gloo/transport/tcp/pair.cc:553] Connection closed by peer [127.0.0.1]:7831"))
    assert not _peer_lost(dist.DistBackendError("NCCL error: unhandled cuda error, out of memory"))
    assert not _peer_lost(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
