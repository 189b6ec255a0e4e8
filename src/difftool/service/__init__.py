"""``difftool serve``: the model behind an HTTP API, with step-level batching of concurrent requests.

* :mod:`~difftool.service.config`: typed limits and knobs (:class:`ServeConfig`).
* :mod:`~difftool.service.schemas`: request validation (per-field errors) and the adapter onto
  ``difftool generate``'s request builder.
* :mod:`~difftool.service.scheduler`: one worker thread owns the network; every tick it batches the rows of
  every running request, each at its own step, into one forward.
* :mod:`~difftool.service.app`: the Starlette routes; :mod:`~difftool.service.server`: uvicorn.
* :mod:`~difftool.service.metrics`: Prometheus text; :mod:`~difftool.service.docs`: ``GET /docs``.

Starlette and uvicorn come with the ``serve`` extra (``pip install 'difftool[serve]'``); nothing here
imports them until the app is built.
"""

from __future__ import annotations

import importlib.util

from difftool.errors import MissingDependency

EXTRA_PACKAGES = ("starlette", "uvicorn")


def require_extra() -> None:
    """MissingDependency (one line: how to install) unless the serve extra is installed."""
    for package in EXTRA_PACKAGES:
        if importlib.util.find_spec(package) is None:
            raise MissingDependency(package, "serve", "difftool serve")
