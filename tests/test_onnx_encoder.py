"""lexner.onnx_encoder: a tagger's inference through ONNX Runtime (ids to every head's tag scores in one graph)
gives torch's outputs, one sentence or a padded batch; training, stale weights and copies run torch."""

import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from lexner.api import build_tagger  # noqa: E402
from lexner.lexicon import Lexicon  # noqa: E402
from lexner.onnx_encoder import attach, onnx_emissions, session_of, use_onnx  # noqa: E402

from small_bilstm import SMALL, TEXTS  # noqa: E402
from small_bilstm import tagger_of as small_tagger  # noqa: E402


def tagger_of(name, corpus):
    return small_tagger(name, corpus, random_crf=True)


def emissions_both_ways(tagger, texts, labels=None):
    """The tag scores of ``texts`` as one padded batch: from the attached session, and from torch."""
    featurizer = tagger.featurizer
    batch = featurizer.collate([featurizer.encode_one(t) for t in texts], labels)
    with torch.inference_mode():
        fast = tagger.emissions(batch)
        session = session_of(tagger)
        attach(tagger, None)
        slow = tagger.emissions(batch)
        attach(tagger, session)
    return fast, slow, batch


@pytest.mark.parametrize("name", ["bilstm_crf", "softlexicon"])
def test_inference_runs_in_onnx_runtime_with_torchs_outputs(name, corpus):
    tagger = tagger_of(name, corpus)
    expected = [tagger.tag(t) for t in TEXTS]
    batched = tagger.tag_batch(TEXTS)
    assert use_onnx(tagger) == 1
    session = session_of(tagger)
    runs = []
    attach(tagger, type("Spy", (), {"default": session.default, "sessions": session.sessions,
                                    "run": lambda self, batch, head: runs.append(len(batch)) or session.run(batch, head)})())
    assert [tagger.tag(t) for t in TEXTS] == expected
    assert runs == [1] * len(TEXTS)  # every one-line text went through the session
    runs.clear()
    assert tagger.tag_batch(TEXTS) == batched and max(runs) > 1  # a padded batch too


@pytest.mark.parametrize("name,config", [("bilstm_crf", {"layers": 2}), ("softlexicon", {}),
                                         ("softlexicon", {"word_weights": "frequency", "layers": 2})])
def test_a_padded_batch_gives_torchs_tag_scores_for_every_sentence_and_head(name, config, corpus):
    torch.manual_seed(1)
    extra = {"word_dim": 8} if name == "softlexicon" else {}
    lexicon = Lexicon(["北京", "北京大学", "大学", "广州", "广州市", "上海", "奥委会"]) if extra else None
    tagger = build_tagger(name, corpus, {**SMALL, **extra, **config}, lexicon=lexicon,
                          label_sets={"news": ["PER", "LOC", "ORG"], "fine": ["PER", "LOC", "ORG", "GPE"]}).eval()
    if config.get("word_weights") == "frequency":
        tagger.fit_corpus(TEXTS)
        assert tagger.word_counts.any()  # the weights differ from a plain mean
    for parameter in tagger.parameters():  # scores of a trained size, so that mistakes show
        torch.nn.init.normal_(parameter)
    use_onnx(tagger)
    for labels in (None, "fine"):
        fast, slow, batch = emissions_both_ways(tagger, TEXTS, labels)
        assert fast.shape == slow.shape == (len(TEXTS), batch.chars.shape[1], len(tagger.head(labels)[1].transitions))
        torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-4)
    if extra:
        assert batch.word_mask.sum(1).min() == 0 and batch.word_mask.sum(1).max() > 1  # words, and none, padded


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


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_the_graph_is_a_valid_onnx_model_that_reads_the_tables_as_inputs(precision, corpus):
    """The graph passes onnx's checker (ONNX Runtime is left to check it at load time); the tables are inputs
    named as the tagger names them, none copied into the graph; its metadata says what it was made from."""
    import onnx

    from lexner.onnx_encoder import GRAPH_FORMAT, graph_bytes, weights_digest

    tagger = tagger_of("softlexicon", corpus)
    model = onnx.load_from_string(graph_bytes(tagger, None, precision))
    onnx.checker.check_model(model)
    quantized = [node.op_type for node in model.graph.node if "LSTM" in node.op_type]
    assert quantized == (["LSTM"] if precision == "float32" else ["DynamicQuantizeLSTM"])
    tables = [i.name for i in model.graph.input if "." in i.name]  # the Batch fields' names have no dot
    assert sorted(tables) == ["embed.bigrams.weight", "embed.chars.weight", "embed.words.weight"]
    largest = max(tagger.embed.words.weight.shape[0], tagger.embed.bigrams.weight.shape[0])
    assert all(t.dims[0] < largest for t in model.graph.initializer if t.dims)  # no table inside
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta == {"lexner_graph_format": str(GRAPH_FORMAT), "head": tagger.featurizer.default_labels,
                    "precision": precision, "tables": ",".join(tables),
                    "weights_sha1": weights_digest(tagger, tables)}


def test_int8_weights_give_close_but_not_identical_outputs(corpus):
    tagger = tagger_of("softlexicon", corpus)
    use_onnx(tagger, precision="int8")
    quantized, exact, _ = emissions_both_ways(tagger, TEXTS[:1])
    error = (quantized - exact).abs().max().item()
    assert 0 < error < 0.05  # quantized (not the float graph), and close
    with pytest.raises(ValueError, match="precision"):
        use_onnx(tagger, precision="int4")


def saved_model(tmp_path, corpus, name="softlexicon"):
    tagger = tagger_of(name, corpus)
    tagger.save(tmp_path / "model")
    return tmp_path / "model"


def test_an_exported_model_carries_its_runtime_and_load_can_override_it(tmp_path, corpus, monkeypatch, capsys):
    import json

    import lexner
    import lexner.onnx_encoder as encoder
    from lexner.cli import main
    from lexner.export import export_model

    out = export_model(lexner.load(saved_model(tmp_path, corpus)), tmp_path / "int8", runtime="onnx-int8")
    assert json.loads((out / "config.json").read_text(encoding="utf-8"))["runtime"] == "onnx-int8"
    with monkeypatch.context() as patched:
        patched.setattr(encoder, "use_runtime", lambda *a: pytest.fail("a session was made"))
        capsys.readouterr()
        assert main(["info", str(out)]) == 0  # describes it without making a session
    about = json.loads(capsys.readouterr().out)
    assert about["runtime"] == "onnx-int8" and about["onnx_graphs"] == ["int8"]
    (tmp_path / "gold.bio").write_text("张 B-PER\n三 I-PER\n在 O\n北 B-LOC\n京 I-LOC\n\n", encoding="utf-8")
    for given, used in (([], "onnx-int8"), (["--runtime", "torch"], "torch")):  # scores say how they were made
        assert main(["evaluate", str(out), "--file", str(tmp_path / "gold.bio"), "--no-progress", *given]) == 0
        assert json.loads(capsys.readouterr().out)["runtime"] == used
    assert session_of(lexner.load(out)) is not None  # as the directory says
    assert session_of(lexner.load(out, onnx=False)) is None  # the caller decides
    again = export_model(lexner.load(out, onnx=False), tmp_path / "again")
    assert json.loads((again / "config.json").read_text(encoding="utf-8"))["runtime"] == "onnx-int8"  # kept
    plain = export_model(lexner.load(out, onnx=False), tmp_path / "plain", runtime="torch")
    assert "runtime" not in json.loads((plain / "config.json").read_text(encoding="utf-8"))
    assert session_of(lexner.load(plain)) is None


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_a_carried_graph_is_used_without_building_one_and_only_with_the_weights_it_was_made_from(
        precision, tmp_path, corpus, monkeypatch, caplog):
    import lexner
    import lexner.onnx_encoder as encoder
    from lexner.export import export_model
    from lexner.runtimes import GRAPH_FILES

    runtime = {"float32": "onnx", "int8": "onnx-int8"}[precision]
    out = export_model(lexner.load(saved_model(tmp_path, corpus)), tmp_path / "carries", onnx_graphs=[precision],
                       half=True)
    assert (out / GRAPH_FILES[precision]).is_file() and "runtime" not in (out / "config.json").read_text(encoding="utf-8")
    built = lexner.load(out, runtime=runtime)  # the float16 weights as loaded: what the carried graph was made from
    built.source = None  # so that this one builds its own
    encoder.use_runtime(built, runtime)
    expected = [built.tag(t) for t in TEXTS]

    def no_building(*args, **kwargs):
        raise AssertionError("a graph was built")

    with monkeypatch.context() as patched:
        patched.setattr(encoder, "emissions_graph", no_building)
        carried = lexner.load(out, runtime=runtime, extra_words=["新词语"])  # new words: only a table grows
        assert [carried.tag(t) for t in TEXTS] == expected
        fast, exact, _ = emissions_both_ways(carried, TEXTS)
        assert (fast - exact).abs().max().item() < (1e-4 if precision == "float32" else 0.05)
    # a graph from other weights (another model's file put there) is not used: one is built instead
    other = export_model(lexner.load(saved_model(tmp_path / "b", corpus, name="bilstm_crf")), tmp_path / "other",
                         onnx_graphs=[precision])
    (out / GRAPH_FILES[precision]).write_bytes((other / GRAPH_FILES[precision]).read_bytes())
    with caplog.at_level("INFO", logger="lexner.onnx_encoder"):
        rebuilt = lexner.load(out, runtime=runtime)
    assert "was made from other weights or by another lexner" in caplog.text
    assert [rebuilt.tag(t) for t in TEXTS] == expected
    assert export_model(lexner.load(out), out, force=True) == out.resolve()  # a model directory still, and the
    with monkeypatch.context() as patched:  # copy carries a graph of its own weights where its source carried one
        patched.setattr(encoder, "emissions_graph", no_building)
        assert [lexner.load(out, runtime=runtime).tag(t) for t in TEXTS] == expected
    caplog.clear()
    (out / GRAPH_FILES[precision]).write_bytes(b"not a graph")  # damaged: a warning, and one is built
    with caplog.at_level("WARNING", logger="lexner.onnx_encoder"):
        rebuilt = lexner.load(out, runtime=runtime)
    assert "cannot be used" in caplog.text and [rebuilt.tag(t) for t in TEXTS] == expected
    caplog.clear()
    (out / GRAPH_FILES[precision]).write_bytes(b'\x08\x07"\x08location*\x0b/etc/passwd')  # a path to another file
    with caplog.at_level("WARNING", logger="lexner.onnx_encoder"):
        assert encoder.carried_graph(lexner.load(out), precision) is None
    assert "refers to data in other files" in caplog.text


def test_the_bundled_model_carries_the_int8_graph_of_its_weights_and_of_todays_code(monkeypatch, caplog):
    import sys

    import onnx

    import lexner
    import lexner.onnx_encoder as encoder

    fresh = onnx.load_from_string(encoder.graph_bytes(lexner.load(), None, "int8"))  # what this lexner builds

    def structure(model):  # the nodes and the weights' names and shapes: a change of code GRAPH_FORMAT must follow
        return ([(n.op_type, list(n.input), list(n.output), sorted(a.name for a in n.attribute)) for n in model.graph.node],
                sorted((t.name, tuple(t.dims)) for t in model.graph.initializer), model.ir_version)

    with monkeypatch.context() as patched:
        patched.setitem(sys.modules, "onnx", None)  # neither needed nor imported for the default head
        with monkeypatch.context() as building:
            building.setattr(encoder, "emissions_graph", lambda *a, **k: pytest.fail("a graph was built"))
            tagger = lexner.load(runtime="onnx-int8")
        carried = encoder.carried_graph(tagger, "int8")
        assert encoder.session_of(tagger) is not None and carried is not None
        with caplog.at_level("WARNING", logger="lexner.onnx_encoder"):  # another head needs a graph built: torch
            assert tagger.tag("张三在北京工作。", labels="weibo") == lexner.load().tag("张三在北京工作。", labels="weibo")
        assert "head 'weibo' runs in torch" in caplog.text and "needs the onnx package" in caplog.text
    assert structure(onnx.load_from_string(carried)) == structure(fresh)
    assert fresh.ir_version == encoder.GRAPH_IR_VERSION


def test_a_copy_of_a_model_that_carries_a_graph_is_made_without_the_onnx_package_and_carries_none(
        tmp_path, monkeypatch, caplog):
    import sys

    import lexner
    from lexner.export import ExportError, export_model
    from lexner.runtimes import GRAPH_FILES

    monkeypatch.setitem(sys.modules, "onnx", None)
    with caplog.at_level("WARNING", logger="lexner.export"):
        out = export_model(lexner.load(), tmp_path / "copy", renames={"PER": "NR"})
    assert "carries no ONNX graph" in caplog.text and not (out / GRAPH_FILES["int8"]).exists()
    with pytest.raises(ExportError, match="onnx extra"):  # asked for: refused, before anything is written
        export_model(lexner.load(), tmp_path / "asked", onnx_graphs=["int8"])
    assert not (tmp_path / "asked").exists()
    monkeypatch.delitem(sys.modules, "onnx")
    int8 = export_model(lexner.load(), tmp_path / "int8", runtime="onnx-int8")
    monkeypatch.setitem(sys.modules, "onnx", None)
    again = export_model(lexner.load(int8, runtime="torch"), tmp_path / "again")  # its runtime kept, not asked for
    assert "onnx-int8" in (again / "config.json").read_text(encoding="utf-8") and not (again / GRAPH_FILES["int8"]).exists()


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
    assert session_of(tagger) is None and "not installed" in caplog.text
    with pytest.raises(ImportError, match="lexner\\[onnx\\]"):
        lexner.load(directory, onnx=True)  # asked for by the caller: an error
    tagger = build_tagger("lattice_lstm", corpus, {"char_dim": 8, "bigram_dim": 8, "word_dim": 8, "hidden": 16},
                          lexicon=Lexicon(["北京"]))
    with pytest.raises(ExportError, match="has none"):
        export_model(tagger, tmp_path / "out", runtime="onnx")
    with pytest.raises(ExportError, match="an ONNX graph runs a BiLSTM encoder"):
        export_model(tagger, tmp_path / "out", onnx_graphs=["int8"])
    with pytest.raises(ExportError, match="precision must be one of"):
        export_model(tagger, tmp_path / "out", onnx_graphs=["int4"])
    assert not (tmp_path / "out").exists()
    with pytest.raises(ExportError, match="runtime must be one of"):
        export_model(tagger, tmp_path / "out", runtime="gpu")


def test_onnx_and_runtime_options_are_refused_together(capsys):
    from lexner.cli import main

    with pytest.raises(SystemExit):
        main(["tag", "--onnx", "--runtime", "torch-bf16", "张三"])
    assert "not allowed with argument" in capsys.readouterr().err


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


def test_words_added_to_a_frequency_weighted_model_keep_its_runtime_and_are_matched_only_once_it_has_rows(
        tmp_path, corpus):
    """add_words grows the word table, its per-word counts and the session before the lexicon matches the
    words: a text tagged meanwhile in another thread met ids the tables lacked (IndexError, or ONNX Runtime's
    Gather error), and the counts grown after the session was made dropped it (torch ran, runtime said onnx)."""
    import lexner

    tagger = build_tagger("softlexicon", corpus, {**SMALL, "word_weights": "frequency"}, lexicon=Lexicon(["北京"]))
    tagger.save(tmp_path / "freq")
    tagger = lexner.load(tmp_path / "freq", runtime="onnx")
    lexicon, add = tagger.featurizer.lexicon, tagger.featurizer.lexicon.add
    seen = []

    def checked(words, vectors=None):  # the moment the words become matchable
        rows = len(lexicon) + len(words) + 1  # row 0: padding
        seen.append((tagger.embed.words.weight.shape[0] >= rows, tagger.word_counts.shape[0] >= rows,
                     session_of(tagger) is not None))
        return add(words, vectors)

    lexicon.add = checked
    assert tagger.add_words(["腾讯", "深圳"]) == 2
    assert seen == [(True, True, True)] and session_of(tagger) is not None and tagger.runtime == "onnx"
    fast, exact, batch = emissions_both_ways(tagger, ["他在深圳腾讯上班"])
    assert batch.word_ids.max() >= len(tagger.featurizer.word_vocab) - 2 and (fast - exact).abs().max() < 1e-4


def test_words_added_to_a_model_loaded_with_an_onnx_runtime_keep_it_in_that_runtime(tmp_path, corpus):
    import lexner

    for members in ([saved_model(tmp_path, corpus)], [saved_model(tmp_path / "a", corpus)] * 2):
        tagger = lexner.load(members[0] if len(members) == 1 else members, runtime="onnx")
        tagger.add_words(["腾讯", "深圳"])  # an ensemble's members too (a helper's audit: they fell back to torch)
        for model in getattr(tagger, "members", [tagger]):
            assert session_of(model) is not None and model.runtime == "onnx"
            fast, exact, batch = emissions_both_ways(model, ["他在深圳腾讯上班"])
            assert batch.word_ids.max() >= len(model.featurizer.word_vocab) - 2  # the new words are matched
            assert (fast - exact).abs().max().item() < 1e-4


def test_a_session_is_dropped_when_the_weights_change_and_never_pickled(corpus):
    import copy
    import pickle

    tagger = tagger_of("softlexicon", corpus)
    use_onnx(tagger)
    with torch.no_grad():
        tagger.lstm.weight_hh_l0.mul_(0.5)  # training went on (an in-place optimiser step)
    batch = tagger.featurizer.collate([tagger.featurizer.encode_one(t) for t in TEXTS])
    with torch.inference_mode():
        after = tagger.emissions(batch)
    assert session_of(tagger) is None  # stale: torch runs the new weights
    with torch.inference_mode():
        assert torch.equal(after, tagger.emissions(batch))
    use_onnx(tagger)
    assert tagger.add_words(["腾讯", "深圳"]) == 2  # the word table is replaced by a larger one
    assert session_of(tagger) is None  # its new rows are not in the graph: torch, not an index error
    batch = tagger.featurizer.collate([tagger.featurizer.encode_one("他在深圳腾讯上班")])
    assert batch.word_ids.max() >= len(tagger.featurizer.word_vocab) - 2  # the new words are matched
    with torch.inference_mode():
        assert tagger.emissions(batch).shape[:2] == batch.chars.shape
    use_onnx(tagger)
    tagger.runtime = "onnx"  # as lexner.load(runtime="onnx") sets it
    assert session_of(copy.deepcopy(tagger)) is None and session_of(tagger) is not None
    assert session_of(pickle.loads(pickle.dumps(tagger))) is None
    assert copy.deepcopy(tagger).runtime == pickle.loads(pickle.dumps(tagger)).runtime == "torch"  # as they run
    assert tagger.runtime == "onnx"
    with torch.inference_mode():  # an empty batch: torch's empty output, not an ONNX Runtime abort
        empty = tagger.featurizer.collate([tagger.featurizer.encode_one("北京")])
        empty.chars = empty.chars[:0]
        assert onnx_emissions(tagger, empty) is None
    use_onnx(tagger)  # weights swapped in through .data (the trainer's averaged weights): no counter moves
    tagger.lstm.weight_hh_l0.data = tagger.lstm.weight_hh_l0.data * 0.5
    assert session_of(tagger) is None


def test_training_mode_drops_the_session_which_a_fused_step_would_not(corpus):
    from lexner.onnx_encoder import use_runtime

    tagger = tagger_of("bilstm_crf", corpus)
    use_runtime(tagger, "onnx")
    weight = tagger.lstm.weight_hh_l0
    weight.grad = torch.ones_like(weight)
    torch.optim.Adam([weight], lr=0.5, fused=True).step()  # torch 2.13: the version counter does not move
    tagger.train()  # what every training loop does first
    assert session_of(tagger) is None and tagger.runtime == "torch"
    tagger.eval()
    assert session_of(tagger) is None  # eval mode alone brings back nothing


def test_switching_runtimes_leaves_only_the_last_ones_sessions(corpus):
    from lexner.onnx_encoder import use_runtime

    tagger = tagger_of("softlexicon", corpus)
    use_runtime(tagger, "onnx-int8")
    assert session_of(tagger) is not None
    use_runtime(tagger, "torch-bf16")
    assert session_of(tagger) is None and session_of(tagger.lstm) is not None
    use_runtime(tagger, "onnx")
    assert session_of(tagger) is not None and session_of(tagger.lstm) is None
    use_runtime(tagger, "torch")
    assert session_of(tagger) is None and session_of(tagger.lstm) is None and tagger.runtime == "torch"


def test_another_head_gets_a_session_of_its_own_when_first_asked_for_even_one_added_later(corpus):
    tagger = tagger_of("bilstm_crf", corpus)
    use_onnx(tagger)
    tagger.add_head("extra", ["PER", "GPE"])  # after the first session was built
    session = session_of(tagger)
    assert session is not None and list(session.sessions) == [session.default]
    for labels in (None, "extra"):
        fast, slow, _ = emissions_both_ways(tagger, TEXTS, labels)
        assert fast.shape[-1] == len(tagger.head(labels)[1].transitions)
        torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    assert list(session.sessions) == [session.default, "extra"]
    with torch.no_grad():
        tagger.heads["extra"].output.weight.mul_(2.0)  # a weight of the new head changed in place
    assert session_of(tagger) is None  # its snapshot holds the new head's weights too


def test_workers_load_the_model_with_the_parents_runtime(tmp_path, corpus):
    import logging

    import lexner
    from lexner import tagfile
    from lexner.api import reload_recipe

    # a worker quiets its dictionary warnings (the parent's): here in this process, so only for this test (left
    # at ERROR, later tests' caplog never saw a dictionary warning)
    quieted = logging.getLogger("lexner.dictionary")
    level = quieted.level
    directory = saved_model(tmp_path, corpus)
    try:
        for onnx, runtime in ((False, "torch"), (True, "onnx"), ("int8", "onnx-int8")):
            parent = lexner.load(directory, onnx=onnx)
            assert parent.runtime == runtime
            tagfile._worker_init(reload_recipe(parent))
            assert tagfile._WORKER_TAGGER.runtime == runtime
    finally:
        quieted.setLevel(level)


def test_a_runtime_in_the_config_of_a_model_without_a_bilstm_names_the_file(tmp_path, corpus):
    import lexner
    from lexner.fileio import ModelFormatError

    tagger = build_tagger("lattice_lstm", corpus, {"char_dim": 8, "bigram_dim": 8, "word_dim": 8, "hidden": 16},
                          lexicon=Lexicon(["北京"]))
    tagger.save(tmp_path / "m", extra={"runtime": "onnx"})
    with pytest.raises(ModelFormatError, match=r"config\.json: runtime 'onnx' runs a BiLSTM"):
        lexner.load(tmp_path / "m")
    assert lexner.load(tmp_path / "m", onnx=False).runtime == "torch"


def test_an_export_whose_graph_fails_writes_nothing(tmp_path, corpus, monkeypatch):
    """The graph is written with the model, before the swap: a failure leaves the previous export as it was."""
    import lexner
    import lexner.onnx_encoder as encoder
    from lexner.export import export_model

    source = lexner.load(saved_model(tmp_path, corpus))
    out = export_model(source, tmp_path / "out")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def failing(*args, **kwargs):
        raise RuntimeError("no graph today")

    monkeypatch.setattr(encoder, "graph_bytes", failing)
    with pytest.raises(RuntimeError, match="no graph today"):
        export_model(source, out, force=True, onnx_graphs=["int8"])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # nothing left aside
    with pytest.raises(RuntimeError, match="no graph today"):
        export_model(source, tmp_path / "new", onnx_graphs=["int8"])
    assert not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()  # an empty folder given: it stays empty
    with pytest.raises(RuntimeError, match="no graph today"):
        export_model(source, tmp_path / "empty", onnx_graphs=["int8"])
    assert list((tmp_path / "empty").iterdir()) == []


def test_a_teacher_runs_in_torch_whatever_runtime_its_directory_asks_for(tmp_path, corpus):
    import argparse

    import lexner
    from lexner.cli import _teachers_and_unlabelled
    from lexner.export import export_model

    out = export_model(lexner.load(saved_model(tmp_path, corpus)), tmp_path / "int8", runtime="onnx-int8")
    assert session_of(lexner.load(out)) is not None  # what a user's load gives
    args = argparse.Namespace(unlabelled=[], unlabelled_dataset=[], device="cpu", data_root=None)
    (teacher,), _ = _teachers_and_unlabelled(args, [(None, out)])
    assert session_of(teacher) is None and teacher.metadata["runtime"] == "onnx-int8"


def test_a_damaged_carried_graph_prints_nothing_among_the_records(tmp_path, capsys, caplog):
    """ONNX Runtime print()s an "EP Error ... Falling back" banner when a graph fails to load: on standard
    output it broke lexner tag's JSON Lines (helper fuzzing); now on standard error, with lexner's warning."""
    import shutil

    import lexner
    from lexner.api import DEFAULT_MODEL

    copy = tmp_path / "m"
    shutil.copytree(DEFAULT_MODEL, copy)
    graph = bytearray((copy / "encoder-int8.onnx").read_bytes())
    graph[116] = 0xC7  # one damaged byte: a string ONNX Runtime cannot decode
    (copy / "encoder-int8.onnx").write_bytes(bytes(graph))
    with caplog.at_level("WARNING", logger="lexner.onnx_encoder"):
        ner = lexner.load(copy, runtime="onnx-int8")
    assert "cannot be used" in caplog.text and [e.text for e in ner.tag("张三在北京")] == ["张三", "北京"]
    assert capsys.readouterr().out == ""
