import pytest
import torch

from lexner.api import build_tagger
from lexner.lexicon import Lexicon
from lexner.models.lattice_lstm import LatticeLSTM
from lexner.models.recurrent import reverse_within_length
from conftest import toy_corpus
from tagger_contract import TOY_WORDS, TaggerContract

SMALL = {"char_dim": 12, "bigram_dim": 6, "word_dim": 10, "hidden": 16, "dropout": 0.2, "word_dropout": 0.2}


class TestLatticeLSTM(TaggerContract):
    model_name = "lattice_lstm"
    config = SMALL


class TestLatticeLSTMUnidirectional(TaggerContract):
    model_name = "lattice_lstm"
    config = {**SMALL, "bidirectional": False, "bigram_dim": 0}


def reference_direction(layer, x, words):
    """The recurrence of MODELS.md for one sentence, written plainly.

    x: (n, input_dim); words: list of (head, tail, embedding) with tail > head.  Returns h: (n, H).
    """
    H = layer.hidden
    sig, tanh = torch.sigmoid, torch.tanh
    h, c = torch.zeros(H), torch.zeros(H)
    cells = {}  # (head, tail, k) -> word cell
    out = []
    for j in range(x.shape[0]):
        gates = layer.char_x(x[j]) + layer.char_h(h)
        i, o, g = sig(gates[:H]), sig(gates[H:2 * H]), tanh(gates[2 * H:])
        ending = [cell for (b, e, k), cell in cells.items() if e == j]
        if ending:
            links = [sig(layer.link_x(x[j]) + layer.link_c(cw)) for cw in ending]
            z = torch.exp(i) + sum(torch.exp(l) for l in links)
            c = torch.exp(i) / z * g + sum(torch.exp(l) / z * cw for l, cw in zip(links, ending))
        else:
            c = (1 - i) * c + i * g
        h = o * tanh(c)
        out.append(h)
        for k, (b, e, emb) in enumerate(words):
            if b == j:
                wg = layer.word_x(emb) + layer.word_h(h)
                f, wi, gg = sig(wg[:H]), sig(wg[H:2 * H]), tanh(wg[2 * H:])
                cells[(b, e, k)] = f * c + wi * gg
    return torch.stack(out)


def reference_emissions(model: LatticeLSTM, text: str) -> torch.Tensor:
    batch = model.featurizer.encode([text])
    x = model.embed.chars(batch.chars[0])
    if model.embed.bigrams is not None:
        x = torch.cat([x, model.embed.bigrams(batch.bigrams[0])], -1)
    n = len(text)
    words = [(int(h), int(t), model.embed.words(w))
             for h, t, w, m in zip(batch.word_heads[0], batch.word_tails[0], batch.word_ids[0], batch.word_mask[0]) if m]
    h = reference_direction(model.forward_lattice, x, words)
    if model.backward_lattice is not None:
        reversed_words = [(n - 1 - t, n - 1 - hd, emb) for hd, t, emb in words]
        back = reference_direction(model.backward_lattice, x.flip(0), reversed_words).flip(0)
        h = torch.cat([h, back], -1)
    return model.output(h)


TEXTS = [
    "王小明在广州市工作",  # nested 广州/广州市/州市 and overlapping 王小明/小明/小明在
    "我和张三住在北京附近",  # words everywhere
    "x",  # one character, no word
    "嗯嗯嗯",  # no word at all
    "北京",  # a word covering the whole sentence (both edges)
    "今天赵六到南京很好李四",
]


@pytest.mark.parametrize("bidirectional", [True, False])
def test_batched_recurrence_equals_the_plain_one(bidirectional):
    torch.manual_seed(0)
    model = build_tagger("lattice_lstm", toy_corpus(), {**SMALL, "bidirectional": bidirectional},
                         lexicon=Lexicon(TOY_WORDS)).eval()
    with torch.no_grad():
        for pad in (0, 7):  # extra padding: a long sentence in the batch
            texts = TEXTS + (["天" * (max(map(len, TEXTS)) + pad)] if pad else [])
            batch = model.featurizer.encode(texts)
            got = model.emissions(batch)
            for i, text in enumerate(TEXTS):
                want = reference_emissions(model, text)
                assert torch.allclose(got[i, : len(text)], want, atol=1e-5), text


def test_loss_equals_the_plain_recurrence_loss():
    model = build_tagger("lattice_lstm", toy_corpus(), SMALL, lexicon=Lexicon(TOY_WORDS), seed=1).eval()
    sentences = toy_corpus()[:6]
    with torch.no_grad():
        batch = model.featurizer.encode([s.text for s in sentences], [s.spans for s in sentences])
        want = torch.stack([
            model.crf.nll(reference_emissions(model, s.text).unsqueeze(0), batch.tags[i : i + 1, : len(s.text)],
                          batch.mask[i : i + 1, : len(s.text)])
            for i, s in enumerate(sentences)]).mean()
        assert torch.allclose(model.loss(batch), want, atol=1e-5)


def test_words_change_the_output():
    torch.manual_seed(0)
    with_words = build_tagger("lattice_lstm", toy_corpus(), SMALL, lexicon=Lexicon(TOY_WORDS)).eval()
    torch.manual_seed(0)
    never = Lexicon(["不会出现的词"], vectors=torch.zeros(1, SMALL["word_dim"]).numpy())  # a vector: it is kept
    without = build_tagger("lattice_lstm", toy_corpus(), SMALL, lexicon=never).eval()
    without.load_state_dict({k: v for k, v in with_words.state_dict().items() if not k.startswith("embed.words.")},
                            strict=False)
    with torch.no_grad():
        a = with_words.emissions(with_words.featurizer.encode(["王小明在广州市工作"]))
        b = without.emissions(without.featurizer.encode(["王小明在广州市工作"]))
    assert not torch.allclose(a, b)


def test_reverse_within_length():
    x = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])
    assert reverse_within_length(x, torch.tensor([3, 2])).tolist() == [[3, 2, 1, 0], [5, 4, 0, 0]]


def test_needs_a_lexicon():
    from lexner.features import Featurizer

    with pytest.raises(ValueError, match="lexicon"):
        LatticeLSTM(LatticeLSTM.Config(), Featurizer.build(toy_corpus()))
