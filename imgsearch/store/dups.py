"""Queries of duplicate finding: perceptual and full hashes, the candidate-pair cache, scan state."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from imgsearch.store import dialect
from imgsearch.store.dialect import chunks
from imgsearch.store.orm import STATUS_INDEXED, DupPair, DupScan, Image, ImageHash


def image_hashes(session: Session) -> dict[int, ImageHash]:
    return {h.image_id: h for h in session.scalars(select(ImageHash))}


def save_image_hashes(session: Session, rows: Sequence[dict]) -> None:
    """Insert or replace hash rows ({image_id, content_hash, phashes, full_hash, full_hash_stat})."""
    dialect.upsert(session, ImageHash, rows, [ImageHash.image_id],
                   ("content_hash", "phashes", "full_hash", "full_hash_stat"))


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
        dialect.insert_missing(session, DupScan, [{"model_id": model_id, "thresholds": "{}", "pair_floor": "{}"}])
        scan = session.get_one(DupScan, model_id)
    return scan


def cached_pairs(session: Session, model_id: int) -> list[tuple]:
    return [tuple(r) for r in session.execute(
        select(DupPair.a, DupPair.b, DupPair.cosine, DupPair.hamming, DupPair.transform, DupPair.fine, DupPair.crop)
        .where(DupPair.model_id == model_id))]


def replace_pairs(session: Session, model_id: int, rescanned: Sequence[int] | None, pairs: Sequence[dict]) -> None:
    """Drop the cached pairs touching the rescanned ids (all when None), then store the new ones."""
    if rescanned is None:
        session.execute(delete(DupPair).where(DupPair.model_id == model_id))
    for chunk in chunks(list(rescanned or [])):
        session.execute(delete(DupPair).where(DupPair.model_id == model_id,
                                              or_(DupPair.a.in_(chunk), DupPair.b.in_(chunk))))
    dialect.insert_missing(session, DupPair, [{"model_id": model_id, **p} for p in pairs])
