"""The Encoder protocol and OpenClipEncoder. torch and open_clip are imported here only, lazily."""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import logging
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Protocol
from urllib.parse import urlparse

import numpy as np

from imgsearch.config import ModelSpec
from imgsearch.errors import ModelLoadError
from imgsearch.images.decode import Geometry

if TYPE_CHECKING:
    import torch

LOCAL_DIR = "local-dir:"
HF_HUB = "hf-hub:"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")
HUB_PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class ModelInfo:
    """Who made a vector: enough to reload the model and to tell two models apart."""

    key: str  # identity; equal keys give comparable vectors
    name: str  # open_clip model name as loaded (absolute local-dir: path for local dirs)
    pretrained: str | None  # tag, or absolute checkpoint path
    checkpoint_sha256: str | None  # for local weights: what the vectors were made with
    dim: int
    geometry: Geometry
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def preprocess_signature(self) -> str:
        """JSON of everything about preprocessing that changes the vectors."""
        return json.dumps({"geometry": asdict(self.geometry), "mean": self.mean, "std": self.std}, sort_keys=True)


class Encoder(Protocol):
    """Turns images (model-sized uint8 pixels) and texts into L2-normalised float32 vectors."""

    info: ModelInfo
    batch_size: int

    def encode_pixels(self, pixels: "np.ndarray | torch.Tensor") -> np.ndarray: ...

    def encode_texts(self, texts: list[str]) -> np.ndarray: ...


def file_sha256(paths: list[Path]) -> str:
    """sha256 over the bytes of several files, in the given order."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class _Source:
    """A resolved ModelSpec: how to call open_clip and what identity the result has."""

    name: str
    pretrained: str | None
    key: str
    sha256: str | None
    from_hub: bool


def resolve_source(spec: ModelSpec) -> _Source:
    """Validate a ModelSpec without loading weights; local files are fingerprinted."""
    import open_clip  # noqa: PLC0415 (heavy; only when a model is really needed)

    name = spec.name.strip()
    if not name:
        raise ModelLoadError("empty model name: pass --model NAME (see `python -m open_clip list` for names)")
    if name.startswith(LOCAL_DIR) or (not name.startswith(HF_HUB) and Path(name).expanduser().is_dir()):
        return _local_dir_source(Path(name.removeprefix(LOCAL_DIR)).expanduser())
    if name.startswith(HF_HUB):
        return _Source(name, None, name, None, from_hub=True)
    arch = name.replace("/", "-")
    if arch not in open_clip.list_models():
        close = difflib.get_close_matches(arch, open_clip.list_models(), n=5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ModelLoadError(f"unknown open_clip model '{name}'.{hint} Or pass local-dir:DIR or hf-hub:ORG/REPO.")
    pretrained = (spec.pretrained or "").strip()
    if not pretrained:
        raise ModelLoadError(
            f"no weights given for {arch}: pass --pretrained TAG "
            f"(one of {', '.join(open_clip.list_pretrained_tags_by_model(arch))}) or --pretrained FILE."
        )
    as_path = Path(pretrained).expanduser()
    if as_path.is_file():
        path = as_path.resolve()
        sha = file_sha256([path])
        return _Source(arch, str(path), f"{arch}|sha256:{sha}", sha, from_hub=False)
    if open_clip.get_pretrained_cfg(arch, pretrained):
        return _Source(arch, pretrained, f"{arch}|{pretrained}", None, from_hub=True)
    looks_like_path = "/" in pretrained or pretrained.endswith(WEIGHT_SUFFIXES)
    if looks_like_path:
        raise ModelLoadError(f"checkpoint file not found: {as_path}")
    tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"
    raise ModelLoadError(f"'{pretrained}' is not a pretrained tag of {arch} (known: {tags}) nor an existing file.")


def _local_dir_source(path: Path) -> _Source:
    path = path.resolve()
    config = path / "open_clip_config.json"
    if not path.is_dir():
        raise ModelLoadError(f"model folder not found: {path}")
    if not config.is_file():
        raise ModelLoadError(f"{path} is not an open_clip model folder: open_clip_config.json is missing.")
    weights = sorted(p for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    if not weights:
        raise ModelLoadError(f"{path} has open_clip_config.json but no weights (*.safetensors, *.bin, *.pth).")
    sha = file_sha256([config, *weights])
    return _Source(f"{LOCAL_DIR}{path}", None, f"local-dir|sha256:{sha}", sha, from_hub=False)


@contextlib.contextmanager
def _hub_cache_only() -> Iterator[None]:
    """Make huggingface_hub answer from its cache alone (no network, no retries)."""
    from huggingface_hub import constants

    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved


def hub_reachable(timeout_s: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether a download could work: not in offline mode and the hub's host accepts a connection."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _offline_message(src: _Source, exc: Exception) -> str:
    from huggingface_hub import constants

    what = src.name + (f" (pretrained '{src.pretrained}')" if src.pretrained else "")
    arch = src.name.removeprefix(HF_HUB) if src.name.startswith(HF_HUB) else src.name
    return (
        f"cannot load model {what}: its weights are not in the Hugging Face cache ({constants.HF_HUB_CACHE}) "
        f"and the hub cannot be reached ({type(exc).__name__}). Fix: run once with internet access to download "
        f"them, or use a local copy: --model {arch} --pretrained /path/to/open_clip_model.safetensors, "
        "or --model local-dir:/path/to/dir (open_clip_config.json + weights)."
    )


def default_device() -> str:
    """CUDA when present, else CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class OpenClipEncoder:
    """An open_clip model in eval mode: fp16 on CUDA, fp32 on CPU."""

    def __init__(self, model: "torch.nn.Module", tokenizer: object, info: ModelInfo, device: str) -> None:
        import torch

        self.model = model
        self.tokenizer = tokenizer
        self.info = info
        self.device = torch.device(device)
        # open_clip's rule (get_input_dtype): images go in as fp16 under precision "fp16", whatever
        # dtype individual parameters kept.
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.batch_size = 256 if self.device.type == "cuda" else 32
        self.transfer_s = 0.0  # busy seconds, for the --verbose stage breakdown
        self.encode_s = 0.0
        shape = (1, 3, 1, 1)
        self._mean = torch.tensor(info.mean, device=self.device, dtype=torch.float32).view(shape) * 255
        self._std = torch.tensor(info.std, device=self.device, dtype=torch.float32).view(shape) * 255
        self._short_text = _short_text_supported(model) and self._short_text_agrees()
        scale = getattr(model, "logit_scale", None)  # the temperature zero-shot probabilities use
        self.logit_scale = float(scale.detach().exp()) if scale is not None else 100.0

    @classmethod
    def load(cls, spec: ModelSpec, device: str | None = None, precision: str | None = None) -> "OpenClipEncoder":
        """Load through open_clip's own path; hub weights come from the cache first, then the network.

        precision: open_clip's (default fp16 on CUDA, fp32 elsewhere; training asks for fp32).
        """
        import open_clip

        src = resolve_source(spec)
        device = device or default_device()
        precision = precision or ("fp16" if device.startswith("cuda") else "fp32")

        def create() -> "torch.nn.Module":
            # open_clip logs its own failures on the root logger; ours below say more, once.
            logging.disable(logging.ERROR)
            try:
                return open_clip.create_model(src.name, pretrained=src.pretrained, device=device,
                                              precision=precision, require_pretrained=True)
            finally:
                logging.disable(logging.NOTSET)

        try:
            if src.from_hub:
                try:
                    with _hub_cache_only():
                        model = create()
                except Exception as cached_exc:  # noqa: BLE001 (any failure here means "not cached")
                    if not hub_reachable():
                        raise ModelLoadError(_offline_message(src, cached_exc)) from cached_exc
                    model = create()
            else:
                model = create()
            tokenizer = open_clip.get_tokenizer(src.name)
        except ModelLoadError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"cannot load model {src.name}: {type(exc).__name__}: {exc}") from exc
        model.eval()
        return cls(model, tokenizer, _model_info(model, src), device)

    def encode_pixels(self, pixels: "np.ndarray | torch.Tensor") -> np.ndarray:
        """(n, H, W, 3) uint8 (numpy, or a tensor already on the device) -> (n, dim) float32, L2-normalised.

        Pixels travel as uint8 (4x less than float) and are normalised on the device.
        """
        import torch

        start = time.perf_counter()
        if isinstance(pixels, np.ndarray):
            batch = torch.from_numpy(np.require(pixels, np.uint8, ["C", "W"]))  # PIL arrays are read-only
            if self.device.type == "cuda":
                batch = batch.pin_memory().to(self.device, non_blocking=True)
                torch.cuda.current_stream(self.device).synchronize()
        else:
            batch = pixels.to(self.device)
        moved = time.perf_counter()
        batch = batch.permute(0, 3, 1, 2).float()
        batch = ((batch - self._mean) / self._std).to(self.dtype)
        with torch.inference_mode():
            features = self.model.encode_image(batch)
        out = _normalised(features)
        self.transfer_s += moved - start
        self.encode_s += time.perf_counter() - moved
        return out

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """Texts -> (n, dim) float32, L2-normalised."""
        import torch

        tokens = self.tokenizer(texts).to(self.device)
        with torch.inference_mode():
            features = self._short_text_features(tokens) if self._short_text else self.model.encode_text(tokens)
        return _normalised(features)

    def _short_text_features(self, tokens: "torch.Tensor") -> "torch.Tensor":
        """open_clip's CLIP.encode_text over the positions up to the last end-of-text token only.

        The text tower's attention is causal and pools at the end-of-text token (the highest id),
        so the padding after it cannot change the result: a 5-word query runs ~10 of 77 positions.
        """
        import torch

        m = self.model
        length = int(tokens.argmax(dim=-1).max()) + 1
        tokens = tokens[:, :length]
        cast = m.transformer.get_cast_dtype()
        x = m.token_embedding(tokens).to(cast) + m.positional_embedding[:length].to(cast)
        x = m.ln_final(m.transformer(x, attn_mask=m.attn_mask[:length, :length]))
        x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
        return m.text_projection(x) if isinstance(m.text_projection, torch.nn.Linear) else x @ m.text_projection

    def _short_text_agrees(self) -> bool:
        """Use the short path only if it reproduces encode_text on this model (checked once, at load)."""
        import torch

        tokens = self.tokenizer(["a photo of a dog on the beach", "x"]).to(self.device)
        with torch.inference_mode():
            try:
                short = self._short_text_features(tokens).float()
            except (RuntimeError, AttributeError, TypeError, IndexError):
                return False
            full = self.model.encode_text(tokens).float()
        tolerance = 1e-2 if self.dtype == torch.float16 else 1e-4
        return bool(torch.allclose(short, full, atol=tolerance * float(full.abs().max()), rtol=0))


def _short_text_supported(model: "torch.nn.Module") -> bool:
    """A plain open_clip CLIP text tower with causal attention and end-of-text (argmax) pooling."""
    from open_clip.model import CLIP

    return (isinstance(model, CLIP) and getattr(model, "text_pool_type", "argmax") == "argmax"
            and getattr(model, "attn_mask", None) is not None and getattr(model, "cls_emb", None) is None)


def _normalised(features: "torch.Tensor") -> np.ndarray:
    import torch

    return torch.nn.functional.normalize(features.float(), dim=-1).cpu().numpy().astype(np.float32, copy=False)


def describe_model(model: "torch.nn.Module", name: str = "in-memory") -> ModelInfo:
    """Geometry, normalisation and dimension of a model that is not (yet) a loadable source (training)."""
    return _model_info(model, _Source(name, None, name, None, from_hub=False))


def _model_info(model: "torch.nn.Module", src: _Source) -> ModelInfo:
    import torch

    cfg = model.visual.preprocess_cfg
    size = cfg["size"]
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    geometry = Geometry(height=int(height), width=int(width), resize_mode=cfg.get("resize_mode", "shortest"),
                        interpolation=cfg.get("interpolation", "bicubic"), fill=int(cfg.get("fill_color", 0)))
    dim = getattr(model.visual, "output_dim", None) or int(model.encode_text(torch.zeros(1, 8, dtype=torch.long)).shape[-1])
    return ModelInfo(key=src.key, name=src.name, pretrained=src.pretrained, checkpoint_sha256=src.sha256, dim=dim,
                     geometry=geometry, mean=tuple(float(x) for x in cfg["mean"]),
                     std=tuple(float(x) for x in cfg["std"]))
