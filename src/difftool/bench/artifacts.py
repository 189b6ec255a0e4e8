"""Which files a bench run uses (the bundled artifact, a checkpoint beside a graph, the ONNX graph beside a
checkpoint) and its FLOP count."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from difftool.bench import flops as flops_mod
from difftool.config import ModelCard
from difftool.errors import DifftoolError
from difftool.runtime.kinds import FILE_KINDS

CHECKPOINT_SUFFIXES = FILE_KINDS["checkpoint"].suffixes


# -- artifacts -------------------------------------------------------------------------------------------


def bundled_artifact() -> Path:
    """The sprite model shipped in the package (``difftool/assets/sprites.onnx``)."""
    from importlib.resources import files

    return Path(str(files("difftool") / "assets" / "sprites.onnx"))


def find_checkpoint(artifact: Path, card: ModelCard) -> Path | None:
    """A checkpoint for the torch backend: ``artifact`` itself, a ``.safetensors``/``.pth`` beside it
    (same stem, or the stem before the first dot: ``m.int8.onnx`` -> ``m.safetensors``), or
    ``card.training["checkpoint"]``; only one whose card has the same model config counts."""
    if artifact.suffix.lower() in CHECKPOINT_SUFFIXES:
        return artifact
    stems = dict.fromkeys([artifact.stem, artifact.name.split(".")[0]])
    candidates = [artifact.with_name(stem + suffix) for stem in stems for suffix in CHECKPOINT_SUFFIXES]
    recorded = card.training.get("checkpoint") if isinstance(card.training, dict) else None
    if isinstance(recorded, str) and recorded:
        path = Path(recorded)
        candidates.append(path if path.is_absolute() else artifact.parent / path)
    for path in candidates:
        if path.is_file() and _same_model(path, card):
            return path
    return None


def _same_model(path: Path, card: ModelCard) -> bool:
    from difftool.runtime.artifact import read_card

    try:
        return read_card(path).model == card.model
    except (DifftoolError, ImportError):
        return False


def _onnx_for(artifact: Path) -> Path | None:
    """The ONNX graph to run for ``artifact`` (itself, or a same-stem ``.onnx`` beside a checkpoint)."""
    if artifact.suffix.lower() == ".onnx":
        return artifact
    beside = artifact.with_suffix(".onnx")
    return beside if beside.is_file() else None


# -- FLOPs ----------------------------------------------------------------------------------------------


def count_flops(artifact: Path, card: ModelCard) -> dict[str, Any]:
    """Per-sample FLOPs: FlopCounterMode when torch is installed, else (or if that fails) the ONNX graph."""
    out: dict[str, Any] = {"per_sample": None, "source": None, "convention": "2 FLOPs per multiply-add"}
    errors = []
    if importlib.util.find_spec("torch") is not None:
        try:
            out["torch_per_sample"] = flops_mod.card_torch_flops(card, 1)
        except Exception as exc:  # report, fall back to the graph
            errors.append(f"torch: {exc}")
    onnx_path = _onnx_for(artifact)
    if onnx_path is not None:
        try:
            out["onnx_per_sample"] = flops_mod.onnx_flops(onnx_path, 1)
        except Exception as exc:
            errors.append(f"onnx: {exc}")
    if out.get("torch_per_sample"):
        out["per_sample"], out["source"] = out["torch_per_sample"], "torch FlopCounterMode"
    elif out.get("onnx_per_sample"):
        out["per_sample"], out["source"] = out["onnx_per_sample"], "ONNX graph (Conv/ConvTranspose/MatMul/Gemm)"
    if errors:
        out["errors"] = errors
    return out


