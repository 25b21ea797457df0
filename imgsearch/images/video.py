"""Videos through FFmpeg (PyAV): a few key frames per video, each an image for the encoder.

Only key frames are decoded, at most one per `every_s` seconds (spread further apart for long videos) and
`max_frames` in all, so the cost of a video is bounded whatever its length. The file is read by FFmpeg
itself, never whole into memory.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, BinaryIO

from PIL import Image

from imgsearch.config import VideoSampling
from imgsearch.errors import ImageError
from imgsearch.images.exif import ImageInfo
from imgsearch.images.formats import VIDEO_FORMAT


@dataclass(frozen=True)
class Frames:
    """The frames kept of one video: (time in ms, what `keep` made of the upright RGB frame), in time order, and its
    metadata."""

    frames: list[tuple[int, Any]]
    info: ImageInfo
    duration_ms: int | None


def read_frames(path: str, sampling: VideoSampling, max_pixels: int,
                keep: Callable[[Image.Image], Any] = lambda img: img) -> Frames:
    """Sample a video's key frames; ImageError with a readable reason when it has none or cannot be read. Each frame
    is handed to `keep` as soon as it is decoded and only what that returns is kept (a model-sized copy, say), so
    memory holds one full-size frame at a time, whatever the video's length."""
    import av

    try:
        # a file object, not a name: FFmpeg then goes by the content, whatever the extension says
        with open(path, "rb") as file, av.open(file, "r", metadata_errors="ignore") as container:
            if not container.streams.video:
                raise ImageError("no video stream in this file")
            stream = container.streams.video[0]
            codec = stream.codec_context
            if (codec.width or 0) * (codec.height or 0) > max_pixels:
                raise ImageError(f"video frames too large: {codec.width}x{codec.height} pixels exceeds the limit of "
                                 f"{max_pixels:,}")
            codec.skip_frame = "NONKEY"
            duration = container.duration / 1e6 if container.duration else None  # AV_TIME_BASE
            step = max(sampling.every_s, (duration or 0.0) / sampling.max_frames)
            frames, size = _sample(container, stream, step, sampling.max_frames, keep)
            info = _info(path, container, stream, size)
    except ImageError:
        raise
    except (av.FFmpegError, OSError, ValueError, IndexError, MemoryError) as exc:
        raise ImageError(f"cannot decode video: {type(exc).__name__}: {exc}") from exc
    if not frames:
        raise ImageError("no video frame could be decoded (an empty or damaged video)")
    return Frames(frames, info, int(duration * 1000) if duration else None)


def _sample(container, stream, step: float, max_frames: int,
            keep: Callable[[Image.Image], Any]) -> tuple[list[tuple[int, Any]], tuple[int, int] | None]:
    """Key frames at least `step` seconds apart, each through `keep`, and the first one's upright size: only
    key-frame packets at or past the next wanted time are handed to the decoder (with, for an interlaced video whose
    key frame is two field pictures, the packets that complete it), so a frame costs one decode however long the
    video is."""
    kept: list[tuple[int, Any]] = []
    size: tuple[int, int] | None = None
    next_t = 0.0

    def take(frames) -> None:
        nonlocal next_t, size
        for frame in frames:
            # the stream's time base: frames flushed at the end carry none of their own (their .time is NaN)
            t = float(frame.pts * stream.time_base) if frame.pts is not None and stream.time_base else None
            if t is None or t < next_t - 1e-3 or len(kept) >= max_frames:
                continue
            img = _upright(frame)
            size = size or img.size
            kept.append((int(round(t * 1000)), keep(img)))
            del img
            next_t = t + step

    codec = stream.codec_context
    completing = 0  # packets still to decode after a key field that gave no frame (an interlaced video)
    for packet in container.demux(stream):
        if len(kept) >= max_frames:
            break
        if packet.size == 0:
            continue  # the demuxer's end-of-stream marker: flushed below
        if completing:
            frames = codec.decode(packet)
            completing = 0 if frames else completing - 1
            if not completing:
                codec.skip_frame = "NONKEY"
            take(frames)
            continue
        t = float(packet.pts * packet.time_base) if packet.pts is not None and packet.time_base else None
        if not packet.is_keyframe or (t is not None and t < next_t - 1e-3):
            continue
        frames = codec.decode(packet)
        if not frames and interlaced(stream):
            # an interlaced key frame coded as two fields (AVCHD): this packet held the first; the frame is whole
            # once the packets after it (its other field, not a key frame itself) are decoded too
            codec.skip_frame, completing = "DEFAULT", FIELD_PACKETS
        take(frames)
    if len(kept) < max_frames:
        take(codec.decode(None))  # frames the decoder still holds
    kept.sort(key=lambda item: item[0])
    return kept, size


FIELD_PACKETS = 16  # at most this many packets decoded after a key field for its frame to come out


def interlaced(stream) -> bool:  # av.VideoStream
    """Whether the video is interlaced (FFmpeg's field order: top or bottom field first), so that its key frames may
    be coded as two field pictures in two packets, only the first of them a key frame."""
    return (stream.codec_context.field_order or 0) >= 2  # AV_FIELD_TT, BB, TB, BT (1: progressive, 0: unknown)


def _upright(frame) -> Image.Image:  # av.VideoFrame
    """The frame as RGB, turned as the video's display matrix says (phones store portrait videos sideways)."""
    img = frame.to_image()
    rotation = int(getattr(frame, "rotation", 0) or 0) % 360
    return img.rotate(rotation, expand=True) if rotation else img  # counter-clockwise degrees, as FFmpeg gives them


def _info(path: str, container, stream, size: tuple[int, int] | None) -> ImageInfo:
    """Size (upright), the container's creation time (UTC), camera and GPS from the metadata phones write."""
    meta = {k.lower(): v for k, v in {**container.metadata, **stream.metadata}.items()}
    w, h = size or (stream.codec_context.width, stream.codec_context.height)
    lat, lon = _iso6709(meta.get("com.apple.quicktime.location.iso6709") or meta.get("location") or "")
    ext = os.path.splitext(path)[1].lower()
    name = ext[1:].upper() if ext in VIDEO_FORMAT.extensions else VIDEO_FORMAT.name
    return ImageInfo(w, h, name, _created(meta.get("creation_time")),
                     meta.get("com.apple.quicktime.make") or meta.get("make"),
                     meta.get("com.apple.quicktime.model") or meta.get("model"), lat, lon)


def _created(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is not None:
        when = when.astimezone(timezone.utc).replace(tzinfo=None)
    return when if when.year > 1970 else None  # cameras without a clock write 1970 or 1904


def _iso6709(text: str) -> tuple[float | None, float | None]:
    match = re.match(r"^([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)", text)
    if not match:
        return None, None
    lat, lon = float(match.group(1)), float(match.group(2))
    return (lat, lon) if -90 <= lat <= 90 and -180 <= lon <= 180 else (None, None)


def still(source: str | BinaryIO, at_ms: int = 0) -> Image.Image:
    """The key frame at or just before `at_ms` (a poster, or the frame a search matched), upright."""
    import av

    try:
        with contextlib.ExitStack() as stack:
            file = stack.enter_context(open(source, "rb")) if isinstance(source, str) else source
            container = stack.enter_context(av.open(file, "r", metadata_errors="ignore"))
            if not container.streams.video:
                raise ImageError("no video stream in this file")
            stream = container.streams.video[0]
            if not interlaced(stream):  # (an interlaced key frame's second field is not a key frame: decoded too)
                stream.codec_context.skip_frame = "NONKEY"
            if at_ms > 0 and stream.time_base:
                container.seek(int(at_ms / 1000 / stream.time_base), stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                return _upright(frame)
    except ImageError:
        raise
    except (av.FFmpegError, OSError, ValueError, IndexError, MemoryError) as exc:
        raise ImageError(f"cannot decode video: {type(exc).__name__}: {exc}") from exc
    raise ImageError("no video frame could be decoded (an empty or damaged video)")
