"""Acting on duplicate groups without ever deleting a photo: move the copies aside, or replace
byte-identical copies by links, with a journal in the library so `dups undo` puts everything back.

Each file is one step: the journal row, the library change and the file operation commit together
or not at all, so an interruption leaves every photo either where it was or recorded where it went.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable, Collection, Sequence
from typing import ContextManager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import OperationalError as SAOperationalError
from sqlalchemy.orm import Session, sessionmaker

from imgsearch.dups.grouping import Group
from imgsearch.dups.hashing import full_hash
from imgsearch.errors import NotFoundError, UsageError
from imgsearch import store
from imgsearch.store import journal
from imgsearch.fs import innermost, is_inside
from imgsearch.store.orm import DupActionItem, Image

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


def plan_moves(groups: Sequence[Group], target: Path, roots: Sequence[str]) -> list[Step]:
    """Every non-keeper, to `target` + its path relative to its indexed folder."""
    target = target.expanduser().absolute()
    for r in roots:
        if is_inside(str(target), r):
            raise UsageError(f"{{param}} {target} is inside the indexed folder {r}: the copies would be indexed "
                             "again. Pick a folder outside every indexed folder.", "move_to")
    steps, taken = [], set()
    for g in groups:
        for m in g.duplicates:
            root = innermost(m.photo.path, roots)
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


def act(sessions: sessionmaker[Session], groups: Sequence[Group], move_to: Path | None, link: str | None,
        apply_now: bool, guard: Callable[[], ContextManager]) -> ActionReport:
    """Move every non-keeper to `move_to`, or replace exact copies by `link` ('hard'/'symbolic') links.

    Without `apply_now`, only the plan is returned. Steps run inside `guard()` (the library's writer lock).
    """
    if (move_to is None) == (link is None):
        raise UsageError("choose one action: {param:move_to} DIR or {param:link} hard|symbolic.", "move_to")
    if link is not None and link not in LINK_KINDS:
        raise UsageError(f"{{param}} takes one of {', '.join(LINK_KINDS)}, not {link!r}.", "link")
    with sessions() as session:
        roots = store.list_roots(session)
    refused: list[tuple[str, str]] = []
    if move_to is not None:
        kind, target, steps = "move", str(move_to.expanduser().absolute()), plan_moves(groups, move_to, roots)
    else:
        kind, target = ("hardlink" if link == "hard" else "symlink"), None
        steps, refused = plan_links(groups)
    if not apply_now:
        return ActionReport(kind, list(steps), [], refused, sum(_file_size(s.src) for s in steps), applied=False)
    with guard():
        report = apply(sessions, kind, steps, target)
    report.refused = refused
    return report


def _file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def apply(sessions: sessionmaker[Session], kind: str, steps: Sequence[Step], target: str | None) -> ActionReport:
    """Carry out planned moves (kind 'move') or links ('hardlink' / 'symlink'), journaling each file."""
    report = ActionReport(kind, applied=True)
    with sessions.begin() as session:
        action_id = journal.start_action(session, kind, target)
    for step in steps:
        revert = None
        with sessions() as session:
            try:
                image = journal.get_image(session, step.image_id)
                st = os.stat(step.src, follow_symlinks=False)
                if image is None or image.path != step.src or (st.st_size, st.st_mtime_ns) != (image.size, image.mtime_ns):
                    raise _Refused("changed since it was indexed: run `imgsearch index` and `imgsearch dups` again")
                digest = full_hash(step.src)
                item = journal.add_item(session, action_id=action_id, image_id=step.image_id, src=step.src,
                                        dest=step.dest, size=st.st_size, mtime_ns=st.st_mtime_ns,
                                        mode=st.st_mode & 0o7777, full_hash=digest)
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
            journal.drop_action(session, action_id)
        elif kind == "move":  # vectors left the search: every model's index must drop them
            store.bump_generation(session)
    return report


class _Refused(Exception):
    pass


def _move_out(session: Session, image: Image, item: DupActionItem) -> Callable[[], None]:
    """Set the image aside (its vectors into the journal) and move the file; returns how to move it back."""
    dest = _free_path(Path(item.dest))
    item.dest = str(dest)
    journal.set_aside(session, image, item)
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
            raise _Refused(f"{item.dest} is on another disk: hard links cannot cross disks, use symbolic links") from exc
        raise
    journal.set_mtime(session, image, os.stat(tmp).st_mtime_ns)  # same bytes: the next index run has nothing to redo
    os.replace(tmp, item.src)
    return lambda: _restore_bytes(item)


def undo_last(sessions: sessionmaker[Session]) -> ActionReport:
    """Reverse the latest action not yet undone, file by file; what cannot be restored is reported and kept."""
    with sessions() as session:
        action = journal.latest_action(session)
        if action is None:
            raise NotFoundError("nothing to undo: no applied duplicates action is pending in this library.")
        items = journal.unrestored_items(session, action.id)
        action_id, kind, target = action.id, action.kind, action.target
    report = ActionReport(f"undo-{kind}", applied=True)
    for item in items:
        try:
            with sessions.begin() as session:
                if kind == "move":
                    _move_back(session, item)
                else:
                    _unlink(session, item, kind)
                journal.mark_restored(session, item.id)
            report.done.append(Step(item.src, item.dest, item.image_id or 0))
            report.bytes += item.size
        except _Refused as exc:
            report.problems.append((item.src, str(exc)))
        except OSError as exc:
            report.problems.append((item.src, f"{exc.strerror or exc}"))
    with sessions.begin() as session:
        if not report.problems:
            journal.mark_undone(session, action_id)
    if kind == "move" and target:
        _prune_empty_dirs(Path(target), [Path(s.dest).parent for s in report.done])
    return report


def _move_back(session: Session, item: DupActionItem) -> None:
    if os.path.lexists(item.src):
        raise _Refused(f"a file now exists at {item.src}; the copy stays at {item.dest}")
    if not os.path.lexists(item.dest):
        raise _Refused(f"{item.dest} is gone (moved or deleted after the action): nothing to put back")
    journal.put_back(session, item)
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
    journal.restore_mtime(session, item)


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
