"""Write the character embeddings of Baidu's LAC-small model, shipped inside the ``jieba`` package
(``jieba/lac_small/model_baseline/word_emb``: 20,941 x 128 float32 behind a 29-byte PaddlePaddle header, rows
named by ``word.dic``), as a word2vec text file for ``lexner train --char-vectors FILE --set char_dim=128``.

Only single characters are written (LAC's OOV_* placeholder rows are not characters).

    python benchmarks/lac_char_vectors.py --out runs/lac_char.128d.vec
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

HEADER_BYTES = 29  # PaddlePaddle LoDTensor header before the raw little-endian float32 values
DIM = 128


def lac_char_vectors(lac_dir: Path) -> tuple[list[str], np.ndarray]:
    """LAC-small's characters and their 128-d vectors."""
    table = np.frombuffer((lac_dir / "model_baseline" / "word_emb").read_bytes(), "<f4", offset=HEADER_BYTES)
    table = table.reshape(-1, DIM)
    chars, rows = [], []
    for line in (lac_dir / "word.dic").read_text(encoding="utf-8").splitlines():
        index, _, char = line.partition("\t")
        if len(char) == 1 and not char.isspace():
            chars.append(char)
            rows.append(int(index))
    return chars, table[rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--lac-dir", type=Path, help="jieba's lac_small folder (default: the installed jieba's)")
    args = parser.parse_args()
    lac_dir = args.lac_dir
    if lac_dir is None:
        import jieba

        lac_dir = Path(jieba.__file__).parent / "lac_small"
    chars, vectors = lac_char_vectors(lac_dir)
    from lexner.fileio import atomic_file

    with atomic_file(args.out) as f:  # an earlier file survives a failed run
        f.write(f"{len(chars)} {DIM}\n")
        for char, row in zip(chars, vectors):
            f.write(char + " " + " ".join(f"{v:.5f}" for v in row) + "\n")
    print(f"{len(chars)} characters -> {args.out}")


if __name__ == "__main__":
    main()
