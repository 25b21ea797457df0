"""Random-weight open_clip models saved in open_clip's local-dir format, for benchmarks."""

from __future__ import annotations

import json
from pathlib import Path


def save_random_model(arch: str, folder: Path) -> Path:
    """Random weights for `arch` with its real preprocessing, as open_clip_config.json + safetensors."""
    import open_clip
    from safetensors.torch import save_file

    if (folder / "open_clip_model.safetensors").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    model = open_clip.create_model(arch)
    cfg = open_clip.get_model_config(arch)
    pp = model.visual.preprocess_cfg
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {
        "mean": list(pp["mean"]), "std": list(pp["std"]), "interpolation": pp["interpolation"],
        "resize_mode": pp["resize_mode"]}}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return folder
