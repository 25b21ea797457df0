"""Do the near-exact groups depend on the model? Index one folder with several models and compare `dups`.

Each model indexes the same photos into its own library; `imgsearch dups` (exact and near tiers, the defaults) runs
in each. The groups are printed per model, then whether they are the same everywhere, and the photos of every
group, to look at. The models: tiny CLIPs with random weights (two seeds) and ViT-B-32 with random weights (the
architecture of the default model; pretrained weights cannot be downloaded here), plus any `--model` given.

    python bench/dups_models.py [--folder ../shared/data/clothing] [--limit N] [--model local-dir:DIR ...]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CLOTHING = Path(__file__).resolve().parents[2] / "shared" / "data" / "clothing"


def vit_b_32_random(folder: Path) -> Path:
    """ViT-B-32 with random weights, as an open_clip local folder (config + safetensors)."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32")
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"model_cfg": open_clip.get_model_config("ViT-B-32"),
           "preprocess_cfg": {k: (list(v) if isinstance(v, tuple) else v) for k, v in model.visual.preprocess_cfg.items()}}
    (folder / "open_clip_config.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folder", type=Path, default=CLOTHING)
    ap.add_argument("--limit", type=int, default=0, help="only the first N photos (0: all)")
    ap.add_argument("--model", action="append", default=[], help="another model (local-dir:DIR), repeatable")
    ap.add_argument("--no-vit", action="store_true", help="leave out ViT-B-32 (slow on a CPU)")
    args = ap.parse_args()

    from imgsearch.config import DupOptions, IndexSettings, ModelSpec
    from imgsearch.library import Library
    from tests.tinyclip import write_model

    work = Path(tempfile.mkdtemp(prefix="dups-models-"))
    photos = work / "photos"
    every = sorted(p for p in args.folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    for p in every[: args.limit or None]:
        dest = photos / p.relative_to(args.folder)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.symlink_to(p.resolve())
    models = {"tiny, random (seed 0)": f"local-dir:{write_model(work / 'tiny0', seed=0)}",
              "tiny, random (seed 1)": f"local-dir:{write_model(work / 'tiny1', seed=1)}"}
    if not args.no_vit:
        models["ViT-B-32, random"] = f"local-dir:{vit_b_32_random(work / 'vit')}"
    models.update({m: m for m in args.model})
    found: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for n, (name, model) in enumerate(models.items()):
        with Library.open(work / f"lib{n}", create=True) as lib:
            t0 = time.perf_counter()
            lib.index([photos], ModelSpec(model, None), IndexSettings())
            t1 = time.perf_counter()
            report = lib.duplicates(DupOptions())
            t2 = time.perf_counter()
        groups = sorted((g.tier, tuple(sorted(str(Path(m.photo.path).relative_to(photos)) for m in g.members)))
                        for g in report.groups)
        found[name] = groups
        print(f"{name}: {len(groups)} group(s) of {len(every[: args.limit or None])} photos "
              f"(index {t1 - t0:.0f} s, dups {t2 - t1:.1f} s, {report.hashed} hashed)", flush=True)
    first = next(iter(found.values()))
    same = all(g == first for g in found.values())
    print(f"the same groups with every model: {'yes' if same else 'NO'}")
    for tier, members in sorted({g for gs in found.values() for g in gs}):
        where = [name for name, gs in found.items() if (tier, members) in gs]
        print(f"  {tier}: {' = '.join(members)}   [{', '.join(where)}]")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
