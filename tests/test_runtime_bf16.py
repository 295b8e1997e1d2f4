"""lexner.load(runtime="torch-bf16"): a bfloat16 copy of each BiLSTM runs CPU inference; outputs stay close to
float32's; training, stale weights, taggers without a BiLSTM and export behave as for the ONNX runtimes."""

import json

import pytest
import torch

import lexner
from lexner.api import build_tagger
from lexner.export import export_model
from lexner.lexicon import Lexicon
from lexner.models.recurrent import run_bilstm
from lexner.onnx_encoder import Bfloat16Session, attach, session_of, use_runtime
from small_bilstm import TEXTS, tagger_of


@pytest.mark.parametrize("name", ["bilstm_crf", "softlexicon"])
def test_inference_runs_the_bfloat16_copy_with_close_outputs(name, corpus):
    tagger = tagger_of(name, corpus)
    lengths = torch.tensor([7, 1, 4, 7, 2])
    x = torch.randn(5, 7, tagger.lstm.input_size) * (torch.arange(7) < lengths[:, None]).unsqueeze(-1)
    with torch.inference_mode():
        exact = run_bilstm(tagger.lstm, x, lengths)
    use_runtime(tagger, "torch-bf16")
    assert tagger.runtime == "torch-bf16" and isinstance(session_of(tagger.lstm), Bfloat16Session)
    assert tagger.lstm.weight_hh_l0.dtype == torch.float32  # the model's own weights are untouched
    with torch.inference_mode():
        close = run_bilstm(tagger.lstm, x, lengths)
    error = (close - exact).abs().max().item()
    assert 0 < error < 0.05  # bfloat16 (not the float32 weights), and close
    assert close.dtype == torch.float32 and not close[1, 1:].any()  # padding positions are zeros
    runs = []
    session = session_of(tagger.lstm)
    attach(tagger.lstm, type("Spy", (), {"run": lambda self, *a: runs.append(1) or session.run(*a)})())
    tagger.tag_batch(TEXTS)
    assert runs  # tagging goes through it


def test_training_stale_weights_and_copies_run_torch(corpus):
    import copy

    tagger = tagger_of("bilstm_crf", corpus)
    use_runtime(tagger, "torch-bf16")
    x, lengths = torch.randn(2, 5, tagger.lstm.input_size), torch.tensor([5, 3])
    tagger.train()
    out = run_bilstm(tagger.lstm, x, lengths)
    assert out.requires_grad and out.dtype == torch.float32  # training: the float32 LSTM, with gradients
    assert session_of(copy.deepcopy(tagger.lstm)) is None
    assert session_of(tagger.lstm) is None and tagger.runtime == "torch"  # training mode dropped the copy
    tagger.eval()
    use_runtime(tagger, "torch-bf16")
    with torch.no_grad():
        tagger.lstm.weight_hh_l0.mul_(0.5)  # the weights changed after the copy was made
    with torch.inference_mode():
        after = run_bilstm(tagger.lstm, x, lengths)
        assert session_of(tagger.lstm) is None  # stale: dropped
        assert torch.equal(after, run_bilstm(tagger.lstm, x, lengths))


def test_load_export_and_errors(tmp_path, corpus):
    tagger = tagger_of("softlexicon", corpus)
    tagger.save(tmp_path / "model")
    loaded = lexner.load(tmp_path / "model", runtime="torch-bf16")
    assert loaded.runtime == "torch-bf16" and loaded.describe()["runtime"] == "torch-bf16"
    out = export_model(lexner.load(tmp_path / "model"), tmp_path / "bf16", runtime="torch-bf16")
    assert json.loads((out / "config.json").read_text(encoding="utf-8"))["runtime"] == "torch-bf16"
    assert lexner.load(out).runtime == "torch-bf16"  # as the directory says
    assert lexner.load(out, runtime="torch").runtime == "torch"  # the caller decides
    assert lexner.load(out, onnx=False).runtime == "torch"
    with pytest.raises(ValueError, match="not both"):
        lexner.load(out, runtime="torch", onnx=True)
    with pytest.raises(ValueError, match="runtime must be one of"):
        lexner.load(out, runtime="bf16")
    lattice = build_tagger("lattice_lstm", corpus, {"char_dim": 8, "bigram_dim": 8, "word_dim": 8, "hidden": 16},
                           lexicon=Lexicon(["北京"]))
    with pytest.raises(ValueError, match="no BiLSTM encoder to run in bfloat16"):
        use_runtime(lattice, "torch-bf16")
    assert lattice.runtime == "torch"


def test_lexner_tag_with_the_bfloat16_runtime(tmp_path, corpus, capsys):
    from lexner.cli import main

    tagger_of("softlexicon", corpus).save(tmp_path / "model")
    assert main(["tag", "-m", str(tmp_path / "model"), "--runtime", "torch-bf16", "--format", "jsonl",
                 "张三在北京"]) == 0
    assert json.loads(capsys.readouterr().out)["text"] == "张三在北京"
