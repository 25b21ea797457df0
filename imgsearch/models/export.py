"""Export an open_clip model to OpenVINO or ONNX Runtime, once per weights and runtime version, kept only when
it passes the fidelity gate against the PyTorch model it came from.

The towers go through `torch.onnx.export` (the dynamo exporter: dynamic batch, and for causal text
towers a dynamic length, so a short query runs only up to its end-of-text token as the torch path
does). OpenVINO reads the ONNX file and saves its own IR. int8: OpenVINO quantizes the image tower
with NNCF, calibrated on the user's photos; ONNX Runtime quantizes its weights dynamically. The text
tower stays fp32 (a query is one short sentence; its time is in loading, not in arithmetic).
"""

from __future__ import annotations

import io
import json
import os
import logging
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from imgsearch.config import Precision, Runtime
from imgsearch.errors import ExportError, ImgSearchError, UsageError
from imgsearch.models import runtimes
from imgsearch.models.runtimes import (CONFIG_FILE, FORMAT, IR_FILE, META_FILE, ONNX_FILE, PREPROCESS_FILE, TEXTUAL,
                                       VISUAL, ExportedEncoder, Tokens)

if TYPE_CHECKING:
    import torch

    from collections.abc import Callable, Sequence

    from imgsearch.config import ModelSpec
    from imgsearch.images.decode import Geometry
    from imgsearch.models.encoder import ClipModel, Encoder, OpenClipEncoder, Tokenizer
    from imgsearch.progress import Progress

# Texts whose open_clip ids the exported tokenizer must reproduce: cases, punctuation, digits, contractions,
# accents, other scripts, emoji, HTML entities, broken Unicode (ftfy), runs of spaces, and one past the context.
TOKEN_PROBES = (
    "a photo of a dog", "A Photo Of A DOG!", "it's the cat's toy, isn't it?", "sunset over lake geneva, 2019",
    "café crème brûlée", "東京の夜景", "Ελληνικά γράμματα", "🐶🏖️ beach day", "R&amp;B concert &lt;live&gt;",
    "schÃ¶n", "  lots   of\tspace\n", "x", "", "1234567890 3.14 $100 #tag @user e-mail@example.com",
    "hello" * 40, " ".join(["word"] * 100),
)
TEXT_PROBES = ("a photo of a dog on the beach", "red dress", "a city at night", "two people smiling",
               "a bowl of fruit on a wooden table", "snow", "a black and white photo of an old car",
               "blue jeans", "a cat sleeping on a sofa", "mountains under a cloudy sky")


@dataclass(frozen=True)
class FidelityGate:
    """What an export must reproduce of the torch fp32 model on the same inputs."""

    min_cosine: float = 0.995  # mean cosine between the two embeddings of each photo (and of each probe text)
    min_overlap: float = 0.95  # mean share of each photo's top-k neighbours among the photos that both agree on
    k: int = 10


@dataclass
class Fidelity:
    images: int
    image_cosine: float
    overlap: float | None  # None: too few photos for neighbours
    text_cosine: float

    def passes(self, gate: FidelityGate) -> bool:
        return (self.image_cosine >= gate.min_cosine and self.text_cosine >= gate.min_cosine
                and (self.overlap is None or self.overlap >= gate.min_overlap))

    def describe(self) -> str:
        overlap = f", top-10 overlap {self.overlap:.3f}" if self.overlap is not None else ""
        return f"mean cosine {self.image_cosine:.4f} on {self.images} photos{overlap}, text {self.text_cosine:.4f}"


@dataclass
class Exported:
    encoder: ExportedEncoder
    warnings: list[str] = field(default_factory=list)


def measure(reference: np.ndarray, candidate: np.ndarray, k: int = 10) -> tuple[float, float | None]:
    """Mean cosine of matching rows, and mean top-k neighbour overlap within the set (None under k+1 rows)."""
    cosine = float(np.mean(np.sum(reference * candidate, axis=1)))
    n = len(reference)
    if n <= k:
        return cosine, None
    def neighbours(v: np.ndarray) -> np.ndarray:
        sims = v @ v.T
        np.fill_diagonal(sims, -np.inf)
        return np.argsort(-sims, axis=1)[:, :k]
    a, b = neighbours(reference), neighbours(candidate)
    overlap = float(np.mean([len(set(x) & set(y)) / k for x, y in zip(a, b)]))
    return cosine, overlap


# --- the tokenizer ---------------------------------------------------------------------------------


def save_tokenizer(tokenizer: Tokenizer, folder: Path) -> None:
    """open_clip's SimpleTokenizer as `tokenizers` BPE files in `folder` (its vocabulary and merges), checked on
    TOKEN_PROBES to give the same ids."""
    from open_clip.tokenizer import SimpleTokenizer
    from tokenizers import models

    if not isinstance(tokenizer, SimpleTokenizer) or tokenizer.reduction_fn is not None:
        raise ExportError(f"its tokenizer ({type(tokenizer).__name__}) is not open_clip's CLIP BPE")
    merges = sorted(tokenizer.bpe_ranks, key=tokenizer.bpe_ranks.get)
    bpe = models.BPE(vocab=dict(tokenizer.encoder), merges=merges, end_of_word_suffix="</w>", fuse_unk=False)
    bpe.save(str(folder))
    ours = Tokens(folder, tokenizer.context_length, tokenizer.sot_token_id, tokenizer.eot_token_id)
    theirs = tokenizer(list(TOKEN_PROBES)).numpy()
    if not np.array_equal(ours(list(TOKEN_PROBES), trim=False), theirs):
        raise ExportError("its tokenizer could not be reproduced without PyTorch")


# --- the towers ------------------------------------------------------------------------------------


def _image_module(encoder: "OpenClipEncoder") -> "torch.nn.Module":
    import torch

    class Image(torch.nn.Module):
        """uint8 (n, H, W, 3) -> normalised vectors: the whole of OpenClipEncoder.encode_pixels in one graph."""

        mean: torch.Tensor
        std: torch.Tensor
        model: ClipModel

        def __init__(self) -> None:
            super().__init__()
            self.model = encoder.model
            self.register_buffer("mean", encoder._mean.float().cpu())
            self.register_buffer("std", encoder._std.float().cpu())

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            x = (pixels.permute(0, 3, 1, 2).float() - self.mean) / self.std
            return torch.nn.functional.normalize(self.model.encode_image(x), dim=-1)

    return Image().eval()


def _text_module(encoder: "OpenClipEncoder") -> "torch.nn.Module":
    import torch

    class Text(torch.nn.Module):
        model: ClipModel

        def __init__(self) -> None:
            super().__init__()
            self.model = encoder.model

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            f = encoder.trimmed_text_features(tokens) if encoder._short_text else self.model.encode_text(tokens)
            return torch.nn.functional.normalize(f, dim=-1)

    return Text().eval()


def _to_onnx(module: "torch.nn.Module", example: "torch.Tensor", dims: dict, path: Path) -> None:
    import torch

    shapes = {"pixels" if example.dtype == torch.uint8 else "tokens": dims}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, (example,), None, dynamo=True, dynamic_shapes=tuple(shapes.values()),
                                    input_names=list(shapes), output_names=["vectors"], verbose=False)
        if program is None:  # only without dynamo=True
            raise ExportError(f"PyTorch {torch.__version__} made no ONNX program for {path.parent.name}")
        program.save(str(path), external_data=True)


def _export_towers(encoder: "OpenClipEncoder", folder: Path) -> dict:
    import torch

    geo = encoder.info.geometry
    batch = torch.export.Dim("batch", min=1, max=4096)
    pixels = torch.zeros(2, geo.height, geo.width, 3, dtype=torch.uint8)
    _to_onnx(_image_module(encoder), pixels, {0: batch}, folder / VISUAL / ONNX_FILE)
    ctx = encoder.tokenizer.context_length
    tokens = encoder.tokenizer(["a photo of a dog", "x"])
    dims: dict = {0: batch}
    if encoder._short_text:
        tokens = tokens[:, : int(tokens.argmax(-1).max()) + 1]
        dims[1] = torch.export.Dim("length", min=2, max=ctx)
    _to_onnx(_text_module(encoder), tokens, dims, folder / TEXTUAL / ONNX_FILE)
    return {"context_length": ctx, "sot": encoder.tokenizer.sot_token_id, "eot": encoder.tokenizer.eot_token_id,
            "trim": bool(encoder._short_text)}


def _write_configs(encoder: "OpenClipEncoder", folder: Path) -> None:
    """config.json (open_clip's model config) and visual/preprocess_cfg.json, as Immich's exports have them."""
    model_cfg = (encoder.open_clip_config or {}).get("model_cfg") or {"embed_dim": encoder.info.dim}
    info = encoder.info
    geo = info.geometry
    (folder / CONFIG_FILE).write_text(json.dumps(model_cfg, indent=2))
    (folder / VISUAL / PREPROCESS_FILE).write_text(json.dumps({
        "size": [geo.height, geo.width], "mode": "RGB", "mean": list(info.mean), "std": list(info.std),
        "interpolation": geo.interpolation, "resize_mode": geo.resize_mode, "fill_color": geo.fill}, indent=2))


@contextmanager
def _quiet() -> Iterator[None]:
    """Quantizers log advice through the root logger and torch's (a missing CUDA runtime, pre-processing hints) and
    draw progress bars on stdout (where results go): none of it is the user's to act on. While they run, records
    below ERROR are dropped and stdout is set aside."""
    def drop(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR

    loggers = [logging.getLogger(), logging.getLogger("torch.utils.cpp_extension")]
    for logger in loggers:
        logger.addFilter(drop)
    try:
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()):  # NNCF draws progress bars on stdout
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger in loggers:
            logger.removeFilter(drop)


def _to_openvino(folder: Path, calibration: np.ndarray | None) -> None:
    """The image tower's ONNX -> OpenVINO IR (fp32 weights), in `folder`; with calibration photos, quantized to int8
    by NNCF."""
    import openvino as ov

    model = ov.convert_model(str(folder / ONNX_FILE))
    if calibration is not None:
        with _quiet():
            import nncf

            nncf.set_log_level(logging.ERROR)
            batches = [calibration[i: i + 8] for i in range(0, len(calibration), 8)]
            model = nncf.quantize(model, nncf.Dataset(batches), model_type=nncf.ModelType.TRANSFORMER,
                                  subset_size=len(batches))
    ov.save_model(model, str(folder / IR_FILE), compress_to_fp16=False)
    for f in folder.glob(f"{ONNX_FILE}*"):
        f.unlink()


def _onnx_int8(folder: Path) -> None:
    """The image tower's ONNX in `folder` with its weights quantized to int8 (dynamic), under the same name."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantized = folder / "model.int8.onnx"
    with _quiet():
        quantize_dynamic(folder / ONNX_FILE, quantized, weight_type=QuantType.QInt8, use_external_data_format=True)
    for f in folder.glob(f"{ONNX_FILE}*"):
        f.unlink()
    quantized.rename(folder / ONNX_FILE)  # its weights file keeps the name the graph refers to it by


def _build(encoder: "OpenClipEncoder", runtime: str, precision: str, folder: Path,
           calibration: np.ndarray | None) -> dict:
    """Write the towers, configs and tokenizer of one export into `folder`; its meta (without fidelity) is
    returned."""
    missing = runtimes.missing_for_export(runtime, precision)
    if missing:
        raise ExportError(f"making it needs {', '.join(missing)}: {runtimes.extra_install()}")
    for part in (VISUAL, TEXTUAL):
        (folder / part).mkdir(parents=True)
    save_tokenizer(encoder.tokenizer, folder / TEXTUAL)
    text = _export_towers(encoder, folder)
    _write_configs(encoder, folder)
    if runtime == Runtime.OPENVINO:
        _to_openvino(folder / VISUAL, calibration if precision == Precision.INT8 else None)
    elif precision == Precision.INT8:
        _onnx_int8(folder / VISUAL)
    info = asdict(encoder.info)
    return {"format": FORMAT, "runtime": runtime, "runtime_version": runtimes.version(runtime),
            "precision": precision, "info": info, "weights": runtimes.weights_stat(encoder.weight_files),
            "logit_scale": encoder.logit_scale, "text": text}


def _fidelity(encoder: "OpenClipEncoder", exported: ExportedEncoder, photos: np.ndarray, gate: FidelityGate) -> Fidelity:
    def embed(encode) -> np.ndarray:
        return np.concatenate([encode(photos[i: i + 32]) for i in range(0, len(photos), 32)])

    cosine, overlap = measure(embed(encoder.encode_pixels), embed(exported.encode_pixels), gate.k)
    texts = list(TEXT_PROBES)
    text_cosine, _ = measure(encoder.encode_texts(texts), exported.encode_texts(texts), gate.k)
    return Fidelity(len(photos), cosine, overlap, text_cosine)


def export(encoder: "OpenClipEncoder", root: Path, runtime: str, precision: str, photos: np.ndarray,
           gate: FidelityGate = FidelityGate()) -> Exported:
    """Export `encoder` under `root` for `runtime` at `precision` (int8 calibrated on `photos`: uint8 pixels at the
    model's geometry, also what the gate is measured on), replacing stale exports of the same weights.

    Raises ExportError when the export fails or fp32 misses the gate. int8 missing the gate is recorded (so it is
    not retried at every run) and the fp32 export is returned with a warning.
    """
    key = encoder.info.key
    for old in runtimes.stale(root, key):
        shutil.rmtree(old, ignore_errors=True)
    final = runtimes.export_dir(root, key, runtime, precision)
    meta, notes = _make(encoder, final, runtime, precision, photos, gate)
    if meta.get("rejected"):
        kept = runtimes.open_export(root, key, runtime, Precision.FP32)  # made by an earlier run: as good as a new one
        fp32 = Exported(kept) if kept is not None else export(encoder, root, runtime, Precision.FP32, photos, gate)
        return Exported(fp32.encoder, notes + fp32.warnings)
    return Exported(ExportedEncoder(final, meta), notes)


def _make(encoder: "OpenClipEncoder", final: Path, runtime: str, precision: str, photos: np.ndarray,
          gate: FidelityGate) -> tuple[dict, list[str]]:
    """Build an export in a temporary folder beside `final`, measure it against the model, and move it to `final`
    (replacing what was there); an int8 export missing the gate leaves only its verdict (meta.json)."""
    import torch

    if encoder.torch_device.type != "cpu" or encoder.dtype != torch.float32:
        raise ExportError("exports are made from the model in fp32 on the CPU")
    if not len(photos):  # nothing to index yet: the fp32 export is still checked, on noise
        geo = encoder.info.geometry
        photos = np.random.default_rng(0).integers(0, 256, (16, geo.height, geo.width, 3), dtype=np.uint8)
    work: Path | None = None
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned(final.parent)
        work = Path(tempfile.mkdtemp(prefix=".export-", dir=final.parent))
        (work / OWNER_FILE).write_text(str(os.getpid()))
        meta = _build(encoder, runtime, precision, work / "out", photos if precision == Precision.INT8 else None)
        (work / "out" / META_FILE).write_text(json.dumps(meta))  # complete, so ExportedEncoder can read it
        candidate = ExportedEncoder(work / "out", meta)
        fidelity = _fidelity(encoder, candidate, photos, gate)
        meta["fidelity"] = asdict(fidelity)
        notes = []
        if not fidelity.passes(gate):
            if precision == Precision.FP32:
                raise ExportError(f"the {runtimes.display_name(runtime)} export does not reproduce the model "
                                  f"({fidelity.describe()}; the gate is {gate.min_cosine} and {gate.min_overlap})")
            # keep the verdict, not the model: the next run uses fp32 without quantizing again
            meta["rejected"] = fidelity.describe()
            for f in (work / "out").iterdir():
                if f.name != META_FILE:
                    shutil.rmtree(f) if f.is_dir() else f.unlink()
            notes.append(f"int8 was not kept for this model ({fidelity.describe()}; it must reach a mean cosine of "
                         f"{gate.min_cosine} and a top-{gate.k} overlap of {gate.min_overlap}): encoding in fp32")
        for part in (VISUAL, TEXTUAL):  # compiled for the temporary path
            shutil.rmtree(work / "out" / part / runtimes.OV_CACHE, ignore_errors=True)
        meta["files"] = runtimes.export_files(work / "out")  # checked before use: a damaged file is never run
        (work / "out" / META_FILE).write_text(json.dumps(meta))
        if final.exists():
            shutil.rmtree(final)
        (work / "out").rename(final)
    except ImgSearchError:
        raise
    except Exception as exc:  # an exporter, a converter or a quantizer failing: all end in fallback
        raise ExportError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
    return meta, notes


OWNER_FILE = "pid"  # in an export's temporary folder: the process making it


def _remove_abandoned(folder: Path) -> None:
    """Temporary export folders whose process is gone (killed mid-export: ~600 MB each for ViT-B-32)."""
    for work in folder.glob(".export-*"):
        try:
            os.kill(int((work / OWNER_FILE).read_text()), 0)  # ProcessLookupError: no such process
        except PermissionError:
            continue  # alive (another user's: not ours to touch)
        except (OSError, ValueError):  # gone, or a folder from before owners were written
            shutil.rmtree(work, ignore_errors=True)


def export_to(encoder: "OpenClipEncoder", out: Path, runtime: str, precision: str, photos: np.ndarray,
              gate: FidelityGate = FidelityGate()) -> ExportedEncoder:
    """A self-contained export in the folder `out` (Immich's layout, with our meta.json): give it as a model on a
    machine without PyTorch. Refuses a folder that holds anything; int8 missing the gate is an error here."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} exists and is not an empty folder: give a new folder as {{param}}.", "out")
    if out.is_dir():
        out.rmdir()
    meta, notes = _make(encoder, out, runtime, precision, photos, gate)
    if meta.get("rejected"):
        shutil.rmtree(out, ignore_errors=True)
        raise ExportError(notes[0].removesuffix(": encoding in fp32") + ": export in fp32 instead.")
    return ExportedEncoder(out, meta)


def sample_photos(folders: list[Path], geometry: "Geometry", count: int, seed: int = 0) -> np.ndarray:
    """Up to `count` stills spread over the folders, decoded at the model's geometry (unreadable ones passed over):
    what int8 calibrates on and the fidelity gate measures."""
    from imgsearch.images.crawl import image_files
    from imgsearch.images.decode import decode_data, default_pixel_limit, read_file

    paths = [p for folder in folders for p in image_files(folder)]
    order = np.random.default_rng(seed).permutation(len(paths))
    out: list[np.ndarray] = []
    for i in order:
        if len(out) == count:
            break
        try:
            out.append(np.asarray(decode_data(read_file(str(paths[i])), geometry, default_pixel_limit(1)).pixels))
        except (ImgSearchError, OSError):
            continue
    return np.stack(out) if out else np.zeros((0, geometry.height, geometry.width, 3), np.uint8)


CALIBRATION_PHOTOS = 300  # int8: what NNCF calibrates on, and the gate measures
GATE_PHOTOS = 64  # fp32: what the gate measures
MIN_CALIBRATION = 10


def gate_photos(folders: list[Path], geometry: "Geometry", precision: str) -> np.ndarray:
    """The photos an export at `precision` is checked on (and int8 calibrated on)."""
    return sample_photos(folders, geometry, CALIBRATION_PHOTOS if precision == Precision.INT8 else GATE_PHOTOS)


def encoder_for_indexing(key: str, device: str, root: Path, runtime: str | None, precision: str,
                         folders: list[Path], progress: "Progress", torch_encoder: "Callable[[], OpenClipEncoder]",
                         cpu_encoder: "Callable[[], OpenClipEncoder]") -> tuple["Encoder", list[str]]:
    """The encoder an indexing run uses for the weights with `key`, and warnings for its report: an export of them
    (the runtime asked for, else the fastest here; made now when none fits), else the PyTorch model. PyTorch is loaded
    only when it encodes or an export is made: a run that finds its export never loads it. Export failure falls back
    to PyTorch."""
    runtimes.check(runtime, precision)
    chosen = runtimes.choose(runtime, "cpu" if precision == Precision.INT8 else device)
    if chosen == Runtime.TORCH:
        if precision == Precision.INT8:
            if runtime is None and all(runtimes.missing_for_export(r, Precision.INT8) for r in runtimes.EXPORTED):
                raise runtimes.missing_exported("precision")
            # asked for torch (a flag or IMGSEARCH_RUNTIME): name the runtimes to give instead
            runtimes.check(Runtime.TORCH, Precision.INT8)
        return torch_encoder(), []
    name = runtimes.display_name(chosen)
    notes = []
    if precision == Precision.INT8 and (why := runtimes.rejected(root, key, chosen, Precision.INT8)):
        notes.append(f"int8 was not kept for this model ({why}): encoding in fp32")
        precision = Precision.FP32
    found = runtimes.open_export(root, key, chosen, precision)
    if found is not None:
        why = _unsound(found)
        if why is None:
            return found, notes
        progress.note(f"the export in {found.folder} is damaged ({why}): exporting the model again")
    model = cpu_encoder()  # loaded once, for the photos' geometry and the export
    photos = gate_photos(folders, model.info.geometry, precision)
    if precision == Precision.INT8 and len(photos) < MIN_CALIBRATION:
        notes.append(f"int8 needs at least {MIN_CALIBRATION} photos to calibrate on and check against; "
                     f"{len(photos)} could be read: encoding in fp32")
        precision = Precision.FP32
        found = runtimes.open_export(root, key, chosen, precision)
        if found is not None:
            return found, notes
    progress.note(f"exporting the model to {name} {precision} (once per weights and {name} version)...")
    try:
        made = export(model, root, chosen, precision, photos)
    except ExportError as exc:
        return torch_encoder(), [*notes, f"could not export the model to {name} ({exc}): encoding with PyTorch instead"]
    progress.note(f"exported to {made.encoder.export.describe()}: {Fidelity(**made.encoder.export.fidelity).describe()}")
    return made.encoder, notes + made.warnings


def _unsound(found: ExportedEncoder) -> str | None:
    """Why an export must not index (a file changed since it was made, or non-finite vectors for a probe), or None.
    Run before every indexing run: a damaged export is made again instead of filling the library with NaN."""
    why = found.check_files()
    if why is not None:
        return why
    geo = found.info.geometry
    probe = np.random.default_rng(0).integers(0, 256, (1, geo.height, geo.width, 3), dtype=np.uint8)
    try:
        finite = np.isfinite(found.encode_pixels(probe)).all() and np.isfinite(found.encode_texts(["a photo"])).all()
    except ImgSearchError as exc:
        return exc.message
    return None if finite else "it gives NaN or infinite vectors"


def export_model(spec: "ModelSpec", out: Path, runtime: str = Runtime.ONNX, precision: str = Precision.FP32,
                 photos: "Sequence[Path]" = ()) -> ExportedEncoder:
    """Export an open_clip model into the folder `out`, checked on photos from `photos` (folders; noise when none):
    what `--model local-dir:OUT` then runs anywhere, PyTorch or not."""
    from imgsearch.models.encoder import OpenClipEncoder

    if runtime not in runtimes.EXPORTED:
        raise UsageError(f"unknown export runtime '{runtime}': give {{param}} {' or '.join(runtimes.EXPORTED)}.",
                         "runtime")
    runtimes.check(runtime, precision)
    encoder = OpenClipEncoder.load(spec, device="cpu", precision=Precision.FP32)
    pictures = gate_photos(list(photos), encoder.info.geometry, precision)
    if precision == Precision.INT8 and len(pictures) < MIN_CALIBRATION:
        raise UsageError(f"int8 needs at least {MIN_CALIBRATION} photos to calibrate on and check against; "
                         f"{len(pictures)} could be read: give a folder of your photos as {{param}}.", "photos")
    return export_to(encoder, out, runtime, precision, pictures)
