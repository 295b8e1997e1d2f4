import pytest

from lexner.data import Sentence
from lexner.evaluate import evaluate, score_spans
from lexner.schemes import Span


def test_strict_matching_counts_only_exact_spans_and_types():
    gold = [[Span(0, 2, "PER"), Span(3, 5, "LOC")], [Span(1, 3, "ORG")]]
    pred = [[Span(0, 2, "PER"), Span(3, 4, "LOC")], [Span(1, 3, "LOC")]]
    scores = score_spans(gold, pred, [6, 4])
    assert scores["micro"]["precision"] == pytest.approx(1 / 3)
    assert scores["micro"]["recall"] == pytest.approx(1 / 3)
    assert scores["per_type"]["PER"]["f1"] == 1.0
    assert scores["per_type"]["ORG"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "predicted": 0}
    assert scores["per_type"]["LOC"]["predicted"] == 2 and scores["per_type"]["LOC"]["support"] == 1
    assert scores["macro"]["f1"] == pytest.approx((1.0 + 0.0 + 0.0) / 3)


def test_no_entities_anywhere_scores_zero():
    assert score_spans([[]], [[]], [3])["micro"]["f1"] == 0.0


class FixedTagger:
    """Stands in for a model: returns given spans."""

    def __init__(self, answers):
        self.answers = answers

    def tag_batch(self, texts, batch_size=64):
        from lexner.entity import Entity

        return [[Entity(s.start, s.end, s.label, t[s.start:s.end]) for s in self.answers[t]] for t in texts]


def test_weibo_style_labels_get_ne_and_nm_subsets():
    sents = [Sentence("张三和老师", [Span(0, 2, "PER.NAM"), Span(3, 5, "PER.NOM")])]
    tagger = FixedTagger({"张三和老师": [Span(0, 2, "PER.NAM")]})
    scores = evaluate(tagger, sents)
    assert scores["NE"]["f1"] == 1.0
    assert scores["NM"]["recall"] == 0.0
    assert scores["micro"]["recall"] == 0.5


def test_plain_labels_have_no_subsets():
    sents = [Sentence("张三", [Span(0, 2, "PER")])]
    scores = evaluate(FixedTagger({"张三": [Span(0, 2, "PER")]}), sents)
    assert "NE" not in scores and scores["micro"]["f1"] == 1.0
    mixed = [Sentence("张三在北京", [Span(0, 2, "PER.NAM"), Span(3, 5, "LOC")])]  # not all Weibo-style: none
    scores = evaluate(FixedTagger({"张三在北京": [Span(0, 2, "PER.NAM")]}), mixed)
    assert "NE" not in scores and "NM" not in scores and scores["micro"]["recall"] == 0.5


def test_types_renamed_among_the_models_own_types_are_not_read_back(corpus, caplog):
    """A card's renames apply to gold types the model does not know; a swap of two of its own types (PER ↔ LOC)
    leaves the gold data as it is (reading it back would swap the gold types and score the model's errors)."""
    from lexner.api import build_tagger

    class Perfect(FixedTagger):  # the gold answers, from a model of types LOC and PER whose card swaps them
        featurizer = build_tagger("bilstm_crf", corpus, {"char_dim": 4, "bigram_dim": 4, "hidden": 8}).featurizer
        metadata = {"card": {"renamed": {"PER": "LOC", "LOC": "PER"}}}

    assert Perfect.featurizer.entity_types == ["LOC", "PER"]
    with caplog.at_level("WARNING"):
        scores = evaluate(Perfect({s.text: s.spans for s in corpus[:10]}), corpus[:10])
    assert scores["micro"]["f1"] == 1.0  # data in the names it has now: read as given, with a warning
    assert "renamed among its own names (LOC → PER, PER → LOC)" in caplog.text


def test_data_in_the_names_before_a_chain_of_renames_is_read_under_all_of_them(corpus):
    """LOC → PER and PER → X (export --rename LOC=PER --rename PER=X): gold LOC and PER are read as PER and X at
    once (only LOC → PER was applied: the model's PER, the old LOC, was scored against the data's PER)."""
    from lexner.api import build_tagger

    featurizer = build_tagger("bilstm_crf", corpus, {"char_dim": 4, "bigram_dim": 4, "hidden": 8}).featurizer
    renames = {"LOC": "PER", "PER": "X"}
    featurizer.rename_types(renames)

    class Renamed(FixedTagger):
        pass

    Renamed.featurizer, Renamed.metadata = featurizer, {"card": {"renamed": renames}}
    answers = {s.text: [Span(sp.start, sp.end, renames[sp.label]) for sp in s.spans] for s in corpus[:10]}
    assert sorted(featurizer.entity_types) == ["PER", "X"]
    assert evaluate(Renamed(answers), corpus[:10])["micro"]["f1"] == 1.0


def test_evaluating_on_types_the_model_does_not_know_warns(corpus, caplog):
    from lexner.api import build_tagger
    from lexner.data import Sentence
    from lexner.schemes import Span

    tagger = build_tagger("bilstm_crf", corpus, {"char_dim": 4, "bigram_dim": 4, "hidden": 8})
    with caplog.at_level("WARNING"):
        evaluate(tagger, [Sentence("张三在北京", [Span(0, 2, "NR"), Span(3, 5, "NS")])])
    assert "entity types the model does not know" in caplog.text and "'NR': 1" in caplog.text
    assert "its head" not in caplog.text


def test_the_warning_names_the_head_that_knows_the_types(corpus, caplog):
    from lexner.api import build_tagger
    from lexner.data import Sentence
    from lexner.schemes import Span

    tagger = build_tagger("bilstm_crf", corpus, {"char_dim": 4, "bigram_dim": 4, "hidden": 8},
                          label_sets={"coarse": ["LOC", "PER"], "fine": ["city", "name"]})
    with caplog.at_level("WARNING"):
        evaluate(tagger, [Sentence("张三在北京", [Span(0, 2, "name"), Span(3, 5, "city")])])
    assert "its head 'fine' has them: score with labels='fine'" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        evaluate(tagger, [Sentence("张三在北京", [Span(0, 2, "name"), Span(3, 5, "city")])], labels="fine")
    assert "does not know" not in caplog.text


def test_seen_and_unseen_entities_are_scored_apart():
    train = [Sentence("张三在北京", [Span(0, 2, "PER"), Span(3, 5, "LOC")])]
    sents = [Sentence("张三和李四去北京", [Span(0, 2, "PER"), Span(3, 5, "PER"), Span(6, 8, "LOC")])]
    # 张三 and 北京 were seen in training with these types; 李四 was not; the model misses 北京 and invents
    # 去北 (unseen, wrong) and tags 张三 right
    tagger = FixedTagger({"张三和李四去北京": [Span(0, 2, "PER"), Span(3, 5, "PER"), Span(5, 7, "LOC")]})
    scores = evaluate(tagger, sents, seen=train)
    assert scores["seen"]["recall"] == 0.5 and scores["seen"]["precision"] == 1.0
    assert scores["seen"]["support"] == 2 and scores["seen"]["share"] == pytest.approx(2 / 3)
    assert scores["unseen"]["recall"] == 1.0 and scores["unseen"]["precision"] == 0.5
    assert scores["unseen"]["share"] == pytest.approx(1 / 3)
    assert scores["micro"]["recall"] == pytest.approx(2 / 3)  # the overall scores do not change
    assert "seen" not in evaluate(tagger, sents)


def test_a_mention_seen_with_another_type_counts_as_unseen():
    train = [Sentence("北京", [Span(0, 2, "ORG")])]
    sents = [Sentence("北京", [Span(0, 2, "LOC")])]
    scores = evaluate(FixedTagger({"北京": [Span(0, 2, "LOC")]}), sents, seen=train)
    assert scores["unseen"]["support"] == 1 and scores["seen"]["support"] == 0 and scores["seen"]["share"] == 0.0


def test_score_spans_refuses_lists_of_different_lengths():
    spans = [[Span(0, 2, "PER")], [Span(0, 2, "LOC")]]
    with pytest.raises(ValueError, match="2 gold, 2 predicted and 1 lengths"):
        score_spans(spans, spans, [2])
    assert score_spans(spans, spans, [2, 2])["micro"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0,
                                                           "support": 2, "predicted": 2}


def test_score_spans_refuses_a_type_name_seqeval_would_merge_with_another():
    with pytest.raises(ValueError, match="entity type 'X-'"):
        score_spans([[Span(0, 1, "X")]], [[Span(0, 1, "X-")]], [1])
