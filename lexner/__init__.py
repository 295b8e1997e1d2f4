"""lexner: Chinese named-entity recognition with lexicon enhancement.

    import lexner
    ner = lexner.load("runs/weibo/model")
    ner.tag("我在北京工作")  # -> [Entity(start=2, end=4, label='GPE.NAM', text='北京')]

Importing lexner loads nothing heavy: torch is imported when a tagger is built or loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:  # what type checkers see of the names below, which are imported when first used
    from .api import build_tagger, load
    from .entity import Entity
    from .lexicon import Lexicon
    from .output import render_html

__all__ = ["Entity", "Lexicon", "build_tagger", "load", "render_html", "__version__"]


def __getattr__(name: str):
    if name in ("load", "build_tagger"):
        from . import api

        return getattr(api, name)
    if name == "Entity":
        from .entity import Entity

        return Entity
    if name == "render_html":
        from .output import render_html

        return render_html
    if name == "Lexicon":
        from .lexicon import Lexicon

        return Lexicon
    raise AttributeError(f"module 'lexner' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))  # the names imported when first used too (tab completion)
