"""Acting on duplicate groups without ever deleting a photo: move the copies aside, or replace
byte-identical copies by links, with a journal in the library so an undo puts everything back.

Each file is one step in three commits' worth of order: the intent is journaled first, then the
file is moved (or linked), then the outcome is journaled with the library change. A crash between
them leaves an item in a passing state; `reconcile` settles it from what is on disk, and runs
before every action, undo and index run, so no photo is ever out of the journal's sight.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import OperationalError as SAOperationalError
from sqlalchemy.orm import Session, sessionmaker

from imgsearch import store
from imgsearch.config import Tier
from imgsearch.dups.grouping import Group
from imgsearch.dups.hashing import full_hash
from imgsearch.errors import NotFoundError, UsageError
from imgsearch.fs import free_path, innermost, is_inside, missing_dirs
from imgsearch.store import journal
from imgsearch.store.orm import ITEM_DONE, ITEM_LINKING, ITEM_MOVING, ITEM_RESTORING, DupActionItem

LINK_KINDS = ("hard", "symbolic")
GROUPED_SHARE_LIMIT = 0.05  # groups holding more of the library than this look like a threshold problem...
GROUPED_MIN_PHOTOS = 10  # ...once they hold at least this many photos (two copies in a small library are no sign)


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
    settled: list[str] = field(default_factory=list)  # interrupted steps of earlier runs, settled first


class _Refused(Exception):
    pass


def grouped_share(groups: Sequence[Group], library_size: int) -> float:
    """The share of the library's photos that the groups hold."""
    return sum(len(g.members) for g in groups) / max(1, library_size)


def too_many(groups: Sequence[Group], library_size: int) -> bool:
    """Whether the groups hold so much of the library that a threshold is probably too loose."""
    return (grouped_share(groups, library_size) > GROUPED_SHARE_LIMIT
            and sum(len(g.members) for g in groups) >= GROUPED_MIN_PHOTOS)


def act(sessions: sessionmaker[Session], groups: Sequence[Group], move_to: Path | None, link: str | None,
        apply_now: bool, guard: Callable[[], AbstractContextManager], confirmed: bool = False) -> ActionReport:
    """Move every non-keeper to `move_to`, or replace exact copies by `link` ('hard'/'symbolic') links.

    Without `apply_now`, only the plan is returned. Steps run inside `guard()` (the library's writer lock).
    Groups holding more than GROUPED_SHARE_LIMIT of the library are applied only when `confirmed`.
    """
    if (move_to is None) == (link is None):
        raise UsageError("choose one action: {param:move_to} DIR or {param:link} hard|symbolic.", "move_to")
    if link is not None and link not in LINK_KINDS:
        raise UsageError(f"{{param}} takes one of {', '.join(LINK_KINDS)}, not {link!r}.", "link")
    with sessions() as session:
        roots = store.list_roots(session)
        size = store.count_images(session).get("indexed", 0)
    refused: list[tuple[str, str]] = []
    if move_to is not None:
        kind, target, steps = "move", str(move_to.expanduser().absolute()), plan_moves(groups, move_to, roots)
    else:
        kind, target = ("hardlink" if link == "hard" else "symlink"), None
        steps, refused = plan_links(groups)
    if not apply_now:
        return ActionReport(kind, list(steps), [], refused, sum(_file_size(s.src) for s in steps), applied=False)
    if too_many(groups, size) and not confirmed:
        raise UsageError(f"these groups hold {grouped_share(groups, size):.0%} of the library's photos: more than "
                         "copies usually are, so a threshold may be too loose. Look at the groups first; to act on them anyway, "
                         "add {param}.", "yes")
    report = _settle_then_apply(sessions, guard, kind, steps, target, roots)
    report.refused = refused
    return report


def _settle_then_apply(sessions: sessionmaker[Session], guard: Callable[[], AbstractContextManager], kind: str,
                       steps: Sequence[Step], target: str | None, roots: Sequence[str]) -> ActionReport:
    """Under the writer lock (`guard`): settle the interrupted steps of earlier runs, then apply these."""
    with guard():
        settled = reconcile(sessions)
        report = apply(sessions, kind, steps, target, roots)
    report.settled = settled
    return report


def _file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _real_inside(path: str, folders: Sequence[str]) -> str | None:
    """The first folder that really (symbolic links resolved) holds `path`, or None."""
    real = os.path.realpath(path)
    return next((f for f in folders if is_inside(real, os.path.realpath(f))), None)


def plan_moves(groups: Sequence[Group], target: Path, roots: Sequence[str]) -> list[Step]:
    """Every non-keeper, to `target` + its path relative to its indexed folder."""
    return plan_photo_moves([(m.photo.id, m.photo.path) for g in groups for m in g.duplicates], target, roots)


def plan_photo_moves(photos: Sequence[tuple[int, str]], target: Path, roots: Sequence[str]) -> list[Step]:
    """Photos (id, path), to `target` + each one's path relative to its indexed folder."""
    target = target.expanduser().absolute()
    root = _real_inside(str(target), roots)
    if root is not None:
        raise UsageError(f"{{param}} {target} is inside the indexed folder {root}"
                         + (f" (it leads to {os.path.realpath(target)})" if os.path.realpath(target) != str(target)
                            else "")
                         + ": the copies would be indexed again. Pick a folder outside every indexed folder.",
                         "move_to")
    steps: list[Step] = []
    taken: set[str] = set()
    for image_id, path in photos:
        root = innermost(path, roots)
        rel = os.path.relpath(path, root) if root else path.lstrip("/")
        # two photos may share a relative path (from different folders), or it may exist there already
        dest = free_path(target / rel, taken)
        taken.add(str(dest))
        steps.append(Step(path, str(dest), image_id))
    return steps


def set_aside(sessions: sessionmaker[Session], image_ids: Sequence[int], move_to: Path,
              guard: Callable[[], AbstractContextManager]) -> ActionReport:
    """Move chosen photos out of the library into `move_to` (a selection set aside), journaled as a duplicates move
    is: the latest action is undone the same way. Ids the library does not have are problems, never guesses."""
    ids = list(dict.fromkeys(image_ids))
    if not ids:
        raise UsageError("choose the photos to set aside ({param})", "ids")
    with sessions() as session:
        roots = store.list_roots(session)
        found = store.indexed_paths(session, ids)
    steps = plan_photo_moves([(i, found[i]) for i in ids if i in found], move_to, roots)
    report = _settle_then_apply(sessions, guard, "move", steps, str(move_to.expanduser().absolute()), roots)
    report.problems[:0] = [(f"photo {i}", "no such photo in this library") for i in ids if i not in found]
    return report


def plan_links(groups: Sequence[Group]) -> tuple[list[Step], list[tuple[str, str]]]:
    """Byte-identical copies to replace by links to their keeper; other members are refused with a reason."""
    steps, refused = [], []
    for g in groups:
        for m in g.duplicates:
            if m.relation == Tier.EXACT:
                steps.append(Step(m.photo.path, g.keeper.path, m.photo.id))
            else:
                refused.append((m.photo.path, f"not byte-identical to {g.keeper.path} ({m.relation}): "
                                              "only exact copies can be replaced by links"))
    return steps, refused


def apply(sessions: sessionmaker[Session], kind: str, steps: Sequence[Step], target: str | None,
          roots: Sequence[str] = ()) -> ActionReport:
    """Carry out planned moves (kind 'move') or links ('hardlink' / 'symlink'), journaling each file."""
    report = ActionReport(kind, applied=True)
    with sessions.begin() as session:
        action_id = journal.start_action(session, kind, target)
    taken: set[str] = set()
    for step in steps:
        try:
            item_id, dest, size = _begin(sessions, action_id, kind, step, target, roots, taken)
        except (_Refused, OSError, SAOperationalError, IntegrityError) as exc:
            report.problems.append((step.src, _why(exc)))
            continue
        try:
            mtime = _move(step.src, dest) if kind == "move" else _link(step.src, dest, kind)
        except (_Refused, OSError) as exc:
            with sessions.begin() as session:
                journal.drop_item(session, item_id)  # the intent did not happen: the file is where it was
            report.problems.append((step.src, _why(exc)))
            continue
        with sessions.begin() as session:
            item = journal.item(session, item_id)
            journal.set_aside(session, item) if kind == "move" else journal.linked(session, item, mtime)
        report.done.append(Step(step.src, dest, step.image_id))
        report.bytes += size
    with sessions.begin() as session:
        journal.drop_action_if_empty(session, action_id)
    return report


def _why(exc: Exception) -> str:
    return str(exc) if isinstance(exc, _Refused) else f"{getattr(exc, 'strerror', None) or exc} (left where it was)"


def _begin(sessions: sessionmaker[Session], action_id: int, kind: str, step: Step, target: str | None,
           roots: Sequence[str], taken: Collection[str]) -> tuple[int, str, int]:
    """Check a step and journal its intent (committed before any file is touched): (item id, destination, bytes)."""
    st = os.stat(step.src, follow_symlinks=False)
    if roots and _real_inside(step.src, roots) is None:  # a link swapped in, or a path leading out of the folders
        raise _Refused(f"it leads outside the library's folders (to {os.path.realpath(step.src)}): left where it was")
    if roots and kind != "move" and _real_inside(step.dest, roots) is None:
        raise _Refused(f"its keeper {step.dest} leads outside the library's folders: left where it was")
    with sessions.begin() as session:
        image = journal.get_image(session, step.image_id)
        if image is None or image.path != step.src or (st.st_size, st.st_mtime_ns) != (image.size, image.mtime_ns):
            raise _Refused("changed since it was indexed: run `imgsearch index` and `imgsearch dups` again")
        digest = full_hash(step.src)
        dest = step.dest
        if kind == "move":
            dest_path = free_path(Path(step.dest), taken)
            folders = missing_dirs(dest_path.parent)
            _check_destination(dest_path, Path(target or dest_path.parent), roots, folders)
            journal.add_created_dirs(session, action_id, [str(f) for f in folders])
            dest = str(dest_path)
        else:
            if os.path.samefile(step.src, step.dest):
                raise _Refused(f"already the same file as {step.dest}")
            if full_hash(step.dest) != digest:
                raise _Refused(f"its bytes no longer equal those of {step.dest}: run `imgsearch dups` again")
        item = journal.add_item(session, action_id=action_id, image_id=step.image_id, src=step.src, dest=dest,
                                size=st.st_size, mtime_ns=st.st_mtime_ns, mode=st.st_mode & 0o7777,
                                full_hash=digest, state=ITEM_MOVING if kind == "move" else ITEM_LINKING)
        return item.id, dest, st.st_size


def _check_destination(dest: Path, target: Path, roots: Sequence[str], new_folders: Sequence[Path]) -> None:
    """Refuse a destination that a symbolic link inside the target folder leads elsewhere (into a library root,
    or anywhere outside the target)."""
    existing = next((p for p in [dest.parent, *dest.parent.parents] if p.exists()), target)
    real_target = os.path.realpath(target)
    real_parent = os.path.join(os.path.realpath(existing), os.path.relpath(dest.parent, existing))
    if not is_inside(os.path.normpath(real_parent), real_target) or _real_inside(str(existing), roots):
        raise _Refused(f"a symbolic link inside {target} leads to {os.path.realpath(existing)}: left where it was")


def _move(src: str, dest: str) -> int:
    """Move a file (a rename on one disk; copy with times, then unlink, across disks)."""
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    shutil.move(src, dest)
    return 0


def _link(src: str, keeper: str, kind: str) -> int:
    """Replace a byte-identical copy by a link to the keeper: made aside, then renamed over the copy in one step;
    returns the link's file time."""
    tmp = free_path(Path(src).with_name(f".{Path(src).name}.imgsearch-link"))
    try:
        if kind == "hardlink":
            os.link(keeper, tmp)
        else:
            os.symlink(keeper, tmp)
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            raise _Refused(f"{keeper} is on another disk: hard links cannot cross disks, use symbolic links") from exc
        raise
    mtime = os.stat(tmp).st_mtime_ns
    os.replace(tmp, src)
    return mtime


# --- after a crash --------------------------------------------------------------------------------------

def reconcile(sessions: sessionmaker[Session]) -> list[str]:
    """Settle every step an earlier run left half-way (killed between its file operation and its journal):
    what happened on disk is recorded, what did not is forgotten. Returns one line per settled step."""
    with sessions() as session:
        items = journal.passing_items(session)
        kinds = {item.id: journal.action_of(session, item).kind for item in items}
    notes = []
    for item in items:
        with sessions.begin() as session:
            fresh = journal.get_item(session, item.id)
            if fresh is None or fresh.state != item.state:
                continue
            notes.append(_settle(session, fresh, kinds[item.id]))
    return [n for n in notes if n]


def _settle(session: Session, item: DupActionItem, kind: str) -> str:
    at_src, at_dest = _holds(item.src, item, kind, at_src=True), _holds(item.dest, item, kind, at_src=False)
    if item.state == ITEM_MOVING:
        if at_dest and not at_src:
            journal.set_aside(session, item)
            return f"{item.src}: its move to {item.dest} had happened; recorded"
        if at_src:
            _remove_partial_copy(item.dest, item)
            journal.drop_item(session, item.id)
            return f"{item.src}: its move had not happened; it stays where it is"
    elif item.state == ITEM_LINKING:
        if os.path.islink(item.src) or (kind == "hardlink" and _same_file(item.src, item.dest)):
            journal.linked(session, item, os.lstat(item.src).st_mtime_ns)
            return f"{item.src}: its link to {item.dest} had been made; recorded"
        _remove_partial_copy(str(Path(item.src).with_name(f".{Path(item.src).name}.imgsearch-link")), item)
        journal.drop_item(session, item.id)
        return f"{item.src}: its link had not been made; it stays as it is"
    elif item.state == ITEM_RESTORING:
        if kind != "move":  # a copy of the keeper's bytes being written beside the link when it was killed
            _remove_partial_copy(str(_restore_temp(item)), item)
        if kind == "move" and at_src and not at_dest:
            journal.put_back(session, item)
            return f"{item.src}: it had been moved back; recorded"
        if kind != "move" and at_src and not os.path.islink(item.src) and not _same_file(item.src, item.dest):
            journal.unlinked(session, item)
            return f"{item.src}: its bytes had been put back; recorded"
        if kind == "move" and at_dest:
            _remove_partial_copy(item.src, item)
        journal.set_state(session, item.id, ITEM_DONE)
        return f"{item.src}: it had not been put back yet; undo will retry it"
    return f"{item.src}: neither it nor {item.dest} can be found; left in the journal"


def _holds(path: str, item: DupActionItem, kind: str, at_src: bool) -> bool:
    """Whether `path` holds the journaled file whole (same size; for links at the source: any file)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return st.st_size == item.size if (kind == "move" or at_src) else True


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _remove_partial_copy(path: str, item: DupActionItem) -> None:
    """Remove what an interrupted copy left at a place this journal item reserved: never a whole photo that is
    not also safe elsewhere (it is kept unless its bytes are a prefix of the journaled file's size)."""
    try:
        st = os.lstat(path)
    except OSError:
        return
    if os.path.islink(path) or st.st_size < item.size or full_hash(path) == item.full_hash:
        os.unlink(path)


# --- undo ----------------------------------------------------------------------------------------------

def undo_last(sessions: sessionmaker[Session]) -> ActionReport:
    """Reverse the latest action not yet undone, file by file; what cannot be restored is reported and kept."""
    settled = reconcile(sessions)
    with sessions() as session:
        action = journal.latest_action(session)
        if action is None:
            raise NotFoundError("nothing to undo: no applied duplicates action is pending in this library.")
        items = journal.items_to_undo(session, action.id)
        action_id, kind = action.id, action.kind
        made = journal.created_dirs(session, action_id)
    report = ActionReport(f"undo-{kind}", applied=True, settled=settled)
    for item in items:
        try:
            _check_undo(item, kind)
        except _Refused as exc:
            report.problems.append((item.src, str(exc)))
            continue
        with sessions.begin() as session:
            journal.set_state(session, item.id, ITEM_RESTORING)
        try:
            _move(item.dest, item.src) if kind == "move" else _restore_bytes(item)
        except OSError as exc:
            with sessions.begin() as session:
                journal.set_state(session, item.id, ITEM_DONE)
            report.problems.append((item.src, f"{exc.strerror or exc}"))
            continue
        with sessions.begin() as session:
            fresh = journal.item(session, item.id)
            journal.put_back(session, fresh) if kind == "move" else journal.unlinked(session, fresh)
        report.done.append(Step(item.src, item.dest, item.image_id or 0))
        report.bytes += item.size
    if not report.problems:
        with sessions.begin() as session:
            journal.mark_undone(session, action_id)
    _remove_empty(made)
    return report


def _check_undo(item: DupActionItem, kind: str) -> None:
    if kind == "move":
        if os.path.lexists(item.src):
            raise _Refused(f"a file now exists at {item.src}; the copy stays at {item.dest}")
        if not os.path.lexists(item.dest):
            raise _Refused(f"{item.dest} is gone (moved or deleted after the action): nothing to put back")
        return
    is_ours = (os.path.islink(item.src) and os.readlink(item.src) == item.dest) if kind == "symlink" else \
        (os.path.exists(item.src) and os.path.exists(item.dest) and os.path.samefile(item.src, item.dest))
    if not is_ours:
        raise _Refused(f"{item.src} is no longer the link this action made; left as it is")
    if full_hash(item.dest) != item.full_hash:
        raise _Refused(f"{item.dest} changed since the link was made, so the original bytes cannot be rebuilt from it")


def _restore_bytes(item: DupActionItem) -> None:
    """The copy's original file again (bytes from the keeper, mode and times from the journal), atomically."""
    tmp = _restore_temp(item)
    if os.path.lexists(tmp):  # left by an earlier, killed undo that was settled since
        _remove_partial_copy(str(tmp), item)
    tmp = free_path(tmp)
    try:
        shutil.copyfile(item.dest, tmp)
        os.chmod(tmp, item.mode)
        os.utime(tmp, ns=(item.mtime_ns, item.mtime_ns))
        os.replace(tmp, item.src)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def _restore_temp(item: DupActionItem) -> Path:
    """Where a link's original bytes are rebuilt before they replace it (hidden, beside it)."""
    return Path(item.src).with_name(f".{Path(item.src).name}.imgsearch-restore")


def _remove_empty(folders: Sequence[str]) -> None:
    """Remove the folders an action created, if they are empty again (deepest first); never any other."""
    for folder in sorted(set(folders), key=lambda f: -len(Path(f).parts)):
        try:
            os.rmdir(folder)
        except OSError:
            pass  # not empty (something else is in it now) or already gone
