"""What a user's install costs: virtualenv size and install time of `pip install .` (no PyTorch) against
`pip install ".[torch]"`, each in a fresh virtualenv, in one run (pip's cache warm for both: the second figure is
not helped by the first, they share no wheels but pip's own). Also checks that torch cannot be imported from the
plain one.

    python bench/install_size.py
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6


def install(work: Path, target: str) -> tuple[float, float, bool]:
    venv = work / target.replace(".", "plain").replace("[", "-").replace("]", "")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    start = time.perf_counter()
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", target], check=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    has_torch = subprocess.run([str(venv / "bin" / "python"), "-c", "import torch"], capture_output=True).returncode == 0
    return folder_mb(venv), seconds, has_torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", default=".,.[torch]", help="comma-separated pip targets, in the clone")
    a = ap.parse_args()
    print(f"# {date.today()} {platform.machine()} {platform.python_version()}, {sys.platform}")
    with tempfile.TemporaryDirectory() as d:
        rows = [(t, *install(Path(d), t)) for t in a.targets.split(",")]
    base = rows[0][1]
    print(f"{'pip install':<16} {'venv MB':>9} {'x plain':>8} {'install s':>10}  torch")
    for target, mb, seconds, has_torch in rows:
        print(f"{target:<16} {mb:>9.0f} {mb / base:>8.2f} {seconds:>10.1f}  {'yes' if has_torch else 'no'}")


if __name__ == "__main__":
    main()
