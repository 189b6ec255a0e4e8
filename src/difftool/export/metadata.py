"""ONNX metadata and file helpers shared by the exporters (torch-free).

The model card JSON goes under ``metadata_props["difftool"]``; human-readable keys sit beside it so
``netron`` or ``onnx`` users can see what the graph expects without difftool.
"""

from __future__ import annotations

import functools
from pathlib import Path

from difftool import __version__
from difftool.config import CARD_KEY, ModelCard

CONTRACT = ("inputs: x float32[batch,C,H,W], t float32[batch], context float32[batch,K] (only when the "
            "model has classes); output: eps float32[batch,C,H,W] (predicted noise; v or x0 when metadata "
            "'prediction' says v_prediction or sample)")


def time_convention(card: ModelCard) -> str:
    """A sentence explaining what the ``t`` input means for this model."""
    sched = card.schedule
    if sched.time_input == "fraction":
        return (f"t is the training timestep i divided by T (t = i/{sched.num_timesteps}, i in "
                f"1..{sched.num_timesteps}), as float32; course convention, alpha_bar[0] = 1")
    return (f"t is the integer training timestep i in 0..{sched.num_timesteps - 1} as float32 "
            "(the graph floors it, like .long())")


def card_metadata(card: ModelCard, *, precision: str = "fp32", exporter: str = "") -> dict[str, str]:
    """All metadata_props entries for ``card``."""
    return {
        CARD_KEY: card.to_json(),
        "difftool_version": __version__,
        "time_convention": time_convention(card),
        "prediction": card.prediction,
        "class_names": ",".join(card.class_names),
        "credit": card.credit,
        "license": card.license,
        "precision": precision,
        "exporter": exporter,
        "io": CONTRACT,
    }


def get_props(model) -> dict[str, str]:
    """metadata_props of an ``onnx.ModelProto`` as a dict."""
    return {p.key: p.value for p in model.metadata_props}


def set_props(model, props: dict[str, str]) -> None:
    """Replace the metadata_props of ``model`` with ``props`` (in place)."""
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=str(value))


@functools.cache
def ort_max_ir_version() -> int:
    """The highest ONNX IR version the installed onnxruntime loads (probed with a one-node graph)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    inp = helper.make_tensor_value_info("a", TensorProto.FLOAT, [1])
    out = helper.make_tensor_value_info("b", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["a"], ["b"])], "probe", [inp], [out])
    for ir in range(onnx.IR_VERSION, 6, -1):
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=ir)
        try:
            ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        except Exception:
            continue
        return ir
    return 8


def pin_ir_version(model) -> None:
    """Lower ``model.ir_version`` to what onnxruntime supports (onnx may write a newer IR)."""
    model.ir_version = min(model.ir_version, ort_max_ir_version())


def save_single_file(model, path: str | Path) -> Path:
    """Save ``model`` as ONE file (weights inline, no ``.data`` side file)."""
    import onnx

    from difftool.fileio import atomic_write

    return atomic_write(Path(path), lambda tmp: onnx.save(model, str(tmp), save_as_external_data=False))


