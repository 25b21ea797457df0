"""An interlaced H.264 stream coded as separate fields (PAFF), as AVCHD cameras write it: each frame is two field
pictures, the first an IDR (a key frame) and the second a P field, each in a packet of its own. FFmpeg's encoders cannot
write field pictures (x264 codes interlaced video as MBAFF frames), so this writes them itself: every macroblock is
I_PCM (its samples as they are) or skipped, which needs no transform, prediction or entropy coder; the stream is muxed
into MPEG-TS by PyAV (packets copied as they are)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


class Bits:
    """An RBSP written bit by bit: fixed-width fields, Exp-Golomb codes, byte-aligned raw bytes."""

    def __init__(self) -> None:
        self.bits: list[int] = []
        self.raw = bytearray()

    def u(self, n: int, value: int) -> None:
        self.bits += [(value >> (n - 1 - i)) & 1 for i in range(n)]

    def ue(self, value: int) -> None:
        code = value + 1
        self.u(2 * code.bit_length() - 1, code)

    def se(self, value: int) -> None:
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def align(self) -> None:
        while len(self.bits) % 8:
            self.bits.append(0)

    def bytes_(self, data: bytes) -> None:
        for byte in data:
            self.u(8, byte)

    def trailing(self) -> bytes:
        self.bits.append(1)
        self.align()
        return bytes(int("".join(map(str, self.bits[i:i + 8])), 2) for i in range(0, len(self.bits), 8))


def _nal(ref_idc: int, kind: int, rbsp: bytes) -> bytes:
    """An Annex B NAL unit: start code, header, payload with emulation prevention bytes."""
    out, zeros = bytearray(), 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return b"\x00\x00\x00\x01" + bytes([(ref_idc << 5) | kind]) + bytes(out)


def _sps(width_mbs: int, field_height_mbs: int) -> bytes:
    b = Bits()
    b.u(8, 77)  # Main profile: field pictures allowed
    b.u(8, 0)
    b.u(8, 30)  # level 3
    b.ue(0)  # seq_parameter_set_id
    b.ue(0)  # log2_max_frame_num_minus4
    b.ue(2)  # pic_order_cnt_type 2: output order is decoding order
    b.ue(1)  # max_num_ref_frames
    b.u(1, 0)  # gaps_in_frame_num_value_allowed_flag
    b.ue(width_mbs - 1)
    b.ue(field_height_mbs - 1)  # pic_height_in_map_units_minus1: a field's rows of macroblocks
    b.u(1, 0)  # frame_mbs_only_flag: fields may be coded apart
    b.u(1, 0)  # mb_adaptive_frame_field_flag: no MBAFF
    b.u(1, 1)  # direct_8x8_inference_flag
    b.u(1, 0)  # frame_cropping_flag
    b.u(1, 0)  # vui_parameters_present_flag
    return _nal(3, 7, b.trailing())


def _pps() -> bytes:
    b = Bits()
    b.ue(0)
    b.ue(0)
    b.u(1, 0)  # CAVLC
    b.u(1, 0)  # bottom_field_pic_order_in_frame_present_flag
    b.ue(0)  # one slice group
    b.ue(0)
    b.ue(0)
    b.u(1, 0)
    b.u(2, 0)
    b.se(0)
    b.se(0)
    b.se(0)
    b.u(1, 1)  # deblocking_filter_control_present_flag
    b.u(1, 0)
    b.u(1, 0)
    return _nal(3, 8, b.trailing())


def _key_field(y: np.ndarray, cb: np.ndarray, cr: np.ndarray, idr_id: int) -> bytes:
    """A frame's top field as an IDR picture: one I slice of I_PCM macroblocks."""
    b = Bits()
    b.ue(0)  # first_mb_in_slice
    b.ue(7)  # slice_type: I, all slices of the picture
    b.ue(0)  # pic_parameter_set_id
    b.u(4, 0)  # frame_num (both fields of a frame share it; each frame starts again at an IDR)
    b.u(1, 1)  # field_pic_flag
    b.u(1, 0)  # bottom_field_flag
    b.ue(idr_id)  # consecutive IDR pictures differ in it
    b.u(1, 0)  # no_output_of_prior_pics_flag
    b.u(1, 0)  # long_term_reference_flag
    b.se(0)  # slice_qp_delta
    b.ue(1)  # disable_deblocking_filter_idc: off
    rows, cols = y.shape[0] // 16, y.shape[1] // 16
    for r in range(rows):
        for c in range(cols):
            b.ue(25)  # mb_type I_PCM
            b.align()
            b.bytes_(y[r * 16:(r + 1) * 16, c * 16:(c + 1) * 16].tobytes())
            b.bytes_(cb[r * 8:(r + 1) * 8, c * 8:(c + 1) * 8].tobytes())
            b.bytes_(cr[r * 8:(r + 1) * 8, c * 8:(c + 1) * 8].tobytes())
    return _nal(3, 5, b.trailing())


def _skipped_field(macroblocks: int) -> bytes:
    """A bottom field coded as a P picture whose macroblocks are all skipped: a copy of the frame's top field (its
    only reference), as the second field of a camera's frame often is a P field."""
    b = Bits()
    b.ue(0)
    b.ue(5)  # slice_type: P, all slices of the picture
    b.ue(0)
    b.u(4, 0)  # frame_num: the frame's, as its top field's
    b.u(1, 1)  # field_pic_flag
    b.u(1, 1)  # bottom_field_flag
    b.u(1, 0)  # num_ref_idx_active_override_flag
    b.u(1, 0)  # ref_pic_list_modification_flag_l0
    b.u(1, 0)  # adaptive_ref_pic_marking_mode_flag
    b.se(0)
    b.ue(1)
    b.ue(macroblocks)  # mb_skip_run: every macroblock
    return _nal(2, 1, b.trailing())


def _ycbcr(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BT.601 limited range, chroma averaged over 2x2: what a decoder turns back into these colours."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    cb = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    cr = 128 + 0.439 * r - 0.368 * g - 0.071 * b

    def half(p: np.ndarray) -> np.ndarray:
        return (p[0::2, 0::2] + p[1::2, 0::2] + p[0::2, 1::2] + p[1::2, 1::2]) / 4

    def bytes8(p: np.ndarray) -> np.ndarray:
        return np.clip(np.round(p), 1, 254).astype(np.uint8)

    return bytes8(y), bytes8(half(cb)), bytes8(half(cr))


def write_interlaced_mts(path: Path, frames: list[np.ndarray], fps: int = 25) -> Path:
    """An MPEG-TS file of `frames` (RGB uint8, height a multiple of 32, width of 16) as field-coded H.264: each
    field a packet of its own, the top field of each frame an IDR picture (a key frame), the bottom one a P picture
    that copies it (so each frame shows its top field's lines twice)."""
    import av

    height, width = frames[0].shape[:2]
    assert height % 32 == 0 and width % 16 == 0
    packets: list[tuple[bytes, bool]] = []
    for n, rgb in enumerate(frames):
        y, cb, cr = _ycbcr(rgb)
        top = _key_field(y[0::2], cb[0::2], cr[0::2], idr_id=n % 2)
        bottom = _skipped_field((width // 16) * (height // 32))
        head = _sps(width // 16, height // 32) + _pps() if n == 0 else b""
        packets += [(head + top, True), (bottom, False)]
    tick = Fraction(1, 90000)
    with av.open(str(path), "w", format="mpegts") as out:
        stream = out.add_stream("h264", rate=fps)
        stream.width, stream.height = width, height
        stream.time_base = tick
        for i, (data, key) in enumerate(packets):
            packet = av.Packet(data)
            packet.stream = stream
            packet.pts = packet.dts = i * 90000 // (2 * fps)  # a field every half frame
            packet.time_base = tick
            packet.is_keyframe = key
            out.mux(packet)
    return path
