"""The model bundled inside the package: ``lexner.load()`` and ``lexner tag TEXT`` with no data root."""

import json

import pytest

import lexner
from lexner.api import DEFAULT_MODEL
from lexner.cli import main

OLYMPICS = "2008年北京奥运会在中国举行，国际奥委会主席罗格出席开幕式。"


@pytest.fixture(scope="module")
def default():
    return lexner.load()


def test_bundled_model_is_small_and_labels_per_loc_org(default):
    size = sum(p.stat().st_size for p in DEFAULT_MODEL.iterdir() if p.is_file())
    assert size <= 30 * 2**20
    assert default.featurizer.entity_types == ["PER", "LOC", "ORG"]
    assert default.name == "softlexicon" and default.featurizer.lexicon is not None


def test_tags_without_a_data_root(monkeypatch, tmp_path):
    monkeypatch.setenv("LEXNER_DATA", str(tmp_path / "nothing-here"))
    default = lexner.load()
    entities = default.tag(OLYMPICS)
    assert all(OLYMPICS[e.start : e.end] == e.text for e in entities)
    found = {(e.text, e.label) for e in entities}
    assert {("中国", "LOC"), ("罗格", "PER"), ("国际奥委会", "ORG")} <= found
    assert default.tag("张三在北京大学读书。") == [lexner.Entity(0, 2, "PER", "张三"),
                                              lexner.Entity(3, 7, "ORG", "北京大学")]


def test_extra_words_reach_the_bundled_lexicon(default):
    word = "奥委会主席团"
    assert word not in default.featurizer.lexicon
    tagger = lexner.load(extra_words=[word])
    assert word in tagger.featurizer.lexicon and word not in default.featurizer.lexicon


def test_cli_tags_with_the_bundled_model(capsys, default):
    capsys.readouterr()
    assert main(["tag", OLYMPICS, "张三在北京大学读书。"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in lines] == [OLYMPICS, "张三在北京大学读书。"]
    expected = [[e.to_dict() for e in ents] for ents in default.tag_batch([OLYMPICS, "张三在北京大学读书。"])]
    assert [r["entities"] for r in lines] == expected
    assert main(["tag", "--model", str(DEFAULT_MODEL), "--format", "text", "张三在北京大学读书。"]) == 0
    assert capsys.readouterr().out == "[张三|PER]在[北京大学|ORG]读书。\n"


def test_an_ensemble_of_renamed_models_scores_gold_in_the_names_they_were_trained_on():
    from lexner.data import Sentence
    from lexner.evaluate import evaluate
    from lexner.schemes import Span

    gold = [Sentence("张三在北京大学读书。", [Span(0, 2, "NR"), Span(3, 7, "NT")])]  # MSRA's names
    single = evaluate(lexner.load(), gold)["micro"]
    assert single["f1"] == 1.0  # the bundled model was exported with NR → PER, NS → LOC, NT → ORG
    assert evaluate(lexner.load([DEFAULT_MODEL, DEFAULT_MODEL]), gold)["micro"] == single  # was F1 0


def test_an_ensemble_describes_how_its_members_run():
    pytest.importorskip("onnxruntime")
    ensemble = lexner.load([DEFAULT_MODEL, DEFAULT_MODEL], runtime="onnx-int8")
    assert ensemble.runtime == "onnx-int8" and ensemble.describe()["runtime"] == "onnx-int8"  # was "torch"
    ensemble.members[0].train()  # training mode drops that member's session: the members now differ
    assert ensemble.runtime is None and ensemble.describe()["runtime"] == ["torch", "onnx-int8"]
    bf16 = lexner.load([DEFAULT_MODEL, DEFAULT_MODEL], runtime="torch-bf16")
    bf16.train()  # the ensemble's train(): every member drops its own sessions and says so
    assert bf16.runtime == "torch" and bf16.describe()["runtime"] == "torch"
    described = ensemble.describe()  # what its members store and their lexicons (was float32 and the first's)
    assert described["stored"] == "float16" and described["lexicon_words"] == len(lexner.load().featurizer.lexicon)


def test_an_ensemble_describes_members_that_differ_each_apart(corpus, tmp_path):
    from lexner.api import build_tagger
    from lexner.export import export_model
    from lexner.lexicon import Lexicon

    small = {"char_dim": 4, "bigram_dim": 4, "hidden": 8}
    build_tagger("bilstm_crf", corpus, small).save(tmp_path / "plain")
    export_model(build_tagger("softlexicon", corpus, small, lexicon=Lexicon(["北京", "上海"])), tmp_path / "half",
                 half=True)
    described = lexner.load([tmp_path / "plain", tmp_path / "half"]).describe()
    assert described["stored"] == ["float32", "float16"] and described["lexicon_words"] == [None, 2]
