"""``GET /docs``: the API reference as one self-contained HTML page, built from the same tables the
validation uses (request fields, the sampler registry, this server's limits), so it cannot drift."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from difftool.runtime import samplers
from difftool.service.schemas import FIELDS, STREAM_FIELDS

if TYPE_CHECKING:
    from difftool.service.app import Service

ENDPOINTS = (
    ("POST", "/v1/generate", "sample sprites; the body below; answers a PNG grid (format png, settings in the "
                             "X-Difftool-Settings header) or JSON with base64 PNGs and the settings used"),
    ("POST", "/v1/generate/stream", "the same body (+ preview_every); server-sent events: queued, one step per "
                                    "sampler step {index, total, t, preview?}, then result (the JSON result) or "
                                    "error. Closing the stream cancels the request"),
    ("GET", "/v1/model", "the model card, recommended settings, samplers and their options, this server's limits"),
    ("GET", "/healthz", "200 {\"status\": \"ok\", \"waiting\", \"running\"} while the worker runs, else 503"),
    ("GET", "/metrics", "Prometheus text: requests by outcome, queue length, running requests, batch occupancy, "
                        "steps/s, ticks, latency and requests-per-tick histograms"),
    ("GET", "/docs", "this page"),
)
ERRORS = (
    ("400", "malformed JSON, or a body that is not an object"),
    ("404 / 405", "unknown route / method"),
    ("413", "over a limit of this server: n, steps, the rows per step (n, doubled by guidance) or the body size"),
    ("422", "a bad value: unknown field, class or sampler, bad mix, NaN/negative guidance, wrong type, ..."),
    ("500", "sampling failed (e.g. non-finite output from a broken model)"),
    ("503", "the queue is full (Retry-After says when to retry) or the server is stopping"),
)
STYLE = ("body{font-family:system-ui,sans-serif;max-width:62rem;margin:2rem auto;padding:0 1rem;line-height:1.4}"
         "table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ccc;padding:.3rem .5rem;"
         "text-align:left;vertical-align:top}code,pre{background:#f4f4f4}pre{padding:.6rem;overflow-x:auto}")


def page(service: Service) -> str:
    """The whole page."""
    cfg = service.config
    base = "http://HOST:PORT"
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>difftool serve</title><style>{STYLE}</style>"
        "</head><body>",
        "<h1>difftool serve</h1>",
        f"<p>{_e(service.describe())}.</p>",
        "<h2>Endpoints</h2>", _table(("method", "path", "what"), ENDPOINTS),
        "<h2>Request body (JSON object; every field optional)</h2>",
        _table(("field", "type", "default", "meaning"),
               [(k, *v) for k, v in {**FIELDS, **STREAM_FIELDS}.items()] + _option_rows()),
        "<h2>Samplers</h2>", _table(("name", "label", "aliases", "options"), _sampler_rows()),
        "<h2>Limits of this server</h2>",
        _table(("limit", "value"), [("max_n", cfg.max_n), ("max_steps", cfg.max_steps),
                                    ("max_batch (network rows per tick)", cfg.max_batch),
                                    ("max_queue (waiting requests)", cfg.max_queue),
                                    ("max_body_bytes", cfg.max_body_bytes)]),
        "<h2>Errors</h2>",
        "<p>Every error is <code>{\"error\": {\"field\": \"guidance\", \"message\": \"...\"}}</code> "
        "(field null when it is about the request as a whole).</p>",
        _table(("status", "when"), ERRORS),
        "<h2>Examples</h2>",
        "<pre>" + _e(f"curl -s {base}/v1/generate -d '{{\"class\": \"hero\", \"n\": 16, \"seed\": 0}}' -o hero.png\n"
                     f"curl -s {base}/v1/generate -d '{{\"mix\": {{\"hero\": 0.5, \"food\": 0.5}}, \"format\": "
                     f"\"json\"}}'\n"
                     f"curl -sN {base}/v1/generate/stream -d '{{\"class\": \"food\", \"preview_every\": 5}}'")
        + "</pre>",
        "<p>The same seed and settings give the same pixels as <code>difftool generate</code> "
        "(the PNG grid equals its <code>-o</code> output).</p>",
        "</body></html>",
    ]
    return "\n".join(parts)


def _option_rows() -> list[tuple[str, str, str, str]]:
    """One row per sampler option (from the registry), naming the samplers that take it."""
    rows = []
    for name in samplers.option_names():
        specs = [s for s in samplers.SAMPLERS.values() if name in s.option_names()]
        option = next(o for o in specs[0].options if o.name == name)
        kind = option.kind.__name__ + (f" ({' | '.join(option.choices)})" if option.choices else "")
        rows.append((name, kind, f"{option.default} (or the model's)",
                     f"{', '.join(s.name for s in specs)} only: {option.help}"))
    return rows


def _sampler_rows() -> list[tuple[str, str, str, str]]:
    return [(s.name, s.label, ", ".join(s.aliases) or "-", ", ".join(s.option_names()) or "-")
            for s in samplers.SAMPLERS.values()]


def _table(header: tuple[str, ...], rows) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _e(value: object) -> str:
    return html.escape(str(value))
