import copy
import json
import logging

import pytest
import torch

import lexner
from lexner.api import build_tagger
from lexner.data import Sentence
from lexner.schemes import Span
from lexner.checkpoint import load_checkpoint
from lexner.train import (Trainer, TrainConfig, TrainingError, WeightAverage, bucketed_batches, cut_long,
                          epoch_records, seed_everything)

import random

SMALL = {"char_dim": 16, "bigram_dim": 8, "hidden": 24, "dropout": 0.1}


def make_trainer(corpus, out, epochs, **overrides):
    seed_everything(3)
    tagger = build_tagger("bilstm_crf", corpus, SMALL, seed=3)
    config = TrainConfig(epochs=epochs, batch_size=4, lr=0.01, seed=3, patience=0, **overrides)
    return Trainer(tagger, config, out, progress=False)


def test_fit_writes_model_log_checkpoint_and_results(corpus, tmp_path):
    trainer = make_trainer(corpus, tmp_path, epochs=3)
    results = trainer.fit(corpus[:15], corpus[15:], corpus[15:])
    *log, final = [json.loads(line) for line in open(tmp_path / "log.jsonl", encoding="utf-8")]
    assert [r["epoch"] for r in log] == [1, 2, 3]
    assert {"train_loss", "dev", "lr", "sentences_per_second"} <= set(log[0])
    assert results["best_epoch"] == max(log, key=lambda r: r["dev"]["f1"])["epoch"]
    assert final == {"final": True, "best_epoch": results["best_epoch"], "dev": results["dev"]["micro"],
                     "test": results["test"]["micro"]}  # the final scores end the log
    assert json.load(open(tmp_path / "results.json", encoding="utf-8"))["test"]["micro"] == results["test"]["micro"]
    loaded = lexner.load(tmp_path / "model")
    assert loaded.metadata["card"]["epoch"] == results["best_epoch"]
    assert (tmp_path / "checkpoint" / "trainer_state.safetensors").is_file()
    assert not list(tmp_path.glob(".model.*")), "temporary directories left behind"


def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(corpus, tmp_path):
    full = make_trainer(corpus, tmp_path / "full", epochs=4, warmup=0.5)
    full.fit(corpus[:15], corpus[15:])
    first = make_trainer(corpus, tmp_path / "cut", epochs=2, warmup=0.5)
    first.fit(corpus[:15], corpus[15:])
    torch.manual_seed(12345)  # the resumed process starts from a different random state
    second = make_trainer(corpus, tmp_path / "cut", epochs=4, warmup=0.5)
    assert second.resume()
    second.fit(corpus[:15], corpus[15:])
    full_state = lexner.load(tmp_path / "full" / "model").state_dict()
    cut_state = lexner.load(tmp_path / "cut" / "model").state_dict()
    assert full_state.keys() == cut_state.keys()
    for key in full_state:
        assert torch.equal(full_state[key], cut_state[key]), key
    assert [r["epoch"] for r in epoch_records(tmp_path / "cut" / "log.jsonl")] == [1, 2, 3, 4]
    assert json.loads(open(tmp_path / "cut" / "log.jsonl", encoding="utf-8").readlines()[-1])["final"]  # only the last run's


def test_resume_then_save_checkpoints_with_windows_open_files(corpus, tmp_path, windows_open_files):
    """The resumed optimizer's state was the checkpoint's tensors as loaded, which keep its file memory-mapped:
    on Windows the next epoch's checkpoint could not move the previous one aside (PermissionError)."""
    make_trainer(corpus, tmp_path, epochs=1).fit(corpus[:15], corpus[15:])
    trainer = make_trainer(corpus, tmp_path, epochs=2)
    assert trainer.resume()
    trainer.fit(corpus[:15], corpus[15:])
    assert load_checkpoint(tmp_path / "checkpoint")["epoch"] == 2


def test_the_log_ends_its_lines_with_newlines_with_windows_text_files(corpus, tmp_path, windows_text_files):
    """The log was appended to in text mode, which on Windows ends lines with \\r\\n, unlike every other file
    lexner writes, and a resume rewrites the lines kept with \\n: one file of two kinds of line end."""
    make_trainer(corpus, tmp_path, epochs=1).fit(corpus[:15], corpus[15:])
    trainer = make_trainer(corpus, tmp_path, epochs=2)
    assert trainer.resume()
    trainer.fit(corpus[:15], corpus[15:])
    raw = (tmp_path / "log.jsonl").read_bytes()
    assert b"\r" not in raw and raw.count(b"\n") == 3


def nan_loss(self, batch):
    """A loss that became NaN, as a real one does: still part of the graph, so backward runs."""
    return next(self.parameters()).sum() * float("nan")


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(corpus, tmp_path, monkeypatch):
    trainer = make_trainer(corpus, tmp_path, epochs=1)
    trainer.fit(corpus[:15], corpus[15:])
    before = (tmp_path / "checkpoint" / "trainer_state.json").read_text(encoding="utf-8")
    trainer.config.epochs = 2
    monkeypatch.setattr(type(trainer.model), "loss", nan_loss)
    with pytest.raises(TrainingError, match="loss became nan.*last good checkpoint"):
        trainer.fit(corpus[:15], corpus[15:])
    assert (tmp_path / "checkpoint" / "trainer_state.json").read_text(encoding="utf-8") == before


def test_early_stopping(corpus, tmp_path, monkeypatch, caplog):
    trainer = make_trainer(corpus, tmp_path, epochs=20)
    trainer.config.patience = 2
    monkeypatch.setattr("lexner.train.evaluate", lambda *a, **k: {"micro": {"f1": 0.5, "precision": 0.5, "recall": 0.5}})
    monkeypatch.setattr(Trainer, "finish", lambda self, tasks: {"epochs_run": self.epoch})
    with caplog.at_level(logging.INFO, logger="lexner.train"):
        assert trainer.fit(corpus[:15], corpus[15:])["epochs_run"] == 3  # best at 1, then 2 without improvement
    assert "early stopping after epoch 3: no better dev F1 for 2 epochs" in caplog.text


def test_bucketed_batches_cover_every_sentence_once_and_group_lengths():
    lengths = [random.Random(0).randint(1, 100) for _ in range(1000)]
    batches = bucketed_batches(lengths, 10, random.Random(1))
    assert sorted(i for b in batches for i in b) == list(range(1000))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 10
    assert batches != bucketed_batches(lengths, 10, random.Random(2))


@pytest.mark.parametrize("n", [41, 1001, 1006])
def test_every_process_gets_a_sentence_of_every_batch_and_each_sentence_is_trained_once(n):
    """Under torchrun (here 3 ranks) a batch too short for every rank joins the one before it (a skipped short
    batch left out the same longest sentences of the last pool every epoch); one process draws as before."""
    from lexner.train import BucketBatchSampler

    lengths = [random.Random(n).randint(1, 100) for _ in range(n)]
    tasks = [i % 3 for i in range(n)]
    for task_of in (None, tasks):
        one = BucketBatchSampler(lengths, 4, seed=5, tasks=task_of)
        assert all(len(b) <= 4 for b in one.batches())  # a single process: no batch grows
        ranks = [BucketBatchSampler(lengths, 4, seed=5, rank=r, world_size=3, tasks=task_of) for r in range(3)]
        for epoch in (0, 1):
            for sampler in ranks:
                sampler.set_epoch(epoch)
            shards = [list(sampler.shards()) for sampler in ranks]
            assert len({len(s) for s in shards}) == 1 and all(ids for s in shards for ids, _ in s)
            trained = sorted(i for s in shards for ids, _ in s for i in ids)
            assert trained == list(range(n))
    merged = bucketed_batches(lengths, 4, random.Random(1), min_size=3)
    plain = bucketed_batches(lengths, 4, random.Random(1))
    drawn = {tuple(b) for b in plain}  # the same draws: each batch as before, or one with the short one after it
    assert min(map(len, merged)) >= 3 and all(
        tuple(b) in drawn or tuple(b[:4]) in drawn and tuple(b[4:]) in drawn and len(b[4:]) < 3 for b in merged)
    assert sorted(i for b in merged for i in b) == list(range(n)) and len(merged) < len(plain)


def test_cut_long_keeps_entities_whole():
    s = Sentence("张三在北京工作李四", [Span(0, 2, "PER"), Span(3, 5, "LOC"), Span(7, 9, "PER")])
    pieces = cut_long([s], 4)
    assert "".join(p.text for p in pieces) == s.text
    assert all(len(p.text) <= 4 for p in pieces)
    offset, found = 0, []
    for p in pieces:
        found += [(a + offset, b + offset, l) for a, b, l in p.spans]
        offset += len(p.text)
    assert found == [tuple(x) for x in s.spans]


def test_cut_long_clips_an_entity_longer_than_max_length_and_ends():
    """An entity longer than the pieces cannot be kept whole: it is cut where it must be, its parts kept as
    entities of its type on each piece (neither dropped nor a cut that never advances)."""
    pieces = cut_long([Sentence("张" * 10, [Span(0, 10, "PER")]), Sentence("在北京" + "张" * 6, [Span(3, 9, "PER")])], 4)
    assert [(p.text, [tuple(sp) for sp in p.spans]) for p in pieces] == [
        ("张张张张", [(0, 4, "PER")]), ("张张张张", [(0, 4, "PER")]), ("张张", [(0, 2, "PER")]),
        ("在北京", []), ("张张张张", [(0, 4, "PER")]), ("张张", [(0, 2, "PER")])]


def test_the_logged_learning_rate_follows_the_decay_schedule(corpus, tmp_path):
    make_trainer(corpus, tmp_path, epochs=3, lr_decay=0.5).fit(corpus[:8], corpus[15:])
    assert [r["lr"] for r in epoch_records(tmp_path / "log.jsonl")] == pytest.approx([0.01, 0.01 / 1.5, 0.01 / 2])


@pytest.mark.parametrize("clip", [0.0, 1e-3])
def test_clip_bounds_the_first_step(corpus, tmp_path, clip):
    """One SGD step (4 sentences, batch 4) moves the weights by lr × the gradient, whose norm --clip bounds."""
    trainer = make_trainer(corpus, tmp_path, epochs=1, clip=clip, lr_decay=0.0)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.fit(corpus[:4], corpus[15:])
    moved = torch.cat([(p.detach() - b).flatten() for p, b in zip(trainer.model.parameters(), before)]).norm()
    if clip:
        assert 0 < moved <= 0.01 * clip * 1.001
    else:
        assert moved > 0.01 * 1e-3 * 10  # far more unclipped: the bound above is the clip's doing


def test_unknown_characters_are_drawn_anew_each_epoch(corpus, tmp_path, monkeypatch):
    """--unk-dropout's generator is seeded by seed, epoch and rank: each epoch masks other characters."""
    import lexner.train as train

    states, read = [], train.read_as_unknown

    def recording(batch, p, generator):
        states.append(generator.get_state().clone())
        return read(batch, p, generator)

    monkeypatch.setattr(train, "read_as_unknown", recording)
    make_trainer(corpus, tmp_path, epochs=2, unk_dropout=0.2).fit(corpus[:4], corpus[15:])  # one batch an epoch
    assert len(states) == 2 and not torch.equal(states[0], states[1])


def test_train_config_rejects_unknown_optimizer():
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="adagrad")


@pytest.mark.parametrize("seed", [-1, 2**32, True, 1.5])
def test_train_config_rejects_a_seed_numpy_cannot_take(seed):
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*32 - 1\]"):
        TrainConfig(seed=seed)
    assert TrainConfig(seed=2**32 - 1).seed == 2**32 - 1


@pytest.mark.parametrize("model, key", [("bilstm_crf", "char_dim"), ("bilstm_crf", "layers"),
                                        ("softlexicon", "word_dim"), ("lattice_lstm", "word_dim"),
                                        ("flat", "heads"), ("flat", "model_dim"), ("flat", "ffn_dim")])
def test_a_model_size_of_zero_is_refused_where_it_would_mean_no_layer(model, key):
    from lexner.models import model_class
    from lexner.models.base import checked_config

    with pytest.raises(ValueError, match=rf"config {key} must be an integer in \[1, "):
        checked_config(model_class(model), {key: 0})
    for allowed in model_class(model).Config.zero_allowed:  # 0 means off: bigrams, FLAT's blocking
        assert getattr(checked_config(model_class(model), {allowed: 0}), allowed) == 0


def test_sampler_shards_are_the_global_batches_split_and_reshuffled_per_epoch():
    from lexner.train import BucketBatchSampler

    lengths = [3, 9, 4, 7, 1, 8, 2, 6, 5, 10, 3]
    one = BucketBatchSampler(lengths, 4, seed=1)
    ranks = [BucketBatchSampler(lengths, 4, seed=1, rank=r, world_size=2) for r in (0, 1)]
    for epoch in (0, 1):
        for s in [one, *ranks]:
            s.set_epoch(epoch)
        merged = [sorted(a + b) for a, b in zip(*ranks)]
        assert merged == [sorted(b) for b in one]
    one.set_epoch(0)
    first = list(one)
    one.set_epoch(1)
    assert list(one) != first and sorted(sum(first, [])) == list(range(len(lengths)))


def test_amp_switches_off_on_cpu_with_a_warning(corpus, tmp_path, caplog):
    from lexner.api import build_tagger

    tagger = build_tagger("bilstm_crf", corpus, {"hidden": 8})
    with caplog.at_level("WARNING"):
        trainer = Trainer(tagger, TrainConfig(epochs=1, batch_size=8, amp="bf16"), tmp_path, progress=False)
    assert trainer.amp_dtype is None and trainer.scaler is None
    assert any("float32" in r.getMessage() for r in caplog.records)
    assert trainer.fit(corpus, corpus[:4])["epochs_run"] == 1
    with pytest.raises(ValueError, match="amp"):
        TrainConfig(amp="int8")


def test_crf_runs_in_float32_under_autocast(corpus):
    from lexner.api import build_tagger

    tagger = build_tagger("bilstm_crf", corpus, {"hidden": 8})
    batch = tagger.featurizer.encode([s.text for s in corpus], [s.spans for s in corpus])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = tagger(batch)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_max_minutes_stops_before_an_epoch_that_would_end_past_the_budget(corpus, tmp_path, caplog):
    trainer = make_trainer(corpus, tmp_path / "short", epochs=5, max_minutes=1e-9)
    with caplog.at_level("INFO", logger="lexner.train"):
        results = trainer.fit(corpus[:15], corpus[15:])
    assert results["epochs_run"] == 1  # the first epoch always runs
    assert "--max-minutes" in caplog.text
    assert make_trainer(corpus, tmp_path / "long", epochs=3, max_minutes=60).fit(corpus[:15], corpus[15:])[
        "epochs_run"] == 3


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("model", ["bilstm_crf", "softlexicon"])
def test_the_fast_training_path_gives_the_losses_of_the_reference_path(corpus, tmp_path, monkeypatch, optimizer,
                                                                       model):
    """The fused optimiser (and every other speed-up of the training loop) changes only floating-point
    rounding: per-step losses of two epochs agree with torch's reference loop optimiser within 1e-5
    (relative), and the final weights within 1e-4."""
    import lexner.train as train_module
    from lexner.lexicon import Lexicon

    lexicon = Lexicon(["北京", "上海", "广州", "广州市", "南京", "张三", "李四", "工作", "附近"])
    config = {"softlexicon": {"char_dim": 8, "bigram_dim": 8, "word_dim": 8, "hidden": 16},
              "bilstm_crf": SMALL}[model]

    def run(out, make):
        monkeypatch.setattr(train_module, "make_optimizer", make)
        seed_everything(3)
        tagger = build_tagger(model, corpus, config, seed=3, lexicon=lexicon if model != "bilstm_crf" else None)
        losses = []
        original = tagger.loss
        tagger.loss = lambda batch: losses.append(original(batch)) or losses[-1]
        lr = 0.01 if optimizer == "adam" else 0.05
        trainer = Trainer(tagger, TrainConfig(epochs=2, batch_size=4, lr=lr, optimizer=optimizer, seed=3,
                                              patience=0), out, progress=False)
        trainer.fit(corpus[:15], corpus[15:])
        assert bool(trainer.optimizer.defaults.get("fused")) == (make is fast)
        return [float(x.detach()) for x in losses], trainer.model.state_dict()

    fast = train_module.make_optimizer

    def reference(groups, cfg):  # torch's default (loop) implementation
        kwargs = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
        if cfg.optimizer == "adam":
            return torch.optim.Adam(groups, foreach=False, **kwargs)
        return torch.optim.SGD(groups, momentum=cfg.momentum, foreach=False, **kwargs)

    ref_losses, ref_state = run(tmp_path / "ref", reference)
    fast_losses, fast_state = run(tmp_path / "fast", fast)
    assert len(ref_losses) == len(fast_losses) == 8
    assert fast_losses == pytest.approx(ref_losses, rel=1e-5)
    for key in ref_state:
        torch.testing.assert_close(fast_state[key], ref_state[key], rtol=1e-4, atol=1e-5)


def test_training_from_python_writes_a_model_card(corpus, tmp_path):
    trainer = make_trainer(corpus, tmp_path, epochs=1)
    trainer.fit(corpus[:15], corpus[15:])
    card = lexner.load(tmp_path / "model").metadata["card"]
    assert card["lexner"]["version"] == lexner.__version__ and card["device"] == "cpu"
    assert card["train_data"] == "train" and card["epoch"] == 1 and "micro" in card["dev"]


def test_weight_average_moves_towards_the_parameters_and_swaps_back():
    p = torch.nn.Parameter(torch.zeros(3))
    average = WeightAverage([p], decay=0.9)
    with torch.no_grad():
        p.fill_(1.0)
    average.update(step=1000)  # late: the full decay, the average moves a tenth of the way
    assert torch.allclose(average.averages[0], torch.full((3,), 0.1))
    average.update(step=0)  # early: min(decay, 1/10) -> moves 90% of the remaining way
    assert torch.allclose(average.averages[0], torch.full((3,), 0.91))
    with average.swapped():
        assert torch.allclose(p, torch.full((3,), 0.91))
    assert torch.equal(p.detach(), torch.ones(3))


def test_ema_selects_and_saves_the_averaged_weights_and_logs_the_raw_ones(corpus, tmp_path):
    trainer = make_trainer(corpus, tmp_path / "two", epochs=2, ema=0.9)
    results = trainer.fit(corpus[:15], corpus[15:])
    records = epoch_records(tmp_path / "two" / "log.jsonl")
    best = max(records, key=lambda r: r["dev"]["f1"])
    # the model selected and saved is the one whose (averaged) dev score was logged
    assert results["dev"]["micro"]["f1"] == pytest.approx(best["dev"]["f1"])
    assert all(0 <= r["dev_raw_f1"] <= 1 for r in records)
    trainer = make_trainer(corpus, tmp_path, epochs=1, ema=0.9)
    trainer.fit(corpus[:15], corpus[15:])
    saved = dict(trainer.model.state_dict())  # finish() reloaded the best model (epoch 1) from disk
    state = load_checkpoint(tmp_path / "checkpoint")
    names = [n for n, p in trainer.net.named_parameters() if p.requires_grad]
    # the saved model holds the averages, the checkpoint the raw weights (and the averages beside them)
    for name, average in zip(names, state["ema"]):
        assert torch.equal(saved[name], average), name
    assert any(not torch.equal(state["model"][n], saved[n]) for n in names)


def test_resume_with_ema_reaches_the_same_averages(corpus, tmp_path):
    full = make_trainer(corpus, tmp_path / "full", epochs=3, ema=0.8)
    full.fit(corpus[:15], corpus[15:])
    first = make_trainer(corpus, tmp_path / "cut", epochs=1, ema=0.8)
    first.fit(corpus[:15], corpus[15:])
    second = make_trainer(corpus, tmp_path / "cut", epochs=3, ema=0.8)
    assert second.resume()
    second.fit(corpus[:15], corpus[15:])
    a, b = (load_checkpoint(tmp_path / d / "checkpoint")["ema"] for d in ("full", "cut"))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    make_trainer(corpus, tmp_path / "plain", epochs=1).fit(corpus[:15], corpus[15:])
    with pytest.raises(TrainingError, match="--ema 0, not 0.8"):
        make_trainer(corpus, tmp_path / "plain", epochs=2, ema=0.8).resume()
    with pytest.raises(TrainingError, match="--ema 0.8, not 0"):
        make_trainer(corpus, tmp_path / "cut", epochs=4).resume()


def test_resume_with_another_optimizer_or_distillation_setting_is_refused_before_anything_changes(corpus, tmp_path):
    make_trainer(corpus, tmp_path, epochs=1).fit(corpus[:15], corpus[15:])  # SGD, no distillation
    written = lambda: {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.name != ".lock"}  # noqa: E731
    before = written()
    with pytest.raises(TrainingError, match="--optimizer sgd, not adam: resume with the settings .*lexner train"):
        make_trainer(corpus, tmp_path, epochs=2, optimizer="adam").resume()
    with pytest.raises(TrainingError, match="--distill none, not kl"):
        make_trainer(corpus, tmp_path, epochs=2, distill="kl").resume()
    with pytest.raises(TrainingError, match="--optimizer sgd, not adam, --ema 0, not 0.5"):
        make_trainer(corpus, tmp_path, epochs=2, optimizer="adam", ema=0.5).resume()
    assert written() == before
    assert make_trainer(corpus, tmp_path, epochs=2, lr_decay=0.2).resume()  # other settings may change


@pytest.mark.parametrize("train, dev, got", [("train.bmes", None, "got str"), (["张三在北京"], [], "got a list of str"),
                                             (None, "dev.bmes", "got NoneType")])
def test_the_python_api_says_what_data_it_takes_and_how_to_read_it(corpus, tmp_path, train, dev, got):
    with pytest.raises(TypeError, match=f"must be a list of lexner.data.Sentence, {got}: read a file with"):
        build_tagger("bilstm_crf", train, SMALL)
    with pytest.raises(TypeError, match="must be a list of lexner.data.Sentence"):
        make_trainer(corpus, tmp_path, epochs=1).fit(train if train is not None else corpus, dev)


def test_ema_must_be_a_decay_below_one():
    for bad in (1.0, -0.1, 2):
        with pytest.raises(ValueError, match="ema"):
            TrainConfig(ema=bad)


def test_resume_from_a_checkpoint_written_before_the_embedder_refactor(corpus, tmp_path):
    from lexner.checkpoint import save_checkpoint

    make_trainer(corpus, tmp_path, epochs=1).fit(corpus[:15], corpus[15:])
    state = load_checkpoint(tmp_path / "checkpoint")
    renamed = {k.replace("embed.chars.", "char_embedding.").replace("embed.bigrams.", "bigram_embedding."): v
               for k, v in state["model"].items()}
    assert "char_embedding.weight" in renamed
    save_checkpoint(tmp_path / "checkpoint", {**state, "model": renamed})
    trainer = make_trainer(corpus, tmp_path, epochs=2)
    assert trainer.resume()
    assert torch.equal(trainer.model.embed.chars.weight, renamed["char_embedding.weight"])


def test_resume_into_a_different_model_is_a_clear_error(corpus, tmp_path):
    make_trainer(corpus, tmp_path, epochs=1).fit(corpus[:15], corpus[15:])
    seed_everything(3)
    wider = Trainer(build_tagger("bilstm_crf", corpus, {**SMALL, "hidden": 32}, seed=3),
                    TrainConfig(epochs=2, batch_size=4, lr=0.01, seed=3, patience=0), tmp_path, progress=False)
    with pytest.raises(TrainingError, match=r"another model \(.*lstm.*\): resume with the model, data and vocab"):
        wider.resume()
    fewer_chars = Trainer(build_tagger("bilstm_crf", corpus[:3], SMALL, seed=3),  # a smaller vocabulary
                          TrainConfig(epochs=2, batch_size=4, lr=0.01, seed=3, patience=0), tmp_path, progress=False)
    with pytest.raises(TrainingError, match=r"embed\.chars\.weight \(\d+, 16\) there, \(\d+, 16\) here"):
        fewer_chars.resume()


def test_training_records_the_99th_percentile_of_its_sentence_lengths_as_the_piece_length(corpus, tmp_path):
    from lexner.tagging import piece_length

    long = [Sentence("".join(s.text for s in group), [Span(a + sum(len(t.text) for t in group[:k]), b + sum(
        len(t.text) for t in group[:k]), label) for k, s in enumerate(group) for a, b, label in s.spans])
        for group in (corpus[i:i + 9] for i in range(0, len(corpus), 2))]
    lengths = [len(s.text) for s in long]
    assert piece_length(lengths) > 64  # the percentile, not the floor
    trainer = make_trainer(long, tmp_path, epochs=1)
    trainer.fit(long, long[:3])
    assert lexner.load(tmp_path / "model").max_length == piece_length(lengths)


def test_resume_on_other_sentences_is_refused_before_anything_is_written(corpus, tmp_path):
    from lexner.checkpoint import save_checkpoint

    make_trainer(corpus, tmp_path, epochs=1).fit(corpus[:15], corpus[15:])
    files = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.name != ".lock"}
    for train, dev in ((corpus[:15], corpus[14:]), (corpus[1:15], corpus[15:])):  # another dev split, train
        other = make_trainer(corpus, tmp_path, epochs=2)
        assert other.resume()
        with pytest.raises(TrainingError, match="trained with other sentences.*--dev-fraction, --dev-blocks"):
            other.fit(train, dev)
        assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.name != ".lock"} == files
    same = make_trainer(corpus, tmp_path, epochs=2)
    assert same.resume()
    same.fit(corpus[:15], corpus[15:])
    assert same.epoch == 2
    # a checkpoint written before the data were recorded resumes unchecked
    state = load_checkpoint(tmp_path / "checkpoint")
    assert set(state["data"]) == {""}
    save_checkpoint(tmp_path / "checkpoint", {k: v for k, v in state.items() if k != "data"})
    old = make_trainer(corpus, tmp_path, epochs=3)
    assert old.resume()
    old.fit(corpus[:15], corpus[14:])
    assert old.epoch == 3


def test_unk_dropout_reads_real_characters_and_bigrams_as_unknown_at_its_rate_and_leaves_padding():
    from lexner.features import Featurizer
    from lexner.train import read_as_unknown
    from lexner.vocab import UNK_ID

    featurizer = Featurizer.build([Sentence("张三在北京工作", [Span(0, 2, "PER")]), Sentence("李四", [])])
    items = [featurizer.encode_one(text) for text in ("张三在北京工作" * 40, "李四")]
    kept = copy.deepcopy(items)
    batch = featurizer.collate(items)
    chars, bigrams = batch.chars.clone(), batch.bigrams.clone()
    read_as_unknown(batch, 0.3, torch.Generator().manual_seed(1))
    for before, after in ((chars, batch.chars), (bigrams, batch.bigrams)):
        changed = before != after
        assert (after[changed] == UNK_ID).all()
        assert not changed[~batch.mask].any()  # padding stays padding
        assert 0.2 < changed[batch.mask].float().mean() < 0.4
    assert not torch.equal(batch.chars == UNK_ID, batch.bigrams == UNK_ID)  # drawn independently
    assert all(torch.equal(torch.as_tensor(a["chars"]), torch.as_tensor(b["chars"])) for a, b in zip(items, kept))
    untouched = featurizer.collate(items)
    read_as_unknown(untouched, 0.0, torch.Generator().manual_seed(1))
    assert torch.equal(untouched.chars, chars) and torch.equal(untouched.bigrams, bigrams)


def test_unk_dropout_trains_differently_reproducibly_and_is_checked(corpus, tmp_path):
    def weights(out, **overrides):
        make_trainer(corpus, out, epochs=2, **overrides).fit(corpus[:15], corpus[15:])
        return lexner.load(out / "model").embed.chars.weight

    plain = weights(tmp_path / "plain")
    dropped = weights(tmp_path / "dropped", unk_dropout=0.2)
    assert not torch.equal(plain, dropped)
    assert torch.equal(dropped, weights(tmp_path / "again", unk_dropout=0.2))
    for bad in (1.0, -0.1, 2):
        with pytest.raises(ValueError, match="unk_dropout"):
            TrainConfig(unk_dropout=bad)


def test_resume_with_no_epoch_left_says_so_and_keeps_the_test_scores_of_the_same_model(corpus, tmp_path, caplog):
    first = make_trainer(corpus, tmp_path, epochs=2)
    scored = first.fit(corpus[:15], corpus[15:], corpus[15:])
    again = make_trainer(corpus, tmp_path, epochs=2)
    assert again.resume()
    with caplog.at_level("INFO"):
        results = again.fit(corpus[:15], corpus[15:])  # no test set this time
    assert any("no epoch to train: it has trained 2 epochs, --epochs is 2 (raise --epochs)" in r.getMessage()
               and r.levelname == "WARNING" for r in caplog.records)
    assert results["test"] == scored["test"]  # the same best model: its test scores stay
    assert json.load(open(tmp_path / "results.json", encoding="utf-8"))["test"] == scored["test"]


def test_resume_without_a_test_set_drops_the_test_scores_of_a_replaced_best_model(corpus, tmp_path, caplog):
    make_trainer(corpus, tmp_path, epochs=1).fit(corpus[:15], corpus[15:], corpus[15:])
    results_file = tmp_path / "results.json"
    earlier = json.load(open(results_file, encoding="utf-8"))
    earlier["best_epoch"] = 7  # as if another epoch's model had been scored on test
    results_file.write_text(json.dumps(earlier), encoding="utf-8")
    again = make_trainer(corpus, tmp_path, epochs=2)
    assert again.resume()
    with caplog.at_level("WARNING"):
        results = again.fit(corpus[:15], corpus[15:])
    assert "test" not in results and "test" not in json.load(open(results_file, encoding="utf-8"))
    assert any("were of epoch 7's model" in r.getMessage() for r in caplog.records)


def test_resuming_a_run_that_stopped_early_says_why_nothing_trains(corpus, tmp_path, caplog, monkeypatch):
    monkeypatch.setattr("lexner.train.evaluate", lambda *a, **k: {"micro": {"f1": 0.5, "precision": 0.5, "recall": 0.5}})
    monkeypatch.setattr(Trainer, "finish", lambda self, tasks: {"epochs_run": self.epoch})
    trainer = make_trainer(corpus, tmp_path, epochs=20)
    trainer.config.patience = 2
    assert trainer.fit(corpus[:15], corpus[15:])["epochs_run"] == 3  # best at 1, then 2 without improvement
    again = make_trainer(corpus, tmp_path, epochs=20)
    again.config.patience = 2
    assert again.resume()
    with caplog.at_level("WARNING"):
        assert again.fit(corpus[:15], corpus[15:])["epochs_run"] == 3
    assert "no epoch to train: it had stopped early, no better dev F1 in its last 2 epochs (raise --patience)" \
        in caplog.text
    caplog.clear()
    both = make_trainer(corpus, tmp_path, epochs=3)  # both spent: both said, not one after the other
    both.config.patience = 2
    assert both.resume()
    with caplog.at_level("WARNING"):
        both.fit(corpus[:15], corpus[15:])
    assert "(raise --epochs); it had stopped early" in caplog.text


def test_losses_read_every_few_steps_name_the_first_step_that_went_wrong(corpus, tmp_path, monkeypatch):
    """As on CUDA (LOSS_CHECK_STEPS): the losses of several steps are read at once; the epoch's loss is the same,
    and a loss that is not finite is reported at the step it happened, not where it was read."""
    plain = make_trainer(corpus, tmp_path / "plain", epochs=2)
    plain.fit(corpus[:15], corpus[15:])
    batched = make_trainer(corpus, tmp_path / "batched", epochs=2)
    batched.check_every = 3  # 4 batches an epoch: a group of 3, then the last one alone
    batched.fit(corpus[:15], corpus[15:])
    assert [r["train_loss"] for r in epoch_records(tmp_path / "batched" / "log.jsonl")] == \
        [r["train_loss"] for r in epoch_records(tmp_path / "plain" / "log.jsonl")]
    late = make_trainer(corpus, tmp_path / "late", epochs=1)
    late.check_every = 3
    loss = type(late.model).loss
    calls = []

    def second_goes_wrong(self, batch):
        calls.append(1)
        return nan_loss(self, batch) if len(calls) == 2 else loss(self, batch)

    monkeypatch.setattr(type(late.model), "loss", second_goes_wrong)
    with pytest.raises(TrainingError, match="loss became nan at epoch 1, batch 2;"):
        late.fit(corpus[:15], corpus[15:])
    assert len(calls) == 3  # read after the third step


def test_resume_takes_this_runs_optimizer_settings_with_the_saved_moments(corpus, tmp_path):
    """The saved optimizer state brought back its groups' settings too: a changed --weight-decay (or an encoder's
    --encoder-lr scale) was recorded as changed but not used."""
    make_trainer(corpus, tmp_path, epochs=1, optimizer="adam").fit(corpus[:15], corpus[15:])
    trainer = make_trainer(corpus, tmp_path, epochs=2, optimizer="adam", weight_decay=0.01)
    assert trainer.resume()
    assert [g["weight_decay"] for g in trainer.optimizer.param_groups] == [0.01]
    assert trainer.optimizer.state  # the moments are the checkpoint's


def test_kept_settings_leave_out_where_an_encoder_was_read_from_and_flats_memory_trade_offs():
    """Applied to the checkpoint's record and to this run's alike (a record written before the rule holds those
    keys: comparing it raw refused every BERT and FLAT resume)."""
    from lexner.train import _kept_settings

    before = {"bert_path": "/a/bert", "dropout": 0.1, "tokenizer": "ab12",
              "bert_config": {"hidden_size": 32, "_name_or_path": "/a/bert", "transformers_version": "4.40"}}
    moved = {"bert_path": "/b/bert", "dropout": 0.1, "tokenizer": "ab12",
             "bert_config": {"hidden_size": 32, "_name_or_path": "/b/bert", "transformers_version": "5.25"}}
    assert _kept_settings(before) == _kept_settings(moved) == {"dropout": 0.1, "tokenizer": "ab12",
                                                               "bert_config": {"hidden_size": 32}}
    flat = {"model_dim": 16, "lean": True, "block_elements": 10, "checkpoint_elements": 5}
    assert _kept_settings(flat) == {"model_dim": 16}


def test_resume_of_a_bert_run_takes_a_moved_checkpoint_but_refuses_another_tokenizer(corpus, tmp_path):
    import shutil

    pytest.importorskip("transformers")
    from test_bert import tiny_bert

    first, moved, other = tmp_path / "bert", tmp_path / "moved", tmp_path / "other"
    for folder in (first, moved, other):
        shutil.copytree(tiny_bert(), folder)
    (other / "tokenizer.json").unlink()
    vocab = (other / "vocab.txt").read_text(encoding="utf-8").split("\n")
    a, b = vocab.index("张"), vocab.index("北")
    vocab[a], vocab[b] = vocab[b], vocab[a]  # the same size, two pieces swapped
    (other / "vocab.txt").write_text("\n".join(vocab), encoding="utf-8")

    def trainer(bert, epochs):
        seed_everything(3)
        tagger = build_tagger("bert_crf", corpus, {"bert_path": str(bert)}, seed=3)
        return Trainer(tagger, TrainConfig(epochs=epochs, batch_size=4, seed=3), tmp_path / "run", progress=False)

    cased = tmp_path / "cased"  # the same vocabulary, read without lower-casing (Apple is no longer apple)
    shutil.copytree(tiny_bert(), cased)
    (cased / "tokenizer.json").unlink()
    (cased / "tokenizer_config.json").write_text('{"do_lower_case": false}', encoding="utf-8")
    trainer(first, 1).fit(corpus[:15], corpus[15:])
    assert trainer(moved, 2).resume()  # the same encoder and tokenizer, elsewhere
    for changed in (other, cased):
        with pytest.raises(TrainingError, match="tokenizer"):
            trainer(changed, 2).resume()


def test_training_from_python_repeats_whatever_torchs_generator_held(corpus, tmp_path):
    """build_tagger(seed=...) and TrainConfig.seed decide the initial weights and the dropout masks: in the
    README's pattern, two processes gave different models (the layers and dropout drew from torch's global
    generator, seeded at random in each process; helper audit)."""
    models = []
    for k, noise in enumerate((111, 222)):
        torch.manual_seed(noise)  # another process, another state of the global generator
        tagger = build_tagger("bilstm_crf", corpus, SMALL, seed=5)
        torch.manual_seed(noise + 1)
        Trainer(tagger, TrainConfig(epochs=1, batch_size=4, lr=0.05, seed=5), tmp_path / str(k),
                progress=False).fit(corpus[:15], corpus[15:])
        models.append(tagger.state_dict())
    assert all(torch.equal(models[0][name], models[1][name]) for name in models[0])
    state = torch.random.get_rng_state()
    build_tagger("bilstm_crf", corpus, SMALL, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)  # building leaves the global generator alone


def test_resume_of_a_model_whose_vocabularies_differ_in_order_is_refused(corpus, tmp_path):
    """The lexicon's files in another order build a model of the same sizes whose rows stand for other words:
    --resume took it and every word's trained weights went to another word (helper audit)."""
    from lexner.checkpoint import load_checkpoint, save_checkpoint
    from lexner.lexicon import Lexicon

    words = ["张三", "北京", "上海", "李四", "天津"]
    config = {"char_dim": 8, "bigram_dim": 4, "word_dim": 6, "hidden": 8}

    def trainer(lexicon_words, epochs):
        tagger = build_tagger("softlexicon", corpus, config, lexicon=Lexicon(lexicon_words), seed=3)
        return Trainer(tagger, TrainConfig(epochs=epochs, batch_size=4, seed=3), tmp_path, progress=False)

    trainer(words, 1).fit(corpus[:15], corpus[15:])
    other = trainer(words[::-1], 2)
    with pytest.raises(TrainingError, match="characters, bigrams, lexicon words or tags differ"):
        other.resume()
    same = trainer(words, 2)
    assert same.resume()
    same.fit(corpus[:15], corpus[15:])
    assert same.epoch == 2
    state = load_checkpoint(tmp_path / "checkpoint")  # written before vocabularies were recorded: unchecked
    save_checkpoint(tmp_path / "checkpoint", {k: v for k, v in state.items() if k != "vocabularies"})
    assert trainer(words[::-1], 3).resume()


def test_a_models_card_records_what_it_takes_to_train_it_again(corpus, tmp_path):
    """The seed (default or given), every setting as train_config.json has them (each resume's changes too),
    the libraries' versions and the data's fingerprints (only the command line was recorded, without its
    defaults; helper audit)."""
    make_trainer(corpus, tmp_path, epochs=1).fit(corpus[:15], corpus[15:])
    card = lexner.load(tmp_path / "model").metadata["card"]
    assert card["train_config"] == json.loads((tmp_path / "train_config.json").read_text(encoding="utf-8"))
    assert card["train_config"]["seed"] == 3 and card["versions"]["torch"] == torch.__version__
    assert card["data_sha256"] == {"sentences": load_checkpoint(tmp_path / "checkpoint")["data"][""]}


def test_a_damaged_training_log_is_a_clean_error(tmp_path):
    """Invalid UTF-8 was a UnicodeDecodeError traceback, a line nested too deep a RecursionError (fuzzing)."""
    from lexner.fileio import DataFormatError
    from lexner.train import log_records

    log = tmp_path / "log.jsonl"
    log.write_bytes(b'{"epoch": 1}\n\xff\xfe\n')
    with pytest.raises(DataFormatError, match="not valid UTF-8"):
        log_records(log)
    log.write_text("[" * 5000 + "]" * 5000 + "\n{}\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=":1: not a training log's record"):
        log_records(log)
