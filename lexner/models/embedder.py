"""What a tagger reads, and the embedding tables that turn it into vectors.

Each model declares its inputs once, in :meth:`~lexner.models.base.Tagger.inputs` (an :class:`Inputs` for a
config): characters with their bigrams, the lattice of lexicon words, the pieces of a pretrained encoder.
``build_tagger`` reads the declaration to decide which vocabularies the featurizer builds, whether it needs a
lexicon or an encoder tokenizer, and which pretrained vectors to read; the trainer reads it too.  A model that
reads characters or words embeds them through one :class:`Embedder` (``tagger.embed``), which also owns
pretrained initialisation and the growth of the word table when words are added to the lexicon.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..features import Batch, Featurizer
from ..onnx_encoder import Graph
from ..vectors import embedding_matrix


@dataclass(frozen=True)
class Inputs:
    """What a model reads: ``chars`` — character ids (and bigram ids, when its bigram table is not empty), so
    the character and bigram vocabularies are built from the training data; ``words`` — the lattice of lexicon
    matches (a lexicon is required); ``pieces`` — the subword pieces of a pretrained encoder (its tokenizer is
    required)."""

    chars: bool = True
    words: bool = False
    pieces: bool = False


class Embedder(nn.Module):
    """The embedding tables of a model: characters, bigrams (``bigram_dim`` > 0) and lexicon words
    (``word_dim`` > 0), each with row 0 for padding and the featurizer's vocabulary as its rows."""

    def __init__(self, featurizer: Featurizer, char_dim: int, bigram_dim: int = 0, word_dim: int = 0):
        super().__init__()
        self.featurizer = featurizer
        self.chars = nn.Embedding(len(featurizer.chars), char_dim, padding_idx=0)
        self.bigrams = nn.Embedding(len(featurizer.bigrams), bigram_dim, padding_idx=0) if bigram_dim else None
        self.words = nn.Embedding(len(featurizer.word_vocab), word_dim, padding_idx=0) if word_dim else None
        self.width = char_dim + bigram_dim  # of :meth:`characters`

    def characters(self, batch: Batch) -> torch.Tensor:
        """Each character's embedding joined with its bigram's: shape (B, T, ``width``)."""
        x = self.chars(batch.chars)
        return torch.cat([x, self.bigrams(batch.bigrams)], dim=-1) if self.bigrams is not None else x

    def onnx_characters(self, graph: Graph) -> str:
        """:meth:`characters` as nodes of an ONNX ``graph`` (see :meth:`lexner.models.base.Tagger.onnx_features`)."""
        x = graph.lookup(self.chars.weight, "chars")
        if self.bigrams is None:
            return x
        return graph.op("Concat", x, graph.lookup(self.bigrams.weight, "bigrams"), axis=-1)

    def tables(self) -> dict[str, tuple[nn.Embedding, Sequence[str]]]:
        """``{"chars"|"bigrams"|"words": (table, its vocabulary)}`` of the tables this model has."""
        f = self.featurizer
        tables = {"chars": (self.chars, f.chars.tokens), "bigrams": (self.bigrams, f.bigrams.tokens),
                  "words": (self.words, f.word_vocab)}
        return {name: table for name, table in tables.items() if table[0] is not None}

    def init_from(self, pretrained: Mapping[str, tuple[Sequence[str], Any]], seed: int = 0) -> dict[str, int]:
        """Fill the tables from ``{"chars": (tokens, vectors), ...}`` (see ``read_word2vec``); tables without
        pretrained vectors are initialised randomly.  Returns, per table, how many of its tokens had one."""
        found = {}
        for name, (layer, vocab) in self.tables().items():
            matrix, found[name] = embedding_matrix(vocab, pretrained.get(name), layer.embedding_dim, seed=seed)
            with torch.no_grad():
                layer.weight.copy_(torch.from_numpy(matrix))
        return found

    def new_word_rows(self, words: Sequence[str]) -> torch.Tensor:
        """Embeddings for words about to join the lexicon: the mean of their characters' embeddings when
        characters and words have the same width (unknown characters count as the unknown row), otherwise
        the mean of all word embeddings."""
        with torch.no_grad():
            if self.chars.embedding_dim == self.words.embedding_dim:
                device = self.chars.weight.device
                return torch.stack([self.chars.weight[torch.tensor(self.featurizer.chars.encode(list(w)),
                                                                   device=device)].mean(0) for w in words])
            return self.words.weight[1:].mean(0).expand(len(words), -1).clone()

    def append_words(self, rows: torch.Tensor) -> None:
        """Grow the word table by ``rows`` (the lexicon's new words, in order)."""
        with torch.no_grad():
            weight = torch.cat([self.words.weight, rows.to(self.words.weight)])
        self.words.weight = nn.Parameter(weight, requires_grad=self.words.weight.requires_grad)
        self.words.num_embeddings = weight.shape[0]


# the names of the tables' weights before they moved into the Embedder (model directories of format 1 and 2)
LEGACY_KEYS = {"char_embedding.": "embed.chars.", "bigram_embedding.": "embed.bigrams.",
               "word_embedding.": "embed.words."}


def current_key(key: str) -> str:
    """A saved weight's name as this version of lexner calls it."""
    for old, new in LEGACY_KEYS.items():
        if key.startswith(old):
            return new + key[len(old):]
    return key
