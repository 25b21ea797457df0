"""Queries on tags: the model's zero-shot tags (`imgsearch tag`) and the ones people give photos."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, insert, select, union_all
from sqlalchemy.orm import Session

from imgsearch.store import dialect
from imgsearch.store.dialect import chunks
from imgsearch.store.orm import PhotoTag, Tag


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
    """(label, probability) of one image, most likely first: a person's tags first (probability 1), then the
    model's labels not among them."""
    given = list(session.scalars(select(PhotoTag.label).where(PhotoTag.image_id == image_id).order_by(PhotoTag.label)))
    return [(label, 1.0) for label in given] + [(label, p) for label, p in session.execute(
        select(Tag.label, Tag.probability).where(Tag.image_id == image_id).order_by(Tag.probability.desc()))
        if label not in given]


def _pairs():  # a SELECT of (image_id, label) over both kinds of tags
    return union_all(select(Tag.image_id, Tag.label), select(PhotoTag.image_id, PhotoTag.label)).subquery()


def tag_counts(session: Session) -> dict[str, int]:
    """How many images carry each tag (the model's or a person's)."""
    pairs = _pairs()
    return dict(session.execute(select(pairs.c.label, func.count(func.distinct(pairs.c.image_id)))
                                .group_by(pairs.c.label)).all())


def tagged(label: str):  # a SELECT of image ids
    """The ids of the images tagged `label` (any case) by the model or by a person."""
    return union_all(select(Tag.image_id).where(func.lower(Tag.label) == label.lower()),
                     select(PhotoTag.image_id).where(func.lower(PhotoTag.label) == label.lower()))


def give_tags(session: Session, image_ids: Sequence[int], labels: Sequence[str]) -> int:
    """A person's tags for some photos (those they carry already are kept; a label the library has already, in any
    case, keeps that spelling); how many were new."""
    if not image_ids or not labels:
        return 0
    known = {label.lower(): label for label in tag_counts(session)}
    spelled = list(dict.fromkeys(known.get(label.lower(), label) for label in labels))
    have: set[tuple[int, str]] = set()
    for chunk in chunks(list(image_ids)):
        have.update((i, label) for i, label in session.execute(
            select(PhotoTag.image_id, PhotoTag.label).where(PhotoTag.image_id.in_(chunk), PhotoTag.label.in_(spelled))))
    rows = [{"image_id": i, "label": label} for i in image_ids for label in spelled if (i, label) not in have]
    dialect.insert_missing(session, PhotoTag, rows)  # (a pair given meanwhile by another request is kept once)
    return len(rows)


def take_tags(session: Session, image_ids: Sequence[int], labels: Sequence[str]) -> int:
    """Remove tags from some photos, the model's with these labels too (a person said they are wrong); how many
    photos lost one."""
    lowered = [label.lower() for label in labels]
    if not image_ids or not lowered:
        return 0
    lost: set[int] = set()
    for chunk in chunks(list(image_ids)):
        for table in (PhotoTag, Tag):
            condition = table.image_id.in_(chunk) & func.lower(table.label).in_(lowered)
            lost.update(session.scalars(select(table.image_id).where(condition)))
            session.execute(delete(table).where(condition))
    return len(lost)
