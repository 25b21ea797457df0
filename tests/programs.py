"""Programs the tests start for real (chromium, PostgreSQL): what happens when one is missing."""

from __future__ import annotations

import os

import pytest


def missing_program(what: str) -> None:
    """A program the tests start for real is missing: the test fails in CI (CI=true), where .ci/run installs it, and
    is skipped with the reason elsewhere (a contributor's machine without it)."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(what)
    pytest.skip(what)
