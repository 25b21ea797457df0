"""Concurrency: worker processes (how many, how they start: forkserver or spawn, since a pool forked after
torch ran can hang) and per-key locks for caches that threads share."""

from __future__ import annotations

import contextlib
import functools
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def default_workers() -> int:
    """One decode process per core the process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


_main_lock = threading.Lock()
_main_users = 0
_main_path: str | None = None


@contextlib.contextmanager
def importable_main() -> Iterator[None]:
    """Start workers without a __main__ path that does not exist (python - < script, some REPLs).

    forkserver/spawn children re-run the parent's main file by path; ours need only imgsearch's own
    modules, so a bogus path ('<stdin>') would only kill them at start. Only then is __main__.__file__
    hidden, for as long as any pool of this process may start workers (counted, so threads that
    start pools at the same time cannot restore it under each other), and put back after the last.
    """
    global _main_users, _main_path
    main = sys.modules.get("__main__")
    with _main_lock:
        path = getattr(main, "__file__", None)
        hide = main is not None and (_main_users > 0 or (path is not None and not os.path.isfile(path)))
        if hide and main is not None:
            if _main_users == 0:
                _main_path = path
                del main.__file__
            _main_users += 1
    try:
        yield
    finally:
        if hide and main is not None:
            with _main_lock:
                _main_users -= 1
                if _main_users == 0:
                    main.__file__ = _main_path


WATCH_PARENT_S = 0.5


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of worker processes that die with the process that made them (killed, crashed or not) and leave
    Ctrl-C to it: the pool is shut down by their parent, not interrupted in the middle of a task."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=worker_context(), initializer=_watch_parent,
                               initargs=(os.getpid(),))


def _watch_parent(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while True:
            time.sleep(WATCH_PARENT_S)
            if not pid_alive(parent):  # (the pool's pipes cannot tell: sibling workers hold them open)
                os._exit(0)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def pid_alive(pid: int) -> bool:
    """Whether a process of this id runs (as any user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, as another user
    return True


def worker_context() -> mp.context.BaseContext:
    methods = mp.get_all_start_methods()
    return mp.get_context("forkserver" if "forkserver" in methods else "spawn")


class KeyedLocks:
    """One lock per key, made on first use: threads working on one key wait for each other, others do not."""

    def __init__(self) -> None:
        self._locks: dict[object, threading.Lock] = {}
        self._guard = threading.Lock()

    def __call__(self, key: object) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())


class ReadWriteLock:
    """Many readers at once, or one writer: searches of an index run side by side (FAISS releases the GIL), while
    an update (vectors added or removed in place) waits for those under way and holds new ones back until done."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0  # new readers let a waiting writer go first: a stream of searches never starves it

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writing or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


def _holding(mode: str) -> Callable[[F], F]:
    def decorate(method: F) -> F:
        @functools.wraps(method)
        def locked(self: Any, *args: Any, **kwargs: Any) -> Any:
            with getattr(self._lock, mode)():
                return method(self, *args, **kwargs)
        return cast(F, locked)
    return decorate


# A method run holding its object's `_lock` (a ReadWriteLock) for reading, or for writing. The lock is not
# re-entrant: a locked method calls the unlocked code of another, never the locked method itself.
reads, writes = _holding("reading"), _holding("writing")


class StillRunning(Exception):
    """Work started by in_background had not finished by the time its caller would wait."""


def in_background(work: Callable[[], T]) -> Callable[..., T]:
    """Start `work` in a thread now; the returned function waits for its result (or raises its error), at most
    `timeout_s` seconds when given (then StillRunning). For C++ work that releases the GIL (reading a FAISS index)
    next to other such work (compiling a model), and for network waits with a deadline. The thread is a daemon: work
    still running never holds the process's exit."""
    done: dict[str, object] = {}

    def run() -> None:
        try:
            done["value"] = work()
        except BaseException as exc:  # handed to the caller, whatever it is
            done["error"] = exc

    thread = threading.Thread(target=run, name="imgsearch-prefetch", daemon=True)
    thread.start()

    def result(timeout_s: float | None = None) -> T:
        thread.join(timeout_s)
        if thread.is_alive():
            raise StillRunning
        if "error" in done:
            raise done["error"]  # type: ignore[misc]
        return done["value"]  # type: ignore[return-value]

    return result
