"""difftool serve: real HTTP on 127.0.0.1 against the bundled model; pixels equal offline sampling.

Servers run in a background thread of this process (free loopback port, stopped by the fixture that
started them); one test starts the real ``difftool serve`` command in a subprocess.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

pytest.importorskip("starlette", reason="difftool serve needs the serve extra")
pytest.importorskip("uvicorn", reason="difftool serve needs the serve extra")
httpx = pytest.importorskip("httpx", reason="the serve tests drive the server with httpx")

from PIL import Image  # noqa: E402

from difftool.cli import bundled_model  # noqa: E402
from difftool.generate import build_request  # noqa: E402
from difftool.runtime import samplers  # noqa: E402
from difftool.runtime.images import grid, to_uint8  # noqa: E402
from difftool.runtime.loader import load  # noqa: E402
from difftool.service.config import ServeConfig  # noqa: E402
from difftool.service.metrics import parse  # noqa: E402
from difftool.service.scheduler import Scheduler  # noqa: E402
from difftool.service.server import ServerThread, make_service  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIG = ServeConfig(host="127.0.0.1", port=0, threads=1, max_n=16, max_batch=64, max_queue=8, max_steps=500,
                     graceful_s=2)


@pytest.fixture(scope="module")
def pipe():
    return load(bundled_model(), threads=1)


@pytest.fixture(scope="module")
def server(pipe):
    """(url, service) of a server on a free loopback port, stopped after the module."""
    service = make_service(bundled_model(), CONFIG, pipe=pipe)
    thread = ServerThread(service, CONFIG)
    url = thread.start()
    yield url, service
    thread.stop()


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server[0], timeout=60) as c:
        yield c


# -- helpers ------------------------------------------------------------------------------------------------


def metrics(client) -> dict[str, float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def wait_until(predicate, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def decode_png(data: bytes | str) -> np.ndarray:
    raw = base64.b64decode(data) if isinstance(data, str) else data
    return np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))


def offline_images(pipe, body: dict) -> np.ndarray:
    """(n, H, W, C) uint8 of offline sampling (``Pipeline.sample``) with difftool generate's request."""
    options = {k: body[k] for k in samplers.option_names() if k in body and k != "eta"}
    request = build_request(pipe, n=body.get("n", 16), class_name=body.get("class"), mix=body.get("mix"),
                            sampler=body.get("sampler"), steps=body.get("steps"), eta=body.get("eta"),
                            guidance=body.get("guidance"), seed=body.get("seed", 0))
    from difftool.runtime.palette import resolve_palette

    palette = body.get("palette")
    palette = ",".join(palette) if isinstance(palette, list) else palette
    request = dataclasses.replace(request, **options, palette=resolve_palette(palette, pipe.card))
    return to_uint8(pipe.sample(request), pipe.card.value_range)


def upscale(image: np.ndarray, scale: int) -> np.ndarray:
    return image.repeat(scale, axis=0).repeat(scale, axis=1)


def assert_json_result_matches(pipe, body: dict, result: dict) -> None:
    expected = offline_images(pipe, body)
    scale = result["settings"]["scale"]
    got = np.stack([decode_png(image)[::scale, ::scale] for image in result["images"]])
    np.testing.assert_array_equal(got, expected)
    for image, sprite in zip(result["images"], expected, strict=True):
        np.testing.assert_array_equal(decode_png(image), upscale(sprite, scale))
    np.testing.assert_array_equal(decode_png(result["grid"]),
                                  upscale(grid(expected, nrow=result["settings"]["nrow"]), scale))


async def raw_post(url: str, path: str, body: dict) -> asyncio.StreamWriter:
    """Send a POST over a plain TCP connection (closing the writer is a client disconnect)."""
    parts = urlsplit(url)
    _, writer = await asyncio.open_connection(parts.hostname, parts.port)
    payload = json.dumps(body).encode()
    writer.write(f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
    await writer.drain()
    return writer


async def poll(client: httpx.AsyncClient, predicate, timeout: float = 20.0, what: str = "condition") -> dict:
    deadline = time.monotonic() + timeout
    while True:
        values = parse((await client.get("/metrics")).text)
        if predicate(values):
            return values
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {values}")
        await asyncio.sleep(0.02)


# -- sampling over HTTP --------------------------------------------------------------------------------------

CONCURRENT = [
    {"class": "hero", "n": 3, "steps": 5, "seed": 11},  # the model's DDIM (eta 1: fresh noise), guidance 3
    {"mix": "hero=0.5,food=0.5", "n": 2, "sampler": "dpm++", "steps": 6, "seed": 5},
    {"class": "weapon", "n": 2, "sampler": "unipc", "steps": 5, "guidance": 0, "seed": 2},
    {"n": 2, "sampler": "ddpm", "steps": 8, "variance": "beta", "seed": 9},  # unconditional
    {"class": "2", "n": 2, "steps": 4, "guidance": 1.0, "eta": 0.3, "seed": 4},
    {"class": "food", "n": 2, "steps": 5, "seed": 8, "palette": "auto"},  # x0 projected in the last steps
    {"class": "item", "n": 2, "steps": 4, "seed": 6, "palette": ["#000000", "#d04648", "#deeed6", "#597dce"]},
]


async def test_concurrent_requests_share_ticks_and_match_offline_pixels(server, pipe):
    url, _ = server
    anchor = {"class": "creature", "n": 1, "steps": 150, "seed": 1}  # runs while the others join and leave
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        before = parse((await client.get("/metrics")).text)
        first = asyncio.create_task(client.post("/v1/generate", json={**anchor, "format": "json"}))
        await poll(client, lambda m: m["difftool_running_requests"] >= 1, what="the anchor to run")
        rest = await asyncio.gather(*(client.post("/v1/generate", json={**b, "format": "json"}) for b in CONCURRENT))
        responses = [await first, *rest]
        after = parse((await client.get("/metrics")).text)
    for body, response in zip([anchor, *CONCURRENT], responses, strict=True):
        assert response.status_code == 200, response.text
        assert_json_result_matches(pipe, body, response.json())
    shared = "difftool_tick_requests_count", 'difftool_tick_requests_bucket{le="1"}'
    ticks_shared = (after[shared[0]] - before[shared[0]]) - (after[shared[1]] - before[shared[1]])
    assert ticks_shared >= max(b["steps"] for b in CONCURRENT)  # requests at different steps, one forward
    assert after['difftool_requests_total{outcome="ok"}'] - before['difftool_requests_total{outcome="ok"}'] == 8
    four = {(0, 0, 0), (0xd0, 0x46, 0x48), (0xde, 0xee, 0xd6), (0x59, 0x7d, 0xce)}
    result = responses[-1].json()
    pixels = np.stack([decode_png(image) for image in result["images"]]).reshape(-1, 3)
    assert {tuple(p) for p in pixels} <= four and result["settings"]["palette"].startswith("#000000")


def test_json_result_names_the_settings_used(client, pipe):
    response = client.post("/v1/generate", json={"class": "food", "n": 2, "steps": 3, "format": "json"})
    assert response.status_code == 200, response.text
    result = response.json()
    card = pipe.card
    assert result["settings"] == {
        "class": "food", "mix": None, "n": 2, "seed": 0, "sampler": card.recommended("sampler"), "steps": 3,
        "eta": card.recommended("eta"), "guidance": card.recommended("guidance"), "spacing": "trailing",
        "palette": "none", "nrow": 2, "scale": 4,
    }
    assert result["backend"] == "ort-cpu" and len(result["images"]) == 2


def test_png_grid_equals_difftool_generate_output(client, tmp_path):
    from typer.testing import CliRunner

    from difftool.cli import app

    out = tmp_path / "generate.png"
    run = CliRunner().invoke(app, ["generate", "--class", "item", "-n", "3", "--steps", "4", "--seed", "21",
                                   "--threads", "1", "-o", str(out)])
    assert run.exit_code == 0, run.output
    response = client.post("/v1/generate", json={"class": "item", "n": 3, "steps": 4, "seed": 21})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    np.testing.assert_array_equal(decode_png(response.content), decode_png(out.read_bytes()))
    assert json.loads(response.headers["x-difftool-settings"])["seed"] == 21


def test_stream_reports_every_step_previews_and_the_result(client, pipe):
    body = {"class": "hero", "n": 2, "steps": 4, "seed": 3}
    events = []
    with client.stream("POST", "/v1/generate/stream", json={**body, "preview_every": 2}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event: "):
                events.append([line[7:], None])
            elif line.startswith("data: "):
                events[-1][1] = json.loads(line[6:])
    kinds = [kind for kind, _ in events]
    assert kinds == ["queued", "step", "step", "step", "step", "result"]
    steps = [data for kind, data in events if kind == "step"]
    assert [s["index"] for s in steps] == [0, 1, 2, 3] and {s["total"] for s in steps} == {4}
    assert [("preview" in s) for s in steps] == [False, True, False, True]
    assert decode_png(steps[1]["preview"]).shape == grid(np.zeros((2, 16, 16, 3), np.uint8), nrow=2).shape
    assert_json_result_matches(pipe, body, events[-1][1])


# -- cancellation -------------------------------------------------------------------------------------------


async def test_closing_a_stream_cancels_the_request(server):
    url, _ = server
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        before = parse((await client.get("/metrics")).text)['difftool_requests_total{outcome="cancelled"}']
        async with client.stream("POST", "/v1/generate/stream", json={"n": 2, "steps": 500}) as response:
            async for line in response.aiter_lines():
                if line.startswith("event: step"):
                    break  # leave after the first step: the connection closes
        await poll(client, lambda m: m['difftool_requests_total{outcome="cancelled"}'] == before + 1
                   and m["difftool_running_requests"] == 0, what="the stream's request to be dropped")


async def test_a_client_that_disconnects_frees_its_rows(server):
    url, _ = server
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        before = parse((await client.get("/metrics")).text)
        writer = await raw_post(url, "/v1/generate", {"class": "food", "n": 4, "steps": 500})
        await poll(client, lambda m: m["difftool_running_requests"] == 1, what="the request to run")
        writer.close()
        await writer.wait_closed()
        after = await poll(client, lambda m: m["difftool_running_requests"] == 0, what="its rows to be freed")
        assert (after['difftool_requests_total{outcome="cancelled"}']
                == before['difftool_requests_total{outcome="cancelled"}'] + 1)
        assert after["difftool_ticks_total"] - before["difftool_ticks_total"] < 400  # it did not run to the end


# -- limits and bad input -----------------------------------------------------------------------------------

BAD = [
    (b"{not json", 400, None),
    (b"[1, 2]", 400, None),
    (b'{"guidance": NaN}', 422, "guidance"),
    ({"guidance": -0.5}, 422, "guidance"),
    ({"guidance": "3"}, 422, "guidance"),
    ({"class": "dragon"}, 422, "class"),
    ({"class": 7}, 422, "class"),
    ({"mix": "hero=lots"}, 422, "mix"),
    ({"mix": {"dragon": 1}}, 422, "mix"),
    ({"mix": ""}, 422, "mix"),
    ({"class": "hero", "mix": "food"}, 422, "mix"),
    ({"n": 17}, 413, "n"),
    ({"n": 0}, 422, "n"),
    ({"n": "4"}, 422, "n"),
    ({"n": True}, 422, "n"),
    ({"steps": 501}, 413, "steps"),
    ({"sampler": "ddpm"}, 413, "steps"),  # its default runs every timestep: over this server's max_steps
    ({"sampler": "euler"}, 422, "sampler"),
    ({"sampler": "dpmpp_2m", "eta": 0.5}, 422, "eta"),
    ({"eta": -1}, 422, "eta"),
    ({"sampler": "ddpm", "steps": 10, "variance": "huge"}, 422, "variance"),
    ({"seed": -1}, 422, "seed"),
    ({"format": "gif"}, 422, "format"),
    ({"nrow": 0}, 422, "nrow"),
    ({"colour": "red"}, 422, "colour"),
    ({"palette": "/etc/passwd"}, 422, "palette"),  # a server never reads a file a client names
    ({"palette": 5}, 422, "palette"),
    ({"palette": ["#zz0000"]}, 422, "palette"),
    ({"palette": []}, 422, "palette"),
]


@pytest.mark.parametrize(("body", "status", "field"), BAD, ids=[str(b)[:40] for b, _, _ in BAD])
def test_bad_requests_get_a_json_error_naming_the_field(client, body, status, field):
    response = (client.post("/v1/generate", content=body) if isinstance(body, bytes)
                else client.post("/v1/generate", json=body))
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["field"] == field and error["message"]


def test_the_server_survives_bad_requests(client):
    for path, method, status in [("/nowhere", "GET", 404), ("/v1/generate", "GET", 405)]:
        response = client.request(method, path)
        assert response.status_code == status and response.json()["error"]["message"]
    response = client.post("/v1/generate", content=b"x" * (CONFIG.max_body_bytes + 1))
    assert response.status_code == 413 and response.json()["error"]["field"] is None
    stream = client.post("/v1/generate/stream", json={"format": "png"})
    assert stream.status_code == 422 and stream.json()["error"]["field"] == "format"
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.post("/v1/generate", json={"n": 1, "steps": 2}).status_code == 200


async def test_a_full_queue_answers_503_with_retry_after(pipe):
    config = dataclasses.replace(CONFIG, max_batch=32, max_queue=1, max_n=64)
    long = {"class": "hero", "n": 16, "steps": 500}  # 32 rows: fills a tick
    with ServerThread(make_service(bundled_model(), config, pipe=pipe), config) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            too_big = await client.post("/v1/generate", json={"class": "hero", "n": 17})
            assert too_big.status_code == 413 and too_big.json()["error"]["field"] == "n"
            first = await raw_post(url, "/v1/generate", long)
            await poll(client, lambda m: m["difftool_running_requests"] == 1, what="the first to run")
            second = await raw_post(url, "/v1/generate", long)
            await poll(client, lambda m: m["difftool_queue_length"] == 1, what="the second to wait")
            full = await client.post("/v1/generate", json={"n": 1, "steps": 1})
            assert full.status_code == 503
            assert int(full.headers["retry-after"]) >= 1 and "queue is full" in full.json()["error"]["message"]
            first.close()  # FIFO: the waiting request takes the freed rows at the next tick
            await poll(client, lambda m: m["difftool_running_requests"] == 1 and m["difftool_queue_length"] == 0,
                       what="the second to join")
            second.close()
            done = await poll(client, lambda m: m["difftool_running_requests"] == 0, what="both to be dropped")
            assert done['difftool_requests_total{outcome="cancelled"}'] == 2
            assert done['difftool_requests_total{outcome="queue_full"}'] == 1


# -- the other routes ---------------------------------------------------------------------------------------


def test_model_health_metrics_and_docs(client, pipe):
    model = client.get("/v1/model").json()
    assert tuple(model["card"]["class_names"]) == pipe.card.class_names
    assert [s["name"] for s in model["samplers"]] == list(samplers.SAMPLERS)
    assert model["limits"]["max_n"] == CONFIG.max_n and model["scheduler"] == "step"
    assert client.get("/healthz").json() == {"status": "ok", "waiting": 0, "running": 0}
    values = metrics(client)
    for name in ("difftool_queue_length", "difftool_batch_occupancy", "difftool_steps_per_second",
                 'difftool_requests_total{outcome="ok"}', "difftool_request_seconds_count"):
        assert name in values
    docs = client.get("/docs")
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    for word in (*samplers.SAMPLERS, "/v1/generate/stream", "Retry-After", "preview_every", "eta", "variance"):
        assert word in docs.text


# -- the scheduler itself -----------------------------------------------------------------------------------


class Recording:
    """Wraps the real denoiser and records each call's rows and distinct timesteps."""

    def __init__(self, inner):
        self.inner, self.card, self.name = inner, inner.card, inner.name
        self.calls: list[tuple[int, tuple[float, ...]]] = []

    def __call__(self, x, t, context):
        self.calls.append((len(x), tuple(sorted(set(t.tolist())))))
        return self.inner(x, t, context)


def _scheduler(pipe, **kwargs):
    from difftool.runtime.pipeline import Pipeline

    recorder = Recording(pipe.denoiser)
    return Scheduler(Pipeline(recorder), **kwargs), recorder


def _request(pipe, n: int, steps: int, cls: str | None = None, seed: int = 0):
    return build_request(pipe, n=n, class_name=cls, mix=None, sampler=None, steps=steps, eta=None,
                         guidance=None, seed=seed)


def test_scheduler_admits_fifo_within_max_batch_and_joins_mid_run(pipe):
    scheduler, recorder = _scheduler(pipe, max_batch=8, max_queue=8)
    a = _request(pipe, 3, 4, "hero")  # 6 rows (guided)
    b = _request(pipe, 2, 3, "food")  # 4 rows: waits for a
    c = _request(pipe, 2, 2, seed=7)  # 2 rows: would fit beside a, but must not overtake b
    late_request = _request(pipe, 1, 3, seed=3)
    late = []

    def submit_late(job, step):  # b's first step: a new request joins at the next tick
        if step.index == 0:
            late.append(scheduler.submit(late_request))

    jobs = [scheduler.submit(r) for r in (a, b, c)]
    jobs[1].on_step = submit_late
    scheduler.start()
    try:
        results = [job.future.result(timeout=60) for job in jobs]
        results.append(late[0].future.result(timeout=60))  # submitted during b's first step
    finally:
        scheduler.stop()
    # a alone (b does not fit, c waits behind b); b + c; b + c + late; b + late; late
    assert [rows for rows, _ in recorder.calls] == [6, 6, 6, 6, 6, 7, 5, 1]
    assert len(recorder.calls[5][1]) == 3  # three requests, each at its own timestep, in one forward
    for request, x in zip((a, b, c, late_request), results, strict=True):
        np.testing.assert_array_equal(x, pipe.sample(request))


def test_serial_scheduler_runs_one_request_at_a_time(pipe):
    scheduler, recorder = _scheduler(pipe, max_batch=64, max_queue=8, max_running=1)
    requests = [_request(pipe, 2, 2, seed=s) for s in (0, 10)]
    jobs = [scheduler.submit(r) for r in requests]
    scheduler.start()
    try:
        results = [job.future.result(timeout=60) for job in jobs]
    finally:
        scheduler.stop()
    assert [r for r, _ in recorder.calls] == [2, 2, 2, 2]
    for request, x in zip(requests, results, strict=True):
        np.testing.assert_array_equal(x, pipe.sample(request))


# -- the command --------------------------------------------------------------------------------------------


def test_serve_command_prints_url_and_model_runs_without_torch_and_stops_on_ctrl_c():
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    command = [sys.executable, str(REPO / "tests" / "_notorch.py"), "serve", "--port", "0", "--threads", "1"]
    proc = subprocess.Popen(command,  # torch made unimportable: serving an ONNX model needs none
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stderr.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert match, line
        assert "sprites.onnx" in proc.stderr.readline()
        with httpx.Client(base_url=match.group(0), timeout=30) as c:
            wait_until(lambda: _healthy(c), what="the server to answer")
            assert c.post("/v1/generate", json={"n": 1, "steps": 2}).status_code == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        rest = proc.stderr.read()
        assert "stopped" in rest and "Traceback" not in rest, rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _healthy(c) -> bool:
    try:
        return c.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False


def test_serve_without_the_extra_says_how_to_install(monkeypatch):
    import difftool.service as service

    monkeypatch.setattr(service, "EXTRA_PACKAGES", ("starlette", "no_such_package_for_difftool"))
    with pytest.raises(service.MissingDependency) as info:
        service.require_extra()
    message = str(info.value)
    assert "\n" not in message and "pip install 'difftool[serve]'" in message
