"""An ensemble of trained taggers: ``lexner.load([dir1, dir2, ...])``.

Each member tags the same pieces with its own vocabulary and lexicon; their CRF tag marginals (see
``ConstrainedCRF.log_marginals``) are averaged per character, and the constrained Viterbi search picks the
legal tag sequence with the highest sum of log averaged marginals (no transition scores: the members' own
transitions are already inside their marginals).  Whitespace, long texts, typed dictionaries and heads of
multi-task members (``labels=``) work as for one tagger.  The first member's label sets are the ensemble's; every
other member answers each of them with its head of that name and entity types, else its default head, else its
one head with those types (their tag order may differ), so a one-task model and a multi-task one (the bundled
model's ``weibo`` head beside a Weibo model) can be averaged: put the model with the fewest heads first.  As a
distillation teacher, pass the members (``ensemble.members``): they are averaged.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

from ..crf import ConstrainedCRF
from .base import Tagger, word_list


class Ensemble(Tagger):
    name = "ensemble"

    def __init__(self, members: Sequence[Tagger]):
        members = list(members)
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two models")
        first = members[0].featurizer
        self.heads = [matching_heads(first.label_sets, member, index) for index, member in enumerate(members)]
        super().__init__(None, first)
        self.members = nn.ModuleList(members)
        self.set_piece_length(min(member.max_length for member in members))  # pieces every member was made for
        # the members' type renames (lexner export --rename: NR → PER), so that evaluate reads gold data the
        # members were trained on as they do; a type renamed two ways is left out
        renames: dict[str, set[str]] = {}
        for member in members:
            card = member.metadata.get("card")
            renamed = card.get("renamed") if isinstance(card, dict) else None
            for old, new in renamed.items() if isinstance(renamed, dict) else ():
                renames.setdefault(old, set()).add(new)
        if renamed := {old: next(iter(new)) for old, new in renames.items() if len(new) == 1}:
            self.metadata = {"card": {"renamed": renamed}}
        self.decoders = {name: ConstrainedCRF(ls.tags) for name, ls in first.label_sets.items()}
        for crf in self.decoders.values():  # decoding adds no scores of its own, only the constraints
            for p in crf.parameters():
                nn.init.zeros_(p)
        self.eval()

    def add_words(self, words: Iterable[str]) -> int:
        """:meth:`Tagger.add_words` for every member with a lexicon (members without one tag as before); returns
        the most words new to one of them.  ``ValueError`` if no member has a lexicon."""
        words = word_list(words)
        lattice = [m for m in self.members if m.featurizer.lexicon is not None]
        if not lattice:
            raise ValueError("no member of this ensemble uses a lexicon; added words would have no effect")
        return max(member.add_words(words) for member in lattice)

    @property
    def runtime(self) -> str | None:
        """How the members run (:attr:`Tagger.runtime`): their runtime if they share one, None if they differ
        (each as its own directory asked)."""
        found = {member.runtime for member in getattr(self, "members", ())}  # none yet while Tagger.__init__ runs
        return found.pop() if len(found) == 1 else None

    @runtime.setter
    def runtime(self, value: str) -> None:  # Tagger.__init__ and train() set it: the members' own is what counts
        pass

    def train(self, mode: bool = True) -> "Ensemble":
        """Each member's :meth:`Tagger.train` (which drops its own runtime sessions and says so in its runtime)."""
        return nn.Module.train(self, mode)

    def describe(self) -> dict[str, Any]:
        """:meth:`Tagger.describe`, with what the members store, their lexicons' sizes and how they run: one value
        where they agree, each member's where they differ."""
        described = super().describe()
        members = [member.describe() for member in self.members]
        for key in ("stored", "lexicon_words", "runtime"):
            found = [m[key] for m in members]
            described[key] = found[0] if len(set(map(str, found))) == 1 else found
        return described

    def save(self, *args, **kwargs) -> None:
        raise NotImplementedError("an ensemble is not saved; save its members and load them as a list")

    def marginals(self, texts: Sequence[str], labels: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The members' averaged tag marginals of non-empty ``texts`` (B, T, tags, in the first member's tag
        order) and the mask (B, T)."""
        name = self.featurizer.default_labels if labels is None else labels
        order = self.featurizer.label_set(name).tags
        total, mask = None, None
        with torch.inference_mode():
            for member, heads in zip(self.members, self.heads):
                head = heads[name]
                label_set = member.featurizer.label_set(head)
                batch = member.featurizer.collate([member.featurizer.encode_one(t) for t in texts], head)
                batch = batch.to(member.device)
                probs = member.head(head)[1].log_marginals(member.emissions(batch), batch.mask).exp()
                probs = probs[..., [label_set.tag_index[t] for t in order]].cpu()
                total, mask = (probs if total is None else total + probs), batch.mask.cpu()
        return total / len(self.members), mask

    def decode_pieces(self, pieces: list[str], constraints: list[dict], batch_size: int,
                      labels: str | None, done: Callable[[int], None] | None = None) -> list[list]:
        name = self.featurizer.default_labels if labels is None else labels
        found: list[list] = [[] for _ in pieces]
        order = sorted(range(len(pieces)), key=lambda j: len(pieces[j]))
        for k in range(0, len(order), batch_size):
            chunk = order[k : k + batch_size]
            probs, mask = self.marginals([pieces[j] for j in chunk], labels)
            allowed = self.featurizer.allowed([constraints[j] for j in chunk], mask.shape[1], labels)
            paths = self.decoders[name].viterbi(probs.clamp_min(1e-30).log(), mask, allowed)
            for j, spans in zip(chunk, self.featurizer.decode_paths(paths, labels)):
                found[j] = spans
            if done is not None:
                done(k + len(chunk))
        return found


def matching_heads(label_sets: dict, member: Tagger, index: int) -> dict[str, str]:
    """For each of ``label_sets`` (name → label set, the first member's), the head of ``member`` (the
    ``index``-th) that answers it (:meth:`Featurizer.head_with_tags`: the head of that name with the same tags,
    else the default head, else the only one).  ``ValueError`` naming the member and the label set when none
    or several fit."""
    found = {}
    for name, label_set in label_sets.items():
        head = member.featurizer.head_with_tags(name, label_set.tags)
        if head is None:
            own = member.featurizer.label_sets
            heads = "; ".join(f"{h}: {', '.join(mine.entity_types)}" for h, mine in own.items())
            where = f" ({member.source})" if member.source is not None else ""
            raise ValueError(f"ensemble member {index + 1}{where} has no head, or several, with the first member's label "
                             f"set {name!r} ({', '.join(label_set.entity_types)}); its heads: {heads}")
        found[name] = head
    return found
