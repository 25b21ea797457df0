"""Train a CLIP from scratch on ../shared/data/clothing/train and measure it on validation/.

Runs the real commands (`imgsearch train`, `imgsearch eval`) and, as the baseline in the same run,
evaluates the same architecture with its random initial weights (epoch 0), so every figure has
chance-level company. `--shrink N` first writes a copy with the shorter side at N px (to carry
the set to another machine; training runs at 64 px, so this changes little).

    python bench/train_clothing.py [--epochs N] [--shrink 160] [--workers 12]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLOTHING = ROOT.parent / "shared" / "data" / "clothing"
TEMPLATE = "a photo of a {label}"


def shrink(src: Path, dest: Path, side: int) -> Path:
    from PIL import Image

    for p in src.rglob("*.jpg"):
        out = dest / p.relative_to(src)
        if out.exists():
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        img = Image.open(p)
        img.draft("RGB", (side, side))
        img = img.convert("RGB")
        scale = side / min(img.size)
        img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS).save(out, quality=90)
    return dest


def cli(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "imgsearch", *args], check=True, capture_output=True, text=True,
                          cwd=ROOT).stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=CLOTHING)
    ap.add_argument("--shrink", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=None, help="default: the command's own default")
    ap.add_argument("--arch", default="small")
    ap.add_argument("--workers", default="-1")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    data = args.data
    if args.shrink:
        data = shrink(data, ROOT / "data" / "generated" / f"clothing{args.shrink}", args.shrink)
    work = Path(tempfile.mkdtemp(prefix="train-clothing-"))
    out = args.out or work / "model"
    t0 = time.perf_counter()
    epochs = ["--epochs", str(args.epochs)] if args.epochs else []
    subprocess.run([sys.executable, "-m", "imgsearch", "train", str(data / "train"), "--out", str(out), "--arch",
                    args.arch, *epochs, "--workers", args.workers], check=True, cwd=ROOT)
    train_s = time.perf_counter() - t0
    # the baseline: the same architecture with random weights (what epoch 0 would score)
    import open_clip
    from safetensors.torch import save_file

    cfg = json.loads((out / "open_clip_config.json").read_text())
    base = work / "random"
    base.mkdir()
    (base / "open_clip_config.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in open_clip.CLIP(**cfg["model_cfg"]).state_dict().items()},
              str(base / "open_clip_model.safetensors"))
    print(f"trained {args.arch} for {args.epochs or 'the default'} epochs in {train_s:.0f} s")
    for name, model in (("random init", base), ("trained", out)):
        for templates in ([TEMPLATE], []):
            extra = [a for t in templates for a in ("--template", t)]
            metrics = json.loads(cli("eval", str(data / "validation"), "-m", f"local-dir:{model}", "--json",
                                     "--workers", args.workers, *extra))["metrics"]
            label = f"{name}, {'one template' if templates else 'default 6-template ensemble'}"
            print(f"{label:<48} " + "  ".join(f"{k} {v:.3f}" for k, v in metrics.items()))


if __name__ == "__main__":
    main()
