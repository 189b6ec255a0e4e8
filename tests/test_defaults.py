"""A model's recommended sampling settings (ModelCard.sampling) become the defaults of generate, the demo,
the TUI launcher and eval's "default" rows; explicit choices always win. Torch-free."""

from __future__ import annotations

import numpy as np
import pytest

from difftool.config import ModelCard, ScheduleConfig
from difftool.eval.report import DEFAULT_CONFIGS, _configs
from difftool.generate import build_request
from difftool.models.presets import tiny
from difftool.runtime.pipeline import Pipeline

CLASSES = ("hero", "creature", "food", "weapon", "item")
RECOMMENDED = {"sampler": "ddim", "steps": 30, "eta": 1.0, "guidance": 4.0}


class ZeroDenoiser:
    name = "zero"

    def __init__(self, card):
        self.card = card

    def __call__(self, x, t, context):
        return np.zeros_like(x)


def card(sampling=None) -> ModelCard:
    return ModelCard(model=tiny(channels=3, size=8, num_classes=5), schedule=ScheduleConfig(num_timesteps=100),
                     class_names=CLASSES, sampling=dict(sampling or {}))


def pipe(sampling=None) -> Pipeline:
    return Pipeline(ZeroDenoiser(card(sampling)))


def request(p, **kw):
    args = {"n": 2, "class_name": "hero", "mix": None, "sampler": None, "steps": None, "eta": None,
            "guidance": None, "seed": 0}
    return build_request(p, **{**args, **kw})


def test_generic_defaults_without_recommendations():
    r = request(pipe())
    assert (r.sampler, r.steps, r.eta, r.guidance) == ("ddim", 25, 0.0, 2.0)
    assert request(pipe(), class_name=None).guidance == 1.0  # no context: nothing to guide


def test_recommended_settings_are_the_defaults_and_explicit_choices_win():
    p = pipe(RECOMMENDED)
    r = request(p)
    assert (r.sampler, r.steps, r.eta, r.guidance) == ("ddim", 30, 1.0, 4.0)
    r = request(p, steps=7, eta=0.0, guidance=1.5)
    assert (r.steps, r.eta, r.guidance) == (7, 0.0, 1.5)
    # the recommended eta belongs to DDIM: another sampler gets its own plain defaults
    r = request(p, sampler="dpmpp_2m")
    assert r.eta == 0.0 and r.steps == 30
    assert request(p, sampler="ddpm").steps == 100  # ddpm: every timestep


def test_card_round_trips_sampling_and_old_cards_load():
    c = card(RECOMMENDED)
    back = ModelCard.from_json(c.to_json())
    assert back.sampling == RECOMMENDED and back.recommended("guidance") == 4.0
    data = c.to_dict()
    del data["sampling"]  # a card written before the field existed
    assert ModelCard.from_dict(data).sampling == {}
    with pytest.raises(KeyError):
        c.recommended("colour")


def test_eval_default_rows_use_the_recommendation():
    rows = _configs(DEFAULT_CONFIGS, card(RECOMMENDED))
    assert (rows[0].sampler, rows[0].steps, rows[0].guidance, rows[0].eta) == ("ddim", 30, 4.0, 1.0)
    assert (rows[1].steps, rows[1].guidance, rows[1].eta) == (30, 4.0, 0.0)  # deterministic DDIM, same steps
    # the more-steps criterion's reference rows stay in the table: DDIM-25 and DDIM-50 at the recommendation
    assert {(r.steps, r.guidance, r.eta) for r in rows if r.sampler == "ddim" and r.palette == "none"} >= {
        (25, 4.0, 1.0), (50, 4.0, 1.0)}
    assert rows[-1].sampler == "ddpm" and rows[-1].steps == 100 and rows[-1].guidance == 4.0
    plain = _configs(DEFAULT_CONFIGS, card())
    assert (plain[0].steps, plain[0].guidance, plain[0].eta) == (25, 2.0, 0.0)
    assert len({(r.sampler, r.steps, r.guidance, r.eta, r.palette) for r in plain}) == len(plain)  # DDIM-25 once


def test_tui_launch_passes_the_recommendation(monkeypatch, tmp_path):
    import difftool.tui as tui_mod
    from difftool.tui import launch as launch_mod

    seen = {}
    monkeypatch.setattr("difftool.runtime.artifact.read_card", lambda path: card(RECOMMENDED))
    monkeypatch.setattr(tui_mod, "run_tui", lambda factories, **kw: seen.update(kw))
    monkeypatch.setattr(launch_mod, "backends_for", lambda path, threads: {})
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    launch_mod.launch(model, out_dir=tmp_path)
    assert (seen["sampler"], seen["steps"], seen["eta"], seen["guidance"], seen["mix"]) == ("ddim", 30, 1.0, 4.0,
                                                                                           "hero")
    seen.clear()
    launch_mod.launch(model, out_dir=tmp_path, guidance=1.0)
    assert seen["guidance"] == 1.0
