"""The commit a benchmark compares with, checked out beside this tree for the length of a run."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@contextmanager
def checked_out(rev: str, where: Path) -> Iterator[Path]:
    """`rev` in a detached git worktree at `where` (its own imgsearch, tests and benches), removed afterwards."""
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "-q", "--detach", str(where), rev], check=True)
    try:
        yield where
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(where)], check=False)
