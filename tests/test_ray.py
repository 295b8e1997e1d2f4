"""lexner.integrations.ray on a local Ray cluster started by the test: two worker actors give what tag_batch
gives in one process."""

import re

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

import lexner  # noqa: E402
from lexner.integrations.ray import tag_dataset  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    yield
    ray.shutdown()


def test_two_workers_tag_a_dataset_as_tag_batch_does(cluster):
    texts = ["张三在北京大学读书。", "", "李四去了上海", "国际奥委会主席罗格", "Elon Musk 在 特斯拉", "今天天气不错"] * 10
    texts = [f"{t}{i}" if i % 7 == 0 else t for i, t in enumerate(texts)]
    rows = [{"id": i, "text": t} for i, t in enumerate(texts)]
    tagged = tag_dataset(ray.data.from_items(rows, override_num_blocks=6), workers=2, rows_per_call=8,
                         batch_size=4).take_all()
    expected = lexner.load().tag_batch(texts)
    assert [r["id"] for r in tagged] == list(range(len(texts)))
    assert [r["text"] for r in tagged] == texts
    got = [[(e["start"], e["end"], e["label"], e["text"]) for e in r["entities"]] for r in tagged]
    assert got == [[(e.start, e.end, e.label, e.text) for e in entities] for entities in expected]
    assert any(got) and not all(got)  # some rows with entities, some without


def test_bad_arguments_fail_before_any_worker_starts(cluster, tmp_path):
    ds = ray.data.from_items([{"body": "张三"}])
    with pytest.raises(ValueError, match="no column 'text'"):
        tag_dataset(ds)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tag_dataset(ds, model=tmp_path / "missing", column="body")
    with pytest.raises(ValueError, match="workers"):
        tag_dataset(ds, column="body", workers=0)
    with pytest.raises(ValueError, match="already has a column 'body'"):
        tag_dataset(ds, column="body", output_column="body")
    # an unknown head, dictionary types the head lacks: refused here, not in every actor once the job runs
    with pytest.raises(ValueError, match="no label set 'no-such-head'"):
        tag_dataset(ds, column="body", labels="no-such-head")
    with pytest.raises(ValueError, match=r"the dictionary's types \['company'\] are not types of the default head"):
        tag_dataset(ds, column="body", dictionary={"腾讯": "company"})
    with pytest.raises(ValueError, match="brings its own dictionary and runtime"):
        tag_dataset(ds, model=lexner.load(), column="body", runtime="torch")
    built = lexner.load()
    built.source = None  # as one built or trained in memory
    with pytest.raises(ValueError, match="not loaded from a directory"):
        tag_dataset(ds, model=built, column="body")
    # the cluster is one node of 2 CPUs: an actor of three could never be placed (Ray would wait forever)
    with pytest.raises(ValueError, match=r"threads_per_worker = 3 CPUs for one tagger, but the largest node of the "
                                         r"Ray cluster has 2"):
        tag_dataset(ds, column="body", threads_per_worker=3)


def test_more_taggers_than_free_cpus_still_read_and_tag_a_file(cluster, tmp_path):
    """A pool of a fixed size waited for all its actors, which took every CPU the read tasks needed: the README's
    example (read_json, workers=8) hung forever on a 2-CPU machine; the pool now grows as CPUs allow."""
    (tmp_path / "corpus.jsonl").write_text('{"text": "张三在北京"}\n{"text": "李四去上海"}\n', encoding="utf-8")
    import threading

    tagged = []  # with a deadline: a hang is a failure, not a CI run that never ends
    dataset = tag_dataset(ray.data.read_json(str(tmp_path / "corpus.jsonl")), workers=8)
    thread = threading.Thread(target=lambda: tagged.extend(dataset.take_all()), daemon=True)
    thread.start()
    thread.join(120)
    assert sorted(e["text"] for r in tagged for e in r["entities"]) == ["上海", "北京", "张三", "李四"]


def test_a_worker_tags_nulls_as_empty_and_refuses_what_is_not_text():
    """The actor's call on a batch as Ray hands it over (no cluster needed): a null (None, or a float NaN) has no
    entities; bytes or a number is a TypeError naming the column and the type, never its repr tagged as text."""
    import pyarrow as pa

    from lexner.integrations.ray import Tagging

    from lexner.api import reload_recipe

    worker = Tagging(reload_recipe(lexner.load()), "text", "entities", None, 64, 1)
    out = worker(pa.table({"text": ["张三在北京", None]}))
    assert [bool(e) for e in out.column("entities").to_pylist()] == [True, False]
    assert [bool(e) for e in worker(pa.table({"text": [float("nan")]})).column("entities").to_pylist()] == [False]
    for bad, named in ((pa.array([b"\xe5\xbc\xa0"]), "bytes, not a str (decode it first)"),
                       (pa.array([3]), "int, not a str")):
        with pytest.raises(TypeError, match=re.escape(f"column 'text' holds a {named}")):
            worker(pa.table({"text": bad}))
    with pytest.raises(ValueError, match="already has a column 'entities'"):
        worker(pa.table({"text": ["张三"], "entities": [1]}))


def test_the_input_columns_pass_through_as_they_are_and_entity_free_blocks_keep_the_type(cluster, tmp_path):
    """Other columns are not converted (an int64 with a null stays exact, a list of strings stays one, a date a
    date), and a block without any entity has the same ``entities`` type as the others, so the Parquet files of
    one write_parquet read back together with plain pyarrow."""
    import datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    big = 2**53 + 1
    table = pa.table({"id": pa.array([big, None, 3, 4], pa.int64()), "text": ["今天天气不错", "好", "张三在北京", "李四"],
                      "tags": [["a", "b"], ["c"], [], None],
                      "when": pa.array([datetime.date(2020, 1, 1), None, None, datetime.date(2021, 1, 1)])})
    tagged = tag_dataset(ray.data.from_arrow(table), workers=1, rows_per_call=2)
    tagged.write_parquet(str(tmp_path / "out"))
    back = pq.read_table(tmp_path / "out").sort_by("text")  # several files, one per block
    for name in ("id", "tags", "when"):
        assert back.schema.field(name).type == table.schema.field(name).type, name
    rows = {r["text"]: r for r in back.to_pylist()}
    assert rows["今天天气不错"]["id"] == big and rows["今天天气不错"]["tags"] == ["a", "b"]
    assert rows["今天天气不错"]["entities"] == [] and rows["好"]["entities"] == []
    assert [e["text"] for e in rows["张三在北京"]["entities"]] == ["张三", "北京"]
    assert back.schema.field("entities").type == pa.list_(pa.struct([
        ("start", pa.int64()), ("end", pa.int64()), ("label", pa.string()), ("text", pa.string())]))


def test_a_loaded_tagger_runtime_and_dictionary_reach_every_actor(cluster):
    """tag_dataset had no runtime or dictionary and took no loaded tagger (a TypeError about a path)."""
    texts = ["腾讯在深圳招聘", "张三在北京大学读书。"]
    dictionary = {"腾讯": "company"}
    expected = lexner.load(dictionary=dictionary).tag_batch(texts, labels="cluener")
    assert any(e.text == "腾讯" and e.label == "company" for e in expected[0])
    ds = ray.data.from_items([{"text": t} for t in texts])
    for given in ({"model": lexner.load(dictionary=dictionary)}, {"dictionary": dictionary, "runtime": "torch"}):
        tagged = tag_dataset(ds, labels="cluener", workers=1, **given).take_all()
        assert [[(e["start"], e["end"], e["label"]) for e in r["entities"]] for r in tagged] == [
            [(e.start, e.end, e.label) for e in entities] for entities in expected]

