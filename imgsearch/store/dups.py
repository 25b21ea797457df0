"""Queries of duplicate finding: perceptual and full hashes, the candidate-pair cache, scan state."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from imgsearch.store import dialect
from imgsearch.store.dialect import chunks
from imgsearch.store.orm import STATUS_INDEXED, DupAction, DupScan, Image, ImageHash
from imgsearch.store.vectors import generation_of


def image_hashes(session: Session) -> dict[int, Any]:
    """Every image's stored fingerprint, as rows (image_id, content_hash, phashes): plain rows, not ORM objects
    (100,000 fingerprints are ~0.5 GB; full-content hashes: full_hashes)."""
    return {r.image_id: r for r in session.execute(
        select(ImageHash.image_id, ImageHash.content_hash, ImageHash.phashes))}


def full_hashes(session: Session, ids: Sequence[int]) -> dict[int, Any]:
    """Rows (image_id, content_hash, full_hash, full_hash_stat) of these images, without their fingerprints."""
    out: dict[int, Any] = {}
    for part in chunks(list(ids)):
        out.update((r.image_id, r) for r in session.execute(
            select(ImageHash.image_id, ImageHash.content_hash, ImageHash.full_hash, ImageHash.full_hash_stat)
            .where(ImageHash.image_id.in_(part))))
    return out


def save_full_hashes(session: Session, rows: Sequence[tuple[int, str, str, str, bool]]) -> None:
    """Store (image id, content hash, full hash, its stat key, whether the stored row is for this same content)
    rows; a fingerprint made for other content is dropped (the next `dups` or `index` makes it again)."""
    same = [{"image_id": i, "content_hash": c, "full_hash": h, "full_hash_stat": k} for i, c, h, k, kept in rows if kept]
    dialect.upsert(session, ImageHash, same, [ImageHash.image_id], ("full_hash", "full_hash_stat"))
    save_image_hashes(session, [{"image_id": i, "content_hash": c, "phashes": None, "full_hash": h, "full_hash_stat": k}
                                for i, c, h, k, kept in rows if not kept])


def save_image_hashes(session: Session, rows: Sequence[dict]) -> None:
    """Insert or replace hash rows ({image_id, content_hash, phashes, full_hash, full_hash_stat})."""
    dialect.upsert(session, ImageHash, rows, [ImageHash.image_id],
                   ("content_hash", "phashes", "full_hash", "full_hash_stat"))


def save_fingerprints(session: Session, rows: Sequence[tuple[int, str, bytes]]) -> None:
    """Store (image id, content hash, fingerprint) rows made at index time; a full-content hash is kept only where
    the content it was read for is the same."""
    if not rows:
        return
    known: dict[int, Any] = {}
    for part in chunks([r[0] for r in rows]):
        known.update((r.image_id, r) for r in session.execute(
            select(ImageHash.image_id, ImageHash.content_hash, ImageHash.full_hash, ImageHash.full_hash_stat)
            .where(ImageHash.image_id.in_(part))))
    save = []
    for image_id, content_hash, blob in rows:
        old = known.get(image_id)
        same = old is not None and old.content_hash == content_hash
        save.append({"image_id": image_id, "content_hash": content_hash, "phashes": blob,
                     "full_hash": old.full_hash if old is not None and same else None,
                     "full_hash_stat": old.full_hash_stat if old is not None and same else None})
    save_image_hashes(session, save)


def fingerprint_lengths(session: Session) -> list:
    """Rows (id, path, content hash, stored fingerprint's content hash or None, its length or None) of every indexed
    image: which ones still need a fingerprint (none yet, made for other content, or by another version)."""
    return list(session.execute(
        select(Image.id, Image.path, Image.content_hash, ImageHash.content_hash, func.length(ImageHash.phashes))
        .outerjoin(ImageHash, ImageHash.image_id == Image.id).where(Image.status == STATUS_INDEXED)))


def exact_candidates(session: Session) -> list[list[int]]:
    """Ids of indexed images sharing (size, partial content hash) with another: possibly byte-identical."""
    keys = (select(Image.size, Image.content_hash).where(Image.status == STATUS_INDEXED,
                                                           Image.content_hash.is_not(None))
            .group_by(Image.size, Image.content_hash).having(func.count() > 1).subquery())
    rows = session.execute(select(Image.id, Image.size, Image.content_hash)
                           .join(keys, (Image.size == keys.c.size) & (Image.content_hash == keys.c.content_hash))
                           .where(Image.status == STATUS_INDEXED).order_by(Image.id))
    groups: dict[tuple[int, str | None], list[int]] = {}
    for i, size, h in rows:
        groups.setdefault((size, h), []).append(i)
    return list(groups.values())


def dup_scan(session: Session, model_id: int) -> DupScan:
    """The model's scan record, made on first use (two scans starting at once make it once)."""
    scan = session.get(DupScan, model_id)
    if scan is None:
        dialect.insert_missing(session, DupScan, [{"model_id": model_id, "thresholds": "{}"}])
        scan = session.get_one(DupScan, model_id)
    return scan


def dups_state(session: Session, model_id: int) -> tuple:
    """What a duplicates answer for the model depends on, in a few values: the model's generation (photos and
    vectors added, changed, forgotten), the thresholds remembered for it, and the latest duplicates action and undo."""
    scan = session.get(DupScan, model_id)
    last = session.execute(select(func.max(DupAction.id), func.max(DupAction.undone_at))).one()
    remembered = json.loads(scan.thresholds or "{}") if scan is not None else {}  # the first scan makes the row
    return (generation_of(session, model_id), json.dumps(remembered, sort_keys=True), *last)
