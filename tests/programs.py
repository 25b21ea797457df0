"""Programs the tests start for real (chromium, PostgreSQL, `imgsearch serve`): starting them, and what happens when one
is missing."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest


def missing_program(what: str) -> None:
    """A program the tests start for real is missing: the test fails in CI (CI=true), where .ci/run installs it, and
    is skipped with the reason elsewhere (a contributor's machine without it)."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(what)
    pytest.skip(what)


def wait_for_url(process: subprocess.Popen, log: Path, limit_s: float = 120) -> str:
    """The address `imgsearch serve` prints once it listens (its output goes to `log`); the server's own line is
    the signal, the limit only bounds a server that never says it."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        text = log.read_text()
        if "Serving " in text:
            return text.split("Serving ", 1)[1].split(" at ", 1)[1].split()[0]
        if process.poll() is not None:
            raise AssertionError(f"imgsearch serve exited {process.returncode}: {text}")
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"imgsearch serve did not start in {limit_s:.0f} s: {log.read_text()}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(library: Path, log: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """`imgsearch serve` as a user starts it; returns once it prints its URL."""
    out = log.open("w")
    process = subprocess.Popen([sys.executable, "-m", "imgsearch", "serve", "-L", str(library), "--port",
                                str(free_port()), *extra], stdout=out, stderr=subprocess.STDOUT, text=True)
    return process, wait_for_url(process, log)
