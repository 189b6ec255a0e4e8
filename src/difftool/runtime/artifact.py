"""Read the model card of any supported file without loading a backend (and without torch for
``.onnx`` and ``.safetensors``)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from difftool.config import CARD_KEY, ModelCard
from difftool.errors import DifftoolError
from difftool.runtime.kinds import kind_of


def read_card(path: str | Path) -> ModelCard:
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
    if _safetensors_header(path) is not None:
        header = _safetensors_header(path)
        meta = header.get("__metadata__", {})
        if CARD_KEY not in meta:
            raise DifftoolError(f"{path} has no difftool metadata (not written by difftool)")
        return ModelCard.from_json(meta[CARD_KEY])
    from difftool.models.checkpoint import _read_pth, card_from_state_dict  # needs torch

    return card_from_state_dict(_read_pth(path), path)


def _safetensors_header(path: Path) -> dict | None:
    """The JSON header of a safetensors file, or None if ``path`` is not one."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return None
        (n,) = struct.unpack("<Q", head)
        if n <= 0 or n > 100_000_000:
            return None
        raw = f.read(n)
    if not raw.startswith(b"{"):
        return None
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DifftoolError(f"{path} looks like safetensors but its header is corrupt") from None


def onnx_card(path: Path) -> ModelCard:
    meta = onnx_metadata(path)
    if CARD_KEY not in meta:
        raise DifftoolError(
            f"{path} is an ONNX graph without difftool metadata; export it with `difftool export`"
        )
    return ModelCard.from_json(meta[CARD_KEY])


def onnx_metadata(path: Path) -> dict[str, str]:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise DifftoolError(f"{path} is not a readable ONNX file ({str(exc).splitlines()[0][:160]})") from None
    return {p.key: p.value for p in model.metadata_props}


def _sidecar_card(path: Path) -> ModelCard:
    side = path.with_suffix(path.suffix + ".json")
    if not side.is_file():
        raise DifftoolError(f"{path}: the sidecar {side.name} with the model card is missing")
    try:
        data = json.loads(side.read_text())
    except json.JSONDecodeError as exc:
        raise DifftoolError(f"{side} is not valid JSON ({exc})") from None
    return ModelCard.from_dict(data.get("card", data))
