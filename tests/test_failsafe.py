"""Fail-safe behaviour: hostile model directories never run code, commands never lose user files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings, strategies as st

import lexner
from lexner.api import build_tagger
from lexner.cli import main
from lexner.models import ModelFormatError

SMALL = {"char_dim": 4, "bigram_dim": 4, "hidden": 8}

# A transformers "remote code" module: importing it writes a marker file (transformers copies the module
# into its cache before importing it, so the marker's path is absolute).
EVIL_CODE = "import pathlib\npathlib.Path({marker!r}).write_text('ran')\n"


@pytest.fixture
def saved(corpus, tmp_path):
    build_tagger("bilstm_crf", corpus, SMALL).save(tmp_path / "m")
    return tmp_path / "m"


def plant_remote_code(folder: Path, config_name: str, auto_map: dict, extra: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in {module.split(".")[0] for module in auto_map.values() for module in
                 (module if isinstance(module, list) else [module]) if module}:
        (folder / f"{name}.py").write_text(EVIL_CODE.format(marker=str(folder / "PWNED")), encoding="utf-8")
    (folder / config_name).write_text(json.dumps({"auto_map": auto_map, **(extra or {})}), encoding="utf-8")
    return folder / "PWNED"


def copy_tiny_bert(folder: Path, skip: str = "") -> Path:
    """A copy of the tests' tiny BERT checkpoint (files with suffix ``skip`` left out)."""
    from test_bert import tiny_bert

    folder.mkdir()
    for f in tiny_bert().iterdir():
        if not (skip and f.suffix == skip):
            (folder / f.name).write_bytes(f.read_bytes())
    return folder


# a command that hangs (e.g. waiting for an answer on stdin) fails the test; the limit is generous because importing
# torch in a fresh process took over 120 s on the 2-core VM beside two trainings (eight false failures)
SUBPROCESS_TIMEOUT = 600


def run_cli(args: list[str], stdin: str = "", cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lexner", *args], input=stdin, capture_output=True, encoding="utf-8",
                          cwd=cwd, timeout=SUBPROCESS_TIMEOUT)


# --- 1. no code from a model directory -------------------------------------------------------------------
def test_a_tokenizer_folder_with_remote_code_never_runs_it(saved):
    """``tokenizer/tokenizer_config.json`` with an ``auto_map``: answering 'y' on stdin must not run its code."""
    marker = plant_remote_code(saved / "tokenizer", "tokenizer_config.json",
                               {"AutoTokenizer": ["evil_tok.EvilTokenizer", "evil_tok.EvilTokenizer"]},
                               {"tokenizer_class": "EvilTokenizer"})
    done = run_cli(["tag", "--model", str(saved), "张三"], stdin="y\ny\ny\n")
    assert not marker.exists(), "code from the model directory ran"
    assert done.returncode == 2, done.stderr
    assert "tokenizer" in done.stderr and "Traceback" not in done.stderr
    with pytest.raises(ModelFormatError, match="tokenizer"):
        lexner.load(saved)
    assert not marker.exists()


def test_a_tokenizer_folder_loads_only_from_its_data_files(saved):
    """Even next to a valid tokenizer.json, an auto_map is ignored: the tokenizer is built from the file."""
    pytest.importorskip("transformers")
    from test_bert import tiny_bert

    tokenizer = saved / "tokenizer"
    tokenizer.mkdir()
    (tokenizer / "tokenizer.json").write_bytes((tiny_bert() / "tokenizer.json").read_bytes())
    marker = plant_remote_code(tokenizer, "tokenizer_config.json",
                               {"AutoTokenizer": ["evil_tok.EvilTokenizer", "evil_tok.EvilTokenizer"]},
                               {"tokenizer_class": "EvilTokenizer", "cls_token": "[CLS]", "sep_token": "[SEP]",
                                "pad_token": "[PAD]", "unk_token": "[UNK]"})
    done = run_cli(["tag", "--model", str(saved), "张三"], stdin="y\ny\ny\n")
    assert done.returncode == 0, done.stderr
    assert not marker.exists()


def test_an_encoder_config_with_remote_code_is_refused(tmp_path):
    """A bert_path whose config asks for remote code is refused with an error naming the file."""
    pytest.importorskip("transformers")
    from lexner.models.bert import build_encoder

    checkpoint = copy_tiny_bert(tmp_path / "bert")
    config = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
    marker = plant_remote_code(checkpoint, "evil_config.json", {"AutoModel": "evil_model.EvilModel"})
    (checkpoint / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoModel": "evil_model.EvilModel",
                                                                                "AutoConfig": "evil_model.C"}}), encoding="utf-8")
    with pytest.raises(ModelFormatError, match="config.json"):
        build_encoder(str(checkpoint), {})
    # a saved lexner model's encoder config with an auto_map is refused the same way
    with pytest.raises(ModelFormatError, match="auto_map"):
        build_encoder("", {**config, "auto_map": {"AutoModel": "evil_model.EvilModel"}})
    assert not marker.exists()


def test_an_encoder_checkpoint_without_safetensors_is_refused(tmp_path):
    """Encoder weights come from safetensors only: a pytorch_model.bin (a pickle) is never read."""
    pytest.importorskip("transformers")
    import torch
    from lexner.models.bert import build_encoder

    checkpoint = copy_tiny_bert(tmp_path / "bert", skip=".safetensors")
    marker = tmp_path / "unpickled"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"x": Payload()}, checkpoint / "pytorch_model.bin")
    with pytest.raises(ModelFormatError, match="safetensors"):
        build_encoder(str(checkpoint), {})
    assert not marker.exists()


# --- 2. tag --input/--output never loses the input or an existing output ----------------------------------
def test_tag_refuses_to_write_over_its_input(saved, tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("张三在北京\n李四在上海\n", encoding="utf-8")
    before = text.read_bytes()
    assert main(["tag", "--model", str(saved), "--input", str(text), "--output", str(text)]) == 2
    assert "is the input" in capsys.readouterr().err
    assert text.read_bytes() == before
    link = tmp_path / "link.txt"  # the same file under another name (same inode)
    os.link(text, link)
    assert main(["tag", "--model", str(saved), "--input", str(text), "--output", str(link)]) == 2
    assert text.read_bytes() == before


def test_tag_keeps_an_existing_output_when_the_run_fails(saved, tmp_path, capsys, caplog):
    text = tmp_path / "t.txt"
    text.write_bytes("张三在北京\n".encode() * 10 + b"\xff\xfe bad\n")
    out = tmp_path / "out.jsonl"
    out.write_text("precious\n", encoding="utf-8")
    assert main(["tag", "--model", str(saved), "--input", str(text), "--output", str(out)]) == 2
    assert f"{text}:11" in capsys.readouterr().err
    assert out.read_text(encoding="utf-8") == "precious\n"
    # the ten lines before the bad one were tagged and kept beside it; no temporary file is left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "out.jsonl", "out.jsonl.partial", "t.txt"]
    assert len((tmp_path / "out.jsonl.partial").read_text(encoding="utf-8").splitlines()) == 10
    # a later run that succeeds leaves that file alone (it may be the user's) and says it is stale
    text.write_text("张三在北京\n" * 3, encoding="utf-8")
    assert main(["tag", "--model", str(saved), "--input", str(text), "--output", str(out), "--no-progress"]) == 0
    assert len(out.read_text(encoding="utf-8").splitlines()) == 3
    assert "out.jsonl.partial, there before this run, was left as it was" in caplog.text
    assert len((tmp_path / "out.jsonl.partial").read_text(encoding="utf-8").splitlines()) == 10


def test_tag_output_appears_whole_at_the_end(saved, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("张三在北京\n" * 5, encoding="utf-8")
    out = tmp_path / "out.jsonl"
    out.write_text("old\n", encoding="utf-8")
    out.chmod(0o640)
    assert main(["tag", "--model", str(saved), "--input", str(text), "--output", str(out), "--no-progress"]) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 5 and all(json.loads(x)["text"] == "张三在北京" for x in lines)
    assert out.stat().st_mode & 0o777 == 0o640  # the replaced file keeps its permissions


# --- 3. export never deletes what it did not write ---------------------------------------------------------
def test_export_refuses_a_non_empty_directory(saved, tmp_path, capsys):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me", encoding="utf-8")
    assert main(["export", str(saved), str(target)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["export", str(saved), str(target), "--force"]) == 2  # --force never replaces a non-model
    assert "not a lexner model" in capsys.readouterr().err
    assert (target / "notes.txt").read_text(encoding="utf-8") == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "mine"]  # no temporary directory left


def test_export_into_the_current_directory_is_refused_cleanly(saved, tmp_path):
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "file.txt").write_text("x", encoding="utf-8")
    done = run_cli(["export", str(saved), "."], cwd=tmp_path / "work")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["file.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "work"]


def test_export_replaces_a_model_only_with_force(saved, tmp_path, capsys):
    target = tmp_path / "copy"
    assert main(["export", str(saved), str(target)]) == 0
    assert main(["export", str(saved), str(target), "--half"]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["export", str(saved), str(target), "--half", "--force"]) == 0
    assert lexner.load(target).tag("张三在北京") is not None
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["export", str(saved), str(empty)]) == 0  # an empty directory is fine
    assert (empty / "config.json").is_file()


def test_export_below_a_file_names_the_file_that_is_in_the_way(saved, tmp_path, capsys):
    (tmp_path / "afile").write_text("mine", encoding="utf-8")
    assert main(["export", str(saved), str(tmp_path / "afile" / "copy")]) == 2
    assert f"{tmp_path / 'afile'} is a file, not a directory" in capsys.readouterr().err
    assert (tmp_path / "afile").read_text(encoding="utf-8") == "mine"
    assert main(["export", str(saved), str(tmp_path / "new" / "deeper" / "copy")]) == 0  # missing folders are made


# --- 4. invalid UTF-8 in tag --input: nothing before the bad line is lost; --errors -----------------------
def test_save_refuses_a_folder_holding_other_files_and_leaves_them(saved, tmp_path):
    """``tagger.save(".")`` in a project folder would have overwritten its config.json."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.json").write_text("{\"mine\": 1}", encoding="utf-8")
    (project / "notes.txt").write_text("keep", encoding="utf-8")
    tagger = lexner.load(saved)
    with pytest.raises(ValueError, match="not empty and is not a lexner model directory; nothing was written"):
        tagger.save(project)
    assert sorted(p.name for p in project.iterdir()) == ["config.json", "notes.txt"]
    assert (project / "config.json").read_text(encoding="utf-8") == "{\"mine\": 1}"
    with pytest.raises(ValueError, match="exists and is not a directory"):
        tagger.save(project / "notes.txt")


def test_save_over_a_model_replaces_it_whole(corpus, saved, tmp_path, monkeypatch):
    """A bilstm_crf saved over a softlexicon model: the old lexicon.json would have been read with it."""
    from lexner.lexicon import Lexicon

    folder = tmp_path / "over"
    build_tagger("softlexicon", corpus, {"char_dim": 4, "bigram_dim": 4, "word_dim": 4, "hidden": 8},
                 lexicon=Lexicon(["北京", "上海"])).save(folder)
    assert (folder / "lexicon.json").is_file()
    lexner.load(saved).save(folder)
    assert not (folder / "lexicon.json").exists()
    again = lexner.load(folder)
    assert again.name == "bilstm_crf" and again.featurizer.lexicon is None
    empty = tmp_path / "empty"
    empty.mkdir()
    again.save(empty)  # an existing empty folder: written in place
    assert lexner.load(empty).name == "bilstm_crf"
    link = tmp_path / "link"
    link.symlink_to(folder, target_is_directory=True)
    build_tagger("softlexicon", corpus, {"char_dim": 4, "bigram_dim": 4, "word_dim": 4, "hidden": 8},
                 lexicon=Lexicon(["北京"])).save(link)  # through a link: the folder it points to is replaced
    assert link.is_symlink() and lexner.load(folder).name == "softlexicon"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "link", "m", "over"]  # nothing left over
    # the current directory holding a model: replacing it whole would delete the working directory
    monkeypatch.chdir(folder)
    with pytest.raises(ValueError, match="holds the current directory"):
        again.save(".")
    assert lexner.load(folder).name == "softlexicon" and Path.cwd() == folder.resolve()


def test_a_loaded_model_saved_again_keeps_its_card_and_runtime(saved, tmp_path):
    """A model's card (how it was trained) and runtime were dropped by save() unless given again."""
    card = {"train_data": "msra", "command": "lexner train ..."}
    lexner.load(saved).save(tmp_path / "carded", extra={"card": card, "runtime": "torch-bf16"})
    loaded = lexner.load(tmp_path / "carded")
    assert loaded.runtime == "torch-bf16"
    loaded.save(tmp_path / "again")
    meta = json.loads((tmp_path / "again" / "config.json").read_text(encoding="utf-8"))
    assert meta["card"] == card and meta["runtime"] == "torch-bf16"
    # and float16 weights stay float16 (the bundled model doubled in size when saved again)
    lexner.load(saved).save(tmp_path / "half", half=True)
    lexner.load(tmp_path / "half").save(tmp_path / "half2")
    assert lexner.load(tmp_path / "half2").stored_half
    sizes = [(tmp_path / name / "model.safetensors").stat().st_size for name in ("half", "half2")]
    assert sizes[0] == sizes[1]


@pytest.fixture(scope="module")
def bad_utf8_input(tmp_path_factory):
    path = tmp_path_factory.mktemp("input") / "in.txt"
    lines = [f"张三{i}在北京".encode() for i in range(1, 401)]
    lines[299] = b"\xff\xfe bad line " + lines[299]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.mark.parametrize("workers", ["1", "2"])
def test_tag_writes_every_line_before_invalid_utf8_and_names_it(saved, bad_utf8_input, workers):
    done = run_cli(["tag", "--model", str(saved), "--input", str(bad_utf8_input), "--batch-size", "4",
                    "--workers", workers, "--no-progress"])
    assert done.returncode == 2
    assert f"{bad_utf8_input}:300: not valid UTF-8" in done.stderr
    texts = [json.loads(x)["text"] for x in done.stdout.splitlines()]
    assert texts == [f"张三{i}在北京" for i in range(1, 300)]


def test_tag_errors_skip_and_replace(saved, bad_utf8_input, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    common = ["tag", "--model", str(saved), "--input", str(bad_utf8_input), "--output", str(out), "--no-progress"]
    assert main([*common, "--errors", "skip"]) == 0
    texts = [json.loads(x)["text"] for x in out.read_text(encoding="utf-8").splitlines()]
    assert texts == [f"张三{i}在北京" for i in range(1, 401) if i != 300]
    assert main([*common, "--errors", "replace"]) == 0
    texts = [json.loads(x)["text"] for x in out.read_text(encoding="utf-8").splitlines()]
    assert len(texts) == 400 and texts[299] == "\ufffd\ufffd bad line 张三300在北京"


def test_skipped_lines_are_reported_with_their_numbers(saved, bad_utf8_input):
    done = run_cli(["tag", "--model", str(saved), "--input", str(bad_utf8_input), "--errors", "skip",
                    "--no-progress"])
    assert done.returncode == 0 and "skipped 1 line(s)" in done.stderr and "line 300" in done.stderr


# --- 6. tag_batch takes any iterable -------------------------------------------------------------------------
def test_tag_batch_takes_a_generator(saved):
    tagger = lexner.load(saved)
    texts = ["张三在北京", "李四去了上海", ""]
    assert tagger.tag_batch(t for t in texts) == tagger.tag_batch(texts)
    assert len(tagger.tag_batch(iter(texts))) == 3
    with pytest.raises(TypeError, match="iterable of str"):
        tagger.tag_batch(42)


# --- 14. lexner tag: stdin, a lone CR, a directory as input --------------------------------------------------
def test_tag_reads_standard_input_and_only_lf_ends_a_line(saved):
    raw = "张三在北京\r李四在上海\n王五\r\n赵六\n"
    done = run_cli(["tag", "--model", str(saved), "--input", "-", "--no-progress"], stdin=raw)
    assert done.returncode == 0, done.stderr
    texts = [json.loads(x)["text"] for x in done.stdout.splitlines()]
    assert texts == ["张三在北京\r李四在上海", "王五", "赵六"]  # a lone CR stays inside its line; CRLF ends one


def test_tag_input_directory_says_so(saved, tmp_path, capsys):
    assert main(["tag", "--model", str(saved), "--input", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


# --- 8. lone surrogates are refused where they enter; saves never truncate a model ------------------------
def test_a_lone_surrogate_in_training_jsonl_is_refused_with_file_and_line(tmp_path):
    from lexner.data import read_jsonl
    from lexner.fileio import DataFormatError

    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "张三", "entities": []}\n{"text": "新冠\\ud83d病毒", "entities": []}\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"train.jsonl:2: .*lone surrogate U\+D83D at character 2"):
        read_jsonl(path)


def test_adding_a_word_with_a_lone_surrogate_is_refused_and_the_model_still_loads(corpus, tmp_path):
    from lexner.lexicon import Lexicon

    build_tagger("softlexicon", corpus, {"char_dim": 4, "bigram_dim": 4, "word_dim": 4, "hidden": 8},
                 lexicon=Lexicon(["北京", "上海"])).save(tmp_path / "m")
    tagger = lexner.load(tmp_path / "m")
    with pytest.raises(ValueError, match="lone surrogate"):
        tagger.add_words(["新冠\ud83d病毒"])
    tagger.save(tmp_path / "m")
    assert lexner.load(tmp_path / "m").tag("张三在北京") is not None


def test_a_failing_save_leaves_the_files_it_did_not_finish_intact(saved, monkeypatch):
    """Each file is written under a temporary name and renamed: a failure while writing one (here, text
    that UTF-8 cannot hold) leaves that file as it was and no temporary file behind."""
    from lexner.fileio import write_json

    before = (saved / "chars.json").read_bytes()
    with pytest.raises(UnicodeEncodeError):
        write_json(saved / "chars.json", ["\ud83d"])
    assert (saved / "chars.json").read_bytes() == before
    assert not [p for p in saved.iterdir() if p.name.startswith(".")]


# --- 9. every model file gets the usual permissions ----------------------------------------------------------
def test_model_files_have_the_same_permissions(corpus, tmp_path):
    old = os.umask(0o022)
    try:
        build_tagger("bilstm_crf", corpus, SMALL).save(tmp_path / "m")
        modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "m").iterdir()}
    finally:
        os.umask(old)
    assert modes["model.safetensors"] == 0o644, modes
    assert set(modes.values()) == {0o644}, modes


# --- 11. one training per output directory --------------------------------------------------------------------
def test_a_second_training_into_the_same_directory_is_refused(corpus, tmp_path):
    from lexner.train import Trainer, TrainConfig, TrainingError

    out = tmp_path / "run"
    first = Trainer(build_tagger("bilstm_crf", corpus, SMALL), TrainConfig(epochs=1), out, progress=False)
    first._take_lock()
    code = ("import sys; from lexner.train import lock_directory; from pathlib import Path\n"
            "try:\n    lock_directory(Path(sys.argv[1]))\nexcept Exception as e:\n    print(e); sys.exit(3)\n")
    done = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, encoding="utf-8")
    assert done.returncode == 3 and f"pid {os.getpid()}" in done.stdout, done
    second = Trainer(build_tagger("bilstm_crf", corpus, SMALL), TrainConfig(epochs=1), out, progress=False)
    with pytest.raises(TrainingError, match="in use by another training"):
        second.fit(corpus[:15], corpus[15:])  # fcntl locks are per open file: refused in-process too
    first._release_lock()
    second.fit(corpus[:15], corpus[15:])  # free again once the first one is done
    assert second._lock is None  # fit releases it at its end


def test_the_training_lock_on_windows_is_one_byte_past_the_pid(tmp_path, monkeypatch):
    """Windows has no fcntl: msvcrt locks a byte range (others cannot read it), so the byte locked lies past the
    holder's pid, which a refused second training still reads."""
    import types
    from lexner import train

    calls = []

    def locking(fd, mode, count):
        calls.append((os.lseek(fd, 0, os.SEEK_CUR), mode, count))
        if len(calls) > 1:
            raise PermissionError(13, "Permission denied")

    monkeypatch.setitem(sys.modules, "fcntl", None)  # import fcntl raises ImportError, as on Windows
    monkeypatch.setitem(sys.modules, "msvcrt", types.SimpleNamespace(locking=locking, LK_NBLCK=2))
    held = train.lock_directory(tmp_path)
    assert calls == [(train.LOCKED_BYTE, 2, 1)]
    with pytest.raises(train.TrainingError, match=f"in use by another training \\(pid {os.getpid()}\\)"):
        train.lock_directory(tmp_path)
    held.close()


def test_a_folder_holding_only_the_lock_goes_also_where_an_open_file_cannot_be_deleted(corpus, tmp_path,
                                                                                         monkeypatch):
    """Windows refuses to delete an open file: the lock file is deleted once closed, and the folder the trainer
    made goes (the unlink raised PermissionError out of the refused run; helper review)."""
    import pathlib

    from lexner.train import Trainer, TrainConfig

    out = tmp_path / "run"
    trainer = Trainer(build_tagger("bilstm_crf", corpus, SMALL), TrainConfig(epochs=1), out, progress=False)
    trainer._take_lock()
    unlink, calls = pathlib.Path.unlink, []

    def windows_unlink(self, missing_ok=False):
        calls.append(trainer._lock is None)
        if trainer._lock is not None:  # still open
            raise PermissionError(13, "The process cannot access the file", str(self))
        unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(pathlib.Path, "unlink", windows_unlink)
    trainer._release_lock()
    assert calls == [False, True] and not out.exists()


# --- 12. training options are validated before any work ----------------------------------------------------
@pytest.mark.parametrize("option, value, message", [
    ("--batch-size", "0", "batch_size must be an integer ≥ 1"),
    ("--lr-decay", "-1", "lr_decay must be a finite number ≥ 0"),
    ("--epochs", "0", "epochs must be an integer ≥ 1"),
    ("--patience", "-1", "patience must be an integer ≥ 0"),
    ("--threads", "-2", "--threads: expected an integer ≥ 0, got '-2'"),
    ("--lr", "nan", "lr must be a finite number > 0"),
    ("--warmup", "2", "warmup must be a finite number ≥ 0 and ≤ 1"),
])
def test_bad_training_options_fail_cleanly_before_any_work(tmp_path, capsys, option, value, message):
    out = tmp_path / "run"
    try:
        code = main(["train", "--train", "missing.txt", "--dev", "missing.txt", "--out", str(out), option, value])
    except SystemExit as exit:  # refused by the option parser
        code = exit.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_empty_training_or_dev_data_is_refused(corpus, tmp_path, capsys):
    from lexner.data import write_jsonl

    write_jsonl(corpus[:10], tmp_path / "train.jsonl")
    (tmp_path / "empty.jsonl").write_text("", encoding="utf-8")
    common = ["train", "--out", str(tmp_path / "run"), "--epochs", "1", "--no-progress", "--set", "hidden=8"]
    assert main([*common, "--train", str(tmp_path / "empty.jsonl"), "--dev", str(tmp_path / "train.jsonl")]) == 2
    assert "empty.jsonl: no training sentences" in capsys.readouterr().err
    assert main([*common, "--train", str(tmp_path / "train.jsonl"), "--dev", str(tmp_path / "empty.jsonl")]) == 2
    assert "empty.jsonl: no dev sentences" in capsys.readouterr().err
    assert main([*common, "--train", str(tmp_path / "train.jsonl"), "--test", str(tmp_path / "empty.jsonl")]) == 2
    assert "empty.jsonl: no test sentences" in capsys.readouterr().err  # not a score of 0 over nothing
    from lexner.data import Sentence
    from lexner.schemes import Span

    # the one sentence with entities drawn into the dev split carved from the file (10 % of 2: one sentence)
    from lexner.data import TRAIN_DEV_SEED, carve

    plain, named = Sentence("他在那里", []), Sentence("张三在北京", [Span(0, 2, "PER")])
    pair = [plain, named] if carve([0, 1], 1, TRAIN_DEV_SEED, "x")[0] == [1] else [named, plain]
    write_jsonl(pair, tmp_path / "two.jsonl")
    assert main([*common, "--train", str(tmp_path / "two.jsonl"), "--char-vectors", "none", "--bigram-vectors",
                 "none"]) == 2
    assert "two.jsonl: every sentence with entities went to the dev split carved from it" in capsys.readouterr().err
    write_jsonl([Sentence("张三在北京", [Span(0, 2, "name")])], tmp_path / "other.jsonl")  # another corpus's types
    assert main([*common, "--train", str(tmp_path / "train.jsonl"), "--dev", str(tmp_path / "other.jsonl"),
                 "--char-vectors", "none", "--bigram-vectors", "none"]) == 2
    assert "the dev sentences have none of the model's entity types (LOC, PER) but name" in capsys.readouterr().err
    assert not (tmp_path / "run" / "model").exists()


def test_a_nan_in_the_first_epoch_says_there_is_no_checkpoint_yet(corpus, tmp_path, monkeypatch):
    from lexner.train import Trainer, TrainConfig, TrainingError

    tagger = build_tagger("bilstm_crf", corpus, SMALL)
    monkeypatch.setattr(tagger, "loss", lambda batch: nan_loss(tagger, batch))
    trainer = Trainer(tagger, TrainConfig(epochs=2), tmp_path / "run", progress=False)
    with pytest.raises(TrainingError, match="no epoch had finished, so there is no checkpoint yet"):
        trainer.fit(corpus[:15], corpus[15:])


# --- 7. hostile config.json / vocabulary files fail cleanly, before any large allocation --------------------
def edit(path: Path, **changes):
    meta = json.loads((path / "config.json").read_text(encoding="utf-8"))
    for key, value in changes.items():
        if key.startswith("config."):
            meta["config"][key.removeprefix("config.")] = value
        elif key in meta["config"]:
            meta["config"][key] = value
        else:
            meta[key] = value
    (path / "config.json").write_text(json.dumps(meta), encoding="utf-8")


def test_a_misspelt_config_key_is_named_but_a_saver_s_own_metadata_is_quiet(saved, caplog):
    edit(saved, runtme="onnx-int8", piece_lenght=10, trained_by="me")
    with caplog.at_level("WARNING"):
        lexner.load(saved)
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 2 and all("config.json" in w for w in warned)
    assert "'runtme' is not a key lexner reads; did you mean 'runtime'?" in warned[0]
    assert "did you mean 'piece_length'?" in warned[1]


@pytest.mark.parametrize("changes, message", [
    ({"hidden": "64"}, "config hidden must be an integer"),
    ({"hidden": 10**9}, "sizes cannot be built|weights do not match"),  # 800 GB implied: refused, nothing committed
    ({"hidden": 2**40}, "config hidden must be an integer in"),
    ({"layers": 10**6}, "config layers must be an integer in"),
    ({"dropout": float("nan")}, "NaN is not a JSON number"),  # refused as it is read
    ({"hidden": 12000}, "weights do not match config.json: lstm"),
    ({"config.bogus": 1}, "config keys \\['bogus'\\] are not settings of bilstm_crf"),
    ({"config": None}, "'config' must be a JSON object"),
    ({"entity_types": ["PER", 3]}, "'entity_types' must be a list of at most 1000 distinct type names"),
    ({"entity_types": ["PER", "A B"]}, "'entity_types' must be a list of at most 1000 distinct type names"),
    ({"entity_types": ["PER", "\ud800"]}, "'entity_types' must be a list of at most 1000"),  # UTF-8 cannot store it
    ({"entity_types": [f"T{i}" for i in range(3000)]}, "at most 1000"),  # refused at once (its CRF took a minute)
    ({"piece_length": 10**12}, "'piece_length': the piece length must be an integer from 1 to 5000"),
    ({"model": ["x"]}, "'model' must name a tagger"),
    ({"model": "nosuch"}, "config.json: unknown model 'nosuch'"),
])
def test_hostile_config_values_are_model_format_errors_naming_the_file(saved, changes, message):
    edit(saved, **changes)
    with pytest.raises(ModelFormatError, match=message) as err:
        lexner.load(saved)
    assert "config.json" in str(err.value) or "model.safetensors" in str(err.value)


def test_an_integer_python_will_not_read_is_a_model_format_error_naming_the_file(saved):
    text = (saved / "config.json").read_text(encoding="utf-8")
    (saved / "config.json").write_text(text.replace('"hidden": ', '"hidden": ' + "9" * 5000 + ", \"x\": ", 1), encoding="utf-8")
    with pytest.raises(ModelFormatError, match="config.json: cannot be read as JSON: Exceeds the limit"):
        lexner.load(saved)


def test_a_lexicon_word_of_a_million_characters_is_never_matched_and_crashes_nothing(tmp_path):
    """pyahocorasick's automaton frees a word's nodes recursively: a word of ~1M characters overflowed the C
    stack when a model was dropped (a segmentation fault after tagging).  Such a word is never matched."""
    import shutil

    shutil.copytree(lexner.api.DEFAULT_MODEL, tmp_path / "m")
    lexicon = json.loads((tmp_path / "m" / "lexicon.json").read_text(encoding="utf-8"))
    lexicon["words"][-1] = "北" * 1_000_000
    (tmp_path / "m" / "lexicon.json").write_text(json.dumps(lexicon, ensure_ascii=False), encoding="utf-8")
    code = ("import lexner, sys\nner = lexner.load(sys.argv[1])\n"
            "print([e.text for e in ner.tag('张三在北京' + '北' * 2000)])\ndel ner\nprint('freed')\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m")], capture_output=True, encoding="utf-8",
                          timeout=SUBPROCESS_TIMEOUT)
    assert done.returncode == 0 and done.stdout.split("\n")[1] == "freed", (done.returncode, done.stderr[-500:])


def test_a_missing_config_key_is_a_model_format_error(saved):
    meta = json.loads((saved / "config.json").read_text(encoding="utf-8"))
    del meta["config"]
    (saved / "config.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(ModelFormatError, match="config.json: 'config' must be a JSON object"):
        lexner.load(saved)


def test_a_large_config_is_refused_before_memory_is_allocated(saved):
    """hidden=12000 implies 1.4 GB of LSTM weights: refused from the safetensors header, peak memory small."""
    edit(saved, hidden=12000)
    code = ("import resource, lexner, sys\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "try:\n    lexner.load(sys.argv[1])\nexcept lexner.models.ModelFormatError:\n    pass\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n")
    done = subprocess.run([sys.executable, "-c", code, str(saved)], capture_output=True, encoding="utf-8",
                          timeout=SUBPROCESS_TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.strip()) < 200, f"peak memory grew by {done.stdout.strip()} MB"


def test_deeply_nested_json_is_a_model_format_error(saved):
    (saved / "config.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    with pytest.raises(ModelFormatError, match="nested too deeply|expected a JSON object"):
        lexner.load(saved)


def test_vocabulary_that_is_a_fifo_or_a_device_is_never_read(saved):
    (saved / "chars.json").unlink()
    os.mkfifo(saved / "chars.json")
    code = "import lexner, sys\ntry:\n    lexner.load(sys.argv[1])\nexcept lexner.models.ModelFormatError as e:\n    print(e)\n"
    done = subprocess.run([sys.executable, "-c", code, str(saved)], capture_output=True, encoding="utf-8", timeout=60)
    assert "chars.json: not a regular file" in done.stdout, done
    (saved / "chars.json").unlink()
    (saved / "chars.json").symlink_to("/dev/zero")
    done = subprocess.run([sys.executable, "-c", code, str(saved)], capture_output=True, encoding="utf-8", timeout=60)
    assert "chars.json: not a regular file" in done.stdout, done


def test_bad_vocabulary_and_lexicon_contents_are_model_format_errors(corpus, tmp_path):
    from lexner.lexicon import Lexicon

    model = tmp_path / "soft"
    build_tagger("softlexicon", corpus, {"char_dim": 4, "bigram_dim": 4, "word_dim": 4, "hidden": 8},
                 lexicon=Lexicon(["北京", "上海"])).save(model)
    lexicon = json.loads((model / "lexicon.json").read_text(encoding="utf-8"))
    (model / "lexicon.json").write_text(json.dumps({**lexicon, "words": ["北京", 3]}), encoding="utf-8")
    with pytest.raises(ModelFormatError, match="lexicon.json: every word must be a string"):
        lexner.load(model)
    (model / "lexicon.json").write_text(json.dumps({**lexicon, "min_length": 10**9}), encoding="utf-8")
    with pytest.raises(ModelFormatError, match="lexicon.json: min_length must be an integer"):
        lexner.load(model)
    (model / "lexicon.json").unlink()
    with pytest.raises(ModelFormatError, match="lexicon.json: missing, and a softlexicon model reads lexicon words"):
        lexner.load(model)
    (model / "lexicon.json").symlink_to("/dev/zero")  # named for what it is, not as missing
    with pytest.raises(ModelFormatError, match="lexicon.json: not a regular file"):
        lexner.load(model)
    (model / "lexicon.json").unlink()
    (model / "lexicon.json").write_text(json.dumps(lexicon), encoding="utf-8")
    chars = json.loads((model / "chars.json").read_text(encoding="utf-8"))
    (model / "chars.json").write_text(json.dumps(chars + [None]), encoding="utf-8")
    with pytest.raises(ModelFormatError, match="chars.json: every token must be a non-empty string"):
        lexner.load(model)
    (model / "chars.json").write_bytes(b"\xff\xfe")
    with pytest.raises(ModelFormatError, match="chars.json: not valid UTF-8"):
        lexner.load(model)


@pytest.mark.parametrize("corrupt", ["int", "nan", "1e30", "-2e6"])
def test_integer_nan_or_absurdly_large_weights_do_not_load(saved, corrupt):
    """A finite but absurd weight (1e30 in the output layer tagged everything O, silently) is refused too."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(saved / "model.safetensors"))
    key = next(k for k in state if k.endswith("weight"))
    if corrupt == "int":
        state[key] = state[key].long()
    else:
        state[key].view(-1)[-1] = float(corrupt)
    save_file(state, str(saved / "model.safetensors"))
    with pytest.raises(ModelFormatError, match="dtype I64|NaN, infinite or absurdly large"):
        lexner.load(saved)


# --- CI fuzz: random bytes through `lexner tag --input` ------------------------------------------------------
@settings(max_examples=int(os.environ.get("LEXNER_FUZZ_EXAMPLES", "25")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))
@example(data=b"\xef")  # half a byte-order mark (found by this test)
def test_tag_input_survives_random_bytes(saved, tmp_path_factory, data):
    """Any bytes: with --errors replace every LF-separated line gives one record whose offsets are exact; with
    --errors strict either the same or a clean error naming the first bad line."""
    folder = tmp_path_factory.mktemp("fuzz")
    source, out = folder / "in.txt", folder / "out.jsonl"
    source.write_bytes(data)
    assert main(["tag", "--model", str(saved), "--input", str(source), "--output", str(out), "--errors", "replace",
                 "--no-progress"]) == 0
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data  # a BOM is dropped
    expected = body.split(b"\n")
    if expected and expected[-1] == b"":
        expected.pop()
    assert len(records) == len(expected)
    for record in records:
        for e in record["entities"]:
            assert record["text"][e["start"]:e["end"]] == e["text"]


def train_cli(corpus, tmp_path, out, *extra, epochs=1):
    from lexner.data import write_jsonl

    write_jsonl(corpus[:15], tmp_path / "train.jsonl")
    write_jsonl(corpus[15:], tmp_path / "dev.jsonl")
    return main(["train", "--train", str(tmp_path / "train.jsonl"), "--dev", str(tmp_path / "dev.jsonl"),
                 "--out", str(out), "--epochs", str(epochs), "--set", "hidden=8", "--set", "char_dim=4",
                 "--set", "bigram_dim=4", "--char-vectors", "none", "--bigram-vectors", "none", "--no-progress",
                 *extra])


def test_a_new_training_never_replaces_a_previous_run_unasked(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_cli(corpus, tmp_path, out) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".lock"}
    capsys.readouterr()
    code = main(["train", "--train", str(tmp_path / "missing.jsonl"), "--out", str(out), "--epochs", "1"])
    assert code == 2  # refused before the (missing) data is even read
    err = capsys.readouterr().err
    assert "holds a previous run" in err and "--resume" in err and "--force" in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".lock"} == before


def test_force_replaces_only_the_previous_runs_files(corpus, tmp_path):
    out = tmp_path / "run"
    assert train_cli(corpus, tmp_path, out) == 0
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    assert train_cli(corpus, tmp_path, out, "--force", "--seed", "2") == 0
    assert (out / "notes.txt").read_text(encoding="utf-8") == "mine"
    records = [json.loads(line) for line in (out / "log.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r.get("epoch") for r in records if "final" not in r] == [1] and sum("final" in r for r in records) == 1
    assert json.loads((out / "train_config.json").read_text(encoding="utf-8"))["seed"] == 2
    assert not (out / ".replaced").exists()  # the replaced run is deleted once the new one has a checkpoint


def test_training_saves_checkpoints_and_replaces_a_run_with_windows_renames(corpus, tmp_path, windows_renames):
    """Every save after the first (each epoch's checkpoint, the best model) moved a folder onto an empty one,
    which Windows refuses: training stopped at its second save with PermissionError."""
    out = tmp_path / "run"
    assert train_cli(corpus, tmp_path, out, epochs=3) == 0
    assert train_cli(corpus, tmp_path, out, "--force", "--seed", "2") == 0
    assert lexner.load(out / "model").tag(corpus[0].text) is not None
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".") and p.name != ".lock") == []


def test_export_replaces_and_rewrites_a_model_with_windows_file_semantics(saved, tmp_path, windows_open_files,
                                                                           windows_fsync):
    """An export into a new folder, over an exported model (--force) and over its own source (M M --force --half,
    the source loaded and held by this process meanwhile) under Windows' renames, flushes and open files."""
    copy = tmp_path / "copy"
    for command in (["export", str(saved), str(copy)], ["export", str(saved), str(copy), "--force"],
                    ["export", str(copy), str(copy), "--force", "--half"]):
        assert main(command) == 0, command
    assert lexner.load(copy).tag("张三在北京") == lexner.load(saved).tag("张三在北京")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy", "m"]


def test_resume_after_a_force_run_stopped_before_its_checkpoint_keeps_the_run_it_was_replacing(corpus, tmp_path,
                                                                                                   capsys):
    from lexner.train import set_aside_previous_run

    out = tmp_path / "run"
    assert train_cli(corpus, tmp_path, out) == 0
    config = (out / "train_config.json").read_text(encoding="utf-8")
    set_aside_previous_run(out)  # what --force does first; the run stopped before its first checkpoint:
    (out / "train_config.json").write_text(config, encoding="utf-8")  # only its settings were written
    kept = {p.relative_to(out): p.read_bytes() for p in (out / ".replaced").rglob("*") if p.is_file()}
    capsys.readouterr()
    assert train_cli(corpus, tmp_path, out, "--resume") == 2  # not "no checkpoint: starting from scratch"
    assert "holds the run that a --force run here was replacing" in capsys.readouterr().err
    assert {p.relative_to(out): p.read_bytes() for p in (out / ".replaced").rglob("*") if p.is_file()} == kept
    assert train_cli(corpus, tmp_path, out, "--force") == 0 and not (out / ".replaced").exists()


def test_an_out_that_is_a_file_is_refused_before_any_work(corpus, tmp_path, capsys):
    (tmp_path / "afile").write_text("keep me", encoding="utf-8")
    assert train_cli(corpus, tmp_path, tmp_path / "afile") == 2
    assert "exists and is not a directory" in capsys.readouterr().err
    assert (tmp_path / "afile").read_text(encoding="utf-8") == "keep me"


def test_an_out_inside_a_saved_model_or_checkpoint_is_refused(corpus, tmp_path, capsys, monkeypatch):
    """A run's model/ and checkpoint/ (and a model directory itself) are replaced whole when saved again: a
    run written inside one would be lost."""
    run = tmp_path / "run"
    assert train_cli(corpus, tmp_path, run) == 0
    for out in (run / "model", run / "model" / "nested", run / "checkpoint" / "x"):
        assert train_cli(corpus, tmp_path, out) == 2
        assert "a saved model or checkpoint, replaced whole when saved again" in capsys.readouterr().err
    assert not (run / "model" / "nested").exists() and not (run / "checkpoint" / "x").exists()
    exported = tmp_path / "exported"
    assert main(["export", str(run / "model"), str(exported)]) == 0
    assert train_cli(corpus, tmp_path, exported) == 2
    assert f"{exported} is a saved model or checkpoint" in capsys.readouterr().err
    monkeypatch.chdir(run / "model")  # a path through the current folder: ../../other is beside run, not inside it
    assert train_cli(corpus, tmp_path, Path("../../other")) == 0


def test_force_refuses_a_model_it_reads_from_inside_the_run_it_replaces(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert train_cli(corpus, tmp_path, run) == 0
    before = (run / "model" / "model.safetensors").read_bytes()
    files = ["--train", str(tmp_path / "train.jsonl"), "--dev", str(tmp_path / "dev.jsonl"), "--no-progress",
             "--epochs", "1"]
    assert main(["train", "--init-from", str(run / "model"), "--out", str(run), "--force", *files]) == 2
    assert f"--init-from {run / 'model'} lies inside the run in --out {run} that --force replaces" in capsys.readouterr().err
    assert main(["distill", "--teacher", str(run / "model"), "--out", str(run), "--force", *files,
                 "--char-vectors", "none", "--bigram-vectors", "none"]) == 2
    assert f"--teacher {run / 'model'} lies inside the run" in capsys.readouterr().err
    assert (run / "model" / "model.safetensors").read_bytes() == before and not (run / ".replaced").exists()
    assert main(["export", str(run / "model"), str(run / "base")]) == 0  # a folder of the user's: not moved
    base = (run / "base" / "model.safetensors").read_bytes()
    assert main(["train", "--init-from", str(run / "base"), "--out", str(run), "--force", *files]) == 0
    assert (run / "base" / "model.safetensors").read_bytes() == base


def nan_loss(self, batch):
    """A loss that became NaN, as a real one does: still part of the graph, so backward runs."""
    return next(self.parameters()).sum() * float("nan")


def test_a_forced_run_that_fails_before_its_first_checkpoint_keeps_the_replaced_run(corpus, tmp_path, monkeypatch):
    from lexner.train import TrainConfig, Trainer, TrainingError

    config = TrainConfig(epochs=1, batch_size=8)
    Trainer(build_tagger("bilstm_crf", corpus, SMALL), config, tmp_path, progress=False).fit(corpus, corpus)
    before = (tmp_path / "model" / "model.safetensors").read_bytes()
    forced = Trainer(build_tagger("bilstm_crf", corpus, SMALL), config, tmp_path, progress=False, replace=True)
    monkeypatch.setattr(type(forced.model), "loss", nan_loss)
    with pytest.raises(TrainingError, match="loss became nan"):
        forced.fit(corpus, corpus)
    assert (tmp_path / ".replaced" / "model" / "model.safetensors").read_bytes() == before
    assert not (tmp_path / "model").exists()
    (tmp_path / "model").mkdir()  # what a failed attempt may leave (a model of a first epoch, no checkpoint)
    again = Trainer(build_tagger("bilstm_crf", corpus, SMALL), config, tmp_path, progress=False, replace=True)
    monkeypatch.setattr(type(again.model), "loss", nan_loss)
    with pytest.raises(TrainingError, match="loss became nan"):  # tried again: the replaced run is still kept
        again.fit(corpus, corpus)
    assert (tmp_path / ".replaced" / "model" / "model.safetensors").read_bytes() == before
    assert not (tmp_path / "model").exists()


def test_resume_without_a_checkpoint_does_not_overwrite_a_previous_run(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_cli(corpus, tmp_path, out) == 0
    import shutil

    shutil.rmtree(out / "checkpoint")
    before = (out / "model" / "model.safetensors").read_bytes()
    assert train_cli(corpus, tmp_path, out, "--resume") == 2
    assert "holds a previous run but no checkpoint to resume from" in capsys.readouterr().err
    assert (out / "model" / "model.safetensors").read_bytes() == before


def test_resume_starts_again_a_run_stopped_before_its_first_checkpoint(corpus, tmp_path, caplog):
    out = tmp_path / "run"
    out.mkdir()
    (out / "train_config.json").write_text("{}", encoding="utf-8")  # all a run writes before its first epoch ends
    with caplog.at_level("INFO", logger="lexner"):
        assert train_cli(corpus, tmp_path, out, "--resume") == 0
    assert "starting from scratch" in caplog.text
    assert (out / "model" / "model.safetensors").exists()
    assert json.loads((out / "train_config.json").read_text(encoding="utf-8"))  # rewritten by the new run


def test_a_folder_a_training_runs_in_is_refused_naming_it(corpus, tmp_path, capsys):
    from lexner.train import TrainConfig, Trainer

    running = Trainer(build_tagger("bilstm_crf", corpus, SMALL), TrainConfig(epochs=1), tmp_path / "run",
                      progress=False)
    running.resume()  # holds the folder's lock, as a training does from its start to its end
    assert train_cli(corpus, tmp_path, tmp_path / "run", "--force") == 2
    assert f"in use by another training (pid {os.getpid()})" in capsys.readouterr().err
    running._release_lock()


def test_a_run_that_ends_while_another_prepares_its_data_is_not_overwritten(corpus, tmp_path, monkeypatch):
    """The folder is locked before the data's preparation, and its previous run looked for under the lock."""
    from lexner.train import TrainConfig, Trainer, TrainingError

    config = TrainConfig(epochs=1, batch_size=8)
    late = Trainer(build_tagger("bilstm_crf", corpus, SMALL), config, tmp_path / "run", progress=False)
    first = Trainer(build_tagger("bilstm_crf", corpus, SMALL), config, tmp_path / "run", progress=False)
    prepare = Trainer._prepare

    def slow_prepare(self, *args):  # the first run starts and ends while the late one prepares its data
        if self is late:
            with pytest.raises(TrainingError, match="in use by another training"):
                first.fit(corpus, corpus)
        return prepare(self, *args)

    monkeypatch.setattr(Trainer, "_prepare", slow_prepare)
    assert late.fit(corpus, corpus)["epochs_run"] == 1
    checked = []
    monkeypatch.setattr(Trainer, "_prepare", lambda self, *args: checked.append(self) or prepare(self, *args))
    with pytest.raises(TrainingError, match="holds a previous run"):  # the lock's holder sees what is there
        Trainer(build_tagger("bilstm_crf", corpus, SMALL), config, tmp_path / "run", progress=False).fit(corpus, corpus)
    assert not checked


def test_a_run_that_ends_between_the_check_and_the_lock_is_seen(corpus, tmp_path, monkeypatch):
    from lexner.train import TrainConfig, Trainer, TrainingError

    config = TrainConfig(epochs=1, batch_size=8)
    late = Trainer(build_tagger("bilstm_crf", corpus, SMALL), config, tmp_path / "run", progress=False)
    first = Trainer(build_tagger("bilstm_crf", corpus, SMALL), config, tmp_path / "run", progress=False)
    take = Trainer._take_lock

    def slow_take(self):  # the first run starts and ends after the late one checked the folder
        if self is late and getattr(self, "_lock", None) is None:
            first.fit(corpus, corpus)
        take(self)

    monkeypatch.setattr(Trainer, "_take_lock", slow_take)
    model_file = tmp_path / "run" / "model" / "model.safetensors"
    with pytest.raises(TrainingError, match="holds a previous run"):
        late.fit(corpus, corpus)
    assert model_file.is_file() and json.loads((tmp_path / "run" / "results.json").read_text(encoding="utf-8"))["epochs_run"] == 1


def test_the_trainer_refuses_a_folder_with_a_previous_run_unless_resumed_or_replaced(corpus, tmp_path):
    from lexner.train import TrainConfig, Trainer, TrainingError

    config = TrainConfig(epochs=1, batch_size=8)
    Trainer(build_tagger("bilstm_crf", corpus, SMALL), config, tmp_path, progress=False).fit(corpus, corpus)
    with pytest.raises(TrainingError, match="holds a previous run"):
        Trainer(build_tagger("bilstm_crf", corpus, SMALL), config, tmp_path, progress=False).fit(corpus, corpus)
    resumed = Trainer(build_tagger("bilstm_crf", corpus, SMALL), config, tmp_path, progress=False)
    assert resumed.resume()
    resumed.fit(corpus, corpus)  # the run is finished: nothing more to do, nothing refused
    replaced = Trainer(build_tagger("bilstm_crf", corpus, SMALL), config, tmp_path, progress=False, replace=True)
    assert replaced.fit(corpus, corpus)["epochs_run"] == 1


def test_tag_texts_go_to_output_and_texts_beside_input_are_refused(saved, tmp_path, capsys):
    out = tmp_path / "x.jsonl"
    assert main(["tag", "--model", str(saved), "张三在北京", "--output", str(out)]) == 0
    assert json.loads(out.read_text(encoding="utf-8"))["text"] == "张三在北京"
    assert capsys.readouterr().out == ""
    (tmp_path / "in.txt").write_text("李四\n", encoding="utf-8")
    assert main(["tag", "--model", str(saved), "--input", str(tmp_path / "in.txt"), "王五在广州"]) == 2
    assert "give texts or --input, not both" in capsys.readouterr().err


def test_an_output_under_a_file_is_a_clean_error(saved, tmp_path, capsys):
    (tmp_path / "in.txt").write_text("李四\n", encoding="utf-8")
    target = tmp_path / "in.txt" / "o.jsonl"
    assert main(["tag", "--model", str(saved), "--input", str(tmp_path / "in.txt"), "--output", str(target)]) == 2
    assert "in.txt is a file, not a directory" in capsys.readouterr().err
    assert (tmp_path / "in.txt").read_text(encoding="utf-8") == "李四\n"


def test_input_may_be_a_pipe(saved, tmp_path, capsys):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = subprocess.Popen([sys.executable, "-c", f"open({str(fifo)!r}, 'w').write('张三\\n李四\\n')"])
    assert main(["tag", "--model", str(saved), "--input", str(fifo)]) == 0
    writer.wait()
    assert [json.loads(line)["text"] for line in capsys.readouterr().out.splitlines()] == ["张三", "李四"]


def test_empty_or_entity_free_data_is_refused(corpus, tmp_path, capsys):
    from lexner.data import Sentence, write_jsonl

    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    build_tagger("bilstm_crf", corpus, SMALL).save(tmp_path / "m")
    assert main(["evaluate", str(tmp_path / "m"), "--file", str(tmp_path / "empty.txt")]) == 2
    assert "no sentences to score" in capsys.readouterr().err
    write_jsonl(corpus[:3], tmp_path / "some.jsonl")
    assert main(["evaluate", str(tmp_path / "m"), "--file", str(tmp_path / "some.jsonl"), "--seen-from",
                 str(tmp_path / "empty.txt")]) == 2  # every entity would count as unseen
    assert "--seen-from" in (err := capsys.readouterr().err) and "empty.txt: no sentences" in err
    write_jsonl([Sentence(s.text, []) for s in corpus], tmp_path / "plain.jsonl")
    code = main(["train", "--train", str(tmp_path / "plain.jsonl"), "--out", str(tmp_path / "run"), "--epochs", "1",
                 "--set", "hidden=8", "--char-vectors", "none", "--bigram-vectors", "none", "--no-progress"])
    assert code == 2 and "no entities in the training sentences" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # the folder it made holds nothing: not left behind, lock file included
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x", encoding="utf-8")
    code = main(["train", "--train", str(tmp_path / "plain.jsonl"), "--out", str(tmp_path / "mine"), "--epochs", "1",
                 "--set", "hidden=8", "--char-vectors", "none", "--bigram-vectors", "none", "--no-progress"])
    assert code == 2 and sorted(p.name for p in (tmp_path / "mine").iterdir()) == [".lock", "notes.txt"]  # the user's


def test_a_file_given_as_the_model_or_an_empty_output_name_is_a_clean_error(saved, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    assert main(["tag", "--model", str(tmp_path / "notes.txt"), "张三"]) == 2
    assert "notes.txt: a file, not a model directory" in capsys.readouterr().err
    assert main(["tag", "--model", str(saved), "张三", "--output", ""]) == 2
    assert "--output needs a file name" in capsys.readouterr().err


def test_a_closed_output_pipe_ends_quietly(saved, tmp_path):
    (tmp_path / "in.txt").write_text("张三在北京\n" * 5000, encoding="utf-8")
    tag = subprocess.Popen([sys.executable, "-m", "lexner", "tag", "--model", str(saved), "--no-progress",
                            "--input", str(tmp_path / "in.txt")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    tag.stdout.readline()
    tag.stdout.close()  # as `| head -1` does
    err = tag.stderr.read().decode()
    assert tag.wait() == 1 and "Traceback" not in err and "error" not in err


def test_a_closed_output_pipe_ends_quietly_on_windows_too(saved, monkeypatch, capsys):
    """Windows reports a write to a pipe whose reader has gone as EINVAL, not EPIPE: it was an error with exit
    status 2 ("standard output: cannot be written (Invalid argument)") where Linux ends quietly with 1.  EINVAL
    writing to a file, or on another system, stays an error."""
    import errno
    import io

    class Output(io.TextIOBase):  # standard output on a pipe or a file, every write refused with EINVAL
        def __init__(self, descriptor):
            self.descriptor = descriptor

        def write(self, text):
            raise OSError(errno.EINVAL, "Invalid argument")

        flush = write

        def fileno(self):
            return self.descriptor

    def tagged_into(descriptor, platform):
        monkeypatch.setattr(sys, "stdout", Output(descriptor))
        monkeypatch.setattr(sys, "platform", platform)  # read by the handling of the error alone
        try:
            return main(["tag", "--model", str(saved), "张三在北京"]), capsys.readouterr().err
        finally:
            monkeypatch.undo()

    def pipe_without_reader():
        reader, writer = os.pipe()
        os.close(reader)
        return writer

    for output, platform, quiet in ((pipe_without_reader, "win32", True), (pipe_without_reader, "linux", False),
                                    (lambda: os.open(os.devnull, os.O_WRONLY), "win32", False)):
        descriptor = output()
        try:
            code, err = tagged_into(descriptor, platform)
        finally:
            os.close(descriptor)
        assert (code, err) == (1, "") if quiet else \
            code == 2 and "standard output: cannot be written (Invalid argument)" in err, platform


def test_resume_with_force_continues_a_checkpoint_or_starts_again_without_one(corpus, tmp_path):
    out = tmp_path / "run"
    assert train_cli(corpus, tmp_path, out) == 0
    assert train_cli(corpus, tmp_path, out, "--resume", "--force") == 0  # finished: resumed, nothing replaced
    assert not (out / ".replaced").exists()
    records = [json.loads(line) for line in (out / "log.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["epoch"] for r in records if "final" not in r] == [1]
    import shutil

    shutil.rmtree(out / "checkpoint")  # as if it had failed before its first checkpoint
    assert train_cli(corpus, tmp_path, out, "--resume", "--force") == 0
    assert (out / "checkpoint").is_dir() and not (out / ".replaced").exists()


def test_a_weight_float16_cannot_store_is_refused_before_anything_is_written(corpus, saved, tmp_path):
    import torch

    tagger = lexner.load(saved)
    with torch.no_grad():
        tagger.embed.chars.weight[3, 0] = 1e5  # beyond float16's ±65504: inf, which a load refuses
    before = {p.name: p.read_bytes() for p in saved.iterdir()}
    for target in (saved, tmp_path / "new", tmp_path / "empty"):
        (tmp_path / "empty").mkdir(exist_ok=True)
        with pytest.raises(ValueError, match=r"embed\.chars\.weight holds values float16 cannot store.*magnitude 100000\)"):
            tagger.save(target, half=True)
    assert {p.name: p.read_bytes() for p in saved.iterdir()} == before  # the old model untouched
    assert not (tmp_path / "new").exists() and not list((tmp_path / "empty").iterdir())
    assert main(["export", str(saved), str(tmp_path / "ok"), "--half"]) == 0  # finite weights still export
    tagger.save(tmp_path / "full", half=False)  # float32 stores it
    assert lexner.load(tmp_path / "full").embed.chars.weight[3, 0] == 1e5


def test_a_damaged_log_or_checkpoint_is_named_and_a_log_line_cut_short_is_left_out(corpus, tmp_path, capsys, caplog):
    import shutil

    from lexner.train import epoch_records

    pristine = tmp_path / "pristine"
    assert train_cli(corpus, tmp_path, pristine) == 0
    for k, (name, damage, expected) in enumerate((
            ("log.jsonl", '{"epoch": 1, "seconds": 2.5}\nnot json\n{"final": true}\n', ":2: not a training log's record"),
            ("log.jsonl", '{"epoch": 1, "seconds": "x"}\n', ":1: not a training log's record"),  # was a TypeError
            ("log.jsonl", '{"epoch": 0, "seconds": 1}\n', ":1: not a training log's record"),
            ("checkpoint/trainer_state.safetensors", "\0" * 100, ": cannot be read"),
            ("checkpoint/trainer_state.json", "{}", " lacks model, optimizer"))):
        case = tmp_path / f"{k}_{name.replace('/', '_')}"
        shutil.copytree(pristine, case)
        (case / name).write_text(damage, encoding="utf-8")
        assert train_cli(corpus, tmp_path, case, "--resume") == 2
        assert f"{case / name}{expected}" in capsys.readouterr().err
    log_file = pristine / "log.jsonl"
    first = log_file.read_text(encoding="utf-8").splitlines()[0]
    log_file.write_text(first[:-5], encoding="utf-8")  # a stop while the first epoch's line was written
    with caplog.at_level("WARNING", logger="lexner"):
        assert train_cli(corpus, tmp_path, pristine, "--resume") == 0  # finished: the results written again
    assert "a last line cut short, left out" in caplog.text
    assert epoch_records(log_file) == [] and json.loads(log_file.read_text(encoding="utf-8"))["final"]


def test_a_stop_between_the_two_renames_of_a_model_save_is_recovered_on_resume(corpus, tmp_path):
    import os

    run = tmp_path / "run"
    assert train_cli(corpus, tmp_path, run) == 0
    before = (run / "model" / "model.safetensors").read_bytes()
    os.replace(run / "model", run / ".model.old-abcdefgh")  # the first rename done, the second not
    (run / ".model.new-x1y2z3w4").mkdir()  # the new version being built
    (run / ".checkpoint.old-12345678").mkdir()  # an older checkpoint set aside, not yet deleted
    for name in (".model.mine", ".model.x1y2z3w4"):  # not names lexner makes: a user's
        (run / name).mkdir()
    assert train_cli(corpus, tmp_path, run, "--resume") == 0  # nothing left to train: finished
    assert (run / "model" / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".") and p.is_dir()) == [
        ".model.mine", ".model.x1y2z3w4"]


def test_a_model_saved_after_the_last_checkpoint_stays_the_best_with_its_own_epoch(corpus, tmp_path, caplog):
    """A stop between an improving epoch's model save and its checkpoint: results name the model they score."""
    run = tmp_path / "run"
    assert train_cli(corpus, tmp_path, run) == 0
    config = json.loads((run / "model" / "config.json").read_text(encoding="utf-8"))
    config["card"]["epoch"] = 2  # as if epoch 2 had saved its better model and stopped before its checkpoint
    config["card"]["dev"]["micro"]["f1"] = 0.99
    (run / "model" / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with caplog.at_level("WARNING", logger="lexner"):
        assert train_cli(corpus, tmp_path, run, "--resume") == 0  # nothing left to train: finished
    assert "holds the model of epoch 2, saved after the checkpoint's epoch 1" in caplog.text
    assert json.loads((run / "results.json").read_text(encoding="utf-8"))["best_epoch"] == 2


def test_train_config_records_what_each_resume_changed(corpus, tmp_path):
    run = tmp_path / "run"
    assert train_cli(corpus, tmp_path, run, "--lr", "0.01") == 0
    assert "resumed" not in json.loads((run / "train_config.json").read_text(encoding="utf-8"))
    assert train_cli(corpus, tmp_path, run, "--resume", "--lr", "0.02") == 0
    assert train_cli(corpus, tmp_path, run, "--resume", "--lr", "0.02", "--patience", "3") == 0
    record = json.loads((run / "train_config.json").read_text(encoding="utf-8"))
    assert record["lr"] == 0.02 and record["resumed"] == [{"after_epoch": 1, "changed": {"lr": [0.01, 0.02]}},
                                                          {"after_epoch": 1, "changed": {"patience": [10, 3]}}]


def test_a_weight_under_its_present_name_and_an_older_one_is_refused(saved):
    """Two names for one weight (``char_embedding.weight``, the older name, beside ``embed.chars.weight``):
    one of them was dropped silently (helper audit)."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(saved / "model.safetensors"))
    state["char_embedding.weight"] = torch.zeros(2, 2)
    save_file(state, str(saved / "model.safetensors"))
    with pytest.raises(ModelFormatError, match=r"\['char_embedding.weight', 'embed.chars.weight'\] name the same"):
        lexner.load(saved)


def test_a_loop_of_links_is_a_model_format_error_naming_the_file(saved):
    (saved / "chars.json").unlink()
    (saved / "chars.json").symlink_to("chars.json")
    with pytest.raises(ModelFormatError, match="chars.json: cannot be read"):
        lexner.load(saved)


def test_a_weight_a_load_would_refuse_is_not_saved(saved, tmp_path):
    tagger = lexner.load(saved)
    with torch.no_grad():
        tagger.embed.chars.weight[3, 0] = 1e7
    for half in (False, True):
        with pytest.raises(ValueError, match=r"embed\.chars\.weight holds NaN, infinite or absurdly large values"):
            tagger.save(tmp_path / "out", half=half)
    assert not (tmp_path / "out").exists()


def test_force_never_takes_a_users_model_old_for_lexners(corpus, tmp_path):
    """``model.old`` was counted as a previous version of model/ (a name earlier lexner versions used): --force
    moved it aside and deleted it, --resume could restore it as the best model."""
    out = tmp_path / "run"
    assert train_cli(corpus, tmp_path, out) == 0
    shutil.copytree(out / "model", out / "model.old")  # the user's own backup
    (out / "model.old" / "notes.txt").write_text("mine", encoding="utf-8")
    assert train_cli(corpus, tmp_path, out, "--force", "--seed", "2") == 0
    assert (out / "model.old" / "notes.txt").read_text(encoding="utf-8") == "mine"
    os.replace(out / "model", out / ".model.old-x1y2z3")  # a stop between a save's two renames; the user's
    os.utime(out / "model.old")  # model.old beside it, newer: it was restored as the best model
    assert train_cli(corpus, tmp_path, out, "--resume", epochs=2) == 0
    assert (out / "model.old" / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert not (out / "model" / "notes.txt").exists() and not (out / ".model.old-x1y2z3").exists()


@pytest.mark.parametrize("moved", [1, 2])
def test_a_force_stopped_while_setting_the_run_aside_keeps_all_of_it(corpus, tmp_path, moved):
    """A --force stopped after moving some of the run into .replaced: the next --force took the checkpoint/ still
    in the folder for the stopped attempt's and deleted .replaced (the old best model), or deleted the run's
    log.jsonl and results.json as the attempt's files."""
    from lexner.train import REPLACED_DIR, SET_ASIDE_MARK, previous_run, set_aside_previous_run

    out = tmp_path / "run"
    assert train_cli(corpus, tmp_path, out) == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".lock"}
    (out / REPLACED_DIR).mkdir()
    for name in ["model", "checkpoint"][:moved]:  # as far as the stopped set-aside got
        os.replace(out / name, out / REPLACED_DIR / name)
    set_aside_previous_run(out)
    assert previous_run(out) == [] and (out / REPLACED_DIR / SET_ASIDE_MARK).exists()
    aside = {p.relative_to(out / REPLACED_DIR): p.read_bytes() for p in (out / REPLACED_DIR).rglob("*")
             if p.is_file() and p.name != SET_ASIDE_MARK}
    assert aside == before
    assert train_cli(corpus, tmp_path, out, "--force", "--seed", "2") == 0 and not (out / REPLACED_DIR).exists()


def test_resume_of_a_run_stopped_in_its_first_epochs_saves_starts_it_again(corpus, tmp_path, capsys):
    """Stopped after the first epoch's model and log line, before its checkpoint (or the disk filled there):
    --resume was refused ("no checkpoint to resume from") although nothing of worth was lost."""
    out = tmp_path / "run"
    assert train_cli(corpus, tmp_path, out) == 0
    from safetensors.torch import load_file

    expected = load_file(out / "model" / "model.safetensors")
    shutil.rmtree(out / "checkpoint")
    (out / "results.json").unlink()
    lines = (out / "log.jsonl").read_text(encoding="utf-8").splitlines()
    (out / "log.jsonl").write_text(lines[0] + "\n", encoding="utf-8")  # epoch 1's line, not the final one
    assert train_cli(corpus, tmp_path, out, "--resume") == 0
    again = load_file(out / "model" / "model.safetensors")
    assert all(torch.equal(again[k], v) for k, v in expected.items())  # the same run, started again
    assert [json.loads(line).get("epoch") for line in (out / "log.jsonl").read_text(encoding="utf-8").splitlines()] == [1, None]
    shutil.rmtree(out / "checkpoint")  # a finished run without its checkpoint: refused, as before
    capsys.readouterr()
    assert train_cli(corpus, tmp_path, out, "--resume") == 2
    assert "no checkpoint to resume from" in capsys.readouterr().err


def test_an_edited_checkpoint_or_changed_model_setting_is_refused_naming_the_file(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_cli(corpus, tmp_path, out) == 0
    state = out / "checkpoint" / "trainer_state.json"
    original = state.read_text(encoding="utf-8")
    for key, value in (("epoch", '"3"'), ("epoch", "-5"), ("best_f1", "null"), ("step", '"x"')):
        data = json.loads(original)  # {"__dict__": [[key, value], ...]}: the checkpoint's structure
        data["__dict__"] = [[k, json.loads(value) if k == key else v] for k, v in data["__dict__"]]
        state.write_text(json.dumps(data), encoding="utf-8")
        capsys.readouterr()
        assert train_cli(corpus, tmp_path, out, "--resume", epochs=2) == 2, key
        assert f"{state}: {key}" in capsys.readouterr().err
    state.write_text(original, encoding="utf-8")
    assert train_cli(corpus, tmp_path, out, "--resume", "--set", "dropout=0.9", epochs=2) == 2
    assert "written for a model with dropout 0.5, not 0.9 (--set)" in capsys.readouterr().err


def test_resume_without_a_checkpoint_never_takes_a_folder_it_did_not_write(tmp_path, corpus, capsys):
    """A model/ of anyone else's (no train_config.json of a run beside it, or a card of no first epoch) is no
    stopped first epoch: refused, left as it is (a review found it deleted)."""
    out = tmp_path / "run"
    (out / "model").mkdir(parents=True)
    (out / "model" / "my_weights.bin").write_bytes(b"mine")
    assert train_cli(corpus, tmp_path, out, "--resume") == 2
    assert "no checkpoint to resume from" in capsys.readouterr().err
    assert (out / "model" / "my_weights.bin").read_bytes() == b"mine"


def test_resume_puts_back_a_run_that_a_stopped_force_had_partly_set_aside(corpus, tmp_path):
    from lexner.train import REPLACED_DIR

    out = tmp_path / "run"
    assert train_cli(corpus, tmp_path, out) == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".lock"}
    (out / REPLACED_DIR).mkdir()
    os.replace(out / "model", out / REPLACED_DIR / "model")  # as far as a stopped --force got
    assert train_cli(corpus, tmp_path, out, "--resume") == 0  # nothing left to train: the run as it was
    assert not (out / REPLACED_DIR).exists()
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".lock"}
    assert after.keys() == before.keys() and after[Path("model/model.safetensors")] == before[Path("model/model.safetensors")]


def test_resume_never_mixes_a_set_aside_run_with_a_later_attempts_files(corpus, tmp_path, capsys):
    """An unmarked .replaced (a set-aside by an older lexner, or stopped) holding model/ and log.jsonl while the
    folder holds a later attempt's own: putting back would mix two runs, so nothing moves and the run is refused."""
    from lexner.train import REPLACED_DIR

    out = tmp_path / "run"
    assert train_cli(corpus, tmp_path, out) == 0
    (out / REPLACED_DIR).mkdir()
    whole = sorted(p.name for p in out.iterdir() if p.name not in (".lock", REPLACED_DIR))
    for name in whole:  # the whole run set aside, without the mark
        os.replace(out / name, out / REPLACED_DIR / name)
    for name in ("model", "log.jsonl", "train_config.json"):  # the later attempt's files, no checkpoint yet
        copy = shutil.copytree if name == "model" else shutil.copyfile
        copy(out / REPLACED_DIR / name, out / name)
    capsys.readouterr()
    assert train_cli(corpus, tmp_path, out, "--resume") == 2
    assert "holds the run that a --force run here was replacing" in capsys.readouterr().err
    assert sorted(p.name for p in (out / REPLACED_DIR).iterdir()) == whole and not (out / "checkpoint").exists()
