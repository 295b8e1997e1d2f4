import pytest
import torch

from lexner.api import build_tagger
from lexner.lexicon import Lexicon
from lexner.models.softlexicon import SoftLexicon, SoftLexiconConfig, pooled_word_sets
from tagger_contract import TOY_WORDS, TaggerContract


class TestSoftLexicon(TaggerContract):
    model_name = "softlexicon"
    config = {"char_dim": 16, "bigram_dim": 8, "word_dim": 12, "hidden": 24, "dropout": 0.2}


class TestSoftLexiconWithoutBigrams(TaggerContract):
    model_name = "softlexicon"
    config = {"char_dim": 16, "bigram_dim": 0, "word_dim": 12, "hidden": 24, "dropout": 0.0}


class TestSoftLexiconFrequencyWeights(TaggerContract):
    model_name = "softlexicon"
    config = {"char_dim": 16, "bigram_dim": 8, "word_dim": 12, "hidden": 24, "dropout": 0.2,
              "word_weights": "frequency"}


def test_pooled_word_sets_by_hand():
    # one sentence of 5 characters; words [0, 2] (a), [1, 2] (b), [2, 4] (c), and one padding word
    words = torch.tensor([[[1.0], [10.0], [100.0], [7.0]]])
    heads, tails = torch.tensor([[0, 1, 2, 0]]), torch.tensor([[2, 2, 4, 0]])
    mask = torch.tensor([[True, True, True, False]])
    pooled = pooled_word_sets(words, heads, tails, mask, 5)[0]  # shape: (T, 3): B, M, E means
    expected = torch.tensor([
        [1.0, 0.0, 0.0],  # 0: a begins
        [10.0, 1.0, 0.0],  # 1: b begins, inside a
        [100.0, 0.0, 5.5],  # 2: c begins, a and b end
        [0.0, 100.0, 0.0],  # 3: inside c
        [0.0, 0.0, 100.0],  # 4: c ends
    ])
    assert torch.equal(pooled, expected)


def test_words_change_the_emissions(corpus):
    torch.manual_seed(0)
    tagger = build_tagger("softlexicon", corpus, {"hidden": 8}, lexicon=Lexicon(TOY_WORDS)).eval()
    batch = tagger.featurizer.encode(["张三在北京工作"])
    with torch.no_grad():
        before = tagger.emissions(batch)
        tagger.embed.words.weight.add_(1.0)
        assert not torch.allclose(before, tagger.emissions(batch))


def test_needs_a_lexicon_and_even_hidden(corpus):
    from lexner.features import Featurizer

    with pytest.raises(ValueError, match="lexicon"):
        SoftLexicon(SoftLexiconConfig(), Featurizer.build(corpus))
    with pytest.raises(ValueError, match="even"):
        SoftLexicon(SoftLexiconConfig(hidden=25), Featurizer.build(corpus, lexicon=Lexicon(TOY_WORDS)))


def test_frequency_weighted_word_sets_by_hand():
    # the sentence above; frequencies a: 1, b: 3, c: 4 (padding: anything)
    words = torch.tensor([[[1.0], [10.0], [100.0], [7.0]]])
    heads, tails = torch.tensor([[0, 1, 2, 0]]), torch.tensor([[2, 2, 4, 0]])
    mask = torch.tensor([[True, True, True, False]])
    pooled = pooled_word_sets(words, heads, tails, mask, 5, torch.tensor([[1, 3, 4, 9]]))[0]
    # each word: 3 · z(w) / (the sum of z over all of the character's words)
    expected = torch.tensor([
        [3.0 * 1 / 1, 0.0, 0.0],  # 0: a (1)
        [3.0 * 3 / 4 * 10, 3.0 * 1 / 4 * 1, 0.0],  # 1: b begins (3), inside a (1)
        [3.0 * 4 / 8 * 100, 0.0, 3.0 * (1 * 1 + 3 * 10) / 8],  # 2: c begins (4), a (1) and b (3) end
        [0.0, 3.0 * 100, 0.0],
        [0.0, 0.0, 3.0 * 100],
    ])
    assert torch.allclose(pooled, expected)


def test_frequency_weights_count_training_texts_and_survive_saving_and_new_words(corpus, tmp_path):
    from lexner.models import Tagger

    lexicon = Lexicon(TOY_WORDS)
    tagger = build_tagger("softlexicon", corpus, {"hidden": 8, "word_weights": "frequency"}, lexicon=lexicon)
    expected = lexicon.count_uncovered(s.text for s in corpus)
    assert expected.sum() > 0 and tagger.word_counts[0] == 0  # row 0: padding
    assert tagger.word_counts[1:].tolist() == expected.tolist()
    tagger.save(tmp_path / "m")
    loaded = Tagger.load(tmp_path / "m")
    assert torch.equal(loaded.word_counts, tagger.word_counts)
    assert loaded.add_words(["新词语", "北京"]) == 1
    assert loaded.word_counts.shape[0] == tagger.word_counts.shape[0] + 1 and loaded.word_counts[-1] == 0
    loaded.save(tmp_path / "again")
    assert torch.equal(Tagger.load(tmp_path / "again").word_counts, loaded.word_counts)
    with pytest.raises(ValueError, match="word_weights"):
        build_tagger("softlexicon", corpus, {"word_weights": "idf"}, lexicon=lexicon)


def test_frequency_weights_change_the_emissions_and_hostile_counts_are_refused(corpus, tmp_path):
    from safetensors.torch import load_file, save_file

    from lexner.fileio import ModelFormatError
    from lexner.models import Tagger

    lexicon = Lexicon(TOY_WORDS)
    torch.manual_seed(0)
    weighted = build_tagger("softlexicon", corpus, {"hidden": 8, "word_weights": "frequency"}, lexicon=lexicon).eval()
    plain = build_tagger("softlexicon", corpus, {"hidden": 8}, lexicon=lexicon).eval()
    plain.load_state_dict({k: v for k, v in weighted.state_dict().items() if k != "word_counts"})
    batch = weighted.featurizer.encode(["张三在北京工作，王小明在广州市"])
    with torch.no_grad():
        assert not torch.allclose(weighted.emissions(batch), plain.emissions(batch))
        weighted.word_counts.zero_()  # every z(w) = 1: still not the per-set mean (one Z over all three sets)
        assert not torch.allclose(weighted.emissions(batch), plain.emissions(batch))
        before = weighted.emissions(batch)  # words never seen in training (count 0) still count: z(w) = count + 1
        weighted.embed.words.weight.mul_(2)
        assert not torch.allclose(weighted.emissions(batch), before)
    weighted.save(tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    state = load_file(str(weights))
    for bad, message in ((state["word_counts"] - 5, "negative counts"),
                         (state["word_counts"].float(), "word_counts has dtype F32; it must be I32"),
                         (state["word_counts"].long(), "word_counts has dtype I64; it must be I32")):
        save_file({**state, "word_counts": bad}, str(weights))
        with pytest.raises(ModelFormatError, match=message):
            Tagger.load(tmp_path / "m")


@pytest.mark.parametrize("model, with_words", [("softlexicon", False), ("flat", True), ("lattice_lstm", True)])
def test_tag_batch_counts_words_in_a_batch_only_for_taggers_that_pay_for_them(corpus, model, with_words):
    # 30 pieces of 10 characters: "北京" matches in each, so a piece is 10 tokens, or 10 + its words
    torch.manual_seed(0)
    tagger = build_tagger(model, corpus, {}, lexicon=Lexicon(TOY_WORDS)).eval()
    assert tagger.tokens_include_words is with_words
    tagger.batch_tokens = 100
    texts = ["北京和上海和广州很好"] * 30
    words = len(tagger.featurizer.encode_one(texts[0])["word_ids"])
    assert words >= 3
    shapes = []
    decode = tagger.decode
    tagger.decode = lambda batch: (shapes.append(tuple(batch.chars.shape)), decode(batch))[1]
    alone = tagger.tag(texts[0])
    shapes.clear()
    assert tagger.tag_batch(texts, batch_size=64) == [alone] * 30
    per_batch = 100 // (10 + words) if with_words else 10
    assert [b for b, _ in shapes] == [per_batch] * (30 // per_batch) + ([30 % per_batch] if 30 % per_batch else [])


@pytest.mark.parametrize("name", ["softlexicon", "lattice_lstm"])
def test_a_lexicon_of_one_character_words_is_refused_where_the_model_has_no_place_for_them(name):
    """softlexicon would put a one-character word in both its B and E sets (counted twice), Lattice-LSTM would
    make a word cell spanning nothing; FLAT reads such words as tokens like any other."""
    from conftest import toy_corpus

    with pytest.raises(ValueError, match="lexicon of words of length ≥ 2"):
        build_tagger(name, toy_corpus(), {"hidden": 8}, lexicon=Lexicon(["北京", "京"], min_length=1))
    build_tagger("flat", toy_corpus(), {"model_dim": 16, "heads": 2, "ffn_dim": 16},
                 lexicon=Lexicon(["北京", "京"], min_length=1))
