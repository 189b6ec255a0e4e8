"""What onnxruntime can really do here: one installed build, and the providers that actually load.

Two facts that ``onnxruntime.get_available_providers()`` hides:

* ``onnxruntime``, ``onnxruntime-gpu`` and the other builds all install the same ``onnxruntime`` package.
  With two of them in one environment, whichever was installed last owns the files; the CUDA provider
  then often goes missing, and uninstalling one breaks the other. :func:`conflict` names the problem
  and the one command that fixes it.
* The provider list names the execution providers compiled into the wheel, not the ones whose
  libraries (CUDA, cuDNN, TensorRT) load. A session asked for CUDA then logs one line and runs on
  CPU. :func:`provider_failure` opens a one-node session on the provider and reads back what it got.

Nothing here imports torch; onnxruntime is imported only inside the functions.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import io
from collections.abc import Mapping

# Distributions that install the top-level ``onnxruntime`` package (at most one may be present).
ORT_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino",
                     "onnxruntime-rocm", "onnxruntime-qnn", "onnxruntime-silicon", "onnxruntime-training",
                     "ort-nightly", "ort-nightly-gpu")
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
# A valid one-node model (y = Identity(x), float[1], opset 13, IR 8), serialised with onnx.helper.
PROBE_MODEL = (b'\x08\x08:7\n\x10\n\x01x\x12\x01y"\x08Identity\x12\x01pZ\x0f\n\x01x\x12\n\n\x08\x08\x01\x12\x04'
               b'\n\x02\x08\x01b\x0f\n\x01y\x12\n\n\x08\x08\x01\x12\x04\n\x02\x08\x01B\x04\n\x00\x10\r')
LIBRARY_HINT = {
    "CUDAExecutionProvider": "CUDA / cuDNN libraries missing? `pip install 'onnxruntime-gpu[cuda,cudnn]'`",
    "TensorrtExecutionProvider": "TensorRT libraries (libnvinfer) not on the library path?",
}


def installed_distributions(names: tuple[str, ...] = ORT_DISTRIBUTIONS) -> dict[str, str]:
    """{distribution: version} for the onnxruntime builds installed in this environment."""
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def conflict(installed: Mapping[str, str] | None = None) -> str | None:
    """A one-line message with the fix when more than one onnxruntime build is installed, else None."""
    installed = installed_distributions() if installed is None else installed
    found = [name for name in ORT_DISTRIBUTIONS if name in installed]
    if len(found) < 2:
        return None
    listed = " and ".join(f"{name} {installed[name]}" for name in found)
    keep = "onnxruntime-gpu" if "onnxruntime-gpu" in found else found[-1]
    other = "onnxruntime" if keep != "onnxruntime" else found[-1]
    return (f"{listed} are installed together and overwrite each other's files (both are the `onnxruntime` "
            f"package); keep one: `pip uninstall -y {' '.join(found)} && pip install {keep}` "
            f"(or `pip install {other}` instead)")


@functools.cache
def preload_gpu_libraries() -> tuple[str, ...]:
    """``onnxruntime.preload_dlls()`` (ORT >= 1.21: loads CUDA/cuDNN from the nvidia-* wheels), once.

    Its messages (printed on stdout, which ``--json`` owns) are captured and returned instead."""
    import onnxruntime as ort

    if not hasattr(ort, "preload_dlls") or "CUDAExecutionProvider" not in ort.get_available_providers():
        return ()
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        try:
            ort.preload_dlls()
        except Exception as exc:  # a broken nvidia-* layout must not stop CPU sampling
            print(f"preload_dlls failed: {exc}")
    return tuple(line.strip() for line in buffer.getvalue().splitlines() if line.strip())


@functools.cache
def provider_failure(provider: str) -> str | None:
    """None if a session on ``provider`` really runs on it; else why not (cached per process)."""
    import onnxruntime as ort

    messages = preload_gpu_libraries() if provider in GPU_PROVIDERS else ()
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    try:
        with quiet_provider_warning():
            chain = [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]
            sess = ort.InferenceSession(PROBE_MODEL, opts, providers=chain)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        return f"{provider} failed to start a session ({first})"
    got = sess.get_providers()
    if provider in got:
        return None
    failed = next((m for m in messages if m.lower().startswith("failed to load")), None)
    why = f"{failed[:160]}; " if failed else ""
    return (f"onnxruntime lists {provider} but it did not load (a session fell back to {got[0]}); "
            f"{why}{LIBRARY_HINT.get(provider, 'see `difftool doctor`')}")


def session_fallback(requested: list, got: list[str]) -> str | None:
    """The provider a session was asked for first but did not get (None when it got it)."""
    if not requested:
        return None
    first = requested[0][0] if isinstance(requested[0], tuple | list) else requested[0]
    return None if first in got else str(first)


@contextlib.contextmanager
def quiet_provider_warning():
    """Hide onnxruntime's "Specified provider ... is not in available provider names" UserWarning: the
    fallback it announces is detected from the session and reported as a one-line error instead."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Specified provider", category=UserWarning)
        yield
