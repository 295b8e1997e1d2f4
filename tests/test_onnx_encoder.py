"""lexner.onnx_encoder: single sentences through ONNX Runtime give torch's outputs; everything else is torch."""

import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from lexner.api import build_tagger  # noqa: E402
from lexner.lexicon import Lexicon  # noqa: E402
from lexner.models.recurrent import run_bilstm  # noqa: E402
from lexner.onnx_encoder import SESSION, use_onnx  # noqa: E402

SMALL = {"char_dim": 8, "bigram_dim": 8, "hidden": 16}
TEXTS = ["张三在北京大学工作。", "李四去了广州市", "Elon Musk 在 上海", "我", "国际奥委会主席罗格出席开幕式。" * 3]


def tagger_of(name, corpus):
    torch.manual_seed(0)
    extra = {"word_dim": 8} if name == "softlexicon" else {}
    lexicon = Lexicon(["北京", "北京大学", "广州", "广州市", "上海"]) if name == "softlexicon" else None
    tagger = build_tagger(name, corpus, {**SMALL, **extra}, lexicon=lexicon).eval()
    with torch.no_grad():  # random transitions: entities get predicted
        for p in tagger.crf.parameters():
            p.normal_(0, 1)
    return tagger


@pytest.mark.parametrize("name", ["bilstm_crf", "softlexicon"])
def test_single_sentences_run_in_onnx_runtime_with_torchs_outputs(name, corpus, monkeypatch):
    tagger = tagger_of(name, corpus)
    expected = [tagger.tag(t) for t in TEXTS]
    batched = tagger.tag_batch(TEXTS)
    assert use_onnx(tagger) == 1
    session = getattr(tagger.lstm, SESSION)
    runs = []
    monkeypatch.setattr(tagger.lstm, SESSION, type("Spy", (), {"run": lambda self, *a: runs.append(1) or
                                                                 session.run(*a)})())
    assert [tagger.tag(t) for t in TEXTS] == expected
    assert len(runs) == len(TEXTS)  # every one-line text went through the session
    runs.clear()
    assert tagger.tag_batch(TEXTS) == batched and not runs  # a batch of several: torch
    x = torch.randn(1, 6, tagger.lstm.input_size)
    with torch.inference_mode():
        fast = run_bilstm(tagger.lstm, x, torch.tensor([6]))
        monkeypatch.setattr(tagger.lstm, SESSION, None)
        slow = run_bilstm(tagger.lstm, x, torch.tensor([6]))
    assert torch.allclose(fast, slow, atol=1e-5)


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
