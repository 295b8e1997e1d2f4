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
    for mode, ents, unaligned in (("expand", [(0, 3, "PER"), (3, 5, "LOC")], [(0, 2, "PER")]),
                                  ("strict", [(3, 5, "LOC")], [(0, 2, "PER")])):
        nlp = spacy.blank("zh")
        component = nlp.add_pipe("lexner", config={"alignment_mode": mode})
        doc = component(Doc(nlp.vocab, words=words, spaces=spaces))
        assert doc.text == text
        assert entities(doc) == ents
        assert doc.user_data.get(UNALIGNED) == unaligned
    again = Doc(nlp.vocab, words=["张三", "在"], spaces=[False, False])
    again.user_data[UNALIGNED] = [(0, 1, "PER")]  # left by an earlier run on this doc
    assert UNALIGNED not in nlp.get_pipe("lexner")(again).user_data


def test_an_expanded_entity_dropped_for_an_overlap_is_kept_as_lexner_found_it():
    # lexner: 张三/PER, 北京/LOC; the token 三在北 joins them, so both expand over it and overlap
    words, spaces = ["张", "三在北", "京", "工作"], [False] * 4
    nlp = spacy.blank("zh")
    doc = nlp.add_pipe("lexner")(Doc(nlp.vocab, words=words, spaces=spaces))
    assert len(doc.ents) == 1 and doc.user_data[UNALIGNED] == [(0, 2, "PER"), (3, 5, "LOC")]


def test_pipeline_folder_round_trip_carries_the_model(corpus, tmp_path):
    model = build_tagger("bilstm_crf", corpus, {"char_dim": 8, "bigram_dim": 4, "hidden": 8},
                         label_sets={"coarse": ["LOC", "PER"], "fine": ["city", "name"]})
    model.save(tmp_path / "model")
    nlp = spacy.blank("zh")
    nlp.add_pipe("lexner", config={"model": str(tmp_path / "model"), "labels": "fine"})
    texts = [s.text for s in corpus]
    before = [entities(d) for d in nlp.pipe(texts)]
    assert {label for ents in before for _, _, label in ents} <= {"city", "name"}
    assert nlp.pipe_labels == {"lexner": ["city", "name"]}  # the head's types (spaCy's meta.json lists them)
    nlp.to_disk(tmp_path / "pipeline")
    shutil.rmtree(tmp_path / "model")  # the pipeline folder holds its own copy
    loaded = spacy.load(tmp_path / "pipeline")
    assert [entities(d) for d in loaded.pipe(texts)] == before


def test_a_pipeline_with_the_default_head_saves_and_lists_its_types(tmp_path):
    nlp = spacy.blank("zh")
    nlp.add_pipe("lexner")
    assert nlp.meta["labels"] == {"lexner": []}  # the model is not loaded yet
    tagged = entities(nlp("张三在北京"))
    assert nlp.meta["labels"] == {"lexner": lexner.load().featurizer.entity_types}
    nlp.to_disk(tmp_path / "pipeline")  # was a TypeError: spaCy read the head's name (None) as the labels
    assert entities(spacy.load(tmp_path / "pipeline")("张三在北京")) == tagged


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


def test_a_saved_pipeline_carries_the_onnx_graph_its_model_carried(tmp_path):
    """The bundled model carries its int8 encoder graph; the pipeline folder's copy does too, and loading it with
    that runtime uses it as it is (was dropped: a load built and quantized the graph again, needing onnx)."""
    from lexner.runtimes import GRAPH_FILES

    pytest.importorskip("onnxruntime")
    carried = lexner.load().source / GRAPH_FILES["int8"]
    assert carried.is_file()
    nlp = spacy.blank("zh")
    nlp.add_pipe("lexner", config={"runtime": "onnx-int8"})
    tagged = entities(nlp("张三在北京大学工作。"))
    nlp.to_disk(tmp_path / "pipeline")
    copy = tmp_path / "pipeline" / "lexner" / "model" / GRAPH_FILES["int8"]
    assert copy.read_bytes() == carried.read_bytes()
    assert entities(spacy.load(tmp_path / "pipeline")("张三在北京大学工作。")) == tagged


def test_a_pickled_component_carries_no_weights_and_loads_the_same_tagger_again():
    """Pickled once used (nlp.pipe(n_process=...) where processes are spawned), the component held the whole
    tagger (58 MB of tensors, rebuilt by unpickling) and came back running torch whatever its runtime."""
    import pickle

    nlp = spacy.blank("zh")
    component = nlp.add_pipe("lexner", config={"runtime": "torch-bf16", "dictionary": {"读书": "ORG"}})
    text = "张三在北京大学读书。"
    tagged = entities(nlp(text))
    assert (7, 9, "ORG") in tagged
    component.tagger.set_piece_length(40)
    sent = pickle.dumps(component)
    assert len(sent) < 10_000 and b"_rebuild_tensor" not in sent
    again = pickle.loads(sent)
    assert again.tagger.runtime == "torch-bf16" and again.tagger.max_length == 40
    assert again.tagger.dictionary.items() == [("读书", "ORG")]
    assert entities(again(nlp.make_doc(text))) == tagged
    with pytest.raises(ValueError, match="not loaded from a directory"):  # nothing to load it again from
        component._tagger.source = None
        pickle.dumps(component)


def test_the_dictionary_setting_is_forced_and_saved_with_the_pipeline(tmp_path):
    """spaCy had no way to give a dictionary, and nlp.to_disk dropped one added to the tagger."""
    (tmp_path / "words.tsv").write_text("读书\tORG\n", encoding="utf-8")
    text = "张三在北京大学读书。"
    for given in ({"读书": "ORG"}, str(tmp_path / "words.tsv")):
        nlp = spacy.blank("zh")
        nlp.add_pipe("lexner", config={"dictionary": given})
        assert (7, 9, "ORG") in entities(nlp(text))
        nlp.to_disk(tmp_path / "pipeline")
        (tmp_path / "words.tsv").rename(tmp_path / "gone.tsv")  # the pipeline folder holds its own copy
        assert (7, 9, "ORG") in entities(spacy.load(tmp_path / "pipeline")(text))
        (tmp_path / "gone.tsv").rename(tmp_path / "words.tsv")
    plain = spacy.blank("zh")
    plain.add_pipe("lexner")
    plain.to_disk(tmp_path / "pipeline")  # saved again without one: none left behind
    assert (7, 9, "ORG") not in entities(spacy.load(tmp_path / "pipeline")(text))


def test_evaluate_scores_entities_and_to_bytes_refuses_naming_to_disk():
    from spacy.training import Example

    nlp = spacy.blank("zh")
    nlp.add_pipe("lexner")
    gold = nlp.make_doc("张三在北京。")
    gold.ents = [gold.char_span(0, 2, "PER"), gold.char_span(3, 5, "ORG")]
    scores = nlp.evaluate([Example(nlp.make_doc(gold.text), gold)])
    assert (scores["ents_p"], scores["ents_r"]) == (0.5, 0.5) and scores["ents_per_type"]["PER"]["f"] == 1.0
    with pytest.raises(NotImplementedError, match="nlp.to_disk"):
        nlp.to_bytes()
    assert nlp.to_bytes(exclude=["lexner"])


def test_a_dictionary_setting_given_when_a_pipeline_is_loaded_is_used(tmp_path):
    """from_disk loaded the saved folder's dictionary (none here) and ignored the setting (diff review)."""
    nlp = spacy.blank("zh")
    nlp.add_pipe("lexner")
    text = "张三在北京大学读书。"
    assert (7, 9, "ORG") not in entities(nlp(text))
    nlp.to_disk(tmp_path / "pipeline")
    (tmp_path / "words.tsv").write_text("读书\tORG\n", encoding="utf-8")
    loaded = spacy.load(tmp_path / "pipeline", config={"components.lexner.dictionary": str(tmp_path / "words.tsv")})
    assert (7, 9, "ORG") in entities(loaded(text))
