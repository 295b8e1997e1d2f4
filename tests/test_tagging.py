from hypothesis import given, settings, strategies as st

from lexner.schemes import Span
from lexner.tagging import merge_windows, sentence_pieces, split_windows


def test_sentence_pieces_keep_punctuation_and_closing_quotes():
    text = "他说：“好。”然后走了！！还有"
    assert [text[a:b] for a, b in sentence_pieces(text)] == ["他说：“好。”", "然后走了！！", "还有"]


def test_short_text_is_one_window():
    assert split_windows("北京", 5, 1) == [(0, 2)]


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(st.text(alphabet="北京。！a\n", max_size=80), st.integers(1, 12), st.data())
def test_windows_cover_the_text_in_order_within_the_limit(text, max_length, data):
    overlap = data.draw(st.integers(0, max_length - 1))
    windows = split_windows(text, max_length, overlap)
    assert windows[0][0] == 0 and windows[-1][1] == len(text)
    assert all(0 < b - a <= max_length for a, b in windows) or text == ""
    for (a1, b1), (a2, b2) in zip(windows, windows[1:]):
        assert a1 < a2 <= b1 < b2  # in order, touching or overlapping, never a gap
        assert b1 - a2 in (0, overlap)


def test_packing_sentences_and_cutting_a_long_one():
    text = "一二。三四。" + "五" * 10
    assert split_windows(text, 6, 2) == [(0, 6), (6, 12), (10, 16)]


def test_merge_keeps_each_entity_once_at_the_overlap_middle():
    windows = [(0, 10), (6, 16)]  # overlap 6..10, middle 8
    left = [Span(1, 3, "A"), Span(7, 9, "B")]  # B starts at 7 < 8: kept from the left window
    right = [Span(1, 3, "B"), Span(3, 5, "C")]  # B again (7..9): dropped; C at 9..11: kept
    assert merge_windows(windows, [left, right]) == [Span(1, 3, "A"), Span(7, 9, "B"), Span(9, 11, "C")]


def test_merge_drops_a_right_entity_that_overlaps_a_kept_left_one():
    windows = [(0, 10), (6, 16)]
    assert merge_windows(windows, [[Span(6, 10, "A")], [Span(3, 6, "B")]]) == [Span(6, 10, "A")]


def test_touching_windows_just_shift():
    assert merge_windows([(0, 3), (3, 6)], [[Span(0, 3, "A")], [Span(0, 1, "B")]]) == [Span(0, 3, "A"), Span(3, 4, "B")]
