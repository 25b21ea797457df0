"""Images searched by upload, kept a while as their query vectors (never the image itself) under a short random id,
so that their results have an address: pages further down, a reload, the back button, a shared link."""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict

import numpy as np

from imgsearch import NotFoundError

KEPT_S = 3600  # an upload's vector is kept this long after its last use...
KEPT = 100  # ...and only the latest this many


class Uploads:
    def __init__(self, kept_s: float = KEPT_S, kept: int = KEPT) -> None:
        self._kept_s, self._kept = kept_s, kept
        self._lock = threading.Lock()
        self._vectors: OrderedDict[str, tuple[float, np.ndarray]] = OrderedDict()

    def put(self, vector: np.ndarray) -> str:
        """Keep a query vector; its id (12 URL-safe characters)."""
        upload_id = secrets.token_urlsafe(9)
        with self._lock:
            self._vectors[upload_id] = (time.monotonic(), vector)
            self._forget()
        return upload_id

    def get(self, upload_id: str) -> np.ndarray:
        """The vector kept under this id (its hour starts again); NotFoundError once it is gone."""
        with self._lock:
            self._forget()
            kept = self._vectors.pop(upload_id, None)
            if kept is not None:
                self._vectors[upload_id] = (time.monotonic(), kept[1])
        if kept is None:
            raise NotFoundError(f"the uploaded image {upload_id} is no longer kept (an upload is kept for an hour "
                                f"after its last use, the latest {self._kept}): drop, paste or choose it again",
                                "upload")
        return kept[1]

    def _forget(self) -> None:
        now = time.monotonic()
        while self._vectors and (len(self._vectors) > self._kept
                                 or now - next(iter(self._vectors.values()))[0] > self._kept_s):
            self._vectors.popitem(last=False)
