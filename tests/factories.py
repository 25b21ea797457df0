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
                model: str | None = None, orientation: int | None = None, seed: int = 0,
                gps: tuple[float, float] | None = None) -> Path:
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
    if gps:
        place = exif.get_ifd(0x8825)
        for ref, at, value, signs in ((1, 2, gps[0], "NS"), (3, 4, gps[1], "EW")):
            degrees, rest = divmod(abs(value) * 3600, 3600)
            place[ref], place[at] = signs[value < 0], (degrees, rest // 60, round(rest % 60, 4))
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {"exif": exif.tobytes()} if len(exif) or taken or gps else {}
    img.save(path, format=fmt, **kwargs)
    return path


class FakeEncoder:
    """Colour -> vector: an image's mean RGB; a text's colour words. Counts what it encodes."""

    def __init__(self, name: str = "fake", dim: int = 8) -> None:
        self.info = ModelInfo(key=f"fake|{name}", name=name, pretrained=None, checkpoint_sha256=None, dim=dim,
                              geometry=Geometry(16, 16), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
        self.batch_size = 4
        self.logit_scale = 100.0
        self.transfer_s = self.encode_s = 0.0
        self.device = "cpu"
        self.folder = None
        self.images_encoded = 0
        self.texts_encoded = 0

    def describe(self) -> str:
        return "colour means (a test encoder)"

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


XYZ_TO_LINEAR_SRGB = (32406, -15372, -4986, -9689, 18758, 415, 557, -2040, 10570)  # x 1/10000 (D65)


def write_dng(path: Path, rgb: np.ndarray, preview: Image.Image | None = None, orientation: int = 1,
              make: str = "TestCam", model: str = "DNG 1") -> Path:
    """A real DNG (pidng) holding `rgb` as 12-bit RGGB Bayer data (in 16-bit samples) of a camera whose colours are
    linear sRGB, with an optional JPEG preview in a second IFD (the way cameras store one) and a TIFF orientation;
    LibRaw decodes it."""
    from pidng.defs import CalibrationIlluminant, CFAPattern, DNGVersion, PhotometricInterpretation
    from pidng.dng import DNG, DNGTags, Tag, dngIFD, dngTag

    h, w, _ = rgb.shape
    bpp = 12
    scale = (1 << bpp) - 1
    bayer = np.zeros((h, w), np.uint16)
    linear = (rgb.astype(np.float32) / 255) ** 2.2  # sensors count light: undo the sRGB gamma
    channels = [(linear[..., c] * scale).astype(np.uint16) for c in range(3)]
    bayer[0::2, 0::2], bayer[0::2, 1::2] = channels[0][0::2, 0::2], channels[1][0::2, 1::2]
    bayer[1::2, 0::2], bayer[1::2, 1::2] = channels[1][1::2, 0::2], channels[2][1::2, 1::2]
    tags = DNGTags()
    for tag, value in ((Tag.ImageWidth, w), (Tag.ImageLength, h), (Tag.TileWidth, w), (Tag.TileLength, h),
                       (Tag.Orientation, orientation), (Tag.SamplesPerPixel, 1), (Tag.BitsPerSample, 16),
                       (Tag.PhotometricInterpretation, PhotometricInterpretation.Color_Filter_Array),
                       (Tag.CFARepeatPatternDim, [2, 2]), (Tag.CFAPattern, CFAPattern.RGGB), (Tag.BlackLevel, 0),
                       (Tag.WhiteLevel, scale), (Tag.CalibrationIlluminant1, CalibrationIlluminant.D65),
                       (Tag.ColorMatrix1, [[v, 10000] for v in XYZ_TO_LINEAR_SRGB]),
                       (Tag.AsShotNeutral, [[1, 1], [1, 1], [1, 1]]), (Tag.Make, make), (Tag.Model, model),
                       (Tag.DNGVersion, DNGVersion.V1_4), (Tag.DNGBackwardVersion, DNGVersion.V1_2)):
        tags.set(tag, value)
    dng = DNG()
    dng.ImageDataStrips.append(bayer.astype("<u2").tobytes())
    main = dngIFD()
    raw_offset = dngTag(Tag.TileOffsets, [0])
    main.tags += [raw_offset, dngTag(Tag.NewSubfileType, [0]), dngTag(Tag.Compression, [1]),
                  dngTag(Tag.TileByteCounts, [len(dng.ImageDataStrips[0])]), *tags.list()]
    dng.IFDs.append(main)
    preview_offset = None
    if preview is not None:
        jpeg = _encoded(preview, "JPEG")
        dng.ImageDataStrips.append(jpeg)
        preview_ifd = dngIFD()
        preview_offset = dngTag(Tag.StripOffsets, [0])
        pw, ph = preview.size
        preview_ifd.tags += [dngTag(Tag.NewSubfileType, [1]), dngTag(Tag.ImageWidth, [pw]),
                             dngTag(Tag.ImageLength, [ph]), dngTag(Tag.BitsPerSample, [8, 8, 8]),
                             dngTag(Tag.Compression, [7]), dngTag(Tag.PhotometricInterpretation, [6]), preview_offset,
                             dngTag(Tag.SamplesPerPixel, [3]), dngTag(Tag.RowsPerStrip, [ph]),
                             dngTag(Tag.StripByteCounts, [len(jpeg)])]
        dng.IFDs.append(preview_ifd)
    total = dng.dataLen()
    raw_offset.setValue([dng.StripOffsets[0]])
    if preview_offset is not None:
        preview_offset.setValue([dng.StripOffsets[1]])
    buf = bytearray(total)
    dng.setBuffer(buf)
    if preview is not None:
        main.NextIFDOffset = dng.IFDs[1].offset  # pidng leaves IFDs unchained
    dng.write()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(buf))
    return path


def _encoded(img: Image.Image, fmt: str) -> bytes:
    import io

    out = io.BytesIO()
    img.save(out, format=fmt, quality=90)
    return out.getvalue()


def write_video(path: Path, scenes: list[tuple[float, Image.Image]], fps: int = 5, codec: str = "mpeg4",
                fmt: str | None = None, options: dict[str, str] | None = None) -> Path:
    """A video of still scenes, (seconds, picture) each in turn, with a key frame every second (PyAV); `options`:
    the encoder's (e.g. {"crf": "45"} for libx264)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = scenes[0][1].size
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=fps, options=options or {})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.gop_size = fps
        for seconds, picture in scenes:
            frame = av.VideoFrame.from_image(picture.convert("RGB"))
            for _ in range(int(round(seconds * fps))):
                for packet in stream.encode(frame):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
