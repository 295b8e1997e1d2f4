"""lexner.schemes: tag parsing, scheme detection, spans ↔ tags, lenient reading, BIOES transition constraints."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lexner.schemes import (
    SCHEMES,
    PathReader,
    Span,
    allowed_transitions,
    bioes_tags,
    count_ill_formed,
    detect_scheme,
    spans_to_tags,
    split_tag,
    tags_to_spans,
)

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True, database=None)
LABELS = ["PER", "LOC", "ORG.NAM"]


# --- split_tag / detect_scheme ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tag, expected",
    [
        ("O", ("O", None)),
        ("B-PER", ("B", "PER")),
        ("I-LOC", ("I", "LOC")),
        ("M-ORG", ("M", "ORG")),
        ("E-GPE.NOM", ("E", "GPE.NOM")),
        ("S-PER.NAM", ("S", "PER.NAM")),
        ("B_PER", ("B", "PER")),
        ("B-X-Y", ("B", "X-Y")),
    ],
)
def test_split_tag(tag, expected):
    assert split_tag(tag) == expected


@pytest.mark.parametrize("tag", ["", "o", "B", "B-", "X-PER", "b-PER", "BPER", "B:PER", "OO", "PER"])
def test_split_tag_rejects(tag):
    with pytest.raises(ValueError):
        split_tag(tag)


@pytest.mark.parametrize(
    "tags, scheme",
    [
        ([], "BIO"),
        (["O", "O"], "BIO"),
        (["B-PER", "I-PER", "O"], "BIO"),
        (["B-PER", "B-PER"], "BIO"),
        (["S-PER", "O"], "BIOES"),
        (["B-PER", "I-PER", "E-PER"], "BIOES"),
        (["B-PER", "E-PER"], "BIOES"),  # no M-: BMES and BIOES coincide
        (["B-PER", "M-PER", "E-PER"], "BMES"),
        (["O", "M-PER", "E-PER"], "BMES"),
    ],
)
def test_detect_scheme(tags, scheme):
    assert detect_scheme(tags) == scheme
    assert detect_scheme(iter(tags)) == scheme  # any iterable


def test_detect_scheme_rejects_mixed_m_and_i():
    with pytest.raises(ValueError, match="M-"):
        detect_scheme(["B-PER", "M-PER", "I-PER", "E-PER"])


def test_detect_scheme_rejects_bad_tag():
    with pytest.raises(ValueError):
        detect_scheme(["O", "Q-PER"])


# --- spans_to_tags ------------------------------------------------------------------------------------------


def test_spans_to_tags_examples():
    spans = [Span(0, 1, "PER"), Span(2, 5, "LOC"), Span(5, 7, "ORG")]
    assert spans_to_tags(spans, 8, "BIO") == ["B-PER", "O", "B-LOC", "I-LOC", "I-LOC", "B-ORG", "I-ORG", "O"]
    assert spans_to_tags(spans, 8, "BIOES") == ["S-PER", "O", "B-LOC", "I-LOC", "E-LOC", "B-ORG", "E-ORG", "O"]
    assert spans_to_tags(spans, 8, "BMES") == ["S-PER", "O", "B-LOC", "M-LOC", "E-LOC", "B-ORG", "E-ORG", "O"]
    assert spans_to_tags(spans, 8) == spans_to_tags(spans, 8, "BIOES")  # default scheme
    # unsorted input and plain tuples are accepted
    assert spans_to_tags([(5, 7, "ORG"), (0, 1, "PER"), (2, 5, "LOC")], 8, "BIO") == spans_to_tags(spans, 8, "BIO")
    assert spans_to_tags([], 3, "BIO") == ["O", "O", "O"]
    assert spans_to_tags([], 0, "BIOES") == []


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(
    "spans",
    [
        [(0, 2, "A"), (1, 3, "B")],  # crossing
        [(0, 3, "A"), (1, 2, "B")],  # nested
        [(1, 2, "A"), (1, 2, "A")],  # duplicate
        [(0, 4, "A"), (3, 4, "B")],
    ],
)
def test_spans_to_tags_rejects_overlap(scheme, spans):
    with pytest.raises(ValueError, match="overlap"):
        spans_to_tags(spans, 5, scheme)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("span", [(3, 6, "A"), (5, 6, "A"), (-1, 1, "A"), (2, 2, "A"), (3, 2, "A")])
def test_spans_to_tags_rejects_out_of_range_or_empty(scheme, span):
    with pytest.raises(ValueError, match="outside"):
        spans_to_tags([span], 5, scheme)


def test_spans_to_tags_unknown_scheme():
    with pytest.raises(ValueError, match="unknown scheme"):
        spans_to_tags([], 3, "IOB2")


# --- round trips --------------------------------------------------------------------------------------------


@st.composite
def spans_and_length(draw):
    """Random non-overlapping spans (adjacent ones included) and a sequence length that holds them."""
    pieces = draw(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 5), st.sampled_from(LABELS)), max_size=8))
    spans, pos = [], 0
    for gap, length, label in pieces:
        pos += gap
        spans.append(Span(pos, pos + length, label))
        pos += length
    return spans, pos + draw(st.integers(0, 3))


@pytest.mark.parametrize("scheme", SCHEMES)
@SETTINGS
@given(data=spans_and_length())
def test_round_trip(scheme, data):
    spans, length = data
    tags = spans_to_tags(spans, length, scheme)
    assert len(tags) == length
    assert tags_to_spans(tags, scheme) == spans
    assert tags_to_spans(tags) == spans  # with the scheme detected
    assert count_ill_formed(tags, scheme) == 0
    assert count_ill_formed(tags) == 0
    prefixes = {split_tag(t)[0] for t in tags}
    allowed = {"BIO": {"O", "B", "I"}, "BIOES": {"O", "B", "I", "E", "S"}, "BMES": {"O", "B", "M", "E", "S"}}
    assert prefixes <= allowed[scheme]
    if scheme == "BMES" and any(s.end - s.start >= 3 for s in spans):
        assert detect_scheme(tags) == "BMES"


@SETTINGS
@given(data=spans_and_length())
def test_spans_to_tags_bioes_respects_allowed_transitions(data):
    spans, length = data
    tag_set = bioes_tags(LABELS)
    ids = [tag_set.index(t) for t in spans_to_tags(spans, length, "BIOES")]
    start, trans, end = allowed_transitions(tag_set)
    if ids:
        assert start[ids[0]] and end[ids[-1]]
    assert all(trans[a, b] for a, b in zip(ids, ids[1:]))


@SETTINGS
@given(data=spans_and_length(), scheme_in=st.sampled_from(SCHEMES), scheme_out=st.sampled_from(SCHEMES))
def test_conversion_between_schemes(data, scheme_in, scheme_out):
    spans, length = data
    converted = spans_to_tags(tags_to_spans(spans_to_tags(spans, length, scheme_in)), length, scheme_out)
    assert converted == spans_to_tags(spans, length, scheme_out)


# --- lenient reading of ill-formed sequences ------------------------------------------------------------------


@pytest.mark.parametrize(
    "tags, scheme, spans, ill_formed",
    [
        # BIO: I- without B- starts an entity
        (["O", "I-PER", "I-PER", "O"], "BIO", [(1, 3, "PER")], 1),
        (["I-PER"], "BIO", [(0, 1, "PER")], 1),
        (["I-PER", "I-PER", "I-LOC"], "BIO", [(0, 2, "PER"), (2, 3, "LOC")], 2),
        # BIO: I- of another type closes the open entity and starts a new one
        (["B-PER", "I-LOC", "I-LOC"], "BIO", [(0, 1, "PER"), (1, 3, "LOC")], 1),
        (["B-PER", "I-PER", "O", "I-PER"], "BIO", [(0, 2, "PER"), (3, 4, "PER")], 1),
        # an entity still open at the end is closed there
        (["O", "B-LOC", "I-LOC"], "BIO", [(1, 3, "LOC")], 0),
        # BIOES: E- without B- is a one-character entity
        (["O", "E-PER", "O"], "BIOES", [(1, 2, "PER")], 1),
        (["E-PER", "E-PER"], "BIOES", [(0, 1, "PER"), (1, 2, "PER")], 2),
        (["I-PER", "E-PER"], "BIOES", [(0, 2, "PER")], 1),
        (["B-PER", "O"], "BIOES", [(0, 1, "PER")], 1),  # B- never closed: should have been S-
        (["B-PER", "I-PER"], "BIOES", [(0, 2, "PER")], 1),  # no E-
        (["B-PER", "E-LOC"], "BIOES", [(0, 1, "PER"), (1, 2, "LOC")], 2),
        (["B-PER", "S-PER", "E-PER"], "BIOES", [(0, 1, "PER"), (1, 2, "PER"), (2, 3, "PER")], 2),
        # BMES: M- after a different type starts a new entity
        (["B-PER", "M-LOC", "E-LOC"], "BMES", [(0, 1, "PER"), (1, 3, "LOC")], 2),
        (["B-PER", "M-PER", "M-LOC", "E-LOC"], "BMES", [(0, 2, "PER"), (2, 4, "LOC")], 2),
        # BMES: M-/E- without B- (the Weibo .all.bmes quirk)
        (["O", "M-PER.NOM", "E-PER.NOM", "O"], "BMES", [(1, 3, "PER.NOM")], 1),
        (["O", "E-PER.NOM"], "BMES", [(1, 2, "PER.NOM")], 1),
        (["B-PER", "M-PER", "O"], "BMES", [(0, 2, "PER")], 1),
    ],
)
def test_lenient_reading(tags, scheme, spans, ill_formed):
    assert tags_to_spans(tags, scheme) == [Span(*s) for s in spans]
    assert count_ill_formed(tags, scheme) == ill_formed


def test_well_formed_sequences_have_no_ill_formed_tags():
    assert count_ill_formed(["B-PER", "I-PER", "O", "B-LOC"], "BIO") == 0
    assert count_ill_formed(["B-PER", "I-PER", "E-PER", "S-LOC", "O"], "BIOES") == 0
    assert count_ill_formed(["B-PER", "M-PER", "E-PER", "S-LOC", "O"], "BMES") == 0
    assert count_ill_formed([], "BIO") == 0


def test_tags_to_spans_returns_span_tuples():
    (span,) = tags_to_spans(["O", "S-LOC"])
    assert isinstance(span, Span)
    assert (span.start, span.end, span.label) == (1, 2, "LOC")


def test_tags_to_spans_rejects_bad_tag():
    with pytest.raises(ValueError):
        tags_to_spans(["O", "B-PER", "Z-PER"], "BIO")


# --- BIOES tag set and transitions ----------------------------------------------------------------------------


def test_bioes_tags_order():
    assert bioes_tags(["PER", "LOC"]) == ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]
    assert bioes_tags([]) == ["O"]
    assert bioes_tags(["GPE.NAM"]) == ["O", "B-GPE.NAM", "I-GPE.NAM", "E-GPE.NAM", "S-GPE.NAM"]


TAGS = bioes_tags(["PER", "LOC"])


def _t(a: str, b: str) -> bool:
    _, trans, _ = allowed_transitions(TAGS)
    return bool(trans[TAGS.index(a), TAGS.index(b)])


def test_allowed_transitions_shapes():
    start, trans, end = allowed_transitions(TAGS)
    assert start.shape == end.shape == (len(TAGS),)
    assert trans.shape == (len(TAGS), len(TAGS))
    assert start.dtype == trans.dtype == end.dtype == np.bool_


@pytest.mark.parametrize(
    "a, b, ok",
    [
        ("O", "I-PER", False),
        ("O", "E-PER", False),
        ("O", "O", True),
        ("O", "B-LOC", True),
        ("O", "S-LOC", True),
        ("B-PER", "I-LOC", False),
        ("B-PER", "E-LOC", False),
        ("B-PER", "I-PER", True),
        ("B-PER", "E-PER", True),
        ("B-PER", "O", False),
        ("B-PER", "B-PER", False),
        ("B-PER", "S-PER", False),
        ("I-PER", "I-PER", True),
        ("I-PER", "E-PER", True),
        ("I-PER", "E-LOC", False),
        ("I-PER", "O", False),
        ("E-PER", "B-LOC", True),
        ("E-PER", "B-PER", True),
        ("E-PER", "O", True),
        ("E-PER", "S-PER", True),
        ("E-PER", "I-PER", False),
        ("E-PER", "E-PER", False),
        ("S-PER", "B-PER", True),
        ("S-PER", "S-LOC", True),
        ("S-PER", "I-PER", False),
        ("S-LOC", "E-LOC", False),
    ],
)
def test_allowed_transitions_hand_checked(a, b, ok):
    assert _t(a, b) is ok


def test_allowed_start_and_end():
    start, _, end = allowed_transitions(TAGS)
    for tag, may_start, may_end in [
        ("O", True, True),
        ("B-PER", True, False),
        ("I-PER", False, False),
        ("E-PER", False, True),
        ("S-PER", True, True),
        ("B-LOC", True, False),
        ("I-LOC", False, False),
        ("E-LOC", False, True),
        ("S-LOC", True, True),
    ]:
        assert bool(start[TAGS.index(tag)]) is may_start, tag
        assert bool(end[TAGS.index(tag)]) is may_end, tag


def test_allowed_transitions_agree_with_well_formedness():
    """A BIOES sequence obeys the transition constraints exactly when it has no ill-formed tag."""
    start, trans, end = allowed_transitions(TAGS)
    for n in (1, 2, 3):
        for seq in itertools.product(range(len(TAGS)), repeat=n):
            legal = start[seq[0]] and end[seq[-1]] and all(trans[a, b] for a, b in zip(seq, seq[1:]))
            tags = [TAGS[i] for i in seq]
            assert bool(legal) == (count_ill_formed(tags, "BIOES") == 0), tags


@SETTINGS
@given(st.lists(st.integers(0, len(TAGS) - 1), max_size=30), st.data())
def test_path_reader_reads_any_path_as_tags_to_spans_does(ids, data):
    """Legal paths (the fast reading) and any others (the lenient one) give tags_to_spans's spans."""
    reader = PathReader(TAGS)
    legal = spans_to_tags(data.draw(st.lists(st.sampled_from(["PER", "LOC"]), max_size=4).map(
        lambda labels: [Span(2 * k, 2 * k + 1 + k % 2, label) for k, label in enumerate(labels)])),
        2 * 4 + 2, "BIOES")  # well-formed, with S- and B-E entities
    path = [TAGS.index(t) for t in legal]
    paths = [ids, path, [], ids[:1], path[::-1], path, path[:-1]]  # legal and not, in one batch
    assert reader.spans(paths) == [tags_to_spans([TAGS[i] for i in path], "BIOES") for path in paths]
    assert reader.spans([]) == []


MANY_TAGS = bioes_tags([f"T{k}" for k in range(30)])  # ids past 40 ('('), 42 ('*'), 63 ('?'), 92 ('\\') ...


@SETTINGS
@given(st.lists(st.integers(0, len(MANY_TAGS) - 1), max_size=30),
       st.lists(st.tuples(st.integers(0, 29), st.integers(1, 3), st.integers(0, 1)), max_size=6))
def test_path_reader_reads_paths_of_a_large_tag_set_as_tags_to_spans_does(ids, entities):
    """Tag ids whose characters mean something in a regular expression are read as plain tags; legal paths,
    adjacent entities included, take the regular-expression reading (not the lenient one, which would give the
    same spans and hide a broken fast path)."""
    reader = PathReader(MANY_TAGS)
    spans, position = [], 0
    for kind, length, gap in entities:
        spans.append(Span(position + gap, position + gap + length, f"T{kind}"))
        position += gap + length
    path = [MANY_TAGS.index(t) for t in spans_to_tags(spans, position + 1, "BIOES")]
    for checked in (ids, path):
        assert reader.spans([checked]) == [tags_to_spans([MANY_TAGS[i] for i in checked], "BIOES")]
    assert reader.spans([path])[0] == spans
    assert reader._legal.fullmatch("".join(map(chr, path)))
    assert PathReader(["O"]).spans([[0, 0], []]) == [[], []]


def test_path_reader_reads_other_tag_sets_leniently():
    """A tag set that is not lexner's BIOES set (underscores, a type without S-) reads every path leniently."""
    for tags in (["O", "B_PER", "I_PER", "E_PER", "S_PER"], ["O", "B-PER", "I-PER", "E-PER"]):
        reader = PathReader(tags)
        for path in ([0, 1, 2, 3, 0], [1, 3, 3, 0], []):
            assert reader.spans([path]) == [tags_to_spans([tags[i] for i in path], "BIOES")]


def test_a_type_name_may_not_start_or_end_with_a_dash_which_the_scorer_would_strip():
    from lexner.schemes import is_type_name, split_tag

    assert is_type_name("PER.NAM") and is_type_name("A-B") and not is_type_name("X-") and not is_type_name("-X")
    for tag in ("B-X-", "I--X"):
        with pytest.raises(ValueError, match="not starting or ending with '-'"):
            split_tag(tag)


def test_a_type_name_is_at_most_200_printable_characters():
    from lexner.schemes import is_type_name

    assert is_type_name("组织") and is_type_name("X" * 200) and not is_type_name("X" * 201)
    for bad in ("A\u200bB", "\ud800", "A\x00", "A\u00a0B", "A\tB", ""):
        assert not is_type_name(bad), repr(bad)


def test_a_label_set_of_more_than_1000_types_is_refused_at_once():
    from lexner.features import LabelSet, Featurizer

    assert len(LabelSet([f"T{i}" for i in range(1000)]).tags) == 4001
    with pytest.raises(ValueError, match="at most 1000 entity types per label set, got x .1001."):
        Featurizer.__new__(Featurizer)._set_types({"x": [f"T{i}" for i in range(1001)]})


def test_tags_joined_by_an_underscore_are_not_reported_as_breaking_the_scheme():
    from lexner.schemes import ill_formed

    assert ill_formed(["B_PER", "I_PER", "O", "B_LOC"]) == []
    assert ill_formed(["B_PER", "E_PER", "S_LOC"]) == []
    assert ill_formed(["I_PER", "O"]) == [0]  # still a break
