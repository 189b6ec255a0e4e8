"""Read (and validate) the model card of any supported file without loading a backend; torch is needed
only for ``.pth`` files (and used, when installed, to validate checkpoint weights)."""

from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path

from difftool.config import CARD_KEY, ModelCard
from difftool.errors import DifftoolError
from difftool.filekind import looks_like_safetensors
from difftool.runtime.kinds import kind_of

MAX_HEADER = 100_000_000  # safetensors' own limit on the JSON header


def read_card(path: str | Path) -> ModelCard:
    """The model card of ``path``, after validating the file (the one check every front end runs).

    ``.onnx``: graph inputs/outputs against the card, finite weights (:mod:`difftool.runtime.onnxcheck`).
    Checkpoints: with torch installed, the full load-time validation of
    :func:`difftool.models.checkpoint.load` (keys, shapes, dtypes, finite weights); without torch, a
    safetensors header only.
    """
    path = Path(path)
    # -- diffusers model folder: the card comes from its JSON configs (no torch, no diffusers)
    from difftool.models.diffusers_io import diffusers_folder, folder_card

    if (folder := diffusers_folder(path)) is not None:
        return folder_card(folder)
    if not path.is_file():
        raise DifftoolError(f"file not found: {path}")
    kind = kind_of(path)
    if kind.name == "onnx":
        return onnx_card(path)
    if kind.name == "engine":
        return _sidecar_card(path)
    if _torch_installed():
        from difftool.models.checkpoint import load  # validates keys, shapes and values

        return load(path).card
    header = _safetensors_header(path)
    if header is None:
        from difftool.errors import MissingDependency

        raise MissingDependency("torch", "train", f"reading {path.name} (not a difftool safetensors file)")
    meta = header.get("__metadata__", {})
    if CARD_KEY not in meta:
        raise DifftoolError(f"{path} has no difftool metadata (not written by difftool)")
    return ModelCard.from_json(meta[CARD_KEY])


def _torch_installed() -> bool:
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def _safetensors_header(path: Path) -> dict | None:
    """The JSON header of a safetensors file, or None if ``path`` is not one."""
    with open(path, "rb") as f:
        head = f.read(9)
        if not looks_like_safetensors(head):
            return None
        (n,) = struct.unpack("<Q", head[:8])
        if n > min(MAX_HEADER, path.stat().st_size - 8):
            raise DifftoolError(f"{path} is a corrupt safetensors file: its header claims {n} bytes, "
                                f"the file has {path.stat().st_size}")
        f.seek(8)
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DifftoolError(f"{path} looks like safetensors but its header is corrupt") from None
    if not isinstance(header, dict):
        raise DifftoolError(f"{path} looks like safetensors but its header is not a JSON object")
    return header


def onnx_card(path: Path) -> ModelCard:
    """The card of an ``.onnx`` artifact, after checking the graph against it (one-line errors)."""
    from difftool.runtime.onnxcheck import load_checked

    _reject_non_onnx(path)
    return load_checked(path)[1]


def _reject_non_onnx(path: Path) -> None:
    """A file that is clearly something else (HTML, empty, a checkpoint, ...) named ``.onnx``."""
    from difftool.filekind import describe

    kind = describe(path)
    if kind is not None and kind != "a text file":
        raise DifftoolError(f"{path} is not an ONNX graph: it looks like {kind}")


def onnx_metadata(path: Path) -> dict[str, str]:
    """The metadata of an ``.onnx`` file (its graph is skipped, not decoded); one-line error if unreadable."""
    from difftool.runtime.onnxcheck import read_model

    return read_model(path, graph=False).metadata


def _sidecar_card(path: Path) -> ModelCard:
    side = path.with_suffix(path.suffix + ".json")
    if not side.is_file():
        raise DifftoolError(f"{path}: the sidecar {side.name} with the model card is missing")
    try:
        data = json.loads(side.read_text())
    except json.JSONDecodeError as exc:
        raise DifftoolError(f"{side} is not valid JSON ({exc})") from None
    return ModelCard.from_dict(data.get("card", data))
