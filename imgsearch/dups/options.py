"""What a duplicate search may be asked: options checked against their ranges, thresholds per model."""

from __future__ import annotations

import json
import math
from dataclasses import fields

import numpy as np

from sqlalchemy.orm import Session

from imgsearch import store
from imgsearch.config import DUP_TIERS, DupOptions, DupThresholds
from imgsearch.errors import UsageError

THRESHOLDS = tuple(f.name for f in fields(DupThresholds))
CALIBRATION_PHOTOS = 2_000  # every pair of at most this many photos (2 million pairs: the 0.1% tail is 2,000 of them)
CALIBRATION_MIN_PHOTOS = 50  # fewer photos give too few distinct pairs to measure a tail
SIMILAR_CEILING = 0.9999  # a model that cannot tell unrelated photos apart still calls near-identical ones similar
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
    if options.neighbours < 1:
        raise UsageError("{param} must be at least 1.", "neighbours")
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


def thresholds_for(session: Session, model_id: int, options: DupOptions,
                   calibration: dict | None = None) -> DupThresholds:
    """The defaults (the similar threshold as calibrated on this library), then the thresholds users gave for
    this model before, then the options' explicit values (which are remembered for the model)."""
    scan = store.dup_scan(session, model_id)
    stored = json.loads(scan.thresholds or "{}")
    given = {name: getattr(options, name) for name in THRESHOLDS if getattr(options, name) is not None}
    if given and {**stored, **given} != stored:
        scan.thresholds = json.dumps({**stored, **given}, sort_keys=True)
    if calibration is not None:
        scan.calibration = json.dumps(calibration, sort_keys=True)
    base = DupThresholds(similar_cosine=calibration["similar_cosine"]) if calibration else DupThresholds()
    return base.merged(**stored).merged(**given)


def calibrate_similar(vectors: np.ndarray, most: int = CALIBRATION_PHOTOS) -> dict | None:
    """The similar-tier threshold this library's model needs, from the cosines of pairs of its photos.

    Models differ in scale: a generic CLIP puts unrelated photos near 0.5, a small domain-trained model
    near 0.9. The threshold sits halfway between the 99.9th percentile of the cosines of every pair of
    photos (of `most` photos spread evenly along the library, for a larger one) and 1 (and never below
    the default), so only pairs far closer than unrelated photos ever get are called similar. The
    same photos give the same threshold whatever ids they were given (an index run on several workers
    numbers them in the order they finish). None when the library is too small to measure.
    """
    n = len(vectors)
    if n < CALIBRATION_MIN_PHOTOS:
        return None
    rows = np.asarray(vectors, dtype=np.float32)
    if n > most:  # evenly spaced in an order of the vectors themselves (along one fixed direction), not of the ids
        along = rows @ np.random.default_rng(0).standard_normal(rows.shape[1], dtype=np.float32)
        rows = rows[np.argsort(along, kind="stable")[np.linspace(0, n - 1, most).round().astype(np.int64)]]
    cosines = (rows @ rows.T)[np.triu(np.ones((len(rows), len(rows)), dtype=bool), 1)]
    p999 = float(np.quantile(cosines, 0.999))
    threshold = min(SIMILAR_CEILING, max(DupThresholds().similar_cosine, (p999 + 1) / 2))
    return {"similar_cosine": math.floor(threshold * 10_000) / 10_000, "pairs_p99_9": round(p999, 4),
            "pairs": len(cosines), "photos": n}
