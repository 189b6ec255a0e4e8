"""Package a trained sprite run as difftool's bundled model (src/difftool/assets/sprites.{safetensors,onnx}).

    python scripts/bundle_sprite_model.py runs/sprite-v3/model.safetensors \
        --sampling '{"sampler": "ddim", "steps": 25, "eta": 1.0, "guidance": 4.0}' \
        --command "difftool train ..." --wall-s 5400

Steps: load the run's EMA checkpoint; record the recommended sampling settings (ModelCard.sampling, the
defaults of generate/demo/tui/eval) and how it was trained in the card; store weights as float16 (half
the size; both files then hold the same rounded weights); export the ONNX artifact with the parity
check; store its weights as fp16 initializers (folded back to fp32 when onnxruntime loads it); check
the compact graph against the fp32 one. Needs torch (the train extra).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ASSETS = Path(__file__).resolve().parents[1] / "src" / "difftool" / "assets"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path, help="the run's model.safetensors (EMA weights)")
    ap.add_argument("--sampling", default="{}", help="recommended sampling settings as JSON")
    ap.add_argument("--command", default="", help="the training command, recorded in the card")
    ap.add_argument("--training", default="{}", help="JSON merged into the card's training record")
    ap.add_argument("--wall-s", type=float, default=None, help="total training wall time, recorded")
    ap.add_argument("--out-dir", type=Path, default=ASSETS)
    ap.add_argument("--name", default="sprites")
    args = ap.parse_args(argv)

    import onnx
    import onnxruntime as ort
    import torch

    from difftool.export.compact import store_weights_fp16
    from difftool.export.metadata import pin_ir_version, save_single_file
    from difftool.export.onnx_export import export_onnx
    from difftool.models.checkpoint import load, save

    loaded = load(args.checkpoint)
    sampling = json.loads(args.sampling)
    training = {**loaded.card.training, **json.loads(args.training)}
    if args.command:
        training["command"] = args.command
    if args.wall_s is not None:
        training["wall_s_total"] = round(args.wall_s, 1)
    training["weights_stored_as"] = "float16"
    card = dataclasses.replace(loaded.card, sampling=sampling, training=training)
    module = loaded.module.eval()
    with torch.no_grad():  # round the weights once, so the checkpoint and the artifact agree exactly
        for p in module.parameters():
            p.copy_(p.half().float())
    args.out_dir.mkdir(parents=True, exist_ok=True)
    ckpt = args.out_dir / f"{args.name}.safetensors"
    save(ckpt, _half_view(module), card)
    onnx_path = args.out_dir / f"{args.name}.onnx"
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        report = export_onnx(ckpt, fp32)
        print(f"exported the fp32 graph (opset {report.opset}, {report.exporter}); parity vs PyTorch "
              f"{report.max_abs_err}", file=sys.stderr)
        model = onnx.load(str(fp32))
        n = store_weights_fp16(model, lossless=True)
        pin_ir_version(model)
        compact = Path(tmp) / "compact.onnx"
        save_single_file(model, compact)
        err = _compare(fp32, compact, card, ort)
        print(f"fp16-stored initializers: {n}; max |eps diff| vs fp32 graph {err:.2e}", file=sys.stderr)
        if err > 1e-4:  # the weights were already rounded: only the Cast folding differs, so ~0
            raise SystemExit(f"compact graph differs from the fp32 graph by {err:.2e}")
        compact.replace(onnx_path)
    for path in (ckpt, onnx_path):
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)", file=sys.stderr)
    return 0


def _half_view(module):
    """A module whose state_dict() is ``module``'s with floating tensors as float16 (a half-size file)."""
    import torch.nn as nn

    class HalfView(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def state_dict(self, *args, **kwargs):
            return {k: (v.half() if v.is_floating_point() else v) for k, v in self.inner.state_dict().items()}

    return HalfView(module)


def _compare(a: Path, b: Path, card, ort) -> float:
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((4, card.channels, card.image_size, card.image_size), dtype=np.float32),
             "t": np.array([1, 250, 600, 999], dtype=np.float32)}
    if card.conditional:
        feeds["context"] = np.eye(card.num_classes, dtype=np.float32)[np.arange(4) % card.num_classes]
    outs = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, feeds)[0] for p in (a, b)]
    return float(np.max(np.abs(outs[0] - outs[1])))


if __name__ == "__main__":
    sys.exit(main())
