"""Acting on duplicate groups without ever deleting a photo: move the copies aside, or replace
byte-identical copies by links, with a journal in the library so `dups undo` puts everything back.

Each file is one step: the journal row, the library change and the file operation commit together
or not at all, so an interruption leaves every photo either where it was or recorded where it went.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import OperationalError as SAOperationalError
from sqlalchemy.orm import Session, sessionmaker

from imgsearch.dups.grouping import Group
from imgsearch.dups.hashing import full_hash
from imgsearch.errors import ImgSearchError, UsageError
from imgsearch.store.orm import (
    STATUS_INDEXED,
    STATUS_SET_ASIDE,
    DupAction,
    DupActionItem,
    Embedding,
    Image,
    Model,
    utc_now,
)

LINK_KINDS = ("hard", "symbolic")


@dataclass(frozen=True)
class Step:
    src: str  # the copy acted on
    dest: str  # move: where it goes; link: the keeper it will point to
    image_id: int


@dataclass
class ActionReport:
    kind: str  # move | hardlink | symlink | undo-move | undo-hardlink | undo-symlink
    done: list[Step] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, why it failed): exit 1
    refused: list[tuple[str, str]] = field(default_factory=list)  # (path, why the plan leaves it alone)
    bytes: int = 0
    applied: bool = False  # False: a dry run


def _free_path(path: Path, taken: Collection[str] = ()) -> Path:
    """`path`, or `name (2).ext`... when it exists or is already `taken`: an action never overwrites anything."""
    def used(p: Path) -> bool:
        return os.path.lexists(p) or str(p) in taken

    if not used(path):
        return path
    n = 2
    while used(candidate := path.with_name(f"{path.stem} ({n}){path.suffix}")):
        n += 1
    return candidate


def _root_of(path: str, roots: Sequence[str]) -> str | None:
    inside = [r for r in roots if path.startswith(r.rstrip("/") + "/")]
    return max(inside, key=len) if inside else None


def plan_moves(groups: Sequence[Group], target: Path, roots: Sequence[str]) -> list[Step]:
    """Every non-keeper, to `target` + its path relative to its indexed folder."""
    target = target.expanduser().absolute()
    for r in roots:
        if str(target) == r or str(target).startswith(r.rstrip("/") + "/"):
            raise UsageError(f"--move-to {target} is inside the indexed folder {r}: the copies would be indexed "
                             "again. Pick a folder outside every indexed folder.")
    steps, taken = [], set()
    for g in groups:
        for m in g.duplicates:
            root = _root_of(m.photo.path, roots)
            rel = os.path.relpath(m.photo.path, root) if root else m.photo.path.lstrip("/")
            # two copies may share a relative path (from different folders), or it may exist there already
            dest = _free_path(target / rel, taken)
            taken.add(str(dest))
            steps.append(Step(m.photo.path, str(dest), m.photo.id))
    return steps


def plan_links(groups: Sequence[Group]) -> tuple[list[Step], list[tuple[str, str]]]:
    """Byte-identical copies to replace by links to their keeper; other members are refused with a reason."""
    steps, refused = [], []
    for g in groups:
        for m in g.duplicates:
            if m.relation == "exact":
                steps.append(Step(m.photo.path, g.keeper.path, m.photo.id))
            else:
                refused.append((m.photo.path, f"not byte-identical to {g.keeper.path} ({m.relation}): "
                                              "only exact copies can be replaced by links"))
    return steps, refused


def apply(sessions: sessionmaker[Session], kind: str, steps: Sequence[Step], target: str | None) -> ActionReport:
    """Carry out planned moves (kind 'move') or links ('hardlink' / 'symlink'), journaling each file."""
    report = ActionReport(kind, applied=True)
    with sessions.begin() as session:
        action = DupAction(kind=kind, target=target)
        session.add(action)
        session.flush()
        action_id = action.id
    for step in steps:
        revert = None
        with sessions() as session:
            try:
                image = session.get(Image, step.image_id)
                st = os.stat(step.src, follow_symlinks=False)
                if image is None or image.path != step.src or (st.st_size, st.st_mtime_ns) != (image.size, image.mtime_ns):
                    raise _Refused("changed since it was indexed: run `imgsearch index` and `imgsearch dups` again")
                digest = full_hash(step.src)
                item = DupActionItem(action_id=action_id, image_id=step.image_id, src=step.src, dest=step.dest,
                                     size=st.st_size, mtime_ns=st.st_mtime_ns, mode=st.st_mode & 0o7777,
                                     full_hash=digest)
                session.add(item)
                revert = _move_out(session, image, item) if kind == "move" else _link(session, image, item, kind, digest)
                session.commit()
            except (_Refused, OSError, SAOperationalError, IntegrityError) as exc:
                session.rollback()
                if revert is not None:
                    revert()  # the file operation happened but could not be recorded: undo it now
                reason = str(exc) if isinstance(exc, _Refused) else \
                    f"{getattr(exc, 'strerror', None) or exc} (left where it was)"
                report.problems.append((step.src, reason))
                continue
        report.done.append(Step(step.src, item.dest, step.image_id))
        report.bytes += st.st_size
    with sessions.begin() as session:
        if not report.done:
            session.execute(delete(DupAction).where(DupAction.id == action_id))
        else:
            _bump_models(session, [s.image_id for s in report.done] if kind == "move" else [])
    return report


class _Refused(Exception):
    pass


def _move_out(session: Session, image: Image, item: DupActionItem) -> Callable[[], None]:
    """Set the image aside (its vectors into the journal) and move the file; returns how to move it back."""
    dest = _free_path(Path(item.dest))
    item.dest = str(dest)
    rows = session.execute(select(Embedding.model_id, Embedding.vector).where(Embedding.image_id == image.id)).all()
    item.vectors = json.dumps({str(m): v.hex() for m, v in rows})
    session.execute(delete(Embedding).where(Embedding.image_id == image.id))
    image.path, image.status, image.updated_at = str(dest), STATUS_SET_ASIDE, utc_now()
    session.flush()
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(item.src, dest)  # a rename on one disk; copy (with times) then unlink across disks
    return lambda: shutil.move(dest, item.src)


def _link(session: Session, image: Image, item: DupActionItem, kind: str, digest: str) -> Callable[[], None]:
    """Replace a byte-identical copy by a link to the keeper: the link is made aside, then renamed over
    the copy; returns how to put the copy's bytes back."""
    if os.path.samefile(item.src, item.dest):
        raise _Refused(f"already the same file as {item.dest}")
    if full_hash(item.dest) != digest:
        raise _Refused(f"its bytes no longer equal those of {item.dest}: run `imgsearch dups` again")
    tmp = _free_path(Path(item.src).with_name(f".{Path(item.src).name}.imgsearch-link"))
    try:
        if kind == "hardlink":
            os.link(item.dest, tmp)
        else:
            os.symlink(item.dest, tmp)
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            raise _Refused(f"{item.dest} is on another disk: hard links cannot cross disks, use --link symbolic") from exc
        raise
    image.mtime_ns = os.stat(tmp).st_mtime_ns  # same bytes: the next index run has nothing to redo
    session.flush()
    os.replace(tmp, item.src)
    return lambda: _restore_bytes(item)


def _bump_models(session: Session, image_ids: Sequence[int]) -> None:
    """Vectors left or came back: every model's index must update (ids gone are removed, new ones added)."""
    if image_ids:
        session.execute(update(Model).values(generation=Model.generation + 1))


def undo_last(sessions: sessionmaker[Session]) -> ActionReport:
    """Reverse the latest action not yet undone, file by file; what cannot be restored is reported and kept."""
    with sessions() as session:
        action = session.scalar(select(DupAction).where(DupAction.undone_at.is_(None)).order_by(DupAction.id.desc()))
        if action is None:
            raise ImgSearchError("nothing to undo: no `imgsearch dups --apply` action is pending in this library.")
        items = list(session.scalars(select(DupActionItem).where(DupActionItem.action_id == action.id,
                                                                  DupActionItem.restored_at.is_(None))
                                     .order_by(DupActionItem.id.desc())))
        action_id, kind, target = action.id, action.kind, action.target
    report = ActionReport(f"undo-{kind}", applied=True)
    for item in items:
        try:
            with sessions.begin() as session:
                if kind == "move":
                    _move_back(session, item)
                else:
                    _unlink(session, item, kind)
                session.execute(update(DupActionItem).where(DupActionItem.id == item.id).values(restored_at=utc_now()))
            report.done.append(Step(item.src, item.dest, item.image_id or 0))
            report.bytes += item.size
        except _Refused as exc:
            report.problems.append((item.src, str(exc)))
        except OSError as exc:
            report.problems.append((item.src, f"{exc.strerror or exc}"))
    with sessions.begin() as session:
        if not report.problems:
            session.execute(update(DupAction).where(DupAction.id == action_id).values(undone_at=utc_now()))
    if kind == "move" and target:
        _prune_empty_dirs(Path(target), [Path(s.dest).parent for s in report.done])
    return report


def _move_back(session: Session, item: DupActionItem) -> None:
    if os.path.lexists(item.src):
        raise _Refused(f"a file now exists at {item.src}; the copy stays at {item.dest}")
    if not os.path.lexists(item.dest):
        raise _Refused(f"{item.dest} is gone (moved or deleted after the action): nothing to put back")
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
        session.flush()
    os.makedirs(os.path.dirname(item.src), exist_ok=True)
    shutil.move(item.dest, item.src)


def _unlink(session: Session, item: DupActionItem, kind: str) -> None:
    """Put the original bytes back where a link now is (copied from the keeper, checked against the journal)."""
    is_ours = (os.path.islink(item.src) and os.readlink(item.src) == item.dest) if kind == "symlink" else \
        (os.path.exists(item.src) and os.path.exists(item.dest) and os.path.samefile(item.src, item.dest))
    if not is_ours:
        raise _Refused(f"{item.src} is no longer the link this action made; left as it is")
    if full_hash(item.dest) != item.full_hash:
        raise _Refused(f"{item.dest} changed since the link was made, so the original bytes cannot be rebuilt from it")
    _restore_bytes(item)
    if item.image_id is not None:
        session.execute(update(Image).where(Image.id == item.image_id, Image.path == item.src)
                        .values(mtime_ns=item.mtime_ns))


def _restore_bytes(item: DupActionItem) -> None:
    """The copy's original file again (bytes from the keeper, mode and times from the journal), atomically."""
    tmp = _free_path(Path(item.src).with_name(f".{Path(item.src).name}.imgsearch-restore"))
    try:
        shutil.copyfile(item.dest, tmp)
        os.chmod(tmp, item.mode)
        os.utime(tmp, ns=(item.mtime_ns, item.mtime_ns))
        os.replace(tmp, item.src)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def _prune_empty_dirs(target: Path, folders: Sequence[Path]) -> None:
    """Remove folders an undone move left empty inside its target (never the target's parents)."""
    for folder in sorted(set(folders), key=lambda p: -len(p.parts)):
        while folder != target.parent and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent


def pending_action(sessions: sessionmaker[Session]) -> dict | None:
    """The action `dups undo` would reverse: kind, target, file count, date."""
    with sessions() as session:
        action = session.scalar(select(DupAction).where(DupAction.undone_at.is_(None)).order_by(DupAction.id.desc()))
        if action is None:
            return None
        count = len(session.scalars(select(DupActionItem.id).where(DupActionItem.action_id == action.id)).all())
        return {"kind": action.kind, "target": action.target, "files": count, "created_at": action.created_at}

