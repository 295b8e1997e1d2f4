"""lexner.vectors: word2vec text files and embedding matrices."""

from __future__ import annotations

import gzip
import lzma

import numpy as np
import pytest

from lexner.fileio import DataFormatError
from lexner.vectors import embedding_matrix, read_word2vec

VEC = "4 3\n北京 0.1 0.2 0.3\nＡＢ -1 2.5 3e-2\n上 4 5 6\n上海 7 8 9\n"
TOKENS = ["北京", "AB", "上", "上海"]
MATRIX = np.array([[0.1, 0.2, 0.3], [-1, 2.5, 0.03], [4, 5, 6], [7, 8, 9]], dtype=np.float32)


def _write(path, text, opener=None):
    if opener is None:
        path.write_text(text, encoding="utf-8")
    else:
        with opener(path, "wb") as handle:
            handle.write(text.encode("utf-8"))
    return path


# --- read_word2vec ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix, opener", [("", None), (".gz", gzip.open), (".xz", lzma.open)])
def test_read_word2vec(tmp_path, suffix, opener):
    path = _write(tmp_path / f"v.vec{suffix}", VEC, opener)
    tokens, matrix = read_word2vec(path)
    assert tokens == TOKENS  # file order, normalised
    assert matrix.dtype == np.float32
    assert matrix.shape == (4, 3)
    np.testing.assert_array_equal(matrix, MATRIX)


def test_read_word2vec_crlf_blank_lines_and_trailing_space(tmp_path):
    path = tmp_path / "v.vec"
    path.write_bytes("2 2\r\n\r\n北京 1 2 \r\n上海 3 4\r\n\r\n".encode("utf-8"))
    tokens, matrix = read_word2vec(path)
    assert tokens == ["北京", "上海"]
    np.testing.assert_array_equal(matrix, [[1, 2], [3, 4]])


def test_read_word2vec_token_with_space(tmp_path):
    path = _write(tmp_path / "v.vec", "1 2\nNew York 1 2\n")
    tokens, matrix = read_word2vec(path)
    assert tokens == ["New York"]
    np.testing.assert_array_equal(matrix, [[1, 2]])


def test_read_word2vec_keep_and_first(tmp_path):
    path = _write(tmp_path / "v.vec", VEC)
    tokens, matrix = read_word2vec(path, keep={"上海"})
    assert tokens == ["上海"]
    np.testing.assert_array_equal(matrix, MATRIX[[3]])

    tokens, matrix = read_word2vec(path, keep={"上海"}, first=2)
    assert tokens == ["北京", "AB", "上海"]
    np.testing.assert_array_equal(matrix, MATRIX[[0, 1, 3]])

    # keep is compared with the normalised token
    tokens, _ = read_word2vec(path, keep={"AB", "上"})
    assert tokens == ["AB", "上"]

    tokens, _ = read_word2vec(path, keep=set(), first=4)
    assert tokens == TOKENS

    tokens, matrix = read_word2vec(path, keep=set())
    assert tokens == []
    assert matrix.shape == (0, 3) and matrix.dtype == np.float32


def test_read_word2vec_keep_skips_unparsed_bad_values(tmp_path):
    # tokens not kept are not parsed, so a malformed value there does not matter
    path = _write(tmp_path / "v.vec", "2 2\n北京 x y\n上海 3 4\n")
    tokens, matrix = read_word2vec(path, keep={"上海"})
    assert tokens == ["上海"]
    np.testing.assert_array_equal(matrix, [[3, 4]])


def test_read_word2vec_header_only(tmp_path):
    tokens, matrix = read_word2vec(_write(tmp_path / "v.vec", "0 5\n"))
    assert tokens == [] and matrix.shape == (0, 5)


@pytest.mark.parametrize("header", ["", "北京 1 2 3\n", "3\n", "3 x\n", "3 2 1\n", "-3 2\n", "3.0 2\n"])
def test_read_word2vec_bad_header(tmp_path, header):
    path = _write(tmp_path / "bad_header.vec", header + "北京 1 2\n" if header else "")
    with pytest.raises(DataFormatError) as info:
        read_word2vec(path)
    assert f"{path}:1" in str(info.value)
    assert "bad_header.vec" in str(info.value)
    assert info.value.line == 1


@pytest.mark.parametrize(
    "body, line",
    [
        ("北京 1 2 3\n上海 1 2\n", 3),  # too few numbers
        ("北京 1 2 3\n\n上海\n", 4),  # no numbers at all (line numbers count blank lines)
        ("北京 1 2 3\n上海 1 2 x\n", 3),  # not a number
        ("北京 1 nan? 3\n", 2),
        ("北京 1 2 3\n上海 1 nan 3\n", 3),  # not finite: training would turn to nan
        ("北京 1 2 3\n\n上海 -inf 2 3\n广州 1 2 inf\n", 4),  # the first such line
        ("北京 1 2 1e39\n", 2),  # beyond float32: read as inf
    ],
)
@pytest.mark.filterwarnings("error::RuntimeWarning")  # a clean error, without numpy's overflow warning first
def test_read_word2vec_bad_vector(tmp_path, body, line):
    path = _write(tmp_path / "bad_vector.vec", "2 3\n" + body)
    with pytest.raises(DataFormatError) as info:
        read_word2vec(path)
    assert f"{path}:{line}" in str(info.value)
    assert info.value.line == line


def test_read_word2vec_bad_vector_in_compressed_file(tmp_path):
    path = _write(tmp_path / "bad.vec.xz", "2 3\n北京 1 2 3\n上海 1 2\n", lzma.open)
    with pytest.raises(DataFormatError, match=r"bad\.vec\.xz:3"):
        read_word2vec(path)


# --- embedding_matrix ---------------------------------------------------------------------------------------------

VOCAB = ["<pad>", "<unk>", "北京", "上海", "广州"]


def test_embedding_matrix_copies_pretrained_rows():
    pretrained = (["上海", "深圳", "北京"], np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], dtype=np.float32))
    matrix, found = embedding_matrix(VOCAB, pretrained, dim=3)
    assert matrix.shape == (5, 3) and matrix.dtype == np.float32
    assert found == 2
    np.testing.assert_array_equal(matrix[2], [7, 8, 9])
    np.testing.assert_array_equal(matrix[3], [1, 2, 3])
    np.testing.assert_array_equal(matrix[0], [0, 0, 0])
    scale = np.sqrt(3 / 3)
    for row in (1, 4):
        assert np.all(np.abs(matrix[row]) <= scale)
        assert np.any(matrix[row] != 0)


def test_embedding_matrix_random_rows_are_uniform_in_range():
    dim = 50
    vocab = [f"t{i}" for i in range(2000)]
    matrix, found = embedding_matrix(vocab, None, dim=dim, padding_index=None)
    assert found == 0
    scale = np.sqrt(3.0 / dim)
    assert np.abs(matrix).max() <= scale
    assert matrix.max() > 0.99 * scale and matrix.min() < -0.99 * scale  # the whole range is used
    assert abs(matrix.mean()) < 0.01
    assert matrix.var() == pytest.approx(1.0 / dim, rel=0.05)


def test_embedding_matrix_padding_row():
    matrix, _ = embedding_matrix(VOCAB, None, dim=4)
    np.testing.assert_array_equal(matrix[0], np.zeros(4))
    assert np.all(np.any(matrix[1:] != 0, axis=1))

    matrix, _ = embedding_matrix(VOCAB, None, dim=4, padding_index=2)
    np.testing.assert_array_equal(matrix[2], np.zeros(4))
    assert np.any(matrix[0] != 0)

    matrix, _ = embedding_matrix(VOCAB, None, dim=4, padding_index=None)
    assert np.all(np.any(matrix != 0, axis=1))


def test_embedding_matrix_padding_row_zero_even_if_pretrained():
    pretrained = (["<pad>"], np.ones((1, 2), dtype=np.float32))
    matrix, _ = embedding_matrix(VOCAB, pretrained, dim=2)
    np.testing.assert_array_equal(matrix[0], [0, 0])


def test_embedding_matrix_deterministic_by_seed():
    pretrained = (["北京"], np.array([[1, 2, 3]], dtype=np.float32))
    a, _ = embedding_matrix(VOCAB, pretrained, dim=3, seed=7)
    b, _ = embedding_matrix(VOCAB, pretrained, dim=3, seed=7)
    c, _ = embedding_matrix(VOCAB, pretrained, dim=3, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[[1, 3, 4]], c[[1, 3, 4]])
    np.testing.assert_array_equal(a[2], c[2])  # pretrained rows do not depend on the seed
    np.testing.assert_array_equal(c[0], [0, 0, 0])


def test_embedding_matrix_dimension_mismatch():
    with pytest.raises(ValueError, match="dimension"):
        embedding_matrix(VOCAB, (["北京"], np.zeros((1, 4), dtype=np.float32)), dim=3)


def test_embedding_matrix_from_file(tmp_path):
    tokens, vectors = read_word2vec(_write(tmp_path / "v.vec", VEC))
    vocab = ["<pad>", "<unk>", "AB", "上海", "广州"]
    matrix, found = embedding_matrix(vocab, (tokens, vectors), dim=3)
    assert found == 2
    np.testing.assert_array_equal(matrix[2], MATRIX[1])
    np.testing.assert_array_equal(matrix[3], MATRIX[3])


@pytest.mark.parametrize("body, message", [
    ("北 0.1 0.2 0.3 0.4\n京 1 2 3 4\n", r"v\.vec:2: expected a token and 3 numbers \(the header's DIM\), got 4 "
                                         "numbers"),  # the first row: the header's DIM is wrong
    ("北\t0.1\t0.2\t0.3\n", r"v\.vec:2: .*got 1 fields \(tab-separated\? word2vec separates by single spaces\)"),
    ("北 0.1  0.3\n", r"v\.vec:2: .*not a number \(an empty field: two spaces in a row\?\)"),
])
def test_read_word2vec_names_what_is_wrong_with_a_row(tmp_path, body, message):
    path = _write(tmp_path / "v.vec", "1 3\n" + body)
    with pytest.raises(DataFormatError, match=message):
        read_word2vec(path)


def test_read_word2vec_refuses_dim_0_and_says_when_the_count_is_not_the_rows(tmp_path, caplog):
    with pytest.raises(DataFormatError, match=r"v\.vec:1: the header gives DIM 0"):
        read_word2vec(_write(tmp_path / "v.vec", "2 0\n北\n京\n"))
    with caplog.at_level("WARNING", logger="lexner.vectors"):
        tokens, _ = read_word2vec(_write(tmp_path / "v.vec", "5 2\n北 1 2\n\n京 3 4\nNew York 5 6\nWindows 7 5 6\n"),
                                  keep={"北", "Windows 7"})
    assert tokens == ["北", "Windows 7"]  # a token may hold a space, and end in a number after it
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / 'v.vec'}: the header says 5 vectors, the file holds 4; read them all",
        f"{tmp_path / 'v.vec'}: 1 row(s) read as a token holding a space and ending in a number (e.g. line 6: "
        "'Windows 7'); if they are vectors with too many numbers, the file is damaged"]
    tokens, matrix = read_word2vec(tmp_path / "v.vec", vectors=False)  # the tokens alone, no numbers parsed
    assert tokens == ["北", "京", "New York", "Windows 7"] and matrix is None


def test_reading_a_vector_file_can_show_its_progress(tmp_path, capsys):
    """Reading the data root's bigram vectors takes ~13 s: a bar over the header's count (training passes its
    --no-progress / terminal choice down)."""
    path = tmp_path / "v.vec"
    path.write_text("3 2\n北京 1 2\n上海 3 4\n广州 5 6\n", encoding="utf-8")
    quiet = read_word2vec(path)
    capsys.readouterr()
    shown = read_word2vec(path, progress=True)
    assert shown[0] == quiet[0] and (shown[1] == quiet[1]).all()
    assert "v.vec" in capsys.readouterr().err  # the bar, named after the file


def test_rows_without_a_token_are_left_out_and_a_header_too_long_to_be_numbers_is_no_header(tmp_path, caplog):
    """A row " 0.3 0.4" (a lone CR ended the line before it) gave the token "": the model trained, then could not
    be loaded (its chars.json held ""); a header of 5,000 digits was a ValueError traceback (helper fuzzing)."""
    path = tmp_path / "cr.vec"
    path.write_bytes("3 2\n张 0.1 0.2\n\r 0.3 0.4\n三 0.5 0.6\n".encode())
    with caplog.at_level("WARNING"):
        tokens, vectors = read_word2vec(path)
    assert tokens == ["张", "三"] and np.allclose(vectors, [[0.1, 0.2], [0.5, 0.6]])
    assert "left out 1 row(s) without a token (line 4)" in caplog.text
    huge = tmp_path / "huge.vec"
    huge.write_text("1 " + "9" * 5000 + "\n北京 0.1\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="expected a 'COUNT DIM' header"):
        read_word2vec(huge)


def test_a_vocabulary_never_holds_an_empty_token():
    from lexner.vocab import Vocab

    with pytest.raises(ValueError, match="non-empty string"):
        Vocab(["张", ""])
