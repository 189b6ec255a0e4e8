"""One-file generators: the graph applies the same coefficient table as the numpy loop (parity per sampler,
guided and unguided, on the bundled model, a course ContextUnet and an explainingai Unet), its structure
(one Loop, the U-Net once), metadata, row independence, bad input, and the CLI / TUI entry points."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from difftool.errors import DifftoolError
from difftool.export.generator import GeneratorSettings, export_generator, generator_vs_loop, plan_for
from difftool.runtime.artifact import onnx_card, read_card
from difftool.runtime.generator import GeneratorPipeline, GeneratorSession, generator_info
from difftool.runtime.loader import load
from difftool.runtime.pipeline import SampleRequest

BUNDLED = Path(__file__).resolve().parents[1] / "src" / "difftool" / "assets" / "sprites.onnx"
TOL = 1e-4

# (id, settings, guidance) per case; steps=None: every timestep (DDPM)
CASES = [
    ("ddim", GeneratorSettings(sampler="ddim", steps=10, eta=0.0)),
    ("ddim-eta1", GeneratorSettings(sampler="ddim", steps=10, eta=1.0)),
    ("ddim-eta0.5-leading", GeneratorSettings(sampler="ddim", steps=7, eta=0.5, spacing="leading")),
    ("ddpm", GeneratorSettings(sampler="ddpm", steps=None)),
    ("ddpm-beta-50", GeneratorSettings(sampler="ddpm", steps=50, variance="beta")),
    ("dpmpp_2m", GeneratorSettings(sampler="dpmpp_2m", steps=8)),
    ("dpmpp_2m_sde", GeneratorSettings(sampler="dpmpp_2m_sde", steps=8)),
    ("unipc", GeneratorSettings(sampler="unipc", steps=8)),
]


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "difftool", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "COLUMNS": "200",
                                                "HOME": "/tmp", "PYTHONPATH": ":".join(sys.path)})


@pytest.fixture(scope="module")
def unets(tmp_path_factory) -> dict[str, Path]:
    """U-Net graphs: the bundled sprite model, a course ContextUnet and an (unconditional) explainingai Unet."""
    torch = pytest.importorskip("torch", reason="course/explainingai graphs are exported with torch")
    from difftool.config import ContextUnetConfig, UnetConfig
    from difftool.export.onnx_export import export_onnx
    from difftool.models import build

    root = tmp_path_factory.mktemp("unets")
    torch.manual_seed(0)
    torch.save(build(ContextUnetConfig(in_channels=3, n_feat=16, n_cfeat=5, height=16)).state_dict(),
               root / "course.pth")
    ea = UnetConfig(im_channels=1, im_size=28, down_channels=(16, 32, 32), mid_channels=(32, 32),
                    down_sample=(True, False), attention=(True, True), time_emb_dim=32, num_down_layers=1,
                    num_mid_layers=1, num_up_layers=1, out_width=16)
    torch.save(build(ea).state_dict(), root / "explainingai.pth")
    return {"bundled": BUNDLED,
            "course": export_onnx(root / "course.pth", root / "course.onnx").path,
            "explainingai": export_onnx(root / "explainingai.pth", root / "ea.onnx", image_size=12).path}


def _generator(unet: Path, settings: GeneratorSettings, out: Path) -> GeneratorSession:
    export_generator(unet, out, settings, check=False)
    return GeneratorSession(out, threads=1, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("model", ["bundled", "course", "explainingai"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_parity_with_the_numpy_loop(model, case, unets, tmp_path):
    name, settings = case
    if model == "bundled" and name == "ddpm":
        settings = GeneratorSettings(sampler="ddpm", steps=200)  # every-step DDPM-1000: test_full_ddpm_bundled
    gen = _generator(unets[model], settings, tmp_path / "g.onnx")
    pipe = load(unets[model], backend="ort-cpu", threads=1)
    guidances = (1.0, 3.0) if gen.card.conditional else (1.0,)
    for guidance in guidances:
        err = float(np.abs(generator_vs_loop(gen, pipe, 3, seed=7, guidance=guidance)).max())
        assert err <= TOL, f"{model} {name} guidance {guidance}: {err:.3g}"


def test_full_ddpm_bundled_guided_and_a_mix(tmp_path):
    """Ancestral DDPM over all 1000 timesteps, guided, with a mixed and an unconditional (zero) row."""
    gen = _generator(BUNDLED, GeneratorSettings(sampler="ddpm"), tmp_path / "g.onnx")
    assert gen.info.steps == 1000 and gen.info.noise_steps == 999
    pipe = load(BUNDLED, backend="ort-cpu", threads=1)
    ctx = np.array([[0.5, 0.5, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=np.float32)
    err = float(np.abs(generator_vs_loop(gen, pipe, 2, seed=3, guidance=4.0, context=ctx)).max())
    assert err <= TOL


def test_guidance_is_an_input_zero_and_mixed_contexts(tmp_path):
    gen = _generator(BUNDLED, GeneratorSettings(steps=6, eta=1.0), tmp_path / "g.onnx")
    pipe = load(BUNDLED, backend="ort-cpu", threads=1)
    mix = pipe.context_from_spec("hero=0.5,food=0.5", 2)
    for guidance, ctx in [(0.0, mix), (2.5, mix), (3.0, np.zeros_like(mix))]:
        assert float(np.abs(generator_vs_loop(gen, pipe, 2, 1, guidance, ctx)).max()) <= TOL


def test_the_graph_holds_the_table_one_loop_and_the_unet_once(unets, tmp_path):
    unet = onnx.load(str(BUNDLED))
    for settings, state in [(GeneratorSettings(sampler="ddim", steps=5, eta=0.0), 1),
                            (GeneratorSettings(sampler="dpmpp_2m", steps=5), 2),
                            (GeneratorSettings(sampler="unipc", steps=5), 4)]:
        export_generator(BUNDLED, tmp_path / "g.onnx", settings, check=False)
        model = onnx.load(str(tmp_path / "g.onnx"))
        loops = [n for n in model.graph.node if n.op_type == "Loop"]
        assert len(loops) == 1 and not any(n.op_type == "Conv" for n in model.graph.node)
        body = loops[0].attribute[0].g
        assert len(loops[0].output) == state  # x (+ h1) (+ h2, xl): only the state the table reads
        assert sum(n.op_type == "Conv" for n in body.node) == sum(n.op_type == "Conv" for n in unet.graph.node)
        weights = sum(len(i.raw_data) for i in unet.graph.initializer)
        stored = sum(len(i.raw_data) for i in body.initializer) + sum(len(i.raw_data) for i in model.graph.initializer)
        assert weights <= stored < weights + 64 * 1024  # the weights once, plus the tables
        # golden: the graph's coefficient table and timesteps are the registry's
        plan, info, table = plan_for(onnx_card(BUNDLED), settings)
        coef = next(onnx.numpy_helper.to_array(i) for i in model.graph.initializer if i.name == "gen/coef")
        assert np.array_equal(coef[:, :12], table.rows.astype(np.float32))
        assert list(info.timesteps) == table.t.tolist() == list(generator_info(tmp_path / "g.onnx").timesteps)


def test_metadata_card_settings_and_contract(unets, tmp_path):
    export_generator(unets["course"], tmp_path / "g.onnx", GeneratorSettings(sampler="ddim", steps=10, eta=1.0))
    info = generator_info(tmp_path / "g.onnx")
    card = read_card(tmp_path / "g.onnx")
    assert card.model == onnx_card(unets["course"]).model and card.source == "course"
    assert (card.recommended("sampler"), card.recommended("steps"), card.recommended("eta")) == ("ddim", 10, 1.0)
    assert info.noise_steps == 9 and info.clip is None  # the last DDIM step lands on the clean image: no noise
    assert info.inputs["noise"]["shape"] == [9, "B", 3, 16, 16] and info.inputs["guidance"]["shape"] == []
    assert info.outputs["images"] == {"dtype": "uint8", "shape": ["B", 16, 16, 3], "doc": info.outputs["images"]["doc"]}
    sess = GeneratorSession(tmp_path / "g.onnx")
    graph_inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
                    for i in onnx.load(str(tmp_path / "g.onnx")).graph.input}
    assert graph_inputs == {n: [("batch" if d == "B" else d) for d in s["shape"]] for n, s in sess.info.inputs.items()}
    assert generator_info(unets["course"]) is None
    ea = tmp_path / "ea.onnx"
    export_generator(unets["explainingai"], ea, GeneratorSettings(sampler="ddim", steps=4, eta=0.0))
    assert list(generator_info(ea).inputs) == ["x_T"]  # unconditional, deterministic: noise in, images out


def test_defaults_are_the_cards_recommended_settings(tmp_path):
    summary = export_generator(BUNDLED, tmp_path / "g.onnx")
    card = onnx_card(BUNDLED)
    info = generator_info(tmp_path / "g.onnx")
    assert (info.sampler, info.steps, info.eta, info.guidance) == (
        card.recommended("sampler"), card.recommended("steps"), card.recommended("eta"), card.recommended("guidance"))
    assert summary["parity_max_abs_err"] <= TOL


def test_rows_depend_only_on_their_own_noise(tmp_path):
    gen = GeneratorPipeline(_generator(BUNDLED, GeneratorSettings(steps=5, eta=1.0), tmp_path / "g.onnx"))
    ctx = gen.context_from_spec("hero", 3)
    kw = dict(sampler="ddim", steps=5, eta=1.0, guidance=3.0)
    batch = gen.sample(SampleRequest(n=3, context=ctx, seeds=[5, 6, 7], **kw))
    alone = gen.sample(SampleRequest(n=1, context=ctx[:1], seeds=[6], **kw))
    assert np.abs(batch[1] - alone[0]).max() <= 1e-6


@pytest.mark.parametrize("layout", ["default", "batched"])
def test_row_shards_equal_one_whole_run(tmp_path, layout):
    """On CPU with N threads the batch runs as N concurrent single-threaded shards: the same pixels."""
    out = tmp_path / "g.onnx"
    export_generator(BUNDLED, out, GeneratorSettings(steps=4, eta=1.0), layout=layout, check=False)
    whole = GeneratorSession(out, threads=1, providers=["CPUExecutionProvider"])
    split = GeneratorSession(out, threads=3, providers=["CPUExecutionProvider"])
    assert (whole.shards, split.shards) == (1, 3)
    for n in (1, 2, 5):
        rng = np.random.default_rng(n)
        x = rng.standard_normal((n, 3, 16, 16)).astype(np.float32)
        ctx = np.eye(5, dtype=np.float32)[rng.integers(0, 5, n)]
        shape = whole.info.inputs["noise"]["shape"]
        noise = rng.standard_normal([n if d == "B" else d for d in shape]).astype(np.float32)
        g = np.full((n, 1), 2.5, np.float32) if layout == "batched" else 2.5
        a, b = whole.run(x, ctx, g, noise), split.run(x, ctx, g, noise)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


def test_bad_input_is_one_clear_error(tmp_path):
    gen = _generator(BUNDLED, GeneratorSettings(steps=4, eta=1.0), tmp_path / "g.onnx")
    x = np.zeros((2, 3, 16, 16), np.float32)
    ctx = np.zeros((2, 5), np.float32)
    noise = np.zeros((3, 2, 3, 16, 16), np.float32)
    cases = [
        (dict(x_T=np.zeros((2, 3, 8, 8), np.float32), context=ctx, guidance=1.0, noise=noise), "x_T must have shape"),
        (dict(x_T=x, context=ctx[:1], guidance=1.0, noise=noise), "context must have shape"),
        (dict(x_T=x, context=ctx, guidance=1.0, noise=noise[:2]), "noise must have shape"),
        (dict(x_T=x, context=ctx, guidance=np.ones(2), noise=noise), "guidance must have shape"),
        (dict(x_T=x, context=ctx, guidance=1.0), "missing input 'noise'"),
        (dict(x_T=x, guidance=1.0, noise=noise), "missing input 'context'"),
        (dict(x_T=x, context=ctx, guidance=float("nan"), noise=noise), "guidance must be a finite number"),
    ]
    for kwargs, needle in cases:
        with pytest.raises(DifftoolError, match=needle) as exc:
            gen.run(**kwargs)
        assert "\n" not in str(exc.value)
    pipe = GeneratorPipeline(gen)
    with pytest.raises(DifftoolError, match="built for DDIM-4"):
        pipe.sample(SampleRequest(n=1, sampler="ddim", steps=10, eta=1.0))


def test_cli_export_info_generate_same_pixels_and_errors(tmp_path):
    gen = tmp_path / "gen.onnx"
    proc = run_cli("export", BUNDLED, "--generator", "--steps", "6", "-o", gen, "--json")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("info", gen)
    assert proc.returncode == 0 and "DDIM-6 (eta 1.25, trailing)" in proc.stderr and "noise float32[5,B,3,16,16]" in proc.stderr
    outs = []
    for model, name in ((gen, "a.png"), (BUNDLED, "b.png")):
        proc = run_cli("generate", model, "--class", "food", "--n", "4", "--steps", "6", "--seed", "3",
                       "-o", tmp_path / name)
        assert proc.returncode == 0, proc.stderr
        with Image.open(tmp_path / name) as im:
            outs.append(np.asarray(im.convert("RGB")))
    np.testing.assert_array_equal(outs[0], outs[1])  # same seeds -> same x_T and step noise -> the same pixels
    proc = run_cli("generate", gen, "-o", tmp_path / "c.png", "--guidance", "nan", "--class", "hero")
    assert proc.returncode == 2 and "finite" in proc.stderr and "Traceback" not in proc.stderr  # a usage error
    proc = run_cli("generate", gen, "-o", tmp_path / "c.png", "--steps", "10")
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and "this generator was built for DDIM-6" in lines[0], proc.stderr
    proc = run_cli("export", BUNDLED, "--steps", "6", "-o", tmp_path / "x.onnx")
    assert proc.returncode == 2  # sampler flags without --generator


async def test_tui_opens_a_generator_and_shows_its_final_frame(tmp_path, monkeypatch):
    from textual.worker import WorkerCancelled, WorkerFailed

    from difftool.tui import Settings, SpriteApp
    from difftool.tui.launch import backends_for

    gen = tmp_path / "gen.onnx"
    export_generator(BUNDLED, gen, GeneratorSettings(steps=4, eta=0.0), check=False)
    backends = backends_for(gen, threads=1)
    settings = Settings(mix="hero", sampler="ddim", steps=4, options={"eta": 0.0}, guidance=3.0, rows=2, cols=2)
    monkeypatch.setenv("COLORTERM", "truecolor")
    app = SpriteApp(backends, output_dir=tmp_path, settings=settings, rng_seed=1)
    async with app.run_test(size=(120, 40)) as pilot:
        for _ in range(2):
            for worker in list(app.workers):
                try:
                    await worker.wait()
                except (WorkerCancelled, WorkerFailed):
                    pass
            await pilot.pause()
        assert isinstance(app.pipeline, GeneratorPipeline)
        app.grid.focus()
        await pilot.press("g")
        for _ in range(200):
            if app.current is not None:
                break
            await pilot.pause(0.05)
        errors = [n.message for n in app._notifications if n.severity == "error"]
        assert app.current is not None and app.grid.images.shape == (4, 16, 16, 3), errors
