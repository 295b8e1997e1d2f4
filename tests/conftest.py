"""Shared fixtures: a toy corpus small enough to train on in a second."""

from __future__ import annotations

import os

import pytest

from lexner.data import Sentence
from lexner.schemes import Span


def toy_corpus() -> list[Sentence]:
    people = ["张三", "李四", "王小明", "赵六"]
    places = ["北京", "上海", "广州市", "南京"]
    templates = ["{p}在{l}工作。", "{p}去了{l}", "我和{p}住在{l}附近", "{l}的{p}很好", "今天{p}到{l}"]
    out = []
    for i, template in enumerate(templates):
        for p, l in zip(people, places[i % 4:] + places[: i % 4]):
            text = template.format(p=p, l=l)
            ps, ls = text.index(p), text.index(l)
            out.append(Sentence(text, sorted([Span(ps, ps + len(p), "PER"), Span(ls, ls + len(l), "LOC")])))
    return out


@pytest.fixture
def corpus() -> list[Sentence]:
    return toy_corpus()


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """The test models are tiny: one thread is faster than two fighting over two cores."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def windows_renames(monkeypatch):
    """os.replace and os.rename as on Windows (MoveFileEx): a folder in the way of either is refused, even an
    empty one (os.replace: access denied; os.rename: exists), a file in os.replace's way replaced."""
    real = os.replace

    def replace(src, dst):
        if os.path.isdir(dst):
            raise PermissionError(13, "Access is denied", str(dst))
        real(src, dst)

    def rename(src, dst):
        if os.path.lexists(dst):
            raise FileExistsError(17, "Cannot create a file when that file already exists", str(dst))
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "rename", rename)


@pytest.fixture
def windows_fsync(monkeypatch):
    """os.fsync as on Windows (the C runtime's _commit, FlushFileBuffers): a descriptor opened for reading only
    is refused (EBADF), as a folder's is (Windows opens none with os.open)."""
    import errno

    fcntl = pytest.importorskip("fcntl")  # to read a descriptor's access mode
    real = os.fsync

    def fsync(fd):
        fd = fd if isinstance(fd, int) else fd.fileno()
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
            raise OSError(errno.EBADF, "Bad file descriptor")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.fixture
def windows_text_files(monkeypatch):
    """open() (and pathlib's) in text mode as on a Chinese Windows: without ``newline``, each "\\n" written becomes
    "\\r\\n"; without ``encoding``, the locale's is GBK (cp936)."""
    import builtins
    import io

    real = io.open

    def open_(file, mode="r", buffering=-1, encoding=None, errors=None, newline=None, closefd=True, opener=None):
        if "b" not in mode:
            encoding = "gbk" if encoding in (None, "locale") else encoding
            if newline is None and any(c in mode for c in "wax+"):
                newline = "\r\n"
        return real(file, mode, buffering, encoding, errors, newline, closefd, opener)

    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)


def _held_by_this_process() -> set[str]:
    """The files this process holds open (/proc/self/fd) or memory-mapped (/proc/self/maps), by real path."""
    held = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            held.add(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:  # the descriptor listing the folder, closed since
            pass
    with open("/proc/self/maps", encoding="utf-8") as maps:
        held |= {fields[5] for fields in (line.split(maxsplit=5) for line in maps) if len(fields) == 6}
    return {path.strip() for path in held if path.startswith("/")}


@pytest.fixture
def windows_open_files(monkeypatch, windows_renames):
    """Files as on Windows (with :func:`windows_renames`): one this process holds open or memory-mapped (what
    safetensors loads stays mapped while a tensor of it lives) can be neither deleted nor renamed, nor replaced,
    nor can a folder holding one (PermissionError, "being used by another process").  Linux only (/proc)."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc")

    def refuse_if_held(path, dir_fd=None):
        if dir_fd is not None:
            path = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
        real = os.path.realpath(path)
        if any(h == real or h.startswith(real + os.sep) for h in _held_by_this_process()):
            raise PermissionError(32, "The process cannot access the file because it is being used by another "
                                      "process", str(path))

    def refusing(function, paths):
        def call(*args, dir_fd=None, **kwargs):
            for path in args[:paths]:
                refuse_if_held(path, dir_fd)
            return function(*args, **({"dir_fd": dir_fd} if dir_fd is not None else {}), **kwargs)
        return call

    for name, paths in (("replace", 2), ("rename", 2), ("unlink", 1), ("remove", 1), ("rmdir", 1)):
        monkeypatch.setattr(os, name, refusing(getattr(os, name), paths))
