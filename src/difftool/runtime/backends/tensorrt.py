"""TensorRT backend: run a ``.engine`` built by ``difftool export --format tensorrt``.

The engine's sidecar ``<engine>.json`` holds the model card plus the TensorRT version and GPU it was
built for; both are checked before deserialising (engines are not portable across TensorRT versions or
GPU models). Inference uses the TensorRT 10/11 name-based API (``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``) on a non-default CUDA stream. Device memory comes from
torch when it is installed, else from ``cuda-python``; both are imported only here, lazily.
Batches above the engine profile's maximum are run in chunks.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np

from difftool.config import ModelCard
from difftool.errors import DifftoolError

INSTALL_HINT = "install it with `pip install 'difftool[tensorrt]'`"


def import_tensorrt(purpose: str = "running a TensorRT engine"):
    """``import tensorrt`` or a DifftoolError saying how to get it."""
    try:
        import tensorrt as trt
    except ImportError:
        raise DifftoolError(f"{purpose} needs the tensorrt package and an NVIDIA GPU; {INSTALL_HINT}") from None
    return trt


def gpu_info(device_id: int = 0) -> tuple[str, str]:
    """(GPU name, compute capability "major.minor") via cuda-python, torch or nvidia-smi."""
    try:
        from cuda.bindings import runtime as cudart

        err, props = cudart.cudaGetDeviceProperties(device_id)
        if int(err) == 0:
            name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
            return name.strip("\x00 "), f"{props.major}.{props.minor}"
    except Exception:
        pass
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(device_id)
            return torch.cuda.get_device_name(device_id), f"{major}.{minor}"
    except Exception:
        pass
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout.splitlines()
        name, cap = (s.strip() for s in out[device_id].split(","))
        return name, cap
    except Exception:
        raise DifftoolError("no CUDA GPU found (TensorRT needs an NVIDIA GPU and driver)") from None


def read_sidecar(path: Path) -> dict:
    """The sidecar JSON of an engine (card, tensorrt_version, gpu_name, compute_capability, profile)."""
    side = path.with_name(path.name + ".json")
    if not side.is_file():
        raise DifftoolError(f"{path}: the sidecar {side.name} with the model card is missing; "
                            "rebuild the engine with `difftool export --format tensorrt`")
    try:
        data = json.loads(side.read_text())
    except json.JSONDecodeError as exc:
        raise DifftoolError(f"{side} is not valid JSON ({exc})") from None
    if "card" not in data:
        raise DifftoolError(f"{side} has no model card; rebuild the engine")
    return data


def check_compatible(path: Path, side: dict, trt_version: str, gpu_name: str) -> None:
    """DifftoolError when the engine was built by another TensorRT version or for another GPU."""
    built = side.get("tensorrt_version")
    if built != trt_version:
        raise DifftoolError(f"{path} was built with TensorRT {built} but TensorRT {trt_version} is installed; "
                            "engines are not portable across versions: rebuild it with "
                            "`difftool export --format tensorrt`")
    if side.get("gpu_name") != gpu_name:
        raise DifftoolError(f"{path} was built for a {side.get('gpu_name')} but this GPU is a {gpu_name}; "
                            "engines are tied to the GPU model: rebuild it on this machine")


class _TorchCuda:
    """Device buffers and a side stream from torch."""

    def __init__(self, device_id: int):
        import torch

        self.torch = torch
        self.device = torch.device("cuda", device_id)
        torch.cuda.set_device(self.device)
        self.stream = torch.cuda.Stream(self.device)
        self.handle = self.stream.cuda_stream

    def alloc(self, nbytes: int):
        buf = self.torch.empty(max(nbytes, 4) // 4, dtype=self.torch.float32, device=self.device)
        return buf, buf.data_ptr()

    def h2d(self, buf, arr: np.ndarray) -> None:
        with self.torch.cuda.stream(self.stream):
            buf[: arr.size].copy_(self.torch.from_numpy(arr.reshape(-1)), non_blocking=False)

    def d2h(self, out: np.ndarray, buf) -> None:
        with self.torch.cuda.stream(self.stream):
            out.reshape(-1)[:] = buf[: out.size].cpu().numpy()

    def sync(self) -> None:
        self.stream.synchronize()


class _CudartCuda:
    """Device buffers and a side stream from cuda-python's runtime bindings."""

    def __init__(self, device_id: int):
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            try:
                from cuda import cudart
            except ImportError:
                raise DifftoolError("the TensorRT backend needs torch or cuda-python for GPU memory; "
                                    "install it with `pip install cuda-python`") from None
        self.rt = cudart
        self._check(cudart.cudaSetDevice(device_id))
        self.handle = self._check(cudart.cudaStreamCreate())
        self._kind = cudart.cudaMemcpyKind

    def _check(self, result):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise DifftoolError(f"CUDA error {err}")
        return rest[0] if rest else None

    def alloc(self, nbytes: int):
        ptr = self._check(self.rt.cudaMalloc(max(nbytes, 4)))
        return ptr, int(ptr)

    def h2d(self, buf, arr: np.ndarray) -> None:
        self._check(self.rt.cudaMemcpyAsync(buf, arr.ctypes.data, arr.nbytes,
                                            self._kind.cudaMemcpyHostToDevice, self.handle))

    def d2h(self, out: np.ndarray, buf) -> None:
        self._check(self.rt.cudaMemcpyAsync(out.ctypes.data, buf, out.nbytes,
                                            self._kind.cudaMemcpyDeviceToHost, self.handle))
        self.sync()

    def sync(self) -> None:
        self._check(self.rt.cudaStreamSynchronize(self.handle))


def _cuda(device_id: int):
    try:
        import torch

        if torch.cuda.is_available():
            return _TorchCuda(device_id)
    except ImportError:
        pass
    return _CudartCuda(device_id)


class TensorRTDenoiser:
    """A :class:`~difftool.runtime.denoiser.Denoiser` over a serialized TensorRT engine."""

    name = "tensorrt"

    def __init__(self, path: str | Path, device_id: int = 0):
        self.path = Path(path)
        if not self.path.is_file():
            raise DifftoolError(f"file not found: {self.path}")
        side = read_sidecar(self.path)
        self.card = ModelCard.from_dict(side["card"])
        trt = import_tensorrt()
        gpu_name, _ = gpu_info(device_id)
        check_compatible(self.path, side, trt.__version__, gpu_name)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._cuda = _cuda(device_id)  # selects the device first: the engine is deserialised onto it
        self.engine = trt.Runtime(self._logger).deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise DifftoolError(f"{self.path}: TensorRT could not deserialize the engine (corrupt file?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        for n in names:
            if self.engine.get_tensor_dtype(n) != trt.DataType.FLOAT:
                raise DifftoolError(f"{self.path}: tensor {n} is not float32; the difftool contract needs "
                                    "float32 I/O")
        self.max_batch = int(self.engine.get_tensor_profile_shape("x", 0)[2][0])
        self._buffers: dict[str, tuple] = {}  # name -> (buffer, pointer, capacity in bytes)
        self._out: dict[tuple, np.ndarray] = {}

    def __call__(self, x: np.ndarray, t: np.ndarray, context: np.ndarray) -> np.ndarray:
        feeds = {"x": np.ascontiguousarray(x, dtype=np.float32),
                 "t": np.ascontiguousarray(t, dtype=np.float32).reshape(-1)}
        if "context" in self.inputs:
            feeds["context"] = np.ascontiguousarray(context, dtype=np.float32)
        out = self._out.get(feeds["x"].shape)
        if out is None:
            out = self._out[feeds["x"].shape] = np.empty(feeds["x"].shape, dtype=np.float32)
        batch = feeds["x"].shape[0]
        for start in range(0, batch, self.max_batch):
            stop = min(start + self.max_batch, batch)
            self._run({k: v[start:stop] for k, v in feeds.items()}, out[start:stop])
        return out

    def _buffer(self, name: str, nbytes: int) -> int:
        """Device pointer for ``name`` with at least ``nbytes`` (grown, never shrunk)."""
        held = self._buffers.get(name)
        if held is None or held[2] < nbytes:
            buf, ptr = self._cuda.alloc(nbytes)
            held = self._buffers[name] = (buf, ptr, nbytes)
        return held[1]

    def _run(self, feeds: dict[str, np.ndarray], out: np.ndarray) -> None:
        for name, arr in feeds.items():
            ptr = self._buffer(name, arr.nbytes)
            self._cuda.h2d(self._buffers[name][0], np.ascontiguousarray(arr))
            if not self.context.set_input_shape(name, tuple(arr.shape)):
                raise DifftoolError(f"{self.path}: input {name} of shape {tuple(arr.shape)} is outside the "
                                    "engine's optimisation profile")
            if not self.context.set_tensor_address(name, ptr):
                raise DifftoolError(f"{self.path}: TensorRT refused the device buffer of {name}")
        if not self.context.set_tensor_address("eps", self._buffer("eps", out.nbytes)):
            raise DifftoolError(f"{self.path}: TensorRT refused the device buffer of eps")
        self._cuda.sync()  # inputs are on the device before the engine reads them
        if not self.context.execute_async_v3(self._cuda.handle):
            raise DifftoolError(f"{self.path}: TensorRT execution failed")
        self._cuda.d2h(out, self._buffers["eps"][0])
        self._cuda.sync()
