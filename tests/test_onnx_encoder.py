"""lexner.onnx_encoder: single sentences through ONNX Runtime give torch's outputs; everything else is torch."""

import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from lexner.api import build_tagger  # noqa: E402
from lexner.lexicon import Lexicon  # noqa: E402
from lexner.models.recurrent import run_bilstm  # noqa: E402
from lexner.onnx_encoder import attach, session_of, use_onnx  # noqa: E402

from small_bilstm import SMALL, TEXTS  # noqa: E402
from small_bilstm import tagger_of as small_tagger  # noqa: E402


def tagger_of(name, corpus):
    return small_tagger(name, corpus, random_crf=True)


@pytest.mark.parametrize("name", ["bilstm_crf", "softlexicon"])
def test_inference_runs_in_onnx_runtime_with_torchs_outputs(name, corpus, monkeypatch):
    tagger = tagger_of(name, corpus)
    expected = [tagger.tag(t) for t in TEXTS]
    batched = tagger.tag_batch(TEXTS)
    assert use_onnx(tagger) == 1
    session = session_of(tagger.lstm)
    runs = []
    attach(tagger.lstm, type("Spy", (), {"run": lambda self, *a: runs.append(1) or session.run(*a)})())
    assert [tagger.tag(t) for t in TEXTS] == expected
    assert len(runs) == len(TEXTS)  # every one-line text went through the session
    runs.clear()
    assert tagger.tag_batch(TEXTS) == batched and runs  # a padded batch too


@pytest.mark.parametrize("layers", [1, 2])
def test_a_padded_batch_gives_torchs_outputs_for_every_sentence(layers, corpus):
    torch.manual_seed(layers)
    tagger = build_tagger("bilstm_crf", corpus, {**SMALL, "layers": layers}).eval()
    lengths = torch.tensor([7, 1, 4, 7, 2])
    x = torch.randn(5, 7, tagger.lstm.input_size) * (torch.arange(7) < lengths[:, None]).unsqueeze(-1)
    use_onnx(tagger)
    with torch.inference_mode():
        fast = run_bilstm(tagger.lstm, x, lengths)
        attach(tagger.lstm, None)
        slow = run_bilstm(tagger.lstm, x, lengths)
    assert fast.shape == slow.shape and torch.allclose(fast, slow, atol=1e-5)
    assert not fast[1, 1:].any()  # padding positions are zeros


def test_training_and_gradients_never_use_the_session(corpus):
    tagger = tagger_of("bilstm_crf", corpus)
    use_onnx(tagger)
    tagger.train()
    batch = tagger.featurizer.collate([tagger.featurizer.encode_one(corpus[0].text, corpus[0].spans)])
    loss = tagger.loss(batch)
    loss.backward()
    assert tagger.lstm.weight_hh_l0.grad is not None and tagger.lstm.weight_hh_l0.grad.abs().sum() > 0


def test_a_tagger_without_a_bilstm_is_refused(corpus):
    tagger = build_tagger("lattice_lstm", corpus, {"char_dim": 8, "bigram_dim": 8, "word_dim": 8, "hidden": 16},
                          lexicon=Lexicon(["北京"]))
    with pytest.raises(ValueError, match="no BiLSTM"):
        use_onnx(tagger)


def test_the_bundled_model_loads_with_onnx_and_tags_the_same():
    import lexner

    plain, fast = lexner.load(), lexner.load(onnx=True)
    for text in TEXTS:
        assert fast.tag(text) == plain.tag(text)


def test_lexner_tag_onnx_prints_what_plain_tagging_prints(capsys):
    from lexner.cli import main

    assert main(["tag", "张三在北京大学工作。"]) == 0
    plain = capsys.readouterr().out
    assert main(["tag", "--onnx", "张三在北京大学工作。"]) == 0
    assert capsys.readouterr().out == plain


def test_int8_weights_give_close_but_not_identical_outputs(corpus):
    tagger = tagger_of("softlexicon", corpus)
    use_onnx(tagger, precision="int8")
    x = torch.randn(1, 12, tagger.lstm.input_size)
    with torch.inference_mode():
        quantized = run_bilstm(tagger.lstm, x, torch.tensor([12]))
        attach(tagger.lstm, None)
        exact = run_bilstm(tagger.lstm, x, torch.tensor([12]))
    error = (quantized - exact).abs().max().item()
    assert 0 < error < 0.05  # quantized (not the float graph), and close
    with pytest.raises(ValueError, match="precision"):
        use_onnx(tagger, precision="int4")


def saved_model(tmp_path, corpus, name="softlexicon"):
    tagger = tagger_of(name, corpus)
    tagger.save(tmp_path / "model")
    return tmp_path / "model"


def sessions(tagger):
    return [session_of(m) for m in tagger.modules() if isinstance(m, torch.nn.LSTM)]


def test_an_exported_model_carries_its_runtime_and_load_can_override_it(tmp_path, corpus):
    import json

    import lexner
    from lexner.export import export_model

    out = export_model(lexner.load(saved_model(tmp_path, corpus)), tmp_path / "int8", runtime="onnx-int8")
    assert json.loads((out / "config.json").read_text(encoding="utf-8"))["runtime"] == "onnx-int8"
    assert all(s is not None for s in sessions(lexner.load(out)))  # as the directory says
    assert all(s is None for s in sessions(lexner.load(out, onnx=False)))  # the caller decides
    again = export_model(lexner.load(out, onnx=False), tmp_path / "again")
    assert json.loads((again / "config.json").read_text(encoding="utf-8"))["runtime"] == "onnx-int8"  # kept
    plain = export_model(lexner.load(out, onnx=False), tmp_path / "plain", runtime="torch")
    assert "runtime" not in json.loads((plain / "config.json").read_text(encoding="utf-8"))
    assert all(s is None for s in sessions(lexner.load(plain)))


def test_runtime_errors_are_clean(tmp_path, corpus, monkeypatch, caplog):
    import json
    import sys

    import lexner
    from lexner.export import ExportError, export_model
    from lexner.fileio import ModelFormatError

    directory = saved_model(tmp_path, corpus)
    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    with pytest.raises(ValueError, match="onnx must be"):
        lexner.load(directory, onnx="int4")
    (directory / "config.json").write_text(json.dumps({**config, "runtime": "tpu"}), encoding="utf-8")
    with pytest.raises(ModelFormatError, match=r"config\.json: 'runtime' must be one of"):
        lexner.load(directory)
    (directory / "config.json").write_text(json.dumps({**config, "runtime": "onnx-int8"}), encoding="utf-8")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # ONNX Runtime not installed
    with caplog.at_level("WARNING"):
        tagger = lexner.load(directory)  # the model's own preference: a warning, then torch
    assert all(s is None for s in sessions(tagger)) and "not installed" in caplog.text
    with pytest.raises(ImportError, match="lexner\\[onnx\\]"):
        lexner.load(directory, onnx=True)  # asked for by the caller: an error
    tagger = build_tagger("lattice_lstm", corpus, {"char_dim": 8, "bigram_dim": 8, "word_dim": 8, "hidden": 16},
                          lexicon=Lexicon(["北京"]))
    with pytest.raises(ExportError, match="has none"):
        export_model(tagger, tmp_path / "out", runtime="onnx")
    assert not (tmp_path / "out").exists()
    with pytest.raises(ExportError, match="runtime must be one of"):
        export_model(tagger, tmp_path / "out", runtime="gpu")


def test_lexner_tag_runtime_option_reaches_load(tmp_path, corpus, monkeypatch):
    import lexner.api
    from lexner.cli import main

    seen = []
    real = lexner.api.load
    monkeypatch.setattr(lexner.api, "load", lambda *a, **k: seen.append(k["runtime"]) or real(*a, **k))
    directory = saved_model(tmp_path, corpus)
    for option, expected in ((["--runtime", "onnx-int8"], "onnx-int8"), (["--runtime", "torch"], "torch"),
                             (["--runtime", "torch-bf16"], "torch-bf16"), (["--onnx"], "onnx"), ([], None)):
        assert main(["tag", "-m", str(directory), *option, "张三在北京"]) == 0
        assert seen.pop() == expected


def test_a_session_is_dropped_when_the_weights_change_and_never_pickled(corpus):
    import copy
    import pickle

    tagger = tagger_of("softlexicon", corpus)
    use_onnx(tagger)
    x, lengths = torch.randn(2, 5, tagger.lstm.input_size), torch.tensor([5, 3])
    with torch.no_grad():
        tagger.lstm.weight_hh_l0.mul_(0.5)  # training went on (an in-place optimiser step)
    with torch.inference_mode():
        after = run_bilstm(tagger.lstm, x, lengths)
    assert session_of(tagger.lstm) is None  # stale: torch runs the new weights
    with torch.inference_mode():
        assert torch.equal(after, run_bilstm(tagger.lstm, x, lengths))
    use_onnx(tagger)
    assert session_of(copy.deepcopy(tagger.lstm)) is None and session_of(tagger.lstm) is not None
    assert session_of(pickle.loads(pickle.dumps(tagger.lstm))) is None
    with torch.inference_mode():  # an empty batch: torch's empty output, not an ONNX Runtime abort
        assert run_bilstm(tagger.lstm, x[:0], lengths[:0]).shape == (0, 5, tagger.lstm.hidden_size * 2)


def test_workers_load_the_model_with_the_parents_runtime(tmp_path, corpus):
    import lexner
    from lexner import tagfile

    directory = saved_model(tmp_path, corpus)
    for onnx, runtime in ((False, "torch"), (True, "onnx"), ("int8", "onnx-int8")):
        parent = lexner.load(directory, onnx=onnx)
        assert parent.runtime == runtime
        tagfile._worker_init(str(directory), [], None, parent.runtime, parent.max_length)
        assert tagfile._WORKER_TAGGER.runtime == runtime


def test_a_runtime_in_the_config_of_a_model_without_a_bilstm_names_the_file(tmp_path, corpus):
    import lexner
    from lexner.fileio import ModelFormatError

    tagger = build_tagger("lattice_lstm", corpus, {"char_dim": 8, "bigram_dim": 8, "word_dim": 8, "hidden": 16},
                          lexicon=Lexicon(["北京"]))
    tagger.save(tmp_path / "m", extra={"runtime": "onnx"})
    with pytest.raises(ModelFormatError, match=r"config\.json: runtime 'onnx' runs a BiLSTM"):
        lexner.load(tmp_path / "m")
    assert lexner.load(tmp_path / "m", onnx=False).runtime == "torch"
