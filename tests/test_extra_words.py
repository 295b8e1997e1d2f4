"""Domain words added at load time take part in lexicon matching and can change predictions."""

import random

import pytest
import torch

import lexner
from lexner.api import build_tagger
from lexner.data import Sentence
from lexner.lexicon import Lexicon
from lexner.schemes import Span
from conftest import toy_corpus
from tagger_contract import TOY_WORDS

POOL = list("甲乙丙丁戊己庚辛壬癸子丑寅卯辰巳")


def lexicon_only_corpus(rng: random.Random, words: list[str], lexicon_words: list[str], size: int):
    """Sentences of random characters in which the entities are exactly some lexicon words: only the lexicon
    tells where an entity is."""

    def filler(n: int) -> str:
        while True:
            s = "".join(rng.choice(POOL) for _ in range(n))
            if not any(w in s for w in words):
                return s

    def sentence(chosen: list[str]) -> Sentence | None:
        text, spans = "", []
        for w in chosen:
            text += filler(rng.randint(1, 3))
            spans.append(Span(len(text), len(text) + len(w), "LOC"))
            text += w
        text += filler(rng.randint(1, 3))
        return Sentence(text, spans) if sum(text.count(w) for w in words) == len(chosen) else None

    out = []
    while len(out) < size:
        s = sentence(rng.sample(lexicon_words, rng.randint(1, min(2, len(lexicon_words)))))
        if s:
            out.append(s)
    return out


@pytest.mark.parametrize("name", ["lattice_lstm"])  # softlexicon: see test_added_word_enters_softlexicon_sets
def test_an_added_word_changes_predictions(name, tmp_path):
    rng = random.Random(0)
    torch.manual_seed(0)
    words = set()
    while len(words) < 24:
        words.add("".join(rng.sample(POOL, 2)))
    words = sorted(words)
    known, held_out = words[:20], words[20:]
    train = lexicon_only_corpus(rng, words, known, 120)
    tagger = build_tagger(name, train, {"hidden": 32}, lexicon=Lexicon(known), seed=0)
    optimizer = torch.optim.Adam(tagger.parameters(), lr=0.02)
    batch = tagger.featurizer.encode([s.text for s in train], [s.spans for s in train])
    tagger.train()
    for _ in range(60):
        optimizer.zero_grad()
        tagger.loss(batch).backward()
        optimizer.step()
    tagger.save(tmp_path / "m")

    tests = lexicon_only_corpus(rng, words, held_out, 12)

    gold = sum(len(s.spans) for s in tests)

    def correct(model) -> int:  # gold entities found exactly
        return sum(len({(e.start, e.end) for e in model.tag(s.text)} & {(sp.start, sp.end) for sp in s.spans})
                   for s in tests)

    plain = lexner.load(tmp_path / "m")
    extended = lexner.load(tmp_path / "m", extra_words=held_out)
    print(f"{name}: held-out entities found: {correct(plain)}/{gold} before, {correct(extended)}/{gold} after adding")
    # a tiny training: with seeds 0-4 it finds 5, 0, 10, 5, 13 of the 19 once the words are added (seed 1
    # learns nothing of the lexicon in 60 steps), none before
    assert correct(plain) == 0 and correct(extended) >= gold // 4
    assert correct(extended) >= correct(plain) + gold // 4
    # the added words are saved with the model
    extended.save(tmp_path / "m2")
    assert all(w in lexner.load(tmp_path / "m2").featurizer.lexicon for w in held_out)
    assert correct(lexner.load(tmp_path / "m2")) == correct(extended)


@pytest.mark.parametrize("name", ["lattice_lstm", "softlexicon", "flat"])
def test_new_word_vector_is_the_mean_of_its_characters(name):
    tagger = build_tagger(name, toy_corpus(), {}, lexicon=Lexicon(TOY_WORDS))
    size = len(tagger.featurizer.word_vocab)
    assert tagger.add_words(["北京", " 张三在 ", "张三在", "Ｎ京"]) == 2  # 北京 is known; 张三在 once; Ｎ京 -> N京
    assert len(tagger.featurizer.word_vocab) == size + 2
    tables = tagger.embed.tables()
    words, chars = tables["words"][0].weight, tables["chars"][0].weight
    assert words.shape[0] == size + 2
    ids = tagger.featurizer.chars.encode(list("张三在"))
    assert torch.allclose(words[size], chars[ids].mean(0))
    assert "N京" in tagger.featurizer.lexicon
    assert [m.end - m.start for m in tagger.featurizer.lexicon.match("张三在N京")] == [2, 3, 2, 2]


def test_models_without_a_lexicon_refuse_words():
    tagger = build_tagger("bilstm_crf", toy_corpus(), {})
    with pytest.raises(ValueError, match="does not use a lexicon"):
        tagger.add_words(["北京"])


def test_added_word_enters_softlexicon_sets():
    """softlexicon pools word vectors, so an added word only helps where its (character-mean) vector resembles
    what training taught the model; on random toy vectors it does not, unlike Lattice-LSTM.  What must hold is
    that the word is matched and changes the model's input: here the emissions."""
    torch.manual_seed(0)
    tagger = build_tagger("softlexicon", toy_corpus(), {"hidden": 16}, lexicon=Lexicon(TOY_WORDS)).eval()
    text = "孙七在西安工作"
    with torch.no_grad():
        plain = tagger.featurizer.encode([text])
        before = tagger.emissions(plain)
        assert tagger.add_words(["西安", "孙七"]) == 2
        batch = tagger.featurizer.encode([text])
        after = tagger.emissions(batch)
    assert batch.word_mask.sum().item() == plain.word_mask.sum().item() + 2  # 工作 was matched before
    assert not torch.allclose(before, after)


def test_add_words_refuses_a_str_and_non_str_words():
    tagger = build_tagger("softlexicon", toy_corpus(), {}, lexicon=Lexicon(TOY_WORDS))
    with pytest.raises(TypeError, match="not one str"):
        tagger.add_words("新冠肺炎")  # would have added nothing (its characters are shorter than min_length)
    with pytest.raises(TypeError, match="got int"):
        tagger.add_words(["新冠", 1])


def test_load_takes_extra_words_once_for_every_member_of_an_ensemble_and_refuses_one_str(tmp_path):
    torch.manual_seed(0)
    lattice = build_tagger("softlexicon", toy_corpus(), {"hidden": 16}, lexicon=Lexicon(TOY_WORDS))
    lattice.save(tmp_path / "a")
    lattice.save(tmp_path / "b")
    build_tagger("bilstm_crf", toy_corpus(), {"hidden": 16}).save(tmp_path / "c")  # no lexicon: left as it is
    (tmp_path / "words.txt").write_text("西安\n孙七\n", encoding="utf-8")
    with open(tmp_path / "words.txt", encoding="utf-8") as words:  # an iterator: read once, for every member
        ensemble = lexner.load([tmp_path / "a", tmp_path / "b", tmp_path / "c"], extra_words=words)
    assert [["西安" in m.featurizer.lexicon for m in ensemble.members[:2]]] == [[True, True]]
    assert ensemble.add_words(["上海市", "西安"]) == 1
    assert all("上海市" in m.featurizer.lexicon for m in ensemble.members[:2])
    with pytest.raises(ValueError, match="no member of this ensemble uses a lexicon"):
        lexner.load([tmp_path / "c", tmp_path / "c"]).add_words(["西安"])
    for one in ("新冠肺炎", tmp_path / "words.txt"):
        with pytest.raises(TypeError, match="not one\\s+string or a file name"):
            lexner.load(tmp_path / "a", extra_words=one)


def test_added_words_the_model_cannot_see_warn_that_they_can_never_match(caplog):
    """A word holding whitespace between Chinese characters or a control character is kept (as given) but can
    never match, since the model does not see those characters: a warning says so, as the dictionary's does."""
    tagger = build_tagger("softlexicon", toy_corpus(), {}, lexicon=Lexicon(TOY_WORDS))
    with caplog.at_level("WARNING"):
        assert tagger.add_words(["云栖 小镇", "阿\u200b里", "西湖", "Elon Musk"]) == 4
    warned = [r.getMessage().split(" can never match")[0] for r in caplog.records if r.levelname == "WARNING"]
    assert warned == ["lexicon word '云栖 小镇'", "lexicon word '阿\\u200b里'"]
