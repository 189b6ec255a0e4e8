"""The PyTorch backend: a :class:`~difftool.runtime.denoiser.Denoiser` around an ``nn.Module``.

Lives outside :mod:`difftool.runtime` because it imports torch. On CUDA, fixed-shape calls are
replayed through a captured CUDA graph (``cuda_graphs=True``) to remove per-kernel launch cost.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from difftool.config import ModelCard
from difftool.runtime.cpu import choose_precision


class TorchDenoiser:
    """numpy in, numpy out; eval mode, inference mode, optional CUDA graphs; on CPU optionally under bf16
    autocast (``precision``: see :func:`difftool.runtime.cpu.choose_precision`; the output is float32 either way)."""

    def __init__(self, module: nn.Module, card: ModelCard, device: str = "cpu", threads: int | None = None,
                 cuda_graphs: bool = True, precision: str = "fp32"):
        if threads:
            torch.set_num_threads(threads)
        self.device = torch.device(device)
        self.module = module.to(self.device).eval()
        self.card = card
        self.precision, self.precision_reason = choose_precision(precision, self.device.type)
        self.name = f"torch-{self.device.type}"
        self.use_graphs = cuda_graphs and self.device.type == "cuda"
        self._graphs: dict[tuple, tuple] = {}

    def __call__(self, x: np.ndarray, t: np.ndarray, context: np.ndarray) -> np.ndarray:
        if self.use_graphs:
            return self._graph_call(x, t, context)
        with torch.inference_mode(), torch.autocast(self.device.type, torch.bfloat16,
                                                    enabled=self.precision == "bf16"):
            xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
            tt = torch.from_numpy(np.ascontiguousarray(t, dtype=np.float32)).to(self.device)
            ct = self._context(context, xt.shape[0])
            return self.module(xt, tt, ct).float().cpu().numpy()

    def _context(self, context: np.ndarray, batch: int):
        if self.card.num_classes == 0:
            return None
        return torch.from_numpy(np.ascontiguousarray(context, dtype=np.float32)).to(self.device)

    def _graph_call(self, x, t, context) -> np.ndarray:
        key = (x.shape, context.shape)
        if key not in self._graphs:
            self._graphs[key] = self._capture(x.shape, context.shape)
        graph, (xs, ts, cs), out = self._graphs[key]
        xs.copy_(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
        ts.copy_(torch.from_numpy(np.ascontiguousarray(t, dtype=np.float32)))
        if cs is not None:
            cs.copy_(torch.from_numpy(np.ascontiguousarray(context, dtype=np.float32)))
        graph.replay()
        return out.cpu().numpy()

    def _capture(self, x_shape, c_shape):
        xs = torch.zeros(x_shape, device=self.device)
        ts = torch.zeros(x_shape[0], device=self.device)
        cs = torch.zeros(c_shape, device=self.device) if self.card.num_classes else None
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.inference_mode(), torch.cuda.stream(stream):
            for _ in range(3):  # warm up (cuDNN autotune, allocator) outside the graph
                self.module(xs, ts, cs)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        # thread_local: the TUI loads backends and samples in different worker threads; in the default
        # "global" mode another thread's CUDA allocation during this capture would invalidate it.
        with torch.inference_mode(), torch.cuda.graph(graph, capture_error_mode="thread_local"):
            out = self.module(xs, ts, cs)
        return graph, (xs, ts, cs), out
