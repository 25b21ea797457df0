"""Queries of the duplicates journal: each applied action, each file it touched, and what undo needs.

An item's state says how far its file operation got (see orm.ITEM_*): the intent is committed
before a file is touched and the outcome after it, so a crash in between is settled later from
what is on disk.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from imgsearch.store.orm import (ITEM_DONE, ITEM_LINKING, ITEM_MOVING, ITEM_RESTORED, ITEM_RESTORING,
                                 STATUS_INDEXED, STATUS_SET_ASIDE, DupAction, DupActionItem, Embedding, Image, Model,
                                 utc_now)

PASSING = (ITEM_MOVING, ITEM_LINKING, ITEM_RESTORING)


def start_action(session: Session, kind: str, target: str | None) -> int:
    action = DupAction(kind=kind, target=target, created_dirs="[]")
    session.add(action)
    session.flush()
    return action.id


def add_created_dirs(session: Session, action_id: int, folders: Sequence[str]) -> None:
    """Remember folders the action is about to create: undo removes them again (and no others)."""
    action = session.get(DupAction, action_id)
    assert action is not None
    action.created_dirs = json.dumps(json.loads(action.created_dirs or "[]") + list(folders))


def created_dirs(session: Session, action_id: int) -> list[str]:
    action = session.get(DupAction, action_id)
    return json.loads(action.created_dirs or "[]") if action is not None else []


def drop_action_if_empty(session: Session, action_id: int) -> None:
    """An action that touched no file leaves no trace (but keeps the folders it made listed if it made any)."""
    if not session.scalar(select(func.count()).select_from(DupActionItem).where(DupActionItem.action_id == action_id)):
        session.execute(delete(DupAction).where(DupAction.id == action_id))


def get_image(session: Session, image_id: int) -> Image | None:
    return session.get(Image, image_id)


def add_item(session: Session, **values: object) -> DupActionItem:
    item = DupActionItem(**values)
    session.add(item)
    session.flush()
    return item


def get_item(session: Session, item_id: int) -> DupActionItem | None:
    return session.get(DupActionItem, item_id)


def item(session: Session, item_id: int) -> DupActionItem:
    """A journal entry this process wrote and still works on (so it exists)."""
    return session.get_one(DupActionItem, item_id)


def action_of(session: Session, item: DupActionItem) -> DupAction:
    return session.get_one(DupAction, item.action_id)


def set_state(session: Session, item_id: int, state: str) -> None:
    session.execute(update(DupActionItem).where(DupActionItem.id == item_id).values(state=state))


def drop_item(session: Session, item_id: int) -> None:
    """An intent that never happened (the file is still where it was)."""
    session.execute(delete(DupActionItem).where(DupActionItem.id == item_id))


def set_aside(session: Session, item: DupActionItem) -> None:
    """The image leaves the search: its vectors go into the journal item, its row points at `item.dest`.
    Every model's index drops it at its next update. The item is done."""
    image = session.get(Image, item.image_id) if item.image_id is not None else None
    if image is not None and image.path == item.src:
        rows = session.execute(select(Embedding.model_id, Embedding.vector)
                               .where(Embedding.image_id == image.id)).all()
        item.vectors = json.dumps({str(m): v.hex() for m, v in rows})
        session.execute(delete(Embedding).where(Embedding.image_id == image.id))
        image.path, image.status, image.updated_at = item.dest, STATUS_SET_ASIDE, utc_now()
        session.execute(update(Model).values(generation=Model.generation + 1))
    item.state = ITEM_DONE
    session.flush()


def linked(session: Session, item: DupActionItem, mtime_ns: int) -> None:
    """A copy is now a link with the same bytes: its row takes the link's file time (nothing to re-encode).
    The item is done."""
    session.execute(update(Image).where(Image.id == item.image_id, Image.path == item.src).values(mtime_ns=mtime_ns))
    item.state = ITEM_DONE
    session.flush()


def put_back(session: Session, item: DupActionItem) -> None:
    """A set-aside image returns to `item.src` with the vectors the journal kept (its models' indexes update).
    The item is restored."""
    image = session.get(Image, item.image_id) if item.image_id is not None else None
    if image is not None and image.path == item.dest:
        generations = dict(session.execute(select(Model.id, Model.generation)).all())
        vectors = {int(m): bytes.fromhex(v) for m, v in json.loads(item.vectors or "{}").items()}
        rows = [{"image_id": image.id, "model_id": m, "vector": v, "generation": generations[m] + 1}
                for m, v in vectors.items() if m in generations]
        if rows:
            session.execute(insert(Embedding), rows)
            session.execute(update(Model).where(Model.id.in_([r["model_id"] for r in rows]))
                            .values(generation=Model.generation + 1))
        image.path, image.status, image.updated_at = item.src, STATUS_INDEXED, utc_now()
    _restored(session, item)


def unlinked(session: Session, item: DupActionItem) -> None:
    """A link replaced by the original bytes again: the row gets the original file time back. Restored."""
    if item.image_id is not None:
        session.execute(update(Image).where(Image.id == item.image_id, Image.path == item.src)
                        .values(mtime_ns=item.mtime_ns))
    _restored(session, item)


def _restored(session: Session, item: DupActionItem) -> None:
    item.state, item.restored_at = ITEM_RESTORED, utc_now()
    session.flush()


def latest_action(session: Session) -> DupAction | None:
    """The newest action not undone yet."""
    return session.scalar(select(DupAction).where(DupAction.undone_at.is_(None)).order_by(DupAction.id.desc()))


def items_to_undo(session: Session, action_id: int) -> list[DupActionItem]:
    """The files of an action not put back yet, last first."""
    return list(session.scalars(select(DupActionItem).where(DupActionItem.action_id == action_id,
                                                             DupActionItem.state == ITEM_DONE)
                                .order_by(DupActionItem.id.desc())))


def passing_items(session: Session) -> list[DupActionItem]:
    """Items whose file operation may or may not have happened (a crash between intent and outcome)."""
    return list(session.scalars(select(DupActionItem).where(DupActionItem.state.in_(PASSING))
                                .order_by(DupActionItem.id)))


def mark_undone(session: Session, action_id: int) -> None:
    session.execute(update(DupAction).where(DupAction.id == action_id).values(undone_at=utc_now()))


def pending_action(session: Session) -> dict | None:
    """The action an undo would reverse: kind, target, file count, date."""
    action = latest_action(session)
    if action is None:
        return None
    count = session.scalar(select(func.count()).select_from(DupActionItem)
                           .where(DupActionItem.action_id == action.id)) or 0
    return {"kind": action.kind, "target": action.target, "files": count, "created_at": action.created_at}
