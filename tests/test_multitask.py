"""Multi-task training: one shared encoder, one head per label set (sampler, trainer, CLI, export)."""

import json

import pytest
import torch

import lexner
from lexner.lexicon import Lexicon
from lexner.api import build_tagger
from lexner.cli import main
from lexner.data import Sentence, write_jsonl
from lexner.fileio import ModelFormatError
from lexner.schemes import Span
from lexner.dictionary import Dictionary
from lexner.train import BucketBatchSampler, Task, Trainer, TrainConfig, epoch_records, seed_everything

SMALL = {"char_dim": 16, "bigram_dim": 8, "hidden": 24, "dropout": 0.1}
FINE = {"PER": "name", "LOC": "city"}


def fine(sentences):
    """The same texts in another label convention: people are "name", places "city"."""
    return [Sentence(s.text, [Span(sp.start, sp.end, FINE[sp.label]) for sp in s.spans]) for s in sentences]


def test_sampler_keeps_a_batch_within_one_task_and_sees_each_sentence_once_at_temperature_1():
    lengths = list(range(1, 30))
    tasks = [0] * 25 + [1] * 4
    sampler = BucketBatchSampler(lengths, 4, seed=1, tasks=tasks)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 7 + 1
    assert sorted(i for b in batches for i in b) == list(range(29))
    assert all(len({tasks[i] for i in b}) == 1 for b in batches)


def test_sampler_temperature_gives_a_small_task_more_batches_in_an_epoch_of_the_same_size():
    lengths = [5] * 104
    tasks = [0] * 100 + [1] * 4
    proportional = BucketBatchSampler(lengths, 4, seed=1, tasks=tasks)
    tempered = BucketBatchSampler(lengths, 4, seed=1, tasks=tasks, temperature=5)
    small = [sum(tasks[b[0]] == 1 for b in s) for s in (proportional, tempered)]
    assert small[0] == 1 and small[1] > 3  # 100^(1/5) : 4^(1/5) ≈ 2.5 : 1.3 of 26 batches
    assert len(tempered) == len(proportional) == len(list(tempered))
    tempered.set_epoch(1)
    assert all(len({tasks[i] for i in b}) == 1 for b in tempered)
    cold = BucketBatchSampler(lengths, 4, seed=1, tasks=tasks, temperature=0.01)  # 100 ** 100 overflowed a float
    assert cold.counts == [26, 1]  # the large task takes the batches, the small one keeps one


def test_one_task_gives_the_same_batches_as_before():
    import random

    from lexner.train import bucketed_batches

    lengths = [3, 9, 4, 7, 1, 8, 2, 6, 5, 10, 3]
    before = bucketed_batches(lengths, 4, random.Random(2 * 100_003 + 0))  # what one corpus drew before tasks
    assert list(BucketBatchSampler(lengths, 4, seed=2)) == before
    assert list(BucketBatchSampler(lengths, 4, seed=2, tasks=[0] * 11)) == before


def test_fit_tasks_trains_every_head_selects_on_pooled_dev_scores_and_scores_each_task(corpus, tmp_path):
    seed_everything(3)
    tagger = build_tagger("bilstm_crf", corpus, SMALL, seed=3,
                          label_sets={"coarse": ["LOC", "PER"], "fine": ["city", "name"]})
    before = {k: v.clone() for k, v in tagger.state_dict().items() if k.startswith(("output.", "heads."))}
    trainer = Trainer(tagger, TrainConfig(epochs=2, batch_size=4, lr=0.01, seed=3, patience=0), tmp_path,
                      progress=False)
    results = trainer.fit_tasks([Task("coarse", corpus[:15], corpus[15:], corpus[15:]),
                                 Task("fine", fine(corpus[:15]), fine(corpus[15:]), fine(corpus[15:]))])
    after = trainer.model.state_dict()
    assert all(not after[k].equal(v) for k, v in before.items()), "a head was not trained"
    tasks = results["dev"]["tasks"]
    assert set(tasks) == {"coarse", "fine"}
    assert set(tasks["fine"]["per_type"]) <= {"city", "name"} and set(tasks["coarse"]["per_type"]) <= {"LOC", "PER"}
    assert results["dev"]["mean"]["f1"] == pytest.approx((tasks["coarse"]["micro"]["f1"] + tasks["fine"]["micro"]["f1"]) / 2)
    assert results["dev"]["selection"] == "pooled"  # the default: every dev entity counts once
    found = sum(t["micro"]["recall"] * t["micro"]["support"] for t in tasks.values())
    assert results["dev"]["pooled"]["recall"] == pytest.approx(found / sum(t["micro"]["support"] for t in tasks.values()))
    for kind in ("mean", "pooled"):  # the entities counted, as one task's micro scores give them
        assert results["dev"][kind]["support"] == sum(t["micro"]["support"] for t in tasks.values())
        assert results["dev"][kind]["predicted"] == sum(t["micro"]["predicted"] for t in tasks.values())
    assert set(results["test"]["tasks"]) == {"coarse", "fine"}
    log = epoch_records(tmp_path / "log.jsonl")
    assert [r["epoch"] for r in log] == [1, 2] and set(log[0]["tasks"]) == {"coarse", "fine"}
    loaded = lexner.load(tmp_path / "model")
    assert list(loaded.featurizer.label_sets) == ["coarse", "fine"]
    assert json.loads((tmp_path / "model" / "config.json").read_text(encoding="utf-8"))["format_version"] == 3


def test_task_selection_task_name_selects_on_that_tasks_dev_alone(corpus, tmp_path):
    """``task:NAME``: each epoch's selection score is that task's dev micro F1 (the other task trains beside it),
    and the best epoch is the one where it was highest."""
    seed_everything(4)
    tagger = build_tagger("bilstm_crf", corpus, SMALL, seed=4,
                          label_sets={"coarse": ["LOC", "PER"], "fine": ["city", "name"]})
    config = TrainConfig(epochs=4, batch_size=4, optimizer="adam", lr=0.02, seed=4, patience=0,
                         task_selection="task:fine")
    swapped = {"name": "city", "city": "name"}  # a fine dev set the model gets wrong: its F1 differs from coarse's
    fine_dev = [Sentence(s.text, [Span(sp.start, sp.end, swapped[sp.label]) for sp in s.spans])
                for s in fine(corpus[15:])]
    results = Trainer(tagger, config, tmp_path, progress=False).fit_tasks(
        [Task("coarse", corpus[:15], corpus[15:]), Task("fine", fine(corpus[:15]), fine_dev)])
    log = epoch_records(tmp_path / "log.jsonl")
    assert all(r["dev"] == r["tasks"]["fine"] for r in log)
    f1, other = ([r["tasks"][name]["f1"] for r in log] for name in ("fine", "coarse"))
    assert results["best_epoch"] == f1.index(max(f1)) + 1
    assert other.index(max(other)) != f1.index(max(f1))  # selecting on coarse (or pooled) would choose otherwise
    assert results["dev"]["selection"] == "task:fine"


@pytest.mark.parametrize("selection", ["task:", "fine", "best"])
def test_task_selection_refuses_a_malformed_choice(selection):
    with pytest.raises(ValueError, match="task_selection must be"):
        TrainConfig(task_selection=selection)


def test_task_selection_refuses_a_task_not_trained_before_any_work(corpus, tmp_path):
    tagger = build_tagger("bilstm_crf", corpus, SMALL, label_sets={"coarse": ["LOC", "PER"], "fine": ["city", "name"]})
    trainer = Trainer(tagger, TrainConfig(epochs=1, task_selection="task:weibo"), tmp_path, progress=False)
    with pytest.raises(Exception, match="no task 'weibo' among those trained \\(coarse, fine\\)"):
        trainer.fit_tasks([Task("coarse", corpus[:15], corpus[15:]), Task("fine", fine(corpus[:15]), fine(corpus[15:]))])
    assert not (tmp_path / "log.jsonl").exists()


def test_fit_tasks_refuses_a_task_without_a_head(corpus, tmp_path):
    tagger = build_tagger("bilstm_crf", corpus, SMALL, label_sets={"coarse": ["LOC", "PER"], "fine": ["city"]})
    trainer = Trainer(tagger, TrainConfig(epochs=1), tmp_path, progress=False)
    with pytest.raises(ValueError, match="no label set 'other'"):
        trainer.fit_tasks([Task("other", corpus, corpus)])


def test_a_one_head_model_has_no_label_sets_and_models_of_earlier_formats_still_load(corpus, tmp_path):
    from safetensors.torch import load_file, save_file

    tagger = build_tagger("softlexicon", corpus, SMALL, lexicon=Lexicon(["北京", "张三"]))
    tagger.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text(encoding="utf-8"))
    assert meta["format_version"] == 3 and "label_sets" not in meta
    # format 1 (and 2) named the embedding tables' weights char_embedding.*, bigram_embedding.*, word_embedding.*
    state = load_file(tmp_path / "m" / "model.safetensors")
    old = {k.replace("embed.chars.", "char_embedding.").replace("embed.bigrams.", "bigram_embedding.")
           .replace("embed.words.", "word_embedding."): v for k, v in state.items()}
    assert "char_embedding.weight" in old and "word_embedding.weight" in old
    save_file(old, tmp_path / "m" / "model.safetensors")
    (tmp_path / "m" / "config.json").write_text(json.dumps({**meta, "format_version": 1}), encoding="utf-8")
    legacy = lexner.load(tmp_path / "m")
    for key, value in tagger.state_dict().items():
        assert torch.equal(legacy.state_dict()[key], value), key


@pytest.mark.parametrize("label_sets, message", [
    ({"a": ["PER"], "b.c": ["x"]}, "label_sets"),
    ({"a": ["PER", "PER"]}, "label_sets"),
    ({"b": ["LOC"]}, "first of 'label_sets'"),
])
def test_load_refuses_bad_label_sets(corpus, tmp_path, label_sets, message):
    build_tagger("bilstm_crf", corpus, SMALL, label_sets={"a": ["PER"], "b": ["LOC"]}).save(tmp_path / "m")
    config = tmp_path / "m" / "config.json"
    meta = json.loads(config.read_text(encoding="utf-8"))
    meta["label_sets"] = label_sets
    config.write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(ModelFormatError, match=message):
        lexner.load(tmp_path / "m")


def task_options(corpus, folder) -> list[str]:
    """``--task`` options of a two-task training (coarse and fine labels), its files written into ``folder``."""
    for name, sentences in (("coarse", corpus), ("fine", fine(corpus))):
        write_jsonl(sentences[:15], folder / f"{name}_train.jsonl")
        write_jsonl(sentences[15:], folder / f"{name}_dev.jsonl")
    return [f"--task={n}:{folder / n}_train.jsonl:{folder / n}_dev.jsonl" for n in ("coarse", "fine")]


def test_cli_trains_tags_evaluates_and_exports_a_multi_task_model(corpus, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LEXNER_DATA", str(tmp_path / "no-data"))
    tasks = task_options(corpus, tmp_path)
    assert main(["train", *tasks, "--out", str(tmp_path / "run"), "--epochs", "2", "--batch-size", "4",
                 "--set", "hidden=16", "--set", "char_dim=8", "--set", "bigram_dim=4", "--no-progress",
                 "--device", "cpu", "--task-temperature", "2"]) == 0
    summary = json.loads(capsys.readouterr().out)
    # the pooled scores over tasks, with the same keys as one task's micro scores, and which they are
    assert set(summary["dev"]) == {"precision", "recall", "f1", "support", "predicted"}
    assert summary["selection"] == "pooled"
    model = str(tmp_path / "run" / "model")
    assert main(["tag", model, "张三在北京", "--labels", "fine"]) == 0
    labels = {e["label"] for e in json.loads(capsys.readouterr().out)["entities"]}
    assert labels <= {"name", "city"}
    assert main(["evaluate", model, "--labels", "fine", "--file", str(tmp_path / "fine_dev.jsonl")]) == 0
    assert set(json.loads(capsys.readouterr().out)["per_type"]) <= {"name", "city"}
    assert main(["tag", model, "张三", "--labels", "nope"]) == 2
    assert "--labels nope: no label set 'nope'" in capsys.readouterr().err
    assert main(["export", model, str(tmp_path / "exported"), "--rename", "PER=person"]) == 0
    exported = lexner.load(tmp_path / "exported")
    assert exported.featurizer.label_sets["coarse"].entity_types == ["LOC", "person"]
    assert exported.featurizer.label_sets["fine"].entity_types == ["city", "name"]
    card = exported.metadata["card"]
    assert set(card["dev"]["tasks"]["coarse"]["per_type"]) <= {"LOC", "person"}


def test_cli_refuses_duplicate_or_malformed_tasks(corpus, tmp_path, capsys):
    write_jsonl(corpus, tmp_path / "t.jsonl")
    spec = f"a:{tmp_path / 't.jsonl'}:{tmp_path / 't.jsonl'}"
    assert main(["train", "--task", spec, "--task", spec, "--out", str(tmp_path / "run")]) == 2
    assert "distinct" in capsys.readouterr().err
    for bad in ("a", "a::dev", ":train", "a:t:d:x:y", "a:t:d:"):
        assert main(["train", "--task", bad, "--out", str(tmp_path / "run")]) == 2
        assert "NAME:TRAIN[:DEV[:TEST]]" in capsys.readouterr().err


def test_a_task_without_a_dev_file_carves_one_from_its_train(corpus, tmp_path):
    from lexner.cli import _load_tasks, build_parser

    write_jsonl(corpus, tmp_path / "t.jsonl")
    write_jsonl(corpus[:5], tmp_path / "test.jsonl")
    t = tmp_path / "t.jsonl"
    args = build_parser().parse_args(["train", "--task", f"a:{t}", "--task", f"b:{t}::{tmp_path / 'test.jsonl'}",
                                      "--dev-fraction", "0.2", "--out", str(tmp_path / "run")])
    a, b = _load_tasks(args)
    assert len(a.dev) == round(0.2 * len(corpus)) and len(a.train) + len(a.dev) == len(corpus)
    assert (b.train, b.dev) == (a.train, a.dev) and a.test is None and len(b.test) == 5


def test_map_types_renames_known_types_and_leaves_the_rest_out():
    from lexner.data import TYPE_MAPS, map_types

    s = Sentence("小明说老师在新浪", [Span(0, 2, "PER.NAM"), Span(3, 5, "PER.NOM"), Span(6, 8, "ORG.NAM")])
    [mapped] = map_types([s], TYPE_MAPS[("weibo", "msra")])
    assert mapped.text == s.text and mapped.spans == [Span(0, 2, "NR"), Span(6, 8, "NT")]


def test_two_tasks_can_train_one_head_and_are_scored_apart(corpus, tmp_path):
    """A corpus in another convention, mapped into the first head's types, trains that head beside its own."""
    tasks = [Task("coarse", corpus[:15], corpus[15:]), Task("fine", fine(corpus[:15]), fine(corpus[15:])),
             Task("fine-coarse", corpus[:15], corpus[15:], head="coarse")]
    seed_everything(3)
    tagger = build_tagger("bilstm_crf", corpus, SMALL, label_sets={"coarse": ["LOC", "PER"], "fine": ["city", "name"]})
    results = Trainer(tagger, TrainConfig(epochs=1, batch_size=4), tmp_path, progress=False).fit_tasks(tasks)
    assert set(results["dev"]["tasks"]) == {"coarse", "fine", "fine-coarse"}
    assert set(results["dev"]["tasks"]["fine-coarse"]["per_type"]) <= {"LOC", "PER"}  # scored with its head
    assert list(lexner.load(tmp_path / "model").featurizer.label_sets) == ["coarse", "fine"]  # no extra head


def test_cli_dataset_name_colon_head_maps_a_named_dataset_into_another_head(monkeypatch):
    from argparse import Namespace

    from lexner import cli, data

    weibo = [Sentence("小明在新浪", [Span(0, 2, "PER.NAM"), Span(3, 5, "ORG.NAM")]),
             Sentence("老师好", [Span(0, 2, "PER.NOM")])]
    msra = [Sentence("张三在北京", [Span(0, 2, "NR"), Span(3, 5, "NS")])]
    monkeypatch.setattr(data, "load_splits", lambda name, root=None: dict.fromkeys(
        ("train", "dev", "test"), weibo if name == "weibo" else msra))
    args = Namespace(dataset=["msra", "weibo", "weibo:msra"], task=None, train=None, dev=None, test=None,
                     data_root=None, format="auto", dev_blocks=0, dev_fraction=None)
    tasks = cli._load_tasks(args)
    assert [(t.name, t.labels) for t in tasks] == [("msra", "msra"), ("weibo", "weibo"), ("weibo-msra", "msra")]
    assert tasks[2].train[0].spans == [Span(0, 2, "NR"), Span(3, 5, "NT")] and tasks[2].train[1].spans == []
    assert tasks[2].type_map == data.TYPE_MAPS[("weibo", "msra")] and tasks[1].type_map is None  # for teachers
    with pytest.raises(SystemExit):  # no mapping from Weibo's types into CLUENER's: refused by the parser
        main(["train", "--dataset", "weibo:cluener", "--out", "x"])


def test_a_dictionary_type_of_another_head_is_refused_naming_the_head(corpus, tmp_path, capsys):
    tagger = build_tagger("bilstm_crf", corpus, SMALL, label_sets={"coarse": ["LOC", "PER"], "fine": ["city", "name"]})
    tagger.save(tmp_path / "m")
    tagger.add_dictionary({"南京": "city"})  # a type of the "fine" head
    assert [(e.text, e.label) for e in tagger.tag("南京", labels="fine")] == [("南京", "city")]
    with pytest.raises(ValueError, match=r"\['city'\] are not types of the default head \(LOC, PER\)"):
        tagger.tag("南京")
    (tmp_path / "d.tsv").write_text("南京\tcity\n", encoding="utf-8")
    tag = ["tag", "--model", str(tmp_path / "m"), "--dictionary", str(tmp_path / "d.tsv"), "南京"]
    assert main(tag) == 2  # a clean error before any text is tagged, not a traceback
    assert "not types of the default head" in capsys.readouterr().err
    assert main(tag + ["--labels", "fine"]) == 0
    assert '"label": "city"' in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"\['PER', 'city'\] are not all types of one head \(coarse: "):
        tagger.add_dictionary({"张三": "PER"})  # beside city: every head would refuse to tag
    assert tagger.dictionary.items() == [("南京", "city")]  # as it was
    tagger.add_dictionary({"南京": "LOC"})  # given again as a type of the other head: all types of one head now
    assert tagger.dictionary.items() == [("南京", "LOC")]  # (was refused: the old type counted beside the new)
    (tmp_path / "both.tsv").write_text("南京\tLOC\n张三\tname\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"not all types of one head .* \(given at .*both.tsv:2\)"):
        tagger.add_dictionary(Dictionary.read(tmp_path / "both.tsv"))
    tagger.dictionary = None  # dropped: any head tags again
    assert tagger.tag("南京") is not None


@pytest.mark.parametrize("labels", [123, ["fine"], b"fine"])
def test_a_head_that_is_not_a_name_is_a_type_error(corpus, labels):
    tagger = build_tagger("bilstm_crf", corpus, SMALL, label_sets={"coarse": ["LOC", "PER"], "fine": ["city"]})
    with pytest.raises(TypeError, match="labels must be a head's name"):
        tagger.tag("张三在北京", labels=labels)
    assert all(e.label == "city" for e in tagger.tag("张三在北京", labels="fine"))  # a name works


def test_pooled_scores_count_the_entities_of_a_task_that_got_none_right():
    """Pooled precision counts every predicted entity — also those of a head with no true positive (they were
    left out, which raised the pooled precision and F1 the trainer selects on)."""
    import types

    from lexner.entity import Entity

    class Tagger:  # task a finds its entity; task b predicts one wrong entity per sentence
        def tag_batch(self, texts, batch_size, labels=None):
            return [[Entity(0, 2, "X", t[:2])] if labels == "a" else [Entity(2, 4, "X", t[2:4])] for t in texts]

    gold = [Sentence("甲乙丙丁", [Span(0, 2, "X")])] * 10
    tasks = [Task(name, gold[:1], gold) for name in ("a", "b")]
    trainer = types.SimpleNamespace(config=types.SimpleNamespace(eval_batch_size=8, task_selection="pooled"))
    scores = Trainer.scores(trainer, Tagger(), tasks, "dev")
    assert scores["tasks"]["b"]["micro"]["predicted"] == 10 and scores["tasks"]["b"]["micro"]["precision"] == 0
    assert scores["pooled"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 20, "predicted": 20})
