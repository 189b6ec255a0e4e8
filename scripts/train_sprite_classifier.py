"""Reproduce src/difftool/assets/sprite_classifier.onnx, the sprite judge used by `difftool eval`.

    python scripts/train_sprite_classifier.py --data ../shared/data/dawnlike ../shared/data/kenney-tiny-dungeon \
        --seed 0 --out src/difftool/assets/sprite_classifier.onnx

Needs torch (``pip install 'difftool[train]'``). Single-threaded on CPU it takes a few minutes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        nargs="+",
        default=None,
        help="sprite folders with labels.toml (default: ../shared/data/{dawnlike,kenney-tiny-dungeon})",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--holdout", type=float, default=0.2, help="share of each class's sprites held out")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--out", type=Path, default=REPO / "src" / "difftool" / "assets" / "sprite_classifier.onnx"
    )
    args = parser.parse_args(argv)

    import torch

    from difftool.eval.classifier import export_onnx, train_classifier
    from difftool.eval.data import load_sprite_tiles

    torch.set_num_threads(args.threads)
    tiles = load_sprite_tiles(args.data)
    print(f"{len(tiles)} labelled tiles, {len(set(tiles.identity.tolist()))} sprites: {tiles.class_counts()}")
    result = train_classifier(tiles, seed=args.seed, holdout=args.holdout, epochs=args.epochs)
    print(
        f"held-out accuracy ({sum(result.heldout_counts.values())} tiles): "
        + ", ".join(f"{k} {v:.3f}" for k, v in result.heldout_accuracy.items())
    )
    print("confusion [true][pred]:", result.confusion)
    path = export_onnx(result, args.out, data_name=tiles.name)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB) in {result.seconds:.0f}s of training")
    return 0


if __name__ == "__main__":
    sys.exit(main())
