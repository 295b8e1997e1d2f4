"""lexner.lexicon.Lexicon: construction from files, normalisation, and Aho-Corasick matching."""

from __future__ import annotations

import gzip
import lzma
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lexner.lexicon import Lexicon, Match
from lexner.text import normalize

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True, database=None)

# small alphabet so that words occur often; includes full-width forms of a/b and a non-BMP character
ALPHABET = ["a", "b", "c", "ａ", "ｂ", "北", "京", "😀"]


def naive_matches(words: list[str], text: str, min_length: int) -> list[Match]:
    """Every substring of ``text`` whose normalised form is a lexicon word, by brute force."""
    ids: dict[str, int] = {}
    for w in words:
        ids.setdefault(normalize(w.strip()), len(ids))
    found = []
    for i in range(len(text)):
        for j in range(i + min_length, len(text) + 1):
            key = normalize(text[i:j])
            if key in ids:
                found.append(Match(i, j, ids[key]))
    return sorted(found)


@SETTINGS
@given(
    words=st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=4), max_size=12),
    texts=st.lists(st.text(alphabet=ALPHABET, max_size=20), min_size=1, max_size=3),
    min_length=st.integers(1, 3),
)
def test_match_equals_naive_scan(words, texts, min_length):
    lex = Lexicon(words, min_length=min_length)
    for text in texts:
        got = lex.match(text)
        assert got == naive_matches(words, text, min_length)
        assert got == sorted(got)
        for start, end, word_id in got:
            assert end - start >= min_length
            assert lex.words[word_id] == normalize(text[start:end])


@SETTINGS
@given(
    words=st.lists(st.text(alphabet=ALPHABET + ["\ud83d"], min_size=1, max_size=4), max_size=12),
    texts=st.lists(st.text(alphabet=ALPHABET + ["\ud83d"], max_size=20), max_size=5),
    min_length=st.integers(1, 3),
    aligned=st.booleans(),
)
def test_match_many_equals_match_spans_of_each_text_by_trie_and_by_automaton(words, texts, min_length, aligned):
    import lexner.lexicon as lexicon_module

    lex = Lexicon(words, min_length=min_length, aligned=aligned)
    expected = [lex.match_spans(text) for text in texts]
    kept = lexicon_module.TRIE_MIN_CHARS
    for threshold in (0, 10**9):  # the trie for any text; the automaton for all
        lexicon_module.TRIE_MIN_CHARS = threshold
        try:
            matches, bounds = lex.match_many(texts)
            assert matches.dtype == bounds.dtype == np.int64 and len(bounds) == len(texts) + 1
            got = [list(map(tuple, matches[a:b].tolist())) for a, b in zip(bounds, bounds[1:])]
            assert got == expected  # none crosses a text's end
            lex.add(["ccc"])  # a grown lexicon is matched anew
            assert [list(map(tuple, lex.match_many(["xcccx"])[0].tolist()))] == [lex.match_spans("xcccx")]
        finally:
            lexicon_module.TRIE_MIN_CHARS = kept


def test_the_trie_matches_words_far_longer_than_the_others(monkeypatch):
    import lexner.lexicon as lexicon_module

    monkeypatch.setattr(lexicon_module, "TRIE_MIN_CHARS", 0)
    lex = Lexicon(["北京", "北京大学", "长" * 1000, "长长", "短" * 1001])  # built depth by depth over the long words
    texts = ["在北京大学", "长" * 1001, "长" * 999, "短" * 1001]
    matches, bounds = lex.match_many(texts)
    assert [list(map(tuple, matches[a:b].tolist())) for a, b in zip(bounds, bounds[1:])] == [
        lex.match_spans(text) for text in texts]
    assert (0, 1000, 2) in map(tuple, matches[bounds[1]:bounds[2]].tolist())
    assert lex.match_spans("短" * 1001) == []  # longer than MAX_WORD_LENGTH: never matched (it crashed pyahocorasick)


@SETTINGS
@given(
    words=st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=3), max_size=10),
    text=st.text(alphabet=ALPHABET, max_size=20),
)
def test_single_characters_excluded_with_min_length_2(words, text):
    lex = Lexicon(words)  # default min_length=2
    got = lex.match(text)
    assert all(end - start >= 2 for start, end, _ in got)
    assert got == naive_matches(words, text, 2)


def test_nested_and_overlapping_words():
    lex = Lexicon(["北京", "北京市", "京市", "市长", "长江大桥", "北"])
    assert lex.match("北京市长江大桥") == [
        Match(0, 2, 0),
        Match(0, 3, 1),
        Match(1, 3, 2),
        Match(2, 4, 3),
        Match(3, 7, 4),
    ]


def test_repeated_occurrences_and_sorting():
    lex = Lexicon(["aa", "aaa"])
    assert lex.match("aaaa") == [
        Match(0, 2, 0), Match(0, 3, 1), Match(1, 3, 0), Match(1, 4, 1), Match(2, 4, 0)
    ]


def test_min_length():
    lex = Lexicon(["北", "北京"])
    assert "北" in lex and lex.id("北") == 0
    assert lex.match("北京") == [Match(0, 2, 1)]
    assert Lexicon(["北", "北京"], min_length=1).match("北京") == [Match(0, 1, 0), Match(0, 2, 1)]
    assert Lexicon(["北京", "北京市"], min_length=3).match("北京市") == [Match(0, 3, 1)]


def test_fullwidth_word_matches_ascii_text():
    lex = Lexicon(["ＩＢＭ公司"])
    assert lex.words == ["IBM公司"]
    assert lex.match("在IBM公司") == [Match(1, 6, 0)]


def test_ascii_word_matches_fullwidth_text_with_original_offsets():
    lex = Lexicon(["IBM", "ab"])
    text = "我在ＩＢＭ\u3000ａｂ"
    got = lex.match(text)
    assert got == [Match(2, 5, 0), Match(6, 8, 1)]
    assert text[2:5] == "ＩＢＭ" and text[6:8] == "ａｂ"


def test_non_bmp_characters_do_not_shift_offsets():
    lex = Lexicon(["北京"])
    text = "😀😀北京"
    assert lex.match(text) == [Match(2, 4, 0)]
    assert text[2:4] == "北京"


def test_contains_id_and_deduplication():
    lex = Lexicon(["ab", "ａｂ", " ab\n", "", "   ", "北京"])
    assert lex.words == ["ab", "北京"]
    assert len(lex) == 2
    assert "ａｂ" in lex and "ab" in lex and "ba" not in lex
    assert lex.id("ａｂ") == lex.id("ab") == 0
    assert lex.id("北京") == 1
    assert lex.id("上海") is None


def test_vector_count_must_match_distinct_words():
    Lexicon(["ab", "cd"], vectors=np.zeros((2, 3)))
    with pytest.raises(ValueError):
        Lexicon(["ab", "cd"], vectors=np.zeros((3, 3)))
    with pytest.raises(ValueError):
        Lexicon(["ab", "ａｂ"], vectors=np.zeros((2, 3)))  # one distinct word


def test_empty_lexicon_matches_nothing():
    lex = Lexicon([])
    assert len(lex) == 0
    assert lex.match("北京") == []
    assert lex.match("") == []
    assert lex.match("\0\0\0never") == []  # the placeholder pyahocorasick needs is never reported
    assert Lexicon(["北", "京"]).match("北京北京") == []  # only words shorter than min_length


# --- files -----------------------------------------------------------------------------------------------------


def test_from_wordlist_ignores_extra_columns(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("北京 123 ns\n上海\t45\n\n   \n字符串 \t 395499\nＩＢＭ\n北京 9\n", encoding="utf-8")
    lex = Lexicon.from_wordlist(path)
    assert lex.words == ["北京", "上海", "字符串", "IBM"]
    assert lex.vectors is None
    assert lex.match("北京字符串") == [Match(0, 2, 0), Match(2, 5, 2)]


def test_from_wordlist_min_length(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("北京\n北\n", encoding="utf-8")
    assert Lexicon.from_wordlist(path, min_length=1).match("北京") == [Match(0, 1, 1), Match(0, 2, 0)]


@pytest.mark.parametrize(
    "raw",
    [
        "\ufeff北京\t1\r上海\t2\r".encode("utf-8"),  # BOM and old-Mac CR line endings (THUOCL_diming)
        "北京\t1\r\n上海\t2\r\n".encode("utf-8"),  # CRLF
        "\ufeff北京\t1\r\n上海\t2".encode("utf-8"),  # no final newline
    ],
)
def test_from_wordlist_bom_and_line_endings(tmp_path, raw):
    path = tmp_path / "words.txt"
    path.write_bytes(raw)
    lex = Lexicon.from_wordlist(path)
    assert lex.words == ["北京", "上海"]
    assert lex.match("上海北京") == [Match(0, 2, 1), Match(2, 4, 0)]


@pytest.mark.parametrize("suffix, opener", [(".gz", gzip.open), (".xz", lzma.open)])
def test_from_wordlist_compressed(tmp_path, suffix, opener):
    path = tmp_path / f"words.txt{suffix}"
    with opener(path, "wb") as handle:
        handle.write("北京\t1\n上海\t2\n".encode("utf-8"))
    assert Lexicon.from_wordlist(path).words == ["北京", "上海"]


def _write_vec(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_from_word2vec_vectors_align_and_duplicates_keep_first(tmp_path):
    path = _write_vec(tmp_path / "w.vec", "5 2\n北京 1 2\nＡＢ 3 4\n上 5 6\nAB 7 8\n上海 9 10\n")
    lex = Lexicon.from_word2vec(path)
    assert lex.words == ["北京", "AB", "上", "上海"]
    assert lex.vectors.shape == (4, 2)
    assert lex.vectors.dtype == np.float32
    expected = {"北京": [1, 2], "AB": [3, 4], "ＡＢ": [3, 4], "上": [5, 6], "上海": [9, 10]}
    for word, vec in expected.items():
        np.testing.assert_array_equal(lex.vectors[lex.id(word)], vec)
    assert lex.match("ＡＢ上海") == [Match(0, 2, 1), Match(2, 4, 3)]


def test_from_word2vec_min_length(tmp_path):
    path = _write_vec(tmp_path / "w.vec", "2 1\n北 1\n北京 2\n")
    lex = Lexicon.from_word2vec(path, min_length=1)
    assert lex.min_length == 1
    assert lex.match("北京") == [Match(0, 1, 0), Match(0, 2, 1)]


def test_from_path_detects_word2vec(tmp_path):
    path = tmp_path / "w.vec.xz"
    with lzma.open(path, "wt", encoding="utf-8") as handle:
        handle.write("2 3\n北京 1 2 3\n上海 4 5 6\n")
    lex = Lexicon.from_path(path)
    assert lex.words == ["北京", "上海"]
    np.testing.assert_array_equal(lex.vectors, [[1, 2, 3], [4, 5, 6]])


@pytest.mark.parametrize(
    "content",
    [
        "北京\n上海\n",
        "北京 12\n上海 3\n",  # two columns, but the first is not a number
        "北京\t12\t3\n上海\n",
        "12 34 56\n北京\n上海\n",  # three numbers is not a word2vec header
    ],
)
def test_from_path_detects_wordlist(tmp_path, content):
    path = tmp_path / "words.txt"
    path.write_text(content, encoding="utf-8")
    lex = Lexicon.from_path(path)
    assert lex.vectors is None
    assert "北京" in lex and "上海" in lex


def test_from_path_empty_file(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("", encoding="utf-8")
    lex = Lexicon.from_path(path)
    assert len(lex) == 0 and lex.match("北京") == []


# --- add ----------------------------------------------------------------------------------------------------------


def test_add_invalidates_automaton():
    lex = Lexicon(["北京"])
    assert lex.match("上海北京") == [Match(2, 4, 0)]  # builds the automaton
    assert lex.add(["上海", "北京", "ＩＢＭ"]) == [1, 0, 2]
    assert lex.words == ["北京", "上海", "IBM"]
    assert lex.match("上海北京IBM") == [Match(0, 2, 1), Match(2, 4, 0), Match(4, 7, 2)]


def test_add_existing_words_only():
    lex = Lexicon(["北京"])
    lex.match("北京")
    assert lex.add(["北京", "北京"]) == [0, 0]
    assert lex.words == ["北京"]
    assert lex.match("北京") == [Match(0, 2, 0)]


def test_add_rejects_empty_word():
    lex = Lexicon(["北京"])
    with pytest.raises(ValueError):
        lex.add([" "])


def test_add_with_vectors():
    lex = Lexicon(["北京", "上海"], vectors=np.array([[1, 2], [3, 4]], dtype=np.float32))
    ids = lex.add(["广州", "北京", "深圳"], vectors=np.array([[5, 6], [7, 8], [9, 10]]))
    assert ids == [2, 0, 3]
    assert lex.vectors.dtype == np.float32
    np.testing.assert_array_equal(lex.vectors, [[1, 2], [3, 4], [5, 6], [9, 10]])
    with pytest.raises(ValueError, match="vector"):
        lex.add(["杭州"])


# --- no torch -------------------------------------------------------------------------------------------------------


def test_import_does_not_load_torch():
    code = "import sys, lexner.lexicon; assert 'torch' not in sys.modules, 'torch was imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, encoding="utf-8", timeout=60)
    assert result.returncode == 0, result.stderr


def test_from_word2vec_token_with_surrounding_space(tmp_path):
    path = _write_vec(tmp_path / "w.vec", "2 2\n\u3000北京 1 2\n上海 3 4\n")
    lex = Lexicon.from_word2vec(path)
    assert lex.words == ["北京", "上海"]
    np.testing.assert_array_equal(lex.vectors, [[1, 2], [3, 4]])


def test_read_words_is_the_one_reader_of_lexicons_and_lexicon_add_files(tmp_path, monkeypatch):
    from lexner import cli
    from lexner.lexicon import read_words, read_wordlist

    path = tmp_path / "words.txt"
    path.write_text("北京 100 ns\n\n  上海\t7\n", encoding="utf-8")
    assert read_wordlist(path) == ["北京", "上海"] == Lexicon.from_wordlist(path).words
    assert read_words(path) == (["北京", "上海"], None)
    vectors = _write_vec(tmp_path / "w.vec", "2 2\n北京 1 2\n上海 3 4\n")
    assert cli._extra_words(type("Args", (), {"lexicon_add": [vectors]})()) == ["北京", "上海"]  # not "2" as well
    calls = []
    monkeypatch.setattr("lexner.lexicon.read_words", lambda p, vectors=True, progress=False: calls.append(p) or (["新词"], None))
    assert cli._extra_words(type("Args", (), {"lexicon_add": [path]})()) == ["新词"]
    assert Lexicon.from_path(vectors).words == ["新词"] and calls == [path, vectors]


WORDS = [f"词{i}" for i in range(3000)]  # more than a read buffer holds


@pytest.mark.parametrize("content, vectors", [
    (f"{len(WORDS)} 2\n" + "".join(f"{w} {i} 1\n" for i, w in enumerate(WORDS)), [[i, 1] for i in range(len(WORDS))]),
    ("".join(f"{w}\n" for w in WORDS), None),
])
def test_from_path_reads_a_pipe_once(content, vectors):
    import os
    import threading

    read, write = os.pipe()  # as <(xzcat words.vec.xz): what is read from it once is gone
    writer = threading.Thread(target=lambda: (os.write(write, content.encode("utf-8")), os.close(write)))
    writer.start()
    try:
        lex = Lexicon.from_path(f"/dev/fd/{read}")
    finally:
        writer.join()
        os.close(read)
    assert lex.words == WORDS
    assert (lex.vectors is None) if vectors is None else lex.vectors.tolist() == vectors


def test_a_word_list_that_begins_like_a_word2vec_header_is_a_word_list(tmp_path, caplog):
    from lexner.lexicon import read_words

    path = tmp_path / "words.txt"
    path.write_text("2019 5\n\n北京 100\n上海 7\n", encoding="utf-8")  # a word and its frequency
    with caplog.at_level("WARNING", logger="lexner.lexicon"):
        assert read_words(path) == (["2019", "北京", "上海"], None)
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: line 1 reads like a word2vec header (COUNT DIM), but line 3 is no token with 5 numbers: read as a "
        "word list"]
    path.write_text("0 5\n", encoding="utf-8")  # a word2vec file without rows
    assert read_words(path)[0] == [] and read_words(path)[1].shape == (0, 5)
    path.write_text("² 3\n北京\n", encoding="utf-8")  # not ASCII digits: no header
    assert read_words(path) == (["²", "北京"], None)


def test_count_uncovered_skips_words_inside_longer_matches():
    lexicon = Lexicon(["北京", "北京大学", "大学", "学在", "在北京"])
    # 北京大学在北京: 北京 and 大学 lie inside 北京大学, the second 北京 inside 在北京; 学在 sticks out of 北京大学
    counts = lexicon.count_uncovered(["北京大学在北京", "大学", "北京"])
    assert dict(zip(lexicon.words, counts.tolist())) == {"北京": 1, "北京大学": 1, "大学": 1, "学在": 1, "在北京": 1}


def test_from_paths_is_the_union_of_several_files_without_vectors(tmp_path):
    (tmp_path / "a.vec").write_text("2 2\n北京 1 2\n上海 3 4\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("上海 12 ns\n南京市\n", encoding="utf-8")
    one = Lexicon.from_paths(tmp_path / "a.vec")
    assert one.words == ["北京", "上海"] and one.vectors.tolist() == [[1, 2], [3, 4]]
    assert Lexicon.from_paths([tmp_path / "a.vec"]).vectors is not None
    both = Lexicon.from_paths([tmp_path / "a.vec", tmp_path / "b.txt"])
    assert both.words == ["北京", "上海", "南京市"] and both.vectors is None


def test_a_lexicon_copies_and_pickles_with_its_matches(corpus):
    """The lock that guards building the matcher is left out of copies and pickles (it cannot be copied), and
    the matcher is built again; a tagger with a lexicon therefore copies too."""
    import copy
    import pickle

    from lexner.api import build_tagger

    lexicon = Lexicon(["北京", "北京大学", "大学"])
    expected = lexicon.match("他在北京大学")  # the matcher is built
    for clone in (copy.deepcopy(lexicon), pickle.loads(pickle.dumps(lexicon))):
        assert clone.match("他在北京大学") == expected and clone._lock is not lexicon._lock
    tagger = build_tagger("softlexicon", corpus, {"char_dim": 8, "bigram_dim": 8, "word_dim": 8, "hidden": 8},
                          lexicon=Lexicon(["北京", "上海"])).eval()
    text = "张三在北京和上海工作"
    assert copy.deepcopy(tagger).tag(text) == tagger.tag(text)


def test_a_refused_add_leaves_the_lexicon_and_its_vectors_as_they_were():
    """An empty word or misshapen vectors raised after earlier words of the call were added without their
    vectors: every later word got the vector of the word after it (helper audit)."""
    lexicon = Lexicon._with_vectors(["北京", "上海"], np.zeros((2, 2), np.float32), 2)
    for words, vectors in ((["广州", ""], np.ones((2, 2))), (["广州"], None), (["广州"], np.ones((2, 2))),
                           (["广州"], np.ones((1, 3)))):
        with pytest.raises(ValueError):
            lexicon.add(words, vectors)
        assert lexicon.words == ["北京", "上海"] and lexicon.vectors.shape == (2, 2) and "广州" not in lexicon
    ids = lexicon.add(["深圳", "北京", "深圳", "广州"], np.array([[9, 9], [0, 0], [8, 8], [7, 7]], np.float32))
    assert ids == [2, 0, 2, 3] and lexicon.vectors[2].tolist() == [9, 9] and lexicon.vectors[3].tolist() == [7, 7]
