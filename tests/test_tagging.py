import pytest
from hypothesis import given, settings, strategies as st

from lexner.schemes import Span
from lexner.tagging import MAX_PIECE_LENGTH, MIN_PIECE_LENGTH, WindowMerger, piece_length, sentence_pieces, split_windows


def merge_windows(windows, spans):
    """The entities WindowMerger keeps of each window in turn."""
    merger = WindowMerger(windows)
    return [s for k, found in enumerate(spans) for s in merger.add(k, found)]


def test_sentence_pieces_keep_punctuation_and_closing_quotes():
    text = "他说：“好。”然后走了！！还有"
    assert [text[a:b] for a, b in sentence_pieces(text)] == ["他说：“好。”", "然后走了！！", "还有"]


def test_piece_length_is_the_99th_percentile_of_training_lengths_with_a_floor():
    assert piece_length([80] * 99 + [400]) == 80  # one outlier in a hundred does not count
    assert piece_length([80] * 98 + [400, 400]) == 400
    assert piece_length(list(range(1, 201))) == 198
    assert piece_length([5, 7, 9]) == MIN_PIECE_LENGTH  # short training texts still tag a text in sizeable pieces
    assert piece_length([2000] * 10) == MAX_PIECE_LENGTH  # long documents: pieces no longer than before
    with pytest.raises(ValueError):
        piece_length([])


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


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.text(alphabet="北京。！a\n", min_size=1, max_size=80), st.integers(1, 12), st.data())
def test_windows_never_cut_a_span_that_must_stay_whole(text, max_length, data):
    """Forced dictionary words: no window begins or ends inside one that fits into a window; the windows still
    cover the text in order, within the limit (touching or overlapping: a span moves the overlap)."""
    overlap = data.draw(st.integers(0, max_length - 1))
    cuts = sorted(data.draw(st.sets(st.integers(0, len(text)), max_size=12)))
    spans = [(a, b) for a, b in zip(cuts[::2], cuts[1::2]) if b > a]  # disjoint, in order
    windows = split_windows(text, max_length, overlap, spans)
    assert windows[0][0] == 0 and windows[-1][1] == len(text)
    assert all(0 < b - a <= max_length for a, b in windows)
    for (a1, b1), (a2, b2) in zip(windows, windows[1:]):
        assert a1 < a2 <= b1 < b2
    for s, e in spans:
        if e - s <= max_length:
            assert not any(s < p < e for w in windows for p in w), (s, e, windows)


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


def test_merge_takes_an_entity_cut_by_a_window_end_from_the_next_window_at_the_same_start():
    """An entity ending at a window's end inside an overlap may be cut short there: the next window's entity at
    the same start is kept (a helper's audit: 中华人民共和国国务院新闻办公室 came out as ...新闻办)."""
    windows = [(0, 10), (6, 16)]
    assert merge_windows(windows, [[Span(1, 3, "A"), Span(7, 10, "B")], [Span(1, 6, "B")]]) == [
        Span(1, 3, "A"), Span(7, 12, "B")]
    assert merge_windows(windows, [[Span(7, 10, "B")], [Span(1, 3, "C"), Span(5, 7, "D")]]) == [
        Span(7, 9, "C"), Span(11, 13, "D")]  # the same start, shorter: the next window saw what follows
    assert merge_windows(windows, [[Span(7, 10, "B")], [Span(2, 4, "C")]]) == [
        Span(7, 10, "B")]  # nothing at that start there: the entity as the first window found it
    assert merge_windows([(0, 10), (8, 18)], [[Span(6, 10, "B")], [Span(0, 4, "C")]]) == [
        Span(6, 10, "B")]  # the next window does not hold its start: kept as found (C overlaps it)
    assert merge_windows([(0, 10), (10, 20)], [[Span(7, 10, "B")], [Span(0, 2, "C")]]) == [
        Span(7, 10, "B"), Span(10, 12, "C")]  # touching windows: a sentence ends there, nothing is cut


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.integers(1, 12), st.data())
def test_merged_entities_are_in_order_never_overlap_and_come_from_some_window(max_length, data):
    text = "北" * data.draw(st.integers(1, 60))
    windows = split_windows(text, max_length, data.draw(st.integers(0, max_length - 1)))
    found = []
    for a, b in windows:
        cuts = sorted(data.draw(st.sets(st.integers(0, b - a), max_size=8)))
        found.append([Span(x, y, "A") for x, y in zip(cuts[::2], cuts[1::2]) if y > x])
    merged = merge_windows(windows, found)
    assert all(x.end <= y.start for x, y in zip(merged, merged[1:]))
    pool = {Span(s.start + a, s.end + a, s.label) for (a, _), spans in zip(windows, found) for s in spans}
    assert set(merged) <= pool


def test_touching_windows_just_shift():
    assert merge_windows([(0, 3), (3, 6)], [[Span(0, 3, "A")], [Span(0, 1, "B")]]) == [Span(0, 3, "A"), Span(3, 4, "B")]


def test_whitespace_class_is_exactly_str_isspace():
    import re

    from lexner.tagging import WHITESPACE

    pattern = re.compile(f"[{WHITESPACE}]")
    for code in range(0x110000):
        c = chr(code)
        assert bool(pattern.fullmatch(c)) == c.isspace(), hex(code)


def test_control_class_is_every_control_and_format_character_that_is_not_whitespace():
    import re
    import unicodedata

    from lexner.tagging import CONTROLS

    pattern = re.compile(f"[{CONTROLS}]")
    for code in range(0x110000):  # every plane (U+13439-1343F, Unicode 15's, were missing)
        c = chr(code)
        hidden = unicodedata.category(c) in ("Cc", "Cf") and not c.isspace()
        if pattern.fullmatch(c):  # unassigned in an older Python's Unicode (3.10 has 13.0: U+0890 came in 14.0)
            assert hidden or unicodedata.category(c) == "Cn", hex(code)
        else:  # a Python with a newer Unicode than CONTROLS (15.1) may fail here: CONTROLS is to be updated
            assert not hidden, hex(code)


@pytest.mark.parametrize("text, views, constraints", [
    ("我 和 张三", ["我和张三"], [{0: "OES", 1: "OS", 2: "OBS"}]),  # removed spaces: an entity boundary on both sides
    (" hhh ", ["hhh"], [{}]),  # at a line's ends whitespace simply goes
    ("Elon Musk", ["Elon Musk"], [{4: "OI"}]),  # kept between Latin letters, only inside an entity
    ("iPhone 15 发布", ["iPhone 15发布"], [{6: "OI", 8: "OES", 9: "OBS"}]),
    ("张三在北京。\n李四\r\n\r\n王五\u2028赵六", ["张三在北京。", "李四", "王五", "赵六"], [{}, {}, {}, {}]),
    ("a 张 b", ["a张b"], [{0: "OES", 1: "OS", 2: "OBS"}]),
    ("\n \t\n", [], []),
    ("张三\u200b在北\x00京\ufeff", ["张三在北京"], [{}]),  # control characters go without a boundary
    ("我\u200b 和", ["我和"], [{0: "OES", 1: "OBS"}]),  # beside whitespace: the whitespace's boundary
    ("Elon\u200b Musk", ["Elon Musk"], [{4: "OI"}]),  # kept whitespace keeps no control character
    ("\u200b\xad\n\ufeff", [], []),
    ("Zoe\u0308 Smith", ["Zoe\u0308 Smith"], [{4: "OI"}]),  # a decomposed ë is a Latin letter too
    ("Phạm Thọ", ["Phạm Thọ"], [{4: "OI"}]),  # Latin Extended Additional (Vietnamese)
    ("北\u0301 京", ["北\u0301京"], [{1: "OES", 2: "OBS"}]),  # a combining mark after a Chinese character
])
def test_model_lines(text, views, constraints):
    from lexner.tagging import iter_model_lines

    lines = list(iter_model_lines(text))
    assert [line.view for line in lines] == views
    assert [line.constraints for line in lines] == constraints
    for line in lines:
        assert "".join(text[line.offset(k)] for k in range(len(line.view))) == line.view


def test_a_zero_block_or_window_size_is_refused_not_silently_empty(corpus):
    from lexner.api import build_tagger

    tagger = build_tagger("bilstm_crf", corpus, {"char_dim": 8, "bigram_dim": 4, "hidden": 8})
    tagger.block_pieces = 0
    with pytest.raises(ValueError, match="block_pieces"):
        tagger.tag("张三在北京")


@pytest.mark.parametrize("batch_size", [0, -1, "8", 2.5, True])
def test_a_batch_size_that_is_not_a_positive_integer_is_refused(corpus, batch_size):
    from lexner.api import build_tagger

    tagger = build_tagger("bilstm_crf", corpus, {"char_dim": 8, "bigram_dim": 4, "hidden": 8})
    with pytest.raises(ValueError, match="batch_size must be an integer ≥ 1"):
        tagger.tag_batch(["张三在北京"], batch_size)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.text(alphabet="北京张三a1 \t\u3000\n\r\u2028。\u200b\x00\ufeff\xad", max_size=40))
def test_model_lines_keep_every_visible_character_where_it_was(text):
    from lexner.tagging import iter_model_lines

    lines = list(iter_model_lines(text))
    offsets = [line.offset(k) for line in lines for k in range(len(line.view))]
    assert offsets == sorted(set(offsets))  # in order, each character of the text at most once
    assert "".join(line.view for line in lines) == "".join(text[k] for k in offsets)
    kept = set(offsets)
    assert all(text[k].isspace() or text[k] in "\u200b\x00\ufeff\xad"  # only whitespace and controls go
               for k in range(len(text)) if k not in kept)
    assert not any(c in line.view for line in lines for c in "\u200b\x00\ufeff\xad")
    for line in lines:
        assert line.view and line.view == line.view.strip()
        assert not any(c in line.view for c in "\n\r\u2028")


def test_progress_counts_texts_done_and_changes_nothing(corpus):
    from lexner.api import build_tagger

    tagger = build_tagger("bilstm_crf", corpus, {"char_dim": 4, "bigram_dim": 4, "hidden": 8})
    tagger.block_pieces = 2  # several blocks
    texts = [s.text for s in corpus] + ["", "张三\n李四"]  # an empty text (no pieces) and one of two lines
    plain = tagger.tag_batch(texts, batch_size=3)
    calls = []
    assert tagger.tag_batch(texts, batch_size=3, progress=calls.append) == plain
    assert len(calls) > 2 and calls == sorted(calls) and calls[-1] == len(texts) and calls[0] < len(texts)


def test_progress_moves_within_one_block_as_its_batches_are_decoded(corpus):
    from lexner.api import build_tagger

    tagger = build_tagger("bilstm_crf", corpus, {"char_dim": 4, "bigram_dim": 4, "hidden": 8})
    texts = [s.text for s in corpus] * 4  # one block (4096 pieces), batches of 2
    assert len(texts) >= 8
    calls = []
    tagger.tag_batch(texts, batch_size=2, progress=calls.append)
    assert calls == sorted(calls) and calls[-1] == len(texts)
    assert len(set(calls)) >= len(texts) // 2 - 1  # a step per batch, not one jump at the block's end


def test_evaluate_with_a_progress_bar_scores_the_same(corpus, capsys):
    from lexner.api import build_tagger
    from lexner.evaluate import evaluate

    tagger = build_tagger("bilstm_crf", corpus, {"char_dim": 4, "bigram_dim": 4, "hidden": 8})
    tagger.block_pieces = 2
    quiet = evaluate(tagger, corpus)
    capsys.readouterr()
    assert evaluate(tagger, corpus, progress=True) == quiet
    assert f"{len(corpus)}/{len(corpus)}" in capsys.readouterr().err  # the bar reached the end


def test_tag_batch_takes_numpy_integers_and_refuses_a_progress_that_cannot_be_called(corpus):
    import numpy as np

    import lexner

    from lexner.api import build_tagger

    tagger = build_tagger("bilstm_crf", corpus, {"char_dim": 4, "bigram_dim": 4, "hidden": 8})
    texts = [s.text for s in corpus[:5]]
    assert tagger.tag_batch(texts, batch_size=np.int64(2)) == tagger.tag_batch(texts, batch_size=2)
    with pytest.raises(TypeError, match="progress must be a function of the texts done"):
        tagger.tag_batch(texts, progress=5)
    with pytest.raises(TypeError, match="a dictionary is .* got NoneType"):
        tagger.add_dictionary(None)
    with pytest.raises(TypeError, match="extra_words.* got NoneType"):
        lexner.load(extra_words=None)


def test_an_entity_of_the_right_window_starting_before_the_overlaps_middle_is_left_to_the_left_window():
    """Only the left window has the left context of the overlap's first half: the right window's entity there
    is not kept, even where the left window found nothing."""
    merger = WindowMerger([(0, 10), (6, 16)])  # the overlap 6..10, its middle 8
    assert merger.add(0, []) == []
    assert merger.add(1, [Span(1, 2, "X"), Span(3, 4, "Y")]) == [Span(9, 10, "Y")]  # X at 7..8 starts before 8


def test_tagging_leaves_a_model_in_training_mode_as_it_was(corpus):
    """A user's training loop that calls tag() keeps its dropout on."""
    from lexner.api import build_tagger

    tagger = build_tagger("bilstm_crf", corpus, {"char_dim": 4, "bigram_dim": 4, "hidden": 8})
    tagger.train()
    tagger.tag("张三在北京")
    assert tagger.training and all(m.training for m in tagger.modules())
    tagger.eval()
    tagger.tag("张三在北京")
    assert not tagger.training
