"""Pillow decoding: EXIF orientation, RGB, pixel limits, JPEG draft mode, model-geometry resize.

Imported by decode worker processes: must never import torch.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:  # types only: decode workers never import torch
    import torch

from imgsearch.config import VideoSampling
from imgsearch.errors import ImageError
from imgsearch.images import formats, raw, video
from imgsearch.images.exif import DECODE_ERRORS, ORIENTATION, ImageInfo, read_metadata
from imgsearch.images.fingerprint import DRAFT_SIDE, fingerprint

PARTIAL_HASH_CHUNK = 64 * 1024
BYTES_PER_PIXEL_MAX = 8  # no image file holds more per pixel (16-bit RGBA, uncompressed)
MAX_ASPECT = 10  # beyond this, fit_to_geometry crops before resizing (same pixels, bounded memory)
_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


@dataclass(frozen=True)
class Geometry:
    """The model's preprocessing geometry (what open_clip's eval transform does before ToTensor)."""

    height: int
    width: int
    resize_mode: str = "shortest"  # shortest | longest | squash, as in open_clip
    interpolation: str = "bicubic"
    fill: int = 0


@dataclass(frozen=True)
class Decoded:
    """One file ready for the encoder: model-sized uint8 pixels (H, W, 3) and what the DB stores. A video has
    pixels (frames, H, W, 3) and the frames' times."""

    path: str
    pixels: np.ndarray | torch.Tensor  # a tensor when decoded on a GPU (images.gpu)
    info: ImageInfo
    content_hash: str
    size: int
    mtime_ns: int
    times_ms: tuple[int, ...] | None = None  # a video's sampled frames
    duration_ms: int | None = None
    fingerprint: bytes | None = None  # for duplicate finding (images.fingerprint; a video: one per frame)

    @property
    def rows(self) -> int:
        """How many vectors this file needs (its frames, for a video)."""
        return len(self.times_ms) if self.times_ms is not None else 1


def default_pixel_limit(workers: int) -> int:
    """A decompression-bomb limit that keeps all workers' decoded frames well inside RAM."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = 8 << 30
    per_worker = ram // 4 // max(1, workers)
    # ~8 bytes per pixel at peak (decode buffer + RGB conversion); never below 50 MP, never above 1 GP.
    return int(min(max(per_worker // 8, 50_000_000), 1_000_000_000))


def hash_bytes(head: bytes, tail: bytes, size: int) -> str:
    """Content fingerprint from the size and the first and last 64 KiB: cheap, and enough to spot a move."""
    h = hashlib.blake2b(digest_size=16)
    h.update(size.to_bytes(8, "little"))
    h.update(head)
    h.update(tail)
    return h.hexdigest()


def _tail_offset(size: int) -> int:
    return max(PARTIAL_HASH_CHUNK, size - PARTIAL_HASH_CHUNK)


def partial_hash(path: str | Path) -> str:
    """hash_bytes of a file on disk, reading at most 128 KiB."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(PARTIAL_HASH_CHUNK)
        f.seek(_tail_offset(size))
        tail = f.read(PARTIAL_HASH_CHUNK)
    return hash_bytes(head, tail, size)


def data_hash(data: bytes | bytearray) -> str:
    """hash_bytes of a file already read into memory (equals partial_hash of the same file)."""
    return hash_bytes(bytes(data[:PARTIAL_HASH_CHUNK]), bytes(data[_tail_offset(len(data)):]), len(data))


def open_rgb(source: str | Path | io.BytesIO, max_pixels: int, draft_to: tuple[int, int] | None = None,
             name: str = "") -> tuple[Image.Image, ImageInfo]:
    """Open any supported file as oriented RGB (alpha over white): stills through Pillow (JPEGs DCT-downscaled to
    at least `draft_to` (w, h)), RAWs through their preview or LibRaw, videos as their first key frame. `name`:
    the file name of in-memory bytes (it settles what content alone cannot: a TIFF or a TIFF-based RAW)."""
    name = name or ("" if isinstance(source, io.BytesIO) else str(source))
    head = _head(source)
    sniffed = formats.sniff(head, name)  # by content: what a decoder failing on the file cannot blame on its name
    fmt = sniffed or formats.by_extension(name)
    if fmt is not None:
        _require(fmt)
    if fmt is not None and fmt.kind == formats.RAW:
        data = source.getvalue() if isinstance(source, io.BytesIO) else _read_all(source)
        return raw.open_raw(data, max_pixels, max(draft_to) if draft_to else 0)
    if fmt is not None and fmt.kind == formats.VIDEO:
        img = video.still(source if isinstance(source, io.BytesIO) else str(source))
        return img, ImageInfo(*img.size, "VIDEO")
    formats.register_pillow_plugins()
    with _as_image_errors(sniffed):
        img = _open_checked(source, max_pixels)
        info = read_metadata(img, *img.size)
        if draft_to is not None and img.format == "JPEG":
            # draft keeps both sides >= the request; ask for the larger side both ways so the
            # orientation applied afterwards cannot leave a side short.
            side = max(draft_to)
            img.draft("RGB", (side, side))
        img.seek(0)  # animated GIF/WebP: the first frame
        heif_turn = _heif_exif_only_orientation(img)  # read before load(): pillow-heif lets go of its container then
        img.load()
        img = img.transpose(_UPRIGHT[heif_turn]) if heif_turn is not None else _oriented(img)
        img = _to_rgb(img)
    return img, info


def _head(source: str | Path | io.BytesIO) -> bytes:
    """The first bytes of a file, enough to tell its format."""
    if isinstance(source, io.BytesIO):
        return source.getbuffer()[:formats.HEAD_BYTES].tobytes()
    with _read_errors(), open(source, "rb") as f:
        return f.read(formats.HEAD_BYTES)


def format_of_file(path: str) -> formats.Format | None:
    """A file's format by its first bytes (and its name where content cannot tell)."""
    return formats.format_of(_head(path), path)


def _read_all(path: str | Path) -> bytearray:
    return read_file(str(path)).data


@contextlib.contextmanager
def _read_errors() -> Iterator[None]:
    """A file that cannot be read (gone, no permission, an I/O error) becomes an ImageError: a skip reason."""
    try:
        yield
    except OSError as exc:
        raise ImageError(f"cannot read: {exc.strerror or exc}") from exc


def _check_unchanged(before: os.stat_result, after: os.stat_result, complete: bool = True) -> None:
    """Refuse what changed between two stats of a file (or was not read whole: `complete` False)."""
    if not complete or (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
        raise ImageError("file changed while being read (it will be retried on the next run)")


def _require(fmt: formats.Format) -> None:
    """A format whose optional decoder is missing is a skip naming the package to install."""
    if not fmt.installed:
        raise ImageError(fmt.missing())


@contextlib.contextmanager
def _as_image_errors(sniffed: formats.Format | None = None) -> Iterator[None]:
    """Whatever a broken file makes Pillow raise becomes an ImageError with a reason a user can read."""
    try:
        yield
    except ImageError:
        raise
    except UnidentifiedImageError as exc:
        if sniffed is not None:  # its content says what it is, yet its decoder cannot read it
            raise ImageError(f"cannot decode {sniffed.name}: the file is damaged or truncated") from exc
        raise ImageError("not an image Pillow can read (wrong extension or unsupported format)") from exc
    except DECODE_ERRORS as exc:
        raise ImageError(f"cannot decode: {type(exc).__name__}: {exc}") from exc
    except RuntimeError as exc:  # how the HEIF and JPEG XL plugins report a damaged or hostile file
        raise ImageError(f"cannot decode: {exc}") from exc


def _open_checked(source: str | Path | io.BytesIO, max_pixels: int) -> Image.Image:
    """Image.open (header only), then the caller's pixel limit, checked before any pixel is decoded."""
    formats.own_pixel_limit()
    img = Image.open(source)
    w, h = img.size
    if w * h > max_pixels:
        raise ImageError(f"image too large: {w}x{h} pixels exceeds the limit of {max_pixels:,}")
    return img


# EXIF orientation -> the turn that shows the picture upright (as ImageOps.exif_transpose does it)
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}


def _heif_exif_only_orientation(img: Image.Image) -> int | None:
    """A HEIF/AVIF whose EXIF says to turn it while its container has no rotation or mirror box (early iPhone files):
    pillow-heif applies the container's boxes and resets the EXIF tag, so such a picture would stay on its side.
    The EXIF orientation to apply then, else None. Asked before the pixels are loaded."""
    orientation = img.info.get("original_orientation")
    if orientation not in _UPRIGHT:
        return None
    try:  # pillow-heif's decoded image lists the container's transformations (irot, imir, clap)
        boxes = img._heif_file[img.tell()]._c_image.transformations  # type: ignore[attr-defined]
    except (AttributeError, IndexError, TypeError):
        return None  # another pillow-heif: leave it to the container, as before
    return None if any(box[0] in ("irot", "imir") for box in boxes) else int(orientation)


def _oriented(img: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(img)
    except DECODE_ERRORS:
        return img  # absurd EXIF orientation data: keep the pixels as stored


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16/32-bit greyscale: Pillow's convert() clips instead of scaling.
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr * (255.0 / peak), 0, 255).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def fit_to_geometry(img: Image.Image, geo: Geometry) -> np.ndarray:
    """Resize and centre-crop (or pad) exactly as open_clip's eval transform does; uint8 (H, W, 3)."""
    resample = _RESAMPLE.get(geo.interpolation, Image.Resampling.BICUBIC)
    w, h = img.size
    if geo.resize_mode == "squash":
        return np.asarray(img.resize((geo.width, geo.height), resample))
    if geo.resize_mode == "longest":
        scale = max(h / geo.height, w / geo.width)  # timm ResizeKeepRatio(longest=1)
        new_w, new_h = round(w / scale), round(h / scale)
    else:
        # torchvision Resize(int): the short side becomes `size`, the long side is truncated.
        size = min(geo.height, geo.width)
        if w <= h:
            new_w, new_h = size, int(size * h / w)
        else:
            new_w, new_h = int(size * w / h), size
    if max(new_w / geo.width, new_h / geo.height) > MAX_ASPECT:
        # A panorama strip (say 1x100000): resizing all of it would allocate gigapixels for a crop of
        # 224x224. Resize only the source region the centre crop keeps (Pillow's box argument).
        box_w, box_h = min(w, geo.width * w / new_w), min(h, geo.height * h / new_h)
        left, top = (w - box_w) / 2, (h - box_h) / 2
        img = img.resize((min(new_w, geo.width), min(new_h, geo.height)), resample,
                         box=(left, top, left + box_w, top + box_h))
        new_w, new_h = img.size
    elif (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), resample)
    arr = np.asarray(img)
    pad_h, pad_w = max(geo.height - new_h, 0), max(geo.width - new_w, 0)
    if pad_h or pad_w:
        arr = np.pad(arr, ((pad_h // 2, (pad_h + 1) // 2), (pad_w // 2, (pad_w + 1) // 2), (0, 0)),
                     constant_values=geo.fill)
    top = int(round((arr.shape[0] - geo.height) / 2.0))
    left = int(round((arr.shape[1] - geo.width) / 2.0))
    return np.ascontiguousarray(arr[top:top + geo.height, left:left + geo.width])


@dataclass(frozen=True)
class FileData:
    """A file's bytes with the stat taken while reading them."""

    path: str
    data: bytearray
    size: int
    mtime_ns: int


def file_limit(max_pixels: int) -> int:
    """The largest file worth reading for an image of at most `max_pixels` (uncompressed 16-bit RGB is 6 bytes a
    pixel): anything larger is refused before a byte of it is read, so a file larger than RAM cannot end a run."""
    return BYTES_PER_PIXEL_MAX * max_pixels


def read_file(path: str, max_bytes: int | None = None) -> FileData:
    """Read a whole file once (at most `max_bytes`, default: what the pixel limit allows on one worker); refuses
    files that change while being read, and empty ones."""
    limit = max_bytes or file_limit(default_pixel_limit(1))
    with _read_errors(), open(path, "rb", buffering=0) as f:
        before = os.fstat(f.fileno())
        if before.st_size > limit:
            raise ImageError(f"file too large to read: {_size(before.st_size)}, over the {_size(limit)} this "
                             "machine's memory allows for one image")
        if before.st_size == 0:
            raise ImageError("empty file (0 bytes)")
        claimed = formats.impostor(f.read(formats.HEAD_BYTES), path)
        if claimed is not None:  # junk under an image's name: refused from its first bytes, the rest never read
            raise ImageError(f"not an image: the name says {claimed.name}, but the first bytes are no image "
                             "format's (junk, a web page saved under an image's name, or a damaged copy)")
        f.seek(0)
        # a bytearray filled in place: the GPU path wraps it as a tensor without a copy
        data = bytearray(before.st_size)
        view, got = memoryview(data), 0
        while got < len(data):  # one read returns at most ~2 GiB
            n = f.readinto(view[got:])
            if not n:
                break
            got += n
        extra = f.read(1)
        after = os.fstat(f.fileno())
    _check_unchanged(before, after, complete=got == after.st_size and not extra)
    if not data:
        raise ImageError("empty file (0 bytes)")
    return FileData(path, data, after.st_size, after.st_mtime_ns)


def _size(n: int) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def read_header(data: bytes | bytearray, max_pixels: int) -> tuple[ImageInfo, int]:
    """Metadata and EXIF orientation (1 = none) from the header alone, without decoding pixels."""
    with _as_image_errors():
        img = _open_checked(io.BytesIO(data), max_pixels)
        info = read_metadata(img, *img.size)
        orientation = img.getexif().get(ORIENTATION, 1)
    return info, orientation if orientation in range(1, 9) else 1


def decode_data(file: FileData, geo: Geometry, max_pixels: int) -> Decoded:
    """Decode bytes already read (draft mode) and fit them to the model's geometry."""
    # never drafted below what the fingerprint needs (a tiny model's geometry would leave it a thumbnail)
    draft = (max(geo.width, DRAFT_SIDE), max(geo.height, DRAFT_SIDE))
    img, info = open_rgb(io.BytesIO(file.data), max_pixels, draft_to=draft, name=file.path)
    return Decoded(file.path, _fit(img, geo), info, data_hash(file.data), file.size, file.mtime_ns,
                   fingerprint=_fingerprint(img))


def _fingerprint(img: Image.Image) -> bytes | None:
    """The decoded picture's fingerprint while it is at hand (None if it cannot be made: `dups` tries again)."""
    try:
        return fingerprint(img)
    except DECODE_ERRORS:
        return None


def _fit(img: Image.Image, geo: Geometry) -> np.ndarray:
    try:
        return fit_to_geometry(img, geo)
    except DECODE_ERRORS as exc:
        raise ImageError(f"cannot resize: {type(exc).__name__}: {exc}") from exc


def decode_video(path: str, geo: Geometry, max_pixels: int, sampling: VideoSampling) -> Decoded:
    """Sample a video's key frames (FFmpeg reads the file itself: it is never read whole) and fit each."""
    _require(formats.VIDEO_FORMAT)
    with _read_errors():
        before = os.stat(path)
        content = partial_hash(path)
    if before.st_size == 0:
        raise ImageError("empty file (0 bytes)")
    # each frame shrunk to the model's size (and fingerprinted) as it is decoded: one full-size frame in memory
    frames = video.read_frames(path, sampling, max_pixels, lambda img: (_fit(img, geo), _fingerprint(img)))
    with _read_errors():
        after = os.stat(path)
    _check_unchanged(before, after)
    pixels = np.stack([fitted for _, (fitted, _) in frames.frames])
    prints = [blob for _, (_, blob) in frames.frames]
    return Decoded(path, pixels, frames.info, content, after.st_size, after.st_mtime_ns,
                   tuple(t for t, _ in frames.frames), frames.duration_ms,
                   b"".join(b for b in prints if b is not None) if all(prints) else None)


def decode_file(path: str, geo: Geometry, max_pixels: int, sampling: VideoSampling | None = None) -> Decoded:
    """Decode any supported file for the encoder: a still read once and fingerprinted, or a video's frames."""
    if format_of_file(path) is formats.VIDEO_FORMAT:
        return decode_video(path, geo, max_pixels, sampling or VideoSampling())
    return decode_data(read_file(path, file_limit(max_pixels)), geo, max_pixels)


def thumbnail(path: str, size: int, fmt: str = "WEBP", max_pixels: int = 200_000_000, at_ms: int = 0) -> bytes:
    """A small EXIF-oriented copy of an image, its longer side `size` at most, encoded as `fmt` (WEBP, JPEG); for
    a video, of its key frame at `at_ms`. JPEGs are DCT-downscaled while decoding (draft mode): a 12 MP photo costs
    a fraction of a full decode. Raises ImageError for a file that cannot be read."""
    if format_of_file(path) is formats.VIDEO_FORMAT:
        _require(formats.VIDEO_FORMAT)
        img = video.still(path, at_ms)
    else:
        img, _ = open_rgb(path, max_pixels, draft_to=(size, size))
    img.thumbnail((size, size), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    img.save(out, format=fmt, quality=80, **({"method": 4} if fmt == "WEBP" else {}))
    return out.getvalue()


def thumbnail_jpeg(path: str, size: int = 256, max_pixels: int = 200_000_000, at_ms: int = 0) -> bytes | None:
    """A small oriented JPEG of an image (a video: its frame at `at_ms`) for contact sheets; None if unreadable."""
    try:
        return thumbnail(path, size, "JPEG", max_pixels, at_ms)
    except ImageError:
        return None
