"""Run a command in a child process whose file writers stall half-way, so a test can SIGKILL it mid-write.

``python slowwrite.py SIGNAL_FILE WRITERS SKIP -- MODULE_OR_CODE ARGS...``: patches the named writers
(comma separated: ``pil``, ``torch``, ``safetensors``, ``onnx``, ``text``), lets the first ``SKIP`` calls
through untouched, and makes the next one write HALF of its bytes to wherever the caller asked (a temp
file, a final path, an open file object: whatever the code under test does), flush and fsync them, write
that destination's path into SIGNAL_FILE, and sleep until killed. Then ``difftool.cli.main`` runs with
ARGS (or, with ``-c CODE``, the code runs).
"""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path

_calls = [0]


def install(signal_file: Path, writers: set[str], skip: int) -> None:
    real_write_text = Path.write_text

    def signal(text):
        real_write_text(signal_file, text)

    def stall(dest, data):
        _calls[0] += 1
        if _calls[0] <= skip:
            return False
        half = data[: max(1, len(data) // 2)]
        if hasattr(dest, "write"):
            dest.write(half)
            dest.flush()
            os.fsync(dest.fileno())
            name = getattr(dest, "name", "<file object>")
        else:
            with open(dest, "wb") as f:
                f.write(half)
                f.flush()
                os.fsync(f.fileno())
            name = str(dest)
        signal(str(name))
        while True:
            time.sleep(1)

    if "pil" in writers:
        from PIL import Image

        real = Image.Image.save

        def save(self, fp, format=None, **params):
            buf = io.BytesIO()
            real(self, buf, format=format or Path(str(fp)).suffix.lstrip(".").upper() or "PNG", **params)
            if not stall(fp, buf.getvalue()):
                return real(self, fp, format=format, **params)

        Image.Image.save = save
    if "torch" in writers:
        import torch

        real_torch = torch.save

        def tsave(obj, f, *a, **k):
            buf = io.BytesIO()
            real_torch(obj, buf, *a, **k)
            if not stall(f, buf.getvalue()):
                return real_torch(obj, f, *a, **k)

        torch.save = tsave
    if "safetensors" in writers:
        import safetensors.torch as st

        real_st = st.save_file

        def ssave(tensors, filename, metadata=None):
            if not stall(filename, st.save(tensors, metadata=metadata)):
                return real_st(tensors, filename, metadata=metadata)

        st.save_file = ssave
    if "onnx" in writers:
        import onnx

        real_onnx = onnx.save

        def osave(model, f, *a, **k):
            if not stall(f, model.SerializeToString()):
                return real_onnx(model, f, *a, **k)

        onnx.save = onnx.save_model = osave
    if "text" in writers:
        def wtext(self, data, *a, **k):
            if self == signal_file or not stall(self, data.encode()):
                return real_write_text(self, data, *a, **k)

        Path.write_text = wtext


def main(argv: list[str]) -> None:
    signal_file, writers, skip = Path(argv[0]), set(argv[1].split(",")), int(argv[2])
    rest = argv[argv.index("--") + 1:]
    install(signal_file, writers, skip)
    if rest[:1] == ["-c"]:
        exec(compile(rest[1], "<slowwrite -c>", "exec"), {"__name__": "__main__"})
        return
    from difftool.cli import main as cli_main

    sys.argv = ["difftool", *rest]
    cli_main()


if __name__ == "__main__":
    main(sys.argv[1:])
