"""lexner.data: file readers (conll, weibo, jsonl), format detection, named datasets."""

from __future__ import annotations

import gzip
import json
import logging
import random
from collections import Counter
from pathlib import Path

import pytest

import lexner.data as data
from lexner.data import (
    Sentence,
    data_root,
    detect_format,
    load_dataset,
    read_file,
    read_jsonl,
    report_unseen_labels,
    write_jsonl,
)
from lexner.fileio import DataFormatError
from lexner.schemes import Span


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return path


def conll(sentences: list[list[tuple[str, str]]], sep: str = " ", trailing: bool = True) -> str:
    blocks = ["\n".join(f"{c}{sep}{t}" for c, t in s) for s in sentences]
    return "\n\n".join(blocks) + ("\n\n" if trailing else "")


def assert_error_at(path: Path, line: int, call) -> DataFormatError:
    with pytest.raises(DataFormatError) as info:
        call()
    assert f"{path}:{line}" in str(info.value)
    assert info.value.line == line
    return info.value


# --- conll ----------------------------------------------------------------------------------------------------------


def test_conll_bmes_space_several_blank_lines_no_trailing_blank(tmp_path):
    text = (
        "张 B-PER\n三 M-PER\n丰 E-PER\n在 O\n京 S-LOC\n"
        "\n\n\n"
        "好 O\n"
        "\n"
        "上 B-LOC\n海 E-LOC"  # no final newline at all
    )
    path = write(tmp_path / "train.char.bmes", text)
    assert read_file(path) == [
        Sentence("张三丰在京", [Span(0, 3, "PER"), Span(4, 5, "LOC")]),
        Sentence("好", []),
        Sentence("上海", [Span(0, 2, "LOC")]),
    ]


def test_conll_lines_whose_character_is_whitespace(tmp_path):
    path = write(tmp_path / "t.bio", "张 B-PER\n三 I-PER\n\u3000 O\n\u00a0\tO\n北 B-LOC\n京 I-LOC \n")
    assert read_file(path) == [Sentence("张三\u3000\u00a0北京", [Span(0, 2, "PER"), Span(4, 6, "LOC")])]
    with pytest.raises(DataFormatError, match=r"t2.bio:2: expected 'CHAR TAG'"):
        read_file(write(tmp_path / "t2.bio", "张 O\n北 京 O\n"))


def test_conll_bio_tab_separated(tmp_path):
    sents = [
        [("我", "O"), ("在", "O"), ("北", "B-LOC"), ("京", "I-LOC")],
        [("李", "B-PER"), ("四", "I-PER"), ("王", "B-PER")],
    ]
    path = write(tmp_path / "train_data", conll(sents, sep="\t", trailing=False) + "\n")
    assert read_file(path) == [
        Sentence("我在北京", [Span(2, 4, "LOC")]),
        Sentence("李四王", [Span(0, 2, "PER"), Span(2, 3, "PER")]),
    ]
    assert read_file(path, format="conll") == read_file(path)


def test_conll_bioes(tmp_path):
    sents = [[("A", "S-ORG"), ("北", "B-LOC"), ("京", "I-LOC"), ("市", "E-LOC"), ("。", "O")]]
    path = write(tmp_path / "x.bioes", conll(sents))
    assert read_file(path) == [Sentence("A北京市。", [Span(0, 1, "ORG"), Span(1, 4, "LOC")])]


def test_conll_crlf_and_whitespace_only_separator(tmp_path):
    path = tmp_path / "crlf.txt"
    path.write_bytes("北 B-LOC\r\n京 E-LOC\r\n  \r\n上 S-LOC\r\n\r\n".encode("utf-8"))
    assert read_file(path) == [Sentence("北京", [Span(0, 2, "LOC")]), Sentence("上", [Span(0, 1, "LOC")])]


def test_conll_bom_and_leading_blank_lines(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeff\n\n北 B-LOC\n京 I-LOC\n".encode("utf-8"))
    assert read_file(path) == [Sentence("北京", [Span(0, 2, "LOC")])]


def test_conll_gz(tmp_path):
    path = tmp_path / "x.bmes.gz"
    with gzip.open(path, "wb") as handle:
        handle.write("北 B-LOC\n京 E-LOC\n\n".encode("utf-8"))
    assert read_file(path) == [Sentence("北京", [Span(0, 2, "LOC")])]


def test_conll_empty_file(tmp_path):
    assert read_file(write(tmp_path / "empty.txt", "")) == []
    assert read_file(write(tmp_path / "blank.txt", "\n\n\n")) == []


def test_conll_weibo_bmes_quirk_read_leniently_with_warning(tmp_path, caplog):
    # the .all.bmes Weibo files have M-/E- without B- (the original I- without B-)
    path = write(tmp_path / "weibo.bmes", "他 O\n妈 M-PER.NOM\n妈 E-PER.NOM\n\n北 B-GPE.NAM\n京 E-GPE.NAM\n\n")
    with caplog.at_level(logging.WARNING, logger="lexner.data"):
        sents = read_file(path)
    assert sents == [Sentence("他妈妈", [Span(1, 3, "PER.NOM")]), Sentence("北京", [Span(0, 2, "GPE.NAM")])]
    assert any("1 tag(s)" in r.getMessage() for r in caplog.records)


def test_conll_well_formed_file_logs_no_warning(tmp_path, caplog):
    path = write(tmp_path / "ok.bmes", "北 B-LOC\n京 E-LOC\n\n")
    with caplog.at_level(logging.WARNING, logger="lexner.data"):
        read_file(path)
    assert not caplog.records


def test_conll_ill_formed_counted_against_file_scheme(tmp_path, caplog):
    path = write(tmp_path / "x.bmes", "北 B-LOC\n京 M-LOC\n市 E-LOC\n\n上 B-LOC\n好 O\n\n")
    with caplog.at_level(logging.WARNING, logger="lexner.data"):
        sents = read_file(path)
    assert sents[1] == Sentence("上好", [Span(0, 1, "LOC")])
    assert any("1 tag(s)" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "text, line",
    [
        ("北 B-LOC\n京 I-LOC extra\n", 2),  # three fields
        ("北 B-LOC\n\n\n京\n", 4),  # one field
        ("北京 B-LOC\n", 1),  # more than one character
        ("北 B-LOC\n京 X-LOC\n", 2),  # bad tag
        ("北 B-LOC\n京 B-\n", 2),
        ("北 O\n京 o\n", 2),
    ],
)
def test_conll_malformed(tmp_path, text, line):
    path = write(tmp_path / "bad.txt", text)
    assert_error_at(path, line, lambda: read_file(path, format="conll"))


def test_conll_mixed_schemes_across_sentences(tmp_path):
    path = write(tmp_path / "mixed.txt", "北 B-LOC\n京 M-LOC\n市 E-LOC\n\n上 B-LOC\n海 I-LOC\n\n")
    with pytest.raises(DataFormatError) as info:
        read_file(path)
    assert str(path) in str(info.value)


def test_conll_mixed_schemes_inside_one_sentence(tmp_path):
    path = write(tmp_path / "mixed.txt", "北 B-LOC\n京 M-LOC\n市 I-LOC\n\n")
    with pytest.raises(DataFormatError) as info:
        read_file(path)
    assert str(path) in str(info.value)


# --- weibo original format --------------------------------------------------------------------------------------------


WEIBO = (
    "科0\tB-ORG.NAM\n技1\tI-ORG.NAM\n"
    "80\tO\n"  # the digit 8 at position 0
    "812\tO\n"  # the digit 8 at position 12
    "人11\tB-PER.NOM\n"
    "\ufffd\ufffd0\tO\n"  # a damaged emoji: read as one U+FFFD
    "\n\n"
    "他0\tI-PER.NAM\n"  # I- without B- (golden-horse quirk)
    "们1\tO\n"
)


def test_weibo_original_format(tmp_path, caplog):
    path = write(tmp_path / "weiboNER_2nd_conll.train", WEIBO)
    assert detect_format(path) == "weibo"
    with caplog.at_level(logging.WARNING, logger="lexner.data"):
        sents = read_file(path)
    assert sents == [
        Sentence("科技88人\ufffd", [Span(0, 2, "ORG.NAM"), Span(4, 5, "PER.NOM")]),
        Sentence("他们", [Span(0, 1, "PER.NAM")]),
    ]
    assert read_file(path, format="weibo") == sents
    assert any("1 tag(s)" in r.getMessage() for r in caplog.records)


def test_weibo_digit_tokens():
    assert data._weibo_char("科0") == "科"
    assert data._weibo_char("80") == "8"
    assert data._weibo_char("812") == "8"
    assert data._weibo_char("0012") is None  # two characters before a 2-digit position
    assert data._weibo_char("\ufffd\ufffd0") == "\ufffd"
    assert data._weibo_char("\ufffd\ufffd12") == "\ufffd"
    assert data._weibo_char("科") is None
    assert data._weibo_char("0") is None


@pytest.mark.parametrize(
    "text, line",
    [
        ("科0\tO\n技\tO\n", 2),  # no position digits
        ("科0\tO\n科技0\tO\n", 2),  # two characters
        ("科0\tO\n技123\tO\n", 2),  # three-digit position
        ("科0\tO\n\n技1\n", 3),  # no tag
        ("科0\tO\n技1\tQ-PER\n", 2),
    ],
)
def test_weibo_malformed(tmp_path, text, line):
    path = write(tmp_path / "bad.weibo", text)
    assert_error_at(path, line, lambda: read_file(path, format="weibo"))


# --- jsonl ------------------------------------------------------------------------------------------------------------


def test_jsonl_good(tmp_path):
    lines = [
        {"text": "张三在北京", "entities": [{"start": 3, "end": 5, "label": "LOC"}, {"start": 0, "end": 2, "label": "PER"}]},
        {"text": "没有实体", "entities": []},
        {"text": "", "entities": []},
    ]
    path = write(tmp_path / "x.jsonl", "\n".join(json.dumps(o, ensure_ascii=False) for o in lines) + "\n\n")
    assert read_file(path) == [
        Sentence("张三在北京", [Span(0, 2, "PER"), Span(3, 5, "LOC")]),  # sorted
        Sentence("没有实体", []),
        Sentence("", []),
    ]
    assert read_jsonl(path) == read_file(path, format="jsonl")


def test_jsonl_adjacent_entities_are_fine(tmp_path):
    path = write(tmp_path / "x.jsonl", '{"text": "北京上海", "entities": [{"start": 0, "end": 2, "label": "A"}, '
                 '{"start": 2, "end": 4, "label": "A"}]}\n')
    assert read_jsonl(path)[0].spans == [Span(0, 2, "A"), Span(2, 4, "A")]


GOOD = '{"text": "北京", "entities": [{"start": 0, "end": 2, "label": "LOC"}]}'


@pytest.mark.parametrize(
    "bad",
    [
        '{"text": "北京上海", "entities": [{"start": 0, "end": 3, "label": "A"}, {"start": 2, "end": 4, "label": "B"}]}',
        '{"text": "北京上海", "entities": [{"start": 0, "end": 4, "label": "A"}, {"start": 1, "end": 2, "label": "B"}]}',
        '{"text": "北京", "entities": [{"start": 0, "end": 3, "label": "A"}]}',  # past the end
        '{"text": "北京", "entities": [{"start": -1, "end": 1, "label": "A"}]}',
        '{"text": "北京", "entities": [{"start": 1, "end": 1, "label": "A"}]}',  # empty
        '{"text": "北京", "entities": [{"start": 0, "end": 1}]}',  # no label
        '{"text": "北京", "entities": [{"start": "x", "end": 1, "label": "A"}]}',
        '{"text": "北京", "entities": [[0, 1, "A"]]}',
        '{"text": "北京", "entities": [}',  # bad JSON
        '{"text": 北京}',
        '{"entities": []}',  # no text
        '{"text": 5}',
        '["北京"]',
        "42",
    ],
)
def test_jsonl_malformed(tmp_path, bad):
    path = write(tmp_path / "bad.jsonl", GOOD + "\n\n" + bad + "\n" + GOOD + "\n")
    assert_error_at(path, 3, lambda: read_jsonl(path))


@pytest.mark.parametrize("entities", ["null", "5"])
def test_jsonl_entities_not_a_list(tmp_path, entities):
    path = write(tmp_path / "bad.jsonl", GOOD + '\n{"text": "北京", "entities": ' + entities + "}\n")
    assert_error_at(path, 2, lambda: read_jsonl(path))


@pytest.mark.parametrize("scheme", ["BIO", "BIOES", "BMES"])
def test_write_conll_reads_back_and_refuses_what_a_character_per_line_file_cannot_hold(tmp_path, scheme):
    from lexner.data import write_conll

    sents = [Sentence("张三在北京工作。", [Span(0, 2, "PER"), Span(3, 5, "LOC")]),
             Sentence("😀北京{x}", [Span(1, 3, "GPE"), Span(3, 6, "ORG.NAM")]), Sentence("好", [])]
    write_conll(sents, tmp_path / "out.txt", scheme)
    assert read_file(tmp_path / "out.txt") == sents
    for bad in (Sentence("Elon Musk", [Span(0, 9, "PER")]), Sentence("", [])):
        with pytest.raises(ValueError, match="empty or holds whitespace.*write_jsonl keeps it"):
            write_conll([sents[0], bad], tmp_path / "bad.txt", scheme)


def test_write_jsonl_read_jsonl_round_trip(tmp_path):
    sents = [
        Sentence("张三在北京工作。", [Span(0, 2, "PER"), Span(3, 5, "LOC")]),
        Sentence("", []),
        Sentence("IBM 和 \"quotes\"\\", [Span(0, 3, "ORG.NAM")]),
        Sentence("😀北京", [Span(1, 3, "GPE")]),
        Sentence("北京\u2028上海\x85广州\u2029", [Span(0, 2, "LOC")]),
    ]
    path = tmp_path / "out.jsonl"
    write_jsonl(sents, path)
    assert read_jsonl(path) == sents
    assert read_file(path) == sents
    assert len(path.read_text(encoding="utf-8").splitlines()) == len(sents)  # one record per line, any reader
    raw = path.read_text(encoding="utf-8")
    assert "张三" in raw  # written as UTF-8, not \u escapes
    assert len(raw.splitlines()) == len(sents)


# --- detect_format / read_file --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, text, fmt",
    [
        ("a.jsonl", "北 O\n", "jsonl"),  # the suffix wins
        ("a.json", "", "jsonl"),
        ("a.jsonl.gz", None, "jsonl"),
        ("gold.json.conll", "科 O\n技 O\n", "conll"),  # the last suffix counts (before .gz/.xz)
        ("v1.json.txt", "科0\tO\n", "weibo"),
        ("a.txt", '\n  {"text": "北京"}\n', "jsonl"),
        ("a.txt", "科0\tO\n技1\tO\n", "weibo"),
        ("a.txt", "\n\n812\tO\n", "weibo"),
        ("a.txt", "\ufffd\ufffd0\tO\n", "weibo"),
        ("a.txt", "科 O\n技 O\n", "conll"),
        ("a.txt", "8 O\n", "conll"),  # a digit character alone is conll
        ("a.txt", "科\tB-PER\n", "conll"),
        ("a.txt", "{\tO\n张\tB-PER\n", "conll"),  # a text beginning with { (lexner tag --format conll of it)
        ("a.txt", "{ S-X\n", "conll"),
        ("a.txt", "", "conll"),
        ("a.txt", "\n\n", "conll"),
    ],
)
def test_detect_format(tmp_path, name, text, fmt):
    path = tmp_path / name
    if text is None:
        with gzip.open(path, "wb") as handle:
            handle.write(GOOD.encode("utf-8") + b"\n")
    else:
        write(path, text)
    assert detect_format(path) == fmt


def test_read_file_jsonl_gz(tmp_path):
    path = tmp_path / "a.jsonl.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(GOOD.encode("utf-8") + b"\n")
    assert read_file(path) == [Sentence("北京", [Span(0, 2, "LOC")])]


def test_read_file_unknown_format(tmp_path):
    path = write(tmp_path / "a.txt", "北 O\n")
    with pytest.raises(ValueError, match="unknown format"):
        read_file(path, format="csv")


def test_read_file_missing(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_file(tmp_path / "nope.txt")


# --- named datasets --------------------------------------------------------------------------------------------------


def test_data_root_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("LEXNER_DATA", str(tmp_path))
    assert data_root() == tmp_path
    monkeypatch.delenv("LEXNER_DATA")
    assert data_root() == Path("data")


def _sentences(prefix: str, n: int) -> list[list[tuple[str, str]]]:
    """n distinct sentences: a running number (full-width digits) and an entity."""
    out = []
    for i in range(n):
        chars = [chr(0xFF10 + int(d)) for d in f"{i:02d}"]
        out.append([(c, "O") for c in chars] + [(prefix, "B-NS"), ("京", "E-NS")])
    return out


@pytest.fixture
def fake_root(tmp_path):
    root = tmp_path / "root"
    write(root / "msra" / "train.char.bmes", conll(_sentences("北", 12)))
    write(root / "msra" / "test.char.bmes", conll(_sentences("南", 3)))
    for split, n, ch in [("train", 4, "东"), ("dev", 2, "西"), ("test", 3, "中")]:
        write(root / "weibo" / f"{split}.all.bmes", conll(_sentences(ch, n)))
    return root


def test_load_dataset_msra_dev_is_seeded_sample(fake_root, monkeypatch):
    monkeypatch.setitem(data.CARVED, "msra", {"dev": (4, data.MSRA_DEV_SEED)})
    full = read_file(fake_root / "msra" / "train.char.bmes")
    assert len(full) == 12
    train = load_dataset("msra", "train", fake_root)
    dev = load_dataset("msra", "dev", fake_root)
    assert len(dev) == 4 and len(train) == 8
    assert {s.text for s in train}.isdisjoint({s.text for s in dev})
    assert sorted(s.text for s in train + dev) == sorted(s.text for s in full)
    # file order is kept in both parts
    assert [s.text for s in train] == [s.text for s in full if s in train]
    assert [s.text for s in dev] == [s.text for s in full if s in dev]
    # the sample is the one drawn with MSRA_DEV_SEED, and the same on every call
    ids = set(random.Random(data.MSRA_DEV_SEED).sample(range(12), 4))
    assert dev == [s for i, s in enumerate(full) if i in ids]
    assert load_dataset("msra", "dev", fake_root) == dev
    assert load_dataset("msra", "train", fake_root) == train


def test_load_dataset_msra_dev_not_trivially_first_rows(fake_root, monkeypatch):
    monkeypatch.setitem(data.CARVED, "msra", {"dev": (4, data.MSRA_DEV_SEED)})
    full = read_file(fake_root / "msra" / "train.char.bmes")
    dev = load_dataset("msra", "dev", fake_root)
    assert dev != full[:4] and dev != full[-4:]


def test_load_dataset_via_env(fake_root, monkeypatch):
    monkeypatch.setenv("LEXNER_DATA", str(fake_root))
    monkeypatch.setitem(data.CARVED, "msra", {"dev": (2, data.MSRA_DEV_SEED)})
    test = load_dataset("msra", "test")
    assert len(test) == 3 and test[0] == Sentence("００南京", [Span(2, 4, "NS")])
    assert [len(load_dataset("weibo", s)) for s in ("train", "dev", "test")] == [4, 2, 3]
    assert load_dataset("weibo", "dev")[1].text == "０１西京"
    assert len(load_dataset("msra", "dev")) == 2


def test_load_dataset_missing_file_mentions_lexner_data(tmp_path, monkeypatch):
    monkeypatch.setenv("LEXNER_DATA", str(tmp_path / "nowhere"))
    for name, split in [("msra", "test"), ("msra", "train"), ("msra", "dev"), ("weibo", "dev")]:
        with pytest.raises(FileNotFoundError, match="LEXNER_DATA"):
            load_dataset(name, split)


def test_load_splits_reads_each_file_once_and_matches_load_dataset(fake_root, tmp_path, monkeypatch):
    monkeypatch.setitem(data.CARVED, "msra", {"dev": (4, data.MSRA_DEV_SEED)})
    (tmp_path / "cluener").mkdir()
    rows = [{"text": f"张三{i}", "label": {"name": {"张三": [[0, 1]]}}} for i in range(2100)]
    (tmp_path / "cluener" / "train.json").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    read = []
    monkeypatch.setattr(data, "read_file", lambda path, *a: read.append(Path(path).name) or read_file(path, *a))
    for name, root, files in [("msra", fake_root, ["train.char.bmes", "test.char.bmes"]),
                              ("weibo", fake_root, ["train.all.bmes", "dev.all.bmes", "test.all.bmes"]),
                              ("cluener", tmp_path, ["train.json"])]:
        read.clear()
        splits = data.load_splits(name, root)
        assert sorted(read) == sorted(files)
        assert set(splits) == {"train", "dev", "test"}
        for split, sentences in splits.items():
            assert sentences == load_dataset(name, split, root), (name, split)


def test_training_on_a_corpus_and_its_mapped_copy_reads_its_files_once(fake_root, monkeypatch):
    from lexner import cli

    read = []
    monkeypatch.setattr(data, "read_file", lambda path, *a: read.append(Path(path).name) or read_file(path, *a))
    args = cli.build_parser().parse_args(["train", "--dataset", "weibo", "--dataset", "weibo:msra", "--data-root",
                                          str(fake_root), "--out", "x"])
    tasks = cli._load_tasks(args)
    assert sorted(read) == ["dev.all.bmes", "test.all.bmes", "train.all.bmes"]
    assert [t.name for t in tasks] == ["weibo", "weibo-msra"]


def test_load_dataset_bad_names(fake_root):
    with pytest.raises(ValueError, match="split"):
        load_dataset("weibo", "validation", fake_root)
    with pytest.raises(ValueError, match="dataset"):
        load_dataset("ontonotes", "train", fake_root)


def test_report_unseen_labels(caplog):
    train = [Sentence("张三在北京", [Span(0, 2, "PER"), Span(3, 5, "LOC")])]
    other = [
        Sentence("IBM和微软", [Span(0, 3, "ORG"), Span(4, 6, "ORG")]),
        Sentence("李四去纽约", [Span(0, 2, "PER"), Span(3, 5, "GPE")]),
    ]
    with caplog.at_level(logging.WARNING, logger="lexner.data"):
        unseen = report_unseen_labels(train, other, "weibo/test")
    assert unseen == Counter({"ORG": 2, "GPE": 1})
    assert any("weibo/test" in r.getMessage() and "ORG" in r.getMessage() for r in caplog.records)

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lexner.data"):
        assert report_unseen_labels(train, train, "train") == Counter()
    assert not caplog.records


def test_jsonl_reads_cluener_and_doccano_natively(tmp_path):
    lines = [
        {"text": "浙商银行叶老桂说", "label": {"name": {"叶老桂": [[4, 6]]}, "company": {"浙商银行": [[0, 3]]}}},
        {"text": "张三在北京", "label": [[0, 2, "PER"], [3, 5, "LOC"]]},
        {"text": "李四", "labels": [[0, 2, "PER"]]},
        {"text": "《腾讯传》", "label": {"book": {"《腾讯传》": [[0, 4]]}, "company": {"腾讯": [[1, 2]]}}},  # nested
    ]
    path = write(tmp_path / "x.jsonl", "\n".join(json.dumps(o, ensure_ascii=False) for o in lines) + "\n")
    assert read_jsonl(path) == [
        Sentence("浙商银行叶老桂说", [Span(0, 4, "company"), Span(4, 7, "name")]),
        Sentence("张三在北京", [Span(0, 2, "PER"), Span(3, 5, "LOC")]),
        Sentence("李四", [Span(0, 2, "PER")]),
        Sentence("《腾讯传》", [Span(0, 5, "book")]),  # the longer of the nested pair is kept
    ]


@pytest.mark.parametrize("record, message", [
    ({"text": "张三"}, r"x.jsonl:1: a record needs 'entities' \(lexner\), 'label'"),
    ({"text": "张三", "label": None}, "must be a CLUENER object or a doccano list"),
    ({"text": "张三", "label": ""}, "must be a CLUENER object or a doccano list"),
    ({"text": "张三", "label": [[0, 2, None]]}, "label must be a non-empty string of at most 200 printable characters without whitespace"),
    ({"text": "张三", "label": [[0, 2, ""]]}, "label must be a non-empty string of at most 200 printable characters without whitespace"),
    ({"text": "张三", "entities": [{"start": 0, "end": 2, "label": "A B"}]}, "with '-', got 'A B'"),
    ({"text": "张三在北京", "entities": [{"start": 2, "end": 4, "label": "LOC", "text": "北京"}]},
     r"x.jsonl:1: entity \(2, 4\) reads '在北', but its 'text' says '北京'"),
    ({"text": "张三", "label": {"name": {"张三": [[0, 2]]}}}, "ends beyond the text of length 2"),
    ({"text": "张三在", "label": {"name": {"张三": [[0, 2]]}}}, "reads '张三在' .offsets are end-inclusive"),
    ({"text": "张三", "entities": [{"start": 0, "end": 2, "label": ["PER"]}]}, "label must be a non-empty string of at most 200 printable characters without whitespace"),
])
def test_jsonl_records_without_usable_labels_are_errors_with_file_and_line(tmp_path, record, message):
    path = write(tmp_path / "x.jsonl", json.dumps(record, ensure_ascii=False) + "\n")
    with pytest.raises(DataFormatError, match=message):
        read_jsonl(path)


def test_cluener_named_dataset_has_seeded_dev_and_test_splits_carved_from_train(tmp_path):
    (tmp_path / "cluener").mkdir()
    rows = [{"text": f"张三{i}", "label": {"name": {"张三": [[0, 1]]}}} for i in range(2200)]
    (tmp_path / "cluener" / "train.json").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    train, dev, test = (load_dataset("cluener", split, tmp_path) for split in ("train", "dev", "test"))
    assert len(test) == 1000 and len(dev) == 1000 and len(train) == 200
    texts = [{s.text for s in part} for part in (train, dev, test)]
    assert sum(map(len, texts)) == 2200 == len(set.union(*texts))
    assert dev == load_dataset("cluener", "dev", tmp_path) and test == load_dataset("cluener", "test", tmp_path)
    (tmp_path / "cluener" / "train.json").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[:1500]), encoding="utf-8")
    with pytest.raises(DataFormatError, match="too few to carve a dev split"):
        load_dataset("cluener", "dev", tmp_path)


def test_ill_formed_tags_are_reported_with_their_lines(tmp_path, caplog):
    path = write(tmp_path / "x.bmes", "张 B-PER\n三 E-PER\n\n在 O\n北 M-LOC\n京 E-LOC\n\n李 E-PER\n")
    with caplog.at_level(logging.WARNING, logger="lexner.data"):
        sentences = read_file(path)
    assert "2 tag(s) break the BMES scheme" in caplog.text and "line(s) 5, 8;" in caplog.text
    assert str(path) in caplog.text
    assert [s.spans for s in sentences][1:] == [[Span(1, 3, "LOC")], [Span(0, 1, "PER")]]


def test_carving_runs_of_consecutive_sentences(tmp_path):
    from lexner.data import DataFormatError, Sentence, carve

    sentences = [Sentence(f"第{i}句", []) for i in range(100)]
    number = {s.text: i for i, s in enumerate(sentences)}
    for size, blocks in ((10, 2), (7, 3), (25, 5), (1, 1)):
        chosen, rest = carve(sentences, size, 5, tmp_path / "train.txt", blocks=blocks)
        picked = [number[s.text] for s in chosen]
        assert len(chosen) == size and sorted(picked) == picked  # in file order
        assert sorted(picked + [number[s.text] for s in rest]) == list(range(100))  # nothing lost or twice
        runs = sum(1 for k, i in enumerate(picked) if k == 0 or i != picked[k - 1] + 1)
        assert runs <= blocks  # runs that happen to touch read as one
        run = -(-size // blocks)
        assert all(i % run == 0 for k, i in enumerate(picked) if k == 0 or i != picked[k - 1] + 1)
        assert carve(sentences, size, 5, tmp_path / "train.txt", blocks=blocks)[0] == chosen  # seeded
    # the random sample (blocks 0) is what it always was
    assert carve(sentences, 10, 5, tmp_path / "train.txt")[0] == carve(sentences, 10, 5, tmp_path / "train.txt",
                                                                       blocks=0)[0]
    with pytest.raises(DataFormatError, match="train.txt.*as 6 runs of 17"):  # five whole runs of 17 in 100
        carve(sentences, 99, 5, tmp_path / "train.txt", blocks=6)


@pytest.mark.parametrize("content, line", [
    ('[{"text": "张三", "entities": []}]\n', 1),  # one JSON document holding a list
    ('{\n  "text": "张三",\n  "entities": []\n}\n', 1),  # pretty-printed
])
def test_a_json_document_instead_of_json_lines_says_what_the_file_must_hold(tmp_path, content, line):
    from lexner.fileio import DataFormatError

    path = tmp_path / "data.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataFormatError, match=rf"data\.jsonl:{line}: .*one JSON object per line \(JSON Lines\)"):
        read_file(path)

    path.write_text('{"text": "张三", "entities": []}\n{"text": "李四", "entities": [}\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"data\.jsonl:2: not valid JSON") as info:
        read_file(path)  # a bad line in a JSON Lines file: no hint about the format
    assert "JSON Lines" not in str(info.value)


def _pipe(content: str) -> tuple[str, int]:
    """A path that reads ``content`` from a pipe (as ``<(cmd)`` does): whatever is read from it once is gone."""
    import os

    read, write = os.pipe()
    os.write(write, content.encode("utf-8"))  # small: fits in the pipe's buffer
    os.close(write)
    return f"/dev/fd/{read}", read


@pytest.mark.parametrize("content, fmt", [
    ("张 B-PER\n三 E-PER\n在 O\n\n" * 300, "conll"),
    ("张0 B-PER.NAM\n三1 E-PER.NAM\n\n" * 300, "weibo"),
    ('{"text": "张三在", "entities": [{"start": 0, "end": 2, "label": "PER"}]}\n' * 300, "jsonl"),
])
def test_a_pipe_is_read_once_so_detecting_its_format_loses_nothing(tmp_path, content, fmt):
    import os

    (tmp_path / "f").write_text(content, encoding="utf-8")
    assert detect_format(tmp_path / "f") == fmt
    path, fd = _pipe(content)
    try:
        assert read_file(path) == read_file(tmp_path / "f")  # all 300 sentences, not what a second open left
        assert len(read_file(tmp_path / "f")) == 300
    finally:
        os.close(fd)


def test_a_whitespace_character_reads_in_weibo_files_too(tmp_path):
    path = tmp_path / "w.txt"
    path.write_text("我0\tO\n\u30001\tO\n你2\tB-PER.NAM\n\n", encoding="utf-8")
    assert read_file(path) == [Sentence("我\u3000你", [Span(2, 3, "PER.NAM")])]
    path.write_text("\xa00\tO\n科1\tB-ORG.NAM\n技2\tE-ORG.NAM\n\n", encoding="utf-8")  # first: detected so too
    assert detect_format(path) == "weibo"
    assert read_file(path) == [Sentence("\xa0科技", [Span(1, 3, "ORG.NAM")])]


@pytest.mark.parametrize("positions, message", [
    ("[[1, 0]]", r"CLUENER mention '张三': entity \[1, 0\] \(end-inclusive\) ends before it starts"),
    ("[[-1, 0]]", r"CLUENER mention '张三': entity \[-1, 0\] \(end-inclusive\) starts at a negative offset"),
    ("[[4, 5]]", r"CLUENER mention '张三': entity \[4, 5\] \(end-inclusive\) ends beyond the text of length 5"),
    ("[]", r"CLUENER mention '张三': expected a list of \[start, end\] pairs, got \[\]"),  # not dropped unsaid
])
@pytest.mark.parametrize("empty_label", [False, True])
def test_cluener_offsets_are_quoted_as_the_file_gives_them(tmp_path, positions, message, empty_label):
    path = tmp_path / "c.json"
    if empty_label:  # a type without mentions: not dropped unsaid either
        positions, message = "[[0, 1]]}, \"address\": {", r"CLUENER label 'address': expected \{mention: .*got \{\}"
    path.write_text('{"text": "张三在北京", "label": {"name": {"张三": %s}}}\n' % positions, encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"c\.json:1: " + message):
        read_file(path)
    path.write_text('{"text": "张三在北京", "entities": [{"start": 2, "end": 2, "label": "PER"}]}\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"entities: entity \(2, 2\) is empty"):
        read_file(path)


def test_doubled_line_endings_are_named_in_a_warning(tmp_path, caplog):
    path = tmp_path / "crcr.txt"
    path.write_bytes("张 B-PER\r\r\n三 E-PER\r\r\n在 O\r\r\n".encode("utf-8"))
    with caplog.at_level(logging.WARNING, logger="lexner.data"):
        assert len(read_file(path)) == 3
    assert any("each of its 3 sentences is one character long" in r.getMessage() and "CR CR LF" in r.getMessage()
               for r in caplog.records)


def test_an_error_quoting_a_very_long_line_is_cut_in_the_middle(tmp_path):
    path = tmp_path / "long.txt"
    path.write_text("张 B" + "B" * 100_000 + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError) as info:
        read_file(path)
    text = str(info.value)
    assert text.startswith(f"{path}:1: ") and len(text) < 400 + len(str(path)) and "[...]" in text
    assert len(info.value.message) > 100_000  # the whole message stays on the exception


def test_write_conll_keeps_a_first_character_u_feff(tmp_path):
    from lexner.data import write_conll

    sentences = [Sentence("\ufeff张三在北京", [Span(1, 3, "PER")]), Sentence("\ufeff李四", [Span(1, 3, "PER")])]
    write_conll(sentences, tmp_path / "x.conll")
    assert read_file(tmp_path / "x.conll") == sentences
    assert (tmp_path / "x.conll").read_bytes().count(b"\xef\xbb\xbf") == 3  # one mark more than the texts hold


@pytest.mark.parametrize("suffix", ["", ".gz", ".xz"])
def test_writers_compress_by_suffix_replace_only_when_done_and_name_the_sentence_at_fault(tmp_path, suffix):
    from lexner.data import write_conll, write_jsonl

    good = [Sentence("张三在北京", [Span(0, 2, "PER"), Span(3, 5, "LOC")]), Sentence("李四", [])]
    for writer, name in ((write_jsonl, "x.jsonl"), (write_conll, "x.conll")):
        path = tmp_path / (name + suffix)
        writer(good, path)
        assert read_file(path) == good
        before = path.read_bytes()
        for bad, message in ((Sentence("张三", [Span(0, 5, "PER")]), "sentence 1 .'张三'.: span .0, 5, 'PER'. outside"),
                             (Sentence("张三在", [Span(0, 2, "PER"), Span(1, 3, "LOC")]), "sentence 1 .*overlaps")):
            with pytest.raises(ValueError, match=message):
                writer([good[0], bad], path)
            assert path.read_bytes() == before  # the earlier file, whole


def test_a_link_named_gz_is_written_compressed_as_it_is_read(tmp_path):
    from lexner.data import write_jsonl

    (tmp_path / "blob").write_bytes(b"")
    (tmp_path / "out.jsonl.gz").symlink_to(tmp_path / "blob")
    sentences = [Sentence("张三", [Span(0, 2, "PER")])]
    write_jsonl(sentences, tmp_path / "out.jsonl.gz")
    assert (tmp_path / "out.jsonl.gz").is_symlink() and read_file(tmp_path / "out.jsonl.gz") == sentences


def test_of_crossing_spans_the_longer_is_kept_not_the_first():
    from lexner.data import _drop_nested

    assert _drop_nested([Span(0, 2, "a"), Span(1, 5, "b"), Span(5, 6, "c")]) == [Span(1, 5, "b"), Span(5, 6, "c")]
    assert _drop_nested([Span(0, 3, "a"), Span(2, 5, "b")]) == [Span(0, 3, "a")]  # as long: the first


def test_json_lines_with_an_integer_too_long_or_nan_are_clean_errors(tmp_path):
    """An integer of 5,000 digits was Python's ValueError traceback; NaN passed (JSON has none)."""
    path = tmp_path / "big.jsonl"
    path.write_text('{"text": "ab", "entities": [{"start": ' + "1" * 5000 + ', "end": 1, "label": "X"}]}\n',
                    encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"big.jsonl:1: not valid JSON \(Exceeds the limit"):
        read_file(path)
    path.write_text('{"text": "ab", "x": NaN}\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match="NaN is not a JSON number"):
        read_file(path)
