"""onnxruntime backend: :class:`OrtDenoiser` runs an exported difftool graph on CPU, CUDA or TensorRT EPs.

The graph is validated on load (difftool metadata, input names and ranks) so a wrong file fails with a
one-line :class:`~difftool.errors.DifftoolError` instead of an onnxruntime traceback mid-sampling.
On GPU providers inputs and outputs live in preallocated device OrtValues bound with IOBinding
(one host->device copy per input, one device->host copy of eps per call). On CPU the plain
``session.run`` path is the default: IOBinding with ``bind_cpu_input`` and a preallocated output was
measured no faster (1 thread, AMD EPYC: tiny 8x8 model 703 vs 701 us at batch 1, 5.16 vs 5.10 ms at
batch 16; sprite 16x16 model 5.57 vs 5.52 ms at batch 1, 52.1 vs 53.1 ms at batch 16), so the simpler
path that returns a fresh array wins; ``io_binding=True`` still selects it.

Row sharding on CPU: with N > 1 threads, a batch of at least two rows is split into N contiguous shards
run concurrently on ONE single-threaded session (``InferenceSession.run`` is thread-safe and releases the
GIL), instead of one run with N intra-op threads. The U-Net's ops are small at 16x16, so intra-op
parallelism leaves cores waiting at every op boundary; independent shards do not. Measured interleaved on
2 cores (AMD EPYC, bundled sprite model, median of 8 rounds): 1.12-1.31x the rows/s of intra-op 2 threads at
2..128 rows (benchmarks/shard_bench.py). Each row is computed as in a whole-batch run (ORT's CPU kernels
are row-independent), so outputs are bit-identical. A one-row batch uses an N-thread session, made on
first use. ``shards=1`` turns it off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from difftool.config import CARD_KEY, ModelCard
from difftool.errors import DifftoolError
from difftool.runtime.backends import ortcheck
from difftool.runtime.cpu import cores

CONTRACT_INPUTS = {"x": 4, "t": 1, "context": 2}  # name -> rank
PROVIDER_NAMES = {
    "CPUExecutionProvider": "ort-cpu",
    "CUDAExecutionProvider": "ort-cuda",
    "TensorrtExecutionProvider": "ort-tensorrt",
}
GPU_PROVIDERS = ortcheck.GPU_PROVIDERS
CUDA_OPTIONS = {"cudnn_conv_algo_search": "HEURISTIC"}  # EXHAUSTIVE costs ~0.6 s per new batch shape


def auto_providers() -> list:
    """CUDA EP (with CPU fallback) when onnxruntime-gpu sees a device and its libraries load, else CPU."""
    from difftool.runtime.backends import available_backends

    if available_backends()["ort-cuda"] is None:
        return [("CUDAExecutionProvider", dict(CUDA_OPTIONS)), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class RowShards:
    """How one model file runs on this machine's cores: the threads, the providers (resolved once) and the
    number of concurrent row shards (:func:`auto_shards` unless given). It opens the sessions (single-threaded
    when sharding; an N-thread one for one-row batches on first use) and runs per-shard work concurrently:
    contiguous row spans, shard 0 on the calling thread, the others on a pool made on first use
    (``InferenceSession.run`` releases the GIL). The U-Net backend and the one-file generator both use it."""

    def __init__(self, path: str | Path, threads: int | None, providers: list | None, shards: int | None = None):
        self.path, self.providers = Path(path), providers  # providers None: auto (may fall back to CPU)
        self.threads = int(threads) if threads else cores()
        self.chosen = providers or auto_providers()
        gpu = any(_provider_name(p) in GPU_PROVIDERS for p in self.chosen)
        self.n = auto_shards(self.threads, gpu) if shards is None else max(1, int(shards))
        self._pool = None
        self._whole = None

    def open(self, whole: bool = False):
        """A session: single-threaded when sharding (unless ``whole``), else with every thread."""
        threads = self.threads if whole or self.n == 1 else 1
        return open_session(self.path, threads, self.providers, chosen=self.chosen)

    def whole(self, session):
        """The session for a one-row batch: ``session`` itself when not sharding, else an N-thread one."""
        if self.n == 1:
            return session
        if self._whole is None:
            self._whole = self.open(whole=True)
        return self._whole

    def spans(self, rows: int) -> list[tuple[int, int]]:
        bounds = np.linspace(0, rows, min(self.n, rows) + 1).astype(int).tolist()
        return list(zip(bounds[:-1], bounds[1:], strict=True))

    def map(self, fn, parts: list) -> list:
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max(1, self.n - 1), thread_name_prefix="difftool-shard")
        futures = [self._pool.submit(fn, part) for part in parts[1:]]
        return [fn(parts[0]), *(f.result() for f in futures)]


def auto_shards(threads: int, on_gpu: bool) -> int:
    """Concurrent row shards on CPU: one per thread (GPU providers: 1, they batch on the device)."""
    return 1 if on_gpu else max(1, int(threads))


def session_options(threads: int | None = None):
    """Speed-oriented session options (explicit threads, sequential, spinning on)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = int(threads) if threads else cores()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.enable_cpu_mem_arena = True
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1")
    return opts


def open_session(path: str | Path, threads: int | None = None, providers: list | None = None,
                 chosen: list | None = None):
    """An InferenceSession for ``path``; DifftoolError one-liners for missing or unreadable files.

    With explicit ``providers`` the session must run on the first one: onnxruntime silently falls back
    to CPU when a GPU provider's libraries do not load, which is an error here, not a slower success.
    """
    problem = ortcheck.conflict()
    if problem:
        raise DifftoolError(problem)
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise DifftoolError(f"file not found: {path}")
    chosen = providers or chosen or auto_providers()  # ``chosen``: the caller's auto_providers(), if it has it
    if any(_provider_name(p) in GPU_PROVIDERS for p in chosen):
        ortcheck.preload_gpu_libraries()
    try:
        with ortcheck.quiet_provider_warning():
            sess = ort.InferenceSession(str(path), session_options(threads), providers=chosen)
    except Exception as exc:
        from difftool.runtime.artifact import _reject_non_onnx

        _reject_non_onnx(path)  # "it looks like an HTML page", ... when the bytes say so
        msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        if "protobuf" in msg.lower() or type(exc).__name__ == "InvalidProtobuf" or "parse" in msg.lower():
            raise DifftoolError(f"{path} is not a readable ONNX file ({msg})") from None
        raise DifftoolError(f"{path}: onnxruntime cannot load this graph ({msg})") from None
    missing = ortcheck.session_fallback(providers or [], sess.get_providers())
    if missing:
        got = sess.get_providers()[0]
        hint = ortcheck.LIBRARY_HINT.get(missing, "see `difftool doctor`")
        raise DifftoolError(f"{path}: onnxruntime was asked for {missing} but fell back to {got} "
                            f"(its libraries did not load; {hint})")
    return sess


def _provider_name(provider) -> str:
    return provider[0] if isinstance(provider, tuple | list) else provider


def on_device(providers: list | None, device_id: int) -> list | None:
    """``providers`` with ``device_id`` set in the CUDA / TensorRT provider options (GPU N, not GPU 0)."""
    if not providers or not device_id:
        return providers
    out = []
    for p in providers:
        name, options = (p[0], dict(p[1])) if isinstance(p, tuple | list) else (p, {})
        if name in GPU_PROVIDERS:
            out.append((name, {**options, "device_id": str(device_id)}))
        else:
            out.append(p)
    return out


def validate(sess, path: str | Path) -> ModelCard:
    """The model card of a loaded session, after checking the graph against the difftool contract."""
    meta = sess.get_modelmeta().custom_metadata_map
    if CARD_KEY not in meta:
        raise DifftoolError(f"{path}: not a difftool artifact (no difftool metadata); "
                            "export it with `difftool export`")
    card = ModelCard.from_json(meta[CARD_KEY])
    inputs = {i.name: i for i in sess.get_inputs()}
    expected = ["x", "t", "context"] if card.conditional else ["x", "t"]
    if sorted(inputs) != sorted(expected):
        raise DifftoolError(f"{path}: input names {sorted(inputs)} do not match the difftool contract "
                            "(x, t, context)")
    for name, arg in inputs.items():
        if len(arg.shape) != CONTRACT_INPUTS[name]:
            raise DifftoolError(f"{path}: input {name} has rank {len(arg.shape)}, the difftool contract "
                                f"needs rank {CONTRACT_INPUTS[name]}")
    outputs = [o.name for o in sess.get_outputs()]
    if "eps" not in outputs:
        raise DifftoolError(f"{path}: output names {outputs} do not match the difftool contract (eps)")
    if isinstance(path, str | Path) and Path(path).is_file():
        from difftool.runtime.onnxcheck import load_checked

        load_checked(path, card)  # as `difftool info`: fixed dims against the card, finite weights
    return card


class OrtDenoiser:
    """A :class:`~difftool.runtime.denoiser.Denoiser` over an exported ``.onnx``.

    ``threads``: intra-op CPU threads (default: the cores this process may use). ``providers``:
    onnxruntime providers (default: CUDA if available, else CPU). ``io_binding``: None picks IOBinding
    on GPU providers and ``session.run`` on CPU.
    """

    def __init__(self, path: str | Path, threads: int | None = None, providers: list | None = None,
                 io_binding: bool | None = None, device_id: int = 0, shards: int | None = None):
        self.path = Path(path)
        self._row_shards = RowShards(self.path, threads, on_device(providers, device_id), 1 if io_binding else shards)
        self.threads, self.providers = self._row_shards.threads, self._row_shards.providers
        self.session = self._row_shards.open()
        self.card = validate(self.session, self.path)
        first = self.session.get_providers()[0]
        self.name = PROVIDER_NAMES.get(first, f"ort-{first.removesuffix('ExecutionProvider').lower()}")
        self.on_gpu = first in GPU_PROVIDERS
        self.device_id = device_id
        self.io_binding = self.on_gpu if io_binding is None else bool(io_binding)
        self._conditional = self.card.conditional
        self._binding = self.session.io_binding() if self.io_binding else None
        self._buffers: dict[tuple, dict[str, Any]] = {}  # per input-shape key: OrtValues / out array
        if self.on_gpu:
            self._row_shards.n = 1  # GPU providers batch on the device

    @property
    def shards(self) -> int:
        """Concurrent row shards per batch (1: one run with every thread)."""
        return self._row_shards.n

    def __call__(self, x: np.ndarray, t: np.ndarray, context: np.ndarray) -> np.ndarray:
        feeds = {"x": np.ascontiguousarray(x, dtype=np.float32),
                 "t": np.ascontiguousarray(t, dtype=np.float32).reshape(-1)}
        if self._conditional:
            feeds["context"] = np.ascontiguousarray(context, dtype=np.float32)
        try:
            if not self.io_binding:
                if self.shards > 1:
                    return self._run_sharded(feeds)
                return self.session.run(["eps"], feeds)[0]
            if self.on_gpu:
                return self._run_device(feeds)
            return self._run_cpu_bound(feeds)
        except DifftoolError:
            raise
        except Exception as exc:
            msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            shapes = ", ".join(f"{k}{tuple(v.shape)}" for k, v in feeds.items())
            raise DifftoolError(f"{self.name}: inference failed for {shapes} ({msg})") from None

    def _run_sharded(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Contiguous row shards run concurrently on the single-threaded session (see the module doc)."""
        rows = len(feeds["x"])
        if rows < 2:
            return self._row_shards.whole(self.session).run(["eps"], feeds)[0]
        spans = self._row_shards.spans(rows)
        parts = [{k: v[a:b] for k, v in feeds.items()} for a, b in spans]
        results = self._row_shards.map(lambda part: self.session.run(["eps"], part)[0], parts)
        out = np.empty((rows, *results[0].shape[1:]), dtype=results[0].dtype)
        for (a, b), part in zip(spans, results, strict=True):
            out[a:b] = part
        return out

    def _run_cpu_bound(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """CPU IOBinding: inputs bound in place, output written into a reused numpy buffer."""
        import onnxruntime as ort

        key = feeds["x"].shape
        bufs = self._buffers.get(key)
        if bufs is None:
            out = np.empty(key, dtype=np.float32)
            bufs = self._buffers[key] = {"out": out, "out_ov": ort.OrtValue.ortvalue_from_numpy(out)}
        binding = self._binding
        for name, arr in feeds.items():
            binding.bind_cpu_input(name, arr)
        binding.bind_ortvalue_output("eps", bufs["out_ov"])
        self.session.run_with_iobinding(binding)
        return bufs["out"]

    def _run_device(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """GPU IOBinding: preallocated device OrtValues per shape, updated in place each call."""
        import onnxruntime as ort

        key = tuple(v.shape for v in feeds.values())
        bufs = self._buffers.get(key)
        if bufs is None:
            def device_value(shape):
                return ort.OrtValue.ortvalue_from_shape_and_type(list(shape), np.float32, "cuda", self.device_id)

            bufs = {name: device_value(arr.shape) for name, arr in feeds.items()}
            bufs["eps"] = device_value(feeds["x"].shape)
            binding = self.session.io_binding()
            for name in feeds:
                binding.bind_ortvalue_input(name, bufs[name])
            binding.bind_ortvalue_output("eps", bufs["eps"])
            bufs["binding"] = binding
            self._buffers[key] = bufs
        for name, arr in feeds.items():
            bufs[name].update_inplace(arr)
        self.session.run_with_iobinding(bufs["binding"])
        return bufs["eps"].numpy()
