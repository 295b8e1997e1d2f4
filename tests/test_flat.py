import pytest
from hypothesis import given, settings, strategies as st
import torch

from lexner.api import build_tagger
from lexner.lexicon import Lexicon
from lexner.models.flat import relative_distances, sinusoid_table
from conftest import toy_corpus
from tagger_contract import TOY_WORDS, TaggerContract

SMALL = {"char_dim": 12, "bigram_dim": 6, "word_dim": 10, "model_dim": 16, "heads": 4, "ffn_dim": 24,
         "embed_dropout": 0.2, "ffn_dropout": 0.1, "output_dropout": 0.1}


class TestFLAT(TaggerContract):
    model_name = "flat"
    config = SMALL


class TestFLATReferenceVariant(TaggerContract):
    """The reference code's choices: keys not projected, scores not scaled, full-tensor positions, 2 layers."""

    model_name = "flat"
    config = {**SMALL, "project_keys": False, "scaled": False, "lean": False, "layers": 2}


def make(**overrides):
    return build_tagger("flat", toy_corpus(), {**SMALL, **overrides}, lexicon=Lexicon(TOY_WORDS), seed=0).eval()


def test_lattice_heads_tails_and_masks_on_a_hand_checked_sentence():
    model = make()
    batch = model.featurizer.encode(["王小明在广州市", "北京"])
    # sentence 0 words, sorted by (head, tail): 王小明 (0,2), 小明 (1,2), 小明在 (1,3), 广州 (4,5), 广州市 (4,6), 州市 (5,6)
    words = [model.featurizer.lexicon.words[i - 1] for i in batch.word_ids[0][batch.word_mask[0]].tolist()]
    assert words == ["王小明", "小明", "小明在", "广州", "广州市", "州市"]
    assert batch.word_heads[0].tolist() == [0, 1, 1, 4, 4, 5]
    assert batch.word_tails[0].tolist() == [2, 2, 3, 5, 6, 6]
    # sentence 1: one word spanning both edges, then padding
    assert batch.word_mask[1].tolist() == [True] + [False] * 5
    assert (batch.word_heads[1, 0].item(), batch.word_tails[1, 0].item()) == (0, 1)
    assert batch.mask[1].tolist() == [True, True] + [False] * 5


def test_four_distances():
    heads = torch.tensor([[0, 1, 2, 0, 1]])  # three characters, then words (0..1) and (1..2)
    tails = torch.tensor([[0, 1, 2, 1, 2]])
    hh, th, ht, tt = relative_distances(heads, tails)
    i, j = 3, 4  # word (0,1) against word (1,2)
    assert (hh[0, i, j], th[0, i, j], ht[0, i, j], tt[0, i, j]) == (-1, 0, -2, -1)
    i, j = 4, 0  # word (1,2) against character 0
    assert (hh[0, i, j], th[0, i, j], ht[0, i, j], tt[0, i, j]) == (1, 2, 1, 2)
    assert torch.equal(hh[0], -hh[0].t()) and torch.equal(th[0], -ht[0].t())


def test_sinusoid_table():
    table = sinusoid_table(torch.tensor([0, 3]), 4)
    assert torch.allclose(table[0], torch.tensor([0.0, 1.0, 0.0, 1.0]))
    assert torch.allclose(table[1], torch.tensor([torch.sin(torch.tensor(3.0)), torch.cos(torch.tensor(3.0)),
                                                  torch.sin(torch.tensor(3 / 100.0)), torch.cos(torch.tensor(3 / 100.0))]))


TEXTS = ["王小明在广州市工作", "北京", "x", "嗯嗯嗯", "今天赵六到南京很好李四", "我和张三住在北京附近"]


@pytest.mark.parametrize("block_elements", [1 << 24, 1])  # one block, and one query row per block
def test_lean_path_equals_the_naive_full_tensor_path(block_elements):
    lean = make(lean=True, block_elements=block_elements, layers=2, checkpoint_elements=0)
    naive = make(lean=False, layers=2)
    naive.load_state_dict(lean.state_dict())
    batch = lean.featurizer.encode(TEXTS)
    with torch.no_grad():
        assert torch.allclose(lean.emissions(batch), naive.emissions(batch), atol=1e-5)


@pytest.mark.parametrize("checkpoint_elements", [0, 1 << 30])  # recomputed in backward, and kept
def test_lean_path_gradients_equal_the_naive_ones(checkpoint_elements):
    lean = make(lean=True, block_elements=64, checkpoint_elements=checkpoint_elements)
    naive = make(lean=False)
    naive.load_state_dict(lean.state_dict())
    sentences = toy_corpus()[:5]
    for model in (lean, naive):
        batch = model.featurizer.encode([s.text for s in sentences], [s.spans for s in sentences])
        model.loss(batch).backward()
    for (name, a), (_, b) in zip(lean.named_parameters(), naive.named_parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-5), name


def test_padding_cannot_influence_real_positions():
    model = make()
    batch = model.featurizer.encode(["北京", "王小明在广州市工作"])
    with torch.no_grad():
        before = model.emissions(batch)[0, :2]
        # scribble over sentence 0's padded characters and padded words
        batch.chars[0, 2:] = 5
        batch.bigrams[0, 2:] = 7
        batch.word_ids[0, 1:] = 3
        batch.word_heads[0, 1:] = 1
        batch.word_tails[0, 1:] = 6
        after = model.emissions(batch)[0, :2]
    assert torch.allclose(before, after, atol=1e-6)


def test_long_sentence_in_small_blocks():
    model = make(block_elements=4096)
    text = "王小明在广州市工作" * 60  # 540 characters, 360 words
    entities = model.tag(text)
    assert all(text[e.start:e.end] == e.text for e in entities)


def test_heads_must_divide_model_dim():
    with pytest.raises(ValueError, match="must be a positive multiple of heads"):
        make(model_dim=18, heads=4)


@settings(max_examples=40, deadline=None)
@given(batch=st.integers(1, 3), chars=st.integers(1, 9), words=st.integers(0, 6),
       block=st.sampled_from([1, 97, 1 << 24]), seed=st.integers(0, 10_000))
def test_lean_position_scores_equal_the_naive_ones_for_any_lattice(batch, chars, words, block, seed):
    """Any heads and lengths of words (padding included): the lean path's indexing into its tables — character
    keys through one slice per query length, word keys by row — gives the reference scores and gradients."""
    from lexner.models.flat import FLATConfig, RelativeAttentionLayer

    torch.manual_seed(seed)
    layer = RelativeAttentionLayer(FLATConfig(model_dim=16, heads=4, block_elements=block, checkpoint_elements=0))
    positions = torch.arange(chars).expand(batch, chars)
    word_heads = torch.randint(0, chars, (batch, words))
    word_tails = torch.minimum(word_heads + torch.randint(0, 4, (batch, words)), torch.tensor(chars - 1))
    heads, tails = torch.cat([positions, word_heads], 1), torch.cat([positions, word_tails], 1)
    qv = torch.randn(batch, 4, chars + words, 4, requires_grad=True)
    lean = layer.position_scores_lean(qv, heads, tails, span=chars - 1)
    naive = layer.position_scores_naive(qv, relative_distances(heads, tails))
    assert torch.allclose(lean, naive, atol=1e-5)
    weights = torch.randn_like(lean)
    grad_lean = torch.autograd.grad((lean * weights).sum(), [qv, layer.fuse.weight])
    grad_naive = torch.autograd.grad((naive * weights).sum(), [qv, layer.fuse.weight])
    for a, b in zip(grad_lean, grad_naive):
        assert torch.allclose(a, b, atol=1e-4)


def test_gradients_are_the_same_on_every_run_with_several_threads():
    """The position tables' rows are gathered with index_select: advanced indexing's backward summed repeated
    rows' gradients in a different order on every run with 2 CPU threads (fuse.weight: 8 different gradients in
    8 runs of this batch), so FLAT's training was not reproducible on a multi-core machine (helper audit)."""
    torch.manual_seed(0)
    model = make(embed_dropout=0.0, ffn_dropout=0.0, output_dropout=0.0).train()
    sentences = toy_corpus()
    texts = ["".join(sentences[(k + j) % len(sentences)].text for j in range(6)) for k in range(16)]
    batch = model.featurizer.encode(texts, [[] for _ in texts])
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen: dict[str, set] = {}
        for _ in range(6):
            model.zero_grad()
            model.loss(batch).backward()
            for name, p in model.named_parameters():
                if p.grad is not None:
                    seen.setdefault(name, set()).add(p.grad.numpy().tobytes())
    finally:
        torch.set_num_threads(threads)
    assert "layers.0.fuse.weight" in seen and not {n: len(v) for n, v in seen.items() if len(v) > 1}
