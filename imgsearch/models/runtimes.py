"""Encoders that run an exported copy of a CLIP model on OpenVINO or ONNX Runtime, without PyTorch.

`imgsearch.models.export` makes the copy (that part needs torch and open_clip); this module only
reads it, so a text query answered by an exported text tower never imports torch.

An export lives in the library, one folder per weights, runtime version and precision:

    LIBRARY/models/<sha256(model key)[:16]>/<runtime>-<version>-<precision>/
        meta.json       what it was made from (model info, the weights files' size and mtime, fidelity)
        image.*         uint8 pixels (n, H, W, 3) -> L2-normalised vectors (n, dim); normalisation inside
        text.onnx       token ids (n, length) -> L2-normalised vectors (n, dim), on ONNX Runtime when installed
        vocab.json, merges.txt  open_clip's BPE as `tokenizers` files, checked to give open_clip's ids

meta.json is written last, so a half-made export is never used. A folder whose runtime version is
not the one installed, or whose weights files changed size or mtime, is not used (the next `index`
exports again).
"""

from __future__ import annotations

import hashlib
import html
import importlib.util
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgsearch.errors import ModelLoadError
from imgsearch.images.decode import Geometry

RUNTIMES = ("torch", "openvino", "onnx")
PRECISIONS = ("fp32", "int8")
EXPORTED = ("openvino", "onnx")  # fastest first: the order the default choice and queries try them in
RUNTIME_ENV = "IMGSEARCH_RUNTIME"  # the default runtime when none is given
EXPORT_DIRNAME = "models"
OV_CACHE = ".ov_cache"  # OpenVINO's compiled models, beside the export
META_FILE = "meta.json"
VOCAB_FILE, MERGES_FILE = "vocab.json", "merges.txt"  # open_clip's BPE, as `tokenizers` saves it
FORMAT = 3  # of meta.json and the files beside it
_NAMES = {"torch": "PyTorch", "openvino": "OpenVINO", "onnx": "ONNX Runtime"}
# what running an export needs (a query), and what making one needs besides torch (pip names = module names)
_RUN = {"openvino": ("openvino", "tokenizers"), "onnx": ("onnxruntime", "tokenizers")}
_MAKE = ("onnx", "onnxscript")
_INT8 = {"openvino": ("nncf",), "onnx": ()}
EXTRA = 'the "cpu-fast" extra of imgsearch'


def _missing(modules: tuple[str, ...]) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def installed(runtime: str) -> bool:
    """Whether exports for `runtime` can run here (a query needs no more)."""
    return runtime == "torch" or not _missing(_RUN[runtime])


def missing_for_export(runtime: str, precision: str = "fp32") -> list[str]:
    """The packages (pip names) that making an export for `runtime` at `precision` still needs here."""
    if runtime == "torch":
        return []
    return _missing(_RUN[runtime] + _MAKE + (_INT8[runtime] if precision == "int8" else ()))


def version(runtime: str) -> str:
    from importlib.metadata import PackageNotFoundError, version as dist_version

    try:
        return dist_version({"torch": "torch", "openvino": "openvino", "onnx": "onnxruntime"}[runtime])
    except PackageNotFoundError:
        return "missing"


def display_name(runtime: str) -> str:
    return _NAMES.get(runtime, runtime)


def check(runtime: str | None, precision: str) -> None:
    """Refuse an unknown runtime or precision, or one not installed, naming the fix."""
    if runtime is not None and runtime not in RUNTIMES:
        raise ModelLoadError(f"unknown runtime '{runtime}': give {{param}} one of {', '.join(RUNTIMES)}.", "runtime")
    if precision not in PRECISIONS:
        raise ModelLoadError(f"unknown precision '{precision}': give {{param}} one of {', '.join(PRECISIONS)}.",
                             "precision")
    missing = missing_for_export(runtime, precision) if runtime is not None else []
    if missing:
        raise ModelLoadError(f"{display_name(runtime)} is not installed here: pip install {' '.join(missing)} "
                             f"({EXTRA}), or give {{param}} torch.", "runtime")
    if precision == "int8" and runtime == "torch":
        raise ModelLoadError("int8 needs an exported runtime: give {param:runtime} openvino or onnx "
                             "(or leave out {param:runtime} to pick one).", "precision")


def missing_exported(param: str) -> ModelLoadError:
    """Asked for what only an exported runtime does, where none is installed."""
    need = " ".join(missing_for_export("openvino", "int8"))
    return ModelLoadError(f"int8 needs OpenVINO or ONNX Runtime, and neither is installed here: pip install {need} "
                          f"({EXTRA}).", param)


def choose(runtime: str | None, device: str) -> str:
    """The runtime to encode with: the one asked for (else IMGSEARCH_RUNTIME), else torch on a GPU and the
    fastest installed exported runtime on a CPU (torch when none is)."""
    if runtime is None and os.environ.get(RUNTIME_ENV):
        runtime = os.environ[RUNTIME_ENV]
        if runtime not in RUNTIMES:
            raise ModelLoadError(f"{RUNTIME_ENV}={runtime} is not a runtime: set it to one of {', '.join(RUNTIMES)}, "
                                 "or unset it to pick the fastest here.", "runtime")
    if runtime is not None:
        check(runtime, "fp32")
        return runtime
    if device != "cpu":
        return "torch"
    return next((r for r in EXPORTED if not missing_for_export(r)), "torch")


# --- where exports live ----------------------------------------------------------------------------


def model_dir(root: Path, key: str) -> Path:
    """The folder holding every export of the weights with this key."""
    return root / hashlib.sha256(key.encode()).hexdigest()[:16]


def export_dir(root: Path, key: str, runtime: str, precision: str) -> Path:
    return model_dir(root, key) / f"{runtime}-{version(runtime)}-{precision}"


def weights_stat(paths: list[Path]) -> list[list]:
    """What tells that weights files are unchanged without reading them: path, size and mtime (ns)."""
    out = []
    for p in paths:
        st = p.stat()
        out.append([str(p), st.st_size, st.st_mtime_ns])
    return out


def valid(folder: Path, key: str) -> dict | None:
    """The meta of a complete export of `key` for the installed runtime version whose weights are unchanged."""
    try:
        meta = json.loads((folder / META_FILE).read_text())
    except (OSError, ValueError):
        return None
    if meta.get("format") != FORMAT or meta.get("info", {}).get("key") != key:
        return None
    runtime = meta.get("runtime")
    if runtime not in EXPORTED or not installed(runtime) or meta.get("runtime_version") != version(runtime):
        return None
    if folder.name != f"{runtime}-{meta['runtime_version']}-{meta.get('precision')}":  # moved by hand
        return None
    try:
        if weights_stat([Path(p) for p, _, _ in meta["weights"]]) != meta["weights"]:
            return None
    except OSError:
        return None
    return meta


def find(root: Path, key: str, runtime: str | None = None, precision: str | None = None) -> Path | None:
    """A usable export of `key` (of `runtime` and `precision` when given, else the fastest runtime, int8 before
    fp32: the one indexing made last is as good as any, since every kept export passed the fidelity gate)."""
    home = model_dir(root, key)
    runtimes = [runtime] if runtime else list(EXPORTED)
    precisions = [precision] if precision else ["int8", "fp32"]
    for r in runtimes:
        for p in precisions:
            folder = home / f"{r}-{version(r)}-{p}"
            meta = valid(folder, key) if folder.is_dir() else None
            if meta is not None and not meta.get("rejected"):
                return folder
    return None


def exports_of(root: Path, key: str) -> list[tuple[str, int]]:
    """Each usable export of `key`: its description ("OpenVINO 2026.4.1 int8") and its bytes on disk."""
    home = model_dir(root, key)
    out = []
    for folder in sorted(home.iterdir()) if home.is_dir() else []:
        meta = valid(folder, key) if folder.is_dir() else None
        if meta is not None and not meta.get("rejected"):
            size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
            out.append((f"{display_name(meta['runtime'])} {meta['runtime_version']} {meta['precision']}", size))
    return out


def rejected(root: Path, key: str, runtime: str, precision: str) -> str | None:
    """Why an earlier run did not keep this export (int8 missing the fidelity gate), if it did not."""
    meta = valid(export_dir(root, key, runtime, precision), key)
    return meta.get("rejected") if meta else None


def stale(root: Path, key: str) -> Iterator[Path]:
    """Exports of `key` no longer usable (another runtime version, changed weights, half-made)."""
    home = model_dir(root, key)
    if home.is_dir():
        for folder in home.iterdir():
            if folder.is_dir() and not folder.name.startswith(".") and valid(folder, key) is None:
                yield folder


# --- running an export -----------------------------------------------------------------------------


def _clean(text: str) -> str:
    """open_clip's SimpleTokenizer cleaning ('lower'): ftfy, HTML entities, whitespace, lower case. Printable ASCII
    without '&' passes ftfy and HTML unescaping unchanged, so most queries skip importing ftfy (~25 ms)."""
    if not (text.isascii() and text.isprintable() and "&" not in text):
        import ftfy

        text = html.unescape(html.unescape(ftfy.fix_text(text)))
    text = text.strip()
    return " ".join(text.split()).lower()


def clip_bpe(bpe: object) -> object:
    """A `tokenizers.Tokenizer` doing what open_clip's SimpleTokenizer does after cleaning: its word pattern, bytes
    to unicode (GPT-2's table, as CLIP's), then this BPE model (vocabulary and merges, "</w>" ending words)."""
    from tokenizers import Regex, Tokenizer, pre_tokenizers

    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
                             behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    return tok


class Tokens:
    """open_clip's SimpleTokenizer from the BPE files of an export (VOCAB_FILE, MERGES_FILE): the same ids, without
    torch. (Loading BPE files takes half the time of a full tokenizer.json: ~35 ms of a cold query.)"""

    def __init__(self, folder: Path, context_length: int, sot: int, eot: int) -> None:
        from tokenizers import models

        bpe = models.BPE.from_file(str(folder / VOCAB_FILE), str(folder / MERGES_FILE), end_of_word_suffix="</w>")
        self._tok = clip_bpe(bpe)
        self.context_length, self.sot, self.eot = context_length, sot, eot

    def __call__(self, texts: list[str], trim: bool) -> np.ndarray:
        """(n, context_length) int64 ids, end-of-text last when truncated, 0-padded; with `trim`, cut after the
        last end-of-text token (causal text towers pool there, so the padding after it changes nothing)."""
        out = np.zeros((len(texts), self.context_length), np.int64)
        longest = 0
        for row, enc in enumerate(self._tok.encode_batch([_clean(t) for t in texts], add_special_tokens=False)):
            ids = [self.sot, *enc.ids][: self.context_length - 1] + [self.eot]
            out[row, : len(ids)] = ids
            longest = max(longest, len(ids))
        return out[:, :longest] if trim else out


class _OpenVino:
    def __init__(self, path: Path, threads: int | None, quick_start: bool = False) -> None:
        import openvino as ov

        core = ov.Core()
        config: dict = {"PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        cache = path.parent / OV_CACHE
        if os.access(path.parent, os.W_OK):
            config["CACHE_DIR"] = str(cache)  # compiled once: later loads take ~a tenth of the time
        self._model = core.compile_model(str(path), "CPU", config)
        self._lock = threading.Lock()  # a compiled model's __call__ reuses one infer request

    def __call__(self, array: np.ndarray) -> np.ndarray:
        with self._lock:
            return np.array(self._model(array)[0], np.float32)


class _Onnx:
    def __init__(self, path: Path, threads: int | None, quick_start: bool = False) -> None:
        """quick_start: a session that loads in ~50 ms instead of ~250 ms (ViT-B-32's text tower) and runs a short
        query in ~30 ms instead of ~10: no weight pre-packing, basic graph optimizations only (the same results)."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        if quick_start:
            options.add_session_config_entry("session.disable_prepacking", "1")
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.log_severity_level = 3
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    def __call__(self, array: np.ndarray) -> np.ndarray:
        return np.asarray(self._session.run(None, {self._input: array})[0], np.float32)


_BACKENDS = {"openvino": _OpenVino, "onnx": _Onnx}


@dataclass(frozen=True)
class ExportInfo:
    """What an exported encoder is, for status lines and run reports."""

    runtime: str
    version: str
    precision: str
    folder: Path
    fidelity: dict

    def describe(self) -> str:
        return f"{display_name(self.runtime)} {self.version} {self.precision}"


class ExportedEncoder:
    """The Encoder protocol over an export: towers load on first use (a text query never loads the image one)."""

    def __init__(self, folder: Path, meta: dict, threads: int | None = None) -> None:
        from imgsearch.models.encoder import ModelInfo

        self.folder = folder
        self.meta = meta
        raw = dict(meta["info"])
        raw["geometry"] = Geometry(**raw["geometry"])
        raw["mean"], raw["std"] = tuple(raw["mean"]), tuple(raw["std"])
        self.info = ModelInfo(**raw)
        self.runtime = meta["runtime"]
        self.export = ExportInfo(self.runtime, meta["runtime_version"], meta["precision"], folder,
                                 meta.get("fidelity", {}))
        self.batch_size = 32
        self.logit_scale = float(meta["logit_scale"])
        self.transfer_s = 0.0
        self.encode_s = 0.0
        self._threads = threads
        self._towers: dict[str, object] = {}
        self._tokens: Tokens | None = None
        self._lock = threading.Lock()

    def describe(self) -> str:
        return self.export.describe()

    @classmethod
    def open(cls, folder: Path, key: str, threads: int | None = None) -> "ExportedEncoder":
        meta = valid(folder, key)
        if meta is None or meta.get("rejected"):
            raise ModelLoadError(f"the exported model in {folder} is incomplete or out of date: run `imgsearch "
                                 "index` to export it again.")
        return cls(folder, meta, threads)

    def _tower(self, name: str):  # noqa: ANN202
        with self._lock:
            if name not in self._towers:
                path = self.folder / self.meta[name]["file"]
                self._towers[name] = _BACKENDS[self._runs(path)](path, self._threads, quick_start=name == "text")
            return self._towers[name]

    def _runs(self, path: Path) -> str:
        """Who runs a tower: ONNX files on ONNX Runtime when it is installed, whatever the export's runtime. The
        text tower is kept as ONNX in every export, since a cold query spends its time loading it: ONNX Runtime
        imports and loads it in ~0.1 s (quick_start), OpenVINO in ~0.4 s (its import alone ~0.2 s); one short
        query runs in milliseconds on either."""
        return "onnx" if path.suffix == ".onnx" and installed("onnx") else self.runtime

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """(n, H, W, 3) uint8 -> (n, dim) float32, L2-normalised (normalisation runs inside the graph)."""
        if not isinstance(pixels, np.ndarray):  # decoded on a GPU: exported runtimes run on the CPU
            pixels = pixels.cpu().numpy()
        start = time.perf_counter()
        tower = self._tower("image")
        out = tower(np.ascontiguousarray(pixels, np.uint8))
        self.encode_s += time.perf_counter() - start
        return out

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        text = self.meta["text"]
        if self._tokens is None:
            self._tokens = Tokens(self.folder, text["context_length"], text["sot"], text["eot"])
        tower = self._tower("text")
        return tower(self._tokens(texts, trim=text["trim"]))


def open_export(root: Path, key: str, runtime: str | None = None, precision: str | None = None,
                threads: int | None = None) -> ExportedEncoder | None:
    """The exported encoder of `key`, if a usable export exists under `root`."""
    folder = find(root, key, runtime, precision)
    return ExportedEncoder.open(folder, key, threads) if folder else None
