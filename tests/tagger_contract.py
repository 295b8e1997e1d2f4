"""The contract every tagger must meet.  A model's test module subclasses :class:`TaggerContract`."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import lexner
from lexner.api import build_tagger
from lexner.lexicon import Lexicon
from lexner.models import Tagger, model_class
from conftest import toy_corpus

ODD_TEXTS = [
    "北京",  # a single known word
    "x",  # one character
    "😀在北京😀",  # non-BMP characters
    "Ａｐｐｌｅ在上海开店，ＣＥＯ张三出席。",  # full-width Latin
    "\u0000\u0007张三\t\n李四",  # control characters, tab, newline
    "é\u0301在北京",  # combining mark
    "\ud800北京",  # a lone surrogate
    "   张三   ",  # surrounding spaces
    "天" * 300,  # longer than anything seen in training
]


# Nested (广州 ⊂ 广州市), overlapping (王小明 / 小明在), and words across entity borders (三在, 在北京).
TOY_WORDS = ["北京", "上海", "广州", "广州市", "州市", "南京", "张三", "三在", "王小明", "小明", "小明在", "在北京",
             "工作", "附近", "今天", "住在", "李四", "很好", "赵六"]


# Random texts for the whitespace/line-break properties: CJK and Latin characters, digits, punctuation, every
# kind of whitespace, every line break str.splitlines knows, and control/format characters.
HIDDEN = "\u200b\x00\ufeff\xad\u200d"
WHITESPACE_TEXTS = st.text(alphabet="张三李四王小明北京上海广州市在的工作ab Ee1２。，@ \t\u3000\xa0\u2003\n\r\u2028\u2029\x85\x0b"
                           + HIDDEN, max_size=40)
# Random CRF transitions make decoding of an untrained model non-trivial, with entities of every shape.
_CACHE: dict[str, Tagger] = {}


class TaggerContract:
    model_name: ClassVar[str]
    config: ClassVar[dict[str, Any]] = {}
    learn_steps: ClassVar[int] = 30  # full-batch Adam steps in which the toy corpus must be learnt

    def make(self, seed: int = 0) -> Tagger:
        torch.manual_seed(seed)
        lexicon = Lexicon(TOY_WORDS) if model_class(self.model_name).inputs(model_class(self.model_name).Config()).words else None
        tagger = build_tagger(self.model_name, toy_corpus(), self.config, lexicon=lexicon, seed=seed)
        with torch.no_grad():  # random CRF transitions so that decoding is not trivially all-O
            for p in tagger.crf.parameters():
                p.normal_(0, 1)
        return tagger

    def batch(self, tagger: Tagger, sentences):
        return tagger.featurizer.encode([s.text for s in sentences], [s.spans for s in sentences])

    def test_loss_is_a_finite_scalar(self, corpus):
        tagger = self.make()
        loss = tagger.loss(self.batch(tagger, corpus[:6]))
        assert loss.dim() == 0 and torch.isfinite(loss)
        assert loss.item() > 0

    def test_every_parameter_gets_a_gradient(self, corpus):
        tagger = self.make()
        tagger.train()
        tagger.loss(self.batch(tagger, corpus)).backward()
        missing = [n for n, p in tagger.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert missing == []

    def test_padded_batch_equals_one_at_a_time(self, corpus):
        tagger = self.make().eval()
        texts = [s.text for s in corpus[:8]] + ["张三", "在北京工作的李四和王小明"]
        with torch.no_grad():
            batch = tagger.featurizer.encode(texts)
            together = tagger.emissions(batch)
            paths = tagger.decode(batch)
            for i, text in enumerate(texts):
                single = tagger.featurizer.encode([text])
                alone = tagger.emissions(single)[0]
                assert torch.allclose(together[i, : len(text)], alone, atol=1e-5), text
                assert paths[i] == tagger.decode(single)[0]

    def test_loss_of_a_batch_is_the_mean_of_single_losses(self, corpus):
        tagger = self.make().eval()
        with torch.no_grad():
            together = tagger.loss(self.batch(tagger, corpus[:5]))
            alone = torch.stack([tagger.loss(self.batch(tagger, [s])) for s in corpus[:5]]).mean()
        assert torch.allclose(together, alone, atol=1e-4)

    def test_save_load_gives_identical_output(self, corpus, tmp_path):
        tagger = self.make().eval()
        tagger.save(tmp_path / "m")
        loaded = lexner.load(tmp_path / "m")
        assert type(loaded) is type(tagger)
        texts = [s.text for s in corpus]
        with torch.no_grad():
            batch = tagger.featurizer.encode(texts)
            assert torch.equal(tagger.emissions(batch), loaded.emissions(loaded.featurizer.encode(texts)))
        texts += ODD_TEXTS
        assert tagger.tag_batch(texts, batch_size=8) == loaded.tag_batch(texts, batch_size=8)

    def test_empty_and_whitespace_input(self):
        tagger = self.make()
        assert tagger.tag("") == []
        assert tagger.tag(" \t\n ") == []
        assert tagger.tag_batch([]) == []
        assert tagger.tag_batch(["", "张三在北京", "   "])[0] == []

    def test_wrong_types_raise_type_error_naming_the_type(self):
        tagger = self.make()
        with pytest.raises(TypeError, match="bytes"):
            tagger.tag("北京".encode())
        with pytest.raises(TypeError, match="int"):
            tagger.tag_batch(["北京", 3])
        with pytest.raises(TypeError):
            tagger.tag_batch("北京")
        with pytest.raises(TypeError, match="ordered sequence of str, got a set"):
            tagger.tag_batch({"北京", "上海"})  # no order to give the results in
        assert tagger.tag_batch(iter(["北京"])) == tagger.tag_batch({"北京": 1})  # any other iterable, in order

    def test_odd_input_gives_consistent_offsets(self):
        tagger = self.make()
        for text, entities in zip(ODD_TEXTS, tagger.tag_batch(ODD_TEXTS)):
            for e in entities:
                assert 0 <= e.start < e.end <= len(text)
                assert text[e.start : e.end] == e.text

    def test_learns_the_toy_corpus(self, corpus):
        tagger = self.make()
        optimizer = torch.optim.Adam(tagger.parameters(), lr=0.02)
        batch = self.batch(tagger, corpus)
        tagger.train()
        for _ in range(self.learn_steps):
            optimizer.zero_grad()
            tagger.loss(batch).backward()
            optimizer.step()
        predicted = tagger.tag_batch([s.text for s in corpus])
        correct = sum([(e.start, e.end, e.label) for e in ents] == [tuple(s) for s in sent.spans]
                      for ents, sent in zip(predicted, corpus))
        assert correct >= 0.9 * len(corpus)

    def test_long_text_is_tagged_in_pieces_with_exact_offsets(self, corpus):
        tagger = self.make().eval()
        tagger.max_length, tagger.overlap = 40, 8
        sentences = [s.text for s in corpus[:12]]
        text = "".join(sentences)  # every sentence but the first ends in 。 or not: packing and cutting both happen
        text += "天" * 100  # one over-long sentence, cut into overlapping windows
        entities = tagger.tag(text)
        assert all(text[e.start:e.end] == e.text for e in entities)
        assert all(a.end <= b.start for a, b in zip(entities, entities[1:]))
        # a text made of whole pieces gives the entities of each piece, shifted
        pieces = [s for s in sentences if s.endswith("。")]
        joined = "".join(pieces)
        expected, offset = [], 0
        for piece, found in zip(pieces, tagger.tag_batch(pieces)):
            expected += [(e.start + offset, e.end + offset, e.label) for e in found]
            offset += len(piece)
        tagger.max_length = max(len(p) for p in pieces)  # no two pieces fit together: one window per piece
        assert [(e.start, e.end, e.label) for e in tagger.tag(joined)] == expected

    def cached(self) -> Tagger:
        """One untrained model per tagger for the property tests (read only: tagging never changes it)."""
        key = f"{self.model_name}{sorted(self.config.items())}"
        if key not in _CACHE:
            _CACHE[key] = self.make(seed=1).eval()
        return _CACHE[key]

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors])
    @given(text=WHITESPACE_TEXTS)
    def test_entities_never_start_or_end_with_whitespace_nor_cross_a_line(self, text):
        """No entity starts or ends with whitespace or a control character; whitespace inside an entity only
        between Latin letters or digits; no entity holds a line break."""
        from lexner.tagging import is_latin_alnum

        for e in self.cached().tag(text):
            assert text[e.start:e.end] == e.text
            assert not e.text[0].isspace() and not e.text[-1].isspace(), e
            assert e.text[0] not in HIDDEN and e.text[-1] not in HIDDEN, e
            assert len(e.text.splitlines()) == 1 and not e.text.splitlines(keepends=True)[0] != e.text, e
            stripped = [(k, c) for k, c in enumerate(e.text) if not c.isspace() and c not in HIDDEN]
            for (k1, left), (k2, right) in zip(stripped, stripped[1:]):
                if any(c.isspace() for c in e.text[k1 + 1:k2]):  # whitespace between them
                    assert is_latin_alnum(left) and is_latin_alnum(right), e

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors])
    @given(text=WHITESPACE_TEXTS)
    def test_each_line_is_tagged_as_a_text_of_its_own(self, text):
        """A line break is a hard boundary: the entities of a text are those of each of its lines (as
        str.splitlines cuts them) tagged alone, shifted by the line's offset."""
        tagger = self.cached()
        expected, offset = [], 0
        lines = text.splitlines(keepends=True)
        bare = [line.splitlines()[0] if line.splitlines() else "" for line in lines]
        for line, found in zip(lines, tagger.tag_batch(bare)):
            expected += [(e.start + offset, e.end + offset, e.label) for e in found]
            offset += len(line)
        assert [(e.start, e.end, e.label) for e in tagger.tag(text)] == expected

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors])
    @given(text=st.text(alphabet="张三李四北京上海在的工作。", min_size=1, max_size=20),
           spaces=st.lists(st.sampled_from([" ", "\t", "\u3000", "  "]), max_size=6), seed=st.randoms())
    def test_spaces_between_cjk_characters_change_no_boundary_they_do_not_touch(self, text, spaces, seed):
        """Whitespace dropped between CJK characters is not seen by the model: the same text with spaces
        inserted gives the same entities, except that none may run across an inserted space."""
        tagger = self.cached()
        cuts = sorted(seed.sample(range(1, len(text)), min(len(spaces), len(text) - 1))) if len(text) > 1 else []
        spaced, positions, last = "", [], 0
        for cut, space in zip(cuts, spaces):
            spaced += text[last:cut] + space
            positions += list(range(last, cut))
            positions += [None] * len(space)
            last = cut
        spaced += text[last:]
        positions += list(range(last, len(text)))
        plain = {(e.start, e.end, e.label) for e in tagger.tag(text)}
        for e in tagger.tag(spaced):
            start, end = positions[e.start], positions[e.end - 1] + 1
            assert (start, end, e.label) in plain or not any(
                positions[k] is None for k in range(e.start, e.end)), e

    def test_dictionary_words_are_forced_into_the_decoded_path(self):
        """Every selected occurrence of a dictionary word is exactly one entity of its type — whatever the
        (random) model would say — and the rest of the sentence is decoded around it."""
        tagger = self.make(seed=2).eval()
        texts = ["张三在北京工作", "我和李四住在广州市附近", "北京大学在北京", "今天 王小明 到 上海", "北 京"]
        tagger.add_dictionary({"北京": "LOC", "北京大学": "PER", "李四": "LOC", "小明": "PER"})
        after = tagger.tag_batch(texts)
        spans = [{(e.start, e.end, e.label) for e in ents} for ents in after]
        assert (3, 5, "LOC") in spans[0]
        assert (2, 4, "LOC") in spans[1]
        assert (0, 4, "PER") in spans[2] and (5, 7, "LOC") in spans[2]  # leftmost, then longest; no overlap
        assert (4, 6, "PER") in spans[3]  # inside 王小明: forced, the characters around it decoded anew
        for ents in after:  # never overlapping, offsets exact
            assert all(a.end <= b.start for a, b in zip(ents, ents[1:]))
        assert not any(e.start < 1 < e.end for e in after[4])  # whitespace between CJK: never inside an entity
        assert tagger.tag_batch(texts) == [tagger.tag(t) for t in texts]

    def test_dictionary_words_are_forced_in_every_window_of_a_long_line(self):
        """A line tagged in windows: every occurrence is still one entity of its type, where a window boundary
        would have fallen inside it too; a word longer than a window (which must be cut) is not forced, and
        the rest is decoded around it."""
        tagger = self.make(seed=2).eval()
        tagger.max_length, tagger.overlap = 10, 3
        too_long = "张三李四王小明赵六北京"  # 11 characters
        tagger.add_dictionary({"北京大学": "LOC", "王小明": "PER", "小明在北京": "PER", too_long: "LOC"})
        text = "张三在北京大学工作" * 5 + "王小明" * 7 + "小明在北京" * 4 + "今天" + too_long + "很好" + too_long
        wanted = [(s, e, t) for s, e, t in tagger.dictionary.occurrences(text) if e - s <= tagger.max_length]
        found = {(e.start, e.end, e.label) for e in tagger.tag(text)}
        assert wanted and all(occurrence in found for occurrence in wanted)
        assert tagger.tag_batch([text, "北京大学"]) == [tagger.tag(text), tagger.tag("北京大学")]

    def test_a_dictionary_word_that_cannot_be_forced_takes_no_other_words_place(self):
        """An occurrence whitespace rules out (北京 across the space of 北 京) or one longer than a window is no
        candidate: the occurrences it overlaps are forced as if it were not there (it blocked them)."""
        tagger = self.make(seed=2).eval()
        tagger.add_dictionary({"北京": "LOC", "京东": "PER"})
        assert (3, 5, "PER") in {(e.start, e.end, e.label) for e in tagger.tag("东北 京东总部")}
        assert (2, 4, "PER") in {(e.start, e.end, e.label) for e in tagger.tag("北 京东在这里")}
        tagger.max_length, tagger.overlap = 5, 2
        tagger.add_dictionary({"北京国际奥委会": "PER", "奥委会": "LOC"})
        found = {(e.start, e.end, e.label) for e in tagger.tag("北京国际奥委会")}
        assert {(0, 2, "LOC"), (4, 7, "LOC")} <= found

    def test_dictionary_types_the_model_does_not_know_are_refused(self):
        tagger = self.make()
        with pytest.raises(ValueError, match=r"dictionary types \['COMPANY'\] are not types of this model"):
            tagger.add_dictionary({"腾讯": "COMPANY"})
        assert tagger.dictionary is None or len(tagger.dictionary) == 0

    def test_traditional_text_is_tagged_as_its_simplified_form(self):
        """Lookups map Traditional to Simplified one code point for one: a text and its Traditional form give
        the same spans, with offsets (and entity text) on the string as given."""
        import opencc

        tagger = self.cached()
        if tagger.featurizer.pieces is not None:
            pytest.skip("a pretrained encoder's word pieces read the text as given (its vocabulary has both scripts)")
        s2t = opencc.OpenCC("s2t")
        texts = ["张三在北京工作", "我和李四住在广州市附近", "今天王小明到上海", "广州市的赵六很好"]
        for simplified, found in zip(texts, tagger.tag_batch(texts)):
            traditional = s2t.convert(simplified)
            assert len(traditional) == len(simplified)
            other = tagger.tag(traditional)
            assert [(e.start, e.end, e.label) for e in other] == [(e.start, e.end, e.label) for e in found]
            assert all(e.text == traditional[e.start:e.end] for e in other)

    def test_multi_task_heads_learn_their_own_label_sets_and_round_trip(self, corpus, tmp_path):
        """Two label sets over one shared encoder: PER/LOC (the default head) and a fine set that names people
        "name" and places "city".  Each head learns its own convention from the same texts; a saved model
        keeps both; asking for an unknown head is a ValueError naming the heads."""
        fine = {"PER": "name", "LOC": "city"}
        fine_corpus = [type(s)(s.text, [type(sp)(sp.start, sp.end, fine[sp.label]) for sp in s.spans])
                       for s in corpus]
        torch.manual_seed(0)
        lexicon = Lexicon(TOY_WORDS) if model_class(self.model_name).inputs(model_class(self.model_name).Config()).words else None
        tagger = build_tagger(self.model_name, corpus, self.config, lexicon=lexicon,
                              label_sets={"coarse": ["LOC", "PER"], "fine": ["city", "name"]})
        texts = [s.text for s in corpus]
        coarse_batch = tagger.featurizer.encode(texts, [s.spans for s in corpus], "coarse")
        fine_batch = tagger.featurizer.encode(texts, [s.spans for s in fine_corpus], "fine")
        optimizer = torch.optim.Adam(tagger.parameters(), lr=0.02)
        tagger.train()
        for _ in range(self.learn_steps):
            optimizer.zero_grad()
            (tagger.loss(coarse_batch) + tagger.loss(fine_batch)).backward()
            optimizer.step()
        for labels, gold in ((None, corpus), ("coarse", corpus), ("fine", fine_corpus)):
            predicted = tagger.tag_batch(texts, labels=labels)
            correct = sum([(e.start, e.end, e.label) for e in ents] == [tuple(s) for s in sent.spans]
                          for ents, sent in zip(predicted, gold))
            assert correct >= 0.9 * len(corpus), labels
        tagger.save(tmp_path / "m")
        loaded = lexner.load(tmp_path / "m")
        assert list(loaded.featurizer.label_sets) == ["coarse", "fine"]
        for labels in ("coarse", "fine"):
            assert loaded.tag_batch(texts + ODD_TEXTS, labels=labels) == tagger.tag_batch(texts + ODD_TEXTS,
                                                                                          labels=labels)
        assert loaded.tag("张三在北京工作。", labels="fine")[0].label == "name"
        with pytest.raises(ValueError, match="coarse, fine"):
            loaded.tag("张三", labels="msra")
