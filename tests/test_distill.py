"""Distillation: soft targets from teachers, the soft losses, and a student that learns a teacher's outputs."""

import numpy as np
import pytest
import torch

from lexner.api import build_tagger
from lexner.data import Sentence
from lexner.distill import teacher_head, teacher_targets
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


def test_teacher_targets_show_a_progress_bar_over_every_teachers_sentences_when_asked(corpus, capsys):
    a, b = trained_teacher(corpus, 0), trained_teacher(corpus, 1)
    texts = [s.text for s in corpus[:5]] + [""]
    quiet = teacher_targets([a, b], texts, "kl", a.featurizer.tags, batch_size=2)
    assert capsys.readouterr().err == ""
    shown = teacher_targets([a, b], texts, "kl", a.featurizer.tags, batch_size=2, progress="soft targets")
    assert all(np.array_equal(x, y) for x, y in zip(quiet, shown))
    assert f"soft targets: 100%|██████████| {2 * len(texts)}/{2 * len(texts)}" in capsys.readouterr().err


def test_distillation_refuses_mismatched_teachers_and_incomplete_settings(corpus, tmp_path):
    other = build_tagger("bilstm_crf", [Sentence("北京", [Span(0, 2, "GPE")])], SMALL)
    with pytest.raises(ValueError, match="not the student's"):
        teacher_targets([other], ["北京"], "kl", build_tagger("bilstm_crf", corpus, SMALL).featurizer.tags)
    student = build_tagger("bilstm_crf", corpus, SMALL)
    with pytest.raises(TrainingError, match="teachers and a kind"):
        Trainer(student, TrainConfig(epochs=1), tmp_path, progress=False).fit_tasks(
            [Task(None, corpus, corpus)], teachers=[student])
    with pytest.raises(TrainingError, match=r"teacher 1: the teacher's entity types \['GPE'\] are not the student's \['LOC', 'PER'\] .*--rename"):
        Trainer(student, TrainConfig(epochs=1, distill="kl"), tmp_path / "d", progress=False).fit_tasks(
            [Task(None, corpus, corpus)], teachers=[other])  # a clean error (lexner distill: exit 2)
    with pytest.raises(ValueError, match="distill must be"):
        TrainConfig(distill="l2")


def test_lexner_distill_command(corpus, tmp_path, capsys, monkeypatch):
    import json

    from lexner.cli import main
    from lexner.data import write_conll, write_jsonl

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
    config = json.loads((tmp_path / "student" / "train_config.json").read_text(encoding="utf-8"))
    assert config["distill"] == "kl"
    card = json.loads((tmp_path / "student" / "model" / "config.json").read_text(encoding="utf-8"))["card"]
    assert card["teachers"] == [str(tmp_path / "teacher" / "model")]
    write_conll(corpus, tmp_path / "labelled.bmes", "BMES")  # labelled data given as unlabelled: refused
    assert main(["distill", "--teacher", str(tmp_path / "teacher" / "model"), "--unlabelled",
                 str(tmp_path / "labelled.bmes"), *files, "--out", str(tmp_path / "wrong"), *small]) == 2
    assert "its lines are a character and a tag each" in capsys.readouterr().err


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
    calls = []
    assert ensemble.tag_batch(texts, batch_size=2, progress=calls.append) == ensemble.tag_batch(texts)
    assert calls == sorted(calls) and calls[-1] == len(texts) and len(set(calls)) > 2  # a step per batch
    forced = lexner.load([tmp_path / "a", tmp_path / "b"], dictionary={"在北京": "LOC"})
    assert (2, 5, "LOC") in [(e.start, e.end, e.label) for e in forced.tag("张三在北京工作。")]
    with pytest.raises(NotImplementedError):
        ensemble.save(tmp_path / "e")
    with pytest.raises(ValueError, match="at least two models .got 1.*pass one path as it is"):
        lexner.load([tmp_path / "a"])
    with pytest.raises(ValueError, match="got 0"):
        lexner.load([])


def test_an_ensemble_takes_a_multi_task_member_through_its_head_with_the_first_members_types(corpus, tmp_path):
    import lexner

    one = trained_teacher(corpus, 0)
    one.save(tmp_path / "one")
    multi = build_tagger("bilstm_crf", corpus, SMALL, seed=3, label_sets={"fine": ["city", "name"],
                                                                        "coarse": ["PER", "LOC"]})
    multi.save(tmp_path / "multi")
    ensemble = lexner.load([tmp_path / "one", tmp_path / "multi"])
    assert ensemble.heads == [{"default": "default"}, {"default": "coarse"}]
    texts = [s.text for s in corpus[:3]]
    probs, _ = ensemble.marginals(texts)
    tags = ensemble.featurizer.tags
    members = [lexner.load(tmp_path / "one"), lexner.load(tmp_path / "multi")]
    alone = [teacher_targets([members[0]], texts, "kl", tags),
             teacher_targets([members[1]], texts, "kl", tags, labels=["coarse"])]
    for i, text in enumerate(texts):
        np.testing.assert_allclose(probs[i, : len(text)].numpy(), (alone[0][i] + alone[1][i]) / 2, atol=1e-5)
    found = [label for ents in spans(ensemble, [s.text for s in corpus]) for _, _, label in ents]
    assert found and set(found) <= {"PER", "LOC"}  # the coarse head's types, not the fine one's
    # the first member's label sets are the ensemble's: a one-task model has no head for "fine"
    with pytest.raises(ValueError, match=r"ensemble member 2 \(.*one\) has no head, or several, with the first "
                                         r"member's label set 'fine' \(city, name\); its heads: default: LOC, PER"):
        lexner.load([tmp_path / "multi", tmp_path / "one"])
    # two heads with the types: the default one answers, for an ensemble as for a distillation teacher
    twin = build_tagger("bilstm_crf", corpus, SMALL, seed=4, label_sets={"a": ["PER", "LOC"], "b": ["LOC", "PER"]})
    twin.save(tmp_path / "twin")
    assert lexner.load([tmp_path / "one", tmp_path / "twin"]).heads[1] == {"default": "a"}
    assert teacher_head(twin, None, one.featurizer.tags) is None  # its default head
    assert teacher_head(twin, "b", one.featurizer.tags) == "b"


def test_teachers_by_task_gives_unscoped_teachers_to_every_task_and_scoped_ones_to_theirs():
    from lexner.train import teachers_by_task

    tasks = [Task("msra", [], []), Task("weibo", [], []), Task("weibo-msra", [], [], head="msra")]
    assert teachers_by_task(tasks, ["all", ("weibo", "w1"), ("weibo", "w2"), ("msra", "m")]) == {
        "msra": ["all", "m"], "weibo": ["all", "w1", "w2"], "weibo-msra": ["all"]}
    assert teachers_by_task(tasks, [("msra", "m")])["weibo"] == []  # gold tags only
    with pytest.raises(TrainingError, match="no such task; the tasks are msra, weibo, weibo-msra"):
        teachers_by_task(tasks, [("cluener", "c")])
    with pytest.raises(TrainingError, match="one task"):
        teachers_by_task([Task(None, [], [])], [("msra", "m")])
    # one teacher for two tasks is fine; twice for one task (directly, or unscoped and scoped) is a slip
    assert teachers_by_task(tasks, [("weibo", "w"), ("weibo-msra", "w")])["weibo-msra"] == ["w"]
    for teachers in ([("weibo", "w"), ("weibo", "./w")], ["w", ("msra", "w")]):
        with pytest.raises(TrainingError, match="teacher .*w is given twice for task '(weibo|msra)'"):
            teachers_by_task(tasks, teachers)
    tagger = object()
    with pytest.raises(TrainingError, match="given twice for the training"):
        teachers_by_task([Task(None, [], [])], [tagger, tagger])


def test_a_teacher_of_one_task_gives_soft_targets_to_that_tasks_sentences_alone(corpus, tmp_path):
    from test_multitask import fine

    coarse_teacher = trained_teacher(swapped(corpus))
    seed_everything(2)
    student = build_tagger("bilstm_crf", corpus, SMALL, seed=2,
                           label_sets={"coarse": ["LOC", "PER"], "fine": ["city", "name"]})
    tasks = [Task("coarse", corpus[:15], corpus[15:]), Task("fine", fine(corpus[:15]), fine(corpus[15:]))]
    trainer = Trainer(student, TrainConfig(epochs=1, batch_size=4, distill="kl"), tmp_path, progress=False)
    items, task_of = trainer._soft_items(tasks, [("coarse", coarse_teacher)], [s.text for s in corpus[:3]])
    assert [("soft" in item, k) for item, k in zip(items, task_of)] == (
        [(True, 0)] * 15 + [(False, 1)] * 15 + [(True, 2)] * 3)  # unlabelled text: the first task's teachers
    expected = teacher_targets([coarse_teacher], [corpus[0].text], "kl", student.featurizer.label_set("coarse").tags)
    np.testing.assert_allclose(items[0]["soft"], expected[0])
    results = trainer.fit_tasks(tasks, teachers=[("coarse", coarse_teacher)])
    assert set(results["dev"]["tasks"]) == {"coarse", "fine"}
    # a coarse teacher cannot teach fine types
    with pytest.raises(TrainingError, match=r"teacher 1: the teacher's entity types \['LOC', 'PER'\] are not the "
                                            r"student's \['city', 'name'\]"):
        Trainer(student, TrainConfig(epochs=1, distill="kl"), tmp_path / "x", progress=False).fit_tasks(
            tasks, teachers=[("fine", coarse_teacher)])
    # unlabelled text trains the first task's head: refused before any work when that task has no teacher (was a
    # ValueError in the first batch holding unlabelled text, after every soft target had been computed)
    with pytest.raises(TrainingError, match=r"unlabelled text trains the first task's head \(fine\).*no teacher"):
        Trainer(student, TrainConfig(epochs=1, distill="kl"), tmp_path / "y", progress=False).fit_tasks(
            tasks[::-1], teachers=[("coarse", coarse_teacher)], unlabelled=[corpus[0].text])


def test_unlabelled_texts_are_read_as_the_tagger_sees_text_and_cut_at_the_maximum_length(corpus, tmp_path):
    teacher = trained_teacher(corpus)
    student = build_tagger("bilstm_crf", corpus, SMALL, seed=1)
    trainer = Trainer(student, TrainConfig(epochs=1, batch_size=4, distill="kl", max_length=20), tmp_path,
                      progress=False)
    long_text = "".join(s.text for s in corpus)
    items, task_of = trainer._soft_items([Task(None, corpus[:15], corpus[15:])], [teacher],
                                         [long_text, "张三 在 北京\u2028李四 去 上海"])
    unlabelled = [item for item, k in zip(items, task_of) if k == 1]
    assert len(unlabelled) == -(-len(long_text) // 20) + 2 and all(len(item["soft"]) <= 20 for item in unlabelled)
    # as the tagger sees text: whitespace between Chinese characters removed, a line break a new text
    assert [len(item["soft"]) for item in unlabelled[-2:]] == [5, 5]
    np.testing.assert_allclose(unlabelled[-1]["soft"], teacher_targets([teacher], ["李四去上海"], "kl",
                                                                         student.featurizer.tags)[0])


def test_a_multi_head_teacher_teaches_a_one_head_student_through_the_head_with_the_students_tags(corpus, tmp_path):
    from test_multitask import fine

    from lexner.distill import teacher_head

    teacher = build_tagger("bilstm_crf", corpus, SMALL, seed=3,
                           label_sets={"coarse": ["LOC", "PER"], "fine": ["city", "name"]})
    student = build_tagger("bilstm_crf", fine(corpus), SMALL, seed=4)  # one head, the teacher's fine types
    tags = student.featurizer.tags
    assert teacher_head(teacher, None, tags) == "fine"  # not the default head, whose tags are other
    assert teacher_head(teacher, "coarse", tags) == "coarse"  # a head of the task's name comes first
    assert teacher_head(teacher, None, build_tagger("bilstm_crf", corpus, SMALL).featurizer.tags) is None
    trainer = Trainer(student, TrainConfig(epochs=1, batch_size=4, distill="kl"), tmp_path, progress=False)
    items, _ = trainer._soft_items([Task(None, fine(corpus[:4]), fine(corpus[4:]))], [teacher], [])
    expected = teacher_targets([teacher], [corpus[0].text], "kl", tags, ["fine"])
    np.testing.assert_allclose(items[0]["soft"], expected[0])
    twin = build_tagger("bilstm_crf", corpus, SMALL, seed=3,
                        label_sets={"coarse": ["LOC", "PER"], "fine": ["city", "name"], "again": ["city", "name"]})
    assert teacher_head(twin, None, tags) is None  # two heads fit: none is guessed (the default's tags are checked)


def test_augmented_variants_of_distilled_sentences_train_on_gold_tags_alone(corpus, tmp_path):
    from lexner.models.base import soft_loss

    teacher = trained_teacher(corpus)
    student = build_tagger("bilstm_crf", corpus, SMALL, seed=1)
    items = [student.featurizer.encode_one(s.text, s.spans) for s in corpus[:3]]
    targets = teacher_targets([teacher], [s.text for s in corpus[:3]], "kl", student.featurizer.tags)
    items[0]["soft"], items[2]["soft"] = targets[0], targets[2]
    batch = student.featurizer.collate(items)
    assert batch.soft_mask.tolist() == [True, False, True]
    batch.soft_kind = "kl"
    kept = student.featurizer.collate([items[0], items[2]])
    kept.soft_kind = "kl"
    with torch.no_grad():
        mixed = soft_loss(student.crf, student.emissions(batch), batch)
        alone = soft_loss(student.crf, student.emissions(kept), kept)
    assert mixed.item() == pytest.approx(alone.item() * 2 / 3, rel=1e-4)  # the variant adds zero, counts as one
    assert student.featurizer.collate([items[0], items[2]]).soft_mask is None
    config = TrainConfig(epochs=2, batch_size=4, distill="kl", augment="mention", augment_ratio=0.5, patience=0)
    results = Trainer(student, config, tmp_path, progress=False).fit_tasks(
        [Task(None, corpus[:15], corpus[15:])], teachers=[teacher], unlabelled=[s.text for s in corpus[:4]])
    assert results["best_epoch"] >= 1


def test_lexner_distill_teacher_for_one_task(corpus, tmp_path, capsys, monkeypatch):
    import json

    from lexner.cli import main
    from test_multitask import task_options

    monkeypatch.setenv("LEXNER_DATA", str(tmp_path / "no-data"))
    tasks = task_options(corpus, tmp_path)
    small = ["--set", "hidden=16", "--set", "char_dim=8", "--set", "bigram_dim=4", "--no-progress", "--device", "cpu",
             "--batch-size", "4", "--epochs", "1"]
    assert main(["train", "--train", str(tmp_path / "coarse_train.jsonl"), "--dev", str(tmp_path / "coarse_dev.jsonl"),
                 "--out", str(tmp_path / "teacher"), *small]) == 0
    capsys.readouterr()
    teacher = str(tmp_path / "teacher" / "model")
    assert main(["distill", "--teacher", f"nope={teacher}", *tasks, "--out", str(tmp_path / "bad"), *small]) == 2
    assert "no such task; the tasks are coarse, fine" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    assert main(["distill", "--teacher", "=x", *tasks, "--out", str(tmp_path / "bad"), *small]) == 2
    assert "expected DIR or TASK=DIR" in capsys.readouterr().err
    assert main(["distill", "--teacher", f"coarse={teacher}", *tasks, "--augment", "mention",
                 "--out", str(tmp_path / "student"), *small]) == 0
    card = json.loads((tmp_path / "student" / "model" / "config.json").read_text(encoding="utf-8"))["card"]
    assert card["teachers"] == [f"coarse={teacher}"]


def test_mapped_tags_sum_a_teachers_tags_into_the_mapped_types_and_unmapped_types_into_o():
    from lexner.distill import mapped_tags

    teacher = ["O", "B-PER.NAM", "E-PER.NAM", "S-PER.NOM", "S-GPE.NAM", "S-LOC.NAM"]
    student = ["O", "B-NR", "E-NR", "S-NS"]
    matrix = mapped_tags(teacher, student, {"PER.NAM": "NR", "GPE.NAM": "NS", "LOC.NAM": "NS"})
    assert [student[row.argmax()] for row in matrix] == ["O", "B-NR", "E-NR", "O", "S-NS", "S-NS"]
    assert (matrix.sum(1) == 1).all()
    with pytest.raises(ValueError, match="S-NT, which is not among the student's tags"):
        mapped_tags(["O", "S-ORG.NAM"], student, {"ORG.NAM": "NT"})


def test_a_teacher_of_the_original_types_teaches_a_mapped_corpus_through_its_type_map(corpus, tmp_path):
    from lexner.data import map_types

    teacher = trained_teacher(corpus)  # PER and LOC
    mapping = {"PER": "name"}  # the student's corpus keeps persons only, renamed
    mapped = map_types(corpus, mapping)
    student = build_tagger("bilstm_crf", mapped, SMALL, seed=1)
    texts = [s.text for s in corpus[:4]]
    got = teacher_targets([teacher], texts, "kl", student.featurizer.tags, type_map=mapping)
    full = teacher_targets([teacher], texts, "kl", teacher.featurizer.tags)
    index = teacher.featurizer.label_set(None).tag_index
    for g, f in zip(got, full):
        np.testing.assert_allclose(g.sum(1), 1, atol=1e-4)
        for column, tag in enumerate(student.featurizer.tags):
            expected = (f[:, [index[t] for t in index if t == "O" or t.endswith("-LOC")]].sum(1) if tag == "O"
                        else f[:, index[tag.replace("name", "PER")]])
            np.testing.assert_allclose(g[:, column], expected, atol=1e-5)
    with pytest.raises(ValueError, match="not the student's"):  # without the map: refused as before
        teacher_targets([teacher], texts, "kl", student.featurizer.tags)
    with pytest.raises(ValueError, match="needs kl distillation"):
        teacher_targets([teacher], texts, "mse", student.featurizer.tags, type_map=mapping)
    # a teacher of neither the student's types nor the corpus's original ones (the map renames none of its
    # types): refused, not an all-O target for every character
    with pytest.raises(ValueError, match=r"neither the student's nor any the corpus's types are renamed from "
                                         r"\(\['PER.NAM'\]\)"):
        teacher_targets([teacher], texts, "kl", student.featurizer.tags, type_map={"PER.NAM": "name"})
    trainer = Trainer(student, TrainConfig(epochs=1, batch_size=4, distill="kl"), tmp_path, progress=False)
    results = trainer.fit_tasks([Task(None, mapped[:15], mapped[15:], type_map=mapping)], teachers=[teacher])
    assert results["best_epoch"] == 1


def test_resume_with_other_teachers_or_unlabelled_texts_is_refused(corpus, tmp_path):
    a, b = trained_teacher(corpus, 0), trained_teacher(corpus, 1)
    tasks = [Task(None, corpus[:15], corpus[15:])]

    def trainer(epochs):
        return Trainer(build_tagger("bilstm_crf", corpus, SMALL), TrainConfig(epochs=epochs, distill="kl",
                                                                             batch_size=8), tmp_path, progress=False)

    trainer(1).fit_tasks(tasks, teachers=[a], unlabelled=["北京欢迎你"])
    for teachers, unlabelled, said in (([b], ["北京欢迎你"], "other teachers"),
                                       ([("", a)], ["北京欢迎你"], "other teachers"),  # a's own task, not every task
                                       ([a], ["上海欢迎你"], "other unlabelled texts"), ([a], [], "other unlabelled")):
        other = trainer(2)
        assert other.resume()
        with pytest.raises(TrainingError, match=f"was trained with {said}"):
            other.fit_tasks(tasks, teachers=teachers, unlabelled=unlabelled)
    same = trainer(2)
    assert same.resume()
    same.fit_tasks(tasks, teachers=[a], unlabelled=["北京欢迎你"])
    assert same.epoch == 2
