"""Reading foreign ``.pth`` files safely: say what a file is when it is not a checkpoint, explain torch's
load errors in one line (without torch's advice to pass ``weights_only=False``, which would run code from
the file), and unwrap the state dict from the containers people save.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from difftool.errors import DifftoolError

LOADABLE_KINDS = (None, "a PyTorch checkpoint (ZIP)", "a Python pickle")
NEVER_RUN = ("difftool loads plain tensors only (weights_only=True) and never runs code stored in a model "
             "file; re-save the weights as a state dict: torch.save(model.state_dict(), path)")


def reject_non_checkpoint(path: Path) -> None:
    """An HTML page, an empty file, an image, ... named ``.pth``: say what it looks like."""
    from difftool.filekind import describe

    kind = describe(path)
    if kind not in LOADABLE_KINDS:
        raise DifftoolError(f"cannot read {path} as a model checkpoint: it looks like {kind}")


def explain_load_error(path: Path, exc: BaseException) -> str:
    """One line for an exception raised by ``torch.load(path, weights_only=True)``."""
    text = str(exc)
    if "Weights only load failed" in text or type(exc).__name__ == "UnpicklingError":
        found = re.search(r"GLOBAL ([\w.]+)", text)
        if found:
            return (f"{path} holds pickled Python objects, not only tensors (it refers to {found.group(1)}); "
                    + NEVER_RUN)
        return (f"{path} is not a PyTorch checkpoint: its pickle data uses constructs a plain state dict never "
                "has (a generic Python pickle, or corrupt); " + NEVER_RUN)
    if isinstance(exc, EOFError) or "unexpected EOF" in text or "truncated" in text.lower():
        return f"{path} is truncated: the file ends before the checkpoint does (was the download or save cut short?)"
    if "central directory" in text or "zip archive" in text.lower():
        return (f"{path} is a truncated or corrupt PyTorch checkpoint (its ZIP directory is unreadable; was the "
                "download or save cut short?)")
    if "archive" in text or "data.pkl" in text or "inline_container" in text:
        return f"{path} is a ZIP archive but not a PyTorch checkpoint ({_clean(text)})"
    return f"{path} is not a readable PyTorch checkpoint ({type(exc).__name__}: {_clean(text)})"


def _clean(text: str, limit: int = 160) -> str:
    """torch's message, first sentence-ish, with any weights_only advice removed."""
    parts = [p for p in re.split(r"(?<=[.!?])\s+|\n+", text) if p.strip() and "weights_only" not in p]
    out = " ".join(" ".join(parts).split())
    return (out[:limit] + "...") if len(out) > limit else (out or "no details")


def state_dict_of(obj: Any, path: Path) -> dict:
    """The bare ``{name: tensor}`` dict inside what ``torch.load`` returned, or one line saying why not."""
    import torch

    if isinstance(obj, dict) and isinstance(obj.get("card"), str) and isinstance(obj.get("ema"), dict):
        raise DifftoolError(f"{path} is a difftool training state (resume file); use the model.safetensors "
                            "written beside it in the same run folder")
    for key in ("state_dict", "model", "model_state_dict", "ema"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if isinstance(obj, torch.Tensor):
        raise DifftoolError(f"{path} holds a single tensor {tuple(obj.shape)}, not a state dict of named tensors")
    if not isinstance(obj, dict):
        raise DifftoolError(f"{path} holds a {type(obj).__name__}, not a state dict of named tensors")
    if not obj:
        raise DifftoolError(f"{path} holds an empty dict: there are no weights in it")
    for key, value in obj.items():
        if not isinstance(key, str):
            raise DifftoolError(f"{path} holds a dict with a non-string key {key!r}; a state dict maps names to tensors")
        if not isinstance(value, torch.Tensor):
            raise DifftoolError(f"{path} does not hold a state dict of tensors: entry {key!r} is a "
                                f"{type(value).__name__}")
    return {k.removeprefix("module."): v for k, v in obj.items()}
