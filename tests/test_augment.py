"""Noise augmentation: every method keeps spans exact (property tests over random labelled sentences)."""

import random

import pytest
from hypothesis import given, settings, strategies as st

import numpy as np

from lexner.augment import NEIGHBOURS, Augmenter, METHODS, from_segments, segments
from lexner.data import Sentence
from lexner.lexicon import Lexicon
from lexner.schemes import Span
from lexner.train import TrainConfig, TrainingError

WORDS = ["北京", "上海", "张三", "在北", "三北京", "ab", "去上海"]
LEXICON = Lexicon(WORDS, vectors=np.random.RandomState(0).randn(len(WORDS), 4))
PIECES = st.lists(st.tuples(st.text(alphabet="张三北京在ab C1２ x", min_size=1, max_size=6),
                            st.sampled_from([None, None, "PER", "LOC"])), max_size=8)


def sentence_of(pieces) -> Sentence:
    return from_segments(pieces)


def check(sentence: Sentence) -> None:
    previous = 0
    for span in sentence.spans:
        assert previous <= span.start < span.end <= len(sentence.text)
        previous = span.end


@settings(max_examples=200, deadline=None)
@given(PIECES, st.integers(0, 10_000))
def test_every_method_keeps_spans_exact_and_labels_in_order(pieces, seed):
    original = sentence_of(pieces)
    pool = [Sentence("王小明去上海", [Span(0, 3, "PER"), Span(4, 6, "LOC")]), Sentence("Alice", [Span(0, 5, "PER")])]
    for method in METHODS:
        augmenter = Augmenter([method], [original, *pool], LEXICON)
        variant = augmenter(original, random.Random(seed))
        check(variant)
        assert [s.label for s in variant.spans] == [s.label for s in original.spans]
        if method in ("neighbour", "tfidf", "noise"):  # entities untouched, only the text between them changes
            assert [t for t, label in segments(variant) if label] == [t for t, label in segments(original) if label]
        if method == "case":
            assert variant.text.lower() == original.text.lower()
            assert [(s.start, s.end) for s in variant.spans] == [(s.start, s.end) for s in original.spans]
        if method == "space":
            assert len(variant.text) in (len(original.text), len(original.text) + 1)
            assert variant.text.replace(" ", "").replace("\t", "") == original.text.replace(" ", "").replace("\t", "")
        if method == "mention":  # the text outside entities is kept, entities come from the pool
            mentions = augmenter.mentions
            for span in variant.spans:
                assert variant.text[span.start : span.end] in mentions[span.label]
            outside = [t for t, label in segments(variant) if label is None]
            assert "".join(outside) == "".join(t for t, label in segments(original) if label is None)


def test_case_and_space_reach_full_width_and_accented_letters_and_a_draw_that_changes_nothing_is_no_variant():
    msra = Sentence("ＩＢＭ公司发布ＰＣ２０００", [Span(0, 3, "ORG")])  # MSRA stores Latin letters full-width
    cased = {Augmenter(["case"], [msra])(msra, random.Random(seed)).text for seed in range(30)}
    assert cased == {msra.text, "ｉｂｍ公司发布ｐｃ２０００", "Ｉｂｍ公司发布Ｐｃ２０００"}
    spaced = {Augmenter(["space"], [msra])(msra, random.Random(seed)).text for seed in range(30)}
    assert spaced == {"ＩＢＭ公司发布ＰＣ ２０００", "ＩＢＭ公司发布ＰＣ\t２０００"}
    jose = Sentence("José\u0301 Smith9", [Span(0, 12, "PER")])
    cased = {Augmenter(["case"], [jose])(jose, random.Random(seed)).text for seed in range(30)}
    assert "JOSÉ\u0301 SMITH9" in cased and "josé\u0301 smith9" in cased  # one run across é and the accent
    josephine = Sentence("Jose\u0301phine", [Span(0, 10, "PER")])
    cased = {Augmenter(["case"], [josephine])(josephine, random.Random(seed)).text for seed in range(30)}
    assert cased == {"Jose\u0301phine", "JOSE\u0301PHINE", "jose\u0301phine"}  # title case: as it is, not JoséPhine
    spaced = {Augmenter(["space"], [jose])(jose, random.Random(seed)).text for seed in range(30)}
    assert spaced == {"José\u0301 Smith 9", "José\u0301 Smith\t9"}  # never between a letter and its accent
    nba = Sentence("NBA球星", [Span(0, 3, "ORG")])
    for seed in range(30):  # upper case of NBA is NBA: the sentence itself, not a copy that loses its soft targets
        variant = Augmenter(["case"], [nba])(nba, random.Random(seed))
        assert variant is nba or variant.text != nba.text


def test_mention_replacement_swaps_at_least_one_mention_for_another_of_its_type():
    train = [Sentence("张三在北京", [Span(0, 2, "PER"), Span(3, 5, "LOC")]),
             Sentence("李四去上海", [Span(0, 2, "PER"), Span(3, 5, "LOC")])]
    variant = Augmenter(["mention"], train)(train[0], random.Random(1))
    assert variant.text != train[0].text and variant.text[2] == "在"
    assert {variant.text[s.start : s.end] for s in variant.spans} <= {"张三", "李四", "北京", "上海"}


def test_space_goes_only_where_a_tagger_keeps_whitespace():
    s = Sentence("买了iPhone15", [Span(2, 10, "PRODUCT")])
    variants = {Augmenter(["space"], [s])(s, random.Random(seed)).text for seed in range(30)}
    assert variants <= {"买了i Phone15", "买了iPhone 15", "买了i\tPhone15", "买了iPhone\t15"}
    assert "买了iPhone 15" in variants
    plain = Sentence("张三在北京", [Span(0, 2, "PER")])
    assert Augmenter(["space"], [plain])(plain, random.Random(0)) is plain  # nothing applies: unchanged


def test_unknown_methods_are_refused_by_name():
    with pytest.raises(ValueError, match="synonym"):
        Augmenter(["mention", "synonym"], [])
    with pytest.raises(ValueError, match="augment must name"):
        TrainConfig(augment="mention,typo")
    with pytest.raises(ValueError, match="augment_ratio"):
        TrainConfig(augment="case", augment_ratio=1.5)


def test_training_with_augmentation_replaces_sentences_each_epoch_reproducibly(corpus, tmp_path):
    from lexner.api import build_tagger
    from lexner.train import Trainer, seed_everything

    seed_everything(3)
    tagger = build_tagger("bilstm_crf", corpus, {"char_dim": 8, "bigram_dim": 4, "hidden": 8})
    trainer = Trainer(tagger, TrainConfig(epochs=1, batch_size=4, augment="mention", augment_ratio=0.5), tmp_path,
                      progress=False)
    encoded = [tagger.featurizer.encode_one(s.text, s.spans) for s in corpus]
    from lexner.train import Task

    tasks = [Task(None, corpus, corpus)]
    augmenters = [Augmenter(["mention"], corpus)]
    first = trainer._augmented(encoded, corpus, [0] * len(corpus), tasks, augmenters)
    changed = sum(a["chars"] != b["chars"] for a, b in zip(first, encoded))
    assert 0 < changed <= len(corpus) // 2
    assert first == trainer._augmented(encoded, corpus, [0] * len(corpus), tasks, augmenters)  # seeded by epoch
    trainer.epoch = 1
    assert first != trainer._augmented(encoded, corpus, [0] * len(corpus), tasks, augmenters)
    trainer.epoch = 0
    assert trainer.fit(corpus[:15], corpus[15:])["epochs_run"] == 1
    two = [Sentence("张三来了", [Span(0, 2, "PER")]), Sentence("欧阳娜娜", [Span(0, 4, "PER")])]
    short = Trainer(tagger, TrainConfig(epochs=1, batch_size=4, augment="mention", augment_ratio=1.0, max_length=4),
                    tmp_path / "s", progress=False)
    plain = [tagger.featurizer.encode_one(s.text, s.spans) for s in two]
    variants = short._augmented(plain, two, [0, 0], [Task(None, two, two)], [Augmenter(["mention"], two)])
    assert variants[0] == plain[0]  # 欧阳娜娜来了 is longer than max_length: the sentence stays as it was
    assert len(variants[1]["chars"]) == 2  # 张三 put in
    with pytest.raises(TrainingError, match="neighbour.*lexicon"):  # refused before any data is read
        Trainer(tagger, TrainConfig(epochs=1, augment="neighbour"), tmp_path / "n", progress=False)


def test_words_are_cut_by_forward_maximum_matching_and_join_to_the_text():
    augmenter = Augmenter(["noise"], [], LEXICON)
    assert augmenter.words("张三北京去上海x") == ["张三", "北京", "去上海", "x"]
    assert Augmenter(["noise"], []).words("张三") == ["张", "三"]  # no lexicon: characters


def test_neighbour_replaces_non_entity_words_by_their_nearest_lexicon_words_seen_in_training():
    words = ["喜欢", "热爱", "讨厌", "认为", "北京", "今天"]
    vectors = np.array([[1, 0], [0.9, 0.1], [-1, 0], [0, 1], [0.5, 0.5], [0.1, 1]], dtype=np.float32)
    lexicon = Lexicon(words, vectors=vectors)
    train = [Sentence("我喜欢北京", [Span(3, 5, "LOC")]), Sentence("他热爱认为今天", []),
             Sentence("讨厌", [])]
    augmenter = Augmenter(["neighbour"], train, lexicon)
    assert augmenter.neighbours("喜欢")[:2] == ["热爱", "今天"]  # cosine order, the word itself left out
    assert len(augmenter.neighbours("喜欢")) <= NEIGHBOURS and "北京" not in augmenter.neighbours("喜欢")
    assert augmenter.neighbours("我") == []  # one character: never replaced
    variants = {augmenter(train[0], random.Random(seed)).text for seed in range(20)}
    assert variants <= {"我" + w + "北京" for w in augmenter.neighbours("喜欢")} and len(variants) > 1
    with pytest.raises(ValueError, match="neighbour.*word vectors"):
        Augmenter(["neighbour"], train, Lexicon(words))


def test_tfidf_replaces_low_information_words_with_frequent_ones():
    train = [Sentence("的的张三说了", [Span(2, 4, "PER")])] + [Sentence(f"的了{c}", []) for c in "一二三四五六七八"]
    augmenter = Augmenter(["tfidf"], train)
    assert augmenter.idf["的"] < augmenter.idf["说"]
    draws = [augmenter.uninformative_word(random.Random(seed)) for seed in range(200)]
    assert draws.count("的") + draws.count("了") > draws.count("说") + draws.count("一")
    counts = {"的": 0, "说": 0}
    for seed in range(300):  # the repeated, everywhere-seen 的 is replaced more often than the rarer 说
        variant = augmenter(train[0], random.Random(seed))
        assert variant.text[variant.spans[0].start : variant.spans[0].end] == "张三"
        counts["的"] += variant.text[:2] != "的的"
        counts["说"] += variant.text[variant.spans[0].end] != "说"
    assert counts["的"] > counts["说"]


def test_noise_edits_only_the_text_between_entities():
    train = [Sentence("今天张三在北京开会了", [Span(2, 4, "PER"), Span(5, 7, "LOC")])]
    augmenter = Augmenter(["noise"], train)
    kinds = set()
    for seed in range(50):
        variant = augmenter(train[0], random.Random(seed))
        assert [variant.text[s.start : s.end] for s in variant.spans] == ["张三", "北京"]
        kinds.add(len(variant.text) - len(train[0].text))
    assert kinds == {-1, 0, 1}  # deletions, swaps and insertions all happen


def test_neighbour_never_offers_another_spelling_of_the_same_word():
    words = ["发展", "进步", "经济"]
    lexicon = Lexicon(words, vectors=np.array([[1, 0], [0.9, 0.1], [0, 1]], dtype=np.float32))
    train = [Sentence("經濟發展", []), Sentence("经济发展进步", [])]  # 發展 (Traditional) is 发展's row
    augmenter = Augmenter(["neighbour"], train, lexicon)
    assert "發展" not in augmenter.neighbours("发展") and augmenter.neighbours("发展")[0] == "进步"
