"""Search quality end to end: a tiny CLIP trained for seconds must rank the right colour first."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from imgsearch.cli import app
from tests.tinyclip import COLOURS, shape_image


def test_text_search_ranks_the_queried_colour_and_shape_first(tmp_path: Path, trained_model_dir: Path) -> None:
    root = tmp_path / "shapes"
    root.mkdir()
    for colour in COLOURS:
        for i in range(5):
            shape = "square" if i % 2 else "circle"
            shape_image(colour, shape, size=96, seed=100 + i).save(root / f"{colour}-{i}.{'png' if i % 2 else 'jpg'}")
    runner = CliRunner()
    lib = tmp_path / "lib"
    indexed = runner.invoke(app, ["index", str(root), "-m", f"local-dir:{trained_model_dir}", "-L", str(lib)])
    assert indexed.exit_code == 0, indexed.output
    for colour in COLOURS:
        for shape, count in (("square", 2), ("circle", 3)):  # i odd: squares (2 each), i even: circles (3 each)
            out = runner.invoke(app, ["search", f"a photo of a {colour} {shape}", "-L", str(lib), "--json",
                                      "-k", str(count)])
            top = sorted(Path(json.loads(line)["path"]).stem for line in out.stdout.splitlines())
            expected = sorted(f"{colour}-{i}" for i in range(5) if (i % 2 == 1) == (shape == "square"))
            assert top == expected, (colour, shape, top)
