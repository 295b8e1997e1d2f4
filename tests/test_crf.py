import itertools

import pytest
import torch

from lexner.crf import ConstrainedCRF
from lexner.schemes import allowed_transitions, bioes_tags

TAGS = bioes_tags(["PER", "LOC"])


def random_crf(seed: int, tags=TAGS) -> ConstrainedCRF:
    """A CRF with normal random start, transition and end scores."""
    torch.manual_seed(seed)
    crf = ConstrainedCRF(tags)
    for p in crf.parameters():
        torch.nn.init.normal_(p)
    return crf


def numpy_search(*tensors: torch.Tensor) -> list[list[int]]:
    """lexner.crf._search_numpy over the arrays of ``tensors`` (emissions, mask, start, transition, end)."""
    from lexner.crf import _search_numpy

    return _search_numpy(*(t.numpy() for t in tensors))


def path_score(crf: ConstrainedCRF, emissions: torch.Tensor, path) -> torch.Tensor:
    """The CRF score of one tag path over (T, K) emissions."""
    return (crf.start_transitions[path[0]] + crf.end_transitions[path[-1]]
            + sum(emissions[t, k] for t, k in enumerate(path))
            + sum(crf.transitions[a, b] for a, b in zip(path, path[1:])))


@torch.no_grad()
def brute_force_best(crf: ConstrainedCRF, emissions: torch.Tensor, legal_only: bool) -> list[int]:
    start, trans, end = allowed_transitions(TAGS)
    best, best_path = float("-inf"), None
    for path in itertools.product(range(len(TAGS)), repeat=emissions.shape[0]):
        if legal_only and not (start[path[0]] and end[path[-1]] and all(trans[a, b] for a, b in zip(path, path[1:]))):
            continue
        score = path_score(crf, emissions, path)
        if score > best:
            best, best_path = float(score), list(path)
    return best_path


@pytest.mark.parametrize("seed", range(5))
def test_viterbi_equals_brute_force_over_legal_paths(seed):
    torch.manual_seed(seed)
    crf = ConstrainedCRF(TAGS)
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_(0, 2)
    lengths = [3, 1, 2]
    emissions = torch.randn(3, 3, len(TAGS)) * 3
    mask = torch.arange(3)[None] < torch.tensor(lengths)[:, None]
    decoded = crf.viterbi(emissions, mask)
    for i, n in enumerate(lengths):
        assert decoded[i] == brute_force_best(crf, emissions[i, :n], legal_only=True)


def test_constraints_change_the_path_when_the_unconstrained_best_is_illegal():
    crf = ConstrainedCRF(TAGS)
    with torch.no_grad():
        for p in crf.parameters():
            p.zero_()
    emissions = torch.full((1, 2, len(TAGS)), -5.0)
    emissions[0, 0, TAGS.index("I-PER")] = 5.0  # I- cannot start a sentence
    emissions[0, 1, TAGS.index("B-LOC")] = 5.0  # B- cannot end one
    mask = torch.ones(1, 2, dtype=torch.bool)
    assert brute_force_best(crf, emissions[0], legal_only=False) == [TAGS.index("I-PER"), TAGS.index("B-LOC")]
    path = crf.viterbi(emissions, mask)[0]
    assert path == brute_force_best(crf, emissions[0], legal_only=True)
    assert [TAGS[t][0] for t in path] != ["I", "B"]
    # pytorch-crf's decode() is overridden: no way to get the illegal path from this CRF
    assert crf.decode(emissions, mask) == crf.decode(emissions) == [path]


def test_nll_is_mean_of_brute_force_negative_log_likelihood():
    torch.manual_seed(0)
    crf = ConstrainedCRF(["O", "B-X", "I-X", "E-X", "S-X"])
    emissions = torch.randn(2, 3, 5)
    tags = torch.tensor([[0, 4, 0], [1, 3, 0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    expected = []
    for i in range(2):
        n = int(mask[i].sum())

        def score(path):
            s = crf.start_transitions[path[0]] + crf.end_transitions[path[-1]]
            s = s + sum(emissions[i, t, tag] for t, tag in enumerate(path))
            return s + sum(crf.transitions[a, b] for a, b in zip(path, path[1:]))

        log_z = torch.logsumexp(torch.stack([score(p) for p in itertools.product(range(5), repeat=n)]), 0)
        expected.append(log_z - score(tags[i, :n].tolist()))
    assert torch.allclose(crf.nll(emissions, tags, mask), torch.stack(expected).mean(), atol=1e-5)


@pytest.mark.parametrize("seed", range(6))
def test_nll_equals_pytorch_crf_values_and_gradients(seed):
    """lexner's vectorised log-likelihood is pytorch-crf's, within float rounding."""
    from torchcrf import CRF

    crf = random_crf(seed)
    lengths = torch.randint(1, 9, (5,))
    lengths[0] = 8
    mask = torch.arange(8)[None, :] < lengths[:, None]
    tags = torch.randint(0, len(TAGS), (5, 8))
    emissions = torch.randn(5, 8, len(TAGS), requires_grad=True)
    ours = crf.nll(emissions, tags, mask)
    ours.backward()
    ours_grads = [emissions.grad.clone()] + [p.grad.clone() for p in crf.parameters()]
    emissions.grad = None
    crf.zero_grad()
    reference = -CRF.forward(crf, emissions, tags, mask, reduction="mean")
    reference.backward()
    reference_grads = [emissions.grad] + [p.grad for p in crf.parameters()]
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    for a, b in zip(ours_grads, reference_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_nll_equals_brute_force_log_partition():
    crf = random_crf(0)
    emissions = torch.randn(1, 3, len(TAGS))
    tags = torch.tensor([[1, 2, 0]])
    paths = list(itertools.product(range(len(TAGS)), repeat=3))

    def score(path):
        return (crf.start_transitions[path[0]] + crf.end_transitions[path[-1]]
                + sum(emissions[0, t, k] for t, k in enumerate(path))
                + sum(crf.transitions[a, b] for a, b in zip(path, path[1:])))

    expected = torch.logsumexp(torch.stack([score(p) for p in paths]), 0) - score(tags[0].tolist())
    torch.testing.assert_close(crf.nll(emissions, tags, torch.ones(1, 3, dtype=torch.bool)), expected)


def test_viterbi_respects_per_position_allowed_tags():
    """``allowed`` constrains the search: the best path among those with allowed tags (brute force)."""
    crf = random_crf(3)
    emissions = torch.randn(1, 4, len(TAGS)) * 3
    allowed = torch.ones(1, 4, len(TAGS), dtype=torch.bool)
    allowed[0, 1] = torch.tensor([t[0] in "OS" for t in TAGS])
    allowed[0, 2] = torch.tensor([t[0] in "OBS" for t in TAGS])
    start, trans, end = allowed_transitions(TAGS)
    best, best_path = float("-inf"), None
    for path in itertools.product(range(len(TAGS)), repeat=4):
        if not (start[path[0]] and end[path[-1]] and all(trans[a, b] for a, b in zip(path, path[1:]))):
            continue
        if not all(allowed[0, t, k] for t, k in enumerate(path)):
            continue
        s = path_score(crf, emissions[0], path)
        if s > best:
            best, best_path = float(s.detach()), list(path)
    assert crf.viterbi(emissions, torch.ones(1, 4, dtype=torch.bool), allowed) == [best_path]


@pytest.mark.parametrize("search", ["numpy", "torch"])
def test_constraints_that_leave_no_legal_path_are_an_error_not_a_garbage_path(search, monkeypatch):
    """A sentence forced to begin with I-PER (a cut dictionary word, say) has no legal tag sequence: an error,
    in both searches, never a path that breaks the scheme or the constraint."""
    from lexner import crf as module

    crf = random_crf(3)
    emissions = torch.randn(2, 4, len(TAGS))
    allowed = torch.ones(2, 4, len(TAGS), dtype=torch.bool)
    allowed[1, 0] = torch.tensor([t == "I-PER" for t in TAGS])
    mask = torch.ones(2, 4, dtype=torch.bool)
    if search == "torch":  # the search the GPU runs, here on the CPU
        monkeypatch.setattr(module, "_search_numpy", lambda em, mask, start, trans, end, bounds: module._search_torch(
            torch.from_numpy(em), torch.from_numpy(mask), *crf.constrained_scores()))
    with pytest.raises(ValueError, match="no legal tag sequence"):
        crf.viterbi(emissions, mask, allowed)
    allowed[1, 0] = True
    assert len(crf.viterbi(emissions, mask, allowed)) == 2


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("block_values", [None, 1, 300])
def test_numpy_search_on_cpu_gives_the_torch_search_paths_ties_included(seed, block_values, monkeypatch):
    """Also with the candidates made a few positions at a time (``BLOCK_VALUES``: 1 makes one position at a
    time; 300, three for one sentence of these 9 tags, one for the batch), as in long sentences and batches."""
    from lexner import crf as module
    from lexner.crf import _search_torch

    if block_values is not None:
        monkeypatch.setattr(module, "BLOCK_VALUES", block_values)
    crf = random_crf(seed)
    if seed % 2:  # integer scores: many exact ties
        with torch.no_grad():
            for p in crf.parameters():
                p.copy_(p.round())
    emissions = torch.randn(7, 9, len(TAGS)) * 3
    if seed % 2:
        emissions = emissions.round()
    lengths = torch.tensor([9, 1, 4, 9, 2, 7, 3])
    mask = torch.arange(9)[None, :] < lengths[:, None]
    allowed = torch.rand(7, 9, len(TAGS)) < 0.7
    allowed[..., TAGS.index("O")] = True
    start, trans, end = crf.constrained_scores()
    neg = torch.tensor(float("-inf"))
    for extra in (None, allowed):
        em = emissions if extra is None else torch.where(extra, emissions, neg)
        paths = _search_torch(em, mask, start, trans, end)
        assert numpy_search(em, mask, start, trans, end) == paths
        for i, n in enumerate(lengths.tolist()):  # one sentence (its own search path), padded and not
            assert numpy_search(em[i : i + 1], mask[i : i + 1], start, trans, end) == [paths[i]]
            assert numpy_search(em[i : i + 1, :n], mask[i : i + 1, :n], start, trans, end) == [paths[i]]
    assert crf.viterbi(emissions, mask, allowed) == _search_torch(
        torch.where(allowed, emissions, neg), mask, start, trans, end)


def test_the_cpu_search_follows_scores_changed_in_place_or_replaced():
    """The CPU search keeps its constrained scores as arrays between calls: training steps (in place) and new
    parameters (replaced) must reach it, exactly as the torch search sees them."""
    from lexner.crf import _search_torch

    crf = random_crf(3)
    emissions, mask = torch.randn(3, 6, len(TAGS)), torch.ones(3, 6, dtype=torch.bool)
    crf.viterbi(emissions, mask)  # scores cached
    for change in range(2):
        if change == 0:
            with torch.no_grad():
                crf.transitions.mul_(-4.0)  # an optimiser step: in place
        else:
            crf.start_transitions = torch.nn.Parameter(torch.randn(len(TAGS)) * 5)  # replaced
        expected = _search_torch(emissions, mask, *crf.constrained_scores())
        assert crf.viterbi(emissions, mask) == expected


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_the_cpu_search_follows_a_fused_optimiser_step(mode):
    """A fused Adam step moves no version counter, and a decode in training mode (as a user's own loop might
    call it) or in evaluation mode must still see its result: the kept scores are compared by value."""
    from lexner.crf import _search_torch

    crf = random_crf(4).train(mode == "train")
    emissions, mask = torch.randn(3, 6, len(TAGS)), torch.ones(3, 6, dtype=torch.bool)
    before = crf.viterbi(emissions, mask)  # scores kept
    optimiser = torch.optim.Adam(crf.parameters(), lr=5.0, fused=True)
    versions = [p._version for p in crf.parameters()]
    crf.nll(emissions, torch.tensor([before[0]] * 3), mask).neg().backward()  # away from the current paths
    optimiser.step()
    assert [p._version for p in crf.parameters()] == versions  # unseen by version counters
    expected = _search_torch(emissions, mask, *crf.constrained_scores())
    assert expected != before
    assert crf.viterbi(emissions, mask) == expected


@pytest.mark.parametrize("how", ["swapped", "copied"])
def test_the_cpu_search_follows_weights_changed_through_data(how):
    """The trainer scores averaged weights by swapping them in (``p.data = average``); ``p.data.copy_()`` changes
    them in place: neither moves the version counter."""
    from lexner.crf import _search_torch

    crf = random_crf(6).eval()
    emissions, mask = torch.randn(3, 6, len(TAGS)), torch.ones(3, 6, dtype=torch.bool)
    before = crf.viterbi(emissions, mask)  # scores kept
    if how == "swapped":
        crf.transitions.data = -4.0 * crf.transitions.data
    else:
        crf.transitions.data.copy_(-4.0 * crf.transitions.data)
    expected = _search_torch(emissions, mask, *crf.constrained_scores())
    assert expected != before
    assert crf.viterbi(emissions, mask) == expected


def test_an_empty_batch_has_no_paths():
    crf = random_crf(1)
    assert crf.viterbi(torch.zeros(0, 4, len(TAGS)), torch.zeros(0, 4, dtype=torch.bool)) == []


def test_log_marginals_equal_brute_force_over_every_path_with_padding():
    tags = bioes_tags(["PER"])
    crf = random_crf(5, tags)
    emissions = torch.randn(2, 4, len(tags))
    mask = torch.tensor([[True, True, True, True], [True, True, True, False]])
    got = crf.log_marginals(emissions, mask).exp()
    for b, n in enumerate(mask.sum(1).tolist()):
        totals = torch.zeros(n, len(tags))
        for path in itertools.product(range(len(tags)), repeat=n):
            s = path_score(crf, emissions[b], path)
            for t, k in enumerate(path):
                totals[t, k] += s.detach().exp()
        expected = totals / totals[0].sum()
        torch.testing.assert_close(got[b, :n].detach(), expected, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got[b, :n].sum(-1).detach(), torch.ones(n))


@pytest.mark.parametrize("seed", range(4))
def test_exact_ties_break_the_same_way_under_float_noise_of_padding_size(seed):
    """Padding a sentence into a batch changes its emissions by ~1e-7; an exact tie must not flip with it."""
    from lexner.crf import _search_torch

    crf = random_crf(seed)
    with torch.no_grad():  # integer scores: many exact ties between paths
        for p in crf.parameters():
            p.copy_(p.round())
    torch.manual_seed(100 + seed)
    emissions = (torch.randn(40, 12, len(TAGS)) * 2).round()
    mask = torch.ones(40, 12, dtype=torch.bool)
    exact = crf.viterbi(emissions, mask)
    flips = 0
    for trial in range(5):
        noisy = emissions + torch.randn(emissions.shape) * 3e-7 * emissions.abs().clamp(min=1)
        assert crf.viterbi(noisy, mask) == exact
        start, trans, end = crf.constrained_scores()
        assert _search_torch(noisy, mask, start, trans, end) == exact
        flips += noisy.argmax(-1).tolist() != emissions.argmax(-1).tolist()  # plain argmax does flip
    assert flips > 0
    # one sentence alone and inside a padded batch: the same path
    alone = crf.viterbi(emissions[:1, :5], mask[:1, :5])
    padded = torch.cat([emissions[:1], emissions[1:2]]) + torch.randn(2, 12, len(TAGS)) * 1e-7
    lengths = torch.tensor([5, 12])
    assert crf.viterbi(padded, torch.arange(12)[None] < lengths[:, None])[0] == alone[0]


def test_a_sentences_decisions_do_not_depend_on_the_other_sentences_in_its_batch():
    from lexner.crf import _search_torch

    crf = ConstrainedCRF(TAGS)
    with torch.no_grad():
        for p in crf.parameters():
            p.zero_()
    small = torch.zeros(1, 3, len(TAGS))
    small[0, :, 1] = 0.001  # a real (tiny) preference, far above float noise
    huge = torch.full((1, 3, len(TAGS)), 0.0)
    huge[0, :, 2] = 1000.0
    mask = torch.ones(2, 3, dtype=torch.bool)
    alone = crf.viterbi(small, mask[:1])
    together = crf.viterbi(torch.cat([small, huge]), mask)
    assert together[0] == alone[0] and alone[0] != [0, 0, 0]
    start, trans, end = crf.constrained_scores()
    both = torch.cat([small, huge])
    assert _search_torch(both, mask, start, trans, end) == numpy_search(both, mask, start, trans, end) == together


def test_numpy_and_torch_searches_agree_at_the_edge_of_the_tie_tolerance():
    """A candidate placed right at the tie tolerance below the best: the two searches must compute the
    same tolerance and the same sums (dtype and order), or they split differently on such inputs."""
    import numpy as np

    from lexner.crf import _bounds_numpy, _search_torch, _tolerances_numpy

    rng = np.random.default_rng(0)
    for _ in range(2000):
        em = (rng.normal(size=(1, 2, 2)) * rng.choice([1e2, 1e5])).astype(np.float32)
        start = (rng.normal(size=2) * 10).astype(np.float32)
        trans = (rng.normal(size=(2, 2)) * 10).astype(np.float32)
        first = start + em[0, 0]
        tolerance = _tolerances_numpy(em.transpose(1, 2, 0), _bounds_numpy(start, trans))[1, 0]
        edge = first[1] + trans[1, 0] - tolerance * rng.uniform(0.99, 1.01)
        trans[0, 0] = np.float32(edge - first[0])  # tag 0's route to tag 0 within a hair of the tolerance
        args = (torch.from_numpy(em), torch.ones(1, 2, dtype=torch.bool), torch.from_numpy(start),
                torch.from_numpy(trans), torch.tensor([0.0, float("-inf")]))
        assert numpy_search(*args) == _search_torch(*args)


def test_log_marginals_gradient_stays_accurate_in_float32_at_large_emission_scales():
    """A long sentence with large emissions (a student late in distillation): the float32 gradient of the soft
    loss matches float64's.  The unscaled forward-backward (alpha + beta - log Z) got it wrong here."""
    import copy

    tags = bioes_tags(["PER", "LOC", "ORG"])
    crf = random_crf(1, tags)
    torch.manual_seed(5)
    base = 60 * torch.randn(3, 120, len(tags))
    mask = torch.ones(3, 120, dtype=torch.bool)
    mask[1, 90:] = False
    target = torch.softmax(torch.randn(3, 120, len(tags)), -1)
    grads = {}
    for dtype in (torch.float32, torch.float64):
        model = copy.deepcopy(crf).to(dtype)
        emissions = base.to(dtype, copy=True).requires_grad_(True)
        log_m = model.log_marginals(emissions, mask)
        assert log_m.dtype == dtype
        (-(target.to(dtype) * log_m).sum(-1) * mask).sum().backward()
        grads[dtype] = emissions.grad.double()
    error = (grads[torch.float32] - grads[torch.float64]).abs().max().item()
    assert error < 1e-3 * grads[torch.float64].abs().max().item(), error


def test_padding_scores_do_not_change_a_short_sentences_final_choice():
    """The final tie tolerance is taken at each sentence's own last position: with it taken at the padded last
    column, a short sentence's path depended on the padding's scores (mutation testing found no test of it)."""
    from lexner.crf import _search_torch

    tags = bioes_tags(["PER"])
    crf = ConstrainedCRF(tags)
    with torch.no_grad():
        for p in crf.parameters():
            p.zero_()
    short = torch.zeros(1, 2, len(tags))
    short[0, 1, tags.index("S-PER")] = 1e-4  # a real preference, above its own tie tolerance
    alone = crf.viterbi(short, torch.ones(1, 2, dtype=torch.bool))
    assert alone[0][-1] == tags.index("S-PER")
    padded = torch.full((1, 12, len(tags)), 1000.0)  # large scores at the padding positions
    padded[:, :2] = short
    mask = torch.arange(12)[None] < 2
    assert crf.viterbi(padded, mask) == alone  # numpy search
    assert _search_torch(padded, mask, *crf.constrained_scores()) == alone
