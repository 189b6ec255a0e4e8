"""The configurations (sampler rows) of an evaluation: the default and quick sets, and their validation.

A row is a mapping of ``sampler``, ``steps``, ``guidance``, ``eta``, ``palette`` and ``variance``; the value
``"default"`` takes the model's recommended setting from its card. The default set follows the sampler
registry (every sampler at its ``eval_steps``), so a sampler registered once is evaluated everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from difftool.errors import DifftoolError
from difftool.eval.colors import resolve_mode

# "default": the model's recommended setting (ModelCard.recommended: its card's ``sampling``, else DDIM-25,
# eta 0, guidance 2), so the first row is what `difftool generate` / the TUI / the demo produce.
D = "default"
_DEFAULT_ROWS: tuple[dict[str, Any], ...] = (
    {"sampler": "ddim", "steps": D, "guidance": D, "eta": D},  # the default sampling settings
    {"sampler": "ddim", "steps": D, "guidance": D, "eta": 0.0},  # deterministic DDIM
    {"sampler": "ddim", "steps": D, "guidance": 1.0, "eta": D},
    {"sampler": "ddim", "steps": D, "guidance": 2.0, "eta": D},
)


def _registry_rows(quick: bool = False) -> tuple[dict[str, Any], ...]:
    """Every registered sampler at its ``eval_steps`` (quick: the largest only, DDIM skipped), then the
    all-timestep samplers (DDPM) with ``steps: None``."""
    from difftool.runtime.samplers import SAMPLERS

    rows: list[dict[str, Any]] = []
    for spec in SAMPLERS.values():
        if spec.all_steps or (quick and spec.name == _DEFAULT_ROWS[0]["sampler"]):
            continue
        eta = D if "eta" in spec.option_names() else 0.0
        for steps in (spec.eval_steps[-1:] if quick else spec.eval_steps):
            if {"sampler": spec.name, "steps": steps, "guidance": D, "eta": eta} not in _DEFAULT_ROWS:
                rows.append({"sampler": spec.name, "steps": steps, "guidance": D, "eta": eta})
    if not quick:
        rows += [{"sampler": spec.name, "steps": None, "guidance": D, "eta": 0.0}  # None: every timestep
                 for spec in SAMPLERS.values() if spec.all_steps]
    return tuple(rows)


# The default setting raw, projected during sampling and snapped afterwards (duplicates of the first row,
# whose palette is the model's recommendation, are dropped once resolved), then DDIM-50 with the palette.
_PALETTE_ROWS: tuple[dict[str, Any], ...] = tuple({**_DEFAULT_ROWS[0], "palette": m} for m in ("none", "sample", "post"))
DEFAULT_CONFIGS: tuple[dict[str, Any], ...] = (_DEFAULT_ROWS + _PALETTE_ROWS + _registry_rows()[:-1]
                                               + ({**_DEFAULT_ROWS[0], "steps": 50, "palette": "sample"},)
                                               + _registry_rows()[-1:])
QUICK_CONFIGS: tuple[dict[str, Any], ...] = (_DEFAULT_ROWS[0], _DEFAULT_ROWS[2], *_PALETTE_ROWS,
                                             *_registry_rows(quick=True))
DEFAULT_PER_CLASS = 64
QUICK_PER_CLASS = 16


def _label(sampler: str, steps: int, guidance: float, eta: float, palette: str = "none",
           variance: str | None = None) -> str:
    text = f"{sampler} {steps} steps, guidance {guidance:g}" + (f", eta {eta:g}" if eta else "")
    return text + (f", variance {variance}" if variance else "") + (f", palette {palette}" if palette != "none" else "")


@dataclass(frozen=True)
class _Config:
    sampler: str
    steps: int
    guidance: float
    eta: float
    palette: str = "none"
    variance: str | None = None  # DDPM's variance (posterior | beta); None: the model's, else posterior


_KEYS = ("sampler", "steps", "guidance", "eta", "palette", "variance")


def _configs(configs: Sequence[Mapping[str, Any]] | None, card: Any) -> list[_Config]:
    from difftool.runtime.samplers import canonical_name

    out = []
    for raw in DEFAULT_CONFIGS if configs is None else configs:
        unknown = set(raw) - set(_KEYS)
        if unknown:
            raise DifftoolError(f"unknown eval setting(s) {sorted(unknown)}; use {', '.join(_KEYS)}")
        palette = resolve_mode(raw.get("palette", D), card)
        raw = {k: (card.recommended(k) if v == D else v) for k, v in raw.items() if k != "palette"}
        sampler = canonical_name(str(raw.get("sampler", "ddim")))
        steps = raw.get("steps")
        if steps in (None, "full", "all"):
            steps = int(card.schedule.num_timesteps)
        try:
            steps, guidance, eta = (
                int(steps),
                float(raw.get("guidance", 1.0)),
                float(raw.get("eta", 0.0) or 0.0),
            )
        except (TypeError, ValueError):
            raise DifftoolError(
                f"bad eval setting {dict(raw)}: steps, guidance and eta must be numbers"
            ) from None
        if steps < 1:
            raise DifftoolError(f"eval steps must be at least 1, got {steps}")
        if not card.conditional:
            guidance = 1.0
        config = _Config(sampler, steps, guidance, eta, palette, _variance(sampler, raw.get("variance")))
        if config not in out:
            out.append(config)
    if not out:
        raise DifftoolError("no eval configurations given")
    return out


def _variance(sampler: str, variance: Any) -> str | None:
    """An eval row's ``variance`` checked against the sampler's option (None: the model's default)."""
    from difftool.runtime.samplers import get_sampler

    if variance is None:
        return None
    option = next((o for o in get_sampler(sampler).options if o.name == "variance"), None)
    if option is None:
        raise DifftoolError(f"eval setting variance: {sampler} takes no variance option")
    return str(option.check(variance, sampler))  # the registry's own check: one of its choices
