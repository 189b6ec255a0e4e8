"""ONNX -> TensorRT engine (TensorRT 10 and 11 API), plus a sidecar with the card and build facts.

Precision comes from the ONNX graph (strong typing: the only mode on TensorRT 11, and the
recommended one since 10.12): build from an fp32, fp16 (``--precision fp16``) or int8 QDQ export.
int8 graphs are quantised for TensorRT (S8S8 symmetric, see :mod:`difftool.export.int8`) and their Q/DQ
format is checked before parsing, so a graph TensorRT rejects fails in a second, not after a build.
One optimisation profile covers the dynamic batch (min / opt / max). The timing cache is persisted
next to the engine (``<engine>.timing-cache``) so rebuilds on the same GPU model are fast.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from difftool.errors import DifftoolError
from difftool.fileio import atomic_write

BUILD_HINT = "TensorRT export"


@dataclass
class TensorRTReport:
    """What ``build_engine`` wrote."""

    path: Path
    sidecar: Path
    timing_cache: Path
    seconds: float
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    profile: dict[str, int]
    file_size: int
    notes: list[str] = field(default_factory=list)


def _import_trt():
    from difftool.runtime.backends.tensorrt import import_tensorrt

    return import_tensorrt(BUILD_HINT)


def network_flags(trt) -> int:
    """STRONGLY_TYPED when this TensorRT has it (10.x: opt-in; 11.x: always on, flag kept)."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def build_engine(onnx_path: str | Path, engine_path: str | Path, *, min_batch: int = 1, opt_batch: int = 16,
                 max_batch: int = 64, workspace_mb: int = 4096, optimization_level: int = 3,
                 device_id: int = 0) -> TensorRTReport:
    """Build ``engine_path`` (+ ``.json`` sidecar, + timing cache) from a difftool ``.onnx``."""
    trt = _import_trt()
    from difftool.runtime.artifact import onnx_card
    from difftool.runtime.backends.tensorrt import gpu_info

    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise DifftoolError(f"need 1 <= min <= opt <= max batch, got {min_batch}/{opt_batch}/{max_batch}")
    start = time.perf_counter()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    card = onnx_card(onnx_path)
    from difftool.export.int8 import check_tensorrt_qdq

    check_tensorrt_qdq(onnx_path)
    gpu_name, capability = gpu_info(device_id)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise DifftoolError(f"TensorRT could not parse {onnx_path} ({errors[:300]})")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if hasattr(config, "builder_optimization_level"):
        config.builder_optimization_level = optimization_level
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        rest = tuple(int(d) for d in tuple(tensor.shape)[1:])
        if any(d < 0 for d in rest):
            raise DifftoolError(f"{onnx_path}: input {tensor.name} has dynamic non-batch dims {tensor.shape}")
        profile.set_shape(tensor.name, (min_batch, *rest), (opt_batch, *rest), (max_batch, *rest))
    config.add_optimization_profile(profile)
    cache_path = engine_path.with_name(engine_path.name + ".timing-cache")
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise DifftoolError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
    atomic_write(engine_path, lambda tmp: Path(tmp).write_bytes(bytes(plan)))
    serialized = config.get_timing_cache().serialize()
    atomic_write(cache_path, lambda tmp: Path(tmp).write_bytes(bytes(serialized)))
    prof = {"min": min_batch, "opt": opt_batch, "max": max_batch}
    side = {"card": card.to_dict(), "tensorrt_version": trt.__version__, "gpu_name": gpu_name,
            "compute_capability": capability, "profile": prof, "source": onnx_path.name}
    sidecar = engine_path.with_name(engine_path.name + ".json")
    atomic_write(sidecar, lambda tmp: Path(tmp).write_text(json.dumps(side, indent=2, sort_keys=True)))
    return TensorRTReport(engine_path, sidecar, cache_path, time.perf_counter() - start, trt.__version__,
                          gpu_name, capability, prof, engine_path.stat().st_size)


def export_tensorrt(src, engine_path: str | Path, *, image_size: int | None = None,
                    precision: str = "fp32", calibration_images=None, **build_opts) -> TensorRTReport:
    """Build an engine from a ``.onnx`` or a checkpoint (exported to a temporary ONNX first).

    From a checkpoint, ``precision`` picks the graph (int8: quantised for TensorRT, calibrated on
    ``calibration_images`` or the model's own samples). From a ``.onnx`` the graph's own precision is
    used; asking for another one is an error."""
    _import_trt()  # fail fast, before a long export
    if isinstance(src, str | Path) and Path(src).suffix.lower() == ".onnx":
        _check_onnx_request(Path(src), precision, image_size)
        return build_engine(src, engine_path, **build_opts)
    from difftool.export.onnx_export import export_onnx

    engine_path = Path(engine_path)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=engine_path.parent, prefix=".difftool-trt-") as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        export_onnx(src, onnx_path, image_size=image_size, precision=precision, int8_target="tensorrt",
                    calibration_images=calibration_images)
        return build_engine(onnx_path, engine_path, **build_opts)


def _check_onnx_request(path: Path, precision: str, image_size: int | None) -> None:
    """An ONNX source fixes precision and image size; say so instead of silently ignoring a request."""
    import onnx

    from difftool.export.metadata import get_props
    from difftool.runtime.artifact import onnx_card

    graph = get_props(onnx.load(str(path), load_external_data=False)).get("precision", "fp32")
    if precision not in ("fp32", graph):
        raise DifftoolError(f"{path} is a {graph} graph; --precision {precision} applies when building from "
                            "a checkpoint (or build from an ONNX export of that precision)")
    if image_size is not None and image_size != onnx_card(path).image_size:
        raise DifftoolError(f"{path} is fixed at image size {onnx_card(path).image_size}; --image-size applies "
                            "when building from a checkpoint")


def engine_parity(engine_path: str | Path, onnx_path: str | Path, batch_sizes=(1, 3, 16)) -> dict[int, float]:
    """Max abs error of the engine against ORT CPU on the export parity inputs."""
    from difftool.export.parity import cpu_session, parity_inputs
    from difftool.runtime.backends.tensorrt import TensorRTDenoiser

    engine = TensorRTDenoiser(engine_path)
    sess = cpu_session(onnx_path)
    errors = {}
    for batch in batch_sizes:
        feeds = parity_inputs(engine.card, batch, seed=batch)
        ref = sess.run(["eps"], feeds)[0]
        got = engine(feeds["x"], feeds["t"], feeds.get("context", np.zeros((batch, 0), np.float32)))
        errors[batch] = float(np.max(np.abs(got - ref)))
    return errors
