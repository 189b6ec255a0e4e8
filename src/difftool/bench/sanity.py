"""Consistency check of a bench row: the loop's forwards should take about ``forwards x forward time``.

The forward is timed in isolation, the loop in its own runs right after. When the two disagree by more than
:data:`MAX_RATIO` (either way), something else changed between them, nearly always another process
competing for the cores, and neither figure describes this machine. Such a row is flagged (``row["suspect"]``
in the JSON, marked and explained in the table) instead of being reported as a figure.
"""

from __future__ import annotations

from typing import Any

MAX_RATIO = 2.0


def check_loop(row: dict[str, Any], max_ratio: float = MAX_RATIO) -> dict[str, Any] | None:
    """None when the row is consistent, else ``{"ratio", "expected_s", "reason"}``.

    Compared: the time the loop spent inside its forwards (loop time minus the sampler's own share, which
    the loop measures itself) against ``forwards x`` the separately timed forward. The sampler's overhead
    is excluded so that a tiny model, whose loop is mostly numpy bookkeeping, is not flagged for it.
    """
    forwards = row["loop"]["forwards"]
    fwd_s = row["forward"]["median_ms"] / 1e3
    loop_s = row["loop"]["median_s"]
    inside = loop_s * (1.0 - max(0.0, min(100.0, row.get("loop_overhead_pct") or 0.0)) / 100.0)
    expected = forwards * fwd_s
    if not (expected > 0 and inside > 0):
        return {"ratio": None, "expected_s": expected, "reason": "no usable timing (zero or missing)"}
    ratio = inside / expected
    if 1.0 / max_ratio <= ratio <= max_ratio:
        return None
    return {
        "ratio": ratio,
        "expected_s": expected,
        "reason": (f"the loop's {forwards} forwards took {inside:.3f} s but {forwards} x {fwd_s * 1e3:.2f} ms "
                   f"= {expected:.3f} s (x{ratio:.2f}); another process was probably competing for the cores, "
                   "so these figures are not this machine's: rerun on an idle machine"),
    }


def flag(rows: list[dict[str, Any]], max_ratio: float = MAX_RATIO) -> int:
    """Set ``row["suspect"]`` on every row (None when consistent); returns how many were flagged."""
    for row in rows:
        row["suspect"] = check_loop(row, max_ratio)
    return sum(1 for row in rows if row["suspect"])
