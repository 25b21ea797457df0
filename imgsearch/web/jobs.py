"""Background work started from a page (a re-scan of the library's folders, a duplicates scan), one at a time,
with its progress as a stream of events that any number of pages can follow (server-sent events)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from imgsearch.errors import BusyError, ImgSearchError


@dataclass
class Job:
    id: int
    kind: str
    key: object = None  # what exactly it works on (a duplicates scan: its options), so a page can join it
    events: list[dict] = field(default_factory=list)
    done: bool = False
    changed: threading.Condition = field(default_factory=threading.Condition)

    def emit(self, **event: object) -> None:
        with self.changed:
            self.events.append({"t": round(time.time(), 3), **event})
            self.changed.notify_all()

    def follow(self, timeout_s: float = 15.0) -> Iterator[dict]:
        """Every event, past and future, until the job ends; a keep-alive `{}` after `timeout_s` of quiet."""
        seen = 0
        while True:
            with self.changed:
                if seen == len(self.events) and not self.done:
                    self.changed.wait(timeout_s)
                fresh, finished = self.events[seen:], self.done
            seen += len(fresh)
            yield from fresh if fresh else ([] if finished else [{}])
            if finished and not fresh:
                return


class JobProgress:
    """The Progress protocol, told to a job's followers."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self._stage: tuple[str, int | None] = ("", None)
        self._done, self._sent = 0, 0.0

    def stage(self, name: str, total: int | None, unit: str = "file") -> None:
        self._stage, self._done = (name, total), 0
        self.job.emit(type="stage", stage=name, total=total, unit=unit)

    def advance(self, n: int = 1, **figures: float) -> None:
        self._done += n
        if time.monotonic() - self._sent >= 0.2:  # at most five a second
            self._sent = time.monotonic()
            self.job.emit(type="progress", stage=self._stage[0], done=self._done, total=self._stage[1], **figures)

    def note(self, message: str) -> None:
        self.job.emit(type="note", message=message)

    def close(self) -> None:
        pass


class Jobs:
    """At most one job runs; a finished one stays readable until the next starts."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.current: Job | None = None

    def start(self, kind: str, work: Callable[[JobProgress], str], key: object = None, join: bool = False) -> Job:
        """Run `work` in a thread; its return value is the closing summary. With `join`, a running job of the same
        kind and key is returned instead of refusing."""
        with self._lock:
            running = self.current if self.current is not None and not self.current.done else None
            if running is not None and join and (running.kind, running.key) == (kind, key):
                return running
            if running is not None:
                raise BusyError(f"a {running.kind} is already running (job {running.id}): wait for it")
            job = self.current = Job(next(self._ids), kind, key)
        job.emit(type="start", kind=kind)

        def run() -> None:
            try:
                job.emit(type="done", ok=True, summary=work(JobProgress(job)))
            except ImgSearchError as exc:
                job.emit(type="done", ok=False, code=exc.code, summary=exc.render(lambda name: name))
            except Exception as exc:  # a job's failure is reported to its page, not lost in a thread
                job.emit(type="done", ok=False, code="error", summary=f"{type(exc).__name__}: {exc}")
            finally:
                with job.changed:
                    job.done = True
                    job.changed.notify_all()

        threading.Thread(target=run, name=f"job-{job.id}", daemon=True).start()
        return job

    def get(self, job_id: int) -> Job | None:
        job = self.current
        return job if job is not None and job.id == job_id else None
