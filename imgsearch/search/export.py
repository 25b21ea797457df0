"""Put results and vectors where users' own tools can take them: copies, links, npy, parquet."""

from __future__ import annotations

import filecmp
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from imgsearch.errors import MissingExtraError, UsageError, from_os_error
from imgsearch.fs import free_path
from imgsearch.search.result import SearchResult


def export_results(results: Sequence[SearchResult], dest: Path, mode: str = "copy") -> list[Path]:
    """Copy (or symlink) each result into `dest` as NNN-name, in rank order; returns the files it added.

    Never overwrites a file: a result already there (the same bytes, or a link to it) is left as it is,
    another file of the same name makes the new one `NNN-name (2).ext`.
    """
    if mode not in ("copy", "link"):
        raise UsageError(f"unknown export mode {mode!r}", "mode")
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"{dest} exists and is not a folder", "dest")
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise from_os_error(exc, f"cannot make the folder {dest}") from exc
    width = max(3, len(str(len(results))))
    written = []
    for r in results:
        wanted = dest / f"{r.rank:0{width}d}-{Path(r.path).name}"
        if _holds(wanted, r.path, mode):
            continue
        target = free_path(wanted)
        try:
            if mode == "copy":
                shutil.copy2(r.path, target)
            else:
                os.symlink(os.path.abspath(r.path), target)
        except OSError as exc:
            raise from_os_error(exc, f"cannot {mode} {r.path} to {target}") from exc
        written.append(target)
    return written


def _holds(target: Path, source: str, mode: str) -> bool:
    """Whether `target` already is this result: a link to it, or a copy with the same bytes."""
    if mode == "link":
        return target.is_symlink() and os.path.realpath(target) == os.path.realpath(source)
    try:
        return target.is_file() and not target.is_symlink() and filecmp.cmp(target, source, shallow=False)
    except OSError:
        return False


def export_vectors(dest: Path, ids: np.ndarray, paths: Sequence[str], vectors: np.ndarray, fmt: str,
                   model: dict) -> list[Path]:
    """npy: DEST/vectors.npy (float32), ids.npy, paths.jsonl, model.json; parquet: DEST/vectors.parquet."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UsageError(f"{dest} exists and is not an empty folder: give a new folder to export into", "dest")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "model.json").write_text(json.dumps(model, indent=2, default=str) + "\n")
    if fmt == "npy":
        np.save(dest / "vectors.npy", np.ascontiguousarray(vectors, dtype=np.float32))
        np.save(dest / "ids.npy", np.asarray(ids, dtype=np.int64))
        with open(dest / "paths.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps({"id": int(i), "path": p}, ensure_ascii=False) + "\n" for i, p in zip(ids, paths))
        return [dest / n for n in ("vectors.npy", "ids.npy", "paths.jsonl", "model.json")]
    if fmt == "parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise MissingExtraError("parquet export needs pyarrow: pip install pyarrow", "fmt") from exc
        dim = vectors.shape[1] if vectors.ndim == 2 else 0
        column = pa.FixedSizeListArray.from_arrays(pa.array(np.asarray(vectors, np.float32).ravel()), dim)
        pq.write_table(pa.table({"id": pa.array(ids, pa.int64()), "path": pa.array(list(paths), pa.string()),
                                 "vector": column}), dest / "vectors.parquet")
        return [dest / "vectors.parquet", dest / "model.json"]
    raise UsageError(f"{{param}} must be npy or parquet, got {fmt!r}", "fmt")
