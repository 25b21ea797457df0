"""`--help` reads as written: brackets kept, no type noise on flags, -h, --version, one meaning for -k."""

from __future__ import annotations

import re

import pytest

from imgsearch import __version__
from tests.test_cli import cli

COMMANDS = [("index",), ("search",), ("export",), ("status",), ("train",), ("classify",), ("tag",), ("eval",),
            ("dups",), ("dups", "undo"), ("db", "upgrade")]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_every_command(command: tuple[str, ...]) -> None:
    long, short = cli(*command, "--help", env={"COLUMNS": "200"}), cli(*command, "-h", env={"COLUMNS": "200"})
    assert long.exit_code == 0 and short.exit_code == 0 and long.stdout == short.stdout
    text = long.stdout
    assert "Usage:" in text and "<bool>" not in text
    assert not re.search(r"\s\.\s*$", text, re.MULTILINE), "a help text lost its [...] part"
    for line in text.splitlines():
        if re.search(r"(^|\s|,)-k\b", line):
            assert "--top" in line, f"-k means --top everywhere: {line}"


def test_bracketed_defaults_survive_in_help() -> None:
    text = " ".join(cli("index", "--help").stdout.split())  # help is wrapped to the terminal's width
    assert "[default: when CUDA is used]" in text and "[default: the library's" in text


def test_version_and_top_level_help() -> None:
    assert cli("--version").stdout.strip() == f"imgsearch {__version__}"
    top = cli("-h")
    assert top.exit_code == 0 and "index" in top.stdout and "dups" in top.stdout
