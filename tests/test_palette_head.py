"""The palette head (models.palette_head): the U-Net's clean-image estimate as a mixture of palette colours,
returned as eps; trained with the eps loss (``difftool train --head palette``), exported and sampled unchanged."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the palette head is a PyTorch module")

from difftool.config import ModelCard, ScheduleConfig  # noqa: E402
from difftool.errors import DifftoolError  # noqa: E402
from difftool.models import build  # noqa: E402
from difftool.models.presets import tiny  # noqa: E402
from difftool.runtime.schedules import make_schedule  # noqa: E402

COLORS = ("#000000", "#ffffff", "#d34549", "#597dcf")
SCHEDULE = ScheduleConfig(kind="cosine", num_timesteps=1000)


def _model(palette=COLORS, schedule=SCHEDULE):
    torch.manual_seed(0)
    return build(dataclasses.replace(tiny(channels=3, size=16, num_classes=2), palette=palette), schedule).eval()


def _x0_from_eps(x, eps, t, schedule=SCHEDULE):
    ab = make_schedule(schedule).alpha_bar[np.asarray(t)].reshape(-1, 1, 1, 1)
    return (x - np.sqrt(1 - ab) * eps) / np.sqrt(ab)


def test_eps_is_the_palette_mixture_seen_through_the_schedule():
    model = _model()
    x, t, ctx = torch.randn(3, 3, 16, 16), torch.tensor([0.0, 40.0, 500.0]), torch.eye(2)[[0, 1, 0]]
    with torch.no_grad():
        eps = model(x, t, ctx)
        eps_net, logits = model(x, t, ctx, logits=True)
        mixture = model.head.x0(logits).numpy()
    assert logits.shape == (3, len(COLORS), 16, 16) and eps.shape == eps_net.shape == x.shape
    np.testing.assert_allclose(_x0_from_eps(x.numpy(), eps.numpy(), [0, 40, 500]), mixture, atol=2e-5)
    colors = model.head.colors.numpy()  # every mixture lies in the palette's convex hull
    assert mixture.min() >= colors.min() - 1e-6 and mixture.max() <= colors.max() + 1e-6
    assert not np.allclose(eps.numpy(), eps_net.numpy(), atol=1e-3)  # the head changes what is returned


def test_sure_head_snaps_the_eps_estimate_broad_head_follows_the_colour_logits():
    """The x0 every sampler derives from the returned eps is a palette colour exactly where the head is sure:
    at a small colour scale tau the colour nearest the conv's eps estimate of x0 wins; at a broad one the conv's
    colour logits decide."""
    model = _model()
    head, schedule = model.head, make_schedule(SCHEDULE)
    idx = torch.randint(0, len(COLORS), (2, 16, 16), generator=torch.Generator().manual_seed(0))
    image = head.colors[idx].permute(0, 3, 1, 2)
    with torch.no_grad():
        model.conv_out.weight.zero_()  # eps estimate 0: x0_eps = x / sqrt(ab)
        model.conv_out.bias.zero_()
        model.head.conv.bias.copy_(torch.tensor([0.0, 0.0, 30.0, 0.0]))  # the colour logits say colour 2
        for t, log_tau, want in ((5, math.log(0.05), image),
                                 (999, math.log(100.0), head.colors[2].view(1, 3, 1, 1).expand_as(image))):
            head.tau.bias.fill_(log_tau)
            ab = float(schedule.alpha_bar[t])
            x = ab ** 0.5 * image + (1 - ab) ** 0.5 * torch.randn(image.shape)
            eps = model(x, torch.full((2,), float(t)), torch.zeros(2, 2)).numpy()
            np.testing.assert_allclose(_x0_from_eps(x.numpy(), eps, [t, t]), want.numpy(), atol=2e-3)


def test_fraction_time_input_indexes_the_same_schedule_row():
    frac = dataclasses.replace(SCHEDULE, time_input="fraction")
    head = _model(schedule=frac).head
    assert head.index(torch.tensor([0.0, 0.25, 0.999])).tolist() == [0, 250, 999]
    assert _model().head.index(torch.tensor([0.0, 250.7, 5000.0])).tolist() == [0, 250, 999]


def test_needs_the_schedule_and_valid_colours():
    cfg = dataclasses.replace(tiny(channels=3, size=16), palette=COLORS)
    with pytest.raises(DifftoolError, match="schedule"):
        build(cfg)
    card = ModelCard(model=cfg, schedule=SCHEDULE)
    assert ModelCard.from_json(card.to_json()).model.palette == COLORS  # the head's colours round-trip
    bad = card.to_dict()
    bad["model"]["palette"] = ["#00000", "#zzzzzz"]
    with pytest.raises(DifftoolError, match=r"model.palette\[0\] must be a '#rrggbb' colour"):
        ModelCard.from_dict(bad)


# -- training -----------------------------------------------------------------------------------------------


def _sprite_npy(folder, n=48, seed=0):
    """Tiny RGB sprites on a 4-colour palette (course .npy layout): a coloured square on black per class."""
    rng = np.random.default_rng(seed)
    rgb = np.array([[int(h[i:i + 2], 16) for i in (1, 3, 5)] for h in COLORS], np.uint8)
    sprites = np.zeros((n, 16, 16, 3), np.uint8)
    labels = np.zeros((n, 5), np.float32)
    for i in range(n):
        k = i % 2
        y, x = rng.integers(2, 8, size=2)
        sprites[i, y:y + 6, x:x + 6] = rgb[1 + k]
        sprites[i, y + 2:y + 4, x + 2:x + 4] = rgb[3]
        labels[i, k] = 1
    np.save(folder / "sprites_1788_16x16.npy", sprites)
    np.save(folder / "sprite_labels_nc_1788_16x16.npy", labels)
    return folder / "sprites_1788_16x16.npy"


def _cfg(tmp_path, src, **kw):
    from difftool.train.loop import TrainConfig

    kw.setdefault("data", (str(src),))
    base = dict(dataset="sprites", model="tiny", max_steps=30, batch_size=16, warmup_steps=2,
                lr=3e-3, sample_every=0, save_every=30, log_every=5, threads=1, device="cpu", seed=0)
    return TrainConfig(**{**base, **kw})


def test_palette_head_training_learns_the_colours_and_records_the_head(tmp_path):
    import json

    from difftool.models.checkpoint import load
    from difftool.train.loop import train

    data = _sprite_npy(tmp_path)
    path = train(_cfg(tmp_path, data, head="palette", out=str(tmp_path / "run")))
    card = load(path).card
    assert card.model.palette == card.palette and set(card.palette) == set(COLORS)
    assert card.training["head"] == "palette"
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert losses[-1] < 0.5 * losses[0], losses


def test_palette_head_starts_from_an_eps_model_of_the_same_preset(tmp_path):
    from difftool.models.checkpoint import load
    from difftool.train.loop import train

    data = _sprite_npy(tmp_path)
    eps_path = train(_cfg(tmp_path, data, out=str(tmp_path / "eps"), max_steps=2, save_every=2))
    fresh = _cfg(tmp_path, data, head="palette", init=str(eps_path), out=str(tmp_path / "pal"), max_steps=1,
                 save_every=1, lr=0.0)
    body, head = load(eps_path).module.state_dict(), load(train(fresh)).module.state_dict()
    assert all(torch.equal(body[k].float(), head[k].float()) for k in body)  # lr 0: the eps model is kept
    assert sorted(set(head) - set(body)) == ["head.conv.bias", "head.conv.weight", "head.tau.bias", "head.tau.weight"]
    assert head["head.conv.weight"].shape[0] == len(COLORS) and not head["head.conv.weight"].any()


def test_train_only_head_keeps_the_eps_model_and_trains_the_head(tmp_path):
    from difftool.models.checkpoint import load
    from difftool.train.loop import train

    data = _sprite_npy(tmp_path)
    eps_path = train(_cfg(tmp_path, data, out=str(tmp_path / "eps"), max_steps=2, save_every=2))
    run = _cfg(tmp_path, data, head="palette", init=str(eps_path), out=str(tmp_path / "pal"), max_steps=5,
               save_every=5, train_only="head")
    body, trained = load(eps_path).module.state_dict(), load(train(run)).module.state_dict()
    assert all(torch.equal(body[k].float(), trained[k].float()) for k in body)
    assert trained["head.conv.weight"].any() and float(trained["head.tau.bias"]) != pytest.approx(math.log(0.05))
    with pytest.raises(DifftoolError, match="needs --head palette and --init"):
        train(dataclasses.replace(run, init="", out=str(tmp_path / "x")))


def test_palette_head_needs_a_unet_and_sprite_colours(tmp_path):
    from difftool.train.loop import train

    data = _sprite_npy(tmp_path)
    with pytest.raises(DifftoolError, match="U-Net preset"):
        train(_cfg(tmp_path, data, head="palette", model="course", out=str(tmp_path / "a")))
    with pytest.raises(DifftoolError, match="sprite data"):
        train(_cfg(tmp_path, data, dataset="digits", head="palette", out=str(tmp_path / "b"), data=()))
    with pytest.raises(DifftoolError, match="unknown --head"):
        train(_cfg(tmp_path, data, head="v", out=str(tmp_path / "c")))


def test_exported_palette_model_samples_like_pytorch(tmp_path):
    """ONNX export (Floor/Gather/Softmax/MatMul in the graph) and the generator keep the head's pixels."""
    pytest.importorskip("onnxruntime")
    from difftool.export.driver import run_export
    from difftool.export.generator import GeneratorSettings
    from difftool.models.checkpoint import load as load_checkpoint
    from difftool.models.checkpoint import save
    from difftool.models.denoiser import TorchDenoiser
    from difftool.runtime.loader import load
    from difftool.runtime.pipeline import Pipeline, SampleRequest

    model = _model()
    card = ModelCard(model=model.config, schedule=SCHEDULE, class_names=("a", "b"), palette=COLORS)
    ckpt, onnx_path, gen_path = tmp_path / "m.safetensors", tmp_path / "m.onnx", tmp_path / "gen.onnx"
    save(ckpt, model, card)
    run_export(ckpt, out=onnx_path)
    ctx = np.eye(2, dtype=np.float32)[[0, 1, 0]]
    req = SampleRequest(n=3, context=ctx, sampler="ddim", steps=8, guidance=2.0, seed=1)
    ref = Pipeline(TorchDenoiser(load_checkpoint(ckpt).module, card)).sample(req)
    got = load(onnx_path, threads=1).sample(req)
    np.testing.assert_allclose(got, ref, atol=2e-4)
    summary = run_export(onnx_path, out=gen_path, generator=GeneratorSettings(steps=8, guidance=2.0))
    assert gen_path.is_file() and summary
    from difftool.export.int8 import end_convs

    assert len(end_convs(onnx_path)) == 3  # int8 keeps float: the first conv, the eps conv and the colour conv
