"""Pilot tests of the sprite TUI: the real runtime Pipeline over the numpy demo denoiser (no model files)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from textual.pilot import Pilot
from textual.widgets import Input, OptionList, Select
from textual.worker import WorkerCancelled, WorkerFailed

from difftool.errors import DifftoolError
from difftool.render import truecolor_hint
from difftool.runtime.pipeline import Pipeline
from difftool.runtime.samplers import SAMPLERS
from difftool.tui import Settings, SpriteApp
from difftool.tui.demo import DEMO_CLASSES, DemoDenoiser, DemoPipeline, demo_card
from difftool.tui.help_screen import HelpScreen
from difftool.tui.messages import FrameReady, GenerationFinished
from difftool.tui.sampling import canonical_mix
from difftool.tui.settings import parse_grid, slug
from difftool.tui.sprite_grid import BACKGROUND, CURSOR_BLURRED, CURSOR_FOCUSED, EMPTY, HALF

SIZE = (120, 40)


@pytest.fixture(autouse=True)
def truecolor(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A truecolour terminal unless a test says otherwise (no colour warning toast)."""
    monkeypatch.setenv("COLORTERM", "truecolor")
    monkeypatch.delenv("TEXTUAL_COLOR_SYSTEM", raising=False)
    monkeypatch.delenv("TMUX", raising=False)
    return monkeypatch


class FakeClock:
    """Advances 0.1 s per call, so steps/s is always 10."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.1
        return self.now


class ExplodingDenoiser(DemoDenoiser):
    def __call__(self, x, t, context):
        raise RuntimeError("CUDA exploded")


def make_app(tmp_path: Path, pipeline: Pipeline | None = None, backends=None, **kwargs) -> SpriteApp:
    fake = pipeline or DemoPipeline()
    kwargs.setdefault("settings", Settings(mix="hero", steps=8, rows=2, cols=2))
    return SpriteApp(backends or {"fake": lambda: fake}, output_dir=tmp_path, clock=FakeClock(), rng_seed=1,
                     **kwargs)


async def settle(app: SpriteApp, pilot: Pilot) -> None:
    """Let every worker finish and every posted message be handled."""
    for _ in range(3):
        for worker in list(app.workers):
            try:
                await worker.wait()
            except (WorkerCancelled, WorkerFailed):
                pass
        await pilot.pause()


async def ready(app: SpriteApp, pilot: Pilot) -> None:
    await settle(app, pilot)
    assert app.pipeline is not None


async def wait_until(pilot: Pilot, condition, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await pilot.pause(0.02)
    raise AssertionError("condition not reached")


def errors(app: SpriteApp) -> list[str]:
    return [n.message for n in app._notifications if n.severity == "error"]


async def generate(app: SpriteApp, pilot: Pilot) -> None:
    app.grid.focus()
    await pilot.press("g")
    await settle(app, pilot)


# -- pure helpers ----------------------------------------------------------------------------------------
def test_mix_text_and_grid() -> None:
    """Mix text goes through the runtime's one parser (Pipeline.context_from_spec) and back to canonical text."""
    pipe = DemoPipeline()
    assert canonical_mix(pipe, "hero") == "hero"
    assert canonical_mix(pipe, " hero=0.6, food=0.4 ") == "hero=0.6,food=0.4"
    assert canonical_mix(pipe, "0=0.5,3=0.5") == "hero=0.5,spell=0.5"
    assert canonical_mix(pipe, "") == "" and canonical_mix(pipe, "none") == ""
    for bad in ("dragon", "hero=x", "=1"):
        with pytest.raises(DifftoolError):
            canonical_mix(pipe, bad)
    assert parse_grid("4x4") == (4, 4) and parse_grid("2 x 8") == (2, 8) and parse_grid("3") == (3, 3)
    for bad in ("9x1", "0x2", "axb"):
        with pytest.raises(DifftoolError):
            parse_grid(bad)
    assert slug("hero=0.6,food=0.4") == "hero0.6+food0.4"


def test_truecolor_detection(truecolor: pytest.MonkeyPatch) -> None:
    """The TUI uses the one truecolour check (difftool.render.truecolor_hint)."""
    for env in ({"COLORTERM": "truecolor"}, {"COLORTERM": "24bit"}, {"TEXTUAL_COLOR_SYSTEM": "truecolor"},
                {"COLORTERM": "truecolor", "TMUX": "/tmp/x"}):
        with truecolor.context() as mp:
            mp.delenv("COLORTERM")
            for key, value in env.items():
                mp.setenv(key, value)
            assert truecolor_hint() is None, env
    truecolor.delenv("COLORTERM")
    plain = truecolor_hint()
    assert plain and "export COLORTERM=truecolor" in plain and "tmux" not in plain
    truecolor.setenv("TMUX", "/tmp/tmux-0/default,1,0")
    tmux = truecolor_hint()
    assert tmux and "tmux" in tmux and "export COLORTERM=truecolor" in tmux


def test_frames_coalesce_per_job() -> None:
    img = np.zeros((1, 2, 2, 3), np.uint8)
    a, b, c = (FrameReady(j, i, 5, img, img, 1.0) for j, i in ((1, 0), (1, 1), (2, 0)))
    assert a.can_replace(b) and not a.can_replace(c)
    assert not a.can_replace(GenerationFinished(1, None))  # type: ignore[arg-type]


def test_preview_pacer_waits_for_the_screen_and_a_duty_pause() -> None:
    """The worker sends no preview while one is on its way, then waits DRAW_DUTY x its drawing time."""
    from difftool.tui.sampling import DRAW_DUTY, MIN_INTERVAL, Pacer

    now = [100.0]
    pacer = Pacer(clock=lambda: now[0])
    assert pacer.ready()
    pacer.sent()
    now[0] += 10
    assert not pacer.ready()  # not drawn yet, however long ago
    pacer.drawn(0.05)
    assert not pacer.ready()
    now[0] += DRAW_DUTY * 0.05 - 1e-6
    assert not pacer.ready()
    now[0] += 2e-6
    assert pacer.ready()
    pacer.sent()
    pacer.drawn(0.0)
    now[0] += MIN_INTERVAL / 2
    assert not pacer.ready()  # cheap frames still wait MIN_INTERVAL


# -- app --------------------------------------------------------------------------------------------------
async def test_generate_end_to_end(tmp_path: Path) -> None:
    fake = DemoPipeline()
    app = make_app(tmp_path, fake)
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        before = app.grid.canvas.copy()
        assert app.grid.images is None
        await generate(app, pilot)
        images = app.grid.images
        assert images is not None and images.shape == (4, 16, 16, 3)
        assert not np.array_equal(app.grid.canvas, before)
        colours = {tuple(p) for p in app.grid.canvas.reshape(-1, 3)}
        assert colours - {BACKGROUND, EMPTY, CURSOR_FOCUSED, CURSOR_BLURRED}
        assert app.current is not None and np.array_equal(images, app.current.image)
        assert len(app.history.entries) == 1
        assert "done · 8 steps in 0.90s · 8.9 steps/s" in app.status_text  # fake clock: 0.1 s a call
        request = fake.requests[-1]
        assert (request.n, request.sampler, request.steps, list(request.seeds)) == (4, "ddim", 8, [0, 1, 2, 3])
        assert app.query_one("#progress").progress == 8
        strip = app.grid.render_line(app.grid.size.height // 2)  # the canvas is centred
        assert all(seg.style is not None and seg.style.bgcolor is not None for seg in strip)
        assert any(seg.text.startswith(HALF) for seg in strip)


async def test_cancel_mid_way(tmp_path: Path) -> None:
    fake = DemoPipeline(delay=0.03)
    app = make_app(tmp_path, fake, settings=Settings(mix="hero", steps=300, rows=2, cols=2))
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        app.grid.focus()
        await pilot.press("g")
        await wait_until(pilot, lambda: fake.steps_run >= 3)
        await pilot.press("escape")
        await wait_until(pilot, lambda: "cancelled at step" in app.status_text)
        await settle(app, pilot)
        stopped_at = fake.steps_run
        assert stopped_at < 300
        assert "cancelled at step" in app.status_text
        assert not app.busy and app.current is None and not app.history.entries
        await pilot.pause(0.1)
        assert fake.steps_run == stopped_at  # the thread really stopped


async def test_class_sampler_and_enter_generate(tmp_path: Path) -> None:
    fake = DemoPipeline()
    app = make_app(tmp_path, fake)
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        app.query_one("#class", Select).value = "food"
        app.query_one("#sampler", Select).value = "dpmpp_2m"
        app.query_one("#guidance", Input).value = "3.5"
        await pilot.pause()
        assert app.query_one("#mix", Input).value == "food"
        steps = app.query_one("#steps", Input)
        steps.value = "12"
        steps.focus()
        await pilot.press("enter")  # Enter in a control generates
        await settle(app, pilot)
        request = fake.requests[-1]
        assert (request.sampler, request.steps, request.guidance, request.n) == ("dpmpp_2m", 12, 3.5, 4)
        expected = np.zeros((4, 5), np.float32)
        expected[:, DEMO_CLASSES.index("food")] = 1
        np.testing.assert_array_equal(request.context, expected)
        assert app.current is not None and app.current.settings.sampler == "dpmpp_2m"


async def test_mix_text_becomes_context(tmp_path: Path) -> None:
    fake = DemoPipeline()
    app = make_app(tmp_path, fake)
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        mix = app.query_one("#mix", Input)
        mix.value = "hero=0.6, food=0.4"
        mix.focus()
        await pilot.press("enter")
        await settle(app, pilot)
        np.testing.assert_allclose(fake.requests[-1].context, [[0.6, 0, 0.4, 0, 0]] * 4)
        assert app.current is not None and app.current.cells[0].mix == "hero=0.6,food=0.4"
        assert app.query_one("#class", Select).value is Select.NULL  # a mix is not one class

        count = len(fake.requests)
        mix.value = "dragon=1"
        await pilot.press("enter")
        await settle(app, pilot)
        assert len(fake.requests) == count
        assert any("dragon" in e for e in errors(app))
        assert app.is_running


async def test_grid_size_change(tmp_path: Path) -> None:
    fake = DemoPipeline()
    app = make_app(tmp_path, fake)
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        app.query_one("#grid", Input).value = "3x2"
        await generate(app, pilot)
        assert fake.requests[-1].n == 6 and (app.grid.rows, app.grid.cols) == (3, 2)
        await pilot.press("right_square_bracket")
        assert app.query_one("#grid", Input).value == "4x3"
        await pilot.press("left_square_bracket", "left_square_bracket")
        assert app.query_one("#grid", Input).value == "2x1"


async def test_save_png_with_sidecar(tmp_path: Path) -> None:
    app = make_app(tmp_path, save_scale=5)
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        await generate(app, pilot)
        await pilot.press("s")
        await settle(app, pilot)
        pngs = list(tmp_path.glob("*.png"))
        assert len(pngs) == 1
        name = pngs[0].name
        for part in ("hero", "ddim", "8st", "g1", "seed0"):
            assert part in name
        with Image.open(pngs[0]) as img:
            assert img.size == (2 * 16 * 5, 2 * 16 * 5)
            pixels = np.asarray(img.convert("RGB"))
        assert app.current is not None
        np.testing.assert_array_equal(pixels[::5, ::5][:16, :16], app.current.image[0])
        meta = json.loads(pngs[0].with_suffix(".json").read_text())
        assert meta["settings"] == {"mix": "hero", "sampler": "ddim", "steps": 8, "eta": 0.0, "guidance": 1.0,
                                    "seed": 0, "rows": 2, "cols": 2}
        assert [s["seed"] for s in meta["sprites"]] == [0, 1, 2, 3]
        assert all(s["mix"] == "hero" for s in meta["sprites"])
        assert meta["model"]["source"] == "demo" and meta["model"]["card"]["class_names"] == list(DEMO_CLASSES)
        assert meta["backend"] == "fake" and meta["files"] == {"png": name}
        assert any("Saved PNG" in n.title and name in n.message for n in app._notifications)


async def test_save_gif(tmp_path: Path) -> None:
    app = make_app(tmp_path, gif_scale=2)
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        await generate(app, pilot)
        await pilot.press("s", "a")
        await settle(app, pilot)
        gifs = list(tmp_path.glob("*.gif"))
        assert len(gifs) == 1
        with Image.open(gifs[0]) as gif:
            assert gif.n_frames > 1 and gif.size == (64, 64)
        meta = json.loads(gifs[0].with_suffix(".json").read_text())
        assert set(meta["files"]) == {"png", "gif"}  # same stem for both files of one generation


async def test_nothing_to_save_warns(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        await pilot.press("s")
        await settle(app, pilot)
        assert not list(tmp_path.iterdir())
        assert any(n.severity == "warning" for n in app._notifications)


async def test_history_grows_and_restores(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        await generate(app, pilot)
        first = app.current
        app.query_one("#seed", Input).value = "42"
        app.query_one("#steps", Input).value = "5"
        await generate(app, pilot)
        assert len(app.history.entries) == 2
        assert app.history.entries[0].settings.seed == 42
        options = app.query_one("#history-list", OptionList)
        assert options.option_count == 2
        options.focus()
        options.highlighted = 1  # the older entry
        await pilot.press("enter")
        await pilot.pause()
        assert app.current is first
        assert app.query_one("#seed", Input).value == "0" and app.query_one("#steps", Input).value == "8"
        assert first is not None and np.array_equal(app.grid.images, first.image)


async def test_reroll_and_vary_change_one_cell(tmp_path: Path) -> None:
    fake = DemoPipeline()
    app = make_app(tmp_path, fake)
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        await generate(app, pilot)
        base = app.current
        assert base is not None
        await pilot.press("right")  # cursor to sprite 1
        assert app.grid.cursor == 1
        await pilot.press("r")
        await settle(app, pilot)
        rolled = app.current
        assert rolled is not base and rolled is not None and rolled.kind == "reroll"
        changed = [i for i, (a, b) in enumerate(zip(base.seeds, rolled.seeds, strict=True)) if a != b]
        assert changed == [1]
        assert fake.requests[-1].n == 1 and list(fake.requests[-1].seeds) == [rolled.seeds[1]]
        for i in (0, 2, 3):
            np.testing.assert_array_equal(rolled.image[i], base.image[i])
        assert not np.array_equal(rolled.image[1], base.image[1])
        assert len(app.history.entries) == 2

        app.query_one("#mix", Input).value = "food"
        await pilot.press("down")  # sprite 3
        await pilot.press("v")
        await settle(app, pilot)
        varied = app.current
        assert varied is not None and varied.kind == "vary"
        assert varied.seeds == rolled.seeds and varied.cells[3].mix == "food"
        assert [c.mix for c in varied.cells[:3]] == ["hero"] * 3
        # the varied sprite equals that sprite sampled alone with its seed and the new mix
        alone = DemoPipeline().sample(type(fake.requests[-1])(n=1, context=fake.context_from_spec("food", 1),
                                                              steps=8, seeds=[varied.seeds[3]]))
        assert np.abs(varied.image[3].astype(int)
                      - np.clip(np.rint((alone[0].transpose(1, 2, 0) + 1) * 127.5), 0, 255)).max() == 0


async def test_click_selects_cell(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        await generate(app, pilot)
        # 16 px sprites + 1 px gutters: a 35x34 px canvas (17 rows), centred in the view;
        # sprite 3 (row 1, col 1) covers canvas x 18..33 and pixel rows 18..33 (text rows 9..16)
        view = app.grid.scrollable_content_region.size
        pad_x, pad_y = (view.width - 35) // 2, (view.height - 17) // 2
        await pilot.click("#sprites", offset=(pad_x + 25, pad_y + 12))
        assert app.grid.cursor == 3
        assert "sprite 3" in str(app.query_one("#cell-info").render())


async def test_ui_responsive_while_sampling(tmp_path: Path) -> None:
    fake = DemoPipeline(delay=0.03)
    app = make_app(tmp_path, fake, settings=Settings(mix="hero", steps=300, rows=2, cols=2))
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        app.grid.focus()
        await pilot.press("g")
        await wait_until(pilot, lambda: fake.steps_run >= 2)
        await pilot.press("plus", "m", "x")
        assert app.grid.zoom == 2
        assert app.query_one("#sampler", Select).value == "dpmpp_2m"
        assert app.show_x0
        await wait_until(pilot, lambda: app.grid.images is not None)
        assert app.busy and fake.steps_run < 300  # all of that happened while the model ran
        await pilot.press("escape")
        await settle(app, pilot)


async def test_toggle_x0_view(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        await generate(app, pilot)
        gen = app.current
        assert gen is not None
        await pilot.press("x")
        assert np.array_equal(app.grid.images, gen.x0) and "x0" in app._view_name()
        await pilot.press("x")
        assert np.array_equal(app.grid.images, gen.image)


async def test_backend_factory_error_keeps_app_running(tmp_path: Path) -> None:
    def broken() -> DemoPipeline:
        raise DifftoolError("artifact model.onnx is corrupt")

    good = DemoPipeline()
    app = make_app(tmp_path, backends={"good": lambda: good, "bad": broken})
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        await pilot.press("b")  # next backend: "bad"
        await settle(app, pilot)
        assert any("corrupt" in e for e in errors(app))
        assert app.is_running and app.backend_name == "good" and app.pipeline is good
        assert app.query_one("#backend", Select).value == "good"
        await generate(app, pilot)
        assert app.current is not None and len(good.requests) == 1


async def test_only_backend_broken(tmp_path: Path) -> None:
    def broken() -> DemoPipeline:
        raise RuntimeError("no onnxruntime")

    app = make_app(tmp_path, backends={"ort-cpu": broken})
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert app.pipeline is None and any("no onnxruntime" in e for e in errors(app))
        await generate(app, pilot)
        assert app.is_running and len(errors(app)) == 2


async def test_sampling_failure_is_a_toast(tmp_path: Path) -> None:
    app = make_app(tmp_path, Pipeline(ExplodingDenoiser()))
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        await generate(app, pilot)
        assert any("CUDA exploded" in e for e in errors(app))
        assert app.is_running and not app.busy and "failed" in app.status_text


async def test_switch_backend_loads_other_pipeline(tmp_path: Path) -> None:
    one, two = DemoPipeline(name="ort-cpu"), DemoPipeline(name="torch-cpu")
    app = make_app(tmp_path, backends={"ort-cpu": lambda: one, "torch-cpu": lambda: two})
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        app.query_one("#backend", Select).value = "torch-cpu"
        await settle(app, pilot)
        assert app.pipeline is two and "torch-cpu" in app.sub_title
        await generate(app, pilot)
        assert len(two.requests) == 1 and not one.requests
        assert app.current is not None and app.current.backend == "torch-cpu"


async def test_truecolor_warning_on_start(tmp_path: Path, truecolor: pytest.MonkeyPatch) -> None:
    truecolor.delenv("COLORTERM")
    truecolor.setenv("TMUX", "/tmp/tmux-1000/default,1,0")
    truecolor.setenv("TERM", "tmux-256color")
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        warnings = [n.message for n in app._notifications if n.severity == "warning"]
        assert warnings and "tmux" in warnings[0] and "COLORTERM=truecolor" in warnings[0]


async def test_help_screen_and_palette_commands(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")

        commands = {c.title: c for c in app.get_system_commands(app.screen)}
        for title in ("Generate", "Cancel generation", "Save grid as PNG", "Save animation as GIF",
                      "Toggle x_t / predicted x0", "Zoom in", "Zoom out", "Re-roll selected sprite",
                      "Vary selected sprite", "New seed", "Sampler: DDPM", "Backend: fake", "Keys"):
            assert title in commands
        await commands["Zoom in"].callback()
        await commands["Sampler: DDPM"].callback()
        assert app.grid.zoom == 2 and app.query_one("#sampler", Select).value == "ddpm"
        ids = {b.id for b in app.BINDINGS}  # every binding is remappable
        assert None not in ids and "difftool.generate" in ids


async def test_keymap_remaps_generate(tmp_path: Path) -> None:
    fake = DemoPipeline()
    app = make_app(tmp_path, fake, keymap={"difftool.generate": "f5"})
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        app.grid.focus()
        await pilot.press("f5")
        await settle(app, pilot)
        assert len(fake.requests) == 1


async def test_random_seed_each_time(tmp_path: Path) -> None:
    fake = DemoPipeline()
    app = make_app(tmp_path, fake, settings=Settings(mix="hero", steps=3, rows=1, cols=2, random_seed=True))
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        await generate(app, pilot)
        await generate(app, pilot)
        first, second = (r.seeds[0] for r in fake.requests)
        assert first != second
        assert app.query_one("#seed", Input).value == str(second)


async def test_small_terminal_degrades(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(app, pilot)
        await generate(app, pilot)
        assert not app.query_one("#history").display
        assert app.grid.images is not None


async def test_unconditional_grayscale_model(tmp_path: Path) -> None:
    from difftool.config import ModelCard, ScheduleConfig, UnetConfig

    card = ModelCard(model=UnetConfig(im_channels=1, im_size=16, num_classes=0), schedule=ScheduleConfig(),
                     source="explainingai")
    fake = DemoPipeline(card)
    app = make_app(tmp_path, fake, settings=Settings(mix="", steps=4, rows=1, cols=3))
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        assert app.query_one("#mix", Input).disabled and app.query_one("#guidance", Input).disabled
        await generate(app, pilot)
        assert fake.requests[-1].context is None
        images = app.grid.images
        assert images is not None and images.shape == (3, 16, 16, 3)
        assert np.array_equal(images[..., 0], images[..., 2])  # grey drawn as equal RGB
        await pilot.press("s")
        await settle(app, pilot)
        (png,) = tmp_path.glob("*.png")
        assert "uncond" in png.name
        with Image.open(png) as img:
            assert img.mode == "L" and img.size == (3 * 16 * 8, 16 * 8)


async def test_old_history_entries_drop_frames(tmp_path: Path) -> None:
    from difftool.tui.history import KEEP_FRAMES

    app = make_app(tmp_path, settings=Settings(mix="hero", steps=3, rows=1, cols=1))
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        for _ in range(KEEP_FRAMES + 1):
            await generate(app, pilot)
        entries = app.history.entries
        assert len(entries[0].frames) > 1 and len(entries[-1].frames) == 1


async def test_with_runtime_pipeline(tmp_path: Path) -> None:
    """The real runtime Pipeline (every sampler, re-roll, cancel) driven by a tiny numpy denoiser."""
    runtime = pytest.importorskip("difftool.runtime.pipeline")

    class ShrinkEps:
        name = "numpy-eps"

        def __init__(self, delay: float = 0.0) -> None:
            self.card = demo_card()
            self.delay = delay

        def __call__(self, x: np.ndarray, t: np.ndarray, context: np.ndarray) -> np.ndarray:
            if self.delay:
                time.sleep(self.delay)
            return (0.1 * x).astype(np.float32)

    app = make_app(tmp_path, backends={"fast": lambda: runtime.Pipeline(ShrinkEps()),
                                       "slow": lambda: runtime.Pipeline(ShrinkEps(0.02))},
                   settings=Settings(mix="hero=0.6,food=0.4", steps=6, guidance=2.0, rows=2, cols=2))
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        for sampler in SAMPLERS:
            app.controls.set_sampler(sampler)
            await generate(app, pilot)
            assert app.current is not None and app.current.settings.sampler == sampler, errors(app)
        await pilot.press("r")
        await settle(app, pilot)
        assert app.current.kind == "reroll" and not errors(app)
        app.action_set_backend("slow")
        await settle(app, pilot)
        app.query_one("#steps", Input).value = "300"
        await generate_and_cancel(app, pilot)


async def generate_and_cancel(app: SpriteApp, pilot: Pilot) -> None:
    app.grid.focus()
    await pilot.press("g")
    await wait_until(pilot, lambda: app.status_text.startswith("step "))
    await pilot.press("escape")
    await wait_until(pilot, lambda: "cancelled at step" in app.status_text)
    assert not errors(app) and len(app.history.entries) == len(SAMPLERS) + 1


async def test_letter_keys_work_on_a_focused_select(tmp_path: Path) -> None:
    fake = DemoPipeline()
    app = make_app(tmp_path, fake)
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        app.query_one("#sampler", Select).focus()
        await pilot.press("g")
        await settle(app, pilot)
        assert len(fake.requests) == 1


def test_launch_lists_backends_by_file_type(tmp_path: Path) -> None:
    pytest.importorskip("difftool.runtime.backends")
    from difftool.tui.launch import backends_for, launch

    onnx = backends_for(tmp_path / "model.onnx")
    assert onnx and all(callable(factory) for factory in onnx.values())
    assert set(onnx) <= {"ort-cuda", "ort-cpu", "ort-tensorrt", "auto"}
    with pytest.raises(DifftoolError, match="not found"):
        launch(tmp_path / "missing.onnx")


# -- registry, defaults, generation record ------------------------------------------------------------------
async def test_sampler_list_and_options_come_from_the_registry(tmp_path: Path) -> None:
    fake = DemoPipeline()
    app = make_app(tmp_path, fake)
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        select = app.query_one("#sampler", Select)
        assert [value for _, value in select._options if value is not Select.NULL] == list(SAMPLERS)
        commands = {c.title for c in app.get_system_commands(app.screen)}
        assert {f"Sampler: {spec.label}" for spec in SAMPLERS.values()} <= commands
        every = {o.name for spec in SAMPLERS.values() for o in spec.options}
        for name, spec in SAMPLERS.items():
            app.controls.set_sampler(name)
            await pilot.pause()
            shown = {o for o in every if app.query_one(f"#field-{o}").display}
            assert shown == set(spec.option_names()), name
        app.controls.set_sampler("ddpm")
        app.query_one("#opt-variance", Select).value = "beta"
        await generate(app, pilot)
        assert (fake.requests[-1].sampler, fake.requests[-1].variance) == ("ddpm", "beta")
        assert app.current is not None and dict(app.current.settings.options) == {"variance": "beta"}
        app.controls.set_sampler("ddim")
        app.query_one("#opt-eta", Input).value = "0.5"
        await generate(app, pilot)
        assert (fake.requests[-1].sampler, fake.requests[-1].eta) == ("ddim", 0.5)
        app.query_one("#opt-eta", Input).value = "-1"
        await generate(app, pilot)
        assert any("eta" in e for e in errors(app)) and len(fake.requests) == 2  # checked by the registry's Option


async def test_blank_settings_take_the_models_defaults(tmp_path: Path) -> None:
    """What the controls start with is runtime.defaults.resolve's answer for the loaded model."""
    from dataclasses import replace

    from difftool.runtime.defaults import resolve

    card = replace(demo_card(), sampling={"sampler": "ddim", "steps": 7, "eta": 1.0, "guidance": 2.5})
    fake = DemoPipeline(card)
    app = make_app(tmp_path, fake, settings=Settings(mix="food", rows=1, cols=2))
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        expected = resolve(card, conditioned=True)
        shown = (app.controls.sampler, app.query_one("#steps", Input).value, app.query_one("#opt-eta", Input).value,
                 app.query_one("#guidance", Input).value)
        assert shown == (expected.sampler, "7", "1", "2.5")
        assert app.query_one("#opt-variance", Select).value == resolve(card, conditioned=True, sampler="ddpm").option("variance")
        await generate(app, pilot)
        request = fake.requests[-1]
        assert (request.sampler, request.steps, request.eta, request.guidance) == ("ddim", 7, 1.0, 2.5)


async def test_saved_png_record_regenerates_the_grid(tmp_path: Path) -> None:
    """The PNG of an edited grid (a varied cell) holds one record that regenerates every sprite."""
    from difftool.runtime.images import to_uint8
    from difftool.runtime.record import read_png

    app = make_app(tmp_path, settings=Settings(mix="hero=0.6,food=0.4", sampler="dpmpp_2m", steps=6, guidance=2.0,
                                               seed=9, rows=2, cols=2))
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        await generate(app, pilot)
        app.query_one("#mix", Input).value = "spell"
        await pilot.press("right", "v")
        await settle(app, pilot)
        await pilot.press("s")
        await settle(app, pilot)
        gen = app.current
        assert gen is not None and gen.kind == "vary"
        (png,) = tmp_path.glob("*.png")
        record = read_png(png)
        assert (record.sampler, record.steps, record.guidance, record.seeds) == ("dpmpp_2m", 6, 2.0, (9, 10, 11, 12))
        assert record.nrow == 2 and record.scale == app.save_scale
        with Image.open(png) as img:
            assert "Sampler: DPM-Solver++(2M)" in img.text["parameters"]
        again = to_uint8(DemoPipeline().sample(record.to_request()))
        np.testing.assert_array_equal(again, gen.image)
        await pilot.press("x", "s")  # the predicted-x0 view is not a sampler's output: no record
        await settle(app, pilot)
        (x0_png,) = set(tmp_path.glob("*.png")) - {png}
        with pytest.raises(DifftoolError, match="no difftool settings"):
            read_png(x0_png)


BUNDLED = Path(__file__).resolve().parents[1] / "src" / "difftool" / "assets" / "sprites.onnx"


def sprites_of_sheet(path: Path, scale: int, rows: int, cols: int, size: int) -> np.ndarray:
    """(rows*cols, size, size, 3) from a gapless sprite sheet saved at ``scale``."""
    with Image.open(path) as img:
        px = np.asarray(img.convert("RGB"))[::scale, ::scale]
    return px.reshape(rows, size, cols, size, 3).transpose(0, 2, 1, 3, 4).reshape(-1, size, size, 3)


async def test_tui_save_regenerates_with_cli_from_png(tmp_path: Path) -> None:
    """Save from the TUI on the bundled ONNX model, regenerate with `difftool generate --from-png`."""
    pytest.importorskip("onnxruntime")
    from typer.testing import CliRunner

    from difftool.cli import app as cli
    from difftool.runtime.loader import load

    pipe = load(BUNDLED, backend="ort-cpu")
    app = make_app(tmp_path, backends={"ort-cpu": lambda: pipe}, save_scale=3,
                   settings=Settings(mix="hero=0.5,food=0.5", sampler="ddim", steps=4, guidance=2.5,
                                     options={"eta": 0.7}, seed=11, rows=2, cols=3))
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        await generate(app, pilot)
        await pilot.press("s")
        await settle(app, pilot)
        assert not errors(app)
        (png,) = tmp_path.glob("*.png")
        gen = app.current
    assert gen is not None
    out = tmp_path / "again.png"
    result = CliRunner().invoke(cli, ["generate", str(BUNDLED), "--from-png", str(png), "-o", str(out),
                                      "--backend", "ort-cpu"])
    assert result.exit_code == 0, result.output
    size = pipe.card.image_size
    saved = sprites_of_sheet(png, 3, 2, 3, size)
    np.testing.assert_array_equal(saved, gen.image)
    # the record carries the sheet layout (gap 0, 3 per row, scale 3): the whole file's pixels are the same
    with Image.open(png) as a, Image.open(out) as b:
        np.testing.assert_array_equal(np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB")))


async def test_palette_field_projects_and_is_recorded(tmp_path: Path) -> None:
    """`--palette auto` in the TUI: every saved pixel is a palette colour, the PNG records it, and
    `difftool generate --from-png` gives the same file; a bad palette is a one-line error, not a crash."""
    pytest.importorskip("onnxruntime")
    from typer.testing import CliRunner

    from difftool.cli import app as cli
    from difftool.runtime.loader import load
    from difftool.runtime.record import read_png

    pipe = load(BUNDLED, backend="ort-cpu")
    assert pipe.card.palette, "the bundled card stores its learned palette"
    app = make_app(tmp_path, backends={"ort-cpu": lambda: pipe}, save_scale=2,
                   settings=Settings(mix="food", sampler="ddim", steps=4, guidance=2.0, seed=5, rows=1, cols=3,
                                     palette="auto"))
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        assert app.query_one("#palette", Input).value == "auto"
        await generate(app, pilot)
        await pilot.press("s")
        await settle(app, pilot)
        assert not errors(app)
        (png,) = tmp_path.glob("*.png")
        app.query_one("#palette", Input).value = str(tmp_path / "missing.gpl")
        await generate(app, pilot)
        assert any("palette file not found" in e for e in errors(app))
    colors = {tuple(int(h[i:i + 2], 16) for i in (1, 3, 5)) for h in pipe.card.palette}
    sprites = sprites_of_sheet(png, 2, 1, 3, pipe.card.image_size)
    assert {tuple(p) for p in sprites.reshape(-1, 3)} <= colors
    assert read_png(png).palette == "auto"
    out = tmp_path / "again.png"
    result = CliRunner().invoke(cli, ["generate", str(BUNDLED), "--from-png", str(png), "-o", str(out),
                                      "--backend", "ort-cpu"])
    assert result.exit_code == 0, result.output
    with Image.open(png) as a, Image.open(out) as b:
        np.testing.assert_array_equal(np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB")))
