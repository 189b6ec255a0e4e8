"""``difftool export MODEL --format web -o site/``: a static folder that generates sprites in the browser.

The folder holds ``index.html``, ``app.js`` (an ES module), ``model.json`` (classes, image size, the
generator's sampler and input contract), ``generator.onnx`` (the one-file generator) and ``ort/``: the
onnxruntime-web wasm runtime (``ort.wasm.min.mjs``, ``ort-wasm-simd-threaded.mjs`` and ``.wasm``) copied
from an npm install of ``onnxruntime-web`` (never from the internet at run time). Serve it with
``python -m http.server`` (any static server). The folder is staged beside ``out`` and swapped in.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from importlib.resources import files
from pathlib import Path

from difftool.errors import DifftoolError

ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
STATIC = ("index.html", "app.js")
MARKER = "difftool_site"  # key in model.json: the folder is ours to replace
DEFAULT_ORT_WEB = Path.home() / ".cache" / "difftool" / "ort-web"
NPM_HINT = f"npm install --prefix {DEFAULT_ORT_WEB} onnxruntime-web"


def ort_web_dist(path: str | Path | None = None) -> Path:
    """The onnxruntime-web ``dist`` folder: ``path`` (dist itself, the package or an npm prefix), else
    ``$DIFFTOOL_ORT_WEB``, else ``~/.cache/difftool/ort-web``; one-line DifftoolError if it is missing."""
    base = Path(path or os.environ.get("DIFFTOOL_ORT_WEB") or DEFAULT_ORT_WEB).expanduser()
    for dist in (base, base / "dist", base / "node_modules" / "onnxruntime-web" / "dist"):
        if all((dist / name).is_file() for name in ORT_FILES):
            return dist
    raise DifftoolError(f"onnxruntime-web not found in {base}; install it with `{NPM_HINT}` "
                        "(or pass --ort-web DIR / set DIFFTOOL_ORT_WEB)")


def ort_web_version(dist: Path) -> str:
    package = dist.parent / "package.json"
    try:
        return str(json.loads(package.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return "unknown"


def site_info(card, info, ort_version: str) -> dict:
    """model.json: what the page needs to build inputs and label the controls."""
    return {MARKER: 1, "generator": "generator.onnx", "ort_web": ort_version,
            "class_names": list(card.class_names) or [str(i) for i in range(card.num_classes)],
            "num_classes": card.num_classes, "channels": card.channels, "size": card.image_size,
            "sampler": info.describe(), "steps": info.steps, "noise_steps": info.noise_steps,
            "guidance": info.guidance, "inputs": info.inputs, "outputs": info.outputs,
            "credit": card.credit, "license": card.license}


def export_web(src: str | Path, out_dir: str | Path, settings=None, *, ort_web: str | Path | None = None,
               image_size: int | None = None) -> dict:
    """Write the web folder for ``src`` (U-Net ``.onnx`` or checkpoint) to ``out_dir``; returns a summary
    (path, bytes of the whole folder, per-file sizes, sampler, parity of the generator)."""
    from difftool.export.generator import GeneratorSettings, export_generator
    from difftool.runtime.artifact import onnx_card
    from difftool.runtime.generator import generator_info

    dist = ort_web_dist(ort_web)
    out = Path(out_dir)
    _check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.tmp-") as tmp:
        staged = Path(tmp) / "site"
        (staged / "ort").mkdir(parents=True)
        summary = export_generator(src, staged / "generator.onnx", settings or GeneratorSettings(),
                                   image_size=image_size)
        card, info = onnx_card(staged / "generator.onnx"), generator_info(staged / "generator.onnx")
        for name in STATIC:
            (staged / name).write_bytes(files("difftool.webexport").joinpath("static", name).read_bytes())
        for name in ORT_FILES:
            shutil.copyfile(dist / name, staged / "ort" / name)
        (staged / "model.json").write_text(json.dumps(site_info(card, info, ort_web_version(dist)), indent=1))
        sizes = {str(p.relative_to(staged)): p.stat().st_size for p in sorted(staged.rglob("*")) if p.is_file()}
        _swap_in(staged, out, Path(tmp))
    return {**summary, "path": str(out), "format": "web", "bytes": sum(sizes.values()), "files": sizes,
            "ort_web": str(dist)}


def _check_replaceable(out: Path) -> None:
    """``out`` may be missing, empty, or a folder this exporter wrote before (model.json with the marker)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise DifftoolError(f"{out} exists and is not a folder")
    if not any(out.iterdir()):
        return
    try:
        ours = MARKER in json.loads((out / "model.json").read_text())
    except (OSError, ValueError):
        ours = False
    if not ours:
        raise DifftoolError(f"{out} exists and is not a difftool web folder; choose an empty or new folder")


def _swap_in(staged: Path, final: Path, tmp: Path) -> None:
    """Move ``staged`` to ``final`` (an old folder is moved aside first and dropped with ``tmp``)."""
    if final.exists():
        os.replace(final, tmp / "old")
    try:
        os.replace(staged, final)
    except BaseException:
        if (tmp / "old").exists():
            os.replace(tmp / "old", final)
        raise
