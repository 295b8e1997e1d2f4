"""Hostile text, concurrency and interrupted training: lexner must not break, and must not lose work.

The fuzz test's size is ``LEXNER_FUZZ_EXAMPLES`` (CI: the default below; by hand, e.g. 20000, see README).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lexner
from lexner.api import build_tagger
from lexner.data import write_jsonl
from lexner.fileio import atomic_directory, recover_directory, stale_copies
from lexner.lexicon import Lexicon
from lexner.models import model_class
from lexner.train import Trainer, TrainConfig, epoch_records
from conftest import toy_corpus
from tagger_contract import TOY_WORDS

FUZZ_EXAMPLES = int(os.environ.get("LEXNER_FUZZ_EXAMPLES", "300"))
SMALL = {"bilstm_crf": {"hidden": 16}, "softlexicon": {"hidden": 16}, "lattice_lstm": {"hidden": 16},
         "flat": {"model_dim": 16, "heads": 2, "ffn_dim": 32}}


def small_tagger(name: str):
    torch.manual_seed(0)
    lexicon = Lexicon(TOY_WORDS) if model_class(name).inputs(model_class(name).Config()).words else None
    tagger = build_tagger(name, toy_corpus(), SMALL[name], lexicon=lexicon).eval()
    with torch.no_grad():  # random CRF transitions so that entities are predicted
        for p in tagger.crf.parameters():
            p.normal_(0, 2)
    return tagger


def check_offsets(text: str, entities) -> None:
    for e in entities:
        assert 0 <= e.start < e.end <= len(text)
        assert text[e.start : e.end] == e.text
    assert all(a.end <= b.start for a, b in zip(entities, entities[1:]))


# Any code point, surrogates included, mixed with the toy corpus's characters so that lexicon words match.
TOY_CHARS = "".join(sorted({c for s in toy_corpus() for c in s.text}))
HOSTILE = st.text(
    alphabet=st.one_of(st.characters(codec=None), st.sampled_from(TOY_CHARS), st.sampled_from("。，！？ \t\n")),
    max_size=120,
)
FUZZ_COUNT: dict[str, int] = {}


@pytest.mark.parametrize("name", ["bilstm_crf", "softlexicon", "lattice_lstm", "flat"])
def test_fuzz_tag_with_random_unicode(name):
    tagger = small_tagger(name)
    tagger.max_length, tagger.overlap = 40, 8  # long fuzz inputs exercise the window splitting too

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(HOSTILE)
    def run(text):
        FUZZ_COUNT[name] = FUZZ_COUNT.get(name, 0) + 1
        check_offsets(text, tagger.tag(text))

    run()
    print(f"\nfuzz: {FUZZ_COUNT[name]} inputs tagged by {name}")
    assert FUZZ_COUNT[name] >= min(FUZZ_EXAMPLES, 50)


@pytest.mark.parametrize("name", ["bilstm_crf", "softlexicon", "lattice_lstm", "flat"])
def test_batched_fuzz_equals_one_by_one(name):
    tagger = small_tagger(name)

    @settings(max_examples=max(10, FUZZ_EXAMPLES // 10), deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.lists(HOSTILE, max_size=6))
    def run(texts):
        assert tagger.tag_batch(texts, batch_size=3) == [tagger.tag(t) for t in texts]

    run()


SPECIAL_TEXTS = [
    "", " ", "\u3000\u3000", "\n\n\t", "\x00\x01\x02", "\ud800", "\udfff张三", "😀" * 50, "𠀀𠀁北京",
    "e\u0301\u0302\u0303张三", "ABC123张三在北京456def", "Ｈｅｌｌｏ，张三在北京。", "\u200b\u200d北京\ufeff",
    "\r\n".join(["张三在北京工作"] * 3), "。" * 700, "，。！？" * 200,
]


@pytest.mark.parametrize("name", ["bilstm_crf", "softlexicon", "lattice_lstm", "flat"])
def test_special_texts(name):
    tagger = small_tagger(name)
    for text, entities in zip(SPECIAL_TEXTS, tagger.tag_batch(SPECIAL_TEXTS)):
        check_offsets(text, entities)
        assert entities == tagger.tag(text)


def run_python(code: str, tmp_path: Path) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON line last."""
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(code), encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, encoding="utf-8", timeout=600,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_one_megabyte_string_and_100k_tiny_strings_in_bounded_memory(tmp_path):
    """Peak memory of tagging grows with the batch, not with the input: measured in a fresh process."""
    out = run_python("""
        import json, resource, sys, torch
        torch.set_num_threads(1)
        from test_reliability import small_tagger, check_offsets
        tagger = small_tagger("bilstm_crf")
        rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        tagger.tag("张三在北京工作。" * 100)  # warm-up: allocator, first batch
        base = rss()
        unit = "张三在北京工作，李四去了上海。王小明到广州市"
        text = (unit * (2**20 // len(unit) + 1))[: 2**20]  # 1 MB, one line
        entities = tagger.tag(text)
        check_offsets(text, entities)
        after_big = rss()
        # what the result itself holds (a random model may find an entity at every character: ~200 MB)
        held = (sys.getsizeof(entities) + sum(sys.getsizeof(e) + sys.getsizeof(e.text) + sys.getsizeof(e.start)
                                              + sys.getsizeof(e.end) for e in entities)) / 2**20
        tiny = tagger.tag_batch(["张三"] * 100_000)
        print(json.dumps({"base": base, "big": after_big - base, "held": held, "tiny": rss() - after_big,
                          "entities": len(entities), "tiny_results": len(tiny)}))
    """, tmp_path)
    assert out["entities"] > 10_000 and out["tiny_results"] == 100_000
    # Beyond its result, the text itself (1M chars) and its bookkeeping are a few tens of MB; a batch of
    # windows a few MB more.
    assert out["big"] - out["held"] < 400, out
    assert out["tiny"] < 400, out


@pytest.mark.parametrize("name", ["bilstm_crf", "softlexicon", "lattice_lstm", "flat"])
def test_one_loaded_tagger_shared_by_threads(name, tmp_path):
    small_tagger(name).save(tmp_path / "m")
    tagger = lexner.load(tmp_path / "m")  # fresh: its lexicon automaton is built by whichever thread comes first
    texts = [s.text for s in toy_corpus()] * 3 + SPECIAL_TEXTS
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(tagger.tag, texts))
        batches = list(pool.map(lambda k: tagger.tag_batch(texts[k::4], batch_size=5), range(4)))
    sequential = [tagger.tag(t) for t in texts]
    assert parallel == sequential
    expected = [sequential[i] for k in range(4) for i in range(k, len(texts), 4)]
    assert [x for k in range(4) for x in batches[k]] == expected


# --- interrupted training ------------------------------------------------------------------------------

def train_command(data: Path, out: Path, epochs: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "lexner", "train", "--train", str(data / "train.jsonl"), "--dev",
            str(data / "dev.jsonl"), "--out", str(out), "--epochs", str(epochs), "--patience", "0",
            "--batch-size", "4", "--threads", "1", "--no-progress", "--device", "cpu", "--set", "hidden=16",
            "--char-vectors", "none", "--bigram-vectors", "none", "--word-vectors", "none", *extra]


def weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "checkpoint" / "trainer_state.safetensors"))


@pytest.mark.parametrize("sig, code, said", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_a_terminated_or_interrupted_tag_leaves_the_output_as_it_was_and_no_temporary_file(tmp_path, sig, code, said):
    out = tmp_path / "out.jsonl"
    out.write_text("kept\n", encoding="utf-8")
    process = subprocess.Popen([sys.executable, "-m", "lexner", "tag", "--input", "-", "--output", str(out)],
                               stdin=subprocess.PIPE, stderr=subprocess.PIPE,  # SIGINT heard even when the tests
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # run in background
    try:
        deadline = time.time() + 120
        while not list(tmp_path.glob(".out.jsonl.*.tmp")):  # writing has begun: it waits for more input
            assert process.poll() is None and time.time() < deadline, process.stderr.read().decode()
            time.sleep(0.1)
        process.send_signal(sig)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == code and f"lexner: {said}" in err.decode() and "Traceback" not in err.decode()
    assert out.read_text(encoding="utf-8") == "kept\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_kill_at_any_moment_then_resume_reaches_the_uninterrupted_result(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    corpus = toy_corpus() * 6
    write_jsonl(corpus, data / "train.jsonl")
    write_jsonl(toy_corpus()[:5], data / "dev.jsonl")
    epochs = 6
    reference = tmp_path / "reference"
    subprocess.run(train_command(data, reference, epochs), check=True, capture_output=True)

    killed = tmp_path / "killed"
    process = subprocess.Popen(train_command(data, killed, epochs), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill it as soon as two epochs are logged, wherever it is then
        log = killed / "log.jsonl"
        if log.is_file() and len(log.read_text(encoding="utf-8").splitlines()) >= 2:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert len((killed / "log.jsonl").read_text(encoding="utf-8").splitlines()) < epochs, "finished before it was killed"

    subprocess.run(train_command(data, killed, epochs, "--resume"), check=True, capture_output=True)
    assert json.loads((killed / "results.json").read_text(encoding="utf-8"))["epochs_run"] == epochs
    logged = [r["epoch"] for r in epoch_records(killed / "log.jsonl")]
    assert logged == list(range(1, epochs + 1))  # each epoch once, even one redone after the kill
    ref, got = weights(reference), weights(killed)
    model_keys = [k for k in ref if k.startswith("s.model.")]
    assert model_keys and all(torch.allclose(ref[k], got[k], atol=1e-6) for k in model_keys)


def test_a_crash_while_writing_a_checkpoint_keeps_the_previous_one(corpus, tmp_path, monkeypatch):
    import lexner.checkpoint as checkpoint

    tagger = build_tagger("bilstm_crf", corpus, {"hidden": 16})
    trainer = Trainer(tagger, TrainConfig(epochs=1, batch_size=4, patience=0), tmp_path)
    trainer.fit(corpus, corpus[:5])
    before = (tmp_path / "checkpoint" / "trainer_state.json").read_text(encoding="utf-8")

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "write_json", crash)  # the tensors are written, then the crash
    trainer.config.epochs = 2
    with pytest.raises(OSError, match="disk full"):
        trainer.fit(corpus, corpus[:5])
    assert (tmp_path / "checkpoint" / "trainer_state.json").read_text(encoding="utf-8") == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".checkpoint.")]  # no half-written leftovers


def test_a_crash_between_the_renames_is_recovered_on_resume(tmp_path):
    final = tmp_path / "checkpoint"
    with atomic_directory(final) as tmp:
        (tmp / "a").write_text("1", encoding="utf-8")
    os.replace(final, tmp_path / ".checkpoint.old-x1y2z3")  # the state a crash between the two renames leaves
    assert recover_directory(final) == final and (final / "a").read_text(encoding="utf-8") == "1"
    assert not (tmp_path / ".checkpoint.old-x1y2z3").exists()
    # a user's own checkpoint.old (a name earlier lexner versions also used) is never taken, nor an empty
    # .checkpoint.old-* (a stop right after making the placeholder of a first save)
    os.replace(final, tmp_path / "checkpoint.old")
    (tmp_path / ".checkpoint.old-empty1").mkdir()
    assert recover_directory(final) == final and not final.exists()
    assert (tmp_path / "checkpoint.old" / "a").read_text(encoding="utf-8") == "1"
    assert stale_copies(final) == [tmp_path / ".checkpoint.old-empty1"]  # removed by a run holding the lock


def test_a_first_save_makes_no_placeholder_for_a_previous_version(tmp_path, monkeypatch):
    """A stop between making the previous version's placeholder and the renames left an empty .NAME.old-* that
    a resume restored as the checkpoint itself (every later --resume failed)."""
    import tempfile

    made = []
    real = tempfile.mkdtemp
    monkeypatch.setattr(tempfile, "mkdtemp", lambda **kw: made.append(kw["prefix"]) or real(**kw))
    with atomic_directory(tmp_path / "checkpoint") as tmp:
        (tmp / "a").write_text("1", encoding="utf-8")
    assert made == [".checkpoint.new-"]
    with atomic_directory(tmp_path / "checkpoint") as tmp:
        (tmp / "a").write_text("2", encoding="utf-8")
    assert made == [".checkpoint.new-", ".checkpoint.new-", ".checkpoint.old-"]



MEMORY_PROBE = """
import sys, tracemalloc, torch, lexner
torch.set_num_threads(1)
tagger = lexner.load(sys.argv[1])
tagger.block_pieces = int(sys.argv[2])
unit = "张三在北京大学工作，李四去了广州市。" * 3 + "\\n"
tagger.tag(unit)
growth = []
for megabytes in map(float, sys.argv[3:]):
    text = unit * int(megabytes * 2**20 / len(unit.encode()))
    tracemalloc.start()
    found = tagger.tag(text)
    growth.append(tracemalloc.get_traced_memory()[1] / 2**20)  # peak of Python allocations during tag()
    tracemalloc.stop()
    del text, found
print(" ".join(f"{g:.1f}" for g in growth))
"""


@pytest.mark.parametrize("model", ["softlexicon", "lattice_lstm", "flat"])
def test_peak_memory_does_not_grow_with_one_texts_length(model, corpus, tmp_path):
    """One long text (many lines) streams through the model: lines are cut and windows' entities merged as
    their block of windows comes, so the peak of the Python allocations made by tag() (tracemalloc; the
    process's RSS high-water mark is set by loading and hides this at these sizes) does not grow with the
    text's length: under 1 MB per MB of text (measured: 3.3 MB at 0.25, 0.5 and 1 MB with softlexicon).  Keeping
    every line's bookkeeping to the end grew by ~6 MB per MB; encoding every window first (block_pieces
    unbounded) by 36 MB per MB with this lexicon (every 2-4 character piece of the text is a word).  The model
    predicts only O (a large O bias): entities take no memory."""
    import subprocess
    import sys

    from lexner.lexicon import Lexicon

    config = {"softlexicon": {"char_dim": 8, "bigram_dim": 8, "word_dim": 8, "hidden": 16},
              "lattice_lstm": {"char_dim": 8, "bigram_dim": 8, "word_dim": 8, "hidden": 16},
              "flat": {"model_dim": 16, "heads": 2, "ffn_dim": 32}}[model]
    unit = "张三在北京大学工作，李四去了广州市。"
    words = sorted({unit[i:i + n] for n in (2, 3, 4) for i in range(len(unit) - n + 1)})
    tagger = build_tagger(model, corpus, config, lexicon=Lexicon(words))
    with torch.no_grad():
        tagger.output.bias[0] = 1000.0  # tag O everywhere
    tagger.save(tmp_path / "m")
    # CI: blocks of 512 windows and 0.25 -> 0.5 MB (each above one block); LEXNER_SLOW=1: the default 4,096, 1 -> 4 MB
    block, sizes = ("4096", ["1", "4"]) if os.environ.get("LEXNER_SLOW") else ("512", ["0.25", "0.5"])
    done = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(tmp_path / "m"), block, *sizes],
                          capture_output=True, encoding="utf-8", timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    small, large = map(float, done.stdout.split())
    per_megabyte = (large - small) / (float(sizes[1]) - float(sizes[0]))
    assert per_megabyte < 1, (small, large)
