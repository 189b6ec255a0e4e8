"""Terminal capability checks (pure functions of the environment, so tests can pass their own)."""

from __future__ import annotations

from collections.abc import Mapping


def has_truecolor(env: Mapping[str, str]) -> bool:
    """True when Rich/Textual will emit 24-bit colour (the same test Rich's console makes)."""
    return (env.get("COLORTERM", "").lower() in ("truecolor", "24bit")
            or env.get("TEXTUAL_COLOR_SYSTEM", "").lower() == "truecolor")


def truecolor_warning(env: Mapping[str, str]) -> str | None:
    """A user-facing warning with the fix when sprites would be drawn in 256 colours, else None."""
    if has_truecolor(env):
        return None
    colorterm = env.get("COLORTERM") or "unset"
    text = (f"No 24-bit colour (COLORTERM is {colorterm}): sprite colours are approximated. "
            "Fix: `export COLORTERM=truecolor` (or TEXTUAL_COLOR_SYSTEM=truecolor) and restart")
    if env.get("TMUX"):
        text += (". You are inside tmux: export it inside tmux too, and let tmux pass RGB through with "
                 "`set -as terminal-features ',*:RGB'` in ~/.tmux.conf")
    return text + "."
