"""diffusers folders in, ONNX out: the three layouts, parity with diffusers' own forward and its schedulers.

Every folder is written by diffusers itself (``save_pretrained``, ``EMAModel.save_pretrained``) from small
random ``UNet2DModel``s; nothing is downloaded. One model per layout, each with another prediction type:

* ``pipeline``: DDPMPipeline save, class-conditional (``num_class_embeds``), epsilon, linear, clip_sample;
* ``flat``: google/ddpm-* layout (root config.json, ``.bin`` weights, scheduler_config.json), unconditional,
  v_prediction, squaredcos_cap_v2, ``clip_sample=False``, DDIMScheduler, trailing spacing, 16x16;
* ``training``: ``checkpoint-N/{unet,unet_ema}`` of train_unconditional.py with the scheduler in the run
  folder, x0 ("sample") prediction, scaled_linear, fixed_large variance; the EMA weights must be used.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from difftool.errors import DifftoolError  # noqa: E402
from difftool.export.onnx_export import export_onnx  # noqa: E402
from difftool.models.diffusers_io import diffusers_folder, scheduler_info  # noqa: E402
from difftool.runtime.artifact import read_card  # noqa: E402
from difftool.runtime.backends import make_denoiser  # noqa: E402
from difftool.runtime.guidance import guided_eps  # noqa: E402
from difftool.runtime.samplers import ddim, ddpm, dpmpp_2m, dpmpp_2m_sde, get_sampler  # noqa: E402
from difftool.runtime.schedules import make_schedule  # noqa: E402
from difftool.runtime.timesteps import timesteps  # noqa: E402

torch.set_num_threads(1)
FORWARD_TOL = 1e-4  # ONNX vs diffusers' module
SAMPLING_TOL = 1e-3  # difftool runtime (ORT) vs diffusers' scheduler loop, same x_T and noise
BATCH = 2
MEASURED: dict[str, float] = {}  # figures for the report (printed by the last test)


def _unet(seed: int, **cfg):
    torch.manual_seed(seed)
    unet = diffusers.UNet2DModel(**cfg).eval()
    with torch.no_grad():  # untrained U-Nets start near zero output; make them predict something
        for p in unet.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return unet


SMALL = dict(sample_size=8, block_out_channels=(16, 32), norm_num_groups=8, layers_per_block=1,
             attention_head_dim=8, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
             up_block_types=("AttnUpBlock2D", "UpBlock2D"))


def make_pipeline(root):
    unet = _unet(0, **SMALL, num_class_embeds=3)
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=100)  # clip_sample true, epsilon, leading
    diffusers.DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(root)
    (root / "class_names.json").write_text(json.dumps(["cat", "dog", "fox"]))
    return root


def make_flat(root):
    unet = _unet(1, sample_size=16, block_out_channels=(16, 16, 32), norm_num_groups=8, layers_per_block=1,
                 attention_head_dim=8, down_block_types=("ResnetDownsampleBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                 up_block_types=("AttnUpBlock2D", "UpBlock2D", "ResnetUpsampleBlock2D"), in_channels=1,
                 out_channels=1, freq_shift=1, flip_sin_to_cos=False, norm_eps=1e-6)
    unet.save_pretrained(root, safe_serialization=False)  # diffusion_pytorch_model.bin, as google/ddpm-*
    diffusers.DDIMScheduler(num_train_timesteps=200, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction",
                            clip_sample=False, timestep_spacing="trailing").save_pretrained(root)
    (root / "model_index.json").write_text(json.dumps({"_class_name": "DDPMPipeline",
                                                       "scheduler": ["diffusers", "DDIMScheduler"],
                                                       "unet": ["diffusers", "UNet2DModel"]}))
    return root


def make_training(run):
    from diffusers.training_utils import EMAModel

    unet = _unet(2, **SMALL)
    ema = EMAModel(unet.parameters(), model_cls=diffusers.UNet2DModel, model_config=unet.config)
    with torch.no_grad():  # EMA weights differ from the raw ones: the folder must pick unet_ema/
        for p in ema.shadow_params:
            p.mul_(0.9)
    ckpt = run / "checkpoint-5"
    unet.save_pretrained(ckpt / "unet")
    ema.save_pretrained(ckpt / "unet_ema")
    diffusers.DDPMScheduler(num_train_timesteps=100, beta_schedule="scaled_linear", beta_start=0.001, beta_end=0.03,
                            prediction_type="sample", variance_type="fixed_large").save_pretrained(run / "scheduler")
    return ckpt


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("diffusers")
    return {"pipeline": make_pipeline(root / "pipe"), "flat": make_flat(root / "flat"),
            "training": make_training(root / "run")}


@pytest.fixture(scope="module")
def graphs(folders, tmp_path_factory):
    out = tmp_path_factory.mktemp("graphs")
    return {name: export_onnx(path, out / f"{name}.onnx") for name, path in folders.items()}


def reference_unet(folder):
    """diffusers' own module, loaded by diffusers (EMA weights for the training layout)."""
    info = diffusers_folder(folder)
    return diffusers.UNet2DModel.from_pretrained(str(info.unet_dir), low_cpu_mem_usage=False,
                                                 use_safetensors=info.weights.suffix == ".safetensors").eval()


# -- detection and cards ---------------------------------------------------------------------------------


def test_layouts_are_detected(folders):
    got = {name: diffusers_folder(path) for name, path in folders.items()}
    assert {name: f.layout for name, f in got.items()} == {"pipeline": "pipeline", "flat": "flat",
                                                           "training": "training"}
    assert got["training"].unet_dir.name == "unet_ema"
    assert got["training"].scheduler_config == folders["training"].parent / "scheduler" / "scheduler_config.json"
    assert got["flat"].weights.name == "diffusion_pytorch_model.bin"
    assert diffusers_folder(folders["pipeline"] / "unet" / "config.json") is None  # a file is not a folder


def test_cards_read_the_scheduler_configs(folders):
    pipe, flat, train = (read_card(folders[k]) for k in ("pipeline", "flat", "training"))
    assert pipe.source == "diffusers" and pipe.prediction == "epsilon" and pipe.clip_limit == 1.0
    assert pipe.class_names == ("cat", "dog", "fox") and pipe.num_classes == 3 and not pipe.supports_guidance
    assert pipe.schedule.kind == "linear" and pipe.schedule.num_timesteps == 100
    assert pipe.recommended("spacing") == "leading" and pipe.recommended("variance") == "posterior"
    assert flat.prediction == "v_prediction" and flat.clip_limit is None and flat.schedule.kind == "cosine"
    assert flat.image_size == 16 and flat.channels == 1 and not flat.conditional
    assert flat.recommended("sampler") == "ddim" and flat.recommended("spacing") == "trailing"
    assert train.prediction == "sample" and train.schedule.kind == "scaled_linear"
    assert train.recommended("variance") == "beta" and train.schedule.beta_start == 0.001


@pytest.mark.parametrize("kind, name, start, end", [("linear", "linear", 1e-4, 0.02),
                                                     ("scaled_linear", "scaled_linear", 0.00085, 0.012),
                                                     ("cosine", "squaredcos_cap_v2", 1e-4, 0.02)])
def test_schedules_equal_diffusers_alphas_cumprod(kind, name, start, end):
    from difftool.config import ScheduleConfig

    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule=name, beta_start=start, beta_end=end)
    ours = make_schedule(ScheduleConfig(kind=kind, num_timesteps=1000, beta_start=start, beta_end=end))
    # same betas up to diffusers' float32 rounding (a few ulp of torch.linspace) ...
    ulps = np.abs(ours.betas.astype(np.float32).view(np.int32) - ref.betas.numpy().view(np.int32))
    assert ulps.max() <= 4
    # ... and diffusers' float32 alphas_cumprod is exactly the product of its float32-rounded betas
    from_f32_betas = np.cumprod(1.0 - ours.betas.astype(np.float32).astype(np.float64))
    ref_ab = ref.alphas_cumprod.double().numpy()
    assert np.max(np.abs(from_f32_betas / ref_ab - 1)) < 1e-6
    # so ours (float64 betas) differs only by that rounding: 1 - beta near the 0.999 cap loses digits in float32
    assert np.max(np.abs(ours.alpha_bar / ref_ab - 1)) < (2e-5 if kind == "cosine" else 1e-6)


# -- ONNX vs diffusers' forward ----------------------------------------------------------------------------


def _forward_inputs(card, batch, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, card.channels, card.image_size, card.image_size)).astype(np.float32)
    t = rng.integers(0, card.schedule.num_timesteps, size=batch)
    labels = rng.integers(0, max(card.num_classes, 1), size=batch)
    return x, t, labels


@pytest.mark.parametrize("layout", ["pipeline", "flat", "training"])
def test_onnx_matches_diffusers_forward(folders, graphs, layout):
    card = read_card(folders[layout])
    unet = reference_unet(folders[layout])
    den = make_denoiser(graphs[layout].path, backend="ort-cpu", threads=1)
    worst = 0.0
    for batch, seed in ((1, 0), (3, 1), (5, 2)):
        x, t, labels = _forward_inputs(card, batch, seed)
        ctx = np.eye(card.num_classes, dtype=np.float32)[labels] if card.conditional else np.zeros((batch, 0), np.float32)
        with torch.no_grad():
            ref = unet(torch.from_numpy(x), torch.from_numpy(t), class_labels=torch.from_numpy(labels)
                       if card.conditional else None).sample.numpy()
        got = den(x, t.astype(np.float32), ctx)  # per-row timesteps in one batch
        worst = max(worst, float(np.abs(got - ref).max()))
    assert np.abs(ref).max() > 0.1  # a non-trivial output
    assert worst <= FORWARD_TOL
    assert max(graphs[layout].max_abs_err.values()) <= FORWARD_TOL  # the exporter's own check
    MEASURED[f"forward {layout} ({card.prediction})"] = worst


def test_context_mix_blends_class_embeddings(folders, graphs):
    """A mixed context is the blend of the embeddings: half/half equals the mean embedding's forward."""
    card = read_card(folders["pipeline"])
    unet = reference_unet(folders["pipeline"])
    den = make_denoiser(graphs["pipeline"].path, backend="ort-cpu", threads=1)
    x, _, _ = _forward_inputs(card, 1, 7)
    ctx = np.array([[0.5, 0.0, 0.5]], dtype=np.float32)
    emb = unet.class_embedding.weight
    with torch.no_grad():
        unet.class_embedding.weight[3 - 1] = 0.5 * (emb[0] + emb[2])  # turn class 2 into the blend
        ref = unet(torch.from_numpy(x), torch.tensor([40]), class_labels=torch.tensor([2])).sample.numpy()
    assert np.abs(den(x, np.array([40], np.float32), ctx) - ref).max() <= FORWARD_TOL


# -- sampling vs diffusers' schedulers ---------------------------------------------------------------------


class TorchNoise:
    """The normal stream diffusers' schedulers draw (torch.randn, float32, one seeded CPU generator)."""

    def __init__(self, seed: int):
        self.gen = torch.Generator().manual_seed(seed)

    def x_T(self, shape):
        return torch.randn(shape, generator=self.gen)

    def __call__(self, shape_per_item):
        return torch.randn((BATCH, *shape_per_item), generator=self.gen).numpy()


def diffusers_loop(folder, scheduler, steps, x_T, labels, *, seed, timesteps_list=None, **step_kwargs):
    """The DDPMPipeline/DDIMPipeline loop: unet(x, t, class_labels) then scheduler.step, one generator."""
    unet = reference_unet(folder)
    if timesteps_list is None:
        scheduler.set_timesteps(steps)
    else:
        scheduler.set_timesteps(timesteps=timesteps_list)
    gen = torch.Generator().manual_seed(seed)
    torch.randn(x_T.shape, generator=gen)  # x_T was the generator's first draw
    x = x_T.clone()
    with torch.no_grad():
        for t in scheduler.timesteps:
            out = unet(x, t, class_labels=labels).sample
            x = scheduler.step(out, t, x, generator=gen, **step_kwargs).prev_sample
    return x.numpy(), [int(t) for t in scheduler.timesteps]


def _scheduler(folder, cls_name, **overrides):
    """diffusers' scheduler ``cls_name`` from the folder's config; ``overrides`` as from_config keywords (a
    changed ``.config`` dict would not do: diffusers drops the keys in its ``_use_default_values``)."""
    cfg = json.loads(diffusers_folder(folder).scheduler_config.read_text())
    return getattr(diffusers, cls_name).from_config(cfg, **overrides)


def ours(graph, card, sampler, steps, noise, x_T, labels, **options):
    den = make_denoiser(graph, backend="ort-cpu", threads=1)
    schedule = make_schedule(card.schedule)
    ctx = (np.eye(card.num_classes, dtype=np.float32)[labels.numpy()] if card.conditional
           else np.zeros((BATCH, 0), np.float32))
    opts = {"spacing": card.recommended("spacing"), "clip": card.clip_limit, **options}
    return sampler(guided_eps(den, schedule, ctx), x_T.numpy(), schedule, steps=steps, noise=noise, **opts), schedule


CASES = [("pipeline", 20), ("flat", 10), ("training", 20)]


def _setup(folders, layout, seed):
    card = read_card(folders[layout])
    noise = TorchNoise(seed)
    x_T = noise.x_T((BATCH, card.channels, card.image_size, card.image_size))
    labels = torch.tensor([0, 2]) if card.conditional else None
    return card, noise, x_T, labels


@pytest.mark.parametrize("layout, steps", CASES)
def test_ddpm_matches_diffusers_ddpm_scheduler(folders, graphs, layout, steps):
    card, noise, x_T, labels = _setup(folders, layout, seed=11)
    ref, ts = diffusers_loop(folders[layout], _scheduler(folders[layout], "DDPMScheduler"), steps, x_T, labels,
                             seed=11)
    got, schedule = ours(graphs[layout].path, card, ddpm, steps, noise, x_T, labels,
                         variance=card.recommended("variance"))
    assert list(timesteps(schedule, steps, card.recommended("spacing"))) == ts
    _record(f"ddpm-{steps} {layout} ({card.prediction})", got, ref)


@pytest.mark.parametrize("layout, steps", CASES)
def test_ddim_eta0_matches_diffusers_ddim_scheduler(folders, graphs, layout, steps):
    """eta 0. With clip_sample, difftool re-derives eps from the clipped x0: diffusers' step with
    use_clipped_model_output=True (DDIMPipeline's default False steps along the unclipped eps)."""
    card, noise, x_T, labels = _setup(folders, layout, seed=12)
    ref, _ = diffusers_loop(folders[layout], _scheduler(folders[layout], "DDIMScheduler"), steps, x_T, labels,
                            seed=12, eta=0.0, use_clipped_model_output=card.clip_limit is not None)
    got, _ = ours(graphs[layout].path, card, ddim, steps, noise, x_T, labels, eta=0.0)
    _record(f"ddim-{steps} {layout} ({card.prediction})", got, ref)


@pytest.mark.parametrize("layout, steps", CASES)
@pytest.mark.parametrize("algorithm", ["dpmsolver++", "sde-dpmsolver++"])
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_dpmpp_2m_matches_diffusers_dpm_solver(folders, graphs, layout, steps, algorithm):
    """DPMSolverMultistepScheduler (from the folder's config, with ``algorithm_type``) on difftool's timestep
    list; it has no clip_sample, so the clamp is off on both sides. The SDE variant draws its noise from
    the same generator as diffusers does, after x_T."""
    card, noise, x_T, labels = _setup(folders, layout, seed=13)
    ts = timesteps(make_schedule(card.schedule), steps, card.recommended("spacing")).tolist()
    scheduler = _scheduler(folders[layout], "DPMSolverMultistepScheduler", algorithm_type=algorithm)
    assert scheduler.config.algorithm_type == algorithm
    ref, _ = diffusers_loop(folders[layout], scheduler, steps, x_T, labels, seed=13, timesteps_list=ts)
    sampler = get_sampler(scheduler_info({"_class_name": "DPMSolverMultistepScheduler",
                                          "algorithm_type": algorithm}).sampling["sampler"])
    assert sampler is (dpmpp_2m if algorithm == "dpmsolver++" else dpmpp_2m_sde)
    got, _ = ours(graphs[layout].path, card, sampler, steps, noise, x_T, labels, clip=None)
    _record(f"{sampler.name}-{steps} {layout} ({card.prediction})", got, ref)


def _record(name, got, ref):
    err = float(np.abs(got - ref).max())
    assert np.isfinite(got).all() and np.abs(ref).max() > 0.1
    assert err <= SAMPLING_TOL, f"{name}: {err}"
    MEASURED[name] = err


def test_real_ddim_pipeline_call_matches(folders, graphs):
    """The unconditional flat model through diffusers' own DDIMPipeline.__call__ (x_T from its generator)."""
    folder = folders["flat"]
    card = read_card(folder)
    pipe = diffusers.DDIMPipeline(unet=reference_unet(folder), scheduler=_scheduler(folder, "DDIMScheduler"))
    pipe.set_progress_bar_config(disable=True)
    images = pipe(batch_size=BATCH, generator=torch.Generator().manual_seed(5), num_inference_steps=10, eta=0.0,
                  output_type="np").images  # (B, H, W, C) in [0, 1]
    noise = TorchNoise(5)
    x_T = noise.x_T((BATCH, card.channels, card.image_size, card.image_size))
    got, _ = ours(graphs["flat"].path, card, ddim, 10, noise, x_T, None, eta=0.0)
    mine = np.clip(got / 2 + 0.5, 0, 1).transpose(0, 2, 3, 1)
    assert 0.0 < images.mean() < 1.0
    MEASURED["DDIMPipeline() call flat (v_prediction, [0,1] images)"] = float(np.abs(mine - images).max())
    assert np.abs(mine - images).max() <= SAMPLING_TOL


def test_zero_context_and_guidance_need_a_null_class(folders, graphs):
    card = read_card(folders["pipeline"])
    den = make_denoiser(graphs["pipeline"].path, backend="ort-cpu", threads=1)
    schedule = make_schedule(card.schedule)
    with pytest.raises(DifftoolError, match="no unconditional"):
        guided_eps(den, schedule, np.zeros((2, 3), np.float32))
    with pytest.raises(DifftoolError, match="guidance"):
        guided_eps(den, schedule, np.eye(3, dtype=np.float32)[:2], guidance=3.0)
    guided_eps(den, schedule, np.eye(3, dtype=np.float32)[:2])  # a class per row is fine


# -- the CLI on folders ------------------------------------------------------------------------------------


def difftool_cli(*args, timeout=300):
    import os
    import subprocess
    import sys

    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "COLUMNS": "200", "HOME": "/tmp",
           **({"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {})}
    return subprocess.run([sys.executable, "-m", "difftool", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_cli_info_generate_sample_on_folders(folders, graphs, tmp_path):
    proc = difftool_cli("info", folders["training"], "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["prediction"] == "sample"
    png = tmp_path / "g.png"
    proc = difftool_cli("generate", graphs["pipeline"].path, "--class", "dog", "-n", "2", "--steps", "3", "-o", png)
    assert proc.returncode == 0 and png.is_file(), proc.stderr
    proc = difftool_cli("sample", folders["flat"], "-n", "2", "--steps", "2", "-o", tmp_path / "s.png")
    assert proc.returncode == 0 and (tmp_path / "s.png").is_file(), proc.stderr
    proc = difftool_cli("generate", graphs["pipeline"].path, "-n", "2", "-o", tmp_path / "none.png")
    assert proc.returncode == 1 and "no unconditional (null) class" in proc.stderr
    assert not (tmp_path / "none.png").exists()


def test_cli_bench_folder_reports_ort_vs_diffusers_pipeline(folders, graphs):
    import shutil

    folder = folders["flat"]
    shutil.copy(graphs["flat"].path, folder.parent / f"{folder.name}.onnx")  # FOLDER.onnx beside FOLDER
    proc = difftool_cli("bench", folder, "--batch", "1,4", "--steps", "5", "--repeats", "2", "--threads", "1",
                        "--json")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    rows = {(r["backend"], r["batch"]) for r in record["results"]}
    assert rows == {("ort-cpu", 1), ("ort-cpu", 4), ("diffusers", 1), ("diffusers", 4)}
    assert [r["batch"] for r in record["diffusers_ratio"]] == [1, 4]
    assert all(r["speedup"] > 0 for r in record["diffusers_ratio"])
    assert next(r for r in record["results"] if r["backend"] == "diffusers")["loop"]["pipeline"] == "DDIMPipeline"
    assert "DDIMPipeline / ORT loop time" in proc.stderr
    MEASURED.update({f"bench ratio diffusers/ORT ddim-5 batch {r['batch']} (x)": r["speedup"]
                     for r in record["diffusers_ratio"]})


def test_tui_offers_torch_backends_for_a_folder(folders):
    from difftool.tui.launch import backends_for

    names = set(backends_for(folders["pipeline"]))
    assert names and names <= {"torch-cpu", "torch-cuda"}


def test_training_checkpoint_exports_as_a_loadable_pipeline(folders, tmp_path):
    """--format diffusers on a diffusers folder: a unet_ema/ checkpoint becomes a standard DDPMPipeline."""
    from difftool.export.diffusers_out import export_diffusers

    out = tmp_path / "pipeline"
    export_diffusers(folders["training"], out)
    pipe = diffusers.DDPMPipeline.from_pretrained(str(out))
    ema = reference_unet(folders["training"]).state_dict()
    assert all(torch.equal(v, ema[k]) for k, v in pipe.unet.state_dict().items())
    cfg = pipe.scheduler.config
    assert (cfg.prediction_type, cfg.beta_schedule, cfg.variance_type) == ("sample", "scaled_linear", "fixed_large")
    assert diffusers_folder(out).layout == "pipeline" and read_card(out).schedule == read_card(folders["training"]).schedule


def test_zz_report_figures(capsys):
    """Print the measured figures (pytest -s shows them)."""
    with capsys.disabled():
        for name, value in MEASURED.items():
            print(f"  {name}: {value:.3g}" if "ratio" in name else f"  max abs error {name}: {value:.2e}")
    assert all(math.isfinite(v) for v in MEASURED.values())
