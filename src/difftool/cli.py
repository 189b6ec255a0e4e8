"""difftool command line (Typer). Every command imports its heavy dependencies lazily."""

from __future__ import annotations

import sys

import typer

from difftool.errors import DifftoolError

app = typer.Typer(
    name="difftool",
    help="Train small diffusion models, export them to ONNX/TensorRT, sample fast without torch.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)


def main() -> None:
    """Console entry point: user errors become one red line on stderr and exit code 1."""
    try:
        app()
    except DifftoolError as exc:
        from rich.console import Console

        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
