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
