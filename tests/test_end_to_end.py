"""Training on the real data root.  The short version runs in CI; ``LEXNER_SLOW=1`` runs the full one."""

import json
import os
from pathlib import Path

import pytest

import lexner
from lexner.cli import main
from lexner.data import data_root
from lexner.train import epoch_records

pytestmark = pytest.mark.slow
FULL = os.environ.get("LEXNER_SLOW") == "1"


@pytest.fixture
def weibo_root() -> Path:
    root = data_root()
    if not (root / "weibo" / "train.all.bmes").is_file():
        if os.environ.get("LEXNER_REQUIRE_DATA") == "1":
            pytest.fail(f"LEXNER_REQUIRE_DATA=1 but {root}/weibo is missing")
        pytest.skip("no Weibo data under the data root (set LEXNER_DATA)")
    return root


def test_train_weibo_then_load_and_tag(weibo_root, tmp_path):
    out = tmp_path / "run"
    if FULL:
        args = ["--dataset", "weibo", "--epochs", "60", "--patience", "20"]
    else:  # a slice of Weibo, a few epochs: the whole path with real files and real vectors
        from lexner.data import load_dataset, write_jsonl

        write_jsonl(load_dataset("weibo", "train")[:300], tmp_path / "train.jsonl")
        write_jsonl(load_dataset("weibo", "dev")[:100], tmp_path / "dev.jsonl")
        args = ["--train", str(tmp_path / "train.jsonl"), "--dev", str(tmp_path / "dev.jsonl"), "--epochs", "3"]
    assert main(["train", *args, "--out", str(out), "--threads", "1", "--no-progress", "--device", "cpu"]) == 0
    log = epoch_records(out / "log.jsonl")
    assert log[-1]["train_loss"] < log[0]["train_loss"]
    assert max(r["dev"]["f1"] for r in log) > 0.1  # it learnt to tag (3 epochs on 300 sentences: 0.27 here)
    model = lexner.load(out / "model")
    card = model.metadata["card"]
    assert card["embeddings"]["chars"].endswith("char.50d.vec")
    text = "2008年北京奥运会在中国举行，国际奥委会主席罗格出席开幕式。"
    entities = model.tag(text)
    assert all(text[e.start:e.end] == e.text for e in entities)
    assert model.tag_batch([text, text]) == [entities, entities]
    if FULL:
        results = json.load(open(out / "results.json", encoding="utf-8"))
        assert results["test"]["micro"]["f1"] > 0.5
