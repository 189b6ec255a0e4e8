"""kill -9 in the middle of a write leaves the old file or the new one, never a partial one.

Each test runs a real command in a child process (``tests/badinput/slowwrite.py``) whose writer stalls
after writing half of its bytes to wherever the code under test pointed it; the test SIGKILLs the child at
that moment and checks the target: still the old bytes, no half file under the target's name, and (for
``train``) an interrupted run that resumes to exactly the weights of an uninterrupted one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the fault tests build checkpoints with torch")

import difftool  # noqa: E402

SRC = str(Path(difftool.__file__).resolve().parents[1])
SLOW = Path(__file__).parent / "badinput" / "slowwrite.py"
OLD = b"OLD CONTENTS: the previous, complete file\n"


def _env(tmp: Path) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp), "OMP_NUM_THREADS": "1",
            "PYTHONPATH": SRC + os.pathsep + str(SLOW.parent.parent), "COLUMNS": "200"}


def kill_mid_write(tmp: Path, writers: str, args: list[str], skip: int = 0, timeout: float = 240) -> str:
    """Run ``args`` under stalled ``writers``; SIGKILL it once half a file is written. Returns the path the
    stalled writer was writing to."""
    sig = tmp / "stalled.txt"
    sig.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, str(SLOW), str(sig), writers, str(skip), "--", *map(str, args)],
                            env=_env(tmp), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp)
    deadline = time.monotonic() + timeout
    try:
        while not sig.exists() or not sig.read_text():
            if proc.poll() is not None:
                raise AssertionError(f"child ended ({proc.returncode}) before stalling: {proc.stderr.read().decode()}")
            if time.monotonic() > deadline:
                raise AssertionError("child never reached the stalled write")
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return sig.read_text()


def _assert_old_or_complete(target: Path, stalled_at: str, old: bytes = OLD):
    assert Path(stalled_at).resolve() != target.resolve(), "the writer wrote straight into the target"
    assert target.read_bytes() == old
    leftovers = [p for p in target.parent.iterdir() if p.name == target.name or p.name.startswith(target.name)]
    assert leftovers == [target]  # temp files start with "." + name, never the target's own name


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from difftool.config import ModelCard, ScheduleConfig
    from difftool.models import build, presets
    from difftool.models.checkpoint import save

    torch.manual_seed(0)
    cfg = presets.tiny(channels=3, size=8, num_classes=5)
    card = ModelCard(model=cfg, schedule=ScheduleConfig(num_timesteps=100),
                     class_names=("hero", "creature", "food", "weapon", "item"))
    return save(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", build(cfg), card)


def test_generate_png_killed_mid_write_keeps_old_file(tmp_path, ckpt):
    from PIL import Image

    out = tmp_path / "grid.png"
    out.write_bytes(OLD)
    stalled = kill_mid_write(tmp_path, "pil", ["sample", ckpt, "-o", out, "--steps", "2", "--n", "2"])
    _assert_old_or_complete(out, stalled)
    # the same command, not killed, replaces it with a complete PNG
    proc = subprocess.run([sys.executable, "-m", "difftool", "sample", str(ckpt), "-o", str(out), "--steps", "2",
                           "--n", "2"], env=_env(tmp_path), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    Image.open(out).verify()


def test_export_killed_mid_write_keeps_old_file(tmp_path, ckpt):
    pytest.importorskip("onnxscript")
    out = tmp_path / "model.onnx"
    out.write_bytes(OLD)
    stalled = kill_mid_write(tmp_path, "onnx", ["export", ckpt, "-o", out])
    _assert_old_or_complete(out, stalled)


def test_tui_save_killed_mid_write_keeps_old_file(tmp_path):
    out = tmp_path / "sheet.png"
    out.write_bytes(OLD)
    code = ("import numpy as np; from pathlib import Path; from difftool.tui.saving import save_png; "
            f"save_png(Path({str(out)!r}), np.zeros((8, 8, 3), np.uint8), scale=2)")
    stalled = kill_mid_write(tmp_path, "pil", ["-c", code])
    _assert_old_or_complete(out, stalled)


def test_atomic_write_of_text_killed_mid_write(tmp_path):
    out = tmp_path / "notes.json"
    out.write_bytes(OLD)
    code = ("from pathlib import Path; from difftool.fileio import atomic_write; "
            f"atomic_write(Path({str(out)!r}), lambda tmp: tmp.write_text('{{\"new\": 1}}' * 1000))")
    stalled = kill_mid_write(tmp_path, "text", ["-c", code])
    _assert_old_or_complete(out, stalled)


def test_train_killed_while_checkpointing_resumes_exactly(tmp_path):
    pytest.importorskip("sklearn", reason="the digits dataset needs scikit-learn")
    from difftool.models.checkpoint import load
    from difftool.train.loop import weights_digest

    args = ["train", "--dataset", "digits", "--model", "tiny", "--max-steps", "12", "--save-every", "6",
            "--batch-size", "16", "--sample-every", "0", "--threads", "1", "--seed", "3"]
    full = tmp_path / "full"
    proc = subprocess.run([sys.executable, "-m", "difftool", *args, "--out", str(full)], env=_env(tmp_path),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr

    part = tmp_path / "part"
    # the first torch.save (the step-6 train_state.pt) goes through; the step-12 one is killed half-way
    stalled = kill_mid_write(tmp_path, "torch", [*args, "--out", part], skip=1, timeout=600)
    state_path = part / "train_state.pt"
    assert Path(stalled).parent == part and Path(stalled).name != state_path.name
    state = torch.load(state_path, map_location="cpu", weights_only=True)  # complete, not torn
    assert int(state["step"]) == 6
    assert load(part / "model.safetensors").card.training["step"] == 6

    proc = subprocess.run([sys.executable, "-m", "difftool", *args, "--out", str(part)], env=_env(tmp_path),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "resuming" in proc.stderr
    a = weights_digest(load(full / "model.safetensors").module)
    b = weights_digest(load(part / "model.safetensors").module)
    assert a == b
    np.testing.assert_array_equal(  # and the raw (non-EMA) weights too
        torch.load(full / "train_state.pt", weights_only=True)["model"]["conv_in.weight"].numpy(),
        torch.load(state_path, weights_only=True)["model"]["conv_in.weight"].numpy())
