"""onnxruntime on first contact with a GPU: two builds installed together, and providers that are listed
but do not load (a session then runs on CPU). Both are detected, reported by ``available_backends()``
and refused by the ORT backend, with a one-line fix."""

from __future__ import annotations

from pathlib import Path

import onnxruntime
import pytest

import difftool.runtime.backends as backends
from difftool.errors import DifftoolError
from difftool.runtime.backends import available_backends, make_denoiser, ortcheck
from difftool.runtime.backends.ort import OrtDenoiser, on_device

BUNDLED = Path(__file__).resolve().parents[1] / "src" / "difftool" / "assets" / "sprites.onnx"
CUDA_LOADS = "CUDAExecutionProvider" in onnxruntime.get_available_providers() and backends.cuda_device_present()


@pytest.fixture(autouse=True)
def _fresh_probe():
    ortcheck.provider_failure.cache_clear()
    yield
    ortcheck.provider_failure.cache_clear()


def test_conflict_from_a_list_of_installed_distributions():
    assert ortcheck.conflict({}) is None
    assert ortcheck.conflict({"onnxruntime": "1.32.0", "numpy": "2.0"}) is None
    assert ortcheck.conflict({"onnxruntime-gpu": "1.31.1"}) is None
    both = ortcheck.conflict({"onnxruntime": "1.32.0", "onnxruntime-gpu": "1.31.1"})
    assert both.startswith("onnxruntime 1.32.0 and onnxruntime-gpu 1.31.1 are installed together")
    assert "`pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu`" in both
    assert "(or `pip install onnxruntime` instead)" in both and "\n" not in both
    three = ortcheck.conflict({"onnxruntime-openvino": "1.20", "onnxruntime": "1.32", "ort-nightly": "1.33"})
    assert "pip uninstall -y onnxruntime onnxruntime-openvino ort-nightly && pip install ort-nightly" in three


def test_installed_distributions_reads_this_environment():
    found = ortcheck.installed_distributions()
    assert found.get("onnxruntime") == onnxruntime.__version__ or found.get("onnxruntime-gpu") == \
        onnxruntime.__version__


def test_two_builds_make_every_ort_backend_refuse_with_the_fix(monkeypatch):
    monkeypatch.setattr(ortcheck, "installed_distributions",
                        lambda: {"onnxruntime": "1.32.0", "onnxruntime-gpu": "1.31.1"})
    found = available_backends()
    message = ortcheck.conflict({"onnxruntime": "1.32.0", "onnxruntime-gpu": "1.31.1"})
    assert found["ort-cpu"] == found["ort-cuda"] == found["ort-tensorrt"] == message
    assert found["torch-cpu"] is None  # the other backends are unaffected
    with pytest.raises(DifftoolError, match="installed together and overwrite each other's files"):
        make_denoiser(BUNDLED, threads=1)
    with pytest.raises(DifftoolError, match="backend ort-cpu is not available here: onnxruntime 1.32.0 and"):
        make_denoiser(BUNDLED, backend="ort-cpu", threads=1)


@pytest.mark.skipif(CUDA_LOADS, reason="the CUDA provider really loads here: no fallback to show")
def test_explicit_gpu_provider_that_falls_back_to_cpu_is_an_error():
    """On this machine onnxruntime cannot run CUDA: the session it returns runs on CPU. Asked for
    explicitly, that is an error naming the fallback, not an ``ort-cpu`` denoiser under a CUDA label."""
    with pytest.raises(DifftoolError) as err:
        OrtDenoiser(BUNDLED, threads=1, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert "asked for CUDAExecutionProvider but fell back to CPUExecutionProvider" in str(err.value)
    with pytest.raises(DifftoolError, match="asked for TensorrtExecutionProvider but fell back"):
        OrtDenoiser(BUNDLED, threads=1, providers=[("TensorrtExecutionProvider", {}), "CPUExecutionProvider"])
    assert OrtDenoiser(BUNDLED, threads=1, providers=["CPUExecutionProvider"]).name == "ort-cpu"
    assert OrtDenoiser(BUNDLED, threads=1).name == "ort-cpu"  # auto: best available, honestly named


@pytest.mark.skipif(CUDA_LOADS, reason="the CUDA provider really loads here: no fallback to show")
def test_listed_but_unloadable_providers_are_unavailable(monkeypatch):
    """onnxruntime-gpu without its CUDA libraries: the providers are listed, a session falls back to CPU.
    Simulated by listing them on this CPU build; the probe session is real."""
    listed = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: listed)
    monkeypatch.setattr(backends, "cuda_device_present", lambda: True)
    found = available_backends()
    assert found["ort-cpu"] is None
    assert found["ort-cuda"].startswith("onnxruntime lists CUDAExecutionProvider but it did not load "
                                        "(a session fell back to CPUExecutionProvider)")
    assert "onnxruntime-gpu[cuda,cudnn]" in found["ort-cuda"]
    assert found["ort-tensorrt"].startswith("onnxruntime lists TensorrtExecutionProvider but it did not load")
    with pytest.raises(DifftoolError, match="backend ort-cuda is not available here: onnxruntime lists"):
        make_denoiser(BUNDLED, backend="ort-cuda", threads=1)


def test_probe_says_cpu_loads():
    assert ortcheck.provider_failure("CPUExecutionProvider") is None
    assert "did not load" in ortcheck.provider_failure("NoSuchExecutionProvider") or \
        "failed to start a session" in ortcheck.provider_failure("NoSuchExecutionProvider")


def test_probe_model_is_a_valid_graph():
    import onnx

    model = onnx.load_from_string(ortcheck.PROBE_MODEL)
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node] == ["Identity"]


def test_session_fallback_reads_the_first_requested_provider():
    assert ortcheck.session_fallback([], ["CPUExecutionProvider"]) is None
    assert ortcheck.session_fallback(["CPUExecutionProvider"], ["CPUExecutionProvider"]) is None
    assert ortcheck.session_fallback([("CUDAExecutionProvider", {"device_id": "0"}), "CPUExecutionProvider"],
                                     ["CPUExecutionProvider"]) == "CUDAExecutionProvider"
    assert ortcheck.session_fallback(["CUDAExecutionProvider", "CPUExecutionProvider"],
                                     ["CUDAExecutionProvider", "CPUExecutionProvider"]) is None


def test_device_id_reaches_the_gpu_provider_options():
    providers = [("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"}), "TensorrtExecutionProvider",
                 "CPUExecutionProvider"]
    assert on_device(providers, 0) is providers
    assert on_device(providers, 2) == [
        ("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC", "device_id": "2"}),
        ("TensorrtExecutionProvider", {"device_id": "2"}), "CPUExecutionProvider"]
    assert providers[0][1] == {"cudnn_conv_algo_search": "HEURISTIC"}  # not modified in place


def test_preload_messages_never_reach_stdout(monkeypatch, capsys):
    """preload_dlls prints its failures; --json owns stdout, so they are captured and returned."""
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(onnxruntime, "preload_dlls", lambda: print("Failed to load libcudnn.so.9: not found"),
                        raising=False)
    ortcheck.preload_gpu_libraries.cache_clear()
    try:
        assert ortcheck.preload_gpu_libraries() == ("Failed to load libcudnn.so.9: not found",)
    finally:
        ortcheck.preload_gpu_libraries.cache_clear()
    assert capsys.readouterr().out == ""


def test_bench_never_files_cpu_numbers_under_a_gpu_backend(monkeypatch):
    from difftool.bench.run import Unavailable, open_backend
    from difftool.runtime.artifact import read_card

    monkeypatch.setattr(backends, "available_backends", lambda: {"ort-cuda": None})
    monkeypatch.setattr(backends, "make_denoiser",
                        lambda path, backend, threads: OrtDenoiser(path, threads=threads, providers=None))
    with pytest.raises(Unavailable, match="asked for ort-cuda but the denoiser runs on ort-cpu"):
        open_backend("ort-cuda", BUNDLED, read_card(BUNDLED), 1)
