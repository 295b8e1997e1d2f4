"""lexner.text.normalize: full-width ASCII → ASCII, U+3000 → space, Traditional → Simplified; one code point for one."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lexner.text import normalize, to_simplified

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True, database=None)

FULLWIDTH = range(0xFF01, 0xFF5F)  # U+FF01 .. U+FF5E inclusive


def test_examples():
    assert normalize("ＡＢＣｘｙｚ０１２９") == "ABCxyz0129"
    assert normalize("！，（）：；．？％－／～") == "!,():;.?%-/~"
    assert normalize("北京\u3000ＩＢＭ") == "北京 IBM"
    assert normalize("") == ""


def test_every_fullwidth_code_point_maps_to_its_ascii_counterpart():
    for cp in FULLWIDTH:
        assert normalize(chr(cp)) == chr(cp - 0xFEE0), hex(cp)
    assert normalize("".join(map(chr, FULLWIDTH))) == "".join(map(chr, range(0x21, 0x7F)))


def test_ideographic_space_becomes_space():
    assert normalize("\u3000") == " "
    assert normalize("a\u3000\u3000b") == "a  b"


def test_neighbours_of_the_range_are_unchanged():
    # U+FF00 is unassigned, U+FF5F (fullwidth white parenthesis) and U+FF61.. (half-width forms) are not mapped
    for ch in ["\uff00", "\uff5f", "\uff60", "\uff61", "\uff65", "\uffe0", "\u3001", "\u3002", "\u200b", "\t"]:
        assert normalize(ch) == ch, hex(ord(ch))


def test_ascii_chinese_and_other_text_unchanged():
    text = "Hello, world! 123 北京欢迎你。「引号」—…😀\t\n"
    assert normalize(text) == text


@SETTINGS
@given(st.text())
def test_length_preserved_and_position_wise(text):
    out = normalize(text)
    assert len(out) == len(text)
    # one code point to one code point: each character's normal form is one code point (not always the one it
    # has alone: OpenCC's phrase rules keep the 乾 of 乾隆, which alone becomes 干)
    assert all(len(normalize(ch)) == 1 for ch in text)
    assert normalize("乾隆") == "乾隆" and normalize("乾") == "干"


@SETTINGS
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Zs")).filter(
    lambda ch: not 0xFF01 <= ord(ch) <= 0xFF5E and to_simplified(ch) == ch)))  # no Traditional character
def test_identity_on_text_without_fullwidth_or_traditional_characters(text):
    assert normalize(text) == text


@SETTINGS
@given(st.text(alphabet=st.sampled_from([chr(cp) for cp in FULLWIDTH] + ["\u3000", "a", "北", "😀"])))
def test_idempotent_and_no_fullwidth_left(text):
    out = normalize(text)
    assert normalize(out) == out
    assert not any(0xFF01 <= ord(ch) <= 0xFF5E or ch == "\u3000" for ch in out)


def test_traditional_becomes_simplified_with_phrases():
    assert normalize("香港特首李家超在灣仔會議展覽中心") == "香港特首李家超在湾仔会议展览中心"
    assert normalize("乾隆") == "乾隆" and normalize("乾淨") == "干净"  # OpenCC's phrase rules apply
    assert normalize("臺積電ＡＢＣ") == normalize("台積電ABC")


@SETTINGS
@given(st.text(alphabet=st.characters(min_codepoint=0x3400, max_codepoint=0x9FFF), max_size=30)
       | st.text(max_size=30))
def test_one_code_point_for_one_on_any_text(text):
    from lexner.text import normalize_many

    assert len(normalize(text)) == len(text)
    words = [text, text[:3], text[::-1]]
    assert [len(w) for w in normalize_many(words)] == [len(w) for w in words]


def test_a_saved_lexicon_keeps_its_ids_when_forms_collapse():
    """A model's lexicon may hold a Traditional and a Simplified form of one word: both keep their rows
    (embedding alignment); texts in either script match the first."""
    from lexner.lexicon import Lexicon

    lexicon = Lexicon(["喜欢", "喜歡", "北京"], aligned=True)
    assert lexicon.words == ["喜欢", "喜歡", "北京"]
    assert [m.word_id for m in lexicon.match("喜歡北京")] == [0, 2]
    assert [m.word_id for m in lexicon.match("喜欢北京")] == [0, 2]
    assert Lexicon(["喜欢", "喜歡", "北京"]).words == ["喜欢", "北京"]  # a new lexicon de-duplicates


def test_lone_surrogates_are_looked_up_as_replacement_characters():
    assert normalize("\ud800北京\udfff") == "\ufffd北京\ufffd"
    assert normalize("\ud800臺灣") == "\ufffd台湾"


def test_every_space_separator_reads_as_a_space():
    import unicodedata

    from lexner.text import SPACES

    separators = {chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) == "Zs"} - {" "}
    assert set(SPACES) == separators
    assert normalize("Elon" + "".join(sorted(separators)) + "Musk") == "Elon" + " " * len(separators) + "Musk"


def test_a_dictionary_word_with_a_space_matches_the_text_with_another_space():
    import lexner

    ner = lexner.load(dictionary={"Elon Musk": "PER"})
    for space in ("\u00a0", "\u2009", "\u3000", " "):
        assert [(e.text, e.label) for e in ner.tag(f"Elon{space}Musk来了")] == [(f"Elon{space}Musk", "PER")]


def test_a_whole_text_conversion_that_changes_the_length_falls_back_to_each_character(monkeypatch):
    """OpenCC's phrase rules could turn a phrase into one of another length (none found in the installed
    OpenCC, so a converter that does is put in its place): the text is then converted a character at a time."""
    import lexner.text as text_module

    class Phrases:
        def convert(self, text):
            return text.replace("台灣", "台湾省").replace("國", "国")

    monkeypatch.setattr(text_module, "_t2s", lambda: Phrases())
    text_module._char_to_simplified.cache_clear()
    try:
        assert normalize("台灣國") == "台灣国"  # 台湾省 would shift every offset after it
    finally:
        text_module._char_to_simplified.cache_clear()
