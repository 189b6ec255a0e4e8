"""One record of a generation's settings, written into every PNG difftool saves and read back.

A PNG gets two text chunks: ``difftool`` (this record as JSON: model, sampler and its options, steps,
spacing, guidance, per-row seeds and context rows, clip, palette, grid layout) and ``parameters``, the
A1111-style line image tools read (``prompt\\nSteps: 25, Sampler: DDIM, CFG scale: 3, Seed: 0, ...``).
``difftool generate --from-png FILE`` rebuilds the exact request from the first chunk.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from difftool.errors import DifftoolError

PNG_KEY = "difftool"
A1111_KEY = "parameters"
RECORD_VERSION = 1


@dataclass(frozen=True)
class GenerationRecord:
    """Everything needed to regenerate a grid's pixels."""

    sampler: str
    steps: int
    guidance: float
    seeds: tuple[int, ...]
    context: tuple[tuple[float, ...], ...]  # (n, K) context rows
    options: dict[str, Any] = field(default_factory=dict)  # the sampler's options (eta, variance ...)
    spacing: str | None = None
    clip: float | str | None = "auto"
    model: str = ""  # the model file's name as given
    model_sha256: str = ""  # first 16 hex digits of the file's SHA-256 ("" when unknown)
    class_names: tuple[str, ...] = ()
    image_size: int = 0
    nrow: int = 8
    scale: int = 1
    gap: int = 1  # gutter between sprites in the PNG (0: a gapless sheet, as the TUI saves)
    palette: str | None = None
    version: int = RECORD_VERSION

    # -- to and from a request -----------------------------------------------------------------------
    @classmethod
    def from_request(cls, request: Any, *, card: Any, model: str | Path | None = None, nrow: int = 8,
                     scale: int = 1, palette: str | None = None, gap: int = 1) -> GenerationRecord:
        from difftool.runtime.samplers import get_sampler

        spec = get_sampler(request.sampler)
        n = request.n
        seeds = request.seeds if request.seeds is not None else list(range(request.seed, request.seed + n))
        ctx = np.zeros((n, card.num_classes), np.float32) if request.context is None else np.asarray(request.context)
        path = Path(model) if model else None
        return cls(sampler=spec.name, steps=int(request.steps), guidance=float(request.guidance),
                   seeds=tuple(int(s) for s in seeds), context=tuple(tuple(float(v) for v in row) for row in ctx),
                   options={o.name: getattr(request, o.name) for o in spec.options}, spacing=request.spacing,
                   clip=request.clip, model=path.name if path else "", model_sha256=file_digest(path) if path else "",
                   class_names=tuple(card.class_names), image_size=card.image_size, nrow=nrow, scale=scale,
                   palette=palette, gap=gap)

    def to_request(self) -> Any:
        """The SampleRequest that regenerates the recorded pixels."""
        from difftool.runtime.pipeline import SampleRequest

        k = len(self.context[0]) if self.context else 0
        ctx = np.asarray(self.context, dtype=np.float32).reshape(len(self.seeds), k)
        fields = {k_: v for k_, v in self.options.items() if k_ in ("eta", "variance")}
        return SampleRequest(n=len(self.seeds), context=ctx, sampler=self.sampler, steps=self.steps,
                             guidance=self.guidance, seeds=list(self.seeds), seed=self.seeds[0],
                             spacing=self.spacing, clip=self.clip, **fields)

    # -- text forms ---------------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> GenerationRecord:
        try:
            data = json.loads(text)
            data["seeds"] = tuple(data["seeds"])
            data["context"] = tuple(tuple(r) for r in data["context"])
            data["class_names"] = tuple(data.get("class_names", ()))
            known = set(cls.__dataclass_fields__)
            record = cls(**{k: v for k, v in data.items() if k in known})
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DifftoolError(f"the difftool settings in this PNG are malformed ({exc})") from None
        if record.version > RECORD_VERSION:
            raise DifftoolError("this PNG was written by a newer difftool; upgrade difftool to read it")
        if not record.seeds or len(record.context) != len(record.seeds):
            raise DifftoolError("the difftool settings in this PNG have no seeds or mismatched context rows")
        return record

    def a1111(self) -> str:
        """The A1111-style ``parameters`` text."""
        from difftool.runtime.samplers import get_sampler

        prompts = {mix_text(row, self.class_names) for row in self.context}
        prompt = prompts.pop() if len(prompts) == 1 else "; ".join(dict.fromkeys(
            mix_text(row, self.class_names) for row in self.context))
        parts = [f"Steps: {self.steps}", f"Sampler: {get_sampler(self.sampler).label}",
                 f"CFG scale: {self.guidance:g}", f"Seed: {self.seeds[0]}",
                 f"Size: {self.image_size}x{self.image_size}", f"Batch size: {len(self.seeds)}"]
        parts += [f"{k.capitalize()}: {v}" for k, v in self.options.items()]
        if self.model:
            parts += [f"Model: {self.model}"] + ([f"Model hash: {self.model_sha256}"] if self.model_sha256 else [])
        return f"{prompt}\n" + ", ".join(parts)

    def png_text(self) -> dict[str, str]:
        return {PNG_KEY: self.to_json(), A1111_KEY: self.a1111()}


def mix_text(row: Any, class_names: tuple[str, ...]) -> str:
    """``hero`` for a one-hot row, ``hero=0.5,food=0.5`` for a mix, ``none`` for zeros."""
    items = [(class_names[i] if i < len(class_names) else str(i), float(w)) for i, w in enumerate(row) if w]
    if not items:
        return "none"
    if len(items) == 1 and items[0][1] == 1.0:
        return items[0][0]
    return ",".join(f"{name}={w:g}" for name, w in items)


def file_digest(path: Path | None) -> str:
    """The first 16 hex digits of a file's SHA-256 ("" if it is not a readable file)."""
    if path is None or not path.is_file():
        return ""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def read_png(path: str | Path) -> GenerationRecord:
    """The record in a PNG written by difftool (DifftoolError naming what is wrong otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise DifftoolError(f"file not found: {path}")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            text = dict(getattr(image, "text", {}) or {})
    except (UnidentifiedImageError, OSError) as exc:
        raise DifftoolError(f"{path} is not a readable PNG ({exc})") from None
    if PNG_KEY not in text:
        raise DifftoolError(f"{path} has no difftool settings (it was not saved by difftool, or its metadata "
                            "was stripped)")
    return GenerationRecord.from_json(text[PNG_KEY])
