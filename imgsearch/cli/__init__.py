"""The `imgsearch` command: parse, call the library, render. The only package that prints or exits.

app.py holds the typer app and what commands share; each module beside it adds one group of
commands to it; render.py turns results into text.
"""

from __future__ import annotations

# each registers its commands, in the order `--help` lists them
from imgsearch.cli import index, search, status, dups, models, serve  # noqa: F401 (registers the commands; this order is the --help order)
from imgsearch.cli.app import app, main

__all__ = ["app", "main"]
