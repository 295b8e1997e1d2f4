"""Training a saved model further (``lexner train --init-from``, :func:`lexner.api.load_for_training`)."""

import json

import pytest
import torch

import lexner
from lexner.api import build_tagger, load_for_training
from lexner.cli import main
from lexner.data import write_jsonl
from lexner.models import Tagger

from test_multitask import SMALL, fine


@pytest.fixture
def saved(corpus, tmp_path):
    """A small trained-looking one-head bilstm_crf (PER/LOC) saved in tmp_path/source."""
    torch.manual_seed(0)
    tagger = build_tagger("bilstm_crf", corpus, SMALL)
    tagger.save(tmp_path / "source")
    return tmp_path / "source"


def weights(tagger):
    return {k: v.clone() for k, v in tagger.state_dict().items()}


def test_a_head_that_knows_the_types_is_trained_as_it_is(saved):
    before = weights(Tagger.load(saved))
    after = weights(load_for_training(saved, {None: {"PER"}}))
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], v) for k, v in before.items())
    assert load_for_training(saved, {}).source is None  # no longer what the directory holds once it trains


def test_a_new_name_gets_a_new_head_and_the_old_ones_keep_their_weights(saved):
    before = weights(Tagger.load(saved))
    tagger = load_for_training(saved, {"fine": {"name", "city"}})
    assert list(tagger.featurizer.label_sets) == ["default", "fine"]
    assert tagger.featurizer.label_set("fine").entity_types == ["city", "name"]
    assert tagger.featurizer.entity_types == ["LOC", "PER"]  # the default head stays the default
    after = weights(tagger)
    assert all(torch.equal(after[k], v) for k, v in before.items())
    assert {k for k in after if k not in before} == {k for k in after if k.startswith("heads.fine.")}
    assert tagger.heads["fine"].output.out_features == len(tagger.featurizer.label_set("fine").tags)
    assert tagger.tag("张三在北京", labels="fine") is not None  # usable before any training


def test_a_head_lacking_a_type_is_refused_naming_the_head_and_the_types(saved):
    with pytest.raises(ValueError, match=r"head 'default' has the types LOC, PER, not ORG; .*--task NAME:TRAIN"):
        load_for_training(saved, {None: {"PER", "ORG"}})


def test_cli_fine_tunes_a_saved_model_on_a_corpus_of_new_types(saved, corpus, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LEXNER_DATA", str(tmp_path / "no-data"))
    write_jsonl(fine(corpus)[:15], tmp_path / "fine_train.jsonl")
    write_jsonl(fine(corpus)[15:], tmp_path / "fine_dev.jsonl")
    task = f"--task=fine:{tmp_path / 'fine_train.jsonl'}:{tmp_path / 'fine_dev.jsonl'}"
    out = tmp_path / "run"
    assert main(["train", "--init-from", str(saved), task, "--out", str(out), "--epochs", "8", "--batch-size", "4",
                 "--optimizer", "adam", "--lr", "0.01", "--no-progress", "--device", "cpu"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["dev"]["f1"] > 0.5  # the new head learnt its types (the toy corpus is easy)
    model = lexner.load(out / "model")
    assert list(model.featurizer.label_sets) == ["default", "fine"]
    assert {e.label for e in model.tag("张三在北京工作。", labels="fine")} <= {"name", "city"}
    source = Tagger.load(saved)
    assert model.featurizer.chars.tokens == source.featurizer.chars.tokens  # the saved model's vocabulary, not rebuilt
    assert model.metadata["card"]["init_from"] == str(saved)


@pytest.mark.parametrize("extra, message", [
    (["--set", "hidden=8"], "leave out --set"),
    # dropped silently before: the saved model's vocabularies and vectors are kept whatever these say
    (["--char-vectors", "none", "--bigram-min-count", "5", "--lexicon", "w.txt"],
     "the settings, vocabularies, vectors and lexicon are the saved model's; leave out --lexicon, --char-vectors, "
     "--bigram-min-count"),
    (["--model", "softlexicon"], "holds a bilstm_crf model"),
])
def test_cli_refuses_settings_the_saved_model_decides(saved, corpus, tmp_path, capsys, extra, message):
    write_jsonl(corpus, tmp_path / "t.jsonl")
    assert main(["train", "--init-from", str(saved), "--train", str(tmp_path / "t.jsonl"), "--out",
                 str(tmp_path / "run"), *extra]) == 2
    assert message in capsys.readouterr().err


def test_cli_refuses_a_corpus_of_other_types_for_the_default_head(saved, corpus, tmp_path, capsys):
    write_jsonl(fine(corpus), tmp_path / "t.jsonl")
    assert main(["train", "--init-from", str(saved), "--train", str(tmp_path / "t.jsonl"), "--out",
                 str(tmp_path / "run")]) == 2
    assert "head 'default' has the types LOC, PER, not city, name" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # refused before anything is written


def test_distill_can_start_from_a_saved_model_taught_by_it(saved, corpus, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LEXNER_DATA", str(tmp_path / "no-data"))
    write_jsonl(corpus[:15], tmp_path / "train.jsonl")
    write_jsonl(corpus[15:], tmp_path / "dev.jsonl")
    out = tmp_path / "student"
    assert main(["distill", "--init-from", str(saved), "--teacher", str(saved), "--train",
                 str(tmp_path / "train.jsonl"), "--dev", str(tmp_path / "dev.jsonl"), "--out", str(out),
                 "--epochs", "1", "--batch-size", "4", "--no-progress", "--device", "cpu"]) == 0
    card = lexner.load(out / "model").metadata["card"]
    assert card["init_from"] == str(saved) and card["teachers"] == [str(saved)]


def test_a_model_trained_from_a_float16_one_is_saved_in_full_precision(saved, corpus, tmp_path, monkeypatch):
    """save() keeps a loaded model's precision by default; a training's output must not inherit float16."""
    monkeypatch.setenv("LEXNER_DATA", str(tmp_path / "no-data"))
    lexner.load(saved).save(tmp_path / "half", half=True)
    write_jsonl(corpus[:15], tmp_path / "train.jsonl")
    write_jsonl(corpus[15:], tmp_path / "dev.jsonl")
    out = tmp_path / "tuned"
    assert main(["train", "--init-from", str(tmp_path / "half"), "--train", str(tmp_path / "train.jsonl"), "--dev",
                 str(tmp_path / "dev.jsonl"), "--out", str(out), "--epochs", "1", "--batch-size", "4",
                 "--no-progress", "--device", "cpu"]) == 0
    assert lexner.load(tmp_path / "half").stored_half and not lexner.load(out / "model").stored_half
