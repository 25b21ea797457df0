"""Encoders that run an exported copy of a CLIP model on OpenVINO or ONNX Runtime, without PyTorch.

`imgsearch.models.export` makes the copy (that part needs torch and open_clip); this module only
reads it, so indexing and search through an export never import torch.

Every export is laid out as Immich's machine-learning service lays out its published models (the
Hugging Face repos `immich-app/ARCH__TAG`), so one loader reads both:

    config.json                 open_clip's model config (embed_dim, vision_cfg, text_cfg)
    visual/model.onnx           the image tower (OpenVINO exports: visual/model.xml + model.bin)
    visual/preprocess_cfg.json  size, mean, std, interpolation, resize_mode, fill_color
    textual/model.onnx          the text tower, run on ONNX Runtime when installed
    textual/vocab.json, merges.txt (ours) or textual/tokenizer.json (Immich's): open_clip's BPE
    meta.json                   ours only: what it was made from, its runtime version, fidelity; written last

A tower's input tells how to feed it: ours take uint8 pixels (n, H, W, 3) and token ids cut after the
end-of-text token, with a dynamic batch; Immich's take normalised float pixels (1, 3, H, W) and int32
ids padded to the context length, one at a time.

The exports this project makes live once per user, not once per library (`default_exports_dir`):

    CACHE/exports/<sha256(model key)[:16]>/<runtime>-<version>-<precision>/

A folder whose runtime version is not the one installed, or whose weights files changed size or
mtime, is not used there (the next `index` exports again). A folder given as a model
(`--model local-dir:DIR`, or an `immich:NAME` download) is used as it is.
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
from typing import TYPE_CHECKING

import numpy as np

from imgsearch.config import Precision, Runtime
from imgsearch.errors import CorruptError, MissingExtraError, ModelLoadError
from imgsearch.fs import file_fingerprint
from imgsearch.images.decode import Geometry

if TYPE_CHECKING:
    import tokenizers
    import tokenizers.models
    import torch



@dataclass(frozen=True)
class RuntimeInfo:
    """One runtime: its name in messages, the distribution whose version an export records, the modules (pip names =
    module names) a query with it needs, what making an int8 export adds, and where it encodes."""

    runtime: Runtime
    label: str
    dist: str
    runs: tuple[str, ...]
    int8: tuple[str, ...]
    devices: tuple[str, ...]


RUNTIME_TABLE: dict[Runtime, RuntimeInfo] = {
    Runtime.TORCH: RuntimeInfo(Runtime.TORCH, "PyTorch", "torch", ("torch", "open_clip"), (), ("cpu", "cuda", "mps")),
    Runtime.OPENVINO: RuntimeInfo(Runtime.OPENVINO, "OpenVINO", "openvino", ("openvino", "tokenizers"), ("nncf",),
                                  ("cpu",)),
    Runtime.ONNX: RuntimeInfo(Runtime.ONNX, "ONNX Runtime", "onnxruntime", ("onnxruntime", "tokenizers"), (),
                              ("cpu",)),
}
RUNTIMES = tuple(Runtime)
PRECISIONS = tuple(Precision)
EXPORTED = (Runtime.OPENVINO, Runtime.ONNX)  # fastest first: the order the default choice and queries try them in
_MAKE = ("onnx", "onnxscript")  # what making an export needs besides torch
RUNTIME_ENV = "IMGSEARCH_RUNTIME"  # the default runtime when none is given
CACHE_ENV = "IMGSEARCH_CACHE"  # where exports are kept (default: the user cache folder)
OV_CACHE = ".ov_cache"  # OpenVINO's compiled models, beside the export
META_FILE = "meta.json"
CONFIG_FILE = "config.json"  # open_clip's model config, as Immich's exports have it
VISUAL, TEXTUAL = "visual", "textual"
PREPROCESS_FILE = "preprocess_cfg.json"
ONNX_FILE, IR_FILE = "model.onnx", "model.xml"
VOCAB_FILE, MERGES_FILE = "vocab.json", "merges.txt"  # open_clip's BPE, as `tokenizers` saves it
HF_TOKENIZER_FILE = "tokenizer.json"  # the same BPE as Hugging Face's CLIPTokenizerFast saves it (Immich's)
FORMAT = 4  # of meta.json and the files beside it
EXTRA = "imgsearch's default install"


def _missing(modules: tuple[str, ...]) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def installed(runtime: str) -> bool:
    """Whether `runtime` can encode here (for an exported one: whether its exports can run; a query needs no more)."""
    return not _missing(RUNTIME_TABLE[Runtime(runtime)].runs)


def missing_for_export(runtime: str, precision: str = Precision.FP32) -> list[str]:
    """The packages (pip names) that making an export for `runtime` at `precision` still needs here."""
    if runtime == Runtime.TORCH:
        return []
    info = RUNTIME_TABLE[Runtime(runtime)]
    return _missing(info.runs + _MAKE + (info.int8 if precision == Precision.INT8 else ()))


def version(runtime: str) -> str:
    from importlib.metadata import PackageNotFoundError, version as dist_version

    try:
        return dist_version(RUNTIME_TABLE[Runtime(runtime)].dist)
    except PackageNotFoundError:
        return "missing"


def display_name(runtime: str) -> str:
    return RUNTIME_TABLE[Runtime(runtime)].label if runtime in RUNTIMES else runtime


def check(runtime: str | None, precision: str) -> None:
    """Refuse an unknown runtime or precision, or one not installed, naming the fix."""
    if runtime is not None and runtime not in RUNTIMES:
        raise ModelLoadError(f"unknown runtime '{runtime}': give {{param}} one of {', '.join(RUNTIMES)}.", "runtime")
    if precision not in PRECISIONS:
        raise ModelLoadError(f"unknown precision '{precision}': give {{param}} one of {', '.join(PRECISIONS)}.",
                             "precision")
    if runtime == Runtime.TORCH and not torch_installed():
        raise MissingExtraError(f"PyTorch is not installed here: {extra_install()} (the torch extra), or give "
                                f"{{param}} {fastest_installed() or 'onnx'}.", "runtime")
    missing = _missing(RUNTIME_TABLE[Runtime(runtime)].runs) if runtime is not None and runtime in EXPORTED else []
    if runtime is not None and missing:
        other = Runtime.TORCH if torch_installed() else fastest_installed() or Runtime.TORCH
        raise ModelLoadError(f"{display_name(runtime)} is not installed here: pip install {' '.join(missing)} "
                             f"({EXTRA}), or give {{param}} {other}.", "runtime")
    if precision == Precision.INT8 and runtime == Runtime.TORCH:
        raise ModelLoadError("int8 needs an exported runtime: give {param:runtime} openvino or onnx "
                             "(or leave out {param:runtime} to pick one).", "precision")


def extra_install(extra: str = "torch") -> str:
    """The pip command that adds an extra's packages to this install, as written in imgsearch's own metadata (the
    packages by name: `pip install 'imgsearch[torch]'` would fetch an unrelated project of that name from PyPI)."""
    import shlex
    from importlib.metadata import PackageNotFoundError, requires

    try:
        reqs = requires("imgsearch") or []
    except PackageNotFoundError:
        reqs = []

    def packages(name: str) -> list[str]:
        out = []
        for r in reqs:
            spec, _, marker = r.partition(";")
            if f'extra == "{name}"' in marker.replace("'", '"'):
                spec = spec.strip()
                out += ([p for e in spec.split("[", 1)[1].rstrip("]").split(",") for p in packages(e.strip())]
                        if spec.startswith("imgsearch[") else [spec])
        return out

    wanted = list(dict.fromkeys(packages(extra))) or ["torch", "torchvision", "open_clip_torch"]
    return "pip install " + " ".join(shlex.quote(r) for r in wanted)


def fastest_installed() -> Runtime | None:
    """The fastest exported runtime installed here (EXPORTED's order), if any."""
    return next((r for r in EXPORTED if installed(r)), None)


def torch_installed() -> bool:
    """Whether PyTorch and open_clip are here (the "torch" extra): what exporting, training and CUDA need."""
    return installed(Runtime.TORCH)


def missing_exported(param: str) -> ModelLoadError:
    """Asked for what only an exported runtime does, where none is installed."""
    need = " ".join(missing_for_export(Runtime.OPENVINO, Precision.INT8))
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
        check(runtime, Precision.FP32)
        return runtime
    fastest = fastest_installed()
    if fastest is None or device.split(":")[0] not in RUNTIME_TABLE[fastest].devices:  # a GPU: PyTorch uses it
        return Runtime.TORCH
    return fastest


# --- where exports live ----------------------------------------------------------------------------


def default_exports_dir() -> Path:
    """Where this user's exports are kept: IMGSEARCH_CACHE, else the user cache folder (one copy per model and
    runtime version, shared by every library)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser() / "exports"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("imgsearch", appauthor=False)) / "exports"


def model_dir(root: Path, key: str) -> Path:
    """The folder holding every export of the weights with this key."""
    return root / hashlib.sha256(key.encode()).hexdigest()[:16]


def export_dir(root: Path, key: str, runtime: str, precision: str) -> Path:
    return model_dir(root, key) / f"{runtime}-{version(runtime)}-{precision}"


def is_export_folder(path: Path) -> bool:
    """A folder laid out as an export (ours or Immich's): config.json, visual/ and textual/."""
    return (path / CONFIG_FILE).is_file() and (path / VISUAL).is_dir() and (path / TEXTUAL).is_dir()


def weights_stat(paths: list[Path]) -> list[list]:
    """What tells that weights files are unchanged without reading them: path, size and mtime (ns)."""
    out = []
    for p in paths:
        st = p.stat()
        out.append([str(p), st.st_size, st.st_mtime_ns])
    return out


def read_meta(folder: Path) -> dict | None:
    try:
        meta = json.loads((folder / META_FILE).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == FORMAT else None


def valid(folder: Path, key: str) -> dict | None:
    """The meta of a complete export of `key` for the installed runtime version whose weights are unchanged."""
    meta = read_meta(folder)
    if meta is None or meta.get("info", {}).get("key") != key:
        return None
    runtime = meta.get("runtime")
    if runtime not in EXPORTED or not installed(runtime) or meta.get("runtime_version") != version(runtime):
        return None
    if folder.name != f"{runtime}-{meta['runtime_version']}-{meta.get('precision')}":  # moved by hand
        return None
    try:
        if weights_stat([Path(p) for p, _, _ in meta["weights"]]) != meta["weights"]:
            return None
        # every file as big as when it was made (cheap); contents are checked where a tower loads (damaged)
        if any((folder / name).stat().st_size != fp["size"] for name, fp in meta.get("files", {}).items()):
            return None
    except OSError:
        return None
    return meta


def export_files(folder: Path) -> dict[str, dict]:
    """Fingerprints (size, blake2b) of an export's files, by path inside it: what meta.json records when it is made
    (OpenVINO's compiled-model cache and meta.json itself left out)."""
    return {str(f.relative_to(folder)): file_fingerprint(f) for f in sorted(folder.rglob("*"))
            if f.is_file() and f.name != META_FILE and OV_CACHE not in f.relative_to(folder).parts}


def damage_fix(folder: Path | str | None) -> str:
    """What to do about damaged weights: an export in the exports cache is made again by the next index run; a
    standalone export or the weights themselves must be restored."""
    if folder is None:
        return "its weights are damaged: restore or download them again"
    if default_exports_dir() in Path(folder).parents:
        return "run `imgsearch index` (on any library that uses this model): it exports the model again"
    return "export or download it again"


def damaged(folder: Path, meta: dict, part: str | None = None) -> str | None:
    """The first file of an export (of one tower, `part`: visual or textual) whose content is not what was made,
    in words; None when all match (or the export predates fingerprints)."""
    for name, expected in meta.get("files", {}).items():
        if part is not None and Path(name).parts[0] != part:
            continue
        try:
            if file_fingerprint(folder / name) != expected:
                return f"{name} changed since it was exported"
        except OSError as exc:
            return f"{name} cannot be read ({exc.strerror or exc})"
    return None


def find(root: Path, key: str, runtime: str | None = None, precision: str | None = None) -> Path | None:
    """A usable export of `key` (of `runtime` and `precision` when given, else the fastest runtime, int8 before
    fp32: the one indexing made last is as good as any, since every kept export passed the fidelity gate)."""
    home = model_dir(root, key)
    runtimes = [runtime] if runtime else list(EXPORTED)
    precisions = [precision] if precision else [Precision.INT8, Precision.FP32]
    for r in runtimes:
        for p in precisions:
            folder = home / f"{r}-{version(r)}-{p}"
            meta = valid(folder, key) if folder.is_dir() else None
            if meta is not None and not meta.get("rejected"):
                return folder
    return None


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def exports_of(root: Path, key: str) -> list[tuple[str, int]]:
    """Each usable export of `key`: its description ("OpenVINO 2026.4.1 int8") and its bytes on disk."""
    home = model_dir(root, key)
    out = []
    for folder in sorted(home.iterdir()) if home.is_dir() else []:
        meta = valid(folder, key) if folder.is_dir() else None
        if meta is not None and not meta.get("rejected"):
            out.append((f"{display_name(meta['runtime'])} {meta['runtime_version']} {meta['precision']}",
                        folder_bytes(folder)))
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


def clip_bpe(bpe: "tokenizers.models.Model") -> "tokenizers.Tokenizer":
    """A `tokenizers.Tokenizer` doing what open_clip's SimpleTokenizer does after cleaning: its word pattern, bytes
    to unicode (GPT-2's table, as CLIP's), then this BPE model (vocabulary and merges, "</w>" ending words)."""
    from tokenizers import Regex, Tokenizer, pre_tokenizers

    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
                             behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    return tok


def _bpe(folder: Path) -> tuple["tokenizers.models.Model", dict[str, int] | None]:
    """open_clip's BPE model from a tokenizer folder: our BPE files (VOCAB_FILE, MERGES_FILE), else the vocabulary
    and merges inside a Hugging Face tokenizer.json (Immich's exports); with that vocabulary when it was read."""
    from tokenizers import models

    if (folder / VOCAB_FILE).is_file() and (folder / MERGES_FILE).is_file():
        return models.BPE.from_file(str(folder / VOCAB_FILE), str(folder / MERGES_FILE), end_of_word_suffix="</w>"), None
    try:
        model = json.loads((folder / HF_TOKENIZER_FILE).read_text(encoding="utf-8"))["model"]
        vocab = dict(model["vocab"])
        merges = [_pair(m.split(" ", 1) if isinstance(m, str) else m) for m in model["merges"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{folder} holds no tokenizer ({VOCAB_FILE} and {MERGES_FILE}, or {HF_TOKENIZER_FILE}): "
                             f"{type(exc).__name__}: {exc}. Download the model again.") from exc
    return models.BPE(vocab=vocab, merges=merges, end_of_word_suffix="</w>", fuse_unk=False), vocab


def _pair(merge: list[str]) -> tuple[str, str]:
    first, second = merge
    return first, second


class Tokens:
    """open_clip's SimpleTokenizer from the BPE files of an export (VOCAB_FILE, MERGES_FILE, or a tokenizer.json): the
    same ids, without torch. (Loading BPE files takes half the time of a full tokenizer.json: ~35 ms of a cold
    query.)"""

    def __init__(self, folder: Path, context_length: int, sot: int | None = None, eot: int | None = None) -> None:
        bpe, vocab = _bpe(folder)
        self._tok = clip_bpe(bpe)
        if sot is None or eot is None:  # open_clip's names, then Hugging Face's: the same ids in CLIP's vocabulary
            ids = [self._tok.token_to_id(n) for n in ("<start_of_text>", "<|startoftext|>", "<end_of_text>",
                                                       "<|endoftext|>")]
            size = len(vocab) if vocab else self._tok.get_vocab_size()
            sot = ids[0] if ids[0] is not None else ids[1] if ids[1] is not None else size - 2
            eot = ids[2] if ids[2] is not None else ids[3] if ids[3] is not None else size - 1
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


_DTYPES = {"tensor(uint8)": np.uint8, "tensor(float)": np.float32, "tensor(int32)": np.int32,
           "tensor(int64)": np.int64}


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
        port = self._model.inputs[0]
        self.dtype = np.dtype(port.get_element_type().to_dtype())
        self.shape = [d.get_length() if d.is_static else None for d in port.get_partial_shape()]

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
        port = self._session.get_inputs()[0]
        self._input = port.name
        self.dtype = np.dtype(_DTYPES.get(port.type, np.float32))
        self.shape = [d if isinstance(d, int) else None for d in port.shape]

    def __call__(self, array: np.ndarray) -> np.ndarray:
        return np.asarray(self._session.run(None, {self._input: array})[0], np.float32)


_BACKENDS = {Runtime.OPENVINO: _OpenVino, Runtime.ONNX: _Onnx}


def _rows(tower: "_Onnx | _OpenVino", array: np.ndarray) -> np.ndarray:
    """Run a tower on a batch; one row at a time where its batch size is fixed (Immich's exports take 1)."""
    fixed = tower.shape[0] if tower.shape else None
    if fixed is None or fixed == len(array):
        out = tower(array)
    else:
        out = np.concatenate([tower(array[i: i + fixed]) for i in range(0, len(array), fixed)])
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return (out / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


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


def _info_from_config(folder: Path, key: str, name: str, pretrained: str | None) -> dict:
    """ModelInfo fields of an export without our meta.json (Immich's): its config.json and preprocess_cfg.json."""
    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        pp = json.loads((folder / VISUAL / PREPROCESS_FILE).read_text(encoding="utf-8"))
        size = pp["size"]
        height, width = (size, size) if isinstance(size, int) else (size[0], size[-1])
        return {"key": key, "name": name, "pretrained": pretrained, "checkpoint_sha256": None,
                "dim": int(config["embed_dim"]),
                "geometry": {"height": int(height), "width": int(width), "resize_mode": pp.get("resize_mode", "shortest"),
                             "interpolation": pp.get("interpolation", "bicubic"), "fill": int(pp.get("fill_color", 0))},
                "mean": [float(x) for x in pp["mean"]], "std": [float(x) for x in pp["std"]],
                "context_length": int(config.get("text_cfg", {}).get("context_length", 77))}
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise ModelLoadError(f"{folder} is not a usable exported model ({CONFIG_FILE} and {VISUAL}/{PREPROCESS_FILE} "
                             f"are needed): {type(exc).__name__}: {exc}. Download or export it again.") from exc


class ExportedEncoder:
    """The Encoder protocol over an export (ours or Immich's): towers load on first use (a text query never loads the
    image one)."""

    def __init__(self, folder: Path, meta: dict, threads: int | None = None) -> None:
        from imgsearch.models.encoder import ModelInfo

        self.folder = folder
        self.device = "cpu"
        self.meta = meta
        raw = {k: v for k, v in meta["info"].items() if k != "context_length"}
        raw["geometry"] = Geometry(**raw["geometry"])
        raw["mean"], raw["std"] = tuple(raw["mean"]), tuple(raw["std"])
        self.info = ModelInfo(**raw)
        if meta["runtime"] not in EXPORTED:
            raise ModelLoadError(f"{folder}/{META_FILE} names no runtime that runs exports ({meta['runtime']!r}): "
                                 "export or download the model again.")
        self.runtime = Runtime(meta["runtime"])
        self.export = ExportInfo(self.runtime, meta["runtime_version"], meta["precision"], folder,
                                 meta.get("fidelity", {}))
        self.batch_size = 32
        self.logit_scale = float(meta.get("logit_scale", 100.0))
        self.transfer_s = 0.0
        self.encode_s = 0.0
        self._threads = threads
        self._towers: dict[str, object] = {}
        self._sound: set[str] = set()  # parts (visual, textual) whose files were found as they were made
        self._tokens: Tokens | None = None
        self._lock = threading.Lock()
        self._mean = np.asarray(self.info.mean, np.float32) * 255
        self._std = np.asarray(self.info.std, np.float32) * 255

    def describe(self) -> str:
        return self.export.describe()

    @classmethod
    def open(cls, folder: Path, key: str, threads: int | None = None) -> "ExportedEncoder":
        """An export in the exports cache, checked to be complete, current and of `key`."""
        meta = valid(folder, key)
        if meta is None or meta.get("rejected"):
            raise ModelLoadError(f"the exported model in {folder} is incomplete or out of date: run `imgsearch "
                                 "index` to export it again.")
        return cls(folder, meta, threads)

    @classmethod
    def from_folder(cls, folder: Path, key: str, name: str, pretrained: str | None = None,
                    threads: int | None = None) -> "ExportedEncoder":
        """A folder given as a model: an export this project made (its meta.json says what it came from), or one of
        Immich's (described by its config files; runs on ONNX Runtime, its image tower on OpenVINO when installed)."""
        meta = read_meta(folder)
        if meta is not None and not meta.get("rejected"):
            meta = {**meta, "info": {**meta["info"], "name": name, "pretrained": pretrained}}
            return cls(folder, meta, threads)
        runtime = Runtime.OPENVINO if installed(Runtime.OPENVINO) else Runtime.ONNX
        if not installed(runtime):
            raise ModelLoadError(f"{folder} is an exported model, and neither ONNX Runtime nor OpenVINO is installed "
                                 f"here: pip install onnxruntime tokenizers ({EXTRA}).")
        info = _info_from_config(folder, key, name, pretrained)
        meta = {"format": FORMAT, "runtime": runtime, "runtime_version": version(runtime), "precision": Precision.FP32,
                "info": info, "logit_scale": 100.0,
                "text": {"context_length": info["context_length"], "sot": None, "eot": None, "trim": False}}
        return cls(folder, meta, threads)

    def check_files(self) -> str | None:
        """Which file of the export changed since it was made, in words (None: none); its towers then load without
        checking their files again."""
        why = damaged(self.folder, self.meta)
        if why is None:
            self._sound.update((VISUAL, TEXTUAL))
        return why

    def _tower(self, name: str):
        with self._lock:
            if name not in self._towers:
                part = VISUAL if name == "image" else TEXTUAL
                why = None if part in self._sound else damaged(self.folder, self.meta, part)
                if why is not None:
                    raise CorruptError(f"the exported model in {self.folder} is damaged ({why}): "
                                       + damage_fix(self.folder) + ".")
                self._sound.add(part)
                path = self._tower_file(part)
                self._towers[name] = _BACKENDS[self._runs(path)](path, self._threads, quick_start=name == "text")
            return self._towers[name]

    def _tower_file(self, part: str) -> Path:
        """An OpenVINO IR where the export has one and OpenVINO is installed, else the ONNX file."""
        ir, onnx = self.folder / part / IR_FILE, self.folder / part / ONNX_FILE
        path = ir if ir.is_file() and (installed(Runtime.OPENVINO) or not onnx.is_file()) else onnx
        if not path.is_file():
            raise ModelLoadError(f"{self.folder} is incomplete: {part}/{ONNX_FILE} is missing. Export or download "
                                 "the model again.")
        return path

    def _runs(self, path: Path) -> Runtime:
        """Who runs a tower: an IR on OpenVINO; an ONNX file on the export's runtime, except the text tower, which
        runs on ONNX Runtime when installed, whatever the export's runtime, since a cold query spends its time loading
        it: ONNX Runtime imports and loads it in ~0.1 s (quick_start), OpenVINO in ~0.4 s (its import alone ~0.2 s);
        one short query runs in milliseconds on either."""
        if path.suffix == ".xml":
            return Runtime.OPENVINO
        if path.parent.name == TEXTUAL and installed(Runtime.ONNX):
            return Runtime.ONNX
        return self.runtime if installed(self.runtime) else Runtime.ONNX

    def encode_pixels(self, pixels: "np.ndarray | torch.Tensor") -> np.ndarray:
        """(n, H, W, 3) uint8 -> (n, dim) float32, L2-normalised (normalised inside our graphs; here for Immich's,
        whose towers take normalised float pixels, channels first)."""
        if not isinstance(pixels, np.ndarray):  # decoded on a GPU: exported runtimes run on the CPU
            pixels = pixels.cpu().numpy()
        start = time.perf_counter()
        tower = self._tower("image")
        x = np.ascontiguousarray(pixels, np.uint8)
        if tower.dtype != np.uint8:
            x = np.ascontiguousarray(((x.astype(np.float32) - self._mean) / self._std).transpose(0, 3, 1, 2),
                                     tower.dtype)
        elif len(tower.shape) == 4 and tower.shape[1] == 3:  # uint8, channels first
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        out = _rows(tower, x)
        self.encode_s += time.perf_counter() - start
        return out

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        text = self.meta["text"]
        if self._tokens is None:
            self._tokens = Tokens(self.folder / TEXTUAL, text["context_length"], text["sot"], text["eot"])
        tower = self._tower("text")
        length = tower.shape[1] if len(tower.shape) > 1 else None
        ids = self._tokens(texts, trim=text["trim"] and length is None)
        if length is not None and ids.shape[1] != length:  # a tower of a fixed length: pad, or cut as open_clip does
            fitted = np.zeros((len(ids), length), np.int64)
            kept = min(length, ids.shape[1])
            fitted[:, :kept] = ids[:, :kept]
            if ids.shape[1] > length:
                fitted[:, -1] = np.where(fitted[:, -1] != 0, self._tokens.eot, 0)
            ids = fitted
        return _rows(tower, ids.astype(tower.dtype, copy=False))


def open_export(root: Path, key: str, runtime: str | None = None, precision: str | None = None,
                threads: int | None = None) -> ExportedEncoder | None:
    """The exported encoder of `key`, if a usable export exists under `root`."""
    folder = find(root, key, runtime, precision)
    return ExportedEncoder.open(folder, key, threads) if folder else None
