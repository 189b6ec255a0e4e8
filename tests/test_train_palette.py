"""Training additions for pixel art: the learned palette in the card and min-SNR-gamma loss weighting."""

from __future__ import annotations

import dataclasses

import pytest

torch = pytest.importorskip("torch", reason="training needs torch")

from _paths import requires_shared, shared_path  # noqa: E402
from difftool.errors import DifftoolError  # noqa: E402
from difftool.train.loop import TrainConfig, build_card, loss_weights, train  # noqa: E402


def test_min_snr_weights_closed_form():
    ab = torch.tensor([0.5, 5 / 6, 0.99, 0.01])  # SNR 1, 5, 99, 1/99
    w = loss_weights(ab, "min_snr", gamma=5.0)
    torch.testing.assert_close(w, torch.tensor([1.0, 1.0, 5 / 99, 1.0]))
    assert torch.equal(loss_weights(ab, "none"), torch.ones(4))
    with pytest.raises(DifftoolError, match="loss-weight"):
        loss_weights(ab, "p2")


def test_min_snr_training_runs_and_is_recorded(tmp_path):
    from difftool.models.checkpoint import load

    cfg = TrainConfig(dataset="digits", model="tiny", max_steps=3, batch_size=8, warmup_steps=1, sample_every=0,
                      save_every=3, threads=1, device="cpu", out=str(tmp_path / "run"), loss_weight="min_snr")
    card = load(train(cfg)).card
    assert card.training["loss_weight"] == "min_snr" and card.palette == ()  # digits: no palette


@requires_shared("dawnlike")
def test_sprite_cards_carry_the_data_palette():
    from difftool.train.data import load_dataset

    ds = load_dataset("sprites", shared_path("dawnlike"))
    card = build_card(dataclasses.replace(TrainConfig(), model="sprite"), ds)
    assert len(card.palette) == 17 and card.palette[0] == "#000000" and "#dfefd7" in card.palette


def test_init_fine_tunes_from_a_checkpoint(tmp_path):
    from difftool.models.checkpoint import load
    from difftool.train.loop import weights_digest

    base = TrainConfig(dataset="digits", model="tiny", max_steps=2, batch_size=8, warmup_steps=1, sample_every=0,
                       save_every=2, threads=1, device="cpu", out=str(tmp_path / "a"))
    first = train(base)
    zero = dataclasses.replace(base, out=str(tmp_path / "b"), init=str(first), max_steps=1, lr=0.0)
    # lr 0 and EMA decay 0 during warm-up: the fine-tuned weights are exactly the initial ones
    assert weights_digest(load(train(zero)).module) == weights_digest(load(first).module)
    other = dataclasses.replace(base, out=str(tmp_path / "c"), model="", dataset="digits", init=str(first))
    assert load(train(other)).card.training["init"] == str(first)
