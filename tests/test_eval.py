"""Tests for difftool.eval: metrics in closed form, the shipped sprite judge, and evaluate() end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from _paths import requires_shared, shared_path
from difftool.config import ModelCard, ScheduleConfig, UnetConfig
from difftool.errors import DifftoolError
from difftool.eval import metrics
from difftool.eval.metrics import (
    conditional_accuracy,
    duplicate_rate,
    feature_stats,
    frechet_distance,
    frechet_distance_from_stats,
    mean_pairwise_distance,
    nearest_train_rms,
)
from difftool.runtime.denoiser import Step

SPRITES = [shared_path("dawnlike"), shared_path("kenney-tiny-dungeon")]
needs_sprites = requires_shared("dawnlike")
CLASSES = ("hero", "creature", "food", "weapon", "item")


# -- metrics -----------------------------------------------------------------------------------------------
def test_frechet_identical_gaussians_is_zero():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 16)) @ rng.normal(size=(16, 16))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_frechet_one_dimensional_closed_form():
    # N(m1, s1^2) vs N(m2, s2^2): (m1 - m2)^2 + (s1 - s2)^2
    got = frechet_distance_from_stats(np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[9.0]]))
    assert got == pytest.approx(9.0 + 1.0, rel=1e-9)
    rng = np.random.default_rng(1)
    a, b = rng.normal(1.0, 2.0, size=(200_000, 1)), rng.normal(-2.0, 3.0, size=(200_000, 1))
    assert frechet_distance(a, b) == pytest.approx(10.0, rel=0.02)


def test_frechet_shift_gives_squared_norm():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(300, 8)) @ rng.normal(size=(8, 8))
    mu = rng.normal(size=8)
    assert frechet_distance(a, a + mu) == pytest.approx(float(mu @ mu), rel=1e-6, abs=1e-6)


def test_frechet_eigh_fallback_matches_scipy(monkeypatch):
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(400, 12)), rng.normal(0.5, 1.5, size=(400, 12)) @ rng.normal(size=(12, 12))
    with_scipy = frechet_distance(a, b)
    monkeypatch.setitem(sys.modules, "scipy", None)  # import scipy -> ImportError: the eigh path
    assert frechet_distance(a, b) == pytest.approx(with_scipy, rel=1e-6)


def test_weighted_stats_equal_unweighted_for_equal_weights():
    rng = np.random.default_rng(4)
    f = rng.normal(size=(50, 5))
    mu, cov = feature_stats(f)
    mu_w, cov_w = feature_stats(f, np.full(50, 3.0))
    np.testing.assert_allclose(mu_w, mu)
    np.testing.assert_allclose(cov_w, cov)


def test_mean_pairwise_distance():
    a = np.zeros((1, 3, 2, 2), np.float32)
    b = np.ones((1, 3, 2, 2), np.float32)
    assert mean_pairwise_distance(np.concatenate([a, b])) == pytest.approx(np.sqrt(12.0))
    assert mean_pairwise_distance(np.concatenate([a, a, a])) == pytest.approx(0.0, abs=1e-6)
    assert np.isnan(mean_pairwise_distance(a))


def test_duplicate_rate_detects_copies_and_flips_not_noise():
    rng = np.random.default_rng(5)
    train = rng.uniform(-1, 1, size=(40, 3, 16, 16)).astype(np.float32)
    exact = train[3:4]
    flipped = train[7:8, :, :, ::-1]
    nudged = train[9:10] + rng.normal(0, 0.01, size=(1, 3, 16, 16)).astype(np.float32)
    noise = rng.uniform(-1, 1, size=(2, 3, 16, 16)).astype(np.float32)
    samples = np.concatenate([exact, flipped, nudged, noise])
    rms = nearest_train_rms(samples, train)
    assert rms[:2] == pytest.approx([0.0, 0.0], abs=1e-4)
    assert rms[2] == pytest.approx(0.01, rel=0.2)
    assert (rms[3:] > 0.5).all()
    assert duplicate_rate(samples, train) == pytest.approx(3 / 5)
    assert duplicate_rate(samples[3:], train) == 0.0


def test_conditional_accuracy_overall_and_per_class():
    probs = np.eye(3)[[0, 0, 1, 2, 2, 1]]
    labels = np.array([0, 1, 1, 2, 2, 2])
    acc = conditional_accuracy(probs, labels, ["a", "b", "c"])
    assert acc.overall == pytest.approx(4 / 6)
    assert acc.per_class == pytest.approx({"a": 1.0, "b": 0.5, "c": 2 / 3})
    assert acc.counts == {"a": 1, "b": 2, "c": 3}
    assert conditional_accuracy(probs[:1], labels[:1], ["a", "b", "c"]).per_class["b"] is None


# -- the shipped judge ------------------------------------------------------------------------------------
def test_judge_loads_without_torch():
    code = (
        "import sys, numpy as np\n"
        "from difftool.eval.judge import Judge\n"
        "j = Judge.load()\n"
        "for b in (1, 7):\n"
        "    p, f = j.predict(np.zeros((b, 3, 16, 16), np.float32))\n"
        "    assert p.shape == (b, 5) and f.shape == (b, 128), (p.shape, f.shape)\n"
        "    assert np.allclose(p.sum(1), 1, atol=1e-5)\n"
        "assert 'torch' not in sys.modules\n"
        "print(list(j.class_names), j.license)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("]")[0] == "['hero', 'creature', 'food', 'weapon', 'item'"
    assert "CC-BY-SA-3.0" in out.stdout


def test_judge_asset_metadata_and_size():
    import onnx

    from difftool.eval.judge import DEFAULT_ASSET

    assert DEFAULT_ASSET.stat().st_size < 1_000_000
    model = onnx.load(str(DEFAULT_ASSET))
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["class_names"]) == list(CLASSES)
    assert props["license"] == "CC-BY-SA-3.0"
    assert (
        "DragonDePlatino" in props["credit"]
        and "DawnBringer" in props["credit"]
        and "Kenney" in props["credit"]
    )
    acc = json.loads(props["heldout_accuracy"])
    assert set(acc) == {*CLASSES, "overall", "balanced"}
    assert [i.name for i in model.graph.input] == ["x"]
    assert [o.name for o in model.graph.output] == ["logits", "features"]
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)


def test_judge_rejects_wrong_shapes():
    from difftool.eval.judge import Judge

    with pytest.raises(DifftoolError, match="16, 16"):
        Judge.load().predict(np.zeros((2, 1, 28, 28), np.float32))
    with pytest.raises(DifftoolError, match="does not exist"):
        Judge.load("/nonexistent/judge.onnx")


@pytest.fixture(scope="module")
def tiles():
    from difftool.eval.data import load_sprite_tiles

    return load_sprite_tiles(SPRITES)


@pytest.fixture(scope="module")
def judge():
    from difftool.eval.judge import Judge

    return Judge.load()


@needs_sprites
def test_split_keeps_animation_frames_together(tiles):
    from difftool.eval.data import split_by_identity

    held = split_by_identity(tiles.identity, tiles.labels, 0.2, 0)
    assert not set(tiles.identity[held]) & set(tiles.identity[~held])
    # both frames of a character share an identity: 17 frame pairs, so many identities have 2 tiles
    _, counts = np.unique(tiles.identity, return_counts=True)
    assert counts.max() == 2 and (counts == 2).sum() == (1264 + 154) // 2 + 16
    for c in range(5):  # every class on both sides, ~20% of its tiles held out
        share = held[tiles.labels == c].mean()
        assert 0.1 < share < 0.3


@needs_sprites
def test_judge_accuracy_on_its_heldout_split(tiles, judge):
    from difftool.eval.data import split_by_identity

    train_cfg = judge.metadata["training"]
    held = split_by_identity(tiles.identity, tiles.labels, train_cfg["holdout"], train_cfg["seed"])
    test = tiles.subset(held)
    assert test.class_counts() == judge.metadata["heldout_counts"]  # the same split the asset reports
    probs, feats = judge.predict(test.images)
    acc = conditional_accuracy(probs, test.labels, judge.class_names)
    # the shipped judge scores 89.3% overall / 83.2% class-balanced on the 429 held-out tiles
    assert acc.overall >= 0.87, acc
    assert np.mean(list(acc.per_class.values())) >= 0.80, acc
    assert acc.overall == pytest.approx(judge.heldout_accuracy["overall"], abs=0.005)  # ONNX == torch
    assert np.isfinite(feats).all()


# -- evaluate() end to end --------------------------------------------------------------------------------
def _card(num_classes: int = 5, schedule: ScheduleConfig | None = None) -> ModelCard:
    return ModelCard(
        model=UnetConfig(im_channels=3, im_size=16, num_classes=num_classes),
        schedule=schedule or ScheduleConfig(kind="cosine", num_timesteps=100),
        class_names=CLASSES[:num_classes],
    )


class RealTilePipeline:
    """A pipeline whose 'samples' are real tiles of the class each one-hot context row asks for."""

    def __init__(self, tiles, noise: bool = False):
        self.card = _card()
        self.tiles = tiles
        self.noise = noise
        self.returned: list[np.ndarray] = []
        self.requests = []

    def sample(self, request, callback=None):
        self.requests.append(request)
        out = np.empty((request.n, 3, 16, 16), np.float32)
        for i, (s, row) in enumerate(zip(request.seeds, request.context, strict=True)):
            rng = np.random.default_rng(s)
            if self.noise:
                out[i] = rng.uniform(-1, 1, size=(3, 16, 16))
            else:
                pool = np.flatnonzero(self.tiles.labels == int(np.argmax(row)))
                out[i] = self.tiles.images[rng.choice(pool)]
        if callback is not None:
            callback(Step(0, 1, 0, out, out))
        self.returned.append(out)
        return out


CONFIGS = [
    {"sampler": "ddim", "steps": 5, "guidance": 2.0},
    {"sampler": "ddpm", "steps": None, "guidance": 1.0},
]


@needs_sprites
def test_evaluate_real_tiles_scores_like_the_judge(tiles, judge):
    from difftool.eval.report import evaluate, render_table

    pipe = RealTilePipeline(tiles)
    events = []
    report = evaluate(
        pipe, judge, tiles, configs=CONFIGS, per_class=32, batch_size=50, progress=events.append
    )
    assert [r.steps for r in report.rows] == [5, 100]  # steps=None: every timestep
    assert pipe.requests[0].seeds == list(range(50)) and pipe.requests[-1].seeds == list(range(150, 160))
    assert events[-1].fraction == pytest.approx(1.0) and events[0].configs == 2
    samples = np.concatenate(pipe.returned[: len(pipe.returned) // 2])
    probs, _ = judge.predict(samples)
    direct = conditional_accuracy(probs, np.repeat(np.arange(5), 32)).overall
    for row in report.rows:
        assert row.n == 160
        assert row.accuracy == pytest.approx(direct)
        assert row.accuracy >= 0.9
        assert set(row.per_class_accuracy) == set(CLASSES)
        assert row.duplicate_rate == 1.0  # every sample is a real tile
        assert row.nearest_rms_median == pytest.approx(0.0, abs=1e-5)
        assert np.isfinite(row.fid) and row.fid < 3 * report.fid_floor + 1.0
        assert row.diversity == pytest.approx(report.diversity_real, rel=0.25)
    data = json.loads(report.to_json())
    assert data["rows"][0]["label"] == "ddim 5 steps, guidance 2" and data["unavailable"] == {}
    assert data["real"]["n"] == len(tiles) and data["judge"]["heldout_accuracy"]["overall"] > 0.87

    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(render_table(report))
    text = console.export_text()
    assert "FID" in text and "creature" in text and "FID floor" in text

    noise = evaluate(RealTilePipeline(tiles, noise=True), judge, tiles, configs=CONFIGS[:1], per_class=32)
    row = noise.rows[0]
    assert row.accuracy < 0.5
    assert row.fid > 10 * report.rows[0].fid and row.fid > 10 * report.fid_floor
    assert row.duplicate_rate == 0.0


@needs_sprites
def test_evaluate_through_the_real_pipeline(tiles, judge):
    """A numpy oracle denoiser: DDIM (eta 0) then lands exactly on a real tile of the asked class."""
    from difftool.eval.report import evaluate
    from difftool.runtime.pipeline import Pipeline
    from difftool.runtime.schedules import make_schedule

    class Oracle:
        name = "oracle"

        def __init__(self):
            self.card = _card()
            self.schedule = make_schedule(self.card.schedule)
            self.flat = tiles.images.reshape(len(tiles), -1)

        def __call__(self, x, t, context):
            ab = self.schedule.ab(int(t[0]))
            flat = x.reshape(len(x), -1) / np.sqrt(ab)
            eps = np.empty_like(x)
            for i in range(len(x)):
                pool = np.flatnonzero(tiles.labels == int(np.argmax(context[i])))
                target = pool[np.argmin(((self.flat[pool] - flat[i]) ** 2).sum(1))]
                eps[i] = (x[i] - np.sqrt(ab) * tiles.images[target]) / np.sqrt(1 - ab)
            return eps

    report = evaluate(
        Pipeline(Oracle()),
        judge,
        tiles,
        configs=[{"sampler": "ddim", "steps": 8, "guidance": 1}],
        per_class=8,
    )
    row = report.rows[0]
    assert row.duplicate_rate == 1.0 and row.nearest_rms_median < 1e-3
    assert row.accuracy >= 0.75
    assert report.model["backend"] == "oracle"


def test_evaluate_without_real_data_still_scores_accuracy(judge, tmp_path):
    from difftool.eval.report import evaluate, render_table

    class Flat:
        card = _card()

        def sample(self, request, callback=None):
            return np.full((request.n, 3, 16, 16), -1.0, np.float32)

    report = evaluate(Flat(), judge, data=[tmp_path / "missing"], configs=CONFIGS[:1], per_class=4)
    row = report.rows[0]
    assert row.fid is None and row.duplicate_rate is None and row.accuracy is not None
    assert "does not exist" in report.unavailable["fid"]
    assert report.fid_floor is None and report.real is None
    assert json.loads(report.to_json())["rows"][0]["fid"] is None
    render_table(report)


def test_evaluate_rows_pass_the_ddpm_variance(judge, tmp_path):
    """An eval row may name DDPM's variance (the course's beta or the posterior); it reaches the sampler."""
    from difftool.eval.report import evaluate, render_table

    class Flat:
        card = _card()
        requests: list = []

        def sample(self, request, callback=None):
            self.requests.append(request)
            return np.full((request.n, 3, 16, 16), -1.0, np.float32)

    configs = [{"sampler": "ddpm", "steps": None, "guidance": 1.0, "variance": v} for v in ("beta", "posterior")]
    pipe = Flat()
    report = evaluate(pipe, judge, data=[tmp_path / "missing"], configs=configs + [CONFIGS[1]], per_class=2)
    assert [r.variance for r in report.rows] == ["beta", "posterior", None]  # None: the model's default
    assert [r.variance for r in pipe.requests] == ["beta", "posterior", None]
    assert report.rows[0].label == "ddpm 100 steps, guidance 1, variance beta"
    assert json.loads(report.to_json())["rows"][0]["variance"] == "beta"
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(render_table(report))
    assert "σ²=beta" in console.export_text()
    for bad, why in (({"variance": "large"}, "unknown ddpm variance 'large'; choose one of: posterior, beta"),
                     ({"sampler": "ddim", "steps": 5, "variance": "beta"}, "ddim takes no variance")):
        with pytest.raises(DifftoolError, match=why):
            evaluate(pipe, judge, data=[tmp_path / "missing"], configs=[{**configs[0], **bad}], per_class=2)


def test_evaluate_rejects_images_the_judge_cannot_score(judge):
    from difftool.eval.report import evaluate

    class Mnist:
        card = ModelCard(model=UnetConfig(), schedule=ScheduleConfig())

        def sample(self, request, callback=None):  # pragma: no cover - never reached
            raise AssertionError

    with pytest.raises(DifftoolError, match="16x16 RGB"):
        evaluate(Mnist(), judge, np.zeros((4, 3, 16, 16), np.float32))


def test_metrics_module_is_torch_free():
    code = "import sys; import difftool.eval.metrics, difftool.eval.report; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
    assert metrics.DUPLICATE_RMS == 0.05
