"""The shape of the code: core messages name parameters (never CLI flags), the public API is complete,
and the layers hold (the import-linter contract in pyproject.toml; `lint-imports` runs in CI)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import imgsearch
from imgsearch.cli.app import flag_for
from imgsearch.errors import ImgSearchError, UsageError

ROOT = Path(__file__).parent.parent
FRONT_ENDS = ("cli", "web")  # the only packages that may speak in flags
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
OTHER_TOOL = re.compile(r"`(?!imgsearch)[^`]*`")  # another program's command line (`ray start --head`) keeps its flags


def _core_modules() -> list[Path]:
    files = sorted((ROOT / "imgsearch").rglob("*.py")) + sorted((ROOT / "indexer").rglob("*.py"))
    return [f for f in files if not set(f.relative_to(ROOT).parts[1:2]) & set(FRONT_ENDS)]


def _message_strings(tree: ast.AST) -> list[tuple[int, str]]:
    """Every string literal (f-string parts included) that is not a docstring."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def test_no_core_message_names_a_cli_flag() -> None:
    found = [f"{path.relative_to(ROOT)}:{line}: {text!r}" for path in _core_modules()
             for line, text in _message_strings(ast.parse(path.read_text()))
             if FLAG.search(OTHER_TOOL.sub("", text))]
    assert found == [], "core strings naming flags (use {param} and UsageError(..., param)):\n" + "\n".join(found)


def test_the_scan_would_catch_a_flag() -> None:
    tree = ast.parse('def f():\n    """--doc is fine"""\n    raise UsageError(f"--top must be {n}")\n')
    assert [t for _, t in _message_strings(tree) if FLAG.search(t)] == ["--top must be "]
    assert FLAG.search(OTHER_TOOL.sub("", "run `imgsearch index --rebuild`"))
    assert not FLAG.search(OTHER_TOOL.sub("", "start it (`ray start --head`)"))


def test_parameters_render_as_flags_for_the_cli_and_as_names_for_the_api() -> None:
    exc = UsageError("{param} must be between 1 and 10, or leave out {param:min_score}", "k")
    assert exc.message == "k must be between 1 and 10, or leave out min_score"
    assert exc.render(flag_for) == "--top must be between 1 and 10, or leave out --min-score"
    assert exc.code == "usage" and exc.exit_code == 2 and exc.param == "k"


def test_every_error_kind_has_its_own_stable_code() -> None:
    from imgsearch import errors

    kinds = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, ImgSearchError)]
    codes = {c.code for c in kinds}
    for code in ("usage", "not_found", "busy", "disk_full", "read_only", "network", "corrupt", "schema",
                 "model_unavailable", "bad_image"):
        assert code in codes


def test_public_api_lists_every_lazy_name() -> None:
    assert imgsearch.__all__ == sorted(imgsearch._LAZY)


def test_import_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and "0 broken" in out.stdout, out.stdout + out.stderr
