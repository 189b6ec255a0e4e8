"""The static web page (``export --format web``) in a real browser: headless Debian chromium driven by
Playwright, the folder served by ``python -m http.server`` on 127.0.0.1. The page loads offline, generates
16 sprites, draws them (not blank), logs no console errors, matches onnxruntime-in-Python within 1/255 with
fixed noise, and shows a visible error for bad input."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from difftool.errors import DifftoolError
from difftool.export.generator import GeneratorSettings
from difftool.webexport import ORT_FILES, export_web, ort_web_dist

BUNDLED = Path(__file__).resolve().parents[1] / "src" / "difftool" / "assets" / "sprites.onnx"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
N = 16


def _browser_or_skip() -> str:
    pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed (.ci/run installs it)")
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (.ci/run installs Debian's chromium with apt-get)")
    try:
        ort_web_dist()
    except DifftoolError as exc:
        pytest.skip(str(exc))
    return CHROMIUM


@contextlib.contextmanager
def serve(folder: Path):
    """``python -m http.server`` on a free 127.0.0.1 port; stopped on exit."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", str(folder)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/"
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "model.json", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> tuple[Path, dict]:
    _browser_or_skip()
    out = tmp_path_factory.mktemp("web") / "site"
    summary = export_web(BUNDLED, out, GeneratorSettings(sampler="ddim", steps=8, eta=1.0))
    return out, summary


@pytest.fixture(scope="module")
def browser(site):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


class Page:
    """A page of the served site with its console errors and every URL it requested."""

    def __init__(self, browser, url: str):
        self.page = browser.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(url)
        self.ready = self.page.evaluate("window.difftool.ready")

    def generate(self, opts: str = "{}") -> dict:
        return self.page.evaluate(f"window.difftool.generate({opts})")


def test_export_writes_the_folder_with_the_npm_runtime(site):
    out, summary = site
    assert sorted(p.name for p in out.iterdir()) == ["app.js", "generator.onnx", "index.html", "model.json", "ort"]
    assert sorted(p.name for p in (out / "ort").iterdir()) == sorted(ORT_FILES)
    meta = json.loads((out / "model.json").read_text())
    assert meta["noise_steps"] == 7 and meta["class_names"][0] == "hero" and meta["sampler"].startswith("DDIM-8")
    assert summary["bytes"] == sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert "http" not in (out / "app.js").read_text().replace("http.server", "")  # nothing fetched from outside
    export_web(BUNDLED, out, GeneratorSettings(sampler="ddim", steps=8, eta=1.0))  # replaces its own folder


def test_page_generates_16_sprites_offline_without_console_errors(site, browser):
    out, _ = site
    with serve(out) as url:
        page = Page(browser, url + "index.html?class=hero&seed=3")
        assert "error" not in page.ready, page.ready
        first = page.generate()
        warm = page.generate()
        assert "error" not in first and len(first["images"]) == N * 16 * 16 * 3
        assert first["images"] == warm["images"]  # seeded: the same sprites again
        pixels = np.array(page.page.evaluate("window.difftool.canvasPixels()"), dtype=np.uint8)
        assert np.array_equal(pixels, np.array(first["images"], dtype=np.uint8))  # drawn as generated
        canvas = page.page.evaluate("""(() => { const c = document.getElementById('sprites');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let lit = 0; for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 30) lit++;
            return {w: c.width, h: c.height, lit, hidden: c.hidden}; })()""")
        assert canvas["w"] == (8 * 17 + 1) * 6 and canvas["h"] == (2 * 17 + 1) * 6 and not canvas["hidden"]
        assert canvas["lit"] > 0.2 * canvas["w"] * canvas["h"]  # not blank
        assert "16 sprites in" in page.page.inner_text("#status")
        assert page.page.is_hidden("#error") and not page.errors, page.errors
        assert all(u.startswith(url) or u.startswith(("data:", "blob:")) for u in page.requests), page.requests
        print(f"\nbrowser: model load {page.ready['loadMs']:.0f} ms, first generation {first['ms']:.0f} ms, "
              f"warm {warm['ms']:.0f} ms ({N} sprites, DDIM-8, guidance 3)")


def test_fixed_noise_matches_onnxruntime_in_python(site, browser):
    from difftool.runtime.generator import GeneratorSession

    out, _ = site
    gen = GeneratorSession(out / "generator.onnx", threads=1, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(11)
    x_t = rng.standard_normal((N, 3, 16, 16), dtype=np.float32)
    noise = rng.standard_normal((7, N, 3, 16, 16), dtype=np.float32)
    (out / "fixed.bin").write_bytes(np.concatenate([x_t.ravel(), noise.ravel()]).astype("<f4").tobytes())
    ctx = np.zeros((N, 5), np.float32)
    ctx[:, 0], ctx[:, 2] = 0.5, 0.5  # the mix hero=0.5,food=0.5
    want, _ = gen.run(x_t, ctx, 2.0, noise)
    with serve(out) as url:
        page = Page(browser, url + "index.html?noise=fixed.bin&mix=hero=0.5,food=0.5&guidance=2")
        got = page.generate()
        assert "error" not in got, got
        diff = np.abs(np.array(got["images"], dtype=np.int16).reshape(want.shape) - want.astype(np.int16))
        assert diff.max() <= 1, diff.max()  # within 1/255
        assert not page.errors, page.errors
        print(f"\nbrowser vs onnxruntime (Python): max |diff| {diff.max()} / 255, {int((diff > 0).sum())} of "
              f"{diff.size} values differ")


@pytest.mark.parametrize("query, needle", [
    ("guidance=nan", "guidance must be a finite number"),
    ("guidance=abc", "guidance must be a finite number"),
    ("mix=dragon", 'unknown class "dragon"'),
    ("noise=short.bin", "short.bin has 4 floats"),
    ("noise=missing.bin", "HTTP 404"),
])
def test_bad_input_shows_a_visible_error(site, browser, query, needle):
    out, _ = site
    (out / "short.bin").write_bytes(np.zeros(4, "<f4").tobytes())
    with serve(out) as url:
        page = Page(browser, url + "index.html?" + query)
        result = page.generate()
        assert needle in result.get("error", ""), result
        assert page.page.is_visible("#error") and needle in page.page.inner_text("#error")
        assert page.page.is_hidden("#sprites")  # an error, never a blank canvas


def test_missing_onnxruntime_web_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "difftool", "export", str(BUNDLED), "--format", "web", "-o",
                           str(tmp_path / "site"), "--ort-web", str(tmp_path / "nowhere")],
                          capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", "PYTHONPATH": ":".join(sys.path), "COLUMNS": "300"})
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and "npm install" in lines[0], proc.stderr
    assert not (tmp_path / "site").exists()
