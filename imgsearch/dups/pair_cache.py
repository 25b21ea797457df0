"""The candidate-pair cache of `imgsearch dups`: one file per model in the library's folder, columns as NumPy arrays.

A first scan of 100k photos keeps millions of candidate pairs (a model that finds every photo alike keeps all 32
neighbours of each); as database rows they took longer to write and read back than the scan itself. The file holds
what the scan covered (the model's generation, the floors it kept pairs down to) beside the pairs, so it can never
be mistaken for another state of the library. It is a cache: missing, damaged or from another model, it is ignored
and the next scan is a full one. Written whole to a temporary file, then renamed over the old one.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from imgsearch.dups.candidates import PairTable

FORMAT = 1


@dataclass(frozen=True)
class Cached:
    generation: int  # the model generation the pairs cover
    floor: dict  # what was kept: cosine, hamming, hashed_cosine, k
    pairs: PairTable


def path_for(folder: Path, model_id: int) -> Path:
    return folder / f"pairs-model-{model_id}.npz"


def load(folder: Path, model_id: int) -> Cached | None:
    """The cached pairs of the model, or None when there are none to trust (never made, damaged, another format)."""
    try:
        with np.load(path_for(folder, model_id), allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            columns = {f.name: data[f.name] for f in fields(PairTable)}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError):
        return None
    if meta.get("format") != FORMAT or meta.get("model_id") != model_id or \
            len({len(c) for c in columns.values()}) != 1 or len(columns["a"]) != meta.get("pairs"):
        return None
    return Cached(int(meta["generation"]), dict(meta["floor"]), PairTable(**columns))


def save(folder: Path, model_id: int, generation: int, floor: dict, pairs: PairTable) -> None:
    """Replace the model's cached pairs in one rename: a reader sees the old file or the new one, never half."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "model_id": model_id, "generation": generation, "floor": floor, "pairs": len(pairs)}
    fd, tmp = tempfile.mkstemp(prefix=".pairs-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            columns: dict[str, Any] = {"meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                                       **pairs.columns()}
            np.savez(f, **columns)
        os.replace(tmp, path_for(folder, model_id))
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def without(pairs: PairTable, ids: np.ndarray) -> PairTable:
    """The pairs touching none of `ids` (photos rescanned: their pairs are found again)."""
    return pairs.take(~(np.isin(pairs.a, ids) | np.isin(pairs.b, ids)))
