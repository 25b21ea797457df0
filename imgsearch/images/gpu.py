"""Batched JPEG decoding with torchvision (nvJPEG on CUDA) and the model's geometry on the device.

Imported only when a tensor decoder is used (it imports torch). Files it cannot handle (not a
JPEG, CMYK, a decode error) go back to the Pillow path, which also names the reason if the file
is really broken.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.io import ImageReadMode, decode_jpeg

from imgsearch.errors import ImageError
from imgsearch.images.decode import Decoded, FileData, Geometry, MAX_ASPECT, data_hash, read_header
from imgsearch.images.exif import ImageInfo

JPEG_MAGIC = b"\xff\xd8\xff"
FIT_BATCH = 8  # full-resolution images resized per call: bounds GPU memory (8 x 12 MP fp16 = 0.6 GB)


def orient(t: torch.Tensor, orientation: int) -> torch.Tensor:
    """Apply an EXIF orientation (1-8) to a (C, H, W) tensor, as Pillow's exif_transpose does."""
    if orientation == 2:
        return t.flip(-1)
    if orientation == 3:
        return t.flip(-1).flip(-2)
    if orientation == 4:
        return t.flip(-2)
    if orientation == 5:
        return t.transpose(-1, -2)
    if orientation == 6:
        return t.transpose(-1, -2).flip(-1)
    if orientation == 7:
        return t.transpose(-1, -2).flip(-1).flip(-2)
    if orientation == 8:
        return t.transpose(-1, -2).flip(-2)
    return t


def resized_size(h: int, w: int, geo: Geometry) -> tuple[int, int]:
    """(new_h, new_w) of the resize step, the same arithmetic as images.fit_to_geometry."""
    if geo.resize_mode == "squash":
        return geo.height, geo.width
    if geo.resize_mode == "longest":
        scale = max(h / geo.height, w / geo.width)
        return round(h / scale), round(w / scale)
    size = min(geo.height, geo.width)
    return (int(size * h / w), size) if w <= h else (size, int(size * w / h))


def fit(batch: torch.Tensor, geo: Geometry) -> torch.Tensor:
    """(n, 3, H, W) uint8 of one size -> (n, geo.height, geo.width, 3) uint8, resized and centre-cropped.

    Images over 4x the target are first box-averaged to exactly twice the target size (what JPEG
    draft mode does on the Pillow path, without dropping edge pixels), leaving 2x for the
    antialiased bicubic step: a 12 MP photo then costs a fraction of a full-resolution bicubic.
    """
    h, w = batch.shape[-2:]
    new_h, new_w = resized_size(h, w, geo)
    mode = "bilinear" if geo.interpolation == "bilinear" else "bicubic"
    if (new_h, new_w) != (h, w):
        x = batch.half() if batch.is_cuda else batch.float()
        if h >= 4 * new_h and w >= 4 * new_w:
            x = F.adaptive_avg_pool2d(x, (2 * new_h, 2 * new_w))
        x = F.interpolate(x.float(), size=(new_h, new_w), mode=mode, antialias=True, align_corners=False)
        batch = x.round_().clamp_(0, 255).to(torch.uint8)
    pad_h, pad_w = max(geo.height - new_h, 0), max(geo.width - new_w, 0)
    if pad_h or pad_w:
        batch = F.pad(batch, (pad_w // 2, (pad_w + 1) // 2, pad_h // 2, (pad_h + 1) // 2), value=geo.fill)
    top = int(round((batch.shape[-2] - geo.height) / 2.0))
    left = int(round((batch.shape[-1] - geo.width) / 2.0))
    return batch[..., top:top + geo.height, left:left + geo.width].permute(0, 2, 3, 1).contiguous()


def stack_on_device(pixels: Sequence["torch.Tensor | np.ndarray"]) -> torch.Tensor:
    """Stack (H, W, 3) uint8 images, some numpy and some device tensors, on the tensors' device."""
    device = next(p.device for p in pixels if isinstance(p, torch.Tensor))
    return torch.stack([p if isinstance(p, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(p)).to(device)
                        for p in pixels])


def gpu_decode_works(device: str) -> bool:
    """Whether torchvision can decode JPEGs on this device (nvJPEG present and usable)."""
    from PIL import Image
    import io

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 200, 30)).save(buf, format="JPEG")
    try:
        out = decode_jpeg(torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8), device=device)
        return tuple(out.shape) == (3, 16, 16)
    except (RuntimeError, NotImplementedError):
        return False


class TensorDecoder:
    """Decodes batches of JPEG files on `device`; returns Decoded items and the files it gave back."""

    def __init__(self, geo: Geometry, device: str, max_pixels: int) -> None:
        self.geo = geo
        self.device = torch.device(device)
        self.max_pixels = max_pixels

    def decode(self, files: Sequence[FileData]) -> tuple[list[Decoded], list[str]]:
        """Decoded files, and paths to hand to the Pillow path instead."""
        accepted: list[tuple[FileData, ImageInfo, int]] = []
        fallback: list[str] = []
        for f in files:
            try:
                info, orientation = read_header(f.data, self.max_pixels)
            except ImageError:
                fallback.append(f.path)  # Pillow will name the reason
                continue
            extreme = max(info.width, info.height) > MAX_ASPECT * max(1, min(info.width, info.height))
            if info.format == "JPEG" and f.data.startswith(JPEG_MAGIC) and not extreme:
                accepted.append((f, info, orientation))
            else:
                fallback.append(f.path)
        images = self._decode_jpegs([torch.frombuffer(f.data, dtype=torch.uint8) for f, _, _ in accepted])
        groups: dict[tuple[int, int], list[tuple[int, torch.Tensor]]] = defaultdict(list)
        for n, ((f, _, orientation), img) in enumerate(zip(accepted, images)):
            if img is None:
                fallback.append(f.path)
            else:
                t = orient(img, orientation)
                groups[(int(t.shape[-2]), int(t.shape[-1]))].append((n, t))
        pixels: dict[int, torch.Tensor] = {}
        for members in groups.values():  # camera photos share a size: resize them together, 8 at a time
            for start in range(0, len(members), FIT_BATCH):
                part = members[start:start + FIT_BATCH]
                out = fit(torch.stack([t for _, t in part]), self.geo)
                pixels.update((n, out[i]) for i, (n, _) in enumerate(part))
        decoded = [Decoded(f.path, pixels[n], info, data_hash(f.data), f.size, f.mtime_ns)
                   for n, (f, info, _) in enumerate(accepted) if n in pixels]
        return decoded, fallback

    def _decode_jpegs(self, datas: list[torch.Tensor]) -> list[torch.Tensor | None]:
        if not datas:
            return []
        try:
            return list(decode_jpeg(datas, mode=ImageReadMode.RGB, device=self.device))
        except RuntimeError:  # one bad file fails the whole batch: find it one by one
            out: list[torch.Tensor | None] = []
            for d in datas:
                try:
                    out.append(decode_jpeg(d, mode=ImageReadMode.RGB, device=self.device))
                except RuntimeError:
                    out.append(None)
            return out
