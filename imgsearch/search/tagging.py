"""Zero-shot tags for every indexed image, from its stored vector (no image is decoded or encoded)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from imgsearch import store
from imgsearch.errors import UsageError
from imgsearch.models.encoder import Encoder
from imgsearch.models.zeroshot import check_templates, label_vectors, logit_scale_of, probabilities
from imgsearch.store.orm import Model


def tag(sessions: sessionmaker[Session], row: Model, encoder: Encoder, labels: Sequence[str],
        templates: Sequence[str], top: int, min_probability: float) -> tuple[int, int]:
    """Write each image's `top` labels at `min_probability` or above, replacing earlier tags with these labels.

    Returns (images, tags written).
    """
    if top < 1:
        raise UsageError("{param} must be at least 1.", "top")
    if not 0 <= min_probability < 1:
        raise UsageError("{param} must be in [0, 1).", "min_probability")
    label_vecs = label_vectors(encoder, labels, check_templates(templates))
    with sessions() as session:
        ids, vectors = store.load_vectors(session, row.id, row.dim)
    probs = probabilities(vectors, label_vecs, logit_scale_of(encoder)) if len(ids) else np.zeros((0, len(labels)))
    best = np.argsort(-probs, axis=1)[:, :top]
    rows = [(int(i), labels[j], float(probs[n, j])) for n, i in enumerate(ids.tolist()) for j in best[n]
            if probs[n, j] >= min_probability]
    with sessions.begin() as session:
        store.replace_tags(session, row.id, labels, rows)
    return len(ids), len(rows)
