"""Packaging of the GPU paths: no extra installs a second onnxruntime build, the tensorrt extra is pinned to
one major version and brings the GPU memory library its backend imports. The static checks read
pyproject.toml; the resolution check asks pip (skipped without network)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from difftool.runtime.backends.ortcheck import ORT_DISTRIBUTIONS

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _requirements(extra: str | None, seen: frozenset[str] = frozenset()) -> list[Requirement]:
    """The requirements ``pip install '.[extra]'`` adds to the base ones, self-references expanded."""
    out = []
    for text in PROJECT["optional-dependencies"][extra] if extra else PROJECT["dependencies"]:
        req = Requirement(text)
        if canonicalize_name(req.name) == canonicalize_name(PROJECT["name"]):
            for inner in req.extras - seen:
                out += _requirements(inner, seen | {inner})
        else:
            out.append(req)
    return out


def _names(reqs: list[Requirement]) -> set[str]:
    return {canonicalize_name(r.name) for r in reqs}


def test_plain_install_brings_the_cpu_onnxruntime():
    """`pip install . && difftool demo` (the README's first line) needs onnxruntime from the base alone."""
    assert "onnxruntime" in _names(_requirements(None))


@pytest.mark.parametrize("extra", sorted(PROJECT["optional-dependencies"]))
def test_no_extra_installs_a_second_onnxruntime_build(extra):
    builds = {canonicalize_name(n) for n in ORT_DISTRIBUTIONS}
    assert len(builds & (_names(_requirements(None)) | _names(_requirements(extra)))) == 1, extra


def test_tensorrt_extra_is_one_major_version_for_one_cuda():
    reqs = {canonicalize_name(r.name): r for r in _requirements("tensorrt")}
    trt = reqs.get("tensorrt-cu12")
    assert trt is not None, "the CUDA-suffixed package fixes the CUDA major (plain `tensorrt` now means CUDA 13)"
    assert trt.specifier.contains("10.16.1.11") and trt.specifier.contains("10.0.1")
    assert not trt.specifier.contains("11.0.0.114") and not trt.specifier.contains("8.6.1")


def test_tensorrt_extra_has_the_memory_library_the_backend_imports():
    source = (REPO / "src" / "difftool" / "runtime" / "backends" / "tensorrt.py").read_text()
    assert "from cuda.bindings import runtime as cudart" in source  # cuda-python >= 12.6 layout
    reqs = {canonicalize_name(r.name): r for r in _requirements("tensorrt")}
    cuda = reqs.get("cuda-python") or reqs.get("cuda-bindings")
    assert cuda is not None
    assert cuda.specifier.contains("12.9.10") and not cuda.specifier.contains("13.0.0")  # CUDA 12, like TRT
    assert not cuda.specifier.contains("12.5.0")  # before cuda.bindings existed


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
        return True
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _pypi_reachable(), reason="resolving extras needs pypi.org")
def test_tensorrt_extra_resolves_to_tensorrt_10_and_cuda_python_12(tmp_path):
    """pip resolves the extra's own requirement strings (top level: the TensorRT libraries themselves
    come from pypi.nvidia.com through PyPI's stub packages)."""
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-deps", "--quiet",
           "--report", str(report), *PROJECT["optional-dependencies"]["tensorrt"]]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-1500:]
    got = {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"]
           for i in json.loads(report.read_text())["install"]}
    assert got["tensorrt-cu12"].startswith("10.") and got["cuda-python"].startswith("12.")
