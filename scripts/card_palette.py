"""Store the training data's palette in model cards (``--palette auto``), leaving the weights byte for byte.

    python scripts/card_palette.py src/difftool/assets/sprites.onnx src/difftool/assets/sprites.safetensors \
        --data ../shared/data/dawnlike --data ../shared/data/kenney-tiny-dungeon

For models trained before ``difftool train`` learned the palette itself (new sprite runs store it in their card).
Rewrites only the card: the safetensors header's ``difftool`` entry and the ONNX ``metadata_props`` one. Torch-free.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", type=Path, nargs="+", help=".onnx and/or .safetensors files")
    ap.add_argument("--data", type=Path, action="append", required=True, help="the sprite folders it was trained on")
    ap.add_argument("--max-colors", type=int, default=64)
    args = ap.parse_args(argv)

    from difftool.runtime.palette import learn_palette
    from difftool.train.data import load_dataset

    paths = [str(p) for p in args.data]
    ds = load_dataset("sprites", paths[0]) if len(paths) == 1 else load_dataset("sprites", None, paths=paths)
    palette = learn_palette(ds.images, max_colors=args.max_colors).hex()
    print(f"learned {len(palette)} colours from {len(ds)} tiles: {' '.join(palette)}", file=sys.stderr)
    for path in args.files:
        (_onnx if path.suffix == ".onnx" else _safetensors)(path, palette)
        print(f"wrote the palette into {path}", file=sys.stderr)
    return 0


def _with_palette(card_json: str, palette: tuple[str, ...]) -> str:
    from difftool.config import ModelCard

    return dataclasses.replace(ModelCard.from_json(card_json), palette=palette).to_json()


def _safetensors(path: Path, palette: tuple[str, ...]) -> None:
    from safetensors import safe_open
    from safetensors.numpy import save_file

    from difftool.config import CARD_KEY
    from difftool.fileio import atomic_write

    with safe_open(str(path), framework="numpy") as f:
        meta = dict(f.metadata() or {})
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    meta[CARD_KEY] = _with_palette(meta[CARD_KEY], palette)
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
    with safe_open(str(path), framework="numpy") as f:
        assert all(np.array_equal(f.get_tensor(k), v) for k, v in tensors.items()), "weights changed"


def _onnx(path: Path, palette: tuple[str, ...]) -> None:
    import onnx

    from difftool.config import CARD_KEY
    from difftool.export.metadata import get_props, save_single_file, set_props

    model = onnx.load(str(path))
    before = [init.SerializeToString() for init in model.graph.initializer]
    props = get_props(model)
    props[CARD_KEY] = _with_palette(props[CARD_KEY], palette)
    set_props(model, props)
    save_single_file(model, path)
    after = onnx.load(str(path))
    assert [init.SerializeToString() for init in after.graph.initializer] == before, "weights changed"


if __name__ == "__main__":
    sys.exit(main())
