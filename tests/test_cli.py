import json
import subprocess
import sys
from pathlib import Path

import pytest

from lexner import load
from lexner.cli import main
from lexner.data import read_file, write_conll, write_jsonl
from lexner.fileio import ModelFormatError
from lexner.train import epoch_records


@pytest.fixture
def trained(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("LEXNER_DATA", str(tmp_path / "no-data"))
    write_conll(corpus[:15], tmp_path / "train.bio", "BIO")
    write_conll(corpus[15:], tmp_path / "dev.bmes", "BMES")
    write_jsonl(corpus[15:], tmp_path / "test.jsonl")
    code = main(["train", "--train", str(tmp_path / "train.bio"), "--dev", str(tmp_path / "dev.bmes"),
                 "--test", str(tmp_path / "test.jsonl"), "--out", str(tmp_path / "run"), "--epochs", "2",
                 "--batch-size", "4", "--set", "hidden=16", "--set", "char_dim=8", "--set", "bigram_dim=4",
                 "--no-progress", "--device", "cpu"])
    assert code == 0
    return tmp_path


def test_train_evaluate_tag(trained, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(trained / "run" / "model"), "--file", str(trained / "test.jsonl")]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert set(scores["per_type"]) <= {"PER", "LOC"} and "micro" in scores and "macro" in scores
    assert "seen" not in scores
    assert main(["evaluate", str(trained / "run" / "model"), "--file", str(trained / "test.jsonl"),
                 "--seen-from", str(trained / "train.bio")]) == 0  # another format than the scored file
    split = json.loads(capsys.readouterr().out)
    assert split["micro"] == scores["micro"]
    assert split["seen"]["support"] + split["unseen"]["support"] == scores["micro"]["support"]
    assert main(["evaluate", str(trained / "run" / "model"), "--file", str(trained / "test.jsonl"),
                 "--seen-from", str(trained / "missing.bio")]) != 0
    assert "missing.bio" in capsys.readouterr().err
    for other in (["--dataset", "weibo"], ["--split", "dev"]):  # refused, not silently left unused
        assert main(["evaluate", str(trained / "run" / "model"), "--file", str(trained / "test.jsonl"), *other]) == 2
        assert "give --file or --dataset [--split], not both" in capsys.readouterr().err

    model = trained / "run" / "model"
    import lexner.api
    from lexner.evaluate import evaluate

    loaded = []
    real_load = lexner.api.load
    lexner.api.load = lambda path, **kw: loaded.append(path) or real_load(path, **kw)
    try:
        assert main(["evaluate", str(model), str(model), "--file", str(trained / "test.jsonl")]) == 0  # an ensemble
    finally:
        lexner.api.load = real_load
    assert loaded[0] == [model, model]  # both directories reached load() together: one ensemble

    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(
        {**evaluate(load([model, model]), read_file(trained / "test.jsonl")), "runtime": ["torch", "torch"]}))

    assert main(["tag", str(trained / "run" / "model"), "张三在北京", "李四"]) == 0
    lines = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
    assert [l["text"] for l in lines] == ["张三在北京", "李四"]

    (trained / "in.txt").write_text("张三在北京\n\n李四去了上海\n", encoding="utf-8")
    assert main(["tag", str(trained / "run" / "model"), "--input", str(trained / "in.txt"),
                 "--output", str(trained / "out.jsonl"), "--no-progress"]) == 0
    out = [json.loads(l) for l in open(trained / "out.jsonl", encoding="utf-8")]
    assert [o["text"] for o in out] == ["张三在北京", "", "李四去了上海"]
    assert out[1]["entities"] == []
    for o in out:
        for e in o["entities"]:
            assert o["text"][e["start"]:e["end"]] == e["text"]


def test_resume_flag_continues(trained, capsys):
    code = main(["train", "--train", str(trained / "train.bio"), "--dev", str(trained / "dev.bmes"),
                 "--out", str(trained / "run"), "--epochs", "3", "--batch-size", "4", "--set", "hidden=16",
                 "--set", "char_dim=8", "--set", "bigram_dim=4", "--no-progress", "--resume", "--device", "cpu"])
    assert code == 0
    epochs = [r["epoch"] for r in epoch_records(trained / "run" / "log.jsonl")]
    assert epochs == [1, 2, 3]


def test_train_matches_the_union_of_several_lexicons(trained):
    (trained / "a.txt").write_text("北京\n上海\n", encoding="utf-8")
    (trained / "b.txt").write_text("上海 3 ns\n广州市\n火星\n", encoding="utf-8")  # 火星: in no training text
    code = main(["train", "--train", str(trained / "train.bio"), "--dev", str(trained / "dev.bmes"),
                 "--model", "softlexicon", "--lexicon", str(trained / "a.txt"), "--lexicon", str(trained / "b.txt"),
                 "--out", str(trained / "lex"), "--epochs", "1", "--batch-size", "4", "--set", "hidden=16",
                 "--set", "char_dim=8", "--set", "bigram_dim=4", "--set", "word_dim=4", "--no-progress"])
    assert code == 0
    model = load(trained / "lex" / "model")
    assert sorted(model.featurizer.lexicon.words) == sorted(["北京", "上海", "广州市"])
    card = json.loads((trained / "lex" / "model" / "config.json").read_text(encoding="utf-8"))
    assert "a.txt + " in json.dumps(card, ensure_ascii=False)


def test_malformed_file_error_names_file_and_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LEXNER_DATA", str(tmp_path))
    bad = tmp_path / "bad.txt"
    bad.write_text("张 B-PER\n三 I-PER\n在\n", encoding="utf-8")
    assert main(["train", "--train", str(bad), "--dev", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert f"{bad}:3" in capsys.readouterr().err


def test_missing_dataset_points_to_lexner_data(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LEXNER_DATA", str(tmp_path))
    assert main(["train", "--dataset", "weibo", "--out", str(tmp_path / "r")]) == 2
    assert "LEXNER_DATA" in capsys.readouterr().err


def test_console_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "lexner", "--version"], capture_output=True, encoding="utf-8")
    assert result.returncode == 0 and result.stdout.startswith("lexner ")


@pytest.mark.parametrize("fmt", ["jsonl", "conll", "text"])
def test_tag_file_in_each_format_streams_every_line(trained, fmt):
    from lexner.api import load
    from lexner.output import render

    lines = ["张三在北京", "", "李四去了上海", "  "] * 50
    (trained / "in.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["tag", str(trained / "run" / "model"), "--input", str(trained / "in.txt"), "--format", fmt,
                 "--output", str(trained / "out"), "--batch-size", "2", "--no-progress"]) == 0
    model = load(trained / "run" / "model")
    expected = "".join(render(t, es, fmt) for t, es in zip(lines, model.tag_batch(lines)))
    assert (trained / "out").read_text(encoding="utf-8") == expected


def test_lexicon_add_needs_a_lattice_model(trained, capsys):
    (trained / "words.txt").write_text("北京大学 12\n", encoding="utf-8")
    assert main(["tag", str(trained / "run" / "model"), "北京", "--lexicon-add", str(trained / "words.txt")]) == 2
    assert "does not use a lexicon" in capsys.readouterr().err


def test_tag_file_with_worker_processes_keeps_the_order(trained):
    lines = [f"张三在北京{i}" if i % 3 else f"李四{i}去了上海" for i in range(300)]
    (trained / "in.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    common = ["tag", str(trained / "run" / "model"), "--input", str(trained / "in.txt"), "--batch-size", "2",
              "--no-progress"]
    assert main([*common, "--output", str(trained / "one.jsonl")]) == 0
    assert main([*common, "--output", str(trained / "two.jsonl"), "--workers", "2"]) == 0
    one = (trained / "one.jsonl").read_text(encoding="utf-8")
    assert one == (trained / "two.jsonl").read_text(encoding="utf-8")
    assert [json.loads(line)["text"] for line in one.splitlines()] == lines


def test_export_half_is_smaller_and_tags_alike(trained, capsys):
    import lexner

    source = trained / "run" / "model"
    assert main(["export", str(source), str(trained / "half"), "--half"]) == 0
    assert main(["export", str(source), str(trained / "copy")]) == 0
    size = {p: (trained / p / "model.safetensors").stat().st_size for p in ("half", "copy")}
    assert size["half"] < 0.6 * size["copy"]
    texts = ["张三在北京工作", "李四去了上海", "王小明到广州市"]
    full, half, copy = (lexner.load(d) for d in (source, trained / "half", trained / "copy"))
    assert copy.tag_batch(texts) == full.tag_batch(texts)
    assert half.tag_batch(texts) == full.tag_batch(texts)
    from lexner.export import portable_card

    assert half.metadata["card"] == portable_card(full.metadata["card"], {})  # machine paths dropped


def test_export_keeps_the_stored_precision_unless_told(trained):
    from safetensors import safe_open

    def dtypes(name):
        with safe_open(str(trained / name / "model.safetensors"), "pt") as f:
            return {str(f.get_slice(k).get_dtype()) for k in f.keys()}

    source = trained / "run" / "model"
    assert main(["export", str(source), str(trained / "half"), "--half"]) == 0
    assert main(["export", str(trained / "half"), str(trained / "again")]) == 0  # a float16 model stays float16
    assert main(["export", str(trained / "half"), str(trained / "full"), "--float32"]) == 0
    assert main(["export", str(source), str(trained / "copy")]) == 0
    assert "F16" in dtypes("again") and "F32" not in dtypes("again")
    assert "F32" in dtypes("full") and "F16" not in dtypes("full")
    assert "F32" in dtypes("copy") and "F16" not in dtypes("copy")
    with pytest.raises(SystemExit):
        main(["export", str(source), str(trained / "both"), "--half", "--float32"])


def test_training_sets_the_piece_length_from_the_training_sentences_and_export_can_change_it(trained, corpus,
                                                                                           capsys):
    from lexner.tagging import piece_length

    source = trained / "run" / "model"
    train_lengths = [len(s.text) for s in corpus[:15]]
    assert load(source).max_length == piece_length(train_lengths)
    assert main(["export", str(source), str(trained / "pieces"), "--piece-length", "70"]) == 0
    assert load(trained / "pieces").max_length == 70
    assert main(["export", str(source), str(trained / "same")]) == 0
    assert load(trained / "same").max_length == piece_length(train_lengths)
    with pytest.raises(SystemExit) as exit_:
        main(["export", str(source), str(trained / "bad"), "--piece-length", "0"])
    assert exit_.value.code == 2 and "expected a number of characters from 1 to 5000" in capsys.readouterr().err
    assert not (trained / "bad").exists()


def test_tag_takes_the_model_as_option_or_first_argument(trained, capsys):
    model = str(trained / "run" / "model")
    capsys.readouterr()
    assert main(["tag", "--model", model, "张三在北京"]) == 0
    by_option = capsys.readouterr().out
    assert main(["tag", model, "张三在北京"]) == 0  # the older form: a model directory first
    assert capsys.readouterr().out == by_option
    assert json.loads(by_option)["text"] == "张三在北京"


def test_export_renames_entity_types(trained, capsys):
    source = trained / "run" / "model"
    rename = {"PER": "人名", "LOC": "地名"}
    assert main(["export", str(source), str(trained / "renamed"), "--rename", "PER=人名", "--rename", "LOC=地名"]) == 0
    before, after = load(source), load(trained / "renamed")
    assert after.featurizer.entity_types == [rename[t] for t in before.featurizer.entity_types]
    texts = ["张三在北京工作。", "李四去了上海"]
    assert [[(e.start, e.end, rename[e.label]) for e in ents] for ents in before.tag_batch(texts)] == \
           [[(e.start, e.end, e.label) for e in ents] for ents in after.tag_batch(texts)]
    capsys.readouterr()
    assert main(["export", str(source), str(trained / "bad"), "--rename", "PER"]) == 2
    assert "lexner: error: --rename expects KEY=VALUE, got 'PER'" in capsys.readouterr().err
    for bad, message in (("NOPE=X", "cannot rename ['NOPE']: not types of this model (LOC, PER)"),
                         ("PER=LOC", "renaming would merge LOC and PER into LOC in head 'default' (its types: "
                                     "LOC, PER); rename the other one too"),
                         ("PER=", "renaming PER to an empty name (head 'default') would leave it unnamed")):
        assert main(["export", str(source), str(trained / "bad"), "--rename", bad]) == 2
        assert message in capsys.readouterr().err
    assert not (trained / "bad").exists()
    # the card keeps the data's names, so the renamed model scores on data that still uses them
    assert after.metadata["card"]["renamed"] == rename
    from lexner.data import Sentence
    from lexner.evaluate import evaluate
    from lexner.schemes import Span

    gold = [Sentence("张三在北京工作。", [Span(0, 2, "PER"), Span(3, 5, "LOC")])]
    assert evaluate(after, gold)["micro"] == evaluate(before, gold)["micro"]
    seen = [Sentence("张三", [Span(0, 2, "PER")])]  # the training data's names, as the gold data's
    assert evaluate(after, gold, seen=seen)["seen"] == evaluate(before, gold, seen=seen)["seen"]
    assert main(["export", str(source), str(trained / "spaced"), "--rename", "PER=A B"]) == 2  # CoNLL could not read it
    said = capsys.readouterr().err
    assert "without whitespace" in said and "'A B'" in said and not (trained / "spaced").exists()
    assert main(["export", str(trained / "renamed"), str(trained / "twice"), "--rename", "人名=person"]) == 0
    assert load(trained / "twice").metadata["card"]["renamed"] == {"PER": "person", "LOC": "地名"}


def test_info_describes_a_model(trained, capsys, tmp_path):
    model = trained / "run" / "model"
    capsys.readouterr()
    assert main(["info", str(model)]) == 0
    about = json.loads(capsys.readouterr().out)
    tagger = load(model)
    assert about["model"] == tagger.name and about["entity_types"] == tagger.featurizer.entity_types
    assert about["label_sets"] == {"default": tagger.featurizer.entity_types}
    assert about["path"] == str(model) and about["card"]["train_data"] == str(trained / "train.bio")
    assert 0 < about["megabytes"] * 2**20 == pytest.approx(sum(p.stat().st_size for p in model.rglob("*")
                                                               if p.is_file()), abs=0.01 * 2**20)
    assert about["stored"] == "float32" and about["piece_length"] == tagger.max_length
    assert about["lexicon_words"] is None  # bilstm_crf has no lexicon
    assert about["runtime"] == "torch" and about["onnx_graphs"] == []
    assert main(["export", str(model), str(tmp_path / "half"), "--half", "--piece-length", "40"]) == 0
    capsys.readouterr()
    assert main(["info", str(tmp_path / "half")]) == 0
    half = json.loads(capsys.readouterr().out)
    assert half["stored"] == "float16" and half["piece_length"] == 40  # what the copy is, not its source
    assert main(["info", str(tmp_path / "no-model")]) == 2
    assert "no-model" in capsys.readouterr().err


def test_info_names_a_folder_whose_name_is_not_utf8_as_a_model_card_does(corpus, capsys, tmp_path):
    """A legacy GBK folder name (lone surrogates) was printed as it is: a traceback (UnicodeEncodeError on the
    UTF-8 standard output) instead of the description."""
    import os

    from lexner.api import build_tagger

    folder = tmp_path / os.fsdecode(b"\xca\xfd\xbe\xdd")  # 数据 in GBK
    try:
        folder.mkdir()
    except (OSError, UnicodeError):
        pytest.skip("this file system takes only UTF-8 names")
    build_tagger("bilstm_crf", corpus, {"char_dim": 4, "bigram_dim": 4, "hidden": 8}).save(folder / "m")
    capsys.readouterr()
    assert main(["info", str(folder / "m")]) == 0
    assert json.loads(capsys.readouterr().out)["path"] == str(tmp_path / "\\xca\\xfd\\xbe\\xdd" / "m")


def test_export_and_train_report_folder_names_readably_and_never_fail_on_them(corpus, capsys, tmp_path):
    """They printed Chinese folder names as \\u escapes (info and evaluate did not), and a non-UTF-8 one would
    have ended export in a traceback after the copy was written."""
    import os

    from lexner.api import build_tagger
    from lexner.data import write_jsonl

    build_tagger("bilstm_crf", corpus, {"char_dim": 4, "bigram_dim": 4, "hidden": 8}).save(tmp_path / "m")
    capsys.readouterr()
    assert main(["export", str(tmp_path / "m"), str(tmp_path / "模型")]) == 0
    assert '"model": "' + str(tmp_path / "模型") + '"' in capsys.readouterr().out
    write_jsonl(corpus, tmp_path / "train.jsonl")
    assert main(["train", "--train", str(tmp_path / "train.jsonl"), "--out", str(tmp_path / "运行"), "--epochs", "1",
                 "--set", "hidden=8", "--char-vectors", "none", "--bigram-vectors", "none", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == str(tmp_path / "运行" / "model")
    legacy = tmp_path / os.fsdecode(b"\xca\xfd\xbe\xdd")  # 数据 in GBK
    try:
        legacy.mkdir()
    except (OSError, UnicodeError):
        return  # this file system takes only UTF-8 names
    assert main(["export", str(tmp_path / "m"), str(legacy / "m")]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == str(tmp_path / "\\xca\\xfd\\xbe\\xdd" / "m")


def test_rename_types_refuses_to_merge(corpus):
    from lexner.features import Featurizer

    featurizer = Featurizer.build(corpus)
    with pytest.raises(ValueError, match="merge"):
        featurizer.rename_types({"PER": "LOC"})


def test_exported_card_has_renamed_types_and_no_machine_paths():
    from lexner.export import portable_card

    card = {"command": "/home/me/lexner/__main__.py train --dataset msra", "lexicon": "/data/x/embeddings/w.vec",
            "embeddings": {"chars": "../shared/data/embeddings/c.vec", "words": None},
            "dev": {"micro": {"f1": 0.9}, "per_type": {"NR": {"f1": 0.9}, "NS": {"f1": 0.8}}}}
    out = portable_card(card, {"NR": "PER", "NS": "LOC"})
    assert out["command"] == "lexner train --dataset msra"
    assert out["lexicon"] == "$LEXNER_DATA/embeddings/w.vec"
    assert out["embeddings"] == {"chars": "$LEXNER_DATA/embeddings/c.vec", "words": None}
    assert list(out["dev"]["per_type"]) == ["PER", "LOC"] and card["dev"]["per_type"].keys() == {"NR", "NS"}


def test_exported_card_of_a_model_trained_on_windows_has_no_machine_paths():
    """A card written on Windows names its lexicon and embeddings with backslashes, which the export did not
    recognise: the copy given away kept the trainer's folders (C:\\Users\\NAME\\...)."""
    from lexner.export import portable_card

    card = {"command": "lexner train --dataset msra", "lexicon": "C:\\Users\\张三\\data\\embeddings\\w.vec",
            "embeddings": {"chars": "..\\shared\\data\\embeddings\\c.vec", "words": None}}
    out = portable_card(card, {})
    assert out["lexicon"] == "$LEXNER_DATA/embeddings/w.vec"
    assert out["embeddings"] == {"chars": "$LEXNER_DATA/embeddings/c.vec", "words": None}


def test_exported_card_drops_machine_folders_from_teachers_init_from_data_and_lexicons():
    """Absolute paths given as TASK=DIR (teachers) or --option=PATH, the model a training continued, a training
    file outside the data root and the second of two lexicons were copied as they were into the card given away."""
    from lexner.export import portable_card

    card = {"command": "lexner distill --teacher msra=/home/me/runs/t1/model --out=/home/me/x --lr 0.1",
            "teachers": ["msra=/home/me/runs/t1/model", "weibo=runs/t2"], "init_from": "/home/me/runs/base",
            "train_data": "C:\\Users\\me\\corpora\\mine.conll", "lexicon": "/home/me/lex/a.txt + /d/embeddings/w.vec"}
    out = portable_card(card, {})
    assert out["command"] == "lexner distill --teacher msra=model --out=x --lr 0.1"
    assert out["teachers"] == ["msra=t1/model", "weibo=runs/t2"]
    assert out["init_from"] == "runs/base" and out["train_data"] == "corpora/mine.conll"
    assert out["lexicon"] == "lex/a.txt + $LEXNER_DATA/embeddings/w.vec"


def test_set_values_are_converted_by_the_setting_type():
    from lexner.models import model_class
    from lexner.models.base import parse_config_values

    flat = model_class("flat")
    assert parse_config_values(flat, {"lean": "False", "scaled": "true", "heads": "4", "embed_dropout": "0.3"}) == {
        "lean": False, "scaled": True, "heads": 4, "embed_dropout": 0.3}
    assert parse_config_values(model_class("lattice_lstm"), {"bidirectional": "0"}) == {"bidirectional": False}
    with pytest.raises(ValueError, match="setting lean must be true or false, got 'maybe'"):
        parse_config_values(flat, {"lean": "maybe"})
    with pytest.raises(ValueError, match="setting heads must be an int, got '4.5'"):
        parse_config_values(flat, {"heads": "4.5"})


def test_set_refuses_unknown_keys_and_bad_values_before_reading_data(tmp_path, capsys):
    base = ["train", "--train", str(tmp_path / "missing.txt"), "--dev", str(tmp_path / "missing.txt"),
            "--out", str(tmp_path / "run")]
    assert main([*base, "--set", "hiddn=10"]) == 2
    err = capsys.readouterr().err
    assert "['hiddn'] are not settings of bilstm_crf" in err and "hidden" in err
    assert main([*base, "--model", "lattice_lstm", "--set", "bidirectional=nope"]) == 2
    assert "bidirectional must be true or false" in capsys.readouterr().err


def test_train_help_shows_every_training_setting_with_its_default(capsys):
    import dataclasses

    from lexner.train import TrainConfig

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = "".join(capsys.readouterr().out.split())  # argparse wraps lines at spaces and hyphens

    def shown(words: str) -> bool:
        return "".join(words.split()) in text

    assert shown("the tagger to train (default: bilstm_crf)")
    for f in dataclasses.fields(TrainConfig):
        if f.name != "device":
            assert shown(f"--{f.name.replace('_', '-')}") and shown(f"{f.metadata['help']} (default: "), f.name
    assert shown("the most epochs (default: 50)") and shown("sentences per batch (default: 10)")
    assert "(default:None)" not in text and shown("--amp {'',bf16,fp16}")  # no default shown for none


def test_choice_lists_come_from_the_library_registries():
    from lexner.cli import build_parser
    from lexner.data import DATASETS, FORMATS, TYPE_MAPS
    from lexner.fileio import UTF8_ERRORS
    from lexner.output import FORMATS as OUTPUT_FORMATS

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices
    options = {name: {a.dest: a.choices for a in parser._actions} for name, parser in sub.items()}
    assert options["evaluate"]["dataset"] == sorted(DATASETS)
    assert options["train"]["dataset"] == sorted(DATASETS) + [f"{a}:{b}" for a, b in TYPE_MAPS]
    assert options["train"]["format"] == ["auto", *FORMATS]
    assert list(options["tag"]["format"]) == list(OUTPUT_FORMATS) and list(options["tag"]["errors"]) == list(UTF8_ERRORS)


def test_tag_warns_when_a_text_names_a_file(trained, capsys, caplog, tmp_path):
    model = str(trained / "run" / "model")
    existing = tmp_path / "notes.txt"
    existing.write_text("张三在北京\n", encoding="utf-8")
    long_text = "张三在北京。" * 200  # longer than a file name may be: no error, no warning
    capsys.readouterr()
    with caplog.at_level("WARNING", logger="lexner"):
        assert main(["tag", "--model", model, str(existing), "-", long_text]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in records] == [str(existing), "-", long_text]  # still tagged as texts
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 2
    assert f"--input {existing}" in warned[0] and "standard input" in warned[1]


def test_tag_refuses_a_first_argument_that_is_a_directory_but_no_model(trained, capsys, caplog):
    capsys.readouterr()
    assert main(["tag", str(trained / "run"), "张三在北京"]) == 2  # the run folder, not its model/
    said = capsys.readouterr()
    assert said.out == "" and f"{trained / 'run'} is a directory but not a model directory" in said.err
    assert f"its model/ folder: {trained / 'run' / 'model'}" in said.err
    model = str(trained / "run" / "model")
    with caplog.at_level("WARNING", logger="lexner"):  # a second model is tagged as text, with a warning
        assert main(["tag", model, model, "张三在北京"]) == 0
    assert [json.loads(line)["text"] for line in capsys.readouterr().out.splitlines()] == [model, "张三在北京"]
    assert any("names a directory (a model directory: one model tags" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("option, value, message", [("--port", "70000", "a port number from 0 to 65535"),
                                                     ("--port", "-1", "a port number from 0 to 65535"),
                                                     ("--batch-wait-ms", "1e9", "milliseconds from 0 to 1000"),
                                                     ("--batch-wait-ms", "nan", "milliseconds from 0 to 1000")])
def test_serve_refuses_a_port_or_a_batch_wait_out_of_range(option, value, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", option, value])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_evaluate_without_a_model_directory_scores_the_bundled_model(tmp_path, capsys):
    (tmp_path / "gold.jsonl").write_text(json.dumps({"text": "张三在北京大学读书。", "entities": [
        {"start": 0, "end": 2, "label": "PER"}, {"start": 3, "end": 7, "label": "ORG"}]}) + "\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["evaluate", "--file", str(tmp_path / "gold.jsonl"), "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["micro"]["f1"] == 1.0


def test_evaluate_names_a_missing_data_file_before_loading_the_model(tmp_path, capsys, monkeypatch):
    import lexner.cli

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the data was read")

    monkeypatch.setattr(lexner.cli, "_load_for_tagging", no_model)
    assert main(["evaluate", "--file", str(tmp_path / "typo.jsonl"), "--no-progress"]) == 2
    assert "typo.jsonl" in capsys.readouterr().err


def test_a_text_argument_that_is_not_utf8_follows_errors(trained, capsys, tmp_path):
    model, out = str(trained / "run" / "model"), tmp_path / "out.jsonl"
    bad = b"\xff\xe5\xbc\xa0\xe4\xb8\x89".decode("utf-8", "surrogateescape")  # as argv holds b"\xff张三"
    out.write_text("kept\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["tag", "--model", model, "--output", str(out), bad, "李四"]) == 2  # strict: nothing written
    assert "text 1 on the command line is not valid UTF-8" in capsys.readouterr().err
    assert out.read_text(encoding="utf-8") == "kept\n"
    assert main(["tag", "--model", model, "--output", str(out), "--errors", "replace", bad, "李四"]) == 0
    assert [json.loads(line)["text"] for line in out.read_text(encoding="utf-8").splitlines()] == ["\ufffd张三", "李四"]
    assert main(["tag", "--model", model, "--errors", "skip", bad, "李四"]) == 0
    assert [json.loads(line)["text"] for line in capsys.readouterr().out.splitlines()] == ["李四"]


def test_train_without_dev_carves_a_seeded_dev_split_from_train(corpus, tmp_path, monkeypatch, caplog):
    from lexner.cli import _load_tasks, build_parser
    from lexner.data import TRAIN_DEV_SEED

    monkeypatch.setenv("LEXNER_DATA", str(tmp_path / "no-data"))
    write_conll(corpus, tmp_path / "train.bio", "BIO")

    def tasks(*extra):
        return _load_tasks(build_parser().parse_args(["train", "--train", str(tmp_path / "train.bio"), "--out",
                                                      str(tmp_path / "run"), *extra]))

    with caplog.at_level("INFO", logger="lexner"):
        (task,) = tasks("--dev-fraction", "0.25")
    assert len(task.dev) == round(0.25 * len(corpus)) and len(task.train) + len(task.dev) == len(corpus)
    assert sorted(s.text for s in task.train + task.dev) == sorted(s.text for s in corpus)  # nothing lost or twice
    assert f"seed {TRAIN_DEV_SEED}" in caplog.text and "train.bio" in caplog.text
    (again,) = tasks("--dev-fraction", "0.25", "--seed", "7")  # the training seed does not move the split
    assert again.dev == task.dev
    (default,) = tasks()
    assert len(default.dev) == max(1, round(0.1 * len(corpus)))
    caplog.clear()
    with caplog.at_level("INFO", logger="lexner"):
        (runs,) = tasks("--dev-fraction", "0.25", "--dev-blocks", "2")
    position = {s.text: i for i, s in enumerate(corpus)}
    picked = [position[s.text] for s in runs.dev]
    assert len(runs.dev) == len(task.dev) and runs.dev != task.dev and "2 runs of consecutive" in caplog.text
    assert sum(1 for k, i in enumerate(picked) if k == 0 or i != picked[k - 1] + 1) <= 2
    from lexner.cli import CommandError

    with pytest.raises(CommandError, match="--dev-blocks: no dev split is carved"):
        tasks("--dev", str(tmp_path / "train.bio"), "--dev-blocks", "2")
    with pytest.raises(CommandError, match="--dev-blocks: no dev split is carved"):
        _load_tasks(build_parser().parse_args(["train", "--task", f"a:{tmp_path / 'train.bio'}:{tmp_path / 'train.bio'}",
                                               "--dev-blocks", "2", "--out", "r"]))
    with pytest.raises(CommandError, match="--dev-fraction: no dev split is carved"):  # was ignored silently
        tasks("--dev", str(tmp_path / "train.bio"), "--dev-fraction", "0.3")
    with pytest.raises(SystemExit):
        tasks("--dev-fraction", "1.5")
    one = tmp_path / "one.bio"
    write_conll(corpus[:1], one, "BIO")
    with pytest.raises(ValueError, match="one.bio.*too few to carve a dev split"):
        _load_tasks(build_parser().parse_args(["train", "--train", str(one), "--out", str(tmp_path / "r")]))


def test_pretrained_bigrams_option_takes_a_count_or_all():
    from lexner.api import EXTRA_PRETRAINED_BIGRAMS
    from lexner.cli import build_parser

    parse = lambda *extra: build_parser().parse_args(["train", "--dataset", "weibo", "--out", "r", *extra])  # noqa: E731
    assert parse().pretrained_bigrams == EXTRA_PRETRAINED_BIGRAMS
    assert parse("--pretrained-bigrams", "all").pretrained_bigrams is None
    assert parse("--pretrained-bigrams", "0").pretrained_bigrams == 0
    for bad in ("-1", "many", "1.5"):
        with pytest.raises(SystemExit):
            parse("--pretrained-bigrams", bad)


def test_train_passes_pretrained_bigrams_to_build_tagger(corpus, tmp_path, monkeypatch):
    import lexner.api

    monkeypatch.setenv("LEXNER_DATA", str(tmp_path / "no-data"))
    write_conll(corpus, tmp_path / "train.bio", "BIO")
    seen = []

    def refuse(*args, **kwargs):
        seen.append(kwargs["pretrained_bigrams"])
        raise ValueError("stop here")

    monkeypatch.setattr(lexner.api, "build_tagger", refuse)
    for value, expected in (("all", None), ("7", 7)):
        assert main(["train", "--train", str(tmp_path / "train.bio"), "--out", str(tmp_path / "run"),
                     "--pretrained-bigrams", value, "--no-progress"]) == 2
    assert seen == [None, 7]


def test_train_refuses_dev_or_test_files_without_train_or_beside_tasks(corpus, tmp_path, capsys):
    write_jsonl(corpus, tmp_path / "t.jsonl")
    f = str(tmp_path / "t.jsonl")
    for extra in (["--dev", f], ["--test", f]):
        assert main(["train", *extra, "--out", str(tmp_path / "run")]) == 2
        assert "--dev and --test need --train" in capsys.readouterr().err
        assert main(["train", "--task", f"a:{f}", *extra, "--out", str(tmp_path / "run")]) == 2
        assert "give every corpus as --task" in capsys.readouterr().err


def test_usage_mistakes_exit_2_with_the_lexner_prefix(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "no-model")]) == 2  # checked before the model is even looked for
    assert "lexner: error: give --dataset NAME [--split SPLIT] or --file PATH" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "run")]) == 2
    assert "lexner: error: give --dataset NAME" in capsys.readouterr().err
    assert main(["train", "--dataset", "weibo", "--out", str(tmp_path / "run"), "--set", "hidden"]) == 2
    assert "lexner: error: --set expects KEY=VALUE, got 'hidden'" in capsys.readouterr().err


@pytest.mark.parametrize("model, settings, message", [
    ("softlexicon", ["hidden=21"], "hidden must be an even number ≥ 2"),
    ("bilstm_crf", ["hidden=0"], "config hidden must be an integer in [1, "),
    ("lattice_lstm", ["hidden=7"], "hidden must be an even number ≥ 2"),
    ("flat", ["model_dim=100", "heads=8"], "model_dim 100 must be a positive multiple of heads 8"),
])
def test_model_settings_are_checked_before_any_data_is_read(model, settings, message, tmp_path, capsys):
    sets = [arg for setting in settings for arg in ("--set", setting)]
    code = main(["train", "--model", model, "--train", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "r"),
                 *sets])
    assert code == 2 and message in capsys.readouterr().err  # not the missing file: the data was never read


@pytest.mark.parametrize("args", [
    ["tag", "--batch-size", "0", "x"], ["tag", "--workers", "-3", "x"], ["serve", "--max-chars", "-5"],
    ["serve", "--max-texts", "0"], ["serve", "--batch-size", "0"], ["export", "a", "b", "--piece-length", "0"],
    ["train", "--dataset", "weibo", "--out", "r", "--bigram-min-count", "0"],
])
def test_counts_out_of_range_are_refused_by_the_parser(args, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2 and "expected " in capsys.readouterr().err


def test_recorded_command_lines_hold_no_machine_paths(tmp_path, monkeypatch):
    from lexner.export import command_line

    monkeypatch.chdir(tmp_path)
    argv = [str(tmp_path / ".venv/bin/lexner"), "train", "--out", str(tmp_path / "runs/a"), "--train", "/srv/x.txt"]
    assert command_line(argv) == "lexner train --out runs/a --train /srv/x.txt"  # outside the folder: as given
    assert command_line(["/usr/lib/python3/site-packages/lexner/__main__.py", "tag"]) == "lexner tag"
    assert command_line(["python", "benchmarks/peers.py", "--out", str(tmp_path)]) == "python benchmarks/peers.py --out ."
    data = tmp_path.parent / "shared-data"  # the data root beside the checkout, as in this project
    monkeypatch.setenv("LEXNER_DATA", str(data))
    train, test = data / "msra/train.char.bmes", data / "msra/test.char.bmes"
    assert command_line(["lexner", "train", "--train", str(train), "--test", str(test)]) == \
        "lexner train --train $LEXNER_DATA/msra/train.char.bmes --test $LEXNER_DATA/msra/test.char.bmes"
    from lexner.export import portable_path

    assert portable_path(str(train)) == "$LEXNER_DATA/msra/train.char.bmes"  # the card's train_data too
    assert portable_path("msra/train.char.bmes") == "msra/train.char.bmes"


def test_recorded_command_lines_run_again_and_export_without_any_machine_path(tmp_path, monkeypatch):
    """Words are quoted as a shell needs them (a path with a space was recorded unquoted, and an export split it
    in two), and an export drops Windows machine paths as it drops POSIX ones."""
    import shlex

    from lexner.export import command_line, portable_card

    monkeypatch.setenv("LEXNER_DATA", str(tmp_path / "data"))
    argv = ["lexner", "train", "--train", "/home/张三/my data/train.bio", "--dev", str(tmp_path / "data/d e.bio"),
            "--set", "hidden=8"]
    recorded = command_line(argv)
    assert recorded == "lexner train --train '/home/张三/my data/train.bio' --dev $LEXNER_DATA/'d e.bio' --set hidden=8"
    assert shlex.split(recorded)[3] == "/home/张三/my data/train.bio"
    windows = shlex.quote("C:\\Users\\张三\\test.bio")  # as command_line records it on Windows
    card = {"command": f"{recorded} --test {windows}", "teachers": ["C:\\runs\\m\\model"]}
    out = portable_card(card, {})
    assert out["command"] == "lexner train --train train.bio --dev $LEXNER_DATA/'d e.bio' --set hidden=8 --test test.bio"
    assert out["teachers"] == ["m/model"] and "张三" not in json.dumps(out, ensure_ascii=False)
    from lexner.export import command_words

    assert command_words("lexner train --train C:\\Users\\me\\x.bio") == ["lexner", "train", "--train",
                                                                          "C:\\Users\\me\\x.bio"]  # older, unquoted
    old = {"command": "lexner train --train /home/u/x.bio --out it's"}  # an older, unquoted record
    assert portable_card(old, {})["command"] == "lexner train --train x.bio --out 'it'\"'\"'s'"


def test_an_installed_lexner_inside_another_repository_records_no_commit(tmp_path, monkeypatch):
    """A project's virtual environment inside its own checkout (``.venv``, ignored by git) holds lexner in
    site-packages; git asked there answered with the project's commit, recorded in model cards as lexner's."""
    import shutil
    import subprocess

    import lexner.export
    from lexner import __version__

    if shutil.which("git") is None:
        pytest.skip("no git")
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(git + ["init", "-q"], check=True)
    subprocess.run(git + ["commit", "-q", "--allow-empty", "-m", "x"], check=True)
    package = tmp_path / ".venv/lib/site-packages/lexner"
    package.mkdir(parents=True)
    monkeypatch.setattr(lexner.export, "__file__", str(package / "export.py"))
    assert lexner.export.provenance() == {"version": __version__, "commit": None}
    vendored = tmp_path / "lexner"  # copied into the top of another project, whose pyproject is its own
    vendored.mkdir()
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "myproject"\n', encoding="utf-8")
    monkeypatch.setattr(lexner.export, "__file__", str(vendored / "export.py"))
    assert lexner.export.provenance() == {"version": __version__, "commit": None}
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "lexner"\n', encoding="utf-8")  # a checkout
    assert lexner.export.provenance()["commit"] is not None


def test_lexners_own_pyproject_is_recognised_in_any_toml_spelling(tmp_path):
    """A checkout records its commit only if its pyproject.toml is lexner's: reformatting it must not stop that."""
    from lexner.export import _is_lexner_project

    assert _is_lexner_project(Path(__file__).resolve().parents[1] / "pyproject.toml")
    for spelling, mine in (('name = "lexner"', True), ("name='lexner'", True), ('name = "lexner"  # pypi', True),
                           ('name = "lexner-fork"', False), ("name = \"lexner'", False), ("", False)):
        (tmp_path / "pyproject.toml").write_text(f"[project]\n{spelling}\n", encoding="utf-8")
        assert _is_lexner_project(tmp_path / "pyproject.toml") is mine, spelling


def test_export_writes_a_path_starting_with_a_tilde_into_the_home_folder(corpus, tmp_path, monkeypatch):
    """Tagger.save and lexner.load read "~/m" as the home folder; export_model wrote a folder named ~ in the
    working directory."""
    from lexner.api import build_tagger
    from lexner.export import export_model

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    tagger = build_tagger("bilstm_crf", corpus, {"char_dim": 4, "bigram_dim": 4, "hidden": 8})
    assert export_model(tagger, "~/models/m") == tmp_path / "home" / "models" / "m"
    assert (tmp_path / "home" / "models" / "m" / "config.json").is_file() and not (tmp_path / "~").exists()


def test_a_path_that_is_not_utf8_is_recorded_as_escapes(corpus, tmp_path):
    """A file name whose bytes are not UTF-8 (a legacy GBK name) reaches Python as lone surrogates; the model
    card records their bytes as escapes — writing it failed at the first save, after an epoch of training."""
    import os

    from lexner.api import build_tagger
    from lexner.export import command_line
    from lexner.train import Trainer, TrainConfig

    name = os.fsdecode(b"\xd1\xb5\xc1\xb7.bio")
    assert command_line(["lexner", "train", "--train", name]) == "lexner train --train 'ѵ\\xc1\\xb7.bio'"
    trainer = Trainer(build_tagger("bilstm_crf", corpus, {"char_dim": 4, "bigram_dim": 4, "hidden": 8}),
                      TrainConfig(epochs=1), tmp_path / "run", progress=False)
    trainer.fit(corpus[:15], corpus[15:], model_card={"train_data": name, "teachers": [name]})
    card = load(tmp_path / "run/model").metadata["card"]
    assert card["train_data"] == "ѵ\\xc1\\xb7.bio" and card["teachers"] == ["ѵ\\xc1\\xb7.bio"]


@pytest.mark.parametrize("device", ["bogus", "mps", "cuda:x"])
def test_a_bad_device_is_a_clean_error(device, capsys):
    from lexner.cli import main

    assert main(["tag", "--device", device, "张三在北京"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lexner: error: --device {device}") and "Traceback" not in err


@pytest.mark.parametrize("options, message", [
    (["--out", ""], "--out: needs a folder name, got ''"),
    (["--out", "o", "--lexicon", "words.txt"], "bilstm_crf uses no lexicon; choose a lexicon tagger"),
    (["--out", "o", "--model", "bert_crf"], "give --set bert_path=DIR"),
    (["--out", "o", "--augment-ratio", "0.5"], "--augment-ratio has no effect without --augment"),
    (["--out", "o", "--bigram-vectors", "none", "--pretrained-bigrams", "all"],
     "--pretrained-bigrams has no effect without bigram vectors"),
    (["--out", "o", "--augment-ratio", "0.2"], "--augment-ratio has no effect without --augment"),  # the default
    (["--out", "o", "--bigram-vectors", "none", "--pretrained-bigrams", "50000"],
     "--pretrained-bigrams has no effect without bigram vectors"),
    (["--out", "o", "--optimizer", "adam", "--momentum", "0.5"], "--momentum has no effect without --optimizer sgd"),
    (["--out", "o", "--encoder-lr", "1e-4"], "--encoder-lr has no effect without a pretrained encoder"),
    (["--out", "o", "--distill", "kl"], "--distill has no effect without teachers"),
    (["--out", "o", "--distill-weight", "2"], "--distill-weight has no effect without teachers"),
    # accepted and dropped before (docs audit): a table the model lacks, one corpus
    (["--out", "o", "--word-vectors", "w.vec"], "--word-vectors has no effect: bilstm_crf (with these settings) has "
                                               "no word table"),
    (["--out", "o", "--set", "bigram_dim=0", "--bigram-vectors", "b.vec"], "--bigram-vectors has no effect"),
    (["--out", "o", "--task-temperature", "3"], "--task-temperature has no effect without several tasks"),
    (["--out", "o", "--task-selection", "mean"], "--task-selection has no effect without several tasks"),
])
def test_train_refuses_options_it_could_only_ignore_or_misuse_before_reading_data(tmp_path, monkeypatch, capsys,
                                                                                 options, message):
    monkeypatch.chdir(tmp_path)
    try:
        code = main(["train", "--train", "no-such-file.bmes", *options])
    except SystemExit as exit:  # argparse's usage error
        code = exit.code
    assert code == 2  # the option, not the missing file
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing written (--out '' trained into the current directory)


def test_a_missing_input_file_is_named_before_any_progress_bar(capsys, tmp_path):
    assert main(["tag", "--input", str(tmp_path / "missing.txt")]) != 0
    err = capsys.readouterr().err
    assert "missing.txt: no such file" in err and "line" not in err.replace("missing", "")


def test_loading_a_training_run_folder_names_its_model_folder(trained):
    with pytest.raises(ModelFormatError, match=f"a training run's folder\\? its model is {trained / 'run' / 'model'}"):
        load(trained / "run")


@pytest.mark.parametrize("argv, message", [
    (["train", "--train", "t.bmes", "--out", "o", "--augment", "mention", "--augment", "case"],
     "argument --augment: given more than once; it takes one value"),
    (["tag", "--model", "a", "-m", "b", "张三"], "argument --model/-m: given more than once"),
    (["train", "--train", "t.bmes", "--out", "o", "--set", "hidden=8", "--set", "hidden=16"],
     "--set hidden= given twice ('8', '16')"),
    (["export", "m", "o", "--rename", "PER=X", "--rename", "PER=Y"], "--rename PER= given twice ('X', 'Y')"),
])
def test_a_one_value_option_or_a_key_given_twice_is_refused_not_overwritten(tmp_path, monkeypatch, capsys,
                                                                           argv, message):
    monkeypatch.chdir(tmp_path)
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse's usage error
        code = exit.code
    assert code == 2 and message in capsys.readouterr().err


def test_tag_takes_an_empty_text_as_a_text_and_dash_output_as_stdout(trained, capsys, monkeypatch, caplog):
    model = str(trained / "run" / "model")
    monkeypatch.chdir(model)  # Path("") is "." — here a model directory, which an empty text must not become
    assert main(["tag", "--model", model, "", "李四"]) == 0
    assert "names a directory" not in caplog.text
    assert [json.loads(line)["text"] for line in capsys.readouterr().out.splitlines()] == ["", "李四"]
    assert main(["tag", "--model", model, "--output", "-", "李四"]) == 0
    assert [json.loads(line)["text"] for line in capsys.readouterr().out.splitlines()] == ["李四"]
    assert not (Path(model) / "-").exists()
    with pytest.raises(SystemExit):
        main(["tag", "--model", model, "--output", "folder/", "李四"])
    assert "'folder/' names a folder; give a file name" in capsys.readouterr().err
    assert not (Path(model) / "folder").exists()
    import lexner.api

    class Loaded(Exception):
        pass

    def load(path, **kw):
        raise Loaded(path)

    monkeypatch.setattr(lexner.api, "load", load)
    with pytest.raises(Loaded) as loaded:
        main(["tag", "", "李四"])  # without --model: the bundled model, not the folder "" would name
    assert loaded.value.args == (lexner.api.DEFAULT_MODEL,)


def test_tag_and_evaluate_take_threads(trained, monkeypatch, capsys):
    import torch

    model = str(trained / "run" / "model")
    chosen = []
    monkeypatch.setattr(torch, "set_num_threads", chosen.append)
    assert main(["tag", "--model", model, "--threads", "1", "李四"]) == 0
    assert main(["evaluate", model, "--file", str(trained / "test.jsonl"), "--threads", "2", "--no-progress"]) == 0
    assert chosen == [1, 2]
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["tag", "--model", model, "--threads", "-1", "李四"])


def test_missing_default_vectors_are_a_warning_naming_the_file_and_the_options(corpus, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("LEXNER_DATA", str(tmp_path / "no-data"))
    write_jsonl(corpus, tmp_path / "train.jsonl")
    base = ["train", "--train", str(tmp_path / "train.jsonl"), "--dev", str(tmp_path / "train.jsonl"), "--epochs", "1",
            "--set", "hidden=8", "--no-progress"]
    with caplog.at_level("WARNING"):
        assert main([*base, "--out", str(tmp_path / "a")]) == 0
    said = [r.getMessage() for r in caplog.records if "pretrained" in r.getMessage()]
    assert len(said) == 2 and str(tmp_path / "no-data" / "embeddings" / "char.50d.vec") in said[0]
    assert "--char-vectors FILE" in said[0] and "--bigram-vectors none" in said[1]
    caplog.clear()
    with caplog.at_level("WARNING"):  # told to train without them, or a model with no bigram table: nothing to say
        assert main([*base, "--out", str(tmp_path / "b"), "--char-vectors", "none", "--set", "bigram_dim=0"]) == 0
    assert not [r for r in caplog.records if "pretrained" in r.getMessage()]


def test_an_interrupted_training_says_what_is_kept_and_how_to_go_on(corpus, tmp_path, monkeypatch, caplog, capsys):
    from lexner.train import Trainer

    monkeypatch.setenv("LEXNER_DATA", str(tmp_path / "no-data"))
    write_jsonl(corpus, tmp_path / "train.jsonl")
    train_epoch = Trainer._train_epoch

    def stop_in_epoch_3(self, *args):
        if self.epoch == 2:
            raise KeyboardInterrupt
        return train_epoch(self, *args)

    monkeypatch.setattr(Trainer, "_train_epoch", stop_in_epoch_3)
    base = ["train", "--train", str(tmp_path / "train.jsonl"), "--dev", str(tmp_path / "train.jsonl"), "--epochs",
            "5", "--set", "hidden=8", "--no-progress", "--out", str(tmp_path / "run")]
    with caplog.at_level("WARNING"):
        assert main(base) == 130
    assert "lexner: interrupted" in capsys.readouterr().err
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("stopped:")]
    assert len(said) == 1 and "the checkpoint written after epoch 2" in said[0] and "--resume" in said[0]
    assert str(tmp_path / "run") in said[0]
    monkeypatch.setattr(Trainer, "_train_epoch", train_epoch)
    assert main([*base, "--resume"]) == 0
    assert [r["epoch"] for r in epoch_records(tmp_path / "run" / "log.jsonl")] == [1, 2, 3, 4, 5]


def test_progress_bars_are_drawn_only_when_standard_error_is_a_terminal(tmp_path, capsys, monkeypatch):
    import sys

    (tmp_path / "in.txt").write_text("张三在北京\n李四\n", encoding="utf-8")
    command = ["tag", "--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "out.jsonl")]
    assert main(command) == 0
    assert "100%" not in capsys.readouterr().err  # a log file behind 2>: no redraws in it
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(command) == 0
    assert "100%" in capsys.readouterr().err
    assert main([*command, "--no-progress"]) == 0
    assert "100%" not in capsys.readouterr().err


def test_an_error_about_a_file_names_the_option_that_gave_it(tmp_path, capsys, corpus):
    write_jsonl(corpus, tmp_path / "train.jsonl")
    (tmp_path / "bad.bio").write_text("x\n", encoding="utf-8")
    (tmp_path / "plain").mkdir()
    train = ["train", "--train", str(tmp_path / "train.jsonl"), "--out", str(tmp_path / "run"), "--epochs", "1"]
    for command, said in [
            ([*train, "--dev", str(tmp_path / "missing.jsonl")], f"--dev {tmp_path / 'missing.jsonl'}: no such file"),
            (["train", "--train", str(tmp_path / "bad.bio"), "--out", str(tmp_path / "run")],
             f"--train {tmp_path / 'bad.bio'}:1: expected"),
            (["distill", *train[1:], "--teacher", str(tmp_path / "gone")], f"--teacher {tmp_path / 'gone'}: no such"),
            ([*train, "--model", "bert_crf", "--set", f"bert_path={tmp_path / 'gone'}"],  # KEY=VALUE: as given
             f"--set bert_path={tmp_path / 'gone'}: no such"),
            (["tag", "-m", str(tmp_path / "plain"), "张三"], f"--model {tmp_path / 'plain'}: missing config.json"),
            (["tag", "--dictionary", str(tmp_path / "gone.tsv"), "张三"], f"--dictionary {tmp_path / 'gone.tsv'}: no"),
            (["evaluate", str(tmp_path / "plain"), "--file", str(tmp_path / "train.jsonl")],  # positional: as given
             f"lexner: error: {tmp_path / 'plain'}: missing config.json")]:
        assert main(command) == 2, command
        assert said in capsys.readouterr().err, command


def test_a_missing_default_model_folder_names_where_the_bundled_model_is(tmp_path, corpus, capsys, monkeypatch):
    """The README's and --help's fine-tuning example, --init-from lexner/default_model, names the bundled model as
    a checkout has it: run elsewhere (lexner installed) it was "no such model directory" and nothing more."""
    from lexner.api import DEFAULT_MODEL

    write_jsonl(corpus, tmp_path / "train.jsonl")
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--init-from", "lexner/default_model", "--train", "train.jsonl", "--out", "run"]) == 2
    assert f"--init-from lexner/default_model: no such model directory (the bundled model is {DEFAULT_MODEL})" in \
        capsys.readouterr().err
    assert main(["tag", "--model", "gone", "张三"]) == 2
    assert "gone: no such model directory\n" in capsys.readouterr().err  # any other name: no word about it


def test_tag_refuses_workers_for_texts_on_the_command_line(capsys):
    assert main(["tag", "--workers", "2", "张三"]) == 2
    assert "--workers shares an --input file among processes" in capsys.readouterr().err


def test_ctrl_c_while_the_command_starts_says_interrupted_without_a_traceback(monkeypatch, capsys):
    from lexner import cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert main(["tag", "张三"]) == 130
    assert capsys.readouterr().err == "lexner: interrupted\n"


def test_closed_standard_input_is_named(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", None)
    assert main(["tag", "--input", "-"]) == 2
    assert "<stdin>: standard input is closed" in capsys.readouterr().err


def test_a_file_that_cannot_be_made_names_the_path_given_not_a_temporary_name(tmp_path, monkeypatch, capsys):
    import errno
    import tempfile

    def refuse(*args, dir=None, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(Path(dir) / ".out.jsonl.x1y2.tmp"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    assert main(["tag", "--output", str(tmp_path / "out.jsonl"), "张三"]) == 2
    assert capsys.readouterr().err == (f"lexner: error: --output {tmp_path / 'out.jsonl'}: cannot be written "
                                       "(Read-only file system)\n")
    assert main(["export", str(Path(load().source)), str(tmp_path / "m")]) == 2
    assert f"{tmp_path / 'm'}: cannot be written (Read-only file system)" in capsys.readouterr().err


def test_a_lexicon_tagger_without_word_vectors_or_a_lexicon_names_the_file_it_looked_for(tmp_path, capsys):
    (tmp_path / "t.bmes").write_text("张 B-PER\n三 E-PER\n在 O\n\n李 B-PER\n四 E-PER\n", encoding="utf-8")
    code = main(["train", "--model", "softlexicon", "--train", str(tmp_path / "t.bmes"), "--dev",
                 str(tmp_path / "t.bmes"), "--data-root", str(tmp_path / "none"), "--out", str(tmp_path / "run")])
    assert code == 2
    err = capsys.readouterr().err
    looked = tmp_path / "none" / "embeddings" / "word.50d.vec.xz"
    assert f"softlexicon reads lexicon words, and {looked} is not there" in err
    assert "--lexicon FILE" in err and not (tmp_path / "run").exists()


def test_train_option_clashes_are_refused_before_any_data_is_read(tmp_path, capsys):
    """--dataset with --train is refused at once: the data root here holds nothing, so reading MSRA first would
    fail on the missing file instead (it took seconds of reading before the refusal)."""
    (tmp_path / "t.bmes").write_text("张 B-PER\n三 E-PER\n", encoding="utf-8")
    assert main(["train", "--dataset", "msra", "--train", str(tmp_path / "t.bmes"), "--data-root",
                 str(tmp_path / "nothing"), "--out", str(tmp_path / "run")]) == 2
    assert "--train/--dev/--test train a one-head model" in capsys.readouterr().err


def test_a_model_saved_without_a_card_keeps_its_renames_when_exported(corpus, tmp_path):
    """build_tagger(...).save() writes no card; export --rename recorded the renames nowhere, so the copy scored 0
    on the data it was trained on."""
    from lexner.api import build_tagger
    from lexner.evaluate import evaluate

    build_tagger("bilstm_crf", corpus, {"char_dim": 4, "bigram_dim": 4, "hidden": 8}).save(tmp_path / "m")
    assert "card" not in load(tmp_path / "m").metadata
    assert main(["export", str(tmp_path / "m"), str(tmp_path / "renamed"), "--rename", "LOC=place"]) == 0
    renamed = load(tmp_path / "renamed")
    assert renamed.metadata["card"] == {"renamed": {"LOC": "place"}}  # nothing else made up
    assert evaluate(renamed, corpus[:10])["micro"] == evaluate(load(tmp_path / "m"), corpus[:10])["micro"]


def test_help_and_version_do_not_import_torch():
    """The parser reads only light modules: ``lexner --help`` answers at once, not after torch's seconds."""
    code = ("import sys, contextlib, io\nfrom lexner.cli import main\n"
            "for argv in (['--version'], ['--help'], ['train', '--help'], ['tag', '--help'], ['evaluate', '--help']):\n"
            "    with contextlib.redirect_stdout(io.StringIO()):\n"
            "        try:\n            main(argv)\n        except SystemExit:\n            pass\n"
            "assert 'torch' not in sys.modules, 'torch was imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, encoding="utf-8")
    assert result.returncode == 0, result.stderr


def test_model_names_are_the_classes_names():
    from lexner.models import MODEL_NAMES, MODELS, ModelFormatError, model_class

    assert {name: cls.name for name, cls in MODELS.items()} == {name: name for name in MODEL_NAMES}
    for bad in ("lstm", ["flat"]):  # a hostile config.json's "model" may be any JSON value
        with pytest.raises(ModelFormatError, match="unknown model"):
            model_class(bad)
    from lexner.models import FLAT, BertCRF, BiLSTMCRF, LatticeLSTM, SoftLexicon  # imported as before

    assert [c.name for c in (BiLSTMCRF, SoftLexicon, LatticeLSTM, FLAT, BertCRF)] == list(MODEL_NAMES)

    class Mine(BiLSTMCRF):
        name = "mine"

    MODELS["mine"] = Mine  # a tagger registered by hand is known from then on
    try:
        assert model_class("mine") is Mine
    finally:
        del MODELS["mine"]


def test_standard_output_is_utf8_whatever_the_locale():
    """Records piped or redirected are UTF-8 with \\n line ends, as --output files are: under a GBK or ASCII
    stdout (Windows' cp936, a C locale) an emoji was a UnicodeEncodeError and Chinese came out unreadable to
    lexner itself."""
    import os

    env = {**os.environ, "PYTHONIOENCODING": "gbk"}
    done = subprocess.run([sys.executable, "-m", "lexner", "tag", "张三在北京工作😀"], capture_output=True, env=env)
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    record = json.loads(done.stdout.decode("utf-8"))
    assert record["text"] == "张三在北京工作😀" and done.stdout.endswith(b"}\n")
    assert {(e["text"], e["label"]) for e in record["entities"]} >= {("张三", "PER")}


def test_text_arguments_are_read_as_utf8_under_a_c_locale():
    """Under a C locale (ASCII) Python reads every non-ASCII argument byte as a lone surrogate: valid UTF-8
    text was refused as invalid."""
    import os

    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    code = "import sys; print(sys.getfilesystemencoding())"
    if subprocess.run([sys.executable, "-c", code], capture_output=True, encoding="utf-8", env=env).stdout.strip() != "ascii":
        pytest.skip("this Python does not read arguments as ASCII under LC_ALL=C")
    done = subprocess.run([sys.executable, "-m", "lexner", "tag", "张三在北京工作"], capture_output=True, env=env)
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    assert json.loads(done.stdout.decode("utf-8"))["entities"][0]["text"] == "张三"


def test_task_files_on_windows_keep_their_drive():
    from lexner.cli import CommandError, _task_spec

    assert _task_spec("msra:C:\\data\\train.bio::D:/test.bio", windows=True) == (
        "msra", [Path("C:\\data\\train.bio"), None, Path("D:/test.bio")])
    assert _task_spec("c:C:/t.bio:d.bio", windows=True) == ("c", [Path("C:/t.bio"), Path("d.bio"), None])
    assert _task_spec("msra:train.bio:C:/dev.bio", windows=False) == (
        "msra", [Path("train.bio"), Path("C"), Path("/dev.bio")])  # elsewhere C is a file name like any other
    with pytest.raises(CommandError, match="expected NAME:TRAIN"):
        _task_spec("msra:C:", windows=True)


def test_one_task_records_its_training_file(corpus, tmp_path):
    """A single --task recorded "train_data": "None" in its model card (helper audit)."""
    write_conll(corpus, tmp_path / "toy.bio")
    assert main(["train", "--task", f"toy:{tmp_path / 'toy.bio'}:{tmp_path / 'toy.bio'}", "--out",
                 str(tmp_path / "out"), "--epochs", "1", "--char-vectors", "none", "--bigram-vectors", "none",
                 "--word-vectors", "none", "--set", "char_dim=4", "--set", "bigram_dim=4", "--set", "hidden=8",
                 "--no-progress"]) == 0
    card = json.loads((tmp_path / "out/model/config.json").read_text(encoding="utf-8"))["card"]
    assert card["train_data"].endswith("toy.bio"), card["train_data"]
    # main(argv) records the argv it ran, not the calling program's (benchmarks/run.py's own options were)
    assert card["command"].startswith("lexner train --task toy:") and "char_dim=4" in card["command"]


@pytest.mark.parametrize("argv", [["tag", "张三"], ["info"], ["evaluate", "--file", "gold.bio"]])
def test_a_closed_standard_output_is_refused_cleanly(argv, tmp_path):
    """Started with ``>&-``: tag ended in a traceback, info and evaluate exited 0 having written nothing."""
    import os

    (tmp_path / "gold.bio").write_text("张 B-PER\n三 I-PER\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "lexner", *argv], cwd=tmp_path, stderr=subprocess.PIPE,
                          preexec_fn=lambda: os.close(1))
    assert done.returncode == 2 and done.stderr.decode().strip().endswith(
        "lexner: error: standard output is closed: nowhere to write the results"), done.stderr.decode()


def test_conll_output_of_blank_command_line_texts_warns_as_for_a_file(capsys, caplog):
    """Four texts, two of them blank, read back as two CoNLL records: said, as tag --input says it."""
    with caplog.at_level("WARNING", logger="lexner"):
        assert main(["tag", "--format", "conll", "张三", "", "  ", "李四"]) == 0
    assert "2 text(s) on the command line empty or whitespace only (text 2, 3) have no record" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="lexner"):  # numbered as given, also where --errors skip left one out
        assert main(["tag", "--format", "conll", "--errors", "skip", "\udcff", "", "张三"]) == 0
    assert "1 text(s) on the command line empty or whitespace only (text 2) have no record" in caplog.text
    caplog.clear()
    capsys.readouterr()
    with caplog.at_level("WARNING", logger="lexner"):
        assert main(["tag", "张三", "", "李四"]) == 0  # jsonl: a record each
    assert "no record" not in caplog.text and len(capsys.readouterr().out.splitlines()) == 3


@pytest.mark.parametrize("argv, verbose", [(["tag", "x"], False), (["-v", "tag", "x"], True),
                                           (["tag", "-v", "x"], True), (["evaluate", "--verbose"], True)])
def test_verbose_goes_before_or_after_the_command(argv, verbose):
    """`lexner tag -v ...` was "unrecognized arguments: -v" (helper audit)."""
    from lexner.cli import build_parser

    assert build_parser().parse_args(argv).verbose is verbose


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a device that is always full)")
@pytest.mark.parametrize("argv", [["tag", "张三"], ["info"], ["evaluate", "--file", "gold.bio"]])
def test_a_full_standard_output_is_named(argv, tmp_path):
    """Results sent to a full disk said only "No space left on device", not that standard output was full."""
    (tmp_path / "gold.bio").write_text("张 B-PER\n三 I-PER\n", encoding="utf-8")
    with open("/dev/full", "w", encoding="utf-8") as full:
        done = subprocess.run([sys.executable, "-m", "lexner", *argv], cwd=tmp_path, stdout=full,
                              stderr=subprocess.PIPE)
    assert done.returncode == 2 and done.stderr.decode().strip().endswith(
        "lexner: error: standard output: cannot be written (No space left on device)"), done.stderr.decode()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a device that is always full)")
def test_a_full_output_file_is_named(tmp_path, capsys):
    (tmp_path / "in.txt").write_text("张三在北京。\n", encoding="utf-8")
    assert main(["tag", "--input", str(tmp_path / "in.txt"), "--output", "/dev/full", "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == (
        "lexner: error: --output /dev/full: cannot be written (No space left on device)")


def test_main_in_another_thread_leaves_standard_output_alone(monkeypatch):
    """sys.stdout is the process's: main() run in threads swapped it in turn and could leave its wrapper there."""
    import threading

    import lexner.cli

    seen = []
    monkeypatch.setattr(lexner.cli, "cmd_info", lambda args: seen.append(sys.stdout) or 0)
    before = sys.stdout
    thread = threading.Thread(target=lambda: seen.append(main(["info"])))
    thread.start()
    thread.join()
    assert seen == [before, 0] and sys.stdout is before
    assert main(["info"]) == 0 and type(seen[-1]).__name__ == "NamedStream" and sys.stdout is before


def test_an_export_inside_the_model_being_exported_is_refused_and_warnings_name_no_hidden_folder(tmp_path, capsys,
                                                                                                  caplog, monkeypatch):
    """`lexner export src src/sub` wrote a model inside the model (src then held more than a model: --force into it
    was refused, its size counted twice); a typo in the source's config was warned about a second time, naming
    the hidden folder being written (helper audit)."""
    import json
    import shutil

    import lexner
    from lexner.cli import main

    source = tmp_path / "src"
    shutil.copytree(lexner.load().source, source)
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    (source / "config.json").write_text(json.dumps({**config, "piece_lenght": 50}), encoding="utf-8")
    assert main(["export", str(source), str(source / "sub")]) == 2
    assert "lies inside the model directory" in capsys.readouterr().err and not (source / "sub").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x", encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # a folder given relative is named so (it was named by its absolute path)
    assert main(["export", str(source), "mine", "--force"]) == 2
    assert capsys.readouterr().err.startswith("lexner: error: mine is not empty and is not a lexner model")
    with caplog.at_level("WARNING"):
        assert main(["export", str(source), str(tmp_path / "out")]) == 0
    warned = [r.getMessage() for r in caplog.records if "piece_lenght" in r.getMessage()]
    assert len(warned) == 1 and str(source / "config.json") in warned[0], warned


def test_exported_card_cuts_a_path_holding_an_equals_sign_and_keeps_no_drive_or_root():
    """A teacher TASK=DIR whose folder holds ``=`` was cut at the last ``=`` (its tail then relative, so the
    whole machine path was kept), and a file right under a drive was written ``C:\\\\/mine.conll``."""
    from lexner.export import portable_card

    card = {"command": "lexner distill --teacher msra=/home/me/a=b/model --teacher=weibo=/home/me/w/m",
            "teachers": ["msra=/home/me/a=b/model"], "train_data": "C:\\mine.conll", "init_from": "/base"}
    out = portable_card(card, {})
    assert out["command"] == "lexner distill --teacher msra=model --teacher=weibo=m"
    assert out["teachers"] == ["msra=a=b/model"]
    assert out["train_data"] == "mine.conll" and out["init_from"] == "base"


def test_exported_card_names_only_vectors_and_lexicons_from_the_data_root():
    """The rule that names a file under an ``embeddings/`` folder from the data root was applied to teachers, the
    model continued and the training file too: ``msra=/home/me/embeddings/t1`` became
    ``$LEXNER_DATA/embeddings/t1``, a teacher of every task in a folder it never was in."""
    from lexner.export import portable_card

    card = {"teachers": ["msra=/home/me/embeddings/t1", "weibo=runs/embeddings/m"],
            "init_from": "runs/embeddings/base", "train_data": "/home/me/embeddings/x.bio"}
    out = portable_card(card, {})
    assert out["teachers"] == ["msra=embeddings/t1", "weibo=runs/embeddings/m"]
    assert out["init_from"] == "runs/embeddings/base" and out["train_data"] == "embeddings/x.bio"


def test_export_refuses_a_path_starting_with_a_tilde_before_loading_the_model(corpus, tmp_path, monkeypatch):
    """export's check before the load read "~/m" as a folder named ~ in the working directory: a model already
    in the home folder, or a folder inside the model being exported, was refused only after the model loaded."""
    import lexner.api
    from lexner.api import build_tagger

    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    build_tagger("bilstm_crf", corpus, {"char_dim": 4, "bigram_dim": 4, "hidden": 8}).save(home / "m")

    def load(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(lexner.api, "load", load)
    for command in (["export", str(home / "m"), "~/m"], ["export", "~/m", "~/m/inner"],
                    ["export", str(home / "m"), "~/m/inner"]):
        assert main(command) == 2, command
