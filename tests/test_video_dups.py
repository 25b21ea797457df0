"""Videos as near-exact copies: re-encoded, resized and trimmed copies of a video are found by their key frames;
videos that only share a scene are not, and a video is never grouped with a photo."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from imgsearch.config import DupOptions, IndexSettings
from tests.factories import write_video

CLOTHING = Path(__file__).parent / "data" / "clothing"


def _scenes(names: list[str], size: tuple[int, int] = (160, 120)) -> list[tuple[float, Image.Image]]:
    """Two seconds of each photo (real photos: the pixel check needs detail), a key frame every second."""
    return [(2, Image.open(next(CLOTHING.rglob(f"{n}.jpg"))).convert("RGB").resize(size)) for n in names]


SHOTS = ["dress-1", "hat-2", "pants-3", "shirt-4", "shoes-5"]
OTHERS = ["dress-6", "hat-7", "pants-6", "shirt-7", "shoes-6"]
THIRD = ["hat-6", "pants-7", "shirt-6", "shoes-7"]


@pytest.fixture
def videos(tmp_path: Path) -> Path:
    root = tmp_path / "videos"
    write_video(root / "holiday.mp4", _scenes(SHOTS))
    write_video(root / "copies" / "holiday-h264.mp4", _scenes(SHOTS), codec="libx264")  # re-encoded
    write_video(root / "copies" / "holiday-small.webm", _scenes(SHOTS, (128, 96)), codec="libvpx")  # resized
    write_video(root / "copies" / "holiday-end.mp4", _scenes(SHOTS[1:]))  # trimmed: the first scene cut
    write_video(root / "other.mp4", _scenes(OTHERS))  # distinct footage
    write_video(root / "same-start.mp4", _scenes(SHOTS[:1] + THIRD))  # shares its opening scene only
    Image.open(next(CLOTHING.rglob("hat-2.jpg"))).convert("RGB").resize((160, 120)).save(root / "still.jpg")
    return root


def test_reencoded_resized_and_trimmed_videos_are_near_copies(library, videos: Path) -> None:
    library.index([videos], settings=IndexSettings(workers=0))
    report = library.duplicates(DupOptions(tiers=("exact", "near")))
    assert [(g.tier, sorted(Path(m.photo.path).name for m in g.members)) for g in report.groups] == [
        ("near", ["holiday-end.mp4", "holiday-h264.mp4", "holiday-small.webm", "holiday.mp4"])]
    group = report.groups[0]
    assert group.keeper.path.endswith("holiday.mp4")  # the highest resolution, then the oldest
    evidence = {Path(m.photo.path).name: m.key_frames for m in group.duplicates}
    # a key frame every 2 s (the default sampling): the trimmed copy's 4 are inside the original's 5
    assert evidence["holiday-end.mp4"] == "4 of 4 key frames"
    assert evidence["holiday-h264.mp4"] == evidence["holiday-small.webm"] == "5 of 5 key frames"
    assert report.hashed == 0  # fingerprinted while indexing: `dups` opened no video


def test_a_heavily_compressed_reencode_is_still_a_near_copy(library, videos: Path) -> None:
    """Key frames are matched tile by tile too (a moved subject is not a copy); the blur and blocks of a low-quality
    re-encode (x264 at CRF 45, the blockiest it goes before faces dissolve) are not mistaken for that."""
    write_video(videos / "copies" / "holiday-crf45.mp4", _scenes(SHOTS), codec="libx264", options={"crf": "45"})
    library.index([videos], settings=IndexSettings(workers=0))
    report = library.duplicates(DupOptions(tiers=("exact", "near")))
    (group,) = report.groups
    evidence = {Path(m.photo.path).name: m.key_frames for m in group.duplicates}
    assert evidence["holiday-crf45.mp4"] == "5 of 5 key frames"


def test_copied_video_bytes_are_exact_copies(library, videos: Path) -> None:
    (videos / "copies" / "holiday copy.mp4").write_bytes((videos / "holiday.mp4").read_bytes())
    library.index([videos], settings=IndexSettings(workers=0))
    report = library.duplicates(DupOptions(tiers=("exact",)))
    assert [(g.tier, sorted(Path(m.photo.path).name for m in g.members)) for g in report.groups] == [
        ("exact", ["holiday copy.mp4", "holiday.mp4"])]


def test_key_frames_must_match_in_order() -> None:
    import numpy as np

    from imgsearch.dups.videos import _in_order

    ok = np.eye(4, dtype=bool)
    assert _in_order(ok) == 4
    assert _in_order(ok[::-1]) == 1  # the same scenes played backwards: one in order
    assert _in_order(np.ones((3, 5), dtype=bool)) == 3
