"""Pretrained vectors in word2vec text format (plain, ``.gz`` or ``.xz``) and embedding matrices.

Tokens of a vocabulary that the file lacks are initialised uniformly in ``[-sqrt(3/dim), sqrt(3/dim)]`` (the
variance of the uniform draw is 1/dim, as in the Lattice-LSTM reference code) from a seeded generator, so
the same vocabulary and seed always give the same matrix.  Nothing is cached on disk.
"""

from __future__ import annotations

import logging
import os
import re
from contextlib import closing
from typing import Collection, Iterator, Sequence

import numpy as np

from .fileio import DataFormatError, iter_lines
from .text import normalize

log = logging.getLogger(__name__)


_HEADER = re.compile(r"[0-9]{1,18}[ \t]+[0-9]{1,18}")  # longer numbers: no header (int() refuses 4,300 digits)


def is_word2vec_header(line: str) -> bool:
    """Whether ``line`` reads as a word2vec file's first line, ``COUNT DIM`` (ASCII digits)."""
    return bool(_HEADER.fullmatch(line.strip()))


def read_word2vec(
    path: str | os.PathLike, keep: Collection[str] | None = None, first: int = 0,
    lines: Iterator[tuple[int, str]] | None = None, vectors: bool = True, progress: bool = False,
) -> tuple[list[str], np.ndarray | None]:
    """Read a word2vec text file: a ``COUNT DIM`` header, then ``token v1 ... vDIM`` per line.

    Tokens are normalised.  With ``keep``, only the tokens in ``keep`` and the ``first`` tokens of the file
    (word2vec writes the most frequent first) are parsed — much faster for big files.
    Returns the tokens in file order and a float32 matrix of shape ``(len(tokens), DIM)`` (None with
    ``vectors=False``: the tokens alone, their numbers not parsed).  ``lines``: the file's numbered lines where
    the caller has begun reading it (:func:`lexner.lexicon.read_words`).  ``progress``: a progress bar over the
    header's COUNT rows (stderr; an ``.xz`` file of 255,088 bigrams takes ~13 s).

    A row with more numbers than DIM is a token holding a space (``Windows 7 0.1 ...``) — unless it is the
    first row, where it means the header's DIM is wrong, and the file is refused; such tokens are counted in a
    warning.
    """
    if lines is None:
        with closing(iter_lines(path)) as lines:
            return read_word2vec(path, keep, first, lines, vectors, progress)
    try:
        _, header = next(lines)
    except StopIteration:
        raise DataFormatError(path, 1, "empty file; expected a 'COUNT DIM' header") from None
    if not is_word2vec_header(header):
        raise DataFormatError(path, 1, f"expected a 'COUNT DIM' header, got {header[:60]!r}")
    count, dim = map(int, header.split())
    if dim == 0:
        raise DataFormatError(path, 1, "the header gives DIM 0; vectors need at least one number")
    tokens: list[str] = []
    rows: list[np.ndarray] = []
    row_lines: list[int] = []
    read = 0
    number_ended: list[tuple[int, str]] = []  # (line, token) of rows whose token ends in a number after a space
    tokenless: list[int] = []  # lines of rows without a token, left out
    if progress:
        from tqdm.auto import tqdm

        lines = tqdm(lines, total=count, unit="vector", unit_scale=True, desc=os.path.basename(path), leave=False)
    for lineno, line in lines:
        position = lineno - 2
        if not line.strip():
            continue
        read += 1
        parts = line.rstrip().split(" ")
        if len(parts) < dim + 1:
            tabs = " (tab-separated? word2vec separates by single spaces)" if "\t" in line else ""
            raise DataFormatError(path, lineno, f"expected a token and {dim} numbers, got {len(parts)} "
                                                f"fields{tabs}")
        token = normalize(" ".join(parts[:-dim]))  # a token may itself contain a space
        if not token:  # " 0.1 0.2": no token (a lone CR before it ended the line?); no vocabulary holds ""
            tokenless.append(lineno)
            continue
        if len(parts) > dim + 1 and _all_numbers(parts[1:]):
            if read == 1:  # the first row: every row is longer than the header says
                raise DataFormatError(path, lineno, f"expected a token and {dim} numbers (the header's DIM), "
                                                    f"got {len(parts) - 1} numbers")
            number_ended.append((lineno, token))
        if not vectors:
            tokens.append(token)
            continue
        if keep is not None and token not in keep and position >= first:
            continue
        try:
            with np.errstate(over="ignore"):  # a value past float32's range: refused below, without numpy's warning
                vector = np.array(parts[-dim:], dtype=np.float32)
        except ValueError:
            empty = " (an empty field: two spaces in a row?)" if "" in parts[-dim:] else ""
            raise DataFormatError(path, lineno, f"vector contains a value that is not a number{empty}") from None
        tokens.append(token)
        rows.append(vector)
        row_lines.append(lineno)
    if read != count:
        log.warning("%s: the header says %d vectors, the file holds %d; read them all", path, count, read)
    if tokenless:
        log.warning("%s: left out %d row(s) without a token (line %s%s)", path, len(tokenless),
                    ", ".join(map(str, tokenless[:5])), ", ..." if len(tokenless) > 5 else "")
    if number_ended:
        log.warning("%s: %d row(s) read as a token holding a space and ending in a number (e.g. line %d: %r); if "
                    "they are vectors with too many numbers, the file is damaged", path, len(number_ended),
                    *number_ended[0])
    if not vectors:
        return tokens, None
    matrix = np.stack(rows) if rows else np.zeros((0, dim), dtype=np.float32)
    bad = np.flatnonzero(~np.isfinite(matrix).all(axis=1))
    if len(bad):  # nan, inf, or a number beyond float32 (which reads as inf): training would turn to nan
        raise DataFormatError(path, row_lines[bad[0]], f"vector holds a value that is not a finite float32 number "
                                                       f"({len(bad)} such line(s) in the file)")
    return tokens, matrix


def _all_numbers(fields: Sequence[str]) -> bool:
    try:
        np.array(fields, dtype=np.float32)
    except ValueError:
        return False
    return True


def embedding_matrix(
    vocab: Sequence[str],
    pretrained: tuple[Sequence[str], np.ndarray] | None,
    dim: int,
    seed: int = 0,
    padding_index: int | None = 0,
) -> tuple[np.ndarray, int]:
    """Build a ``(len(vocab), dim)`` matrix: rows of ``pretrained = (tokens, vectors)``, the rest random.

    Random rows are uniform in ``[-sqrt(3/dim), sqrt(3/dim)]``; the row at ``padding_index`` is zero.
    Returns the matrix and how many vocabulary tokens had a pretrained vector.
    """
    rng = np.random.default_rng(seed)
    scale = np.sqrt(3.0 / dim)
    matrix = rng.uniform(-scale, scale, size=(len(vocab), dim)).astype(np.float32)
    found = 0
    if pretrained is not None:
        tokens, vectors = pretrained
        if vectors.shape[1] != dim:
            raise ValueError(f"pretrained vectors have {vectors.shape[1]} dimensions, the model expects {dim}")
        index = {tok: i for i, tok in enumerate(vocab)}
        rows: dict[int, int] = {}  # vocabulary id -> first row of the file with that (normalised) token
        for k, tok in enumerate(tokens):
            if tok in index:
                rows.setdefault(index[tok], k)
        if rows:
            matrix[list(rows)] = vectors[list(rows.values())]
        found = len(rows)
    if padding_index is not None:
        matrix[padding_index] = 0.0
    return matrix, found
