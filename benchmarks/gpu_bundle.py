"""The MSRA files and pretrained vectors a GPU check needs, small enough to carry to a lent machine.

    python benchmarks/gpu_bundle.py .gpu/data      # from $LEXNER_DATA (used by benchmarks/gpu_checks.sh prepare)

MSRA train and test, xz-compressed; the character vectors, xz-compressed; the bigram vectors cut to the rows the
MSRA recipe reads (the file's first ``EXTRA_PRETRAINED_BIGRAMS`` rows and the bigrams seen at least 3 times in
MSRA train or test), so a model built with ``--bigram-min-count 3`` has the same character and bigram
vocabularies and vectors as from the full files; the word vectors cut to the words that occur in MSRA train or
test.  The lexicon is therefore smaller (62k words instead of 122k): the words left out never match an MSRA
sentence, so no training step reads them, but the word embedding table the optimiser updates is half as large.
"""

from __future__ import annotations

import argparse
import lzma
import shutil
from pathlib import Path

from lexner.api import EMBEDDING_FILES, EXTRA_PRETRAINED_BIGRAMS
from lexner.data import data_root, read_file
from lexner.features import Featurizer
from lexner.lexicon import Lexicon
from lexner.text import normalize

MSRA_FILES = ("msra/train.char.bmes", "msra/test.char.bmes")


def cut_vectors(source: Path, target: Path, keep, first: int) -> int:
    """Copy the word2vec file ``source`` to ``target`` (xz), keeping its ``first`` rows and the rows whose
    normalised token ``keep`` accepts; the header's count says how many were kept."""
    with lzma.open(source, "rt", encoding="utf-8") as f:
        dim = f.readline().split()[1]
        rows = [line for i, line in enumerate(f) if i < first or keep(normalize(line.split(" ", 1)[0]))]
    with lzma.open(target, "wt", encoding="utf-8", preset=9) as f:
        f.write(f"{len(rows)} {dim}\n")
        f.writelines(rows)
    return len(rows)


def compress(source: Path, target: Path) -> None:
    with open(source, "rb") as f, lzma.open(target, "wb", preset=9) as g:
        shutil.copyfileobj(f, g)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    root = data_root()
    for sub in ("msra", "embeddings"):
        (args.out / sub).mkdir(parents=True, exist_ok=True)
    sentences = [s for name in MSRA_FILES for s in read_file(root / name)]
    for name in MSRA_FILES:
        compress(root / name, args.out / f"{name}.xz")
    compress(root / EMBEDDING_FILES["chars"], args.out / f"{EMBEDDING_FILES['chars']}.xz")
    _, bigram_counts = Featurizer.count_tokens(sentences)
    seen = {b for b, count in bigram_counts.items() if count >= 3}
    kept = cut_vectors(root / EMBEDDING_FILES["bigrams"], args.out / EMBEDDING_FILES["bigrams"], seen.__contains__,
                       EXTRA_PRETRAINED_BIGRAMS)
    print(f"bigram vectors: {kept} rows kept")
    lexicon = Lexicon.from_paths(root / EMBEDDING_FILES["words"])
    matched = {lexicon.words[m.word_id] for s in sentences for m in lexicon.match(s.text)}
    kept = cut_vectors(root / EMBEDDING_FILES["words"], args.out / EMBEDDING_FILES["words"], matched.__contains__, 0)
    print(f"word vectors: {kept} of {len(lexicon)} words kept (those matched in MSRA)")


if __name__ == "__main__":
    main()
