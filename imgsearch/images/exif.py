"""Metadata from a file's header: size after EXIF orientation, date taken, camera make and model, GPS."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime

from PIL import Image

# Decode failures that mean "this file is broken", as opposed to bugs in our code.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, MemoryError, IndexError, TypeError, KeyError,
                 ZeroDivisionError, struct.error)

# EXIF tag ids (EXIF 2.3)
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
ORIENTATION, _MAKE, _MODEL, _DATETIME = 274, 271, 272, 306
_DATETIME_ORIGINAL, _DATETIME_DIGITIZED = 36867, 36868
_ROTATING_ORIENTATIONS = {5, 6, 7, 8}


@dataclass(frozen=True)
class ImageInfo:
    """Metadata kept per image; width and height are full-resolution, after EXIF orientation."""

    width: int
    height: int
    format: str | None
    taken_at: datetime | None = None
    camera_make: str | None = None
    camera_model: str | None = None
    gps_lat: float | None = None
    gps_lon: float | None = None


def read_metadata(img: Image.Image, w: int, h: int) -> ImageInfo:
    try:
        exif = img.getexif()
    except DECODE_ERRORS:
        exif = Image.Exif()
    return exif_metadata(exif, w, h, img.format)


def exif_metadata(exif: Image.Exif, w: int, h: int, fmt: str | None) -> ImageInfo:
    """ImageInfo from EXIF tags (size swapped when the orientation turns the picture a quarter)."""
    if not exif:
        return ImageInfo(w, h, fmt)
    try:
        sub = exif.get_ifd(_EXIF_IFD)
    except DECODE_ERRORS:
        sub = {}
    if exif.get(ORIENTATION) in _ROTATING_ORIENTATIONS:
        w, h = h, w
    taken = sub.get(_DATETIME_ORIGINAL) or sub.get(_DATETIME_DIGITIZED) or exif.get(_DATETIME)
    lat, lon = _gps(exif)
    return ImageInfo(w, h, fmt, _exif_datetime(taken), _exif_text(exif.get(_MAKE)),
                     _exif_text(exif.get(_MODEL)), lat, lon)


def _exif_text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    value = value.strip("\x00 ").strip()
    return value[:200] or None


def _exif_datetime(value: object) -> datetime | None:
    text = _exif_text(value)
    if not text:
        return None
    try:
        return datetime.strptime(text[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None


def _gps(exif: Image.Exif) -> tuple[float | None, float | None]:
    try:
        gps = exif.get_ifd(_GPS_IFD)
        if not gps or 2 not in gps or 4 not in gps:
            return None, None
        lat = _dms(gps[2]) * (-1 if gps.get(1) in ("S", b"S") else 1)
        lon = _dms(gps[4]) * (-1 if gps.get(3) in ("W", b"W") else 1)
    except (*DECODE_ERRORS, AttributeError):
        return None, None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None, None
    return lat, lon


def _dms(value: tuple) -> float:
    d, m, s = (float(v) for v in value)
    return d + m / 60 + s / 3600
