"""The bad-input corpus: generated (never committed) hostile model files for every loader.

``build(root)`` writes every file of :data:`FILES` into ``root`` (plus the good ``base_*`` files the bad
ones are derived from) and returns ``{name: path}``. Each entry of ``FILES`` is ``name -> (suffix,
needle)``: the file name's suffix, and a lower-case substring the one-line error must contain.
Files with code in them (pickles) would create ``root / PWNED`` if anything ever unpickled them.

Run it by hand to inspect the files: ``python tests/badinput/corpus.py /tmp/corpus``.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np

CLASSES = ("hero", "creature", "food", "weapon", "item")
MARKER = "PWNED"

# name -> (suffix, needle in the error line). Builders are the functions named _f_<name> below.
FILES: dict[str, tuple[str, str]] = {
    # not model files at all
    "empty_pth": (".pth", "empty file"),
    "empty_st": (".safetensors", "empty file"),
    "html_pth": (".pth", "html page"),
    "html_st": (".safetensors", "html page"),
    "lfs_pointer": (".pth", "git lfs pointer"),
    "text_pth": (".pth", "text file"),
    "json_pth": (".pth", "json"),
    "png_pth": (".pth", "png image"),
    "gzip_pth": (".pth", "gzip"),
    "npy_pth": (".pth", "numpy"),
    "elf_pth": (".ckpt", "executable"),
    "zip_pth": (".pth", "zip archive that is not a pytorch checkpoint"),
    "zip_trunc": (".pth", "truncated or corrupt zip"),
    "folder_pth": (".pth", "folder"),
    "missing_pth": (".pth", "not found"),
    # pickles with code: must never execute
    "evil_zip": (".pth", "pickled python objects"),
    "evil_legacy": (".pth", "pickled python objects"),
    "evil_eval": (".pth", "pickled python objects"),
    "evil_raw": (".pth", "python pickle"),
    "evil_proto0": (".pth", "text file"),
    "evil_nested": (".pt", "pickled python objects"),
    # truncated checkpoints
    "course_trunc": (".pth", "truncated"),
    "legacy_trunc": (".pth", "truncated"),
    "st_trunc": (".safetensors", "corrupt or truncated"),
    # containers that are not state dicts
    "one_tensor": (".pth", "single tensor"),
    "tensor_list": (".pth", "holds a list"),
    "non_tensor_entry": (".pth", "entry 'epoch' is a int"),
    "empty_dict": (".pth", "empty dict"),
    "int_keys": (".pth", "non-string key"),
    "unknown_keys": (".pth", "unrecognised checkpoint"),
    "train_state": (".pt", "training state"),
    # course ContextUnet state dicts that lie
    "course_missing": (".pth", "missing: out.3.bias"),
    "course_unexpected": (".pth", "unexpected: extra.weight"),
    "course_shape": (".pth", "wrong shape: down1.model.0.conv1.0.weight"),
    "course_nan": (".pth", "non-finite"),
    "course_inf": (".pth", "non-finite"),
    "course_int": (".pth", "not floating point"),
    "course_rank": (".pth", "cannot be recovered"),
    "course_height": (".pth", "cannot be built"),
    "course_negvar": (".pth", "negative batchnorm"),
    "course_huge": (".pth", "non-finite"),  # finite weights, overflowing output: caught at the image
    # explainingai-style state dicts
    "ei_missing": (".pth", "missing"),
    "ei_nan": (".pth", "non-finite"),
    "ei_shape": (".pth", "wrong shape"),
    # difftool safetensors that lie
    "st_nan": (".safetensors", "non-finite"),
    "st_inf": (".safetensors", "non-finite"),
    "st_missing": (".safetensors", "missing"),
    "st_unexpected": (".safetensors", "unexpected: bogus"),
    "st_shape": (".safetensors", "wrong shape"),
    "st_int": (".safetensors", "not floating point"),
    "st_nometa": (".safetensors", "no difftool metadata"),
    "st_badjson": (".safetensors", "not valid json"),
    "st_notobj": (".safetensors", "malformed"),
    "st_timesteps": (".safetensors", "schedule.num_timesteps"),
    "st_beta": (".safetensors", "schedule.beta_start"),
    "st_width": (".safetensors", "model.down_channels"),
    "st_classes": (".safetensors", "class_names"),
    "st_range": (".safetensors", "value_range"),
    "st_arch": (".safetensors", "unknown model architecture"),
    "st_version": (".safetensors", "newer difftool"),
    "st_version_str": (".safetensors", "version"),
    "st_sampling": (".safetensors", "sampling.guidance"),
    "st_sampling_variance": (".safetensors", "sampling.variance"),
    "st_lying_offsets": (".safetensors", "corrupt"),
    "st_huge_header": (".safetensors", "corrupt"),
    "st_header_past_end": (".safetensors", "corrupt"),
    "st_dtype_lie": (".safetensors", "corrupt"),
    "st_header_garbage": (".safetensors", "corrupt"),
    "st_huge": (".safetensors", "non-finite"),
    # ONNX artifacts that lie
    "onnx_nometa": (".onnx", "no difftool metadata"),
    "onnx_nan": (".onnx", "non-finite weights"),
    "onnx_const_inf": (".onnx", "non-finite weights"),
    "onnx_classes": (".onnx", "context has shape"),
    "onnx_channels": (".onnx", "x has shape"),
    "onnx_size": (".onnx", "x has shape"),
    "onnx_inputs": (".onnx", "input names"),
    "onnx_output": (".onnx", "eps"),
    "onnx_rank": (".onnx", "rank"),
    "onnx_badcard": (".onnx", "not valid json"),
    "onnx_card_field": (".onnx", "schedule.num_timesteps"),
    "onnx_html": (".onnx", "html page"),
    "onnx_empty": (".onnx", "empty file"),
    "onnx_trunc": (".onnx", "onnx"),
    "onnx_checkpoint": (".onnx", "pytorch checkpoint"),
}
GOOD = ("base_st", "base_course", "base_ei", "base_onnx", "base_uncond")
OUTPUT_ONLY = ("course_huge", "st_huge")  # valid files whose outputs overflow: only export/sample/generate fail


def commands_for(name: str) -> tuple[str, ...]:
    """The CLI commands a corpus file is fed to (an ONNX graph is not a checkpoint to export or sample)."""
    if name in OUTPUT_ONLY:
        return ("export", "sample", "generate")
    if FILES[name][0] == ".onnx":
        return ("info", "generate")
    return ("info", "export", "sample", "generate")


# -- good base models ---------------------------------------------------------------------------------

def _tiny_card(classes=CLASSES):
    from difftool.config import ModelCard, ScheduleConfig
    from difftool.models import presets

    cfg = presets.tiny(channels=3, size=8, num_classes=len(classes))
    return ModelCard(model=cfg, schedule=ScheduleConfig(num_timesteps=100), class_names=tuple(classes))


def _tiny_state():
    import torch

    from difftool.models import build

    torch.manual_seed(0)
    return {k: v.clone() for k, v in build(_tiny_card().model).state_dict().items()}


def _course_state():
    import torch

    from difftool.config import ContextUnetConfig
    from difftool.models import build

    torch.manual_seed(0)
    model = build(ContextUnetConfig(in_channels=3, n_feat=8, n_cfeat=5, height=16))
    return {k: v.clone() for k, v in model.state_dict().items()}


def _save_st(path: Path, state, card_json: str | None) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(path),
              metadata=None if card_json is None else {"difftool": card_json})


def _card_dict():
    return json.loads(_tiny_card().to_json())


def _st_with_card(path: Path, edit) -> None:
    card = _card_dict()
    edit(card)
    _save_st(path, _tiny_state(), json.dumps(card))


def _torch_save(path: Path, obj, **kw) -> None:
    import torch

    torch.save(obj, str(path), **kw)


def _tiny_onnx(card=None, *, x_shape=("B", 3, 8, 8), ctx_dim=5, w=None, inputs=("x", "t", "context"),
               out_name="eps", const=None, meta=None):
    """A hand-made graph honouring the difftool contract: eps = x * w + t + sum(context)."""
    from onnx import TensorProto, helper, numpy_helper

    w = np.full((1, 3, 1, 1), 0.1, np.float32) if w is None else w
    nodes = [
        helper.make_node("Mul", [inputs[0], "w"], ["xw"]),
        helper.make_node("Reshape", [inputs[1], "shape4"], ["t4"]),
        helper.make_node("ReduceSum", [inputs[2], "axis1"], ["cs"], keepdims=1),
        helper.make_node("Reshape", ["cs", "shape4"], ["c4"]),
        helper.make_node("Add", ["xw", "t4"], ["a"]),
        helper.make_node("Mul", ["c4", "scale"], ["c5"]),
        helper.make_node("Add", ["a", "c5"], [out_name]),
    ]
    scale = np.array(0.01, np.float32) if const is None else const
    nodes.insert(0, helper.make_node("Constant", [], ["scale"], value=numpy_helper.from_array(scale, "scale")))
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([-1, 1, 1, 1], np.int64), "shape4"),
             numpy_helper.from_array(np.array([1], np.int64), "axis1")]
    vi = helper.make_tensor_value_info
    graph = helper.make_graph(nodes, "tiny", [vi(inputs[0], TensorProto.FLOAT, list(x_shape)),
                                              vi(inputs[1], TensorProto.FLOAT, ["B"]),
                                              vi(inputs[2], TensorProto.FLOAT, ["B", ctx_dim])],
                              [vi(out_name, TensorProto.FLOAT, list(x_shape))], initializer=inits)
    model = helper.make_model(graph, ir_version=8, opset_imports=[helper.make_opsetid("", 17)])
    card_json = (card or _tiny_card()).to_json() if meta is None else meta
    if card_json is not False:
        entry = model.metadata_props.add()
        entry.key, entry.value = "difftool", card_json
    return model


def _save_onnx(path: Path, model) -> None:
    path.write_bytes(model.SerializeToString())


class _Evil:
    """Unpickling this runs ``touch MARKER``."""

    def __init__(self, marker: Path, fn=os.system):
        self.cmd, self.fn = f"touch {marker}", fn

    def __reduce__(self):
        if self.fn is eval:
            return (eval, (f"open({str(self.cmd.split()[1])!r}, 'w')",))
        return (self.fn, (self.cmd,))


# -- builders -------------------------------------------------------------------------------------------

def build(root: Path) -> dict[str, Path]:
    """Write every corpus file (and the good bases) into ``root``; returns name -> path."""
    root.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in (*GOOD, *FILES):
        suffix = ".pth" if name in ("base_course", "base_ei") else FILES.get(name, (".safetensors",))[0]
        if name == "base_onnx":
            suffix = ".onnx"
        path = root / f"{name}{suffix}"
        builder = globals().get(f"_f_{name}")
        if builder is None:
            raise KeyError(f"no builder for corpus file {name}")
        builder(path, root)
        paths[name] = path
    return paths


def _f_base_st(p, root):
    import torch

    from difftool.models import build as build_model
    from difftool.models.checkpoint import save

    torch.manual_seed(0)
    save(p, build_model(_tiny_card().model), _tiny_card())


def _f_base_uncond(p, root):
    import torch

    from difftool.models import build as build_model
    from difftool.models.checkpoint import save

    torch.manual_seed(0)
    card = _tiny_card(classes=())
    save(p, build_model(card.model), card)


def _f_base_course(p, root): _torch_save(p, _course_state())
def _f_base_ei(p, root): _torch_save(p, _tiny_state())
def _f_base_onnx(p, root): _save_onnx(p, _tiny_onnx())


def _f_empty_pth(p, root): p.write_bytes(b"")
def _f_empty_st(p, root): p.write_bytes(b"")
def _f_html_pth(p, root): p.write_text("<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>404</body></html>\n")
def _f_html_st(p, root): p.write_text("<html>\n<body>Access denied</body></html>\n")
def _f_lfs_pointer(p, root):
    p.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "ab" * 32 + "\nsize 5977053\n")
def _f_text_pth(p, root): p.write_text("these are not the weights you are looking for\n" * 3)
def _f_json_pth(p, root): p.write_text(json.dumps({"weights": [1, 2, 3]}))
def _f_png_pth(p, root): p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
def _f_gzip_pth(p, root): p.write_bytes(gzip.compress(b"\x00" * 100))
def _f_npy_pth(p, root):
    buf = io.BytesIO()
    np.save(buf, np.zeros((4, 4), np.float32))
    p.write_bytes(buf.getvalue())
def _f_elf_pth(p, root): p.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(100))
def _f_zip_pth(p, root):
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("readme.txt", "hello")
def _f_zip_trunc(p, root):
    _torch_save(p, _course_state())
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])
def _f_folder_pth(p, root): p.mkdir()
def _f_missing_pth(p, root): pass  # never written


def _f_evil_zip(p, root): _torch_save(p, {"w": _Evil(root / MARKER)})
def _f_evil_legacy(p, root): _torch_save(p, {"w": _Evil(root / MARKER)}, _use_new_zipfile_serialization=False)
def _f_evil_eval(p, root): _torch_save(p, {"w": _Evil(root / MARKER, fn=eval)})
def _f_evil_raw(p, root): p.write_bytes(pickle.dumps({"w": _Evil(root / MARKER)}, protocol=4))
def _f_evil_proto0(p, root): p.write_bytes(pickle.dumps(_Evil(root / MARKER), protocol=0))
def _f_evil_nested(p, root):
    import torch
    _torch_save(p, {"model": {"a.weight": torch.zeros(2)}, "hook": _Evil(root / MARKER)})


def _f_course_trunc(p, root):
    _torch_save(p, _course_state())
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
def _f_legacy_trunc(p, root):
    _torch_save(p, _course_state(), _use_new_zipfile_serialization=False)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
def _f_st_trunc(p, root):
    _f_base_st(p, root)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _f_one_tensor(p, root):
    import torch
    _torch_save(p, torch.zeros(3, 3))
def _f_tensor_list(p, root):
    import torch
    _torch_save(p, [torch.zeros(3)])
def _f_non_tensor_entry(p, root):
    import torch
    _torch_save(p, {"epoch": 3, "w": torch.zeros(1)})
def _f_empty_dict(p, root): _torch_save(p, {})
def _f_int_keys(p, root):
    import torch
    _torch_save(p, {0: torch.zeros(1)})
def _f_unknown_keys(p, root):
    import torch
    _torch_save(p, {"encoder.weight": torch.zeros(4, 4), "decoder.bias": torch.zeros(4)})
def _f_train_state(p, root):
    import torch
    _torch_save(p, {"model": _tiny_state(), "ema": _tiny_state(), "opt": {}, "step": torch.tensor(6),
                    "card": _tiny_card().to_json()})


def _course_edit(p, edit):
    state = _course_state()
    edit(state)
    _torch_save(p, state)


def _f_course_missing(p, root): _course_edit(p, lambda s: s.pop("out.3.bias"))
def _f_course_unexpected(p, root):
    import torch
    _course_edit(p, lambda s: s.__setitem__("extra.weight", torch.zeros(2)))
def _f_course_shape(p, root):
    import torch
    _course_edit(p, lambda s: s.__setitem__("down1.model.0.conv1.0.weight", torch.zeros(8, 8, 5, 5)))
def _f_course_nan(p, root): _course_edit(p, lambda s: s["up1.model.0.weight"].view(-1).__setitem__(3, float("nan")))
def _f_course_inf(p, root): _course_edit(p, lambda s: s["out.0.bias"].__setitem__(0, float("inf")))
def _f_course_int(p, root):
    _course_edit(p, lambda s: s.__setitem__("out.3.bias", s["out.3.bias"].to(__import__("torch").int32)))
def _f_course_rank(p, root):
    import torch
    _course_edit(p, lambda s: s.__setitem__("contextembed1.model.0.weight", torch.zeros(16)))
def _f_course_height(p, root):
    import torch
    _course_edit(p, lambda s: s.__setitem__("up0.0.weight", torch.zeros(16, 16, 3, 3)))
def _f_course_negvar(p, root): _course_edit(p, lambda s: s["init_conv.conv1.1.running_var"].fill_(-1.0))
def _f_course_huge(p, root):
    def edit(s):
        for k, v in s.items():
            if v.is_floating_point() and "running" not in k:
                v.mul_(1e30).add_(1e30)
    _course_edit(p, edit)


def _f_ei_missing(p, root):
    state = _tiny_state()
    state.pop("conv_out.bias")
    _torch_save(p, state)
def _f_ei_nan(p, root):
    state = _tiny_state()
    state["conv_in.weight"].view(-1)[0] = float("nan")
    _torch_save(p, state)
def _f_ei_shape(p, root):
    import torch
    state = _tiny_state()
    state["conv_out.bias"] = torch.zeros(7)
    _torch_save(p, state)


def _st_state_edit(p, edit, meta=True):
    state = _tiny_state()
    edit(state)
    _save_st(p, state, _tiny_card().to_json() if meta else None)


def _f_st_nan(p, root): _st_state_edit(p, lambda s: s["conv_in.weight"].view(-1).__setitem__(0, float("nan")))
def _f_st_inf(p, root): _st_state_edit(p, lambda s: s["conv_out.weight"].view(-1).__setitem__(0, float("-inf")))
def _f_st_missing(p, root): _st_state_edit(p, lambda s: s.pop("conv_out.bias"))
def _f_st_unexpected(p, root):
    import torch
    _st_state_edit(p, lambda s: s.__setitem__("bogus", torch.zeros(1)))
def _f_st_shape(p, root):
    import torch
    _st_state_edit(p, lambda s: s.__setitem__("conv_out.bias", torch.zeros(9)))
def _f_st_int(p, root): _st_state_edit(p, lambda s: s.__setitem__("conv_out.bias", s["conv_out.bias"].long()))
def _f_st_nometa(p, root): _st_state_edit(p, lambda s: None, meta=False)
def _f_st_badjson(p, root): _save_st(p, _tiny_state(), "{not json")
def _f_st_notobj(p, root): _save_st(p, _tiny_state(), "[1, 2, 3]")
def _f_st_timesteps(p, root): _st_with_card(p, lambda c: c["schedule"].__setitem__("num_timesteps", -5))
def _f_st_beta(p, root): _st_with_card(p, lambda c: c["schedule"].__setitem__("beta_start", float("nan")))
def _f_st_width(p, root): _st_with_card(p, lambda c: c["model"].__setitem__("down_channels", [10**9, 8]))
def _f_st_classes(p, root): _st_with_card(p, lambda c: c.__setitem__("class_names", ["a", "b"]))
def _f_st_range(p, root): _st_with_card(p, lambda c: c.__setitem__("value_range", [1.0, -1.0]))
def _f_st_arch(p, root): _st_with_card(p, lambda c: c["model"].__setitem__("arch", "transformer"))
def _f_st_version(p, root): _st_with_card(p, lambda c: c.__setitem__("version", 99))
def _f_st_version_str(p, root): _st_with_card(p, lambda c: c.__setitem__("version", "1"))
def _f_st_sampling(p, root): _st_with_card(p, lambda c: c.__setitem__("sampling", {"guidance": float("inf")}))
def _f_st_sampling_variance(p, root): _st_with_card(p, lambda c: c.__setitem__("sampling", {"variance": "large"}))
def _f_st_huge(p, root):
    def edit(s):
        for v in s.values():
            if v.is_floating_point():
                v.mul_(1e30).add_(1e30)
    _st_state_edit(p, edit)


def _raw_st(p, header: dict, data: bytes, length: int | None = None) -> None:
    raw = json.dumps(header).encode()
    p.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)


def _f_st_lying_offsets(p, root):
    _raw_st(p, {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 4000]},
                "__metadata__": {"difftool": _tiny_card().to_json()}}, bytes(16))
def _f_st_huge_header(p, root): _raw_st(p, {"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, bytes(4), 2**62)
def _f_st_header_past_end(p, root):
    _raw_st(p, {"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, bytes(4), 10_000)
def _f_st_dtype_lie(p, root):
    _raw_st(p, {"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 8]},
                "__metadata__": {"difftool": _tiny_card().to_json()}}, bytes(8))
def _f_st_header_garbage(p, root): p.write_bytes(struct.pack("<Q", 12) + b"{\xff\xfe garbage" + bytes(8))


def _onnx_card(edit):
    card = _card_dict()
    edit(card)
    return json.dumps(card)


def _f_onnx_nometa(p, root): _save_onnx(p, _tiny_onnx(meta=False))
def _f_onnx_nan(p, root): _save_onnx(p, _tiny_onnx(w=np.array([np.nan, 0, 0], np.float32).reshape(1, 3, 1, 1)))
def _f_onnx_const_inf(p, root): _save_onnx(p, _tiny_onnx(const=np.array(np.inf, np.float32)))
def _f_onnx_classes(p, root): _save_onnx(p, _tiny_onnx(ctx_dim=3))
def _f_onnx_channels(p, root):
    _save_onnx(p, _tiny_onnx(meta=_onnx_card(lambda c: c["model"].__setitem__("im_channels", 1))))
def _f_onnx_size(p, root): _save_onnx(p, _tiny_onnx(x_shape=("B", 3, 16, 16)))
def _f_onnx_inputs(p, root): _save_onnx(p, _tiny_onnx(inputs=("x", "t", "ctx")))
def _f_onnx_output(p, root): _save_onnx(p, _tiny_onnx(out_name="noise"))
def _f_onnx_rank(p, root): _save_onnx(p, _tiny_onnx(x_shape=("B", 3, 8, 8, 1)))
def _f_onnx_badcard(p, root): _save_onnx(p, _tiny_onnx(meta="{oops"))
def _f_onnx_card_field(p, root):
    _save_onnx(p, _tiny_onnx(meta=_onnx_card(lambda c: c["schedule"].__setitem__("num_timesteps", 0))))
def _f_onnx_html(p, root): p.write_text("<!doctype html><html><body>Not Found</body></html>")
def _f_onnx_empty(p, root): p.write_bytes(b"")
def _f_onnx_trunc(p, root):
    data = _tiny_onnx().SerializeToString()
    p.write_bytes(data[: len(data) // 2])
def _f_onnx_checkpoint(p, root): _torch_save(p, _course_state())


if __name__ == "__main__":
    out = build(Path(sys.argv[1] if len(sys.argv) > 1 else "corpus"))
    print(f"wrote {len(out)} files to {Path(sys.argv[1] if len(sys.argv) > 1 else 'corpus')}")
