import pytest

import lexner
from lexner.api import build_tagger
from lexner.cli import main
from lexner.dictionary import Dictionary
from lexner.fileio import DataFormatError


def test_occurrences_leftmost_then_longest_without_overlap():
    d = Dictionary({"北京": "LOC", "北京大学": "ORG", "大学生": "PER", "ＡＢ": "ORG"})
    assert d.occurrences("北京大学生在北京") == [(0, 4, "ORG"), (6, 8, "LOC")]  # 大学生 overlaps: skipped
    assert d.occurrences("AB和ab") == [(0, 2, "ORG")]  # normalised: full-width = ASCII; case kept
    assert Dictionary().occurrences("北京") == []


def test_occurrences_inside_a_run_of_latin_letters_and_digits_are_none_and_block_nothing():
    d = Dictionary({"NBA": "ORG", "iPhone": "ORG", "北京": "LOC", "BA球": "LOC"})
    assert d.occurrences("WNBA和NBA的iPhone15和iPhone北京NBA") == [
        (5, 8, "ORG"), (18, 24, "ORG"), (24, 26, "LOC"), (26, 29, "ORG")]
    assert d.occurrences("NBA球") == [(0, 3, "ORG")] and d.occurrences("WBA球") == []
    assert d.occurrences("ＷNBA") == []  # full-width letters are Latin letters too
    assert Dictionary({"Jose": "PER"}).occurrences("Jose\u0301来") == []  # the accent belongs to its e
    assert Dictionary({"NBA": "ORG"}).occurrences("Jose\u0301NBA") == []  # so does the accent before NBA
    accented = Dictionary({"Jose\u0301": "PER"})  # a word ending in a decomposed é, inside José's
    assert accented.occurrences("Jose\u0301s来") == [] and accented.occurrences("Jose\u0301来") == [(0, 5, "PER")]


def test_a_word_given_again_takes_the_new_type():
    d = Dictionary({"苹果": "ORG"})
    d.add({"苹果": "PRODUCT"})
    assert d.items() == [("苹果", "PRODUCT")] and len(d) == 1


@pytest.mark.parametrize("entries", [{"": "ORG"}, {"腾讯": ""}, {"腾讯": None}, {3: "ORG"}, {"新冠\ud83d": "X"}])
def test_bad_entries_are_refused(entries):
    with pytest.raises(ValueError):
        Dictionary(entries)


@pytest.mark.parametrize("entries", ["dict.tsv", b"dict.tsv", [("腾讯",)], ["腾讯"], [("腾讯", "ORG", "x")]])
def test_a_file_name_or_entries_that_are_not_pairs_are_a_type_error_that_says_what_is_taken(entries):
    with pytest.raises(TypeError, match="pair|Dictionary.read"):
        Dictionary(entries)
    with pytest.raises(TypeError):
        lexner.load(dictionary=entries)


def test_dictionary_file_errors_name_file_and_line(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text("腾讯\tORG\n\n字节跳动 ORG\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"d.tsv:3: expected 'WORD<TAB>TYPE'"):
        Dictionary.read(path)


def test_load_and_cli_take_a_dictionary(corpus, tmp_path, capsys):
    build_tagger("bilstm_crf", corpus, {"char_dim": 4, "bigram_dim": 4, "hidden": 8}).save(tmp_path / "m")
    ner = lexner.load(tmp_path / "m", dictionary={"南京": "PER"})
    assert [(e.text, e.label) for e in ner.tag("南京")] == [("南京", "PER")]
    (tmp_path / "d.tsv").write_text("南京\tPER\n", encoding="utf-8")
    assert main(["tag", "--model", str(tmp_path / "m"), "--dictionary", str(tmp_path / "d.tsv"), "南京"]) == 0
    assert '"label": "PER", "text": "南京"' in capsys.readouterr().out
    (tmp_path / "d.tsv").write_text("上海\tLOC\n南京\tCITY\n北京\tCITY\n", encoding="utf-8")
    assert main(["tag", "--model", str(tmp_path / "m"), "--dictionary", str(tmp_path / "d.tsv"), "南京"]) == 2
    err = capsys.readouterr().err
    assert "['CITY'] are not types of this model" in err and f"(given at {tmp_path / 'd.tsv'}:2)" in err


def test_a_word_given_twice_in_a_file_warns_naming_both_lines(tmp_path, caplog):
    (tmp_path / "d.tsv").write_text("腾讯\tORG\n北京\tLOC\n\n腾讯\tPER\n北京\tLOC\n", encoding="utf-8")
    with caplog.at_level("WARNING"):
        dictionary = Dictionary.read(tmp_path / "d.tsv")
    assert dict(dictionary.items())["腾讯"] == "PER"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"{tmp_path / 'd.tsv'}:4: '腾讯' is PER here but ORG on line 1; the later type counts"]


def test_words_the_matcher_reads_as_one_are_one_word_of_the_file(tmp_path, caplog):
    (tmp_path / "d.tsv").write_text("ＡＢＣ\tORG\n臺灣\tLOC\nABC\tPER\n台湾\tLOC\n", encoding="utf-8")
    with caplog.at_level("WARNING"):
        dictionary = Dictionary.read(tmp_path / "d.tsv")
    assert sorted(dictionary.items()) == [("ABC", "PER"), ("台湾", "LOC")]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"{tmp_path / 'd.tsv'}:3: 'ABC' is PER here but ORG on line 1 ('ＡＢＣ' there, the same word "
                        "to the matcher); the later type counts"]  # the same type twice: nothing to say


def test_words_the_matcher_reads_as_one_given_in_one_call_warn(caplog):
    """As in a file: the API kept one type silently."""
    with caplog.at_level("WARNING"):
        dictionary = Dictionary({"騰訊": "ORG", "腾讯": "LOC", "ＡＢＣ": "ORG", "ABC": "ORG"})
    assert sorted(dictionary.items()) == [("ABC", "ORG"), ("腾讯", "LOC")]
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        "dictionary word '騰訊' is ORG but '腾讯', the same word to the matcher, is LOC; the later type counts"]


def test_a_simplified_word_matches_its_usual_traditional_spelling(corpus, tmp_path):
    """钱钟书 in Traditional is 錢鍾書, which lookups read as 钱锺书 (OpenCC's t2s takes 鍾 to 锺): the word missed
    it silently; now its Traditional spelling as read back is matched too, unless given as a word itself."""
    d = Dictionary({"钱钟书": "PER", "家俱城": "LOC"})
    assert d.occurrences("錢鍾書來了") == [(0, 3, "PER")] and d.occurrences("钱钟书来了") == [(0, 3, "PER")]
    assert d.occurrences("傢俱城") == [(0, 3, "LOC")]
    assert sorted(d.items()) == [("家俱城", "LOC"), ("钱钟书", "PER")] and len(d) == 2
    respelt = Dictionary([("钱钟书", "PER.NAM"), ("錢鐘書", "PER")])  # one word to the matcher: the later type,
    assert respelt.items() == [("钱钟书", "PER")] and respelt.labels == {"PER"}  # its Traditional form's too
    assert respelt.occurrences("錢鍾書") == [(0, 3, "PER")] and Dictionary({"錢鐘書": "PER"}).occurrences("錢鍾書")
    d.add({"钱锺书": "ORG"})  # given itself: its own type, kept when 钱钟书 is given again
    d.add({"钱钟书": "PER"})
    assert d.occurrences("錢鍾書") == [(0, 3, "ORG")] and d.occurrences("钱钟书") == [(0, 3, "PER")] and len(d) == 3
    build_tagger("bilstm_crf", corpus, {"char_dim": 4, "bigram_dim": 4, "hidden": 8}).save(tmp_path / "m")
    ner = lexner.load(tmp_path / "m", dictionary={"钱钟书": "PER"})
    assert (2, 5, "錢鍾書", "PER") in [(e.start, e.end, e.text, e.label) for e in ner.tag("我讀錢鍾書的書")]


def test_a_word_with_whitespace_the_model_does_not_see_warns_once_that_it_can_never_match(corpus, tmp_path, caplog):
    build_tagger("bilstm_crf", corpus, {"char_dim": 4, "bigram_dim": 4, "hidden": 8}).save(tmp_path / "m")
    with caplog.at_level("WARNING"):
        ner = lexner.load(tmp_path / "m", dictionary={"南 京": "PER", " 上海 ": "LOC", "Elon Musk": "PER",
                                                      "深\u200b圳": "LOC"})
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert [w.split(" can never match")[0] for w in warnings] == [
        "dictionary word '南 京'", "dictionary word '深\\u200b圳'"]  # once each (not again on adding to the model)
    assert "as it sees the text: '南京'" in warnings[0]
    # as warned: no match in the text the model sees; the others do match
    assert ner.dictionary.occurrences("南京去上海见Elon Musk") == [(3, 5, "LOC"), (6, 15, "PER")]


def test_a_word_in_a_file_that_can_never_match_is_named_with_its_line(tmp_path, caplog):
    (tmp_path / "d.tsv").write_text("腾讯\tORG\n北 京\tLOC\n", encoding="utf-8")
    with caplog.at_level("WARNING"):
        Dictionary.read(tmp_path / "d.tsv")
    assert [r.getMessage().split(" can never")[0] for r in caplog.records] == [
        f"{tmp_path / 'd.tsv'}:2: dictionary word '北 京'"]


def test_adding_entries_replaces_the_dictionary_whole_so_a_running_call_keeps_the_one_it_began_with(corpus, tmp_path):
    """add_dictionary changed the dictionary a tag_batch in another thread was reading, block by block: one call
    returned 4,096 results of the old dictionary and the rest of the new (a helper's audit)."""
    build_tagger("bilstm_crf", corpus, {"char_dim": 4, "bigram_dim": 4, "hidden": 8}).save(tmp_path / "m")
    ner = lexner.load(tmp_path / "m", dictionary={"南京": "LOC"})
    before = ner.dictionary
    ner.add_dictionary({"南京": "PER", "张三": "PER"})
    assert before.items() == [("南京", "LOC")] and before.occurrences("南京") == [(0, 2, "LOC")]  # as it was
    assert sorted(ner.dictionary.items()) == [("南京", "PER"), ("张三", "PER")]
    copied = Dictionary({"钱钟书": "PER", "北京": "LOC"}).copy()
    assert sorted(copied.items()) == [("北京", "LOC"), ("钱钟书", "PER")] and copied.occurrences("錢鍾書在北京") == [
        (0, 3, "PER"), (4, 6, "LOC")]
