"""The Encoder protocol and OpenClipEncoder (torch and open_clip are imported lazily, on first load)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from imgsearch.config import ModelSpec
from imgsearch.errors import MissingExtraError, ModelLoadError
from imgsearch.images.decode import Geometry
from imgsearch.models.sources import CONFIG_FILE, LOCAL_DIR, WEIGHT_SUFFIXES, Located, Source, locate, resolve_source

if TYPE_CHECKING:
    import torch

# open_clip's CLIP model and tokenizer: open_clip has no type information, so their attributes are not checked
ClipModel = Any
Tokenizer = Any



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
    """Turns images (model-sized uint8 pixels) and texts into L2-normalised float32 vectors. Two kinds: open_clip on
    PyTorch (OpenClipEncoder) and an export on ONNX Runtime / OpenVINO (runtimes.ExportedEncoder)."""

    info: ModelInfo
    batch_size: int
    logit_scale: float  # the temperature zero-shot probabilities use
    transfer_s: float  # busy seconds moving pixels to the device, and encoding: a run's stage breakdown
    encode_s: float

    @property
    def device(self) -> str:
        """Where it encodes: "cpu", "cuda:0", "mps"."""
        ...

    @property
    def folder(self) -> Path | None:
        """The export it runs; None for PyTorch weights."""
        ...

    def describe(self) -> str:
        """The runtime, for run reports: "PyTorch 2.14.1 cpu fp32", "OpenVINO 2026.4.1 int8"."""
        ...

    def encode_pixels(self, pixels: "np.ndarray | torch.Tensor") -> np.ndarray: ...

    def encode_texts(self, texts: list[str]) -> np.ndarray: ...


def default_device() -> str:
    """CUDA when present, then Apple's GPU (mps: untested, no Mac here), else CPU."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    return "mps" if mps is not None and mps.is_available() else "cpu"


class OpenClipEncoder:
    """An open_clip model in eval mode: fp16 on CUDA, fp32 on CPU."""

    def __init__(self, model: ClipModel, tokenizer: Tokenizer, info: ModelInfo, device: str) -> None:
        import torch

        self.model = model
        self.tokenizer = tokenizer
        self.info = info
        self.torch_device = torch.device(device)
        self.device = str(self.torch_device)
        self.folder: Path | None = None
        # open_clip's rule (get_input_dtype): images go in as fp16 under precision "fp16", whatever
        # dtype individual parameters kept.
        self.dtype = torch.float16 if self.torch_device.type == "cuda" else torch.float32
        self.batch_size = {"cuda": 256, "mps": 64}.get(self.torch_device.type, 32)
        self.transfer_s = 0.0  # busy seconds, for the --verbose stage breakdown
        self.encode_s = 0.0
        shape = (1, 3, 1, 1)
        self._mean = torch.tensor(info.mean, device=self.torch_device, dtype=torch.float32).view(shape) * 255
        self._std = torch.tensor(info.std, device=self.torch_device, dtype=torch.float32).view(shape) * 255
        self._short_text = _short_text_supported(model) and self._short_text_agrees()
        scale = getattr(model, "logit_scale", None)  # the temperature zero-shot probabilities use
        self.logit_scale = float(scale.detach().exp()) if scale is not None else 100.0
        self.open_clip_config: dict | None = None  # set by load(): the config that rebuilds the model
        self.weight_files: list[Path] = []  # set by load(): the files the weights came from

    def describe(self) -> str:
        """The runtime, for run reports: "PyTorch 2.14.1 cpu fp32"."""
        import torch

        precision = "fp16" if self.dtype == torch.float16 else "fp32"
        return f"PyTorch {torch.__version__.split('+')[0]} {self.torch_device.type} {precision}"

    @classmethod
    def load(cls, spec: ModelSpec, device: str | None = None, precision: str | None = None,
             src: Source | None = None) -> "OpenClipEncoder":
        """Load through open_clip's own path from local files; hub weights come from the cache, else the network.

        precision: open_clip's (default fp16 on CUDA, fp32 elsewhere; training asks for fp32).
        """
        from imgsearch.models.runtimes import extra_install, torch_installed

        src = src or resolve_source(spec)
        if src.exported:
            raise ModelLoadError(f"model {src.name} is an export (ONNX or OpenVINO): it cannot be loaded into PyTorch; "
                                 "leave out {param:runtime}, or give an open_clip checkpoint.", "model")
        if not torch_installed():
            raise MissingExtraError(f"model {src.name} is an open_clip checkpoint: loading it needs PyTorch and "
                                    f"open_clip ({extra_install()}), or give {{param:model}} an exported model "
                                    "(immich:NAME, or local-dir:FOLDER of an export).", "model")
        import open_clip

        found = locate(src)
        device = device or default_device()
        precision = precision or ("fp16" if device.startswith("cuda") else "fp32")
        try:
            model = open_clip.create_model(found.model_name, pretrained=found.checkpoint, device=device,
                                           precision=precision, require_pretrained=True,
                                           force_quick_gelu=found.quick_gelu,
                                           force_preprocess_cfg=found.preprocess or None)
            tokenizer = open_clip.get_tokenizer(found.model_name)
        except Exception as exc:
            raise ModelLoadError(f"cannot load model {src.name}: {type(exc).__name__}: {exc}") from exc
        model.eval()
        encoder = cls(model, tokenizer, _model_info(model, src), device)
        encoder.open_clip_config = open_clip_config(found, model)
        encoder.weight_files = weight_files(found)
        return encoder

    def encode_pixels(self, pixels: "np.ndarray | torch.Tensor") -> np.ndarray:
        """(n, H, W, 3) uint8 (numpy, or a tensor already on the device) -> (n, dim) float32, L2-normalised.

        Pixels travel as uint8 (4x less than float) and are normalised on the device.
        """
        import torch

        start = time.perf_counter()
        if isinstance(pixels, np.ndarray):
            batch = torch.from_numpy(np.require(pixels, np.uint8, ["C", "W"]))  # PIL arrays are read-only
            if self.torch_device.type == "cuda":
                batch = batch.pin_memory().to(self.torch_device, non_blocking=True)
                torch.cuda.current_stream(self.torch_device).synchronize()
        else:
            batch = pixels.to(self.torch_device)
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

        tokens = self.tokenizer(texts).to(self.torch_device)
        with torch.inference_mode():
            features = self._short_text_features(tokens) if self._short_text else self.model.encode_text(tokens)
        return _normalised(features)

    def _short_text_features(self, tokens: "torch.Tensor") -> "torch.Tensor":
        """open_clip's CLIP.encode_text over the positions up to the last end-of-text token only.

        The text tower's attention is causal and pools at the end-of-text token (the highest id),
        so the padding after it cannot change the result: a 5-word query runs ~10 of 77 positions.
        """
        return self.trimmed_text_features(tokens[:, : int(tokens.argmax(dim=-1).max()) + 1])

    def trimmed_text_features(self, tokens: "torch.Tensor") -> "torch.Tensor":
        """The short path on tokens already cut after their last end-of-text token (any length: exportable)."""
        import torch

        m = self.model
        length = tokens.shape[1]
        cast = m.transformer.get_cast_dtype()
        x = m.token_embedding(tokens).to(cast) + m.positional_embedding[:length].to(cast)
        x = m.ln_final(m.transformer(x, attn_mask=m.attn_mask[:length, :length]))
        x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
        return m.text_projection(x) if isinstance(m.text_projection, torch.nn.Linear) else x @ m.text_projection

    def _short_text_agrees(self) -> bool:
        """Use the short path only if it reproduces encode_text on this model (checked once, at load)."""
        import torch

        tokens = self.tokenizer(["a photo of a dog on the beach", "x"]).to(self.torch_device)
        with torch.inference_mode():
            try:
                short = self._short_text_features(tokens).float()
            except (RuntimeError, AttributeError, TypeError, IndexError):
                return False
            full = self.model.encode_text(tokens).float()
        tolerance = 1e-2 if self.dtype == torch.float16 else 1e-4
        return bool(torch.allclose(short, full, atol=tolerance * float(full.abs().max()), rtol=0))


def _short_text_supported(model: ClipModel) -> bool:
    """A plain open_clip CLIP text tower with causal attention and end-of-text (argmax) pooling."""
    from open_clip.model import CLIP

    return (isinstance(model, CLIP) and getattr(model, "text_pool_type", "argmax") == "argmax"
            and getattr(model, "attn_mask", None) is not None and getattr(model, "cls_emb", None) is None)


def _normalised(features: "torch.Tensor") -> np.ndarray:
    import torch

    return torch.nn.functional.normalize(features.float(), dim=-1).cpu().numpy().astype(np.float32, copy=False)


def open_clip_config(found: Located, model: ClipModel) -> dict:
    """The open_clip_config.json that rebuilds this model (what a fine-tuned copy is saved with)."""
    import open_clip

    if found.model_name.startswith(LOCAL_DIR):
        return json.loads((Path(found.model_name.removeprefix(LOCAL_DIR)) / CONFIG_FILE).read_text())
    model_cfg = dict(open_clip.get_model_config(found.model_name))
    if found.quick_gelu:
        model_cfg["quick_gelu"] = True
    pp = model.visual.preprocess_cfg
    return {"model_cfg": model_cfg, "preprocess_cfg": {k: (list(v) if isinstance(v, tuple) else v) for k, v in pp.items()}}


def weight_files(found: Located) -> list[Path]:
    """The files a located model is built from (config and weights of a folder, or a checkpoint)."""
    if found.model_name.startswith(LOCAL_DIR):
        folder = Path(found.model_name.removeprefix(LOCAL_DIR))
        return [folder / CONFIG_FILE, *sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES)]
    return [Path(found.checkpoint)] if found.checkpoint else []


def describe_model(model: ClipModel, name: str = "in-memory") -> ModelInfo:
    """Geometry, normalisation and dimension of a model that is not (yet) a loadable source (training)."""
    return _model_info(model, Source(name, None, name, None, from_hub=False))


def _model_info(model: ClipModel, src: Source) -> ModelInfo:
    import torch

    cfg = model.visual.preprocess_cfg
    size = cfg["size"]
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    geometry = Geometry(height=int(height), width=int(width), resize_mode=cfg.get("resize_mode", "shortest"),
                        interpolation=cfg.get("interpolation", "bicubic"), fill=int(cfg.get("fill_color", 0)))
    dim = getattr(model.visual, "output_dim", None) or int(model.encode_text(torch.zeros(1, 8, dtype=torch.long)).shape[-1])
    return ModelInfo(key=src.key, name=src.name, pretrained=src.pretrained, checkpoint_sha256=src.sha256, dim=dim,
                     geometry=geometry, mean=_rgb(cfg["mean"]), std=_rgb(cfg["std"]))


def _rgb(values: Sequence[float]) -> tuple[float, float, float]:
    r, g, b = (float(x) for x in values)
    return r, g, b


def load_encoder(spec: ModelSpec) -> Encoder:
    """The encoder for a spec: an export (a folder, or immich:NAME) runs on ONNX Runtime / OpenVINO; an open_clip
    checkpoint loads into PyTorch on the best device (CUDA in fp16, else CPU in fp32), or, without PyTorch, a name
    and tag is served by Immich's export of the same weights."""
    from imgsearch.models import runtimes
    from imgsearch.models.sources import HF_HUB, export_folder, immich_equivalent

    src = resolve_source(spec)
    if src.exported:
        return runtimes.ExportedEncoder.from_folder(export_folder(src), src.key, src.name, src.pretrained)
    if not runtimes.torch_installed() and src.from_hub and not src.name.startswith(HF_HUB):
        return runtimes.ExportedEncoder.from_folder(immich_equivalent(src), src.key, src.name, src.pretrained)
    return OpenClipEncoder.load(spec, src=src)
