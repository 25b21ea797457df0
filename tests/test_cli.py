"""The real CLI in-process (typer's CliRunner) with a tiny open_clip model loaded through local-dir:."""

from __future__ import annotations

import json
import re
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imgsearch.cli import app
from tests.factories import write_photo
from tests.tinyclip import write_model

runner = CliRunner()


def cli(*args: str | Path, env: dict | None = None):
    return runner.invoke(app, [str(a) for a in args], env=env)


@pytest.fixture
def pics(tmp_path: Path, photos_dir: Path) -> Path:
    root = tmp_path / "pics"
    shutil.copytree(photos_dir, root / "real")
    write_photo(root / "made" / "red.png", "red", size=(80, 60))
    write_photo(root / "made" / "blue.jpg", "blue", size=(60, 80), fmt="JPEG")
    return root


@pytest.fixture
def indexed(tmp_path: Path, pics: Path, tiny_model_dir: Path) -> Path:
    lib = tmp_path / "lib"
    result = cli("index", pics, "--model", f"local-dir:{tiny_model_dir}", "--library", lib, "--workers", "0")
    assert result.exit_code == 0, result.output
    return lib


def test_index_prints_one_line_summary_and_rerun_encodes_nothing(indexed: Path, pics: Path) -> None:
    again = cli("index", pics, "--library", indexed, "--workers", "0")  # the library remembers its model
    assert again.exit_code == 0, again.output
    assert "0 new, 0 changed, 0 moved, 8 unchanged, 0 removed, 0 skipped; encoded 0" in again.stderr
    assert again.stdout == ""


def test_first_index_summary(tmp_path: Path, pics: Path, tiny_model_dir: Path) -> None:
    result = cli("index", pics, "-m", f"local-dir:{tiny_model_dir}", "-L", tmp_path / "lib", "--workers", "2")
    assert result.exit_code == 0, result.output
    assert "Indexed: 8 new, 0 changed, 0 moved, 0 unchanged, 0 removed, 0 skipped; encoded 8" in result.stderr
    assert "8 photo(s) searchable" in result.stderr


def test_search_json_paths_and_table(indexed: Path, pics: Path) -> None:
    result = cli("search", "a red thing", "-L", indexed, "--json", "-k", "5")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5]
    assert all(set(r) == {"path", "score", "rank", "id"} and Path(r["path"]).is_file() for r in rows)
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)
    paths0 = cli("search", "a red thing", "-L", indexed, "--paths", "-0", "-k", "5")
    assert paths0.stdout.split("\0")[:-1] == [r["path"] for r in rows] and paths0.stdout.endswith("\0")
    lines = cli("search", "a red thing", "-L", indexed, "--paths", "-k", "5").stdout.splitlines()
    assert lines == [r["path"] for r in rows]
    table = cli("search", "a red thing", "-L", indexed, "-k", "2").stdout.splitlines()
    assert table[0].split() == ["#", "score", "path"]
    assert table[1].split()[0] == "1" and table[1].endswith(rows[0]["path"])


def test_search_with_marks_more_like_and_fewer_like(indexed: Path) -> None:
    rows = [json.loads(line) for line in cli("search", "a red thing", "-L", indexed, "--json", "-k", "8").stdout.splitlines()]
    liked, unliked = rows[-1], rows[1]
    again = cli("search", "a red thing", "-L", indexed, "--json", "-k", "8", "--like", liked["id"], "--unlike",
                unliked["id"])
    assert again.exit_code == 0, again.output
    ids = [json.loads(line)["id"] for line in again.stdout.splitlines()]
    assert unliked["id"] not in ids and liked["id"] in ids and ids.index(liked["id"]) < 7  # it moved up
    both = cli("search", "a red thing", "-L", indexed, "--like", liked["id"], "--unlike", liked["id"])
    assert both.exit_code == 2 and "marked both up and down" in both.stderr
    gone = cli("search", "a red thing", "-L", indexed, "--like", "999999")
    assert gone.exit_code != 0 and "no photo 999999" in gone.stderr


def test_search_by_image_leaves_the_query_image_out(indexed: Path, pics: Path) -> None:
    query = pics / "real" / "hat-2.jpg"
    result = cli("search", "--image", query, "-L", indexed, "--json", "-k", "7")
    assert result.exit_code == 0, result.output
    paths = [json.loads(line)["path"] for line in result.stdout.splitlines()]
    assert len(paths) == 7 and str(query) not in paths


def test_rename_encodes_nothing_and_search_shows_new_path_delete_removes(indexed: Path, pics: Path) -> None:
    old = pics / "real" / "dress-0.jpg"
    new = pics / "renamed-dress.jpg"
    old.rename(new)
    result = cli("index", "-L", indexed, "--workers", "0")
    assert "0 new, 0 changed, 1 moved, 7 unchanged, 0 removed, 0 skipped; encoded 0" in result.stderr
    found = cli("search", "--image", pics / "real" / "dress-1.jpg", "-L", indexed, "--paths", "-k", "10").stdout
    assert str(new) in found.splitlines() and str(old) not in found
    new.unlink()
    result = cli("index", "-L", indexed, "--workers", "0")
    assert "1 removed" in result.stderr
    assert str(new) not in cli("search", "dress", "-L", indexed, "--paths", "-k", "10").stdout


def test_status_text_json_and_skipped(indexed: Path, pics: Path) -> None:
    (pics / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    cli("index", "-L", indexed, "--workers", "0")
    text = cli("status", "-L", indexed)
    assert text.exit_code == 0, text.output
    assert f"{pics}  (8 images)" in text.stdout and "8 indexed, 1 skipped" in text.stdout
    assert re.search(r"index IDMap2,Flat, recall@10 1.000, 8 vectors, [\d.]+ kB in RAM, [\d.]+ kB on disk, fresh",
                     text.stdout) and "dim 32" in text.stdout
    assert re.search(r"1 skipped; on this machine \(PyTorch [\d.]+ cpu fp32\)$", text.stdout.rstrip())
    data = json.loads(cli("status", "-L", indexed, "--json").stdout)
    assert (data["indexed"], data["skipped"], data["models"][0]["vectors"]) == (8, 1, 8)
    assert data["last_run"]["skipped"] == 1 and data["last_run"]["status"] == "done"
    skipped = cli("status", "-L", indexed, "--skipped")
    assert skipped.stdout.startswith(f"{pics / 'broken.jpg'}\t") and "cannot decode" in skipped.stdout


@pytest.mark.parametrize("args,code,message", [
    (["search", "   "], 2, "empty query"),
    (["search"], 2, "give a query"),
    (["search", "x", "--image", "a.jpg"], 2, "query image a.jpg does not exist"),
    (["search", "beach", "+"], 2, "ends with an operator"),
    (["search", "+", "beach"], 2, "'+' needs a term before and after it"),
    (["search", "beach", "-", "-", "sea"], 2, "'-' needs a term before and after it"),
    (["search", "2:"], 2, "empty query term"),
    (["search", "dog", "--after", "last week"], 2, "--after 'last week' is not a date"),
    (["search", "dog", "--ext", "j*g"], 2, "--ext 'j*g' is not a file extension"),
    (["search", "dog", "--sort", "size"], 2, "--sort must be one of score, date, path"),
    (["search", "dog", "--min-score", "1.5"], 2, "--min-score is a cosine similarity"),
    (["search", "dog", "--offset", "-1"], 2, "--offset must be 0 or more"),
    (["search", "x", "--json", "--paths"], 2, "cannot be combined"),
    (["search", "x", "-k", "0"], 2, "--top must be between 1"),
    (["search", "--image", "/no/such.jpg"], 2, "does not exist"),
    (["index", "/no/such/folder"], 2, "/no/such/folder does not exist"),
])
def test_usage_errors(indexed: Path, args: list[str], code: int, message: str) -> None:
    result = cli(*args, "-L", indexed)
    assert result.exit_code == code, result.output
    assert message in result.stderr and "Traceback" not in result.output


def test_runtime_errors_exit_1_with_the_fix(tmp_path: Path, pics: Path) -> None:
    missing = cli("search", "dog", "-L", tmp_path / "none")
    assert missing.exit_code == 1 and "no imgsearch library" in missing.stderr and "imgsearch index" in missing.stderr
    (tmp_path / "empty").mkdir()
    made = cli("index", tmp_path / "empty", "-L", tmp_path / "lib", "-m", "local-dir:/nowhere")
    assert made.exit_code == 1 and "model folder not found: /nowhere" in made.stderr
    nothing = cli("search", "dog", "-L", tmp_path / "lib")
    assert nothing.exit_code == 1 and "nothing is indexed" in nothing.stderr
    busy = cli("index", pics, "-L", pics)  # a photo folder is not a library
    assert busy.exit_code == 1 and "not empty and holds no imgsearch library" in busy.stderr


def test_default_model_offline_fails_fast_with_the_fix(tmp_path: Path, pics: Path) -> None:
    result = cli("index", pics, "-L", tmp_path / "lib")
    assert result.exit_code == 1
    assert "ViT-B-32 (pretrained 'laion2b_s34b_b79k')" in result.stderr and "local-dir:" in result.stderr
    assert list(pics.rglob("*"))  # nothing touched


def test_changed_local_weights_are_detected(tmp_path: Path, pics: Path) -> None:
    model = write_model(tmp_path / "m", seed=1)
    lib = tmp_path / "lib"
    assert cli("index", pics, "-m", f"local-dir:{model}", "-L", lib, "--workers", "0").exit_code == 0
    write_model(model, seed=2)
    result = cli("search", "dog", "-L", lib)
    assert result.exit_code == 1 and "changed since this library was indexed" in result.stderr


def test_library_from_environment_and_db_upgrade(indexed: Path) -> None:
    env = {"IMGSEARCH_LIBRARY": str(indexed)}
    assert cli("search", "dog", "--paths", env=env).stdout.count("\n") == 8
    up = cli("db", "upgrade", env=env)
    assert up.exit_code == 0 and "already at schema" in up.stderr
    from imgsearch.store import engine as db

    engine = db.make_engine(indexed / "library.db")
    db.downgrade(engine, "base")
    engine.dispose()
    refused = cli("search", "dog", env=env)
    assert refused.exit_code == 1 and "imgsearch db upgrade" in refused.stderr
    up = cli("db", "upgrade", env=env)
    assert up.exit_code == 0 and "Backed up to" in up.stderr and list(indexed.glob("library.db.bak-*"))
    assert cli("status", env=env).exit_code == 0


def test_html_contact_sheet_copy_to_and_export(indexed: Path, tmp_path: Path) -> None:
    sheet = tmp_path / "sheet.html"
    result = cli("search", "a red thing", "-L", indexed, "-k", "3", "--html", sheet, "--copy-to", tmp_path / "sel")
    assert result.exit_code == 0, result.output
    page = sheet.read_text()
    assert page.count("<figure>") == 3 and page.count("data:image/jpeg;base64,") == 3
    assert len(list((tmp_path / "sel").iterdir())) == 3 and "Copied 3 file(s)" in result.stderr
    exported = cli("export", tmp_path / "vec", "-L", indexed)
    assert exported.exit_code == 0, exported.output
    assert {p.name for p in (tmp_path / "vec").iterdir()} == {"vectors.npy", "ids.npy", "paths.jsonl", "model.json"}


def test_filters_and_min_score_from_the_cli(indexed: Path, pics: Path) -> None:
    made = cli("search", "thing", "-L", indexed, "--in", pics / "made", "--paths", "-k", "10")
    assert sorted(made.stdout.splitlines()) == sorted(str(p) for p in (pics / "made").iterdir())
    none = cli("search", "thing", "-L", indexed, "--min-score", "1.0")
    assert none.exit_code == 0 and none.stdout == "" and "No results at or above --min-score" in none.stderr


def test_repeated_query_needs_no_model(indexed: Path) -> None:
    import subprocess
    import sys

    assert cli("search", "a blue thing", "-L", indexed).exit_code == 0  # encodes and caches the text
    code = ("import sys; from imgsearch.cli import app\n"
            f"try:\n    app(['search', 'a blue thing', '-L', {str(indexed)!r}, '--paths'])\n"
            "except SystemExit as e:\n    assert e.code in (0, None), e.code\n"
            "print('torch loaded:', 'torch' in sys.modules, 'open_clip loaded:', 'open_clip' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr
    assert "torch loaded: False open_clip loaded: False" in out.stdout
    assert len([line for line in out.stdout.splitlines() if line.startswith("/")]) == 8


def test_bad_folder_creates_no_library(tmp_path: Path) -> None:
    result = cli("index", tmp_path / "typo", "-L", tmp_path / "lib")
    assert result.exit_code == 2 and "does not exist" in result.stderr
    assert not (tmp_path / "lib").exists()
