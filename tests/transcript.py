"""A scripted CLI session (index, search with filters, dups, tag, status) whose output is recorded.

`tests/test_transcript.py` compares it with `tests/data/cli_session.txt`, so a refactoring that
changes what a user sees fails loudly; regenerate the file on purpose with
`python -m tests.transcript > tests/data/cli_session.txt` when a change of output is intended.
Scores and timings are masked (they move with the torch build); ranks, paths and counts are not.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from PIL import Image

SESSION = [
    ["index", "{pics}", "-m", "local-dir:{model}", "-L", "{lib}", "--workers", "0"],
    ["search", "a photo of a red square", "-L", "{lib}", "-k", "4"],
    ["search", "a photo of a blue circle", "-L", "{lib}", "--in", "{pics}/b", "--ext", "png", "--json"],
    ["search", "a photo of a green circle", "-L", "{lib}", "--after", "2021", "--before", "2022-06", "--paths"],
    ["search", "a photo of a yellow square", "-L", "{lib}", "--camera", "canon", "--sort", "path"],
    ["search", "a photo of a red circle", "+", "0.5:a photo of a blue circle", "-", "a photo of a green square",
     "-L", "{lib}", "-k", "3", "--min-score", "-0.5"],
    ["dups", "-L", "{lib}"],
    ["dups", "-L", "{lib}", "--tier", "exact", "--json"],
    ["dups", "-L", "{lib}", "--tier", "exact", "--move-to", "{tmp}/aside"],
    ["tag", "--labels", "red,green,blue,yellow", "-L", "{lib}"],
    ["search", "a photo of a square", "-L", "{lib}", "--tag", "red", "-k", "3"],
    ["status", "-L", "{lib}"],
    ["status", "-L", "{lib}", "--skipped"],
    ["search", "   ", "-L", "{lib}"],
    ["search", "red", "-L", "{lib}", "-k", "0"],
    ["search", "red", "-L", "{tmp}/nolib"],
]


def make_photos(root: Path) -> None:
    """Coloured shapes in two folders, with EXIF dates and cameras, one exact and one resized copy,
    and one broken file."""
    from tests.tinyclip import COLOURS, shape_image

    for n, colour in enumerate(COLOURS):
        for i, shape in enumerate(("square", "circle")):
            folder = root / ("a" if i == 0 else "b")
            folder.mkdir(parents=True, exist_ok=True)
            img = shape_image(colour, shape, size=96, seed=10 * n + i)
            exif = Image.Exif()
            exif[271] = "Canon" if n % 2 == 0 else "Nikon"
            exif.get_ifd(0x8769)[36867] = datetime(2020 + n, 1 + 3 * i, 5, 12, 0, 0).strftime("%Y:%m:%d %H:%M:%S")
            fmt = "PNG" if i else "JPEG"
            img.save(folder / f"{colour}-{shape}.{fmt.lower().replace('jpeg', 'jpg')}", format=fmt, exif=exif.tobytes())
    shutil.copy2(root / "a" / "red-square.jpg", root / "b" / "red-square-copy.jpg")
    Image.open(root / "b" / "blue-circle.png").resize((80, 80)).save(root / "a" / "blue-circle-small.png")
    (root / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")


def run_session(tmp: Path, model: Path) -> str:
    """Every command of SESSION through the real CLI in-process; the combined, masked transcript."""
    from typer.testing import CliRunner

    from imgsearch.cli import app

    pics, lib = tmp / "pics", tmp / "lib"
    make_photos(pics)
    runner = CliRunner()
    out = []
    for args in SESSION:
        argv = [a.format(pics=pics, lib=lib, model=model, tmp=tmp) for a in args]
        result = runner.invoke(app, argv)
        out.append(f"$ imgsearch {' '.join(args)}\n[exit {result.exit_code}]\n"
                   f"--- stdout\n{result.stdout}--- stderr\n{result.stderr}")
    return mask("".join(out), tmp, model)


def mask(text: str, tmp: Path, model: Path) -> str:
    text = text.replace(str(model), "{model}").replace(str(tmp), "{tmp}")
    text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "<time>", text)  # run times (photo dates are not printed)
    text = re.sub(r"sha256 [0-9a-f]{12}", "sha256 <hash>", text)
    return re.sub(r"-?\d+\.\d+", "<num>", text)


def main() -> None:
    from tests.tinyclip import train_colours, write_model

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        model = write_model(tmp / "model", model=train_colours(300, seed=0))
        work = tmp / "w"
        work.mkdir()
        sys.stdout.write(run_session(work, model))


if __name__ == "__main__":
    os.environ["IMGSEARCH_RUNTIME"] = "torch"  # as under pytest (tests/conftest.py): the session is PyTorch's
    main()
