"""A Triton Inference Server model repository for a difftool graph (onnxruntime backend).

Layout: ``<out>/<model_name>/config.pbtxt``, ``<out>/<model_name>/1/model.onnx`` and
``<out>/<model_name>/difftool.json`` (the model card; also in ``config.pbtxt`` ``parameters`` and in
the graph's metadata). Triton owns the batch dimension (``max_batch_size``), so ``dims`` leave it out,
and the per-sample scalar ``t`` is declared ``dims: [1]`` with ``reshape: { shape: [ ] }`` to reach the
graph's ``t[batch]``. The model folder is built in a temporary folder and renamed into place.

:func:`export_triton_generator` packages a one-file generator instead (built in its batch-first
layout: ``guidance [B,1]``, ``noise [B,N,C,H,W]``), so the server runs whole generations and its
dynamic batcher stacks requests: inputs ``x_T``, ``context``, ``guidance``, ``noise`` (as the sampler
needs), outputs ``images`` (uint8) and ``sample``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from difftool.config import CARD_KEY, ModelCard
from difftool.errors import DifftoolError

KINDS = ("KIND_CPU", "KIND_GPU")


def _pbtxt_string(text: str) -> str:
    """A protobuf text-format string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _tensor(name: str, dims: list[int], reshape: bool = False, data_type: str = "TYPE_FP32") -> str:
    lines = ["  {", f"    name: \"{name}\"", f"    data_type: {data_type}",
             f"    dims: [ {', '.join(str(d) for d in dims)} ]"]
    if reshape:
        lines.append("    reshape: { shape: [ ] }")
    return "\n".join([*lines, "  }"])


def config_pbtxt(card: ModelCard, model_name: str, *, max_batch_size: int = 64, kind: str = "KIND_CPU",
                 count: int = 1, preferred_batch_sizes: tuple[int, ...] = (16, 32),
                 max_queue_delay_us: int = 100) -> str:
    """The ``config.pbtxt`` text for ``card``."""
    if kind not in KINDS:
        raise DifftoolError(f"unknown instance kind {kind!r}; choose KIND_CPU or KIND_GPU")
    image = [card.channels, card.image_size, card.image_size]
    inputs = [_tensor("x", image), _tensor("t", [1], reshape=True)]
    if card.conditional:
        inputs.append(_tensor("context", [card.num_classes]))
    return _config(model_name, inputs, [_tensor("eps", image)], {CARD_KEY: card.to_json()},
                   max_batch_size=max_batch_size, kind=kind, count=count,
                   preferred_batch_sizes=preferred_batch_sizes, max_queue_delay_us=max_queue_delay_us)


def _config(model_name: str, inputs: list[str], outputs: list[str], params: dict[str, str], *,
            max_batch_size: int, kind: str, count: int, preferred_batch_sizes: tuple[int, ...],
            max_queue_delay_us: int) -> str:
    """The config.pbtxt text around formatted input/output entries."""
    preferred = [b for b in preferred_batch_sizes if b <= max_batch_size]
    batching = [f"  max_queue_delay_microseconds: {max_queue_delay_us}"]
    if preferred:
        batching.insert(0, f"  preferred_batch_size: [ {', '.join(str(b) for b in preferred)} ]")
    parameters = [f"parameters {{\n  key: \"{key}\"\n  value: {{ string_value: {_pbtxt_string(value)} }}\n}}"
                  for key, value in params.items()]
    parts = [
        f"name: {_pbtxt_string(model_name)}",
        'platform: "onnxruntime_onnx"',
        f"max_batch_size: {max_batch_size}",
        "input [\n" + ",\n".join(inputs) + "\n]",
        "output [\n" + ",\n".join(outputs) + "\n]",
        "dynamic_batching {\n" + "\n".join(batching) + "\n}",
        f"instance_group [\n  {{\n    count: {count}\n    kind: {kind}\n  }}\n]",
        *parameters,
    ]
    return "\n".join(parts) + "\n"


DTYPES = {"float32": "TYPE_FP32", "uint8": "TYPE_UINT8"}


def generator_config_pbtxt(card: ModelCard, info, model_name: str, *, max_batch_size: int = 64,
                           kind: str = "KIND_CPU", count: int = 1, preferred_batch_sizes: tuple[int, ...] = (16, 32),
                           max_queue_delay_us: int = 1000) -> str:
    """``config.pbtxt`` for a batch-first generator (``info``: its GeneratorInfo): dims leave out B."""
    from difftool.runtime.generator import GENERATOR_KEY

    if kind not in KINDS:
        raise DifftoolError(f"unknown instance kind {kind!r}; choose KIND_CPU or KIND_GPU")
    if info.layout != "batched":
        raise DifftoolError("Triton batches along the first dimension: build the generator with layout 'batched'")

    def entries(specs: dict) -> list[str]:
        return [_tensor(name, [d for d in spec["shape"][1:]], data_type=DTYPES[spec["dtype"]])
                for name, spec in specs.items()]

    return _config(model_name, entries(info.inputs), entries(info.outputs),
                   {CARD_KEY: card.to_json(), GENERATOR_KEY: info.to_json()}, max_batch_size=max_batch_size,
                   kind=kind, count=count, preferred_batch_sizes=preferred_batch_sizes,
                   max_queue_delay_us=max_queue_delay_us)


def export_triton(src, out_dir: str | Path, *, model_name: str | None = None, max_batch_size: int = 64,
                  kind: str = "KIND_CPU", count: int = 1, preferred_batch_sizes: tuple[int, ...] = (16, 32),
                  max_queue_delay_us: int = 100, **export_opts) -> Path:
    """Write a Triton model folder for ``src`` (an ``.onnx`` or a checkpoint) into ``out_dir``.

    Returns ``<out_dir>/<model_name>``; an existing folder of that name is replaced atomically.
    ``export_opts`` go to :func:`~difftool.export.onnx_export.export_onnx` for checkpoints.
    """
    name = _model_name(model_name, Path(str(getattr(src, "path", src))).stem)
    with _staged_model(Path(out_dir), name) as (staged, graph):
        card = _place_graph(src, graph, export_opts)
        (staged / "config.pbtxt").write_text(config_pbtxt(
            card, name, max_batch_size=max_batch_size, kind=kind, count=count,
            preferred_batch_sizes=preferred_batch_sizes, max_queue_delay_us=max_queue_delay_us))
        (staged / "difftool.json").write_text(json.dumps({"card": card.to_dict()}, indent=2, sort_keys=True))
    return Path(out_dir) / name


def export_triton_generator(src, out_dir: str | Path, settings=None, *, model_name: str | None = None,
                            image_size: int | None = None, max_batch_size: int = 64, kind: str = "KIND_CPU",
                            count: int = 1, preferred_batch_sizes: tuple[int, ...] = (16, 32),
                            max_queue_delay_us: int = 1000) -> dict:
    """A Triton model folder whose model is a generator for ``src`` (U-Net ``.onnx`` or checkpoint);
    returns the export summary with ``path`` = ``<out_dir>/<model_name>``."""
    from difftool.export.generator import GeneratorSettings, export_generator
    from difftool.runtime.artifact import onnx_card
    from difftool.runtime.generator import generator_info

    name = _model_name(model_name, f"{Path(str(src)).name.split('.')[0]}_generator")
    with _staged_model(Path(out_dir), name) as (staged, graph):
        summary = export_generator(src, graph, settings or GeneratorSettings(), layout="batched",
                                   image_size=image_size)
        card, info = onnx_card(graph), generator_info(graph)
        (staged / "config.pbtxt").write_text(generator_config_pbtxt(
            card, info, name, max_batch_size=max_batch_size, kind=kind, count=count,
            preferred_batch_sizes=preferred_batch_sizes, max_queue_delay_us=max_queue_delay_us))
        (staged / "difftool.json").write_text(json.dumps({"card": card.to_dict(), "generator": json.loads(
            info.to_json())}, indent=2, sort_keys=True))
    return {**summary, "path": str(Path(out_dir) / name), "format": "triton generator"}


def _model_name(given: str | None, derived: str) -> str:
    """The Triton model name: ``given`` as it is, else ``derived`` with other characters made ``_``;
    DifftoolError unless it is letters, digits, ``_ . -`` (not starting with . or -)."""
    name = given or re.sub(r"[^A-Za-z0-9_.-]", "_", derived)
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        raise DifftoolError(f"invalid Triton model name {name!r} (letters, digits, _ . - only)")
    return name


@contextlib.contextmanager
def _staged_model(out_dir: Path, name: str):
    """Yield (folder, its ``1/model.onnx`` path) in a scratch folder; on success it replaces ``out_dir/name``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=f".{name}.tmp-") as tmp:
        staged = Path(tmp) / name
        (staged / "1").mkdir(parents=True)
        yield staged, staged / "1" / "model.onnx"
        _swap_in(staged, out_dir / name, Path(tmp))


def _place_graph(src, graph: Path, export_opts: dict) -> ModelCard:
    """Copy an ``.onnx`` (validated) or export a checkpoint to ``graph``; returns its card."""
    from difftool.runtime.artifact import onnx_card

    if isinstance(src, str | Path) and Path(src).suffix.lower() == ".onnx":
        from difftool.runtime.backends.ort import open_session, validate

        validate(open_session(src, threads=1, providers=["CPUExecutionProvider"]), src)
        shutil.copyfile(src, graph)
    else:
        from difftool.export.onnx_export import export_onnx

        if export_opts.get("optimize"):
            raise DifftoolError("Triton's onnxruntime backend optimises graphs itself; export without --optimize")
        export_onnx(src, graph, **export_opts)
    return onnx_card(graph)


def _swap_in(staged: Path, final: Path, tmp: Path) -> None:
    """Move ``staged`` to ``final``, replacing an existing folder (old one moved aside, then removed)."""
    old = tmp / "old"
    if final.exists():
        os.replace(final, old)
    try:
        os.replace(staged, final)
    except BaseException:
        if old.exists():
            os.replace(old, final)
        raise
