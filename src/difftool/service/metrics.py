"""Server counters and their Prometheus text exposition (format 0.0.4), without a client library.

Counters: requests by outcome, ticks, network rows, sprite-steps, seconds inside ticks. Gauges: queue length,
running requests, and over the last :data:`WINDOW_S` seconds the batch occupancy (rows per tick / max
batch), the worker's busy share and the rates (sprite-steps/s, ticks/s). Histograms: request latency and
requests per tick (how many requests shared one forward).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

OUTCOMES = ("ok", "cancelled", "failed", "invalid", "queue_full")
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
TICK_REQUEST_BUCKETS = (1, 2, 4, 8, 16, 32)
WINDOW_S = 10.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        for i, edge in enumerate(self.buckets):
            if value <= edge:
                self.counts[i] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str) -> list[str]:
        out = [f'{name}_bucket{{le="{_num(edge)}"}} {n}' for edge, n in zip(self.buckets, self.counts, strict=True)]
        out += [f'{name}_bucket{{le="+Inf"}} {self.count}', f"{name}_sum {_num(self.total)}",
                f"{name}_count {self.count}"]
        return out


@dataclass(frozen=True)
class TickRecord:
    end: float  # perf_counter at the end of the tick
    rows: int
    images: int
    seconds: float


class Metrics:
    """Thread-safe: the worker records ticks and finished requests, the app records rejections."""

    def __init__(self, max_batch: int):
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._started = time.perf_counter()
        self.requests = dict.fromkeys(OUTCOMES, 0)
        self.ticks = self.rows = self.images = 0
        self.tick_seconds = 0.0
        self.latency = Histogram(LATENCY_BUCKETS)
        self.tick_requests = Histogram(TICK_REQUEST_BUCKETS)
        self._window: deque[TickRecord] = deque()

    # -- recording -------------------------------------------------------------------------------------
    def request_done(self, outcome: str, seconds: float | None = None) -> None:
        with self._lock:
            self.requests[outcome] += 1
            if seconds is not None:
                self.latency.observe(seconds)

    def tick(self, *, rows: int, requests: int, images: int, seconds: float) -> None:
        now = time.perf_counter()
        with self._lock:
            self.ticks += 1
            self.rows += rows
            self.images += images
            self.tick_seconds += seconds
            self.tick_requests.observe(requests)
            self._window.append(TickRecord(now, rows, images, seconds))
            self._trim(now)

    def _trim(self, now: float) -> None:
        while self._window and self._window[0].end < now - WINDOW_S:
            self._window.popleft()

    # -- reading ---------------------------------------------------------------------------------------
    def mean_tick_s(self) -> float:
        """Mean tick duration over the window (0.05 s before the first tick)."""
        with self._lock:
            ticks = list(self._window)
        return sum(t.seconds for t in ticks) / len(ticks) if ticks else 0.05

    def window(self) -> dict[str, float]:
        """Rates and shares over the last WINDOW_S seconds (or since start, when younger)."""
        now = time.perf_counter()
        with self._lock:
            self._trim(now)
            ticks = list(self._window)
        span = min(WINDOW_S, now - self._started) or 1e-9
        return {
            "image_steps_per_s": sum(t.images for t in ticks) / span,
            "ticks_per_s": len(ticks) / span,
            "busy_ratio": min(1.0, sum(t.seconds for t in ticks) / span),
            "occupancy": (sum(t.rows for t in ticks) / (len(ticks) * self.max_batch)) if ticks else 0.0,
        }

    def render(self, waiting: int, running: int) -> str:
        """The Prometheus text exposition."""
        win = self.window()
        with self._lock:
            out = _family("difftool_requests_total", "counter", "finished or rejected requests by outcome",
                          [f'difftool_requests_total{{outcome="{k}"}} {v}' for k, v in self.requests.items()])
            out += _one("difftool_queue_length", "gauge", "requests waiting to join a tick", waiting)
            out += _one("difftool_running_requests", "gauge", "requests in the running batch", running)
            out += _one("difftool_max_batch_rows", "gauge", "network rows one tick may hold", self.max_batch)
            out += _one("difftool_ticks_total", "counter", "batched network forwards", self.ticks)
            out += _one("difftool_batch_rows_total", "counter", "network rows evaluated (guided sprites count 2)",
                        self.rows)
            out += _one("difftool_image_steps_total", "counter", "sprite sampling steps advanced", self.images)
            out += _one("difftool_tick_seconds_total", "counter", "seconds spent inside ticks", self.tick_seconds)
            out += _one("difftool_batch_occupancy", "gauge",
                        f"mean rows per tick / max batch, last {WINDOW_S:g} s", win["occupancy"])
            out += _one("difftool_worker_busy_ratio", "gauge", f"share of the last {WINDOW_S:g} s spent in ticks",
                        win["busy_ratio"])
            out += _one("difftool_steps_per_second", "gauge", f"sprite sampling steps per second, last {WINDOW_S:g} s",
                        win["image_steps_per_s"])
            out += _one("difftool_ticks_per_second", "gauge", f"batched forwards per second, last {WINDOW_S:g} s",
                        win["ticks_per_s"])
            out += _family("difftool_request_seconds", "histogram", "latency of completed requests (submit to result)",
                           self.latency.lines("difftool_request_seconds"))
            out += _family("difftool_tick_requests", "histogram", "requests sharing one batched forward",
                           self.tick_requests.lines("difftool_tick_requests"))
        return "\n".join(out) + "\n"


def _family(name: str, kind: str, help_text: str, samples: list[str]) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples]


def _one(name: str, kind: str, help_text: str, value: float) -> list[str]:
    return _family(name, kind, help_text, [f"{name} {_num(value)}"])


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


def parse(text: str) -> dict[str, float]:
    """Sample name (with labels) -> value, from an exposition (for tests and the load test)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out
