"""Run a one-file generator (``difftool export MODEL --generator``) without torch.

A generator file is an ONNX graph mapping noise + context to images, with the whole sampling loop
inside it; its metadata holds the model card (key ``difftool``) and the sampler settings and input
contract (key ``difftool_generator``, :class:`GeneratorInfo`). :class:`GeneratorSession` validates inputs
(one-line :class:`~difftool.errors.DifftoolError` for wrong shapes, a missing input, a non-finite
guidance) and runs it; :class:`GeneratorPipeline` is a :class:`~difftool.runtime.pipeline.Pipeline`
whose ``sample`` runs the file, drawing x_T and the per-step noise from the same seeded
:class:`~difftool.runtime.noise.Noise` stream as the Python loop (x_T first, then one draw per noisy
step), so ``generate gen.onnx --seed 3`` matches ``generate unet.onnx --seed 3`` with the same settings.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from difftool.errors import DifftoolError
from difftool.runtime.denoiser import Step, StepCallback
from difftool.runtime.noise import Noise
from difftool.runtime.pipeline import Pipeline, SampleRequest, check_finite

GENERATOR_KEY = "difftool_generator"
FORMAT = 1


@dataclass(frozen=True)
class GeneratorInfo:
    """The sampler a generator file was built for, and its input contract (stored as JSON)."""

    sampler: str  # canonical registry name
    label: str
    steps: int
    spacing: str
    options: dict[str, Any]  # the sampler's resolved options (eta, variance)
    guidance: float  # the model's recommended guidance (the page's / client's default; an input)
    clip: float | None
    timesteps: tuple[int, ...]
    noise_steps: int  # rows of the ``noise`` input: the steps with sigma > 0, in step order (0: no input)
    layout: str = "default"  # "default" | "batched" (Triton: every input batch-first)
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {dtype, shape, doc}
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    format: int = FORMAT

    @property
    def eta(self) -> float:
        return float(self.options.get("eta", 0.0))

    def describe(self) -> str:
        """E.g. ``DDIM-25 (eta 1, trailing)``."""
        opts = ", ".join([f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in self.options.items()]
                         + [self.spacing])
        return f"{self.label}-{self.steps} ({opts})"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> GeneratorInfo:
        try:
            data = json.loads(text)
            if int(data.get("format", 0)) > FORMAT:
                raise DifftoolError("this generator was written by a newer difftool; upgrade difftool")
            data["timesteps"] = tuple(data["timesteps"])
            return cls(**data)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DifftoolError(f"the generator metadata is malformed ({exc})") from None


def contract(card, noise_steps: int, layout: str = "default") -> tuple[dict, dict]:
    """The (inputs, outputs) contract of a generator for ``card``: {name: {dtype, shape, doc}}."""
    c, s, k = card.channels, card.image_size, card.num_classes
    batched = layout == "batched"
    inputs: dict[str, dict[str, Any]] = {
        "x_T": {"dtype": "float32", "shape": ["B", c, s, s], "doc": "standard normal starting noise"}}
    if k:
        inputs["context"] = {"dtype": "float32", "shape": ["B", k],
                             "doc": "class weights: one-hot = a class, zeros = unconditional, fractions = a mix"}
        inputs["guidance"] = {"dtype": "float32", "shape": ["B", 1] if batched else [],
                              "doc": "classifier-free guidance scale (1: none)"}
    if noise_steps:
        shape = ["B", noise_steps, c, s, s] if batched else [noise_steps, "B", c, s, s]
        inputs["noise"] = {"dtype": "float32", "shape": shape,
                           "doc": f"standard normal noise of the {noise_steps} steps with sigma > 0, in step order"}
    outputs = {"images": {"dtype": "uint8", "shape": ["B", s, s, c], "doc": "RGB(A)/gray pixels, ready to show"},
               "sample": {"dtype": "float32", "shape": ["B", c, s, s], "doc": "x_0 in the card's value range"}}
    return inputs, outputs


def generator_info(path: str | Path) -> GeneratorInfo | None:
    """The :class:`GeneratorInfo` of an ``.onnx`` generator file, None for any other file."""
    path = Path(path)
    if path.suffix.lower() != ".onnx" or not path.is_file():
        return None
    from difftool.runtime.artifact import onnx_metadata

    try:
        meta = onnx_metadata(path)
    except DifftoolError:  # unreadable: the regular loaders say why
        return None
    return GeneratorInfo.from_json(meta[GENERATOR_KEY]) if GENERATOR_KEY in meta else None


def info_rows(info: GeneratorInfo) -> list[tuple[str, str]]:
    """Rows for ``difftool info``: the baked sampler and the input/output contract."""
    def fmt(spec: dict) -> str:
        return f"{spec['dtype']}[{','.join(str(d) for d in spec['shape'])}]"

    rows = [("generator", f"{info.describe()}, clip {info.clip}, default guidance {info.guidance:g}, "
                          f"timesteps {info.timesteps[0]}..{info.timesteps[-1]}, layout {info.layout}")]
    rows.append(("inputs", "; ".join(f"{n} {fmt(s)}" for n, s in info.inputs.items())))
    rows.append(("outputs", "; ".join(f"{n} {fmt(s)}" for n, s in info.outputs.items())))
    return rows


class GeneratorSession:
    """An onnxruntime session over a generator file, with input validation. ``name`` is e.g.
    ``generator/ort-cpu``; ``card`` and ``info`` come from the file's metadata."""

    def __init__(self, path: str | Path, threads: int | None = None, providers: list | None = None,
                 shards: int | None = None):
        from difftool.runtime.artifact import onnx_card
        from difftool.runtime.backends.ort import PROVIDER_NAMES, RowShards

        self.path = Path(path)
        info = generator_info(self.path)
        if info is None:
            raise DifftoolError(f"{self.path} is not a difftool generator (export one with "
                                "`difftool export MODEL --generator`)")
        self.info, self.card = info, onnx_card(self.path)
        # Row shards as in the U-Net backend: on CPU, N single-threaded runs of contiguous rows at once.
        self._row_shards = RowShards(self.path, threads, providers, shards)
        self.shards = self._row_shards.n
        self.session = self._row_shards.open()
        first = self.session.get_providers()[0]
        self.name = "generator/" + PROVIDER_NAMES.get(first, first)

    def __call__(self, *_args):  # a generator is no Denoiser: it has no per-step eps
        raise DifftoolError("a generator file runs whole generations; it has no per-step U-Net call")

    def feeds(self, x_T: np.ndarray, context: np.ndarray | None = None, guidance: float | np.ndarray | None = None,
              noise: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Checked input arrays (float32, contiguous) for :meth:`run`."""
        given = {"x_T": x_T, "context": context, "guidance": guidance, "noise": noise}
        feeds: dict[str, np.ndarray] = {}
        for name, spec in self.info.inputs.items():
            if given[name] is None:
                raise DifftoolError(f"{self.path.name}: missing input {name!r} ({_fmt(spec)})")
            arr = np.asarray(given[name], dtype=np.float32)  # (ascontiguousarray would make a scalar 1-D)
            feeds[name] = arr if arr.flags.c_contiguous else arr.copy()
        extra = [n for n, v in given.items() if v is not None and n not in self.info.inputs]
        if extra:
            raise DifftoolError(f"{self.path.name} takes no input {extra[0]!r} (inputs: {', '.join(self.info.inputs)})")
        batch = feeds["x_T"].shape[0] if feeds["x_T"].ndim else 0
        for name, arr in feeds.items():
            want = [batch if d == "B" else d for d in self.info.inputs[name]["shape"]]
            if list(arr.shape) != want or (name == "x_T" and batch < 1):
                raise DifftoolError(f"{self.path.name}: input {name} must have shape "
                                    f"{_fmt(self.info.inputs[name])} (B = {batch}), got {list(arr.shape)}")
        if "guidance" in feeds and not np.isfinite(feeds["guidance"]).all():
            raise DifftoolError(f"guidance must be a finite number, got {feeds['guidance'].ravel()[:4].tolist()}")
        for name in ("x_T", "context", "noise"):
            if name in feeds and not np.isfinite(feeds[name]).all():
                raise DifftoolError(f"input {name} has non-finite values (NaN/inf)")
        return feeds

    def run(self, x_T: np.ndarray, context: np.ndarray | None = None, guidance: float | None = None,
            noise: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One whole generation: (images (B, H, W, C) uint8, sample (B, C, H, W) float32)."""
        feeds = self.feeds(x_T, context, guidance, noise)
        try:
            images, sample = self._run_sharded(feeds) if self.shards > 1 else self.session.run(["images", "sample"], feeds)
        except Exception as exc:
            msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise DifftoolError(f"{self.name}: generation failed ({msg})") from None
        return images, check_finite(sample)


    def _shard(self, feeds: dict[str, np.ndarray], a: int, b: int) -> dict[str, np.ndarray]:
        """Rows a..b of every input (along its ``B`` axis; inputs without one, e.g. a scalar guidance, whole)."""
        out = {}
        for name, arr in feeds.items():
            shape = self.info.inputs[name]["shape"]
            if "B" not in shape:
                out[name] = arr
                continue
            index = [slice(None)] * arr.ndim
            index[shape.index("B")] = slice(a, b)
            out[name] = np.ascontiguousarray(arr[tuple(index)])
        return out

    def _run_sharded(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        batch = feeds["x_T"].shape[0]
        if batch < 2:
            return self._row_shards.whole(self.session).run(["images", "sample"], feeds)
        parts = self._row_shards.map(lambda span: self.session.run(["images", "sample"], self._shard(feeds, *span)),
                                     self._row_shards.spans(batch))
        return [np.concatenate([p[i] for p in parts]) for i in range(2)]


def _fmt(spec: dict) -> str:
    return f"{spec['dtype']}[{', '.join(str(d) for d in spec['shape'])}]"


class GeneratorPipeline(Pipeline):
    """A :class:`Pipeline` over a generator file: ``sample(request)`` runs the whole loop in the graph.

    The request's sampler settings must be the ones the file was built for. The callback is called once
    per step after the run, each time with the final sample (a generator has no intermediate frames).
    """

    def __init__(self, session: GeneratorSession):
        super().__init__(session)
        self.info = session.info

    def check_request(self, request: SampleRequest) -> None:
        """DifftoolError unless ``request`` asks for the sampler this file was built for."""
        from difftool.runtime.defaults import request_options, spacing_for
        from difftool.runtime.samplers import get_sampler

        spec = get_sampler(request.sampler)
        options = request_options(self.card, spec, request)
        steps = request.steps if request.steps is not None else self.schedule.t_max - self.schedule.t_min + 1
        wanted = (spec.name, steps, spacing_for(self.card, request.spacing) or spec.default_spacing, options,
                  self.clip_value(request))
        built = (self.info.sampler, self.info.steps, self.info.spacing, self.info.options, self.info.clip)
        if not _same(wanted, built):
            asked = f"{spec.label}-{steps} ({', '.join(f'{k} {v}' for k, v in options.items())})"
            raise DifftoolError(f"this generator was built for {self.info.describe()}; asked for {asked}: "
                                "re-export with `difftool export MODEL --generator --sampler ... --steps ...` "
                                "or use the U-Net graph")

    def sample(self, request: SampleRequest, callback: StepCallback | None = None) -> np.ndarray:
        self.check_request(request)
        card = self.card
        noise = Noise(self._seeds(request))
        shape = (card.channels, card.image_size, card.image_size)
        noise.reserve((1 + self.info.noise_steps) * math.prod(shape))  # one draw per row, as Pipeline.start
        x_t = noise(shape)  # (n, C, H, W), drawn first as in Pipeline.start
        z = np.stack([noise(shape) for _ in range(self.info.noise_steps)]) if self.info.noise_steps else None
        guidance = np.float32(request.guidance)
        if self.info.layout == "batched":  # Triton's layout: every input batch-first
            z = None if z is None else np.ascontiguousarray(z.transpose(1, 0, 2, 3, 4))  # (n, N, C, H, W)
            guidance = np.full((request.n, 1), guidance, dtype=np.float32)
        conditional = card.num_classes > 0
        _, x = self.denoiser.run(x_t, self._context(request) if conditional else None,
                                 guidance if conditional else None, z)
        if callback is not None:
            total = len(self.info.timesteps)
            for index, t in enumerate(self.info.timesteps):
                callback(Step(index, total, int(t), x, x))
        return x


def _same(a, b) -> bool:
    """Equal, with floats compared to 1e-12."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float | int) and isinstance(b, float | int) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=0, abs_tol=1e-12)
    return a == b


def open_generator(path: str | Path, backend: str = "auto", threads: int | None = None) -> GeneratorPipeline:
    """A :class:`GeneratorPipeline` for ``path`` on an onnxruntime backend (auto, ort-cpu, ort-cuda)."""
    providers = {"auto": None, "ort-cpu": ["CPUExecutionProvider"],
                 "ort-cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}
    if backend not in providers:
        raise DifftoolError(f"a generator file runs on onnxruntime (backend auto, ort-cpu or ort-cuda), not {backend}")
    return GeneratorPipeline(GeneratorSession(path, threads, providers[backend]))
