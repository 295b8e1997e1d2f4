"""The public result type."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True, slots=True)
class Entity:
    """An entity found in a text: ``text[start:end] == entity.text`` (offsets into the caller's string)."""

    start: int
    end: int  # exclusive
    label: str
    text: str

    def to_dict(self) -> dict:
        return asdict(self)
