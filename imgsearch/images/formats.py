"""Every file format imgsearch reads, in one place: extensions, magic bytes, the decoder each needs, and
what to install when that decoder is missing.

A file is recognised by its content first: a HEIC named .jpg is decoded as HEIC, a video named .jpg
as a video. Only TIFF-based files are ambiguous by content (DNG, NEF, CR2, ARW... are TIFF inside),
so for those the extension decides between Pillow and LibRaw.

Imported by decode worker processes: no torch, no database.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass

STILL, RAW, VIDEO = "still", "raw", "video"
HEAD_BYTES = 64  # enough for every signature below


@dataclass(frozen=True)
class Format:
    name: str  # as stored in the library and shown to users
    kind: str  # STILL (Pillow), RAW (LibRaw through rawpy) or VIDEO (FFmpeg through PyAV)
    extensions: frozenset[str]
    module: str | None = None  # the module whose presence means the decoder is installed
    install: str | None = None  # what to install when it is not
    dist: str = "Pillow"  # the distribution that decodes it (its version is what `imgsearch doctor` shows)
    written_by_cameras: bool = False  # a camera or phone writes it: a copy in another format is a conversion
    aliases: frozenset[str] = frozenset()  # other names Pillow gives it (a JPEG with a depth map is MPO)
    signed: bool = True  # its files always start with a signature sniff() knows (RAW and video ones may not)

    @property
    def installed(self) -> bool:
        return _installed(self.name)

    def missing(self) -> str:
        """The skip reason of a file in this format while its decoder is not installed."""
        return f"{self.name} decoder not installed: {self.install}"


def _ext(*names: str) -> frozenset[str]:
    return frozenset(f".{n}" for n in names)


JPEG = Format("JPEG", STILL, _ext("jpg", "jpeg", "jpe", "jfif"), written_by_cameras=True, aliases=frozenset({"MPO"}))
PNG = Format("PNG", STILL, _ext("png"))
WEBP = Format("WEBP", STILL, _ext("webp"))
GIF = Format("GIF", STILL, _ext("gif"))
BMP = Format("BMP", STILL, _ext("bmp"))
TIFF = Format("TIFF", STILL, _ext("tif", "tiff"))
HEIF = Format("HEIF", STILL, _ext("heic", "heif", "hif"), "pillow_heif",
              'pip install pillow-heif (the "heic" extra of imgsearch)', "pillow-heif", True, frozenset({"HEIC"}))
AVIF = Format("AVIF", STILL, _ext("avif"), None, "pip install 'Pillow>=11.3' (its wheels decode AVIF)",
              written_by_cameras=True)
JXL = Format("JXL", STILL, _ext("jxl"), "pillow_jxl", 'pip install pillow-jxl-plugin (the "jxl" extra of imgsearch)',
             "pillow-jxl-plugin", True)
CAMERA_RAW = Format("RAW", RAW, _ext("dng", "cr2", "cr3", "crw", "nef", "nrw", "arw", "srf", "sr2", "raf", "orf",
                                     "rw2", "raw", "pef", "srw", "kdc", "dcr", "mrw", "3fr", "erf", "mef", "mos",
                                     "iiq", "x3f", "rwl"),
                    "rawpy", "pip install rawpy", "rawpy", True, frozenset({"DNG"}), signed=False)
VIDEO_FORMAT = Format("VIDEO", VIDEO, _ext("mp4", "mov", "m4v", "mkv", "webm", "avi", "3gp", "3g2", "mts", "m2ts",
                                           "wmv", "mpg", "mpeg"),
                      "av", "pip install av", "av", signed=False)
FORMATS = (JPEG, PNG, WEBP, GIF, BMP, TIFF, HEIF, AVIF, JXL, CAMERA_RAW, VIDEO_FORMAT)
EXTENSIONS = frozenset().union(*(f.extensions for f in FORMATS))
_BY_NAME = {name: f for f in FORMATS for name in {f.name, *f.aliases}}


def original_rank(name: str | None) -> int:
    """How original a stored format is: 0 for a camera RAW, 1 for what cameras write (JPEG, HEIC...), 2 for a
    conversion (PNG, WebP...)."""
    found = _BY_NAME.get((name or "").upper())
    return 0 if found is CAMERA_RAW else 1 if found is not None and found.written_by_cameras else 2
PICTURE_EXTENSIONS = EXTENSIONS - VIDEO_FORMAT.extensions  # stills and RAWs: one image per file
_BY_EXTENSION = {ext: f for f in FORMATS for ext in f.extensions}

_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1", b"mif2"}
_AVIF_BRANDS = {b"avif", b"avis"}


def by_extension(path: str) -> Format | None:
    dot = path.rfind(".")
    return _BY_EXTENSION.get(path[dot:].lower()) if dot >= 0 else None


def sniff(head: bytes, path: str = "") -> Format | None:
    """The format of a file from its first HEAD_BYTES bytes (the extension only breaks the TIFF tie);
    None when no signature matches (the file is then tried by its extension)."""
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith((b"GIF87a", b"GIF89a")):
        return GIF
    if head.startswith(b"BM"):
        return BMP
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return VIDEO_FORMAT
    if head.startswith((b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")):
        return JXL
    if head[4:8] == b"ftyp":
        return _ftyp(head)
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: Matroska, WebM
        return VIDEO_FORMAT
    if head.startswith((b"FUJIFILMCCD-RAW", b"IIRO", b"IIU\x00", b"MMOR", b"FOVb", b"\x00MRM")):
        return CAMERA_RAW  # Fujifilm RAF, Olympus ORF, Panasonic RW2, Sigma X3F, Minolta MRW
    if head.startswith((b"II*\x00", b"MM\x00*")):
        ext = by_extension(path)
        return CAMERA_RAW if ext is CAMERA_RAW else TIFF
    if head.startswith(b"\x00\x00\x01\xba") or head.startswith(b"\x30\x26\xb2\x75"):
        return VIDEO_FORMAT  # MPEG program stream, ASF (wmv)
    return None


def _ftyp(head: bytes) -> Format:
    """ISO base media files: HEIF and AVIF images, Canon CR3, and MP4/MOV/3GP videos share the box layout."""
    size = int.from_bytes(head[:4], "big")
    brands = {head[8:12]} | {head[i:i + 4] for i in range(16, min(size, len(head)) - 3, 4)}
    if head[8:12] == b"crx ":
        return CAMERA_RAW
    if brands & _AVIF_BRANDS:
        return AVIF
    if brands & _HEIF_BRANDS:
        return HEIF
    return VIDEO_FORMAT


def impostor(head: bytes, path: str) -> Format | None:
    """The format a file's name claims when its first bytes are not that format's, nor any image's (junk named
    .jpg): it is refused from these bytes, before the rest of it is read."""
    named = by_extension(path)
    return named if named is not None and named.signed and sniff(head, path) is None else None


def format_of(head: bytes, path: str) -> Format | None:
    """By content, else by extension."""
    return sniff(head, path) or by_extension(path)


@functools.lru_cache(maxsize=None)
def _installed(name: str) -> bool:
    fmt = next(f for f in FORMATS if f.name == name)
    if fmt is AVIF:
        from PIL import features

        return bool(features.check("avif"))
    if fmt.module is None:
        return True
    try:  # imported, not just found: a broken install is as good as none
        importlib.import_module(fmt.module)
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=None)
def register_pillow_plugins() -> None:
    """Teach Pillow the formats plugins add (HEIF, JPEG XL), when installed; once per process."""
    if HEIF.installed:
        from pillow_heif import register_heif_opener

        register_heif_opener()
    if JXL.installed:
        import pillow_jxl  # noqa: F401 (registers itself with Pillow)


def missing_decoder(reason: str | None) -> Format | None:
    """The format a skip reason says had no decoder (so the file is worth trying again once one is installed)."""
    if not reason:
        return None
    return next((f for f in FORMATS if reason.startswith(f"{f.name} decoder not installed")), None)


def own_pixel_limit() -> None:
    """Pillow's decompression-bomb check reads one process-wide limit (89 MP); imgsearch's is per call and RAM-aware
    (default_pixel_limit) and runs on the header before any pixel is decoded. So Pillow's is switched off where
    imgsearch opens an image, once and for good (setting it on every open raced between threads), and never by an
    import: a program that imports imgsearch and decodes only through Pillow keeps Pillow's own check."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
