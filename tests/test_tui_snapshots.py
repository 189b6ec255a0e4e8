"""SVG snapshots of the sprite TUI at 120x40 (deterministic: the demo denoiser through the real Pipeline,
a fake clock, fixed seeds).

Update after an intended visual change with ``pytest tests/test_tui_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.worker import WorkerCancelled, WorkerFailed

from difftool.tui import Settings, SpriteApp
from difftool.tui.demo import DemoPipeline

SIZE = (120, 40)


@pytest.fixture(autouse=True)
def truecolor(monkeypatch: pytest.MonkeyPatch) -> None:
    """No colour warning toast in the pictures."""
    monkeypatch.setenv("COLORTERM", "truecolor")
    monkeypatch.delenv("TMUX", raising=False)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.05
        return self.now


def make_app(tmp_path: Path) -> SpriteApp:
    return SpriteApp({"ort-cpu": DemoPipeline, "torch-cpu": DemoPipeline},
                     settings=Settings(mix="hero=0.7,spell=0.3", sampler="ddim", steps=20, seed=7),
                     output_dir=tmp_path, clock=FakeClock(), rng_seed=0)


async def settle(pilot: Pilot) -> None:
    for _ in range(3):
        for worker in list(pilot.app.workers):
            try:
                await worker.wait()
            except (WorkerCancelled, WorkerFailed):
                pass
        await pilot.pause()


async def generate(pilot: Pilot) -> None:
    await settle(pilot)  # backend loaded
    await pilot.press("g")
    await settle(pilot)
    await pilot.press("right", "down")  # highlight sprite 5


def test_main_screen_after_generation(snap_compare, tmp_path: Path) -> None:
    assert snap_compare(make_app(tmp_path), terminal_size=SIZE, run_before=generate)


def test_help_screen(snap_compare, tmp_path: Path) -> None:
    async def open_help(pilot: Pilot) -> None:
        await generate(pilot)
        await pilot.press("question_mark")

    assert snap_compare(make_app(tmp_path), terminal_size=SIZE, run_before=open_help)
