"""The HTTP API (Starlette): routes, error bodies, waiting on the scheduler, streaming progress.

Routes: ``POST /v1/generate`` (PNG grid or JSON), ``POST /v1/generate/stream`` (server-sent events),
``GET /v1/model``, ``GET /healthz``, ``GET /metrics``, ``GET /docs``. Every error is JSON
``{"error": {"field": ..., "message": ...}}``; a request never reaches the worker unless it validated.
A client that disconnects cancels its request; the worker frees its rows at the next tick.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from difftool.errors import DifftoolError
from difftool.runtime.images import encode_png, grid, to_uint8
from difftool.runtime.pipeline import Pipeline, SampleRequest
from difftool.service import docs, schemas
from difftool.service.config import ServeConfig
from difftool.service.metrics import CONTENT_TYPE, Metrics
from difftool.service.scheduler import Job, JobCancelled, QueueFull, Scheduler, ShuttingDown, TooManyRows

log = logging.getLogger("difftool.serve")


@dataclass
class Service:
    """What one server holds: the model, its limits, the scheduler that owns the network, the counters."""

    pipe: Pipeline
    config: ServeConfig
    artifact: str
    metrics: Metrics = field(init=False)
    scheduler: Scheduler = field(init=False)

    def __post_init__(self) -> None:
        self.metrics = Metrics(self.config.max_batch)
        self.scheduler = Scheduler(self.pipe, max_batch=self.config.max_batch, max_queue=self.config.max_queue,
                                   max_running=self.config.max_running, metrics=self.metrics)

    def describe(self) -> str:
        """One line: the model, its backend and the scheduler (printed at startup)."""
        card = self.pipe.card
        classes = f"{card.num_classes} classes" if card.num_classes else "unconditional"
        return (f"{Path(self.artifact).name} ({card.model.arch}, {card.channels}x{card.image_size}x{card.image_size}, "
                f"{classes}) on {self.pipe.denoiser.name}; scheduler {self.config.scheduler}, "
                f"max batch {self.config.max_batch} rows, queue {self.config.max_queue}")


@dataclass
class Prepared:
    params: schemas.GenerateParams
    request: SampleRequest


def build_app(service: Service) -> Starlette:
    """The ASGI app; the scheduler's worker starts and stops with the app's lifespan."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        service.scheduler.start()
        try:
            yield
        finally:
            await asyncio.to_thread(service.scheduler.stop)

    async def generate(request: Request) -> Response:
        prepared, job = await _accept(service, request, stream=False)
        if job is None:
            return prepared
        return await _respond(service, request, prepared, job)

    async def stream(request: Request) -> Response:
        return await _stream(service, request)

    routes = [
        Route("/v1/generate", generate, methods=["POST"]),
        Route("/v1/generate/stream", stream, methods=["POST"]),
        Route("/v1/model", lambda r: JSONResponse(model_info(service)), methods=["GET"]),
        Route("/healthz", lambda r: _health(service), methods=["GET"]),
        Route("/metrics", lambda r: Response(service.metrics.render(*service.scheduler.counts()),
                                             media_type=CONTENT_TYPE), methods=["GET"]),
        Route("/docs", lambda r: HTMLResponse(docs.page(service)), methods=["GET"]),
        Route("/", lambda r: RedirectResponse("/docs"), methods=["GET"]),
    ]
    handlers = {404: _http_error, 405: _http_error, Exception: _internal_error}
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers)


# -- accepting a request ----------------------------------------------------------------------------------


async def _accept(service: Service, request: Request, *, stream: bool, listener=None):
    """(Prepared, Job) once queued, or (error Response, None). ``listener(prepared)`` makes the job's
    step listener."""
    try:
        prepared = _prepare(service, await _read_body(request, service.config), stream=stream)
        on_step = listener(prepared) if listener is not None else None
        return prepared, service.scheduler.submit(prepared.request, on_step=on_step)
    except schemas.FieldError as exc:
        service.metrics.request_done("invalid")
        return error_response(exc.status, exc.field, exc.message), None
    except TooManyRows as exc:
        service.metrics.request_done("invalid")
        return error_response(413, "n", str(exc)), None
    except QueueFull as exc:
        service.metrics.request_done("queue_full")
        return error_response(503, None, str(exc), {"Retry-After": str(exc.retry_after)}), None
    except ShuttingDown as exc:
        return error_response(503, None, str(exc), {"Retry-After": "5"}), None
    except DifftoolError as exc:  # the pipeline rejected what validation let through
        service.metrics.request_done("invalid")
        return error_response(422, None, str(exc)), None


async def _read_body(request: Request, config: ServeConfig) -> bytes:
    """The body, refusing more than ``max_body_bytes`` (413) before reading it all."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > config.max_body_bytes:
        raise schemas.FieldError(None, f"the body is {declared} bytes; the limit is {config.max_body_bytes}", 413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > config.max_body_bytes:
            raise schemas.FieldError(None, f"the body exceeds the limit of {config.max_body_bytes} bytes", 413)
    return bytes(body)


def _prepare(service: Service, body: bytes, *, stream: bool) -> Prepared:
    data = schemas.parse_body(body, service.config)
    params = schemas.parse_generate(data, service.pipe, service.config, stream=stream)
    sample_request = schemas.to_sample_request(service.pipe, params)
    schemas.check_request(sample_request, service.pipe, service.config)
    return Prepared(params, sample_request)


# -- waiting and answering ----------------------------------------------------------------------------------


async def _respond(service: Service, request: Request, prepared: Prepared, job: Job) -> Response:
    """Wait for the job (cancelling it if the client goes away), then encode the result."""
    future = asyncio.wrap_future(job.future)
    gone = asyncio.ensure_future(_client_gone(request))
    try:
        await asyncio.wait({future, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not future.done():  # the client left (or the server is stopping): free the rows
            job.cancel()
            future.add_done_callback(_retrieve)
    if not future.done():
        return Response(status_code=499)  # nobody is listening; uvicorn drops it
    try:
        x = future.result()
    except (JobCancelled, ShuttingDown) as exc:
        return error_response(503, None, str(exc), {"Retry-After": "5"})
    except DifftoolError as exc:
        return error_response(500, None, str(exc))
    settings = schemas.settings(prepared.request, prepared.params)
    if prepared.params.format == "png":
        png = await run_in_threadpool(_grid_png, x, prepared.params, service.pipe)
        return Response(png, media_type="image/png", headers={"X-Difftool-Settings": json.dumps(settings)})
    return JSONResponse(await run_in_threadpool(result_json, x, prepared.params, settings, service, job))


def _retrieve(future: asyncio.Future) -> None:
    """Mark the outcome of an abandoned request as seen (its JobCancelled needs no log line)."""
    if not future.cancelled():
        future.exception()


async def _client_gone(request: Request) -> None:
    """Returns when the client disconnects (the body has been read: only http.disconnect is left)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _grid_png(x: np.ndarray, params: schemas.GenerateParams, pipe: Pipeline) -> bytes:
    """The PNG ``difftool generate`` writes for these sprites (same grid, same scale)."""
    return encode_png(grid(to_uint8(x, pipe.card.value_range), nrow=params.nrow), scale=params.scale)


def result_json(x: np.ndarray, params: schemas.GenerateParams, settings: dict[str, Any], service: Service,
                job: Job) -> dict[str, Any]:
    """The JSON result: base64 PNGs of the grid and of every sprite, the settings, timings."""
    images = to_uint8(x, service.pipe.card.value_range)  # (n, H, W, C)
    return {
        "id": job.id,
        "model": Path(service.artifact).name,
        "backend": service.pipe.denoiser.name,
        "settings": settings,
        "timing": _timing(job),
        "grid": _b64(encode_png(grid(images, nrow=params.nrow), scale=params.scale)),
        "images": [_b64(encode_png(image, scale=params.scale)) for image in images],
    }


def _timing(job: Job) -> dict[str, float | None]:
    started, finished = job.started or job.submitted, job.finished or job.submitted
    return {"queued_s": round(started - job.submitted, 4), "sampling_s": round(finished - started, 4)}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- streaming ----------------------------------------------------------------------------------------------


async def _stream(service: Service, request: Request) -> Response:
    """Server-sent events: ``queued``, one ``step`` per sampler step (optionally an x0 preview), then
    ``result`` (the JSON result) or ``error``. Closing the stream cancels the request."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()
    value_range = service.pipe.card.value_range

    def listener(prepared: Prepared):
        every = prepared.params.preview_every

        def on_step(job: Job, step) -> None:  # worker thread: copy what it needs, hand it to the loop
            event = {"id": job.id, "index": step.index, "total": step.total, "t": step.t}
            last = step.index + 1 == step.total
            preview = (grid(to_uint8(step.x0, value_range), nrow=prepared.params.nrow)
                       if every and ((step.index + 1) % every == 0 or last) else None)
            _post(loop, events, ("step", event, preview))

        return on_step

    prepared, job = await _accept(service, request, stream=True, listener=listener)
    if job is None:
        return prepared
    job.future.add_done_callback(lambda _: _post(loop, events, ("done", None, None)))
    return StreamingResponse(_events(service, prepared, job, events), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _post(loop: asyncio.AbstractEventLoop, events: asyncio.Queue, item: tuple) -> None:
    with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening any more
        loop.call_soon_threadsafe(events.put_nowait, item)


async def _events(service: Service, prepared: Prepared, job: Job, events: asyncio.Queue):
    try:
        waiting, _ = service.scheduler.counts()
        yield sse("queued", {"id": job.id, "waiting": waiting})
        while True:
            try:
                kind, event, preview = await asyncio.wait_for(events.get(), service.config.keepalive_s)
            except TimeoutError:
                yield ": keepalive\n\n"
                continue
            if kind == "done":
                break
            if preview is not None:
                event["preview"] = _b64(encode_png(preview))
            yield sse("step", event)
        yield await _final_event(service, prepared, job)
    finally:
        job.cancel()  # a no-op once finished; frees the rows when the client went away


async def _final_event(service: Service, prepared: Prepared, job: Job) -> str:
    try:
        x = job.future.result()
    except Exception as exc:
        status = 503 if isinstance(exc, JobCancelled | ShuttingDown) else 500
        return sse("error", {"status": status, **_error_body(None, str(exc))})
    settings = schemas.settings(prepared.request, prepared.params)
    return sse("result", await run_in_threadpool(result_json, x, prepared.params, settings, service, job))


def sse(event: str, data: dict[str, Any]) -> str:
    """One server-sent event (``data`` as one line of JSON)."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


# -- the other routes and errors ------------------------------------------------------------------------------


def model_info(service: Service) -> dict[str, Any]:
    """``GET /v1/model``: the model card, the recommended settings, the samplers, the server's limits."""
    from difftool.runtime import samplers

    card = service.pipe.card
    return {
        "artifact": Path(service.artifact).name,
        "backend": service.pipe.denoiser.name,
        "card": card.to_dict(),
        "recommended": {k: card.recommended(k) for k in ("sampler", "steps", "eta", "guidance")},
        "samplers": [_sampler_info(spec) for spec in samplers.SAMPLERS.values()],
        "limits": {k: v for k, v in asdict(service.config).items()
                   if k in ("max_batch", "max_queue", "max_n", "max_steps", "max_body_bytes")},
        "scheduler": service.config.scheduler,
    }


def _sampler_info(spec) -> dict[str, Any]:
    options = [{"name": o.name, "type": o.kind.__name__, "default": o.default, "choices": list(o.choices),
                "minimum": o.minimum, "help": o.help} for o in spec.options]
    return {"name": spec.name, "label": spec.label, "aliases": list(spec.aliases),
            "default_spacing": spec.default_spacing, "all_steps": spec.all_steps, "options": options}


def _health(service: Service) -> JSONResponse:
    waiting, running = service.scheduler.counts()
    ok = service.scheduler.alive
    return JSONResponse({"status": "ok" if ok else "down", "waiting": waiting, "running": running},
                        status_code=200 if ok else 503)


def _error_body(field_name: str | None, message: str) -> dict[str, Any]:
    return {"error": {"field": field_name, "message": message}}


def error_response(status: int, field_name: str | None, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(_error_body(field_name, message), status_code=status, headers=headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    status = getattr(exc, "status_code", 404)
    message = f"no route {request.method} {request.url.path}" if status == 404 else \
        f"{request.method} is not allowed on {request.url.path}"
    return error_response(status, None, message, getattr(exc, "headers", None))


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("internal error on %s %s", request.method, request.url.path)
    return error_response(500, None, f"internal error: {type(exc).__name__}")
