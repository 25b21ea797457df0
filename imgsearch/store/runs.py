"""Queries on indexing runs."""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from imgsearch.store.orm import Run, utc_now


def start_run(session: Session, roots: Sequence[str], model_id: int) -> Run:
    run = Run(roots=json.dumps(list(roots)), model_id=model_id)
    session.add(run)
    session.flush()
    return run


def last_run(session: Session) -> Run | None:
    return session.scalar(select(Run).order_by(Run.id.desc()).limit(1))


RUN_COUNTS = ("new", "changed", "moved", "unchanged", "removed", "skipped", "encoded")


def finish_run(session: Session, run_id: int, status: str, counts: dict[str, int], executor: str | None = None) -> None:
    """Record how a run ended (done, interrupted), what it counted, and where it decoded and encoded."""
    session.execute(update(Run).where(Run.id == run_id)
                    .values(status=status, finished_at=utc_now(), executor=executor,
                            **{k: counts[k] for k in RUN_COUNTS}))
