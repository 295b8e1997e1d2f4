"""The spaCy component: doc.ents from lexner's offsets, batching, alignment to word tokens, pipeline folders."""

import shutil

import pytest

spacy = pytest.importorskip("spacy")
from spacy.tokens import Doc  # noqa: E402

import lexner  # noqa: E402
from lexner.api import build_tagger  # noqa: E402
from lexner.integrations.spacy import UNALIGNED  # noqa: E402

TEXTS = ["张三在北京大学读书。", "李四去了上海，见到了王小明。", "", "  国际奥委会主席罗格出席开幕式\n2008年北京奥运会"]


def entities(doc):
    return [(e.start_char, e.end_char, e.label_) for e in doc.ents]


def test_ents_are_lexners_entities_one_by_one_and_batched():
    nlp = spacy.blank("zh")
    nlp.add_pipe("lexner")
    ner = lexner.load()
    expected = [[(e.start, e.end, e.label) for e in ents] for ents in ner.tag_batch(TEXTS)]
    assert any(expected)
    assert [entities(nlp(t)) for t in TEXTS] == expected
    assert [entities(d) for d in nlp.pipe(TEXTS, batch_size=2)] == expected


def test_an_entity_inside_a_word_token_is_expanded_or_reported():
    text = "张三在北京工作"  # lexner: 张三/PER, 北京/LOC; the tokens cut 张三 off from nothing but glue 在 to it
    words, spaces = ["张三在", "北京", "工作"], [False, False, False]
    for mode, ents, unaligned in (("expand", [(0, 3, "PER"), (3, 5, "LOC")], None),
                                  ("strict", [(3, 5, "LOC")], [(0, 2, "PER")])):
        nlp = spacy.blank("zh")
        component = nlp.add_pipe("lexner", config={"alignment_mode": mode})
        doc = component(Doc(nlp.vocab, words=words, spaces=spaces))
        assert doc.text == text
        assert entities(doc) == ents
        assert doc.user_data.get(UNALIGNED) == unaligned


def test_pipeline_folder_round_trip_carries_the_model(corpus, tmp_path):
    model = build_tagger("bilstm_crf", corpus, {"char_dim": 8, "bigram_dim": 4, "hidden": 8},
                         label_sets={"coarse": ["LOC", "PER"], "fine": ["city", "name"]})
    model.save(tmp_path / "model")
    nlp = spacy.blank("zh")
    nlp.add_pipe("lexner", config={"model": str(tmp_path / "model"), "labels": "fine"})
    texts = [s.text for s in corpus]
    before = [entities(d) for d in nlp.pipe(texts)]
    assert {label for ents in before for _, _, label in ents} <= {"city", "name"}
    nlp.to_disk(tmp_path / "pipeline")
    shutil.rmtree(tmp_path / "model")  # the pipeline folder holds its own copy
    loaded = spacy.load(tmp_path / "pipeline")
    assert [entities(d) for d in loaded.pipe(texts)] == before


def test_an_unknown_head_or_alignment_mode_is_refused():
    nlp = spacy.blank("zh")
    with pytest.raises(ValueError, match="alignment_mode"):
        nlp.add_pipe("lexner", config={"alignment_mode": "nearest"})
    nlp.add_pipe("lexner", config={"labels": "no-such-head"})
    with pytest.raises(ValueError, match="no label set .no-such-head."):
        nlp("张三")


def test_the_runtime_setting_reaches_lexner_load():
    pytest.importorskip("onnxruntime")
    nlp = spacy.blank("zh")
    with pytest.raises(ValueError, match="runtime must be one of"):
        nlp.add_pipe("lexner", config={"runtime": "tpu"})
    nlp.add_pipe("lexner", config={"runtime": "onnx"})
    plain = spacy.blank("zh")
    plain.add_pipe("lexner", config={"runtime": "torch"})
    assert nlp.get_pipe("lexner").tagger.runtime == "onnx"
    assert plain.get_pipe("lexner").tagger.runtime == "torch"
    text = "张三在北京大学工作。"
    assert [(e.text, e.label_) for e in nlp(text).ents] == [(e.text, e.label_) for e in plain(text).ents]
