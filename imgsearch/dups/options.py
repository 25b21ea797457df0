"""What a duplicate search may be asked: options checked against their ranges, thresholds per model."""

from __future__ import annotations

import json
from dataclasses import asdict, fields

from sqlalchemy.orm import Session

from imgsearch import store
from imgsearch.config import DUP_TIERS, DupOptions, DupThresholds
from imgsearch.errors import UsageError

THRESHOLDS = tuple(f.name for f in fields(DupThresholds))
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def check(options: DupOptions) -> DupOptions:
    """Refuse impossible options with a message naming the parameter."""
    bad = [t for t in options.tiers if t not in DUP_TIERS]
    if bad or not options.tiers:
        raise UsageError(f"{{param}} takes {', '.join(DUP_TIERS)}, not {', '.join(bad) or 'nothing'}.", "tiers")
    for f in fields(DupThresholds):
        value = getattr(options, f.name)
        low, high = f.metadata["range"]
        if value is not None and not low <= value <= high:  # NaN fails this too
            unit = f.metadata["unit"]
            raise UsageError(f"{{param}} must be between {low:g} and {high:g} {unit}." if unit else
                             f"{{param}} is a cosine similarity: give a value between {low:g} and {high:g}.", f.name)
    if options.max_group < 2:
        raise UsageError("{param} must be at least 2.", "max_group")
    if options.k < 1:
        raise UsageError("{param} must be at least 1.", "k")
    if options.within_s is not None and not options.within_s > 0:
        raise UsageError("{param} must be a positive duration, such as 30s, 10m or 2h.", "within_s")
    return options


def parse_duration(text: str) -> float:
    """'90', '30s', '10m', '2h', '1d' -> seconds."""
    value = text.strip().lower()
    unit = _DURATION_UNITS.get(value[-1:])
    try:
        return float(value[:-1] if unit else value) * (unit or 1)
    except ValueError:
        raise UsageError(f"{{param}} {text!r} is not a duration: use 30s, 10m, 2h or 1d.", "within_s") from None


def thresholds_for(session: Session, model_id: int, options: DupOptions) -> DupThresholds:
    """The model's stored thresholds with the options' explicit values on top (and stored when given)."""
    scan = store.dup_scan(session, model_id)
    current = DupThresholds().merged(**json.loads(scan.thresholds or "{}"))
    wanted = current.merged(**{name: getattr(options, name) for name in THRESHOLDS})
    if wanted != current:
        scan.thresholds = json.dumps(asdict(wanted), sort_keys=True)
    return wanted
