"""Palettes: parsing (GPL, hex lists, PNG), nearest-colour projection, the in-sampling x0 hook, the eval's
palette fidelity figure, the learned palette in the model card, and the --palette option."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _paths import REPO_ROOT, requires_shared, shared_path
from difftool.config import ModelCard, ScheduleConfig, UnetConfig
from difftool.errors import DifftoolError
from difftool.runtime.palette import (
    Palette,
    PaletteProjection,
    learn_palette,
    load_palette,
    palette_fidelity,
    project,
    read_palette_file,
    resolve_palette,
    write_gpl,
)

DB4 = np.array([[0x14, 0x0C, 0x1C], [0x44, 0x24, 0x34], [0xD0, 0x46, 0x48], [0xDE, 0xEE, 0xD6]], np.uint8)


def _card(palette=(), sampling=None, size=8) -> ModelCard:
    model = UnetConfig(im_channels=3, im_size=size, down_channels=(8, 8), mid_channels=(8, 8),
                       down_sample=(False,), attention=(False,), num_classes=5)
    return ModelCard(model=model, schedule=ScheduleConfig(kind="cosine", num_timesteps=100),
                     class_names=("hero", "creature", "food", "weapon", "item"), palette=tuple(palette),
                     sampling=dict(sampling or {}))


# -- reading palettes ---------------------------------------------------------------------------------------
def test_gpl_hex_and_png_parse_to_the_same_colours(tmp_path):
    gpl = tmp_path / "db4.gpl"
    gpl.write_text("GIMP Palette\nName: db4\nColumns: 4\n#\n 20  12  28\tblack\n68 36 52 plum\n"
                   "208 70 72\n222 238 214 white\n")
    hexlist = tmp_path / "db4.hex"
    hexlist.write_text("; a lospec-style list\n140c1c\n#442434 // plum\n#d04648, #deeed6\n\n")
    png = tmp_path / "db4.png"
    from PIL import Image

    swatch = np.zeros((2, 3, 4), np.uint8)
    swatch[0, 0, :3], swatch[0, 1, :3], swatch[0, 2, :3], swatch[1, 0, :3] = DB4
    swatch[..., 3] = 255
    swatch[1, 1:, 3] = 0  # transparent pixels are not colours
    Image.fromarray(swatch, "RGBA").save(png)
    for path in (gpl, hexlist):
        np.testing.assert_array_equal(read_palette_file(path), DB4)  # file order kept
    assert sorted(map(tuple, read_palette_file(png).tolist())) == sorted(map(tuple, DB4.tolist()))
    p = load_palette(str(gpl))
    assert p.hex() == ("#140c1c", "#442434", "#d04648", "#deeed6") and p.name == "db4.gpl"
    again = read_palette_file(write_gpl(p, tmp_path / "out.gpl"))
    np.testing.assert_array_equal(again, DB4)
    inline = load_palette(",".join(p.hex()))
    np.testing.assert_array_equal(inline.colors, DB4)


@pytest.mark.parametrize("name, text, message", [
    ("bad.gpl", "GIMP Palette\n1 2\n", "bad GIMP palette line"),
    ("big.gpl", "GIMP Palette\n300 0 0 red\n", "bad GIMP palette line"),
    ("bad.hex", "#12345g\n", "bad colour"),
    ("empty.hex", "; nothing\n", "has no colours"),
    ("noise.png", "not a png", "cannot read palette image"),
])
def test_bad_palette_files_are_one_line_errors(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DifftoolError, match=message):
        load_palette(str(path))


def test_auto_none_and_missing():
    assert load_palette("none") is None and load_palette(None) is None
    with pytest.raises(DifftoolError, match="no learned palette"):
        load_palette("auto", _card())
    with pytest.raises(DifftoolError, match="palette file not found"):
        load_palette("/nonexistent/palette.gpl")
    p = load_palette("auto", _card(("#000000", "#ffffff")))
    assert len(p) == 2 and p.spec() == "auto"
    # the card's recommendation decides when nothing is asked for
    assert resolve_palette(None, _card(("#000000",))) is None
    rec = resolve_palette(None, _card(("#000000",), {"palette": "auto", "palette_last": 0.5}))
    assert rec.last == 0.5 and rec.hex() == ("#000000",)


def test_card_round_trips_the_palette_and_old_cards_load():
    card = _card(("#000000", "#140c1c"))
    assert ModelCard.from_json(card.to_json()).palette == ("#000000", "#140c1c")
    data = card.to_dict()
    del data["palette"]
    assert ModelCard.from_dict(data).palette == ()


# -- projection -----------------------------------------------------------------------------------------------
def test_projection_puts_every_pixel_on_its_nearest_palette_colour():
    rng = np.random.default_rng(0)
    colors = Palette(DB4).signed()  # (4, 3) in [-1, 1]
    x = rng.uniform(-1.2, 1.2, size=(3, 3, 5, 7)).astype(np.float32)
    out = project(x, colors)
    pixels = x.transpose(0, 2, 3, 1).reshape(-1, 3)
    brute = colors[((pixels[:, None, :] - colors[None]) ** 2).sum(-1).argmin(1)]
    np.testing.assert_array_equal(out.transpose(0, 2, 3, 1).reshape(-1, 3), brute)
    from difftool.runtime.images import to_uint8

    on = {tuple(c) for c in to_uint8(out).reshape(-1, 3).tolist()}
    assert on <= {tuple(c) for c in DB4.tolist()}  # exactly the palette's uint8 values after to_uint8


def test_hook_projects_only_the_last_share_of_steps():
    hook = PaletteProjection(Palette(DB4).signed(), last=0.3)
    assert hook.first_step(10) == 7 and hook.first_step(25) == 17 and hook.first_step(1) == 0
    assert PaletteProjection(Palette(DB4).signed(), last=1.0).first_step(8) == 0
    x0 = np.zeros((1, 3, 2, 2), np.float32)
    hook(6, 10, x0)
    assert (x0 == 0).all()
    hook(7, 10, x0)  # the first of 3 projected steps: a third of the way to the nearest colour
    nearest = project(np.zeros((1, 3, 2, 2), np.float32), Palette(DB4).signed())
    np.testing.assert_allclose(x0, nearest / 3, atol=1e-6)
    hook(9, 10, x0)  # the last: all the way
    np.testing.assert_array_equal(x0, nearest)
    hard = PaletteProjection(Palette(DB4).signed(), last=0.3, ramp=False)
    x0 = np.zeros((1, 3, 2, 2), np.float32)
    hard(7, 10, x0)
    np.testing.assert_array_equal(x0, nearest)


class _Blurry:
    """A numpy denoiser whose x0 estimate is a fixed off-palette image (so only the palette can fix it)."""

    name = "blurry"

    def __init__(self, card):
        from difftool.runtime.schedules import make_schedule

        self.card, self.schedule = card, make_schedule(card.schedule)
        rng = np.random.default_rng(1)
        self.target = rng.uniform(-0.9, 0.9, size=(3, card.image_size, card.image_size)).astype(np.float32)

    def __call__(self, x, t, context):
        ab = self.schedule.ab(int(t[0]))
        return ((x - np.sqrt(ab) * self.target) / np.sqrt(1 - ab)).astype(np.float32)


@pytest.mark.parametrize("sampler, steps, eta", [("ddim", 10, 1.0), ("ddim", 10, 0.0), ("ddpm", None, 0.0),
                                                 ("dpmpp_2m", 8, 0.0), ("unipc", 8, 0.0)])
def test_palette_sampling_lands_on_the_palette(sampler, steps, eta):
    from difftool.runtime.images import to_uint8
    from difftool.runtime.pipeline import Pipeline, SampleRequest

    card = _card()
    pipe = Pipeline(_Blurry(card))
    steps = steps or card.schedule.num_timesteps
    base = dict(n=3, sampler=sampler, steps=steps, eta=eta, seed=4)
    raw = to_uint8(pipe.sample(SampleRequest(**base)))
    palette = set(map(tuple, DB4.tolist()))
    assert not {tuple(c) for c in raw.reshape(-1, 3).tolist()} <= palette
    for last in (0.0, 0.3, 1.0):
        got = to_uint8(pipe.sample(SampleRequest(**base, palette=Palette(DB4, last=last))))
        assert {tuple(c) for c in got.reshape(-1, 3).tolist()} <= palette
    # the in-loop projection itself (no final snap): the last step's output is the projected x0
    state = pipe.start(SampleRequest(**base, palette=Palette(DB4, last=0.3)))
    while not state.done:
        state.advance(pipe.denoiser(state.x, np.full(3, state.t, np.float32), np.zeros((3, 5), np.float32)))
    if sampler in ("ddim", "ddpm"):
        assert {tuple(c) for c in to_uint8(state.x).reshape(-1, 3).tolist()} <= palette


# -- the eval's figures -------------------------------------------------------------------------------------
def test_palette_fidelity_golden_values():
    img = np.zeros((1, 2, 4, 3), np.uint8)  # 8 pixels
    img[0, 0, 0] = (0, 0, 0)  # background
    img[0, 0, 1] = (4, 4, 4)  # background within RMS 8 of black (RMS 4)
    img[0, 0, 2] = (20, 12, 28)  # exactly on
    img[0, 0, 3] = (28, 12, 28)  # RMS sqrt(64/3) = 4.6 from #140c1c: on
    img[0, 1, 0] = (34, 26, 42)  # RMS 14 from #140c1c: off
    img[0, 1, 1] = (208, 70, 72)  # exactly on
    img[0, 1, 2] = (222, 238, 214 - 13)  # RMS 13/sqrt(3) = 7.5: on
    img[0, 1, 3] = (100, 200, 30)  # far: off
    f = palette_fidelity(img, DB4)
    assert f.foreground_pixels == 6
    assert f.on_palette == pytest.approx(4 / 6) and f.exact == pytest.approx(2 / 6)
    assert f.distinct_colors == 8


@requires_shared("dawnlike")
def test_learned_palette_of_the_shared_sprites():
    from difftool.train.data import load_dataset

    dawn = load_dataset("sprites", shared_path("dawnlike"))
    p = learn_palette(dawn.images)
    assert len(p) == 17 and p.hex()[0] == "#000000" and "#140c1c" in p.hex()  # DawnBringer's 16 + black
    both = load_dataset("sprites", None, paths=[shared_path("dawnlike"), shared_path("kenney-tiny-dungeon")])
    assert len(learn_palette(both.images)) == 39
    from difftool.runtime.images import to_uint8

    assert palette_fidelity(to_uint8(both.images), learn_palette(both.images).colors).on_palette == 1.0


def test_eval_rows_compare_raw_in_loop_and_snapped(monkeypatch):
    from difftool.eval.judge import Judge
    from difftool.eval.report import _configs, evaluate, render_table
    from difftool.runtime.pipeline import Pipeline

    card = _card(("#000000", *Palette(DB4).hex()), size=16)
    rng = np.random.default_rng(0)
    real = Palette(DB4).signed()[rng.integers(0, 4, size=(40, 16, 16))].transpose(0, 3, 1, 2)
    configs = [{"sampler": "ddim", "steps": 6, "guidance": 1, "palette": m} for m in ("none", "sample", "post")]
    assert [c.palette for c in _configs(configs, card)] == ["none", "sample", "post"]
    assert _configs([{"sampler": "ddim", "steps": 6}], _card(sampling={"palette": "auto"}))[0].palette == "sample"
    report = evaluate(Pipeline(_Blurry(card)), Judge.load(), real, real_labels=np.arange(40) % 5, configs=configs,
                      per_class=2)
    raw, loop, snap = report.rows
    assert raw.palette_fidelity < 0.5 and loop.palette_fidelity == 1.0 and snap.palette_fidelity == 1.0
    assert loop.palette_exact == 1.0 and snap.distinct_colors <= 5 < raw.distinct_colors
    assert report.palette["reference_colors"] == 4 and report.palette["rows"]["colors"] == 5
    data = json.loads(report.to_json())
    assert data["rows"][1]["label"].endswith("palette sample") and data["rows"][0]["palette"] == "none"
    from rich.console import Console

    console = Console(record=True, width=250)
    console.print(render_table(report))
    text = console.export_text()
    assert "on-pal" in text and "in-loop" in text and "snap" in text


def test_the_bundled_card_carries_the_training_palette():
    from difftool.runtime.artifact import read_card

    assets = REPO_ROOT / "src" / "difftool" / "assets"
    for name in ("sprites.onnx", "sprites.safetensors"):
        card = read_card(assets / name)
        assert len(card.palette) == 39 and card.palette[:2] == ("#000000", "#140c1c")  # DawnLike + Kenney colours
        assert len(resolve_palette("auto", card)) == 39


# -- the command line ---------------------------------------------------------------------------------------
def _cli(*args):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, str(Path(__file__).parent / "_notorch.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=env)


def test_generate_with_a_palette_file_and_a_bad_one(tmp_path):
    from PIL import Image

    from difftool.runtime.record import read_png

    gpl = tmp_path / "db4.gpl"
    write_gpl(Palette(DB4), gpl)
    out = tmp_path / "p.png"
    proc = _cli("generate", "--class", "food", "-n", "2", "--steps", "4", "--palette", gpl, "-o", out,
                "--scale", "1", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    with Image.open(out) as im:
        px = np.asarray(im.convert("RGB")).reshape(-1, 3)
    assert {tuple(c) for c in px.tolist()} <= {(0, 0, 0), *map(tuple, DB4.tolist())}  # grid gutters are black
    assert read_png(out).palette == ",".join(Palette(DB4).hex())
    bad = tmp_path / "bad.gpl"
    bad.write_text("GIMP Palette\nnot a colour\n")
    proc = _cli("generate", "-n", "1", "--steps", "2", "--palette", bad, "-o", tmp_path / "q.png")
    lines = [x for x in proc.stderr.strip().splitlines() if x.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and "bad GIMP palette line" in lines[0], proc.stderr
