"""What a user sees in a scripted session stays what it was, unless changed on purpose (see tests/transcript.py)."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from tests.transcript import run_session

GOLDEN = Path(__file__).parent / "data" / "cli_session.txt"


def test_cli_session_prints_what_it_printed_before(tmp_path: Path, trained_model_dir: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGSEARCH_CACHE", str(tmp_path / "cache"))  # a new user's: no exports other tests made
    got = run_session(tmp_path, trained_model_dir)
    want = GOLDEN.read_text()
    diff = "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True), "recorded", "now"))
    assert got == want, f"the CLI's output changed (regenerate {GOLDEN.name} if intended):\n{diff}"
