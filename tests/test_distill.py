"""Distillation: soft targets from teachers, the soft losses, and a student that learns a teacher's outputs."""

import numpy as np
import pytest
import torch

from lexner.api import build_tagger
from lexner.data import Sentence
from lexner.distill import teacher_targets
from lexner.schemes import Span
from lexner.train import Task, Trainer, TrainConfig, TrainingError, seed_everything

SMALL = {"char_dim": 16, "bigram_dim": 8, "hidden": 32, "dropout": 0.0}
SWAP = {"PER": "LOC", "LOC": "PER"}


def swapped(corpus):
    """The toy corpus with PER and LOC exchanged: a teacher that disagrees with the gold labels."""
    return [Sentence(s.text, [Span(a, b, SWAP[label]) for a, b, label in s.spans]) for s in corpus]


def trained_teacher(corpus, seed=0):
    torch.manual_seed(seed)
    teacher = build_tagger("bilstm_crf", corpus, SMALL, seed=seed)
    batch = teacher.featurizer.encode([s.text for s in corpus], [s.spans for s in corpus])
    optimizer = torch.optim.Adam(teacher.parameters(), lr=0.02)
    teacher.train()
    for _ in range(60):
        optimizer.zero_grad()
        teacher.loss(batch).backward()
        optimizer.step()
    return teacher.eval()


def spans(tagger, texts):
    return [[(e.start, e.end, e.label) for e in ents] for ents in tagger.tag_batch(texts)]


@pytest.mark.parametrize("kind", ["kl", "mse"])
def test_a_student_distilled_on_unlabelled_text_matches_its_teachers_predictions(corpus, tmp_path, kind):
    teacher = trained_teacher(swapped(corpus))
    texts = [s.text for s in corpus]
    target = spans(teacher, texts)
    assert sum(t == [tuple(x) for x in s.spans] for t, s in zip(target, swapped(corpus))) >= 18
    seed_everything(1)
    student = build_tagger("bilstm_crf", corpus, {**SMALL, "hidden": 24}, seed=1)
    config = TrainConfig(epochs=25, batch_size=4, optimizer="adam", lr=0.02, patience=0, distill=kind,
                         distill_weight=1.0)
    # one gold sentence (gold disagrees with the teacher), everything else from the teacher's soft targets;
    # dev holds the teacher's labels, so that the epoch kept is the one closest to the teacher
    trainer = Trainer(student, config, tmp_path, progress=False)
    trainer.fit_tasks([Task(None, corpus[:1], swapped(corpus))], teachers=[teacher], unlabelled=texts)
    agree = sum(a == b for a, b in zip(spans(trainer.model, texts), target))
    assert agree >= 0.9 * len(texts), agree


def test_teacher_targets_average_an_ensemble_and_follow_the_students_tag_order(corpus):
    a, b = trained_teacher(corpus, 0), trained_teacher(corpus, 1)
    texts = [s.text for s in corpus[:5]]
    tags = list(reversed(a.featurizer.tags))
    one = teacher_targets([a], texts, "kl", tags)
    both = teacher_targets([a, b], texts, "kl", tags)
    other = teacher_targets([b], texts, "kl", tags)
    for x, y, z, text in zip(one, both, other, texts):
        assert x.shape == (len(text), len(tags))
        np.testing.assert_allclose(x.sum(1), 1, atol=1e-4)  # marginals (float32)
        np.testing.assert_allclose(y, (x + z) / 2, atol=1e-6)
    emissions = teacher_targets([a], texts[:1], "mse", a.featurizer.tags)[0]
    with torch.no_grad():
        expected = a.emissions(a.featurizer.encode(texts[:1]))[0].numpy()
    np.testing.assert_allclose(emissions, expected, atol=1e-5)
    assert np.allclose(teacher_targets([a], texts[:1], "mse", tags)[0], emissions[:, ::-1])


def test_distillation_refuses_mismatched_teachers_and_incomplete_settings(corpus, tmp_path):
    other = build_tagger("bilstm_crf", [Sentence("北京", [Span(0, 2, "GPE")])], SMALL)
    with pytest.raises(ValueError, match="not the student's"):
        teacher_targets([other], ["北京"], "kl", build_tagger("bilstm_crf", corpus, SMALL).featurizer.tags)
    student = build_tagger("bilstm_crf", corpus, SMALL)
    with pytest.raises(TrainingError, match="teachers and a kind"):
        Trainer(student, TrainConfig(epochs=1), tmp_path, progress=False).fit_tasks(
            [Task(None, corpus, corpus)], teachers=[student])
    with pytest.raises(TrainingError, match=r"teacher 1: the teacher's tags .* are not the student's .*--rename"):
        Trainer(student, TrainConfig(epochs=1, distill="kl"), tmp_path / "d", progress=False).fit_tasks(
            [Task(None, corpus, corpus)], teachers=[other])  # a clean error (lexner distill: exit 2)
    with pytest.raises(ValueError, match="distill must be"):
        TrainConfig(distill="l2")


def test_lexner_distill_command(corpus, tmp_path, capsys, monkeypatch):
    import json

    from lexner.cli import main
    from lexner.data import write_jsonl

    monkeypatch.setenv("LEXNER_DATA", str(tmp_path / "no-data"))
    write_jsonl(corpus[:15], tmp_path / "train.jsonl")
    write_jsonl(corpus[15:], tmp_path / "dev.jsonl")
    (tmp_path / "raw.txt").write_text("\n".join(s.text for s in corpus) + "\n", encoding="utf-8")
    small = ["--set", "hidden=16", "--set", "char_dim=8", "--set", "bigram_dim=4", "--no-progress", "--device", "cpu",
             "--batch-size", "4", "--epochs", "2"]
    files = ["--train", str(tmp_path / "train.jsonl"), "--dev", str(tmp_path / "dev.jsonl")]
    assert main(["train", *files, "--out", str(tmp_path / "teacher"), *small]) == 0
    capsys.readouterr()
    assert main(["distill", "--teacher", str(tmp_path / "teacher" / "model"), "--unlabelled", str(tmp_path / "raw.txt"),
                 *files, "--out", str(tmp_path / "student"), *small]) == 0
    assert json.loads(capsys.readouterr().out)["best_epoch"] >= 1
    config = json.loads((tmp_path / "student" / "train_config.json").read_text())
    assert config["distill"] == "kl"
    card = json.loads((tmp_path / "student" / "model" / "config.json").read_text())["card"]
    assert card["teachers"] == [str(tmp_path / "teacher" / "model")]


def test_an_ensemble_averages_marginals_and_tags_like_a_tagger(corpus, tmp_path):
    import lexner
    from tagger_contract import ODD_TEXTS

    a, b = trained_teacher(corpus, 0), trained_teacher(corpus, 1)
    a.save(tmp_path / "a")
    b.set_piece_length(80)
    b.save(tmp_path / "b")
    ensemble = lexner.load([tmp_path / "a", tmp_path / "b"])
    assert ensemble.max_length == 80  # pieces no member would find too long
    texts = [s.text for s in corpus]
    probs, mask = ensemble.marginals(texts[:3])
    one = [teacher_targets([m], texts[:3], "kl", ensemble.featurizer.tags) for m in (a, b)]
    for i, text in enumerate(texts[:3]):
        np.testing.assert_allclose(probs[i, : len(text)].numpy(), (one[0][i] + one[1][i]) / 2, atol=1e-5)
    predicted = spans(ensemble, texts)
    assert sum(p == [tuple(x) for x in s.spans] for p, s in zip(predicted, corpus)) >= 0.9 * len(corpus)
    for text, entities in zip(ODD_TEXTS, ensemble.tag_batch(ODD_TEXTS)):
        assert all(text[e.start : e.end] == e.text for e in entities)
    forced = lexner.load([tmp_path / "a", tmp_path / "b"], dictionary={"在北京": "LOC"})
    assert (2, 5, "LOC") in [(e.start, e.end, e.label) for e in forced.tag("张三在北京工作。")]
    with pytest.raises(NotImplementedError):
        ensemble.save(tmp_path / "e")
    with pytest.raises(ValueError, match="at least two"):
        lexner.load([tmp_path / "a"])
