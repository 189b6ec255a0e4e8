"""Pipeline core: seeding, contexts, images."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

from difftool.errors import Cancelled, DifftoolError
from difftool.runtime.images import grid, save_gif, save_png, to_uint8
from difftool.runtime.noise import Noise
from difftool.runtime.pipeline import Pipeline, SampleRequest


@pytest.fixture
def pipe(fake_denoiser) -> Pipeline:
    return Pipeline(fake_denoiser)


def test_pipeline_attributes(pipe, fake_denoiser):
    assert pipe.card is fake_denoiser.card and pipe.denoiser is fake_denoiser
    assert pipe.schedule.num_timesteps == 100 and pipe.schedule.t_max == 99


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "dpm++"])
def test_same_seed_same_output_different_seed_different(pipe, sampler):
    request = SampleRequest(n=4, sampler=sampler, steps=8, seed=3, eta=0.3)
    a = pipe.sample(request)
    b = pipe.sample(request)
    c = pipe.sample(SampleRequest(n=4, sampler=sampler, steps=8, seed=4, eta=0.3))
    assert a.shape == (4, 3, 8, 8) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    # seed 4's rows are seed 3's rows shifted by one (seeds default to seed .. seed + n - 1)
    np.testing.assert_array_equal(a[1:], c[:3])


def test_row_equals_the_same_sprite_sampled_alone(pipe):
    context = pipe.context_from_spec("hero=0.5,food=0.5", 3)
    batch = pipe.sample(SampleRequest(n=3, context=context, sampler="ddpm", steps=10, seeds=[7, 8, 9],
                                      guidance=2.0))
    alone = pipe.sample(SampleRequest(n=1, context=context[:1], sampler="ddpm", steps=10, seeds=[8],
                                      guidance=2.0))
    np.testing.assert_array_equal(batch[1:2], alone)


def test_x_T_comes_from_the_seeded_noise_rows(pipe):
    """With 1 step of DDIM from alpha_bar_T the output is a known function of x_T: check x_T's seeds."""
    out = pipe.sample(SampleRequest(n=2, sampler="ddim", steps=1, seeds=[5, 6], clip=None))
    x_t = Noise([5, 6]).noise((3, 8, 8))
    ab = pipe.schedule.alpha_bar[99]
    eps = pipe.denoiser(x_t, np.full((2,), 99.0, np.float32), np.zeros((2, 5), np.float32))
    x0 = (x_t - np.sqrt(1 - ab) * eps) / np.sqrt(ab)
    np.testing.assert_allclose(out, x0, rtol=1e-5, atol=1e-5)
    assert np.abs(x0).max() > 1.0  # so the default (clip to the value range) must differ:
    clipped = pipe.sample(SampleRequest(n=2, sampler="ddim", steps=1, seeds=[5, 6]))
    np.testing.assert_allclose(clipped, np.clip(x0, -1, 1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("source, expected", [("difftool", 1.0), ("course", None), ("explainingai", None)])
def test_auto_clip_depends_on_model_source(fake_card, fake_denoiser_cls, source, expected):
    card = dataclasses.replace(fake_card, source=source)
    p = Pipeline(fake_denoiser_cls(card))
    assert p.clip_value(SampleRequest()) == expected
    assert p.clip_value(SampleRequest(clip=2.5)) == 2.5


def test_sample_callback_and_cancel(pipe):
    seen = []
    pipe.sample(SampleRequest(n=2, steps=5), callback=lambda s: seen.append(s.index))
    assert seen == [0, 1, 2, 3, 4]

    def stop(step):
        raise Cancelled

    with pytest.raises(Cancelled):
        pipe.sample(SampleRequest(n=2, steps=5), callback=stop)


def test_sample_request_errors(pipe):
    with pytest.raises(DifftoolError, match="seeds"):
        pipe.sample(SampleRequest(n=2, seeds=[1]))
    with pytest.raises(DifftoolError, match="shape"):
        pipe.sample(SampleRequest(n=2, context=np.zeros((2, 3), np.float32)))
    with pytest.raises(DifftoolError, match="unknown sampler"):
        pipe.sample(SampleRequest(n=2, sampler="heun"))
    with pytest.raises(DifftoolError, match="between 1 and 100"):
        pipe.sample(SampleRequest(n=2, steps=101))
    with pytest.raises(DifftoolError, match="spacing"):
        pipe.sample(SampleRequest(n=2, spacing="karras"))


def test_context_from_spec(pipe):
    np.testing.assert_array_equal(pipe.context_from_spec("hero", 2), [[1, 0, 0, 0, 0]] * 2)
    np.testing.assert_array_equal(pipe.context_from_spec("2", 1), [[0, 0, 1, 0, 0]])
    mix = pipe.context_from_spec("hero=0.5, food=0.5", 3)
    assert mix.shape == (3, 5) and mix.dtype == np.float32
    np.testing.assert_array_equal(mix, [[0.5, 0, 0.5, 0, 0]] * 3)
    np.testing.assert_array_equal(pipe.context_from_spec("item=-1.5,monster=2", 1), [[0, 2, 0, 0, -1.5]])
    np.testing.assert_array_equal(pipe.context_from_spec("hero,monster", 1), [[1, 1, 0, 0, 0]])
    for empty in ("", "none", "  None "):
        np.testing.assert_array_equal(pipe.context_from_spec(empty, 2), np.zeros((2, 5)))


def test_context_from_spec_errors(pipe, fake_card, fake_denoiser_cls):
    with pytest.raises(DifftoolError, match="hero, monster, food, weapon, item"):
        pipe.context_from_spec("dragon", 1)
    with pytest.raises(DifftoolError, match="bad weight"):
        pipe.context_from_spec("hero=lots", 1)
    with pytest.raises(DifftoolError, match="empty class"):
        pipe.context_from_spec("hero=1,,food=1", 1)
    import dataclasses

    card = dataclasses.replace(fake_card, model=dataclasses.replace(fake_card.model, num_classes=0),
                               class_names=())
    uncond = Pipeline(fake_denoiser_cls(card))
    assert uncond.context_from_spec("", 3).shape == (3, 0)
    with pytest.raises(DifftoolError, match="unconditional"):
        uncond.context_from_spec("hero", 1)


def test_contexts_per_class(pipe):
    context, labels = pipe.contexts_per_class(2)
    assert context.shape == (10, 5) and context.dtype == np.float32
    np.testing.assert_array_equal(labels, [0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    np.testing.assert_array_equal(context.argmax(1), labels)
    np.testing.assert_array_equal(context.sum(1), np.ones(10))


def test_to_uint8_maps_and_clips():
    x = np.array([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0], np.float32).reshape(1, 1, 2, 3)
    out = to_uint8(x)
    assert out.shape == (1, 2, 3, 1) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, :, :, 0], [[0, 0, 128], [191, 255, 255]])
    np.testing.assert_array_equal(to_uint8(np.full((1, 3, 1, 1), 0.5), value_range=(0, 1))[0, 0, 0], [128] * 3)
    with pytest.raises(DifftoolError):
        to_uint8(np.zeros((3, 4, 4)))


def test_grid_layout():
    images = np.full((5, 2, 3, 3), 200, np.uint8)
    images[4] = 100
    g = grid(images, nrow=2)
    assert g.shape == (3 * 3 + 1, 2 * 4 + 1, 3)  # 3 rows, 2 columns, 1-px gutters
    assert (g[0] == 0).all() and (g[:, 0] == 0).all()  # outer gutters are black
    assert (g[1:3, 1:4] == 200).all() and (g[7:9, 1:4] == 100).all()
    assert (g[7:9, 5:8] == 0).all()  # the empty sixth slot stays black


def test_save_png_round_trip_and_atomic(tmp_path):
    pil = pytest.importorskip("PIL.Image")
    images = to_uint8(np.linspace(-1, 1, 4 * 3 * 8 * 8, dtype=np.float32).reshape(4, 3, 8, 8))
    sheet = grid(images, nrow=2)
    path = tmp_path / "sheet.png"
    save_png(path, sheet, scale=3)
    with pil.open(path) as im:
        assert im.size == (sheet.shape[1] * 3, sheet.shape[0] * 3) and im.mode == "RGB"
        decoded = np.asarray(im)
    np.testing.assert_array_equal(decoded[::3, ::3], sheet)  # NEAREST upscaling, lossless
    assert os.listdir(tmp_path) == ["sheet.png"]  # no temp file left behind


def test_failed_save_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    pil = pytest.importorskip("PIL.Image")
    path = tmp_path / "sheet.png"
    path.write_bytes(b"old")

    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(pil.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_png(path, np.zeros((4, 4, 3), np.uint8))
    assert path.read_bytes() == b"old"  # never half-written
    assert os.listdir(tmp_path) == ["sheet.png"]
    with pytest.raises(DifftoolError, match="uint8"):
        save_png(tmp_path / "f.png", np.zeros((4, 4, 3), np.float32))


def test_save_gif(tmp_path):
    pil = pytest.importorskip("PIL.Image")
    frames = [np.full((4, 5, 3), v, np.uint8) for v in (0, 128, 255)]
    path = tmp_path / "anim.gif"
    save_gif(path, frames, duration_ms=100, scale=2)
    with pil.open(path) as im:
        assert im.size == (10, 8) and im.n_frames == 3
    assert os.listdir(tmp_path) == ["anim.gif"]
