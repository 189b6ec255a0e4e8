"""``difftool export``: pick the output path, run the right exporter, print what was measured."""

from __future__ import annotations

from pathlib import Path

from difftool.errors import DifftoolError

SUFFIX = {"onnx": ".onnx", "tensorrt": ".engine", "triton": "", "web": ""}


def default_out(checkpoint: Path, format: str, precision: str, generator: bool = False) -> Path:
    # a diffusers folder has no suffix to strip: FOLDER -> FOLDER.onnx beside it
    stem = checkpoint if checkpoint.is_dir() else checkpoint.with_suffix("")
    if format in ("triton", "web"):
        return stem.parent / f"{stem.name}{'-generator' if generator and format == 'triton' else ''}-{format}"
    if generator:
        return stem.parent / f"{stem.name}.generator.onnx"
    tag = "" if precision == "fp32" else f".{precision}"
    return stem.parent / f"{stem.name}{tag}{SUFFIX[format]}"


def _calibration_images(paths: list[str]):
    if not paths:
        return None
    from difftool.train.data import load_dataset

    ds = load_dataset("sprites", paths[0] if len(paths) == 1 else None,
                      **({"paths": paths} if len(paths) > 1 else {}))
    return ds.images


def _source(checkpoint: Path, format: str, image_size: int | None, classes: str | None):
    """The validated, loaded checkpoint (class names applied) before any export starts; an ``.onnx`` source
    (tensorrt/triton formats) stays a path and is validated by its exporter."""
    if Path(checkpoint).suffix.lower() == ".onnx":
        if format == "onnx":
            raise DifftoolError(f"{checkpoint} is already an ONNX graph; export takes a checkpoint "
                                "(--format tensorrt or triton also take an .onnx)")
        if classes:
            raise DifftoolError("--classes renames the classes of a checkpoint; export from the checkpoint")
        return checkpoint
    from difftool.export.onnx_export import load_for_export
    from difftool.models.checkpoint import LoadedModel

    loaded = load_for_export(checkpoint, image_size)
    if classes:
        from difftool.classnames import parse_class_names, with_class_names

        card = with_class_names(loaded.card, parse_class_names(classes))
        loaded = LoadedModel(loaded.module, card, loaded.path)
    return loaded


def run_export(checkpoint: Path, *, out: Path | None, format: str = "onnx", precision: str = "fp32",
               optimize: bool = False, image_size: int | None = None, calibration: list[str] = (),
               generator=None, ort_web: Path | None = None, classes: str | None = None, console=None) -> dict:
    """Export ``checkpoint``; ``generator`` (GeneratorSettings) selects the one-file generator."""
    from difftool.models.diffusers_io import diffusers_folder

    if not Path(checkpoint).is_file() and diffusers_folder(checkpoint) is None:
        raise DifftoolError(f"checkpoint not found: {checkpoint}" + (
            " (a folder, but not a diffusers model folder: no model_index.json, config.json, unet/ or unet_ema/)"
            if Path(checkpoint).is_dir() else ""))
    if format == "diffusers":  # a standard diffusers folder (DDPMPipeline.from_pretrained loads it)
        from difftool.export.diffusers_out import export_diffusers

        if out is None:
            raise DifftoolError("--format diffusers needs the output folder: -o FOLDER")
        summary = export_diffusers(checkpoint, Path(out))
        _print(console, summary)
        return summary
    out = Path(out) if out is not None else default_out(Path(checkpoint), format, precision, generator is not None)
    if format not in ("triton", "web") and out.is_dir():
        raise DifftoolError(f"cannot write {out}: it is a folder (give a file name, e.g. {out / 'model.onnx'})")
    if generator is not None or format == "web":
        return _run_generator(Path(checkpoint), out, format, precision, optimize, image_size, generator,
                              ort_web, console)
    checkpoint = _source(checkpoint, format, image_size, classes)
    if format == "onnx":
        from difftool.export.onnx_export import export_onnx
        from difftool.runtime.cpu import cores

        report = export_onnx(checkpoint, out, optimize=optimize, image_size=image_size, precision=precision,
                             calibration_images=_calibration_images(list(calibration)),
                             threads=cores())
        summary = {"path": str(report.path), "format": "onnx", "precision": report.precision,
                   "exporter": report.exporter, "opset": report.opset, "bytes": report.file_size,
                   "seconds": round(report.seconds, 2),
                   "parity_max_abs_err": {str(k): v for k, v in report.max_abs_err.items()},
                   "optimized": report.optimized, "notes": report.notes}
        if report.precision_report is not None:
            pr = report.precision_report
            summary["precision_check"] = {"max_abs_err": pr.max_abs_err, "rel_err": pr.rel_err,
                                          "fp32_ms": pr.fp32_ms, f"{pr.precision}_ms": pr.low_ms,
                                          "speedup": pr.speedup, "batch": pr.batch, "threads": pr.threads,
                                          "calibration": pr.calibration}
        _print(console, summary)
        return summary
    if format == "tensorrt":
        from difftool.export.tensorrt_build import export_tensorrt

        report = export_tensorrt(checkpoint, out, image_size=image_size, precision=precision,
                                 calibration_images=_calibration_images(list(calibration)))
        summary = {"path": str(out), "format": "tensorrt", **{k: str(v) for k, v in vars(report).items()}}
        _print(console, summary)
        return summary
    if precision != "fp32":
        raise DifftoolError("--format triton exports fp32 ONNX; drop --precision")
    from difftool.export.triton import export_triton

    path = export_triton(checkpoint, out, image_size=image_size)
    summary = {"path": str(path), "format": "triton"}
    _print(console, summary)
    return summary


def _run_generator(src: Path, out: Path, format: str, precision: str, optimize: bool, image_size: int | None,
                   settings, ort_web: Path | None, console) -> dict:
    """--generator (onnx / triton) and --format web."""
    from difftool.export.generator import GeneratorSettings

    if precision != "fp32" or optimize:
        raise DifftoolError("a generator is exported in fp32 without --optimize (onnxruntime optimises it at load)")
    settings = settings or GeneratorSettings()
    if format == "onnx":
        from difftool.export.generator import export_generator

        summary = export_generator(src, out, settings, image_size=image_size)
    elif format == "triton":
        from difftool.export.triton import export_triton_generator

        summary = export_triton_generator(src, out, settings, image_size=image_size)
    elif format == "web":
        from difftool.webexport import export_web

        summary = export_web(src, out, settings, ort_web=ort_web, image_size=image_size)
    else:
        raise DifftoolError(f"--generator works with --format onnx, triton or web, not {format}")
    if console is not None:
        size = f", {summary['bytes'] / 1e6:.2f} MB" if "bytes" in summary else ""
        console.print(f"[green]exported[/] {summary['path']} ({summary['format']}, {summary['sampler']}{size})")
        if summary.get("parity_max_abs_err") is not None:
            console.print(f"  parity generator vs numpy loop (max abs): {summary['parity_max_abs_err']:.2e}")
    return summary


def _print(console, summary: dict) -> None:
    if console is None:
        return
    console.print(f"[green]exported[/] {summary['path']} ({summary['format']}"
                  + (f", {summary['precision']}, {summary['bytes'] / 1e6:.2f} MB" if "bytes" in summary else "")
                  + ")")
    if summary.get("parity_max_abs_err"):
        errs = ", ".join(f"batch {k}: {v:.2e}" for k, v in summary["parity_max_abs_err"].items())
        console.print(f"  parity ONNX Runtime vs PyTorch (max abs): {errs}")
    if "precision_check" in summary:
        pc = summary["precision_check"]
        console.print(f"  {summary['precision']} vs fp32: max abs {pc['max_abs_err']:.3g}, rel {pc['rel_err']:.3g}; "
                      f"{pc['fp32_ms']:.2f} ms -> {pc[summary['precision'] + '_ms']:.2f} ms "
                      f"(x{pc['speedup']:.2f}, batch {pc['batch']}, {pc['threads']} threads)")
    for note in summary.get("notes", []):
        console.print(f"  [dim]{note}[/]")
