"""Indexes a folder with the fake encoder, printing how many images it has encoded; killed by tests."""

from __future__ import annotations

import sys
import time

from imgsearch.config import IndexSettings, ModelSpec
from imgsearch.library import Library
from tests.factories import FakeEncoder


class SlowFake(FakeEncoder):
    """Slow enough that a kill lands mid-run; reports progress on stdout."""

    def encode_pixels(self, pixels):
        time.sleep(0.012 * len(pixels))
        out = super().encode_pixels(pixels)
        print(self.images_encoded, flush=True)
        return out


if __name__ == "__main__":
    library, root = sys.argv[1], sys.argv[2]
    encoder = SlowFake("fake")
    with Library.open(library, create=True, encoder_loader=lambda spec: encoder) as lib:
        lib.index([root], ModelSpec("fake", None), IndexSettings(workers=0))
    print("done", flush=True)
