import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import lexner
from lexner.api import build_tagger, default_embeddings
from lexner.models import ModelFormatError

SMALL = {"char_dim": 4, "bigram_dim": 4, "hidden": 8}


def test_import_lexner_does_not_import_torch():
    code = "import sys, lexner; assert 'torch' not in sys.modules; lexner.Entity; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_names_imported_when_first_used_are_listed_by_dir_without_importing_them():
    """Tab completion and inspect.getmembers saw none of them: 'load' in dir(lexner) was False."""
    code = ("import sys, lexner, lexner.models; assert {'load', 'Entity', 'render_html'} <= set(dir(lexner)); "
            "assert {'SoftLexicon', 'FLAT', 'MODELS'} <= set(dir(lexner.models)); "
            "assert 'torch' not in sys.modules")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_build_tagger_uses_pretrained_vectors(corpus, tmp_path):
    (tmp_path / "c.vec").write_text("2 4\n张 1 2 3 4\n京 5 6 7 8\n", encoding="utf-8")
    (tmp_path / "b.vec").write_text("2 4\n北京 1 1 1 1\n外外 2 2 2 2\n", encoding="utf-8")
    tagger = build_tagger("bilstm_crf", corpus, SMALL, {"chars": tmp_path / "c.vec", "bigrams": tmp_path / "b.vec"})
    chars, bigrams = tagger.featurizer.chars, tagger.featurizer.bigrams
    weight = tagger.embed.chars.weight.detach().numpy()
    assert np.array_equal(weight[chars.index["京"]], [5, 6, 7, 8])
    assert np.array_equal(weight[0], [0, 0, 0, 0])
    assert "外外" in bigrams  # a pretrained bigram absent from train joins the vocabulary
    assert np.array_equal(tagger.embed.bigrams.weight.detach().numpy()[bigrams.index["北京"]], [1, 1, 1, 1])


def test_default_embeddings_are_none_when_missing(tmp_path):
    assert default_embeddings(tmp_path) == {"chars": None, "bigrams": None, "words": None}


def test_unknown_model_name(corpus):
    with pytest.raises(ModelFormatError, match="unknown model 'nope'"):
        build_tagger("nope", corpus)


@pytest.fixture
def saved(corpus, tmp_path):
    build_tagger("bilstm_crf", corpus, SMALL).save(tmp_path / "m")
    return tmp_path / "m"


def edit_config(path, **changes):
    meta = json.loads((path / "config.json").read_text(encoding="utf-8"))
    meta.update(changes)
    (path / "config.json").write_text(json.dumps(meta), encoding="utf-8")


def test_load_rejects_a_newer_format(saved):
    edit_config(saved, format_version=99)
    with pytest.raises(ModelFormatError, match="format_version 99"):
        lexner.load(saved)


@pytest.mark.parametrize("version", [None, "3", True, 0, -7])
def test_load_rejects_a_missing_or_damaged_format_version_without_saying_upgrade(saved, version):
    edit_config(saved, format_version=version)
    with pytest.raises(ModelFormatError, match="'format_version' missing or not a positive integer") as info:
        lexner.load(saved)
    assert "upgrade" not in str(info.value)


def test_load_rejects_a_model_card_that_is_not_an_object_and_a_missing_vocabulary(saved):
    edit_config(saved, card=[1])
    with pytest.raises(ModelFormatError, match="'card' .* must be a JSON object, got list"):
        lexner.load(saved)
    edit_config(saved, card={"train_data": "toy"})
    assert lexner.load(saved).metadata["card"] == {"train_data": "toy"}
    (saved / "chars.json").unlink()
    with pytest.raises(ModelFormatError, match="chars.json: no such file"):
        lexner.load(saved)


def test_load_rejects_weights_that_do_not_match_the_config(saved):
    meta = json.loads((saved / "config.json").read_text(encoding="utf-8"))
    meta["config"]["hidden"] = 16
    edit_config(saved, config=meta["config"])
    with pytest.raises(ModelFormatError, match="do not match"):
        lexner.load(saved)


def test_load_rejects_missing_or_truncated_files(saved):
    data = (saved / "model.safetensors").read_bytes()
    (saved / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFormatError, match="safetensors"):
        lexner.load(saved)
    (saved / "model.safetensors").unlink()
    with pytest.raises(ModelFormatError, match="missing model.safetensors"):
        lexner.load(saved)
    with pytest.raises(FileNotFoundError):
        lexner.load(saved / "nothing")


def test_load_never_unpickles(saved, tmp_path):
    """A pickle in place of the weights is rejected, and its payload never runs."""
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"x": Payload()}, saved / "model.safetensors")
    with pytest.raises(ModelFormatError):
        lexner.load(saved)
    assert not marker.exists()


def test_a_model_saved_in_a_folder_whose_name_is_not_utf8_loads(corpus, tmp_path):
    """A folder name whose bytes are not UTF-8 (a legacy GBK name on Linux) reaches Python as lone surrogates,
    which safetensors refuses ("Path ... is not valid UTF-8"): the model saved there could not be loaded, and
    ``lexner train`` failed after its first epoch, reloading the best model."""
    import os

    folder = tmp_path / os.fsdecode(b"\xc4\xa3\xd0\xcd")  # 模型 in GBK
    try:
        folder.mkdir()
    except (OSError, UnicodeError):
        pytest.skip("this file system takes only UTF-8 names")
    tagger = build_tagger("bilstm_crf", corpus, SMALL)
    tagger.save(folder / "m")
    assert lexner.load(folder / "m").tag(corpus[0].text) == tagger.tag(corpus[0].text)


def test_save_writes_a_path_starting_with_a_tilde_where_load_reads_it(corpus, tmp_path, monkeypatch):
    """``lexner.load("~/models/m")`` reads the home folder's; ``save("~/models/m")`` wrote a folder named ``~``
    in the working directory, so the model saved was not the one loaded back."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("USERPROFILE", str(tmp_path / "home"))  # Windows
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    build_tagger("bilstm_crf", corpus, SMALL).save("~/models/m")
    assert (tmp_path / "home/models/m/config.json").is_file() and not (tmp_path / "cwd/~").exists()
    assert lexner.load("~/models/m").source == tmp_path / "home/models/m"


def test_load_on_device_and_eval_mode(saved):
    tagger = lexner.load(saved, device="cpu")
    assert not tagger.training and tagger.device.type == "cpu"


def test_load_on_auto_picks_cuda_only_where_torch_sees_it(saved):
    assert lexner.load(saved, device="auto").device.type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("device, message", [
    ("bogus", "device bogus: not a device (auto, cpu, cuda or cuda:N)"),
    ("meta", "device meta: lexner runs on cpu or cuda"),
    pytest.param("cuda", "device cuda was asked for, but torch sees no CUDA device",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without CUDA")),
])
def test_load_on_a_device_it_cannot_use_is_a_clear_error(saved, device, message):
    with pytest.raises(ValueError) as err:
        lexner.load(saved, device=device)
    assert str(err.value) == message


def test_bigram_min_count_drops_rare_train_bigrams_even_when_pretrained(corpus, tmp_path):
    (tmp_path / "b.vec").write_text("2 4\n外外 2 2 2 2\n北京 1 1 1 1\n", encoding="utf-8")
    vectors = {"bigrams": tmp_path / "b.vec"}
    full = build_tagger("bilstm_crf", corpus, SMALL, vectors).featurizer.bigrams
    pruned = build_tagger("bilstm_crf", corpus, SMALL, vectors, bigram_min_count=3).featurizer.bigrams
    from lexner.features import Featurizer

    counts = Featurizer.count_tokens(corpus)[1]
    rare = [b for b, c in counts.items() if c < 3]
    assert rare and all(b in full for b in rare) and not any(b in pruned for b in rare if b != "北京")
    assert all(b in pruned for b, c in counts.items() if c >= 3)
    assert "外外" in pruned  # among the first EXTRA_PRETRAINED_BIGRAMS of the vector file


@pytest.mark.parametrize("first, joined", [(0, []), (1, ["外外"]), (2, ["外外", "内内"]), (None, ["外外", "内内", "上上"])])
def test_pretrained_bigrams_sets_how_many_of_the_file_join_beside_train(corpus, tmp_path, first, joined):
    rows = ["外外 2 2 2 2", "内内 3 3 3 3", "北京 1 1 1 1", "上上 4 4 4 4"]  # 北京 occurs in train, the others not
    (tmp_path / "b.vec").write_text(f"{len(rows)} 4\n" + "\n".join(rows) + "\n", encoding="utf-8")
    tagger = build_tagger("bilstm_crf", corpus, SMALL, {"bigrams": tmp_path / "b.vec"}, pretrained_bigrams=first)
    bigrams = tagger.featurizer.bigrams
    assert [b for b in ("外外", "内内", "上上") if b in bigrams] == joined and "北京" in bigrams
    for b in joined:  # with their pretrained vectors
        row = tagger.embed.bigrams.weight.detach().numpy()[bigrams.index[b]]
        assert np.array_equal(row, [float(next(r for r in rows if r.startswith(b)).split()[1])] * 4)


@pytest.mark.parametrize("name", ["softlexicon", "lattice_lstm", "flat"])
def test_a_tagger_that_reads_lexicon_words_refuses_a_featurizer_without_a_lexicon(name, corpus):
    from lexner.features import Featurizer
    from lexner.models import model_class

    cls = model_class(name)
    with pytest.raises(ValueError, match=f"{name} needs a featurizer with a lexicon"):
        cls(cls.Config(), Featurizer.build(corpus))


def test_a_plain_word_list_keeps_only_words_with_a_vector_or_seen_in_train(corpus, tmp_path):
    (tmp_path / "w.vec").write_text("2 4\n北京 1 1 1 1\n天津 2 2 2 2\n", encoding="utf-8")
    (tmp_path / "words.txt").write_text("北京\n天津\n上海\n重庆\n", encoding="utf-8")  # 上海 is in corpus, 重庆 not
    config = {**SMALL, "word_dim": 4}
    tagger = build_tagger("softlexicon", corpus, config, {"words": tmp_path / "w.vec"}, lexicon=tmp_path / "words.txt")
    lexicon = tagger.featurizer.lexicon
    assert sorted(lexicon.words) == sorted(["北京", "天津", "上海"])
    weight = tagger.embed.words.weight.detach().numpy()
    assert np.array_equal(weight[tagger.featurizer.word_vocab.index("天津")], [2, 2, 2, 2])
    with_vectors = build_tagger("softlexicon", corpus, config, lexicon=tmp_path / "w.vec")  # its own vectors: all kept
    assert with_vectors.featurizer.lexicon.words == ["北京", "天津"]


def test_the_piece_length_is_saved_and_loaded_and_checked(saved, tmp_path):
    assert lexner.load(saved).max_length == 500  # built in memory: the class default, written into config.json
    edit_config(saved, piece_length=120)
    tagger = lexner.load(saved)
    assert (tagger.max_length, tagger.overlap) == (120, 30)  # over-long sentences' windows overlap by a quarter
    tagger.save(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text(encoding="utf-8"))["piece_length"] == 120
    for bad in ("120", 0, -5, True, 1.5):
        edit_config(saved, piece_length=bad)
        with pytest.raises(ModelFormatError, match="piece_length"):
            lexner.load(saved)


def test_a_model_saved_without_a_piece_length_keeps_the_old_default(saved):
    meta = json.loads((saved / "config.json").read_text(encoding="utf-8"))
    del meta["piece_length"]
    (saved / "config.json").write_text(json.dumps(meta), encoding="utf-8")
    tagger = lexner.load(saved)
    assert (tagger.max_length, tagger.overlap) == (500, 50)


def test_a_thread_tagging_while_the_piece_length_changes_never_reads_an_overlap_too_long_for_it(saved):
    """The two attributes change one after the other: every pair in between must still make windows that
    advance (a length of 9 with the old overlap of 50 would not)."""
    tagger = lexner.load(saved)
    pairs = []

    class Watched(type(tagger)):
        def __setattr__(self, name, value):
            super().__setattr__(name, value)
            if name in ("max_length", "overlap"):
                pairs.append((self.max_length, self.overlap))

    tagger.__class__ = Watched
    for length in (9, 1000, 40, 3, 500):
        tagger.set_piece_length(length)
    assert pairs[-1] == (500, 50) and len(pairs) == 10
    assert all(overlap <= length // 4 for length, overlap in pairs), pairs


def test_set_piece_length_sets_the_overlap_and_refuses_nonsense(saved):
    tagger = lexner.load(saved)
    tagger.set_piece_length(9)
    assert (tagger.max_length, tagger.overlap) == (9, 2)
    tagger.set_piece_length(1000)
    assert (tagger.max_length, tagger.overlap) == (1000, 50)  # never more than the default overlap
    for bad in (0, -1, True, 2.5, "9"):
        with pytest.raises(ValueError, match="piece length"):
            tagger.set_piece_length(bad)


def test_pretrained_vectors_of_another_width_are_refused_naming_the_file_and_the_setting(corpus, tmp_path):
    from lexner.api import build_tagger

    (tmp_path / "chars3.vec").write_text("1 3\n张 0.1 0.2 0.3\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"chars3\.vec: its char vectors have 3 dimensions, the model's char_dim is "
                                         r"16: set char_dim=3 \(lexner train --set char_dim=3\)"):
        build_tagger("bilstm_crf", corpus, {"char_dim": 16, "bigram_dim": 0, "hidden": 8},
                     embeddings={"chars": tmp_path / "chars3.vec"})
    tagger = build_tagger("bilstm_crf", corpus, {"char_dim": 3, "bigram_dim": 0, "hidden": 8},
                          embeddings={"chars": tmp_path / "chars3.vec"})
    assert tagger.embed.chars.weight.shape[1] == 3


def test_a_lexicon_with_no_word_to_match_is_refused_naming_it(corpus, tmp_path):
    from lexner.api import build_tagger

    small = {"char_dim": 4, "bigram_dim": 4, "word_dim": 4, "hidden": 8}
    (tmp_path / "chars.txt").write_text("张 B-PER\n三 E-PER\n", encoding="utf-8")  # a data file, not a word list
    for model in ("softlexicon", "lattice_lstm"):
        with pytest.raises(ValueError, match=r"chars\.txt: the lexicon has no word to match .* would learn nothing"):
            build_tagger(model, corpus, small, lexicon=tmp_path / "chars.txt")
    (tmp_path / "w.vec").write_text("1 4\n北京 0.1 0.2 0.3 0.4\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"chars\.txt: the lexicon has no word"):  # the lexicon given, not the vectors
        build_tagger("softlexicon", corpus, small, lexicon=tmp_path / "chars.txt",
                     embeddings={"words": tmp_path / "w.vec"})
    with pytest.raises(ValueError, match=r"needs a lexicon: .*--lexicon FILE or --word-vectors FILE"):
        build_tagger("softlexicon", corpus, small)


@pytest.mark.parametrize("path", ["", "  "])
def test_an_empty_model_path_is_named_as_such(path):
    with pytest.raises(ValueError, match="an empty model path"):
        lexner.load(path)


def test_load_expands_a_home_folder(tmp_path, monkeypatch):
    """``lexner.load("~/models/m")``, as bert_path and piece files are read (was: no such model directory)."""
    from lexner.api import DEFAULT_MODEL

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "m").symlink_to(DEFAULT_MODEL, target_is_directory=True)
    assert [e.text for e in lexner.load("~/m").tag("张三在北京。")] == ["张三", "北京"]
    (tmp_path / "~old_model").symlink_to(DEFAULT_MODEL, target_is_directory=True)  # no such user: a plain name
    monkeypatch.chdir(tmp_path)
    assert [e.text for e in lexner.load("~old_model").tag("张三在北京。")] == ["张三", "北京"]


def test_a_reload_recipe_carries_added_words_names_the_bundled_model_by_none_and_refuses_trained_models(tmp_path):
    """Another process (tag --workers, spaCy, Ray) must tag as this one: words added with add_words were dropped,
    the bundled model was sent as this machine's path (another node's install has it elsewhere), and a model
    trained in memory was sent as the directory it came from (diff review)."""
    import lexner
    from lexner.api import KEEP, reload_recipe, reloaded
    from lexner.train import TrainConfig, Trainer

    ner = lexner.load(extra_words=["新冠肺炎"])
    ner.add_words(["数字人民币"])
    directory, words, dictionary, runtime, _ = reload_recipe(ner, extra_words=["新冠肺炎", "元宇宙"])
    assert directory is None and words == ["新冠肺炎", "数字人民币", "元宇宙"] and runtime == "torch"
    assert reload_recipe(ner, runtime=KEEP)[3] is None  # each process resolves the directory's runtime itself
    assert len(reloaded(reload_recipe(ner)).featurizer.lexicon) == len(ner.featurizer.lexicon)
    Trainer(ner, TrainConfig(epochs=1), tmp_path / "run")
    with pytest.raises(ValueError, match="not loaded from a directory"):
        reload_recipe(ner)
