"""Running the app on uvicorn: ``serve`` for the CLI (blocks until Ctrl-C), :class:`ServerThread` to run
one in the background of a process (tests, scripts). The listening socket is bound here, so port 0 means
"a free port" and the URL printed is the real one."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from difftool.errors import DifftoolError
from difftool.runtime.pipeline import Pipeline
from difftool.service.config import ServeConfig


def make_service(artifact: str | Path, config: ServeConfig, pipe: Pipeline | None = None):
    """A :class:`~difftool.service.app.Service` for ``artifact`` (loaded with the config's backend and
    threads unless ``pipe`` is given)."""
    from difftool.service.app import Service

    if pipe is None:
        from difftool.runtime.loader import load

        pipe = load(artifact, backend=config.backend, threads=config.threads)
    return Service(pipe=pipe, config=config, artifact=str(artifact))


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise DifftoolError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _uvicorn_server(service, config: ServeConfig):
    import uvicorn

    from difftool.service.app import build_app

    uv_config = uvicorn.Config(build_app(service), log_level="warning", access_log=config.access_log,
                               timeout_graceful_shutdown=int(max(1, config.graceful_s)), lifespan="on")
    return uvicorn.Server(uv_config)


def serve(service, config: ServeConfig, announce: Callable[[str], None] = print) -> None:
    """Listen on the config's host and port until interrupted; ``announce`` gets the startup line."""
    sock = bind(config.host, config.port)
    server = _uvicorn_server(service, config)
    announce(f"difftool serve: {url_of(sock)}  (API docs {url_of(sock)}/docs)\nmodel: {service.describe()}")
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its graceful shutdown: a normal stop
        announce("difftool serve: stopped")
    finally:
        sock.close()


class ServerThread:
    """``with ServerThread(service, config) as url:`` runs the server on a free loopback port (or the
    config's port) in a background thread and stops it, and its scheduler, on exit."""

    def __init__(self, service, config: ServeConfig):
        self.service, self.config = service, config
        self.sock = bind(config.host, config.port)
        self.url = url_of(self.sock)
        self._server = _uvicorn_server(service, config)
        self._thread = threading.Thread(target=self._run, name="difftool-serve", daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[self.sock]))
        except BaseException as exc:  # reported by start()
            self._error = exc

    def start(self, timeout: float = 30.0) -> str:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                raise DifftoolError(f"the server did not start: {self._error!r}")
            if time.monotonic() > deadline:
                raise DifftoolError(f"the server did not start within {timeout:g} s")
            time.sleep(0.01)
        return self.url

    def stop(self, timeout: float = 30.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        self.sock.close()
        if self._thread.is_alive():
            raise DifftoolError(f"the server did not stop within {timeout:g} s")

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
