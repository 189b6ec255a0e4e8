"""Run the Typer app so that every failure is ONE line on stderr and a defined exit code.

* 0 ok; 1 a :class:`~difftool.errors.DifftoolError` (bad file, bad value for this model, ...);
  2 a usage error (unknown flag, out-of-range or non-finite number, ...); 130 interrupted.
* Typer's own usage errors come as a multi-line boxed panel; here they are one ``error:`` line that names
  the flag and points at ``--help``.
* Every float flag of every command rejects NaN and infinities (click's ranges let NaN through, since no
  comparison with NaN is true): the command callbacks are wrapped, so a new flag cannot forget it.

``run(app, args)`` is what ``difftool`` (the console script) executes, and what tests call in-process.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Sequence

from difftool.errors import DifftoolError


def _exceptions():
    """click's exception module as Typer uses it (recent Typer vendors its own copy of click)."""
    import typer

    return sys.modules[typer.BadParameter.__module__]


def _finite_guard(callback, params):
    """Wrap a command callback: a non-finite float argument is a usage error naming its flag."""
    import typer

    flags = {p.name: (p.opts[0] if getattr(p, "opts", None) else p.name) for p in params}

    @functools.wraps(callback)
    def guarded(*args, **kwargs):
        for name, value in kwargs.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise typer.BadParameter(f"{value!r} is not a finite number", param_hint=f"'{flags.get(name, name)}'")
        return callback(*args, **kwargs)

    guarded.__difftool_guarded__ = True
    return guarded


def harden(command):
    """Make every float option/argument of ``command`` and its subcommands reject NaN and infinities."""
    callback = getattr(command, "callback", None)
    if callback is not None and not getattr(callback, "__difftool_guarded__", False):
        command.callback = _finite_guard(callback, command.params)
    for sub in (getattr(command, "commands", None) or {}).values():
        harden(sub)
    return command


def _say(message: str) -> None:
    from rich.console import Console
    from rich.text import Text

    Console(stderr=True, highlight=False).print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)


def _given_value(args: Sequence[str], opts: Sequence[str]) -> str | None:
    """The value given on the command line for the option spelled ``opts`` (last one wins)."""
    found = None
    for i, arg in enumerate(args):
        for opt in opts:
            if arg == opt and i + 1 < len(args):
                found = args[i + 1]
            elif arg.startswith(opt + "="):
                found = arg[len(opt) + 1:]
    return found


def _usage_line(exc, args: Sequence[str]) -> str:
    ctx = getattr(exc, "ctx", None)
    hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
    param = getattr(exc, "param", None)
    opts = list(getattr(param, "opts", None) or ())
    value = _given_value(args, opts) if opts else None
    try:
        nonfinite = value is not None and not math.isfinite(float(value))
    except ValueError:
        nonfinite = False
    if nonfinite:  # a range check would say "should be <= 100" for nan: name the real problem
        return f"Invalid value for '{opts[0]}': {value!r} is not a finite number{hint}"
    return " ".join(exc.format_message().split()) + hint


def run(app, args: Sequence[str] | None = None, prog_name: str = "difftool") -> int:
    """Invoke ``app`` (a Typer app) on ``args`` (default: ``sys.argv[1:]``); returns the exit code."""
    import typer

    exc_mod = _exceptions()
    args = list(args) if args is not None else sys.argv[1:]
    command = harden(_group_for(app, args))
    try:
        result = command.main(args=args, prog_name=prog_name, standalone_mode=False)
    except exc_mod.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            return exc.exit_code  # the help text has been printed already
        _say(_usage_line(exc, args))
        return exc.exit_code
    except exc_mod.ClickException as exc:
        _say(" ".join(exc.format_message().split()))
        return exc.exit_code
    except typer.Abort:
        _say("aborted")
        return 1
    except DifftoolError as exc:
        _say(" ".join(str(exc).split()))
        return 1
    except OSError as exc:  # disk full, permission denied, ...: the environment, not a bug
        where = f"{exc.filename}: " if exc.filename else ""
        _say(f"{where}{exc.strerror or exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    return result if isinstance(result, int) else 0


def _group_for(app, args: Sequence[str]):
    """The click group of ``app``, built with only the command ``args`` invoke when they name one (Typer
    builds every command's parameters up front, tens of milliseconds for all of them, paid on every run);
    the whole app for help, an unknown name or a leading option."""
    import typer

    name = args[0] if args and not args[0].startswith("-") else None
    chosen = [c for c in app.registered_commands
              if (c.name or typer.main.get_command_name(c.callback.__name__)) == name]
    if len(chosen) != 1:
        return typer.main.get_command(app)
    every = app.registered_commands
    app.registered_commands = chosen
    try:
        return typer.main.get_group(app)  # a group even with one command: ``difftool NAME ...`` parses as before
    finally:
        app.registered_commands = every


def main(app) -> None:
    sys.exit(run(app))
