"""`imgsearch doctor`: what this install can read and run, and what to install for the rest.

Only looks: imports nothing heavy it can avoid (PyTorch only when installed, to ask about CUDA), downloads
nothing, touches no library.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from imgsearch.config import DEFAULT_MODEL, DEFAULT_PRETRAINED
from imgsearch.images import formats
from imgsearch.models import runtimes, sources


@dataclass(frozen=True)
class Check:
    area: str  # "decoders", "runtimes" or "models"
    name: str
    ok: bool
    detail: str  # what is there (a version, a folder), or what is missing
    fix: str | None = None  # what to run for it, when not ok


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def _decoders() -> list[Check]:
    out = []
    for f in formats.FORMATS:
        if f.install is None:  # Pillow's own formats: always there
            continue
        dist = f.dist
        ok = f.installed
        exts = " ".join(sorted(f.extensions)[:6]) + (" ..." if len(f.extensions) > 6 else "")
        out.append(Check("decoders", f.name, ok, f"{dist} {_version(dist)} ({exts})" if ok else f"not installed ({exts})",
                         None if ok else f.install))
    return out


def _runtimes() -> list[Check]:
    out = []
    for runtime in reversed(runtimes.EXPORTED):
        info = runtimes.RUNTIME_TABLE[runtime]
        ok = runtimes.installed(runtime)
        out.append(Check("runtimes", info.label, ok, f"{info.dist} {_version(info.dist)}" if ok else "not installed",
                         None if ok else f"pip install {' '.join(info.runs)}"))
    torch_ok = runtimes.torch_installed()
    out.append(Check("runtimes", "PyTorch", torch_ok,
                     f"torch {_version('torch')}, open_clip {_version('open_clip_torch')}" if torch_ok else
                     "not installed: exports run without it; open_clip checkpoints, exporting, training and CUDA "
                     "need it", None if torch_ok else runtimes.extra_install()))
    cuda, detail = False, "needs PyTorch"
    if torch_ok:
        import torch

        cuda = torch.cuda.is_available()
        detail = (f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})" if cuda
                  else "no CUDA device seen by PyTorch: indexing encodes on the CPU")
    out.append(Check("runtimes", "CUDA", cuda, detail,
                     None if cuda else "an NVIDIA GPU with its driver, and PyTorch built for CUDA (PyPI's torch wheels "
                                       "for Linux are)"))
    return out


def _models() -> list[Check]:
    root = runtimes.default_exports_dir()
    folders = [f for f in root.glob("*/*") if f.is_dir() and not f.name.startswith(".")] if root.is_dir() else []
    size = sum(runtimes.folder_bytes(f) for f in folders)
    out = [Check("models", "exports", True, f"{len(folders)} in {root} ({size / 1e6:.1f} MB)")]
    name = f"{DEFAULT_MODEL} {DEFAULT_PRETRAINED}"
    cached = sources.cached_default()
    how = "open_clip weights" if runtimes.torch_installed() else "Immich's ONNX export"
    out.append(Check("models", "default model", cached is not None,
                     f"{name}: {how} in {cached}" if cached else
                     f"{name}: {how} not downloaded yet (~600 MB, once)",
                     None if cached else "network access, once: the first index downloads it"))
    return out


def diagnose() -> list[Check]:
    """Decoders, runtimes and models, each there or not, with the fix for what is not."""
    return _decoders() + _runtimes() + _models()
