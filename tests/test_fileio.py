"""lexner.fileio: text opening (BOM, line endings, compression), line iteration, JSON, atomic directories."""

from __future__ import annotations

import gzip
import json
import io
import lzma
import os
from pathlib import Path

import pytest

from lexner.fileio import (DataFormatError, NamedStream, atomic_directory, atomic_file, iter_lines, open_text,
                           read_json, write_json)

TEXT = "北京\n上海 1\n\nＡＢ\n"
LINES = [(1, "北京"), (2, "上海 1"), (3, ""), (4, "ＡＢ")]


def _write(path, raw: bytes, opener=None):
    if opener is None:
        path.write_bytes(raw)
    else:
        with opener(path, "wb") as handle:
            handle.write(raw)
    return path


@pytest.mark.parametrize(
    "raw",
    [
        TEXT.encode("utf-8"),
        ("\ufeff" + TEXT).encode("utf-8"),  # BOM
        TEXT.replace("\n", "\r\n").encode("utf-8"),  # CRLF
        TEXT.replace("\n", "\r").encode("utf-8"),  # old-Mac CR
        ("\ufeff" + TEXT.replace("\n", "\r")).encode("utf-8"),  # both (THUOCL_diming.txt)
    ],
)
@pytest.mark.parametrize("suffix, opener", [(".txt", None), (".gz", gzip.open), (".xz", lzma.open)])
def test_open_text_and_iter_lines(tmp_path, raw, suffix, opener):
    path = _write(tmp_path / f"f{suffix}", raw, opener)
    with open_text(path) as handle:
        assert handle.read() == TEXT
    assert list(iter_lines(path)) == LINES


def test_iter_lines_keeps_other_whitespace_and_last_line_without_newline(tmp_path):
    path = _write(tmp_path / "f.txt", "a \t\n \nb".encode("utf-8"))
    assert list(iter_lines(path)) == [(1, "a \t"), (2, " "), (3, "b")]


def test_iter_lines_empty_file(tmp_path):
    assert list(iter_lines(_write(tmp_path / "f.txt", b""))) == []


def test_bom_only_at_start_is_dropped(tmp_path):
    path = _write(tmp_path / "f.txt", "\ufeffa\n\ufeffb\n".encode("utf-8"))
    assert list(iter_lines(path)) == [(1, "a"), (2, "\ufeffb")]


@pytest.mark.parametrize("raw", [b"\xef", b"\xef\xbb", b"\xef\xbbx"])
def test_a_file_that_begins_like_a_bom_is_not_lost(tmp_path, raw):
    (tmp_path / "t.txt").write_bytes(raw)  # the utf-8-sig codec used to swallow the first two
    assert [n for n, _ in iter_lines(tmp_path / "t.txt", errors="replace")] == [1]


def test_open_text_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        open_text(tmp_path / "missing.txt")
    with pytest.raises(IsADirectoryError, match="is a directory"):
        open_text(tmp_path)  # a directory is not a file


def test_invalid_utf8_on_first_line(tmp_path):
    path = _write(tmp_path / "bad.txt", b"a\xffb\nok\n")
    with pytest.raises(DataFormatError) as info:
        list(iter_lines(path))
    assert f"{path}:1" in str(info.value)
    assert "UTF-8" in str(info.value)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32", "utf-32-be"])  # -be: the mark written
@pytest.mark.parametrize("errors", ["strict", "skip", "replace"])
def test_a_utf16_file_is_refused_with_a_hint_whatever_errors_says(tmp_path, encoding, errors):
    """UTF-32-BE's mark (00 00 FE FF) was taken for text: an error without the hint, or garbage tagged."""
    raw = "张三在北京\n李四\n".encode(encoding)
    path = _write(tmp_path / "u16.txt", raw if not encoding.endswith("-be") else "\ufeff".encode(encoding) + raw)
    with pytest.raises(DataFormatError, match=r"u16.txt:1: starts with a UTF-16 \(or UTF-32\) byte-order mark.*iconv"):
        list(iter_lines(path, errors=errors))


@pytest.mark.parametrize("suffix, opener", [(".txt", None), (".gz", gzip.open)])
def test_invalid_utf8_names_the_line(tmp_path, suffix, opener):
    path = _write(tmp_path / f"bad{suffix}", b"ab\ncd\ne\xfff\ngh\n", opener)
    with pytest.raises(DataFormatError) as info:
        list(iter_lines(path))
    assert f"{path}:3" in str(info.value)
    assert info.value.line == 3


@pytest.mark.parametrize("suffix, compress", [(".gz", gzip.compress), (".xz", lzma.compress)])
def test_compressed_data_cut_short_or_corrupt_names_the_file(tmp_path, suffix, compress):
    whole = compress(b"".join(b"line %d\n" % i for i in range(20000)))
    for name, raw, where in [("cut", whole[: len(whole) // 2], "after line"), ("empty", whole[:5], "at its start"),
                             ("plain", b"not compressed\n", "at its start")]:
        path = _write(tmp_path / f"{name}{suffix}", raw)
        lines = []
        with pytest.raises(DataFormatError, match=f"cannot be decompressed {where}") as info:
            lines.extend(iter_lines(path))
        assert info.value.path == str(path)
        assert lines == [(k + 1, f"line {k}") for k in range(len(lines))]  # every line before the damage


def test_atomic_file_through_a_symlink_writes_the_linked_file_and_keeps_the_link(tmp_path):
    from lexner.fileio import atomic_file

    (tmp_path / "real.txt").write_text("old\n", encoding="utf-8")
    (tmp_path / "link.txt").symlink_to("real.txt")
    with atomic_file(tmp_path / "link.txt") as out:
        out.write("new\n")
    assert (tmp_path / "link.txt").is_symlink()
    assert (tmp_path / "real.txt").read_text(encoding="utf-8") == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.txt", "real.txt"]


def test_atomic_file_writes_into_a_named_pipe_and_never_replaces_it_with_a_file(tmp_path):
    import os
    import stat
    import threading

    from lexner.fileio import atomic_file

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text(encoding="utf-8")), daemon=True)
    reader.start()  # a daemon: should the pipe be replaced, its open() blocks for ever without holding pytest
    with atomic_file(fifo) as out:
        out.write("张三\n")
    reader.join(timeout=10)
    assert received == ["张三\n"]
    assert stat.S_ISFIFO(fifo.stat().st_mode) and sorted(p.name for p in tmp_path.iterdir()) == ["fifo"]


def test_atomic_file_writes_into_an_open_descriptor_at_its_position_as_with_dev_stdout(tmp_path):
    import os

    from lexner.fileio import atomic_file, open_descriptor

    log = tmp_path / "log.txt"
    log.write_text("precious\n", encoding="utf-8")
    with open(log, "a", encoding="utf-8") as appended:  # as `lexner tag ... --output /dev/stdout >> log.txt`
        number = appended.fileno()
        assert open_descriptor(f"/dev/fd/{number}") == number == open_descriptor(f"/proc/self/fd/{number}")
        with atomic_file(f"/dev/fd/{number}") as out:
            out.write("张三\n")
    assert log.read_text(encoding="utf-8") == "precious\n张三\n"  # appended to, not replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.txt"]
    assert open_descriptor("/dev/stdout") == 1 and open_descriptor(tmp_path / "log.txt") is None
    closed = os.open(log, os.O_RDONLY)
    os.close(closed)
    assert open_descriptor(f"/dev/fd/{closed}") is None


def test_invalid_utf8_after_the_first_chunk_is_reported(tmp_path):
    # whatever line number is reported, a bad byte deep in a file is an error, not silently accepted
    raw = b"".join(b"line %d\n" % i for i in range(5000)) + b"\xff\n"
    path = _write(tmp_path / "big.txt", raw)
    with pytest.raises(DataFormatError) as info:
        list(iter_lines(path))
    assert str(path) in str(info.value)


def test_data_format_error_message():
    err = DataFormatError("dir/f.txt", 7, "bad thing")
    assert str(err) == "dir/f.txt:7: bad thing"
    assert (err.path, err.line) == ("dir/f.txt", 7)
    assert isinstance(err, ValueError)
    assert str(DataFormatError("f.txt", None, "bad")) == "f.txt: bad"


def test_json_round_trip_and_error(tmp_path):
    path = tmp_path / "x.json"
    obj = {"词": [1, 2.5, None, "ＡＢ"], "n": {"k": True}}
    write_json(path, obj)
    assert read_json(path) == obj
    assert "词" in path.read_text(encoding="utf-8")

    bad = tmp_path / "bad.json"
    bad.write_text('{\n"a": 1,\n}\n', encoding="utf-8")
    with pytest.raises(DataFormatError) as info:
        read_json(bad)
    with pytest.raises(json.JSONDecodeError) as plain:  # line 3 before Python 3.13, the comma's line 2 since
        json.loads(bad.read_text(encoding="utf-8"))
    assert f"{bad}:{plain.value.lineno}:" in str(info.value)


@pytest.mark.parametrize("word", ["NaN", "Infinity", "-Infinity"])
def test_json_files_holding_nan_or_infinity_are_refused(tmp_path, word):
    """Python reads them, JSON has them not: a config.json holding one was passed on by lexner info as output
    no strict parser reads."""
    path = tmp_path / "config.json"
    path.write_text(f'{{"card": {{"f1": {word}}}}}', encoding="utf-8")
    with pytest.raises(DataFormatError, match=f"{word} is not a JSON number"):
        read_json(path)
    path.write_text('{"card": {"threads": 1e999}}', encoding="utf-8")  # no word, but infinite all the same
    with pytest.raises(DataFormatError, match="1e999 is too large for a float"):
        read_json(path)
    with pytest.raises(ValueError, match="not JSON compliant"):
        write_json(tmp_path / "out.json", {"f1": float(word)})
    assert not (tmp_path / "out.json").exists()


# --- atomic_directory --------------------------------------------------------------------------------------------------


def _listing(parent):
    return sorted(p.name for p in parent.iterdir())


def test_atomic_directory_creates(tmp_path):
    final = tmp_path / "sub" / "model"
    with atomic_directory(final) as tmp:
        assert tmp.is_dir() and tmp.parent == final.parent and tmp != final
        assert not final.exists()  # nothing visible before success
        (tmp / "a.txt").write_text("new", encoding="utf-8")
    assert (final / "a.txt").read_text(encoding="utf-8") == "new"
    assert _listing(final.parent) == ["model"]
    umask = os.umask(0)
    os.umask(umask)
    assert final.stat().st_mode & 0o777 == 0o777 & ~umask


def test_atomic_directory_replaces_old(tmp_path):
    final = tmp_path / "model"
    final.mkdir()
    (final / "old.txt").write_text("old", encoding="utf-8")
    (final / "a.txt").write_text("old", encoding="utf-8")
    with atomic_directory(final) as tmp:
        (tmp / "a.txt").write_text("new", encoding="utf-8")
        (tmp / "nested").mkdir()
        (tmp / "nested" / "b.txt").write_text("b", encoding="utf-8")
        assert (final / "old.txt").exists()  # the old version stays until the block succeeds
    assert _listing(final) == ["a.txt", "nested"]
    assert (final / "a.txt").read_text(encoding="utf-8") == "new"
    assert (final / "nested" / "b.txt").read_text(encoding="utf-8") == "b"
    assert _listing(tmp_path) == ["model"]  # no model.old, no temporary directory


def test_atomic_directory_never_touches_a_folder_of_another_name_such_as_model_old(tmp_path):
    final = tmp_path / "model"
    final.mkdir()
    (tmp_path / "model.old").mkdir()  # the user's own folder (a helper's audit: it used to be deleted)
    (tmp_path / "model.old" / "notes.txt").write_text("x", encoding="utf-8")
    with atomic_directory(final) as tmp:
        (tmp / "a.txt").write_text("new", encoding="utf-8")
    assert _listing(final) == ["a.txt"]
    assert _listing(tmp_path) == ["model", "model.old"] and _listing(tmp_path / "model.old") == ["notes.txt"]


def test_a_failed_swap_leaves_the_previous_version_in_place_and_nothing_else(tmp_path, monkeypatch):
    import os

    final = tmp_path / "model"
    final.mkdir()
    (final / "a.txt").write_text("old", encoding="utf-8")
    real = os.replace

    def failing(src, dst):
        name = os.path.basename(src)
        if name.startswith(".model.") and ".old-" not in name:  # the new version's rename, not the old one's
            raise OSError("device busy")
        real(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError, match="device busy"):
        with atomic_directory(final) as tmp:
            (tmp / "a.txt").write_text("new", encoding="utf-8")
    monkeypatch.undo()
    assert (final / "a.txt").read_text(encoding="utf-8") == "old"
    assert _listing(tmp_path) == ["model"]  # no hidden copy, no empty folder left


def test_a_folder_is_replaced_and_discarded_with_windows_renames(tmp_path, windows_renames):
    """Both moved the old folder onto an empty one made to hold its name, which POSIX allows and Windows refuses:
    every save over an existing model or checkpoint (each epoch's) failed there with PermissionError."""
    from lexner.fileio import discard_directory

    final = tmp_path / "model"
    for version in ("one", "two", "three"):
        with atomic_directory(final) as tmp:
            (tmp / "a.txt").write_text(version, encoding="utf-8")
    assert (final / "a.txt").read_text(encoding="utf-8") == "three"
    assert _listing(tmp_path) == ["model"]
    discard_directory(final)
    assert _listing(tmp_path) == []


def test_a_folder_is_saved_with_windows_fsync(tmp_path, windows_renames, windows_fsync):
    """Each file of the new version was flushed to disk through a read-only handle, which Windows' fsync refuses
    (EBADF): every save of a model or checkpoint failed there."""
    final = tmp_path / "model"
    for version in ("one", "two"):
        with atomic_directory(final) as tmp:
            (tmp / "a.txt").write_text(version, encoding="utf-8")
            write_json(tmp / "b.json", [version])
    assert (final / "a.txt").read_text(encoding="utf-8") == "two" and read_json(final / "b.json") == ["two"]
    assert _listing(tmp_path) == ["model"]


@pytest.mark.parametrize("windows", [False, True])
def test_a_read_only_file_in_a_folder_being_saved_is_flushed(tmp_path, monkeypatch, request, windows):
    """Each file is flushed through a handle opened for writing (for Windows), which a read-only file refuses to
    anyone but root: a save whose ``more`` copied in a read-only file (a mode kept by shutil.copy) failed where
    it had worked.  Opening for writing is refused here as the kernel refuses it to a user (tests may run as
    root, which it never refuses).  Windows flushes no read-only handle: the file is left unflushed."""
    import builtins
    import stat

    if windows:
        request.getfixturevalue("windows_fsync")

    real = builtins.open

    def open_(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and os.path.exists(file) and not os.stat(file).st_mode & stat.S_IWUSR:
            raise PermissionError(13, "Permission denied", str(file))
        return real(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_)
    final = tmp_path / "model"
    with atomic_directory(final) as tmp:
        (tmp / "a.txt").write_bytes(b"kept")
        os.chmod(tmp / "a.txt", 0o444)
    assert (final / "a.txt").read_bytes() == b"kept" and _listing(tmp_path) == ["model"]


def test_a_failed_move_aside_with_windows_renames_keeps_the_folder_and_its_own_error(tmp_path, monkeypatch,
                                                                                      windows_renames):
    final = tmp_path / "model"
    final.mkdir()
    (final / "a.txt").write_text("old", encoding="utf-8")

    def busy(src, dst):  # a file in the folder held open by another program
        raise PermissionError(32, "The process cannot access the file", str(src))

    monkeypatch.setattr(os, "rename", busy)
    with pytest.raises(PermissionError, match="cannot access"):
        with atomic_directory(final) as tmp:
            (tmp / "a.txt").write_text("new", encoding="utf-8")
    assert (final / "a.txt").read_text(encoding="utf-8") == "old"
    assert _listing(tmp_path) == ["model"]


def test_atomic_directory_exception_keeps_old(tmp_path):
    final = tmp_path / "model"
    final.mkdir()
    (final / "a.txt").write_text("old", encoding="utf-8")

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with atomic_directory(final) as tmp:
            (tmp / "a.txt").write_text("half-written", encoding="utf-8")
            raise Boom()
    assert _listing(final) == ["a.txt"]
    assert (final / "a.txt").read_text(encoding="utf-8") == "old"
    assert _listing(tmp_path) == ["model"]  # the temporary directory is gone


def test_atomic_directory_exception_without_old(tmp_path):
    final = tmp_path / "model"
    with pytest.raises(RuntimeError):
        with atomic_directory(final) as tmp:
            (tmp / "a.txt").write_text("x", encoding="utf-8")
            raise RuntimeError("fail")
    assert not final.exists()
    assert _listing(tmp_path) == []


def test_renames_into_place_are_made_durable_by_syncing_the_folder(tmp_path, monkeypatch):
    from lexner import fileio

    synced = []
    real = fileio.sync_directory
    monkeypatch.setattr(fileio, "sync_directory", lambda folder: synced.append(Path(folder)) or real(folder))
    fileio.write_bytes(tmp_path / "a.bin", b"x")
    with fileio.atomic_directory(tmp_path / "model") as tmp:
        (tmp / "w").write_text("1", encoding="utf-8")
    assert synced == [tmp_path, tmp_path]


def test_compression_is_known_by_its_suffix_in_any_case(tmp_path):
    """``T.BIO.GZ`` (a Windows archive, a camera-style upper-case name) was read as plain text and written
    uncompressed."""
    from lexner.data import read_file, write_conll
    from lexner.fileio import atomic_file, partial_name

    source = tmp_path / "T.JSONL.GZ"
    source.write_bytes(gzip.compress('{"text": "张三", "entities": [{"start": 0, "end": 2, "label": "PER"}]}\n'.encode()))
    assert [s.text for s in read_file(source)] == ["张三"]  # JSON Lines by its suffix under the .GZ
    with atomic_file(tmp_path / "OUT.TXT.XZ") as out:
        out.write("北京\n")
    assert lzma.decompress((tmp_path / "OUT.TXT.XZ").read_bytes()) == "北京\n".encode()
    assert partial_name(tmp_path / "o.jsonl.GZ").name == "o.jsonl.partial.GZ"
    write_conll(read_file(source), tmp_path / "x.BIO.Gz")
    assert gzip.decompress((tmp_path / "x.BIO.Gz").read_bytes()).startswith("张\tB-PER".encode())


def test_json_too_large_for_memory_is_a_clean_error(tmp_path, monkeypatch):
    """[[],[],...] takes ~27 bytes of memory per byte: a MemoryError traceback under a memory limit (fuzzing)."""
    import json

    def out_of_memory(*args, **kwargs):
        raise MemoryError

    (tmp_path / "chars.json").write_text("[[], []]", encoding="utf-8")
    monkeypatch.setattr(json, "loads", out_of_memory)
    with pytest.raises(DataFormatError, match="too large to read into memory"):
        read_json(tmp_path / "chars.json")


def test_a_line_longer_than_the_limit_is_refused_not_read_forever(tmp_path, monkeypatch):
    """lexner tag --input /dev/zero (or a binary file) read one endless line into memory: a MemoryError."""
    from lexner import fileio

    monkeypatch.setattr(fileio, "MAX_LINE_CHARS", 10)
    path = tmp_path / "t.txt"
    path.write_text("0123456789\nabc\n", encoding="utf-8")  # 10 characters and a line break: fine
    assert list(iter_lines(path)) == [(1, "0123456789"), (2, "abc")]
    path.write_text("abc\n0123456789X\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="t.txt:2: a line longer than 10 characters"):
        list(iter_lines(path))
    with pytest.raises(DataFormatError, match="zero:1: a line longer than 10 characters"):
        list(iter_lines("/dev/zero"))


@pytest.mark.parametrize("compress", ["", ".gz"])
def test_atomic_file_names_the_file_a_write_error_is_about(tmp_path, monkeypatch, compress):
    """A full disk said "No space left on device" and nothing more: neither at a write nor at the final flush."""
    import errno

    final = tmp_path / f"out.txt{compress}"

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left") as raised:
        with atomic_file(final) as out:
            monkeypatch.setattr(os, "fsync", full)  # what reaches the disk last fails
            out.write("x")
    assert raised.value.filename == str(final) and raised.value.errno == errno.ENOSPC
    assert not final.exists() and list(tmp_path.iterdir()) == []
    monkeypatch.undo()

    class Refusing(io.StringIO):
        def write(self, text):
            full()

    stream = NamedStream(Refusing(), "standard output")
    with pytest.raises(OSError) as raised:
        stream.write("x")
    assert str(raised.value) == "[Errno 28] cannot be written (No space left on device): 'standard output'"
    assert stream.getvalue() == ""  # everything else is the stream's own


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a device that is always full)")
def test_the_error_of_a_failed_block_is_the_one_raised_not_the_closes(tmp_path):
    """A block that failed with text still buffered: closing the stream flushed into the full device and its bare
    OSError replaced the block's own error."""
    with pytest.raises(ValueError, match="input.txt:3"):
        with atomic_file("/dev/full") as out:
            out.write("x" * 10)
            raise ValueError("input.txt:3: not valid UTF-8")


@pytest.mark.skipif(__import__("sys").platform == "win32", reason="resource limits are POSIX")
@pytest.mark.parametrize("output, fmt", [("o.jsonl.gz", "jsonl"), ("o.html", "html"), ("o.jsonl", "jsonl")])
def test_a_file_size_limit_reached_while_tagging_names_the_output(tmp_path, output, fmt):
    """With gzip or html output the bare "File too large" came out: the failure's close replaced the named error."""
    import resource
    import signal
    import subprocess
    import sys

    import random

    chars = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]  # text that compresses poorly: gzip passes the limit
    lines = ("张三在北京大学读书，" + "".join(random.Random(n).choices(chars, k=20)) for n in range(3000))
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    done = subprocess.run([sys.executable, "-m", "lexner", "tag", "--input", "in.txt", "--output", output,
                           "--format", fmt, "--no-progress"], cwd=tmp_path, stderr=subprocess.PIPE,
                          encoding="utf-8", preexec_fn=limited)
    assert done.returncode == 2 and f"lexner: error: --output {output}: cannot be written (File too large)" in (
        done.stderr), done.stderr[-2000:]
