"""Test data made on the fly: photos with chosen colours and EXIF, and a deterministic fake encoder."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image

from imgsearch.models.encoder import ModelInfo
from imgsearch.images.decode import Geometry

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 220), "yellow": (235, 215, 20),
           "white": (250, 250, 250), "black": (5, 5, 5), "magenta": (220, 30, 220), "cyan": (30, 220, 220)}


def write_photo(path: Path, colour: str | tuple[int, int, int] = "red", size: tuple[int, int] = (64, 48),
                fmt: str | None = None, taken: datetime | None = None, make: str | None = None,
                model: str | None = None, orientation: int | None = None, seed: int = 0) -> Path:
    """A solid-colour image with a little noise (so files differ), optional EXIF."""
    rgb = COLOURS[colour] if isinstance(colour, str) else colour
    rng = np.random.default_rng(seed)
    arr = np.clip(np.array(rgb, dtype=np.int16) + rng.integers(-6, 7, (size[1], size[0], 3)), 0, 255)
    img = Image.fromarray(arr.astype(np.uint8), "RGB")
    exif = Image.Exif()
    if make:
        exif[271] = make
    if model:
        exif[272] = model
    if orientation:
        exif[274] = orientation
    if taken:
        exif.get_ifd(0x8769)[36867] = taken.strftime("%Y:%m:%d %H:%M:%S")
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {"exif": exif.tobytes()} if len(exif) or taken else {}
    img.save(path, format=fmt, **kwargs)
    return path


class FakeEncoder:
    """Colour -> vector: an image's mean RGB; a text's colour words. Counts what it encodes."""

    def __init__(self, name: str = "fake", dim: int = 8) -> None:
        self.info = ModelInfo(key=f"fake|{name}", name=name, pretrained=None, checkpoint_sha256=None, dim=dim,
                              geometry=Geometry(16, 16), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
        self.batch_size = 4
        self.images_encoded = 0
        self.texts_encoded = 0

    def _vectors(self, rgb: np.ndarray) -> np.ndarray:
        out = np.full((len(rgb), self.info.dim), 0.02, dtype=np.float32)
        out[:, :3] = rgb / 255.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        self.images_encoded += len(pixels)
        return self._vectors(pixels.reshape(len(pixels), -1, 3).mean(axis=1))

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        self.texts_encoded += len(texts)
        rgb = [next((COLOURS[w] for w in t.lower().split() if w in COLOURS), (128, 128, 128)) for t in texts]
        return self._vectors(np.array(rgb, dtype=np.float32))
