"""The store's own records: what it is given to write, in its own terms (rclip's db.py habit). The layers above
convert their objects into these (indexer.pipeline: a decoded file, a model's identity), so the store imports no
model or image code, and importing it pulls in neither Pillow nor torch."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class ModelRecord:
    """A model's identity: equal keys give comparable vectors."""

    key: str
    name: str  # the open_clip name as loaded (an absolute local-dir: path for local folders)
    pretrained: str | None  # a tag, or an absolute checkpoint path
    checkpoint_sha256: str | None  # for local weights: what the vectors were made with
    dim: int
    preprocess: str  # JSON of everything about preprocessing that changes the vectors


@dataclass(frozen=True)
class ImageRecord:
    """An indexed file: where it is, which bytes, and what its header says."""

    path: str
    size: int
    mtime_ns: int
    content_hash: str
    width: int
    height: int
    format: str | None
    taken_at: datetime | None = None
    camera_make: str | None = None
    camera_model: str | None = None
    gps_lat: float | None = None
    gps_lon: float | None = None
    duration_ms: int | None = None  # a video's length
    real_path: str | None = None  # where the path leads (symbolic links resolved) when it was read
    place: str | None = None  # filled after saving, from the GPS position (store.unplaced, store.save_places)
    country: str | None = None
