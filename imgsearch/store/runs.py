"""Queries on indexing runs."""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from imgsearch.store.orm import (
    Run,
)


def start_run(session: Session, roots: Sequence[str], model_id: int) -> Run:
    run = Run(roots=json.dumps(list(roots)), model_id=model_id)
    session.add(run)
    session.flush()
    return run


def last_run(session: Session) -> Run | None:
    return session.scalar(select(Run).order_by(Run.id.desc()).limit(1))
