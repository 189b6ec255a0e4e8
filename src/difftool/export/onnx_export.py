"""Checkpoint -> single-file ONNX graph with the difftool contract, model card and parity check.

``export_onnx`` traces the contract wrapper with the dynamo exporter (dynamic ``batch`` axis), falls
back to the TorchScript exporter (opset 17) only if dynamo fails, writes the card into
``metadata_props``, checks onnxruntime against PyTorch at batch 1 and 3, and optionally optimises and
reduces precision. Everything is built in a temporary folder beside the output and moved into place
with ``os.replace`` at the very end: on any failure no output file is left behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from difftool.config import ContextUnetConfig, DiffusersUnetConfig, ModelCard
from difftool.errors import DifftoolError
from difftool.export import parity
from difftool.export.metadata import card_metadata, pin_ir_version, save_single_file, set_props
from difftool.export.parity import PrecisionReport

PRECISIONS = ("fp32", "fp16", "int8")
MAX_BATCH = 4096  # upper bound of the dynamic batch dimension given to torch.export
FALLBACK_OPSET = 17
# Opset 20 has a native Gelu: onnxruntime runs the course ContextUnet's 23 GELUs as single kernels instead of
# Div/Erf/Add/Mul chains (and needs fewer NCHWc reorders): measured 5 % faster at batch 1, 16-22 % at 16-64.
DYNAMO_OPSET = 20
CALIBRATION_BATCHES = 8  # x 16 rows


@dataclass
class ExportReport:
    """What ``export_onnx`` wrote and measured."""

    path: Path
    max_abs_err: dict[int, float]  # fp32 ORT vs eager, per batch size (empty with check=False)
    seconds: float
    opset: int
    exporter: str  # "dynamo" | "torchscript"
    file_size: int
    precision: str = "fp32"
    optimized: bool = False
    ir_version: int = 0
    precision_report: PrecisionReport | None = None  # int8 / fp16 vs fp32
    notes: list[str] = field(default_factory=list)


def load_for_export(src, image_size: int | None = None):
    """A :class:`~difftool.models.checkpoint.LoadedModel` from a path or a LoadedModel, with the image
    size overridden when given (explainingai files do not record it)."""
    from difftool.models.checkpoint import LoadedModel, load

    loaded = src if isinstance(src, LoadedModel) else load(src)
    loaded.module.eval()
    if image_size is None or image_size == loaded.card.image_size:
        return loaded
    return LoadedModel(loaded.module, with_image_size(loaded.card, int(image_size)), loaded.path)


def with_image_size(card: ModelCard, size: int) -> ModelCard:
    """``card`` with ``size`` as its image size; DifftoolError if the architecture cannot take it."""
    cfg = card.model
    if isinstance(cfg, ContextUnetConfig):
        raise DifftoolError(f"a course ContextUnet graph is tied to its height {cfg.height}; "
                            f"--image-size {size} is not possible")
    if isinstance(cfg, DiffusersUnetConfig):  # UNet2DModel: every block but the last halves the size
        factor = 2 ** (len(cfg.unet.get("block_out_channels", (0,) * 4)) - 1)
    else:
        factor = 2 ** sum(bool(d) for d in cfg.down_sample)
    if size < factor or size % factor:
        raise DifftoolError(f"image size {size} must be a positive multiple of {factor} for this U-Net")
    if isinstance(cfg, DiffusersUnetConfig):
        return dataclasses.replace(card, model=dataclasses.replace(cfg, unet={**cfg.unet, "sample_size": size}))
    return dataclasses.replace(card, model=dataclasses.replace(cfg, im_size=size))


def export_onnx(src, out_path: str | Path, *, opset: int | None = None, optimize: bool = False,
                check: bool = True, image_size: int | None = None, precision: str = "fp32",
                calibration_images: np.ndarray | None = None, threads: int = 1,
                int8_target: str = "cpu") -> ExportReport:
    """Export a checkpoint (path or LoadedModel) to ``out_path``; see the module docstring.

    ``precision``: ``fp32``, ``fp16`` (GPU EPs; checked to load and run on CPU) or ``int8`` (static QDQ
    calibrated on ``calibration_images`` or, if None, on the model's own samples; ``int8_target``
    ``cpu`` for ONNX Runtime, ``tensorrt`` for a TensorRT build). ``threads`` pins the CPU threads
    used for the int8/fp16 speed comparison.
    """
    if precision not in PRECISIONS:
        raise DifftoolError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    if optimize and precision == "fp16":
        raise DifftoolError("--optimize saves a CPU-optimised graph; it cannot be combined with fp16 "
                            "(fp16 is for GPU execution providers)")
    start = time.perf_counter()
    loaded = load_for_export(src, image_size)
    card, module = loaded.card, loaded.module
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp_dir:
        tmp = Path(tmp_dir)
        fp32 = tmp / "fp32.onnx"
        exporter, notes = torch_export(module, card, tmp / "raw.onnx", opset)
        model = finalize(tmp / "raw.onnx", card, exporter, fp32)
        errors = parity.check_parity(fp32, module, card) if check else {}
        final, report, held_out = fp32, None, None
        if precision == "int8":
            final = tmp / "int8.onnx"
            report, held_out, more = _int8(fp32, final, card, calibration_images, threads, int8_target)
            notes += more
        elif precision == "fp16":
            from difftool.export.fp16 import convert_fp16

            final = convert_fp16(fp32, tmp / "fp16.onnx")
            report = parity.compare_precision(fp32, final, card, "fp16", threads=threads)
            notes.append("fp16 timings are CPU onnxruntime; fp16 pays off on CUDA/TensorRT only")
        if optimize:
            from difftool.export.optimize import optimize_onnx

            optimized = optimize_onnx(final, tmp / "optimized.onnx")
            if precision == "fp32" and check:
                errors = parity.check_parity(optimized, module, card)
            elif precision == "int8":
                report = parity.compare_precision(fp32, optimized, card, "int8", feeds=held_out,
                                                  threads=threads, calibration=report.calibration)
            final = optimized
        os.replace(final, out)
    opset_used = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return ExportReport(out, errors, time.perf_counter() - start, opset_used, exporter, out.stat().st_size,
                        precision, optimize, model.ir_version, report, notes)


def torch_export(module, card: ModelCard, path: Path, opset: int | None = None) -> tuple[str, list[str]]:
    """Trace the contract wrapper to ``path``: dynamo first, TorchScript (opset 17) as the fallback."""
    import torch

    from difftool.export.wrapper import example_inputs, input_names, wrap

    wrapper = wrap(module, card)
    args = example_inputs(card, batch=2)
    names = input_names(card)
    try:
        batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
        with _quiet():
            torch.onnx.export(wrapper, args, str(path), dynamo=True, opset_version=opset or DYNAMO_OPSET,
                              input_names=names, output_names=["eps"], external_data=False,
                              dynamic_shapes={name: {0: batch} for name in names}, verbose=False)
        return "dynamo", []
    except Exception as exc:  # dynamo is the primary path; say why we leave it
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    path.unlink(missing_ok=True)
    note = f"dynamo exporter failed ({reason}); used the TorchScript exporter (opset {opset or FALLBACK_OPSET})"
    logging.getLogger(__name__).warning(note)
    axes = {name: {0: "batch"} for name in [*names, "eps"]}
    with _quiet():
        torch.onnx.export(wrapper, args, str(path), dynamo=False, opset_version=opset or FALLBACK_OPSET,
                          input_names=names, output_names=["eps"], dynamic_axes=axes)
    return "torchscript", [note]


def finalize(raw: Path, card: ModelCard, exporter: str, out: Path):
    """Add the card metadata, pin the IR version, check, and save ``raw`` as one file at ``out``."""
    import onnx
    import torch

    model = onnx.load(str(raw))
    set_props(model, card_metadata(card, exporter=f"torch.onnx {exporter} (torch {torch.__version__})"))
    pin_ir_version(model)
    onnx.checker.check_model(model)
    save_single_file(model, out)
    return model


def _int8(fp32: Path, out: Path, card: ModelCard, images, threads: int, target: str = "cpu"):
    """Quantise into ``out`` and measure on held-out noisy inputs: (report, held-out feeds, notes)."""
    from difftool.export import int8

    x0, what = int8.calibration_x0(fp32, card, images)
    feeds = int8.noisy_batches(card, x0, CALIBRATION_BATCHES, 16, seed=0)
    notes = int8.quantize_int8(fp32, out, feeds, target=target)
    held_out = int8.noisy_batches(card, x0, 1, 16, seed=4321)[0]
    report = parity.compare_precision(fp32, out, card, "int8", feeds=held_out, threads=threads,
                                      calibration=f"{CALIBRATION_BATCHES * 16} noisy inputs from {what}")
    return report, held_out, notes


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' progress prints, warnings and torchvision-missing log lines."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
