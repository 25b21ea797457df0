"""Queries of the duplicates journal: each applied action, each file it touched, and what undo needs."""

from __future__ import annotations

import json

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from imgsearch.store.orm import (STATUS_INDEXED, STATUS_SET_ASIDE, DupAction, DupActionItem, Embedding, Image, Model,
                                 utc_now)


def start_action(session: Session, kind: str, target: str | None) -> int:
    action = DupAction(kind=kind, target=target)
    session.add(action)
    session.flush()
    return action.id


def drop_action(session: Session, action_id: int) -> None:
    session.execute(delete(DupAction).where(DupAction.id == action_id))


def get_image(session: Session, image_id: int) -> Image | None:
    return session.get(Image, image_id)


def add_item(session: Session, **values: object) -> DupActionItem:
    item = DupActionItem(**values)
    session.add(item)
    return item


def set_aside(session: Session, image: Image, item: DupActionItem) -> None:
    """The image leaves the search: its vectors go into the journal item, its row points at `item.dest`."""
    rows = session.execute(select(Embedding.model_id, Embedding.vector).where(Embedding.image_id == image.id)).all()
    item.vectors = json.dumps({str(m): v.hex() for m, v in rows})
    session.execute(delete(Embedding).where(Embedding.image_id == image.id))
    image.path, image.status, image.updated_at = item.dest, STATUS_SET_ASIDE, utc_now()
    session.flush()


def set_mtime(session: Session, image: Image, mtime_ns: int) -> None:
    image.mtime_ns = mtime_ns
    session.flush()


def latest_action(session: Session) -> DupAction | None:
    """The newest action not undone yet."""
    return session.scalar(select(DupAction).where(DupAction.undone_at.is_(None)).order_by(DupAction.id.desc()))


def unrestored_items(session: Session, action_id: int) -> list[DupActionItem]:
    """The files of an action not put back yet, last first."""
    return list(session.scalars(select(DupActionItem).where(DupActionItem.action_id == action_id,
                                                             DupActionItem.restored_at.is_(None))
                                .order_by(DupActionItem.id.desc())))


def pending_action(session: Session) -> dict | None:
    """The action an undo would reverse: kind, target, file count, date."""
    action = latest_action(session)
    if action is None:
        return None
    count = session.scalar(select(func.count()).select_from(DupActionItem)
                           .where(DupActionItem.action_id == action.id)) or 0
    return {"kind": action.kind, "target": action.target, "files": count, "created_at": action.created_at}


def put_back(session: Session, item: DupActionItem) -> None:
    """A set-aside image returns to `item.src` with the vectors the journal kept (its models' indexes update)."""
    image = session.get(Image, item.image_id) if item.image_id is not None else None
    if image is None or image.path != item.dest:
        return
    generations = dict(session.execute(select(Model.id, Model.generation)).all())
    vectors = {int(m): bytes.fromhex(v) for m, v in json.loads(item.vectors or "{}").items()}
    rows = [{"image_id": image.id, "model_id": m, "vector": v, "generation": generations[m] + 1}
            for m, v in vectors.items() if m in generations]
    if rows:
        session.execute(insert(Embedding), rows)
        session.execute(update(Model).where(Model.id.in_([r["model_id"] for r in rows]))
                        .values(generation=Model.generation + 1))
    image.path, image.status, image.updated_at = item.src, STATUS_INDEXED, utc_now()
    session.flush()


def restore_mtime(session: Session, item: DupActionItem) -> None:
    """A link replaced by the original bytes again: the image row gets the original file time back."""
    if item.image_id is not None:
        session.execute(update(Image).where(Image.id == item.image_id, Image.path == item.src)
                        .values(mtime_ns=item.mtime_ns))


def mark_restored(session: Session, item_id: int) -> None:
    session.execute(update(DupActionItem).where(DupActionItem.id == item_id).values(restored_at=utc_now()))


def mark_undone(session: Session, action_id: int) -> None:
    session.execute(update(DupAction).where(DupAction.id == action_id).values(undone_at=utc_now()))
