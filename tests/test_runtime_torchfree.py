"""difftool.runtime must work without torch: import it and sample with torch made unimportable."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCK_TORCH = """
import importlib.abc, sys

class BlockTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"torch is blocked in this test ({name})")
        return None

sys.meta_path.insert(0, BlockTorch())
"""

SAMPLE = """
import numpy as np
import difftool.runtime as rt
from difftool.config import ModelCard, ScheduleConfig, UnetConfig

try:
    import torch  # noqa: F401
    raise SystemExit("the blocker did not work")
except ImportError:
    pass

class NumpyDenoiser:
    name = "numpy"
    def __init__(self, card):
        self.card = card
    def __call__(self, x, t, context):
        return (0.5 * x + 0.01 * t[:, None, None, None] + context.sum(1)[:, None, None, None]).astype(np.float32)

card = ModelCard(model=UnetConfig(im_channels=3, im_size=8, num_classes=2), schedule=ScheduleConfig(num_timesteps=50),
                 class_names=("a", "b"))
pipe = rt.Pipeline(NumpyDenoiser(card))
for sampler in rt.SAMPLERS:
    out = pipe.sample(rt.SampleRequest(n=3, sampler=sampler, steps=5, guidance=2.0,
                                       context=pipe.context_from_spec("a=0.5,b=0.5", 3)))
    assert out.shape == (3, 3, 8, 8) and np.isfinite(out).all(), sampler
sheet = rt.grid(rt.to_uint8(out), nrow=3)
assert sheet.shape == (10, 28, 3)
assert "torch" not in sys.modules
print("OK")
"""

IMPORT_PACKAGE = """
import sys
import difftool.runtime
print("HEAVY", sorted(m for m in ("torch", "onnxruntime", "PIL", "tensorrt") if m in sys.modules))
"""

IMPORT_ALL = """
import importlib, pkgutil, sys
import difftool.runtime as rt
for info in pkgutil.walk_packages(rt.__path__, "difftool.runtime."):
    importlib.import_module(info.name)
print("TORCH", "torch" in sys.modules)
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120)


def test_runtime_samples_with_torch_blocked():
    result = _run(BLOCK_TORCH + SAMPLE)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("OK")


def test_importing_the_package_loads_no_heavy_dependency():
    """``import difftool.runtime`` imports neither torch nor onnxruntime, Pillow or TensorRT."""
    result = _run(IMPORT_PACKAGE)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout, result.stdout


def test_no_runtime_module_imports_torch():
    """With torch installed, importing every module under difftool.runtime still leaves torch unloaded."""
    result = _run(IMPORT_ALL)
    assert result.returncode == 0, result.stderr
    assert "TORCH False" in result.stdout, result.stdout
