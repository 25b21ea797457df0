"""The `imgsearch` command: parse, call the library, render. The only package that prints or exits.

app.py holds the typer app and what commands share; each module beside it adds one group of
commands to it; render.py turns results into text.
"""

from __future__ import annotations

from imgsearch.cli import dups, index, models, search, status  # noqa: F401 (each registers its commands)
from imgsearch.cli.app import app, main

__all__ = ["app", "main"]
