"""Queries on zero-shot tags."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from imgsearch.store import dialect
from imgsearch.store.dialect import chunks
from imgsearch.store.orm import Tag


def replace_tags(session: Session, model_id: int, labels: Sequence[str], rows: Sequence[tuple[int, str, float]]) -> None:
    """Drop the model's tags with these labels, then store (image_id, label, probability) rows; two taggings at once
    take turns (the last one's tags stay)."""
    dialect.one_at_a_time(session, "tags")
    for chunk in chunks(list(labels)):
        session.execute(delete(Tag).where(Tag.model_id == model_id, Tag.label.in_(chunk)))
    if rows:
        session.execute(insert(Tag), [{"image_id": i, "model_id": model_id, "label": label, "probability": p}
                                      for i, label, p in rows])


def tags_of(session: Session, image_id: int) -> list[tuple[str, float]]:
    """(label, probability) of one image, most likely first."""
    return [(label, p) for label, p in session.execute(
        select(Tag.label, Tag.probability).where(Tag.image_id == image_id).order_by(Tag.probability.desc()))]


def tag_counts(session: Session) -> dict[str, int]:
    """How many images carry each tag."""
    return dict(session.execute(select(Tag.label, func.count(func.distinct(Tag.image_id))).group_by(Tag.label)).all())
