"""A "model soup": the weights of several saved models averaged into one model (Wortsman et al. 2022), for
models fine-tuned from one starting point (their vocabularies, lexicon and heads the same), so that it can be
scored like any model (``domains.py --models soup=DIR``).

    python benchmarks/soup.py --out runs/soup runs/a/model runs/b/model runs/c/model

Refused unless every model has the same kind, configuration, heads, types and vocabulary files byte for byte,
and the same weight names and shapes; floating-point weights are averaged in float32 and stored as the first
model stores them, anything else (softlexicon's word counts) taken from the first model.  The copy's model card
lists its parts and drops the first model's scores and epoch (the soup's own are measured apart)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from lexner.fileio import DataFormatError, ModelFormatError, read_json
from lexner.models.base import Tagger

SAME_FILES = ("chars.json", "bigrams.json", "lexicon.json")  # those a model directory has


class SoupError(ValueError):
    """Models that cannot be averaged into one."""


def _shape(directory: Path) -> dict:
    """What must be equal for two models' weights to mean the same thing: config without its card, and the
    vocabulary files' bytes."""
    config = read_json(directory / "config.json")  # a damaged one: DataFormatError naming it
    if not isinstance(config, dict):
        raise ModelFormatError(f"{directory / 'config.json'}: not a model's config (a JSON object)")
    config.pop("card", None)
    return {"config": config, **{name: (directory / name).read_bytes() for name in SAME_FILES
                                 if (directory / name).exists()}}


def averaged(directories: list[Path]) -> Tagger:
    """The first model of ``directories`` with every floating-point weight replaced by the mean over all."""
    if len(directories) < 2:
        raise SoupError("a soup needs at least two models")
    first = _shape(directories[0])
    for directory in directories[1:]:
        other = _shape(directory)
        if other.keys() != first.keys():
            raise SoupError(f"{directory} and {directories[0]} differ in their files")
        for key in first:
            if other[key] != first[key]:
                raise SoupError(f"{directory} and {directories[0]} differ in {key}: not one model's fine-tunings")
    taggers = [Tagger.load(d) for d in directories]
    states = [t.state_dict() for t in taggers]
    for directory, state in zip(directories[1:], states[1:]):
        if {k: v.shape for k, v in state.items()} != {k: v.shape for k, v in states[0].items()}:
            raise SoupError(f"{directory} and {directories[0]} differ in their weights' names or shapes")
    mean = {name: (torch.stack([s[name].float() for s in states]).mean(0).to(value.dtype)
                   if value.is_floating_point() else value)
            for name, value in states[0].items()}
    taggers[0].load_state_dict(mean)
    return taggers[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="a new directory")
    args = parser.parse_args()
    if args.out.exists():
        parser.error(f"--out {args.out} exists; give a new directory")
    try:
        soup = averaged(args.models)
    except (SoupError, OSError, ModelFormatError, DataFormatError) as err:  # also a missing or damaged model
        parser.error(str(err))
    extra = dict(soup.metadata)
    card = {k: v for k, v in (extra.get("card") or {}).items() if k not in ("dev", "test", "epoch")}
    card["soup_of"] = [str(d) for d in args.models]
    extra["card"] = card
    soup.save(args.out, extra=extra)
    print(f"{args.out}: the mean of {len(args.models)} models")


if __name__ == "__main__":
    main()
