"""Shared test data location and a skip helper for tests that need it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DIFFTOOL_SHARED_DATA") or REPO_ROOT.parent / "shared" / "data")


def shared_path(*subpaths: str) -> Path:
    """A path inside the shared data folder (it may not exist)."""
    return SHARED_DATA.joinpath(*subpaths)


def requires_shared(*subpaths: str) -> pytest.MarkDecorator:
    """Skip the test (or module, via ``pytestmark``) when the shared data path is missing."""
    path = shared_path(*subpaths)
    return pytest.mark.skipif(
        not path.exists(), reason=f"shared data not found at {path} (clone beside ../shared to run)"
    )
