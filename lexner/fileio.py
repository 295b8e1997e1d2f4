"""Small file helpers shared by the readers: compressed text, line iteration, atomic writes."""

from __future__ import annotations

import codecs
import errno
import functools
import gzip
import glob
import io
import json
import lzma
import math
import os
import re
import shutil
import stat
import sys
import tempfile
import zlib
from pathlib import Path
from contextlib import contextmanager, suppress
from typing import IO, Any, Callable, Iterator


class DataFormatError(ValueError):
    """A data file could not be read; the message names the file and, where known, the line."""

    def __init__(self, path: str | os.PathLike, line: int | None, message: str):
        self.path = str(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line is not None else self.path
        if len(message) > MESSAGE_CHARS:  # a quoted 100,000-character line: its head and its tail say enough
            message = f"{message[:MESSAGE_CHARS * 2 // 3]} [...] {message[-MESSAGE_CHARS // 3:]}"
        super().__init__(f"{where}: {message}")


MESSAGE_CHARS = 300  # DataFormatError: longer messages (quoting a long line or tag) are cut in the middle


class ModelFormatError(ValueError):
    """A model directory (or a pretrained checkpoint) is missing files, was written by a newer lexner, does not
    match its config, or holds something lexner refuses to load (code, pickles); the message names the file."""


STDIN = "-"  # the path that names standard input where a command reads lines (``lexner tag --input -``)
UTF8_ERRORS = ("strict", "skip", "replace")


COMPRESSORS = {".gz": gzip.open, ".xz": lzma.open}  # by a file name's last suffix, reading and writing


def expand_home(path: str | os.PathLike) -> Path:
    """``path`` with a leading ``~`` or ``~user`` made the home folder, as a shell would; a name that merely
    starts with ``~`` (``~old_model``, no such user) stays as it is."""
    try:
        return Path(path).expanduser()
    except RuntimeError:  # Python cannot find the home folder of such a "user"
        return Path(path)


def compressor(path: str | os.PathLike):
    """The opener of ``path``'s compression by its last suffix in any case (``.gz``, ``.GZ``), or None."""
    return COMPRESSORS.get(Path(path).suffix.lower())


def open_text(path: str | os.PathLike, errors: str = "strict", newline: str | None = None) -> IO[str]:
    """Open a UTF-8 text file for reading, decompressing ``.gz`` and ``.xz`` by their suffix.

    A UTF-8 byte-order mark is dropped.  With ``newline=None`` CRLF and lone CR line endings are read as LF;
    with ``newline="\n"`` only LF ends a line (see :func:`iter_lines`).
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory, not a file")
    if not path.exists():  # a pipe or device (<(cmd), /dev/stdin) is read like a file
        raise FileNotFoundError(f"{path}: no such file")
    opener = compressor(path) or open
    binary = opener(path, "rb")
    try:
        return _text_without_bom(binary, errors, newline)  # reads the first bytes
    except _DECOMPRESSION_ERRORS as err:
        binary.close()
        raise _cannot_decompress(path, 0, err) from None


def _text_without_bom(binary: IO[bytes], errors: str, newline: str | None) -> io.TextIOWrapper:
    """``binary`` read as UTF-8 text, a leading byte-order mark dropped.  (Python's ``utf-8-sig`` codec loses a
    file of one or two bytes that begin like a BOM, ``b"\\xef"``, when it decodes a stream.)"""
    if not hasattr(binary, "peek"):  # e.g. a BytesIO standing in for standard input
        binary = io.BufferedReader(binary)
    if binary.peek(3)[:3] == codecs.BOM_UTF8:
        binary.read(3)
    return io.TextIOWrapper(binary, encoding="utf-8", errors=errors, newline=newline)


def leading_bom(first: str) -> str:
    """What a text file whose first written text is ``first`` must start with so that a reader, which drops a
    leading byte-order mark (:func:`open_text`), reads that text back whole: a mark of its own where ``first``
    begins with U+FEFF (a character-per-line file's first character), else nothing."""
    return "\ufeff" if first.startswith("\ufeff") else ""


def shown_name(path: str | os.PathLike) -> str:
    """How messages name an input: its path, or ``<stdin>`` for ``-``."""
    return "<stdin>" if str(path) == STDIN else str(path)


# FF FE (UTF-16-LE, and UTF-32-LE's FF FE 00 00), FE FF (UTF-16-BE) and 00 00 FE FF (UTF-32-BE), as read with
# surrogateescape
UTF16_MARKS = ("\udcff\udcfe", "\udcfe\udcff", "\x00\x00\udcfe\udcff")


def iter_lines(path: str | os.PathLike, errors: str = "strict", newline: str | None = None,
               skipped: list[int] | None = None,
               on_open: Callable[[IO[str]], None] | None = None) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line_without_newline)``, numbering from 1; ``path`` ``-`` reads standard input.

    ``errors`` says what happens to a line that is not valid UTF-8: ``strict`` raises :class:`DataFormatError`
    naming the file and line (after every earlier line was yielded), ``skip`` leaves the line out and appends
    its number to ``skipped``, ``replace`` yields it with each bad byte replaced by U+FFFD.  A file that starts
    with a UTF-16 byte-order mark raises at once, whatever ``errors`` says.

    ``newline=None``: LF, CRLF and a lone CR each end a line (data files from any system).  ``newline="\n"``:
    only LF ends a line and a CR just before it is dropped, so a lone CR stays inside its line (texts to tag).

    ``on_open``, if given, is called with the open text stream before the first line is read (for
    :func:`bytes_read`).
    """
    if errors not in UTF8_ERRORS:
        raise ValueError(f"errors must be one of {UTF8_ERRORS}, got {errors!r}")
    name = shown_name(path)
    if str(path) == STDIN:
        if sys.stdin is None:  # started with standard input closed (<&-)
            raise DataFormatError(name, None, "standard input is closed: nothing to read")
        handle = _text_without_bom(sys.stdin.buffer, "surrogateescape", newline)
    else:
        handle = open_text(path, errors="surrogateescape", newline=newline)
    if on_open is not None:
        on_open(handle)
    try:
        for lineno, line in _numbered(handle, name):
            if lineno == 1 and line.startswith(UTF16_MARKS):  # every line would be garbage, whatever errors says
                raise DataFormatError(name, 1, "starts with a UTF-16 (or UTF-32) byte-order mark; lexner reads "
                                               "UTF-8 (convert it: iconv -f UTF-16 -t UTF-8, or -f UTF-32)")
            line = line[:-1] if line.endswith("\n") else line
            if newline == "\n" and line.endswith("\r"):
                line = line[:-1]
            try:
                line = as_utf8_errors_say(line, errors)
            except UnicodeEncodeError:
                raise DataFormatError(name, lineno, "not valid UTF-8") from None
            if line is None:
                if skipped is not None:
                    skipped.append(lineno)
                continue
            yield lineno, line
    finally:
        if str(path) == STDIN:
            handle.detach()  # leave sys.stdin's buffer open
        else:
            handle.close()


def file_size(path: str | os.PathLike) -> int | None:
    """The size in bytes of a regular file (compressed, for ``.gz``/``.xz``); None for standard input, a pipe
    or a device, whose end cannot be known before it comes."""
    try:
        return os.path.getsize(path) if str(path) != STDIN and Path(path).is_file() else None
    except OSError:
        return None


def bytes_read(handle: IO[str], size: int) -> int:
    """How far reading has got into the file under ``handle`` (a stream from :func:`open_text`), in bytes of
    the file on disk — read ahead of the lines handed out by at most a buffer, compressed bytes for
    ``.gz``/``.xz`` — capped at ``size``; ``size`` once the stream is closed."""
    try:
        return min(size, os.lseek(handle.fileno(), 0, os.SEEK_CUR))
    except (ValueError, OSError, AttributeError):  # closed (read to its end; a closed GzipFile has no file)
        return size


def as_utf8_errors_say(text: str, errors: str) -> str | None:
    """``text``, decoded with ``surrogateescape`` (undecodable bytes became lone surrogates), as the ``errors``
    policy of :data:`UTF8_ERRORS` says: itself when it is valid UTF-8; otherwise ``strict`` raises
    UnicodeEncodeError, ``skip`` gives None and ``replace`` puts U+FFFD for each bad byte."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        if errors == "strict":
            raise
        if errors == "skip":
            return None
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text


MAX_LINE_CHARS = 1 << 26
"""The longest line read (64 Mi characters): a file without line breaks (``/dev/zero``, a binary file) would
otherwise be read into memory whole, or forever."""


def _numbered(handle: IO[str], name: str) -> Iterator[tuple[int, str]]:
    """The lines of ``handle`` numbered from 1; compressed data that is cut short or corrupt raises
    :class:`DataFormatError` naming the file and the last line read whole, and so does a line longer than
    :data:`MAX_LINE_CHARS`."""
    lineno = 0
    try:
        for lineno, line in enumerate(iter(functools.partial(handle.readline, MAX_LINE_CHARS + 1), ""), start=1):
            if len(line) > MAX_LINE_CHARS and line[-1] != "\n":
                raise DataFormatError(name, lineno, f"a line longer than {MAX_LINE_CHARS:,} characters (is it a "
                                                    "text file? /dev/zero and binary files have no line breaks)")
            yield lineno, line
    except _DECOMPRESSION_ERRORS as err:
        raise _cannot_decompress(name, lineno, err) from None


_DECOMPRESSION_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error, lzma.LZMAError)


def _cannot_decompress(name: str | os.PathLike, lines: int, err: Exception) -> DataFormatError:
    where = f"after line {lines}" if lines else "at its start"
    return DataFormatError(name, None, f"cannot be decompressed {where} (cut short, or not the compressed file "
                                       f"its name says: {err})")


def _default_mode() -> int:
    """The permissions a new file gets under the current umask (0644 under the usual 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_DESCRIPTOR_PATH = re.compile(r"/(?:dev/fd|proc/self/fd)/(\d+)")


@contextmanager
def utf8_name(path: str | os.PathLike) -> Iterator[str]:
    """A name of the file ``path`` for libraries that open only names writable as UTF-8 (safetensors: "Path ...
    is not valid UTF-8"): the path itself, or — where its bytes are not UTF-8, a legacy GBK folder name on Linux,
    which reaches Python as lone surrogates — ``/dev/fd/N`` of the file opened here, so that a model saved in
    such a folder loads as it was saved."""
    name = os.fspath(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        if os.name == "nt":  # a Windows name with a lone surrogate: no /dev/fd to name it by
            yield name
            return
        descriptor = os.open(name, os.O_RDONLY)
        try:
            yield f"/dev/fd/{descriptor}"
        finally:
            os.close(descriptor)
    else:
        yield name


def open_descriptor(path: str | os.PathLike) -> int | None:
    """The descriptor number a path such as ``/dev/stdout`` or ``/dev/fd/3`` names, if it is open; else None."""
    text = os.path.abspath(path)
    number = {"/dev/stdin": 0, "/dev/stdout": 1, "/dev/stderr": 2}.get(text)
    if number is None and (found := _DESCRIPTOR_PATH.fullmatch(text)):
        number = int(found.group(1))
    if number is None:
        return None
    try:
        os.fstat(number)
    except OSError:
        return None
    return number


@contextmanager
def atomic_file(final: str | os.PathLike, partial: str | os.PathLike | None = None,
                binary: bool = False) -> Iterator[IO]:
    """Write a UTF-8 text file under a temporary name in its folder and rename it into place on success.

    ``with atomic_file(path) as out: out.write(...)``.  If the block raises, ``path`` is untouched (an existing
    file survives a failed run) and the temporary file is removed — or, with ``partial``, renamed to that path
    if anything was written, so that the work done before the failure is kept.  A replaced file keeps its
    permissions; a new one gets the umask's (never safetensors' 0600).  Text that cannot be encoded (a lone
    surrogate) raises before anything is replaced.  ``binary``: the stream takes bytes.  A text file named
    ``*.gz`` or ``*.xz`` is written compressed so, as :func:`open_text` reads it (partial work too).

    A ``final`` that names an open descriptor (``/dev/stdout``, ``/dev/stderr``, ``/dev/fd/N``,
    ``/proc/self/fd/N``: whatever it is redirected to, a file appended to with ``>>`` too) or that is not a
    regular file (a device such as ``/dev/null``, a named pipe) is written into as a stream, at its position:
    never replaced, and what was written before a failure stays there."""
    final = Path(final)
    if final.is_dir():
        raise IsADirectoryError(f"{final}: is a directory")
    descriptor = open_descriptor(final)
    if descriptor is not None or final.exists() and not stat.S_ISREG(final.stat().st_mode):
        stream = os.dup(descriptor) if descriptor is not None else os.open(final, os.O_WRONLY)
        with _closed_after(os.fdopen(stream, "wb") if binary
                           else os.fdopen(stream, "w", encoding="utf-8", newline="")) as out:
            yield NamedStream(out, final)
            _finish(out, final)
        return
    compressed = None if binary else compressor(final)  # by the name given, as readers decide
    if final.is_symlink():  # write the file the link names, and keep the link
        final = Path(os.path.realpath(final))
    parent = final.parent
    blocking = next((p for p in (parent, *parent.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise NotADirectoryError(f"{final}: cannot be written, {blocking} is a file, not a directory")
    parent.mkdir(parents=True, exist_ok=True)
    mode = final.stat().st_mode & 0o7777 if final.exists() else _default_mode()
    with _named(final):
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=parent)
    try:
        raw_binary = binary or compressed is not None
        with _closed_after(os.fdopen(fd, "wb") if raw_binary
                           else os.fdopen(fd, "w", encoding="utf-8", newline="")) as raw:
            if compressed:
                with _closed_after(compressed(raw, "wt", encoding="utf-8", newline="")) as handle:
                    yield NamedStream(handle, final)
                    with _named(final):
                        handle.close()  # its last block and trailer
            else:
                yield NamedStream(raw, final)
            _finish(raw, final, sync=True)
        with _named(final):
            os.chmod(tmp, mode)
            os.replace(tmp, final)
        sync_directory(Path(final).parent)
    except BaseException:
        with suppress(FileNotFoundError):
            if partial is not None and _holds_text(tmp, compressed):
                os.chmod(tmp, mode)
                os.replace(tmp, partial)
            else:
                os.unlink(tmp)
        raise


def sync_file(path: Path) -> None:
    """Make the contents of the file at ``path`` durable.  It is opened for writing (nothing is written): Windows
    flushes no file opened for reading only (``os.fsync``, the C runtime's ``_commit``: EBADF).  A read-only file
    (a caller's ``more`` copied one with its mode) is flushed through a read-only handle, as POSIX allows;
    Windows cannot flush it (EBADF), and it is left as it is rather than failing the save; any other failure to
    flush it is raised."""
    try:
        handle = open(path, "r+b")
    except PermissionError:
        handle = open(path, "rb")
    with handle:
        try:
            os.fsync(handle.fileno())
        except OSError as err:
            if err.errno != errno.EBADF or handle.writable():
                raise


def sync_directory(folder: Path) -> None:
    """Make the renames in ``folder`` durable (a power cut after a rename could otherwise lose it); file systems
    that cannot sync a folder are left as they are."""
    with suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _holds_text(path: str, compressed: Callable | None) -> bool:
    """Whether the file at ``path`` holds any text (a compressed one: once decompressed; its header and trailer
    alone are no work worth keeping)."""
    if compressed is None:
        return os.path.getsize(path) > 0
    try:
        with compressed(path, "rb") as packed:
            return bool(packed.read(1))
    except _DECOMPRESSION_ERRORS:
        return False


def partial_name(target: Path) -> Path:
    """Where a failed write keeps its work: ``out.jsonl.partial``; for a compressed ``out.jsonl.gz``,
    ``out.jsonl.partial.gz``, which readers still decompress by its suffix."""
    if compressor(target) is not None:
        return target.with_name(f"{target.stem}.partial{target.suffix}")
    return target.with_name(target.name + ".partial")


@contextmanager
def _named(final: str | os.PathLike) -> Iterator[None]:
    """An OSError of writing ``final`` (a read-only file system, a folder one may not write into, a full disk)
    names ``final``, what the user asked for, not the hidden temporary name or nothing at all."""
    try:
        yield
    except OSError as err:
        raise _naming(err, final) from None


def _naming(err: OSError, final: str | os.PathLike) -> OSError:
    """``err`` again, naming ``final`` (:func:`_named`)."""
    return type(err)(err.errno, f"cannot be written ({err.strerror or err})", str(final))


@contextmanager
def _closed_after(stream: IO) -> Iterator[IO]:
    """``stream``, for a block that closes it (:func:`_finish`); if the block fails, closed quietly, so that the
    block's error is the one raised — a close that flushed into a full disk raised its bare error in its place."""
    try:
        yield stream
    except BaseException:
        with suppress(OSError, ValueError):
            stream.close()
        raise


def _finish(stream: IO, final: str | os.PathLike, sync: bool = False) -> None:
    """Flush ``stream`` (and with ``sync``, make it durable) and close it, an error naming ``final`` (a full
    device or disk says so here, with what is still buffered); inside :func:`_closed_after`, which closes the
    stream quietly if this fails."""
    with _named(final):
        stream.flush()
        if sync:
            os.fsync(stream.fileno())
    stream.close()


class NamedStream:
    """``stream``, whose write errors name where it writes: ``out.jsonl: cannot be written (No space left on
    device)`` rather than the bare reason, which a disk, a quota and a closed pipe give without a file name.
    Everything else is the stream's own."""

    def __init__(self, stream: IO, name: str | os.PathLike):
        self.stream, self.written_to = stream, name

    def write(self, data):  # once per record written: a plain try, no context manager
        try:
            return self.stream.write(data)
        except OSError as err:
            raise _naming(err, self.written_to) from None

    def writelines(self, lines) -> None:
        with _named(self.written_to):
            self.stream.writelines(lines)

    def flush(self) -> None:
        with _named(self.written_to):
            self.stream.flush()

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented UTF-8 JSON, atomically (see :func:`atomic_file`).  Text that UTF-8 cannot
    hold (a lone surrogate) raises ``UnicodeEncodeError``, a NaN or infinite number ``ValueError`` (JSON has
    none: :func:`read_json` refuses them), before the file is touched."""
    write_bytes(path, (json.dumps(obj, ensure_ascii=False, indent=2, allow_nan=False) + "\n").encode("utf-8"))


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, with the usual permissions (see :func:`atomic_file`)."""
    with atomic_file(path, binary=True) as out:
        out.write(data)


MAX_JSON_BYTES = 512 * 2**20  # no JSON file of a model comes near this (the default model's largest: 3 MB)


def read_json(path: str | os.PathLike) -> Any:
    """Parse a UTF-8 JSON file.  Only a regular file of at most :data:`MAX_JSON_BYTES` is read (never a FIFO, a
    device such as ``/dev/zero``, or a link to one); anything that cannot be parsed — invalid JSON or UTF-8,
    nesting too deep for Python — raises :class:`DataFormatError` naming the file."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except OSError as err:  # a loop of links, a name too long, ...
        raise DataFormatError(path, None, f"cannot be read ({err.strerror or err})") from None
    if not stat.S_ISREG(info.st_mode):
        raise DataFormatError(path, None, "not a regular file (a FIFO, device or directory is never read)")
    if info.st_size > MAX_JSON_BYTES:
        raise DataFormatError(path, None, f"{info.st_size} bytes, more than the {MAX_JSON_BYTES} a JSON file may have")
    with open(path, "rb") as handle:
        data = handle.read(MAX_JSON_BYTES + 1)
    if len(data) > MAX_JSON_BYTES:
        raise DataFormatError(path, None, f"more than {MAX_JSON_BYTES} bytes")
    try:
        return loads_json(data.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise DataFormatError(path, None, f"not valid UTF-8 at byte {err.start}") from None
    except json.JSONDecodeError as err:
        raise DataFormatError(path, err.lineno, f"invalid JSON: {err.msg}") from None
    except RecursionError:
        raise DataFormatError(path, None, "JSON nested too deeply") from None
    except MemoryError:  # a small file of many tiny values ([[],[],...]: ~27 bytes of memory per byte)
        raise DataFormatError(path, None, f"{len(data)} bytes of JSON too large to read into memory") from None
    except ValueError as err:  # e.g. an integer of more digits than Python converts
        raise DataFormatError(path, None, f"cannot be read as JSON: {err}") from None


def loads_json(text: str) -> Any:
    """``json.loads`` of JSON itself: ``NaN``, ``Infinity`` and ``-Infinity``, which Python reads, are refused
    (``ValueError``, as for anything else that is not JSON, an integer of more digits than Python converts too)."""
    return json.loads(text, parse_constant=_not_json, parse_float=_finite)


def _finite(number: str) -> float:
    """A JSON number as a float; one past float's range (``1e999``) would be infinite, which JSON has not."""
    value = float(number)
    if math.isinf(value):
        raise ValueError(f"{number[:20]}{'...' if len(number) > 20 else ''} is too large for a float")
    return value


def _not_json(word: str) -> None:
    """Python's json reads ``NaN`` and ``Infinity``, which JSON has not: a file holding them is refused (every
    other reader — jq, JavaScript, a strict parser — refuses what lexner would have passed on)."""
    raise ValueError(f"{word} is not a JSON number")


def old_versions(final: str | os.PathLike) -> list[Path]:
    """The previous versions of ``final`` that a crash between :class:`atomic_directory`'s two renames may have
    left (``.NAME.old-XXXXXXXX``, names it makes: never a user's ``NAME.old``; an empty one is none), newest
    first."""
    final = Path(final)
    found = [p for p in final.parent.glob(f".{glob.escape(final.name)}.old-*") if p.is_dir() and any(p.iterdir())]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def stale_copies(final: str | os.PathLike) -> list[Path]:
    """What :class:`atomic_directory` left beside ``final`` when its process was killed: a new version it was
    building (``.NAME.new-XXXXXXXX``) and previous versions it had set aside (``.NAME.old-XXXXXXXX``, empty ones
    too), and what :func:`discard_directory` had not finished removing (``.NAME.deleting-XXXXXXXX``) — names
    lexner makes, never a user's.  Only for a caller that owns ``final``'s folder (a training holding its
    lock): another process may be writing them."""
    final = Path(final)
    return [p for kind in ("new", "old", "deleting") for p in final.parent.glob(f".{glob.escape(final.name)}.{kind}-*")
            if p.is_dir()]


def recover_directory(final: str | os.PathLike) -> Path:
    """``final``, restored from its newest previous version (:func:`old_versions`) if a crash between
    :class:`atomic_directory`'s two renames left only that."""
    final = Path(final)
    if not final.exists() and (left := old_versions(final)):
        os.replace(left[0], final)
    return final


def discard_directory(path: str | os.PathLike) -> None:
    """Delete the folder ``path`` all at once as far as its name goes: renamed to ``.NAME.deleting-XXXXXXXX``
    first, then removed, so that a stop in between never leaves part of it under its own name (a later
    :func:`stale_copies`-style clean-up of ``.NAME.deleting-*`` removes the rest)."""
    path = Path(path)
    gone = Path(tempfile.mkdtemp(prefix=f".{path.name}.deleting-", dir=path.parent))
    _move_to_reserved(path, gone)
    shutil.rmtree(gone)


def _move_to_reserved(folder: Path, reserved: Path) -> None:
    """Rename ``folder`` to ``reserved``, an empty folder made (``mkdtemp``) so that its name is this process's.
    POSIX renames a folder onto an empty one in one step; Windows refuses any folder in the way (MoveFileEx: access
    denied), so there the empty folder is removed and the rename made into its free name — refused
    (FileExistsError) should anything take that name in between: nothing is ever overwritten."""
    try:
        os.replace(folder, reserved)
    except PermissionError:
        if not reserved.is_dir() or any(reserved.iterdir()):
            raise
        reserved.rmdir()
        os.rename(folder, reserved)


class atomic_directory:
    """Context manager that builds a directory under a temporary name and swaps it in on success.

    ``with atomic_directory(final) as tmp: write files into tmp``.  If the block raises, ``final`` is
    untouched and the temporary directory is removed.  On success the previous ``final`` (if any) is
    replaced: moved aside under a new name of its own (``.NAME.old-XXXXXXXX``; no existing file or folder is
    ever removed but ``final``), then deleted; a crash between the two renames leaves it there
    (:func:`recover_directory`).  If the swap itself fails, the new version is removed and ``final`` stays.
    """

    def __init__(self, final: str | os.PathLike):
        self.final = Path(final)

    def __enter__(self) -> Path:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        with _named(self.final):
            self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.new-", dir=self.final.parent))
        umask = os.umask(0)
        os.umask(umask)
        self.tmp.chmod(0o777 & ~umask)  # mkdtemp creates 0700; give the usual permissions
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return False
        for child in self.tmp.iterdir():  # flush file contents before the rename makes them visible
            if child.is_file():
                sync_file(child)
        # the previous version goes onto an empty folder of a new name, which the rename replaces: nothing that
        # exists is ever overwritten (and with no previous version no such folder is made: an empty one left by a
        # stop here would be taken for the previous version)
        old = (Path(tempfile.mkdtemp(prefix=f".{self.final.name}.old-", dir=self.final.parent))
               if self.final.exists() else None)
        moved = False
        try:
            if old is not None:
                _move_to_reserved(self.final, old)
                moved = True
            os.replace(self.tmp, self.final)
        except BaseException:
            if moved:
                os.replace(old, self.final)  # the previous version back in place
            elif old is not None:
                with suppress(FileNotFoundError):  # on Windows the move may have removed it before failing
                    old.rmdir()
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        sync_directory(self.final.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return False
