"""Settings as frozen dataclasses: the one place defaults live."""

from __future__ import annotations

import os
from enum import StrEnum
from typing import Any
from dataclasses import asdict, dataclass, field
from pathlib import Path

from imgsearch.filters import Filters

DEFAULT_MODEL = "ViT-B-32"
# LAION-2B ViT-B/32: the best-known open ViT-B/32 weights, the same tag clip-retrieval defaults to.
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"

LIBRARY_ENV = "IMGSEARCH_LIBRARY"
DB_URL_ENV = "IMGSEARCH_DB_URL"  # the library's database server (PostgreSQL), when not its own SQLite file


MAX_K = 10_000  # results per page, in every front end: past this a page is an export (imgsearch export)
SORTS = ("score", "date", "path")

# Folders that hold no user photos or hold copies managed by other software.
DEFAULT_EXCLUDES = (
    ".git",
    "node_modules",
    "@eaDir",
    ".Trash*",
    "$RECYCLE.BIN",
    "System Volume Information",
)

DB_FILENAME = "library.db"
MANIFEST_FILENAME = "manifest.json"
INDEX_DIRNAME = "indexes"
DUPS_DIRNAME = "dups"  # in a library's folder: the candidate-pair cache of `imgsearch dups`
SERVER_FILENAME = "server.json"  # written by `imgsearch serve`: where CLI commands on this machine find it


def default_library_dir() -> Path:
    """The library used when neither --library nor IMGSEARCH_LIBRARY is given."""
    env = os.environ.get(LIBRARY_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("imgsearch", appauthor=False)) / "library"


@dataclass(frozen=True)
class ModelSpec:
    """What the user asked for: an open_clip name (or hf-hub:/local-dir: id) and a pretrained tag or file."""

    name: str = DEFAULT_MODEL
    pretrained: str | None = DEFAULT_PRETRAINED


@dataclass(frozen=True)
class CrawlSettings:
    """Which files under the roots count as photos."""

    include_hidden: bool = False
    excludes: tuple[str, ...] = ()
    extensions: frozenset[str] | None = None  # None: every format imgsearch reads (images.formats)


@dataclass(frozen=True)
class VideoSampling:
    """Which frames of a video are embedded: key frames, at most one per `every_s` seconds (spread further apart
    for long videos) and `max_frames` per video."""

    every_s: float = 2.0
    max_frames: int = 300


class Runtime(StrEnum):
    """What encodes: PyTorch (open_clip), or an export on OpenVINO or ONNX Runtime (imgsearch.models.runtimes)."""

    TORCH = "torch"
    OPENVINO = "openvino"
    ONNX = "onnx"


class Precision(StrEnum):
    FP32 = "fp32"
    INT8 = "int8"  # a quantized image tower (exports only), kept only when it passes the fidelity gate


class Tier(StrEnum):
    """How alike the photos of a duplicates group are, most alike first."""

    EXACT = "exact"  # the same bytes
    NEAR = "near"  # the same pixels: re-encoded, resized, flipped, rotated, trimmed
    SIMILAR = "similar"  # the same scene (burst shots): only as good as the model


@dataclass(frozen=True)
class IndexSettings:
    """Knobs of one indexing run."""

    crawl: CrawlSettings = field(default_factory=CrawlSettings)
    batch_size: int = 0  # 0: chosen from the device (see encoder.default_batch_size)
    workers: int = -1  # decode processes; -1: one per core, 0: decode in this process
    max_image_pixels: int = 0  # 0: chosen from RAM and workers (see images.default_pixel_limit)
    gpu_decode: bool | None = None  # JPEGs decoded on the GPU too (nvJPEG); None: when the encoder is on CUDA
    rebuild: bool = False  # rebuild (and retrain) the FAISS index instead of updating it
    video: VideoSampling = field(default_factory=VideoSampling)
    ray: str | None = None  # decode and encode on a Ray cluster: "local", "auto" or "ray://HOST:PORT"; None: here
    gpus_per_worker: float = 0.0  # with ray: GPUs per encoder actor (0: encode on the cluster's CPUs)
    index_memory: int | None = None  # bytes of RAM the search index may take (None: as the last build was told)
    runtime: str | None = None  # a Runtime; None: IMGSEARCH_RUNTIME, else the fastest here
    precision: str = Precision.FP32  # a Precision


@dataclass(frozen=True)
class SearchOptions:
    """One page of results: k of them after skipping offset, at least min_score similar, in this order."""

    k: int = 10
    offset: int = 0
    min_score: float | None = None
    sort: str = "score"
    filters: Filters = field(default_factory=Filters)


DUP_TIERS = tuple(Tier)
DEFAULT_DUP_TIERS = (Tier.EXACT, Tier.NEAR)  # similar only when asked: it is as good as the model


def _threshold(default: float, low: float, high: float, unit: str | None = None) -> Any:
    """A threshold field with its valid range and unit (None: a cosine); dups.options checks values against it."""
    return field(default=default, metadata={"range": (low, high), "unit": unit})


@dataclass(frozen=True)
class DupThresholds:
    """When a candidate pair counts as a duplicate; stored per model (a model's cosines have their own scale)."""

    # coarse pHash bits (of 64) that may differ, over the 8 flips/rotations
    near_hamming: int = _threshold(10, 0, 32, "bits (of 64)")
    # fine pHash bits (of 256) that may differ for "the same pixels" (re-encode, resize, flip...)
    near_fine: int = _threshold(40, 0, 128, "bits (of 256)")
    # fine bits that may differ between an inner crop of one and the other (a trimmed copy)
    near_crop: int = _threshold(68, 0, 128, "bits (of 256)")
    # an embedding cosine a near-exact pair must also reach (off: the pixel check decides, whatever the model)
    near_cosine: float = _threshold(-1.0, -1.0, 1.0)
    # pairs this alike in embedding space are kept as candidates too (what finds flat pictures, whose hashes are
    # noise); no longer a condition of the near-exact tier
    edited_cosine: float = _threshold(0.98, -1.0, 1.0)
    # burst shots / the same scene
    similar_cosine: float = _threshold(0.95, -1.0, 1.0)

    def merged(self, **given: object) -> "DupThresholds":
        """These thresholds with the given (not None) values replacing them."""
        return DupThresholds(**{**asdict(self), **{k: v for k, v in given.items() if v is not None}})


@dataclass(frozen=True)
class DupOptions:
    """What `imgsearch dups` looks for; None thresholds mean: the model's stored ones (else the defaults)."""

    tiers: tuple[str, ...] = DEFAULT_DUP_TIERS
    near_hamming: int | None = None
    near_fine: int | None = None
    near_crop: int | None = None
    near_cosine: float | None = None
    edited_cosine: float | None = None
    similar_cosine: float | None = None
    within_s: float | None = None  # similar tier: only photos taken this close in time (both dates known)
    max_group: int = 50  # a group never grows past this: chains cannot merge a whole library
    neighbours: int = 32  # per photo in the candidate search
    folders: tuple[str, ...] = ()  # only photos inside these (both sides of a pair)
    keep: tuple[str, ...] = ()  # preferred keepers, overriding the automatic choice
    prefer_dirs: tuple[str, ...] = ()  # keepers come from these folders first
    rescan: bool = False  # recompute every candidate pair instead of only the new photos'
    workers: int = -1  # hashing processes; -1: one per core
