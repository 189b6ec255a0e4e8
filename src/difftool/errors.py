"""The one exception type that the CLI turns into a one-line message and exit code 1."""

from __future__ import annotations


class DifftoolError(Exception):
    """A user-facing error: bad input, missing dependency, corrupt file.

    The message must say what went wrong and, where possible, how to fix it. The CLI prints it as a
    single red line on stderr and exits with code 1 (no traceback).
    """


class MissingDependency(DifftoolError):
    """An optional dependency (torch, tensorrt, onnxruntime-gpu, ...) is not installed."""

    def __init__(self, package: str, extra: str, purpose: str):
        super().__init__(
            f"{purpose} needs {package}, which is not installed; install it with "
            f"`pip install 'difftool[{extra}]'`"
        )
        self.package = package


class Cancelled(Exception):
    """Raised from a sampler callback to stop sampling early (the TUI's Esc)."""
