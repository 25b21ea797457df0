"""Every format people shoot: HEIC, AVIF, JPEG XL, camera RAW and the moments inside videos. Decoded by their
content, never silently ignored, each decoder's traps handled (HEIF turns its pixels itself, RAW previews lack the
camera's orientation, videos are sampled at key frames), and hostile files skipped with a reason."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgsearch.config import DupOptions, IndexSettings, ModelSpec, VideoSampling
from imgsearch.images.decode import Geometry, decode_file, open_rgb, thumbnail
from imgsearch.images.formats import register_pillow_plugins
from tests.factories import write_dng, write_photo, write_video
from tests.fields import write_interlaced_mts
from tests.test_cli import cli
from tests.tinyclip import shape_image

FAKE = ModelSpec("fake", None)
DATA = Path(__file__).parent / "data"
register_pillow_plugins()  # the tests write HEIC and JPEG XL files with Pillow too


def split(w: int = 64, h: int = 48) -> Image.Image:
    """Left half red, right half blue: which way up it comes out is plain to see."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = (230, 20, 20)
    arr[:, w // 2:] = (20, 20, 230)
    return Image.fromarray(arr)


def camera_exif(orientation: int = 6) -> bytes:
    exif = Image.Exif()
    exif[274], exif[271], exif[272] = orientation, "Apple", "iPhone 15"
    exif.get_ifd(0x8769)[36867] = "2024:05:06 07:08:09"
    return exif.tobytes()


def ends(img: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """Mean colours of the top and bottom thirds."""
    arr = np.asarray(img.convert("RGB"), dtype=np.float32)
    third = arr.shape[0] // 3
    return arr[:third].mean(axis=(0, 1)), arr[-third:].mean(axis=(0, 1))


def red_on_top(img: Image.Image) -> bool:
    """The split picture after orientation 6 (turned a quarter clockwise): its left half (red) is on top."""
    top, bottom = ends(img)
    return bool(top[0] > 150 > top[2] and bottom[2] > 150 > bottom[0])


@pytest.mark.parametrize("ext, name", [("heic", "HEIF"), ("avif", "AVIF"), ("jxl", "JXL")])
def test_modern_stills_come_out_upright_once_with_their_exif(tmp_path: Path, ext: str, name: str) -> None:
    path = tmp_path / f"photo.{ext}"
    split().save(path, exif=camera_exif(6), quality=95)
    img, info = open_rgb(str(path), 10**8)
    assert img.size == (48, 64) and red_on_top(img)  # HEIF applies its own rotation: turned once, not twice
    assert (info.format, info.width, info.height) == (name, 48, 64)
    assert (info.taken_at, info.camera_make, info.camera_model) == (datetime(2024, 5, 6, 7, 8, 9), "Apple", "iPhone 15")


@pytest.mark.parametrize("ext", ["heic", "avif"])
def test_a_heif_turned_only_by_its_exif_comes_out_upright(tmp_path: Path, ext: str, monkeypatch) -> None:
    """Early iPhone HEICs say "turn me" in EXIF (orientation 6) and have no rotation box in the container:
    pillow-heif resets the tag (the boxes are the container's rule), so the picture came out on its side."""
    import pillow_heif.as_plugin

    path = tmp_path / f"iphone7.{ext}"
    with monkeypatch.context() as patched:  # written as such a phone does: the EXIF tag, no irot box
        patched.setattr(pillow_heif.as_plugin, "_get_orientation_for_encoder", lambda info: 1)
        split().save(path, exif=camera_exif(6), quality=95)
    assert Image.open(path).size == (64, 48)  # stored sideways
    img, info = open_rgb(str(path), 10**8)
    assert img.size == (48, 64) and red_on_top(img)
    thumb = Image.open(io.BytesIO(thumbnail(str(path), 64)))
    assert thumb.size == (48, 64) and red_on_top(thumb.convert("RGB"))


def test_raw_uses_its_embedded_preview_turned_as_the_camera_says(tmp_path: Path) -> None:
    preview = np.zeros((64, 96, 3), np.uint8)
    preview[:, :48] = (240, 220, 20)  # yellow | black: other colours than the sensor data, to see which was used
    path = write_dng(tmp_path / "a.dng", np.asarray(split(96, 64)), preview=Image.fromarray(preview), orientation=6)
    img, info = open_rgb(str(path), 10**8, draft_to=(32, 32))
    top, bottom = ends(img)
    assert img.size == (32, 48) and top[1] > 150 and bottom.max() < 60  # the preview (drafted), turned by LibRaw's flip
    assert (info.format, info.width, info.height, info.camera_make, info.camera_model) == ("RAW", 64, 96, "TestCam",
                                                                                           "DNG 1")


def test_raw_without_a_large_enough_preview_is_demosaiced(tmp_path: Path) -> None:
    rgb = np.asarray(split(96, 64))
    green = Image.new("RGB", (24, 16), (20, 200, 20))  # a thumbnail too small for the model, and of other colours
    for name, preview in (("none.dng", None), ("small.dng", green)):
        path = write_dng(tmp_path / name, rgb, preview=preview, orientation=6)
        img, _ = open_rgb(str(path), 10**8, draft_to=(32, 32))
        assert img.size == (32, 48) and red_on_top(img), name  # LibRaw at half size, turned by LibRaw itself


def test_a_stripped_raw_shows_its_preview_or_is_skipped_in_words(tmp_path: Path) -> None:
    """Stripped RAWs (only the header, the sensor data zeroed, as public camera test suites publish them): one with
    a small preview is indexed and thumbnailed from that preview at any size (it was developed into black, and its
    thumbnails failed); one without is skipped with a reason in words, not indexed as a black picture."""
    from imgsearch.errors import ImageError

    blank = np.zeros((64, 96, 3), np.uint8)  # no sensor data
    green = Image.new("RGB", (48, 32), (20, 200, 20))
    with_preview = write_dng(tmp_path / "stripped-preview.dng", blank, preview=green, orientation=6)
    for side in (32, 224, 1024):  # the model's size, a grid thumbnail, the photo page
        img, _ = open_rgb(str(with_preview), 10**8, draft_to=(side, side))
        assert img.size == (32, 48) and np.asarray(img)[..., 1].mean() > 150, side  # the green preview, upright
    thumb = Image.open(io.BytesIO(thumbnail(str(with_preview), 320))).convert("RGB")
    assert thumb.size == (32, 48) and np.asarray(thumb)[..., 1].mean() > 150
    with pytest.raises(ImageError, match="holds no sensor data and no preview"):
        open_rgb(str(write_dng(tmp_path / "stripped.dng", blank)), 10**8, draft_to=(32, 32))
    # a stripped file whose other bytes LibRaw reads as photosites: noise, never a picture (nor indexed as one)
    noise = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    with pytest.raises(ImageError, match="holds no sensor data and no preview"):
        open_rgb(str(write_dng(tmp_path / "noise.dng", noise)), 10**8, draft_to=(32, 32))
    img, _ = open_rgb(str(write_dng(tmp_path / "noise-preview.dng", noise, preview=green)), 10**8, draft_to=(32, 32))
    assert np.asarray(img)[..., 1].mean() > 150  # its preview is the picture
    for photo in sorted((Path(__file__).parent / "data" / "clothing").rglob("*.jpg"))[:6]:  # real pictures develop
        rgb = np.asarray(Image.open(photo).convert("RGB").resize((96, 64)))
        img, _ = open_rgb(str(write_dng(tmp_path / f"{photo.stem}.dng", rgb)), 10**8, draft_to=(32, 32))
        assert img.size == (48, 32), photo


def test_a_broken_raw_is_skipped_with_its_reason_in_words(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    """...and LibRaw's own line ("unknown file: Unexpected end of file", printed by its C code on the process's
    stderr) does not reach the terminal: the skip reason says it, attributed to the file."""
    from imgsearch.errors import ImageError

    whole = write_dng(tmp_path / "whole.dng", np.asarray(split(96, 64))).read_bytes()
    (tmp_path / "cut.dng").write_bytes(whole[: len(whole) // 3])  # a copy that stopped a third of the way
    (tmp_path / "fake.nef").write_bytes(b"II*\x00" + bytes(300))  # TIFF-like, but no camera's RAW
    reasons = {}
    for name in ("cut.dng", "fake.nef"):
        with pytest.raises(ImageError) as caught:
            open_rgb(str(tmp_path / name), 10**8, draft_to=(32, 32))
        reasons[name] = str(caught.value)
    assert reasons["cut.dng"] == ("cannot decode RAW: the file ends early or is damaged (it is shorter than its own "
                                  "header says)")
    assert reasons["fake.nef"].startswith("cannot decode RAW: not a RAW file LibRaw reads")
    assert not any("Error" in r or "b'" in r for r in reasons.values())  # no exception class names, no C bytes
    print("a line of this process's own", file=sys.stderr, flush=True)
    assert capfd.readouterr().err == "a line of this process's own\n"  # LibRaw's lines held back, no one else's


def scenes() -> list[tuple[float, Image.Image]]:
    return [(4, shape_image("red", "circle", 96, seed=1)), (4, shape_image("blue", "square", 96, seed=2)),
            (4, shape_image("green", "circle", 96, seed=3))]


@pytest.mark.parametrize("codec", ["mpeg4", "libx264"])  # H.264 decoders hold frames back: the last come at the end
def test_videos_are_sampled_at_key_frames(tmp_path: Path, codec: str) -> None:
    path = write_video(tmp_path / "clip.mp4", scenes(), codec=codec)
    every_2s = decode_file(str(path), Geometry(32, 32), 10**8, VideoSampling(every_s=2.0))
    assert every_2s.times_ms == (0, 2000, 4000, 6000, 8000, 10000) and every_2s.pixels.shape == (6, 32, 32, 3)
    colour = every_2s.pixels[:, 16, 16].astype(int)
    assert colour[0][0] > 150 and colour[2][2] > 150 and colour[4][1] > 120  # red, then blue, then green
    spread = decode_file(str(path), Geometry(32, 32), 10**8, VideoSampling(every_s=1.0, max_frames=3))
    assert spread.times_ms == (0, 4000, 8000)  # at most 3: spread over the 12 s
    assert (every_2s.info.format, every_2s.duration_ms) == ("MP4", 12000)


def test_interlaced_avchd_key_frames_coded_as_two_fields_are_decoded_whole(tmp_path: Path) -> None:
    from imgsearch.images.video import still

    # a second of red, of blue, of green at 25 frames a second, each frame two field pictures in two packets: a key
    # top field, then a P bottom field (as a Sony camera's .MTS); FFmpeg's decoder keeps a lone key field back
    colours = [(200, 30, 30), (30, 30, 200), (30, 200, 30)]
    frames = [np.full((64, 96, 3), colours[n // 25], np.uint8) for n in range(75)]
    clip = write_interlaced_mts(tmp_path / "00001.MTS", frames)
    decoded = decode_file(str(clip), Geometry(32, 32), 10**8, VideoSampling(every_s=1.0))
    assert decoded.times_ms == (0, 1000, 2000), decoded.times_ms  # was (2000,): the first two lone fields lost
    assert [int(np.argmax(p[16, 16])) for p in decoded.pixels] == [0, 2, 1]  # red, blue, green
    assert (decoded.info.width, decoded.info.height) == (96, 64)
    short = write_interlaced_mts(tmp_path / "00002.MTS", frames[:12])  # was "no video frame could be decoded"
    assert decode_file(str(short), Geometry(32, 32), 10**8).times_ms == (0,)
    poster = np.asarray(still(str(clip), 1500))  # the thumbnail of the moment at 1.5 s: the key frame at 1 s
    assert poster.shape == (64, 96, 3) and int(np.argmax(poster[32, 48])) == 2


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    root = tmp_path / "mixed"
    root.mkdir()
    for i in range(3):
        shape_image("red", "square", 96, seed=10 + i).save(root / f"red-{i}.png")
        shape_image("yellow", "circle", 96, seed=20 + i).save(root / f"yellow-{i}.heic", quality=90)
    write_video(root / "clip.mp4", scenes())
    write_video(root / "other.webm", [(3, shape_image("yellow", "square", 96, seed=4))], codec="libvpx")
    return root


def test_search_finds_the_moment_inside_a_video(tmp_path: Path, mixed: Path, trained_model_dir: Path) -> None:
    lib = tmp_path / "lib"
    indexed = cli("index", mixed, "-m", f"local-dir:{trained_model_dir}", "-L", lib, "--workers", "0")
    assert indexed.exit_code == 0 and "8 new" in indexed.stderr and "0 skipped" in indexed.stderr, indexed.output
    # photos and videos counted apart: a video is one result, its sampled moments are not photos
    moments = sum(len(decode_file(str(mixed / v), Geometry(32, 32), 10**8).times_ms) for v in ("clip.mp4", "other.webm"))
    assert f"6 photo(s) and 2 video(s) ({moments} moments) searchable" in indexed.stderr, indexed.stderr
    found = cli("search", "a photo of a blue square", "-L", lib, "--json", "-k", "8")
    rows = [json.loads(line) for line in found.stdout.splitlines()]
    assert Path(rows[0]["path"]).name == "clip.mp4" and rows[0]["time"] in (4.0, 6.0), rows[0]
    assert len({r["path"] for r in rows}) == len(rows) == 8  # a video is one result, however many frames match
    assert all("time" not in r for r in rows if not r["path"].endswith((".mp4", ".webm")))
    table = cli("search", "a photo of a blue square", "-L", lib, "-k", "1").stdout
    assert table.splitlines()[1].endswith(("clip.mp4  0:04", "clip.mp4  0:06"))  # the frames at 4 and 6 s are alike
    sheet = tmp_path / "sheet.html"
    cli("search", "a photo of a blue square", "-L", lib, "-k", "1", "--html", sheet)
    assert "clip.mp4#t=4" in sheet.read_text() or "clip.mp4#t=6" in sheet.read_text()
    query = tmp_path / "query.png"
    shape_image("blue", "square", 96, seed=99).save(query)
    by_image = [json.loads(line) for line in cli("search", "--image", query, "-L", lib, "--json", "-k", "1").stdout.splitlines()]
    assert Path(by_image[0]["path"]).name == "clip.mp4" and by_image[0]["time"] in (4.0, 6.0)  # a frame grab finds it
    only = [json.loads(line) for line in cli("search", "a photo of a yellow square", "-L", lib, "--json", "--ext", "webm")
            .stdout.splitlines()]
    assert [Path(r["path"]).name for r in only] == ["other.webm"]  # filters keep a video's frames with it


def test_files_are_read_by_their_content_not_their_name(tmp_path: Path, library) -> None:
    root = tmp_path / "lying"
    root.mkdir()
    split().save(root / "really-heic.jpg", format="HEIF", quality=90)
    write_video(tmp_path / "clip.mp4", [(2, shape_image("red", "circle", 64, seed=1))]).rename(root / "really-video.jpg")
    split().save(root / "really-png.heic", format="PNG")
    report = library.index([root], FAKE, IndexSettings(workers=0))
    assert (report.new, report.skipped) == (3, 0), report.skipped_now
    with library.session() as session:
        from imgsearch.store.orm import Image as Row

        kinds = {Path(r.path).name: (r.format, r.duration_ms) for r in session.query(Row)}
    assert kinds == {"really-heic.jpg": ("HEIF", None), "really-video.jpg": ("VIDEO", 2000),
                     "really-png.heic": ("PNG", None)}


def test_a_missing_decoder_is_listed_and_the_fix_it_names_works(tmp_path: Path, tiny_model_dir: Path) -> None:
    pics = tmp_path / "pics"
    write_photo(pics / "a.png", "red")
    split().save(pics / "b.heic", quality=90)
    blocker = tmp_path / "no-heif"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['pillow_heif'] = None  # as if not installed\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(blocker), os.environ.get("PYTHONPATH")]))}

    def run(*args: object, **kw: object) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "imgsearch", *map(str, args)], capture_output=True, text=True,
                              timeout=300, **kw)

    lib = tmp_path / "lib"
    first = run("index", pics, "-m", f"local-dir:{tiny_model_dir}", "-L", lib, env=env)  # worker processes too
    assert first.returncode == 0 and "1 new" in first.stderr and "1 skipped" in first.stderr, first.stderr
    listed = run("status", "--skipped", "-L", lib).stdout
    assert "b.heic" in listed and "HEIF decoder not installed: pip install pillow-heif" in listed
    fix = listed.split("HEIF decoder not installed: ", 1)[1].split(" (")[0]
    assert fix == "pip install pillow-heif"
    done = subprocess.run([sys.executable, "-m", *fix.split()], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr  # already installed here: pip says so and exits 0
    second = run("index", "-L", lib)  # no change to the file: retried because its decoder is there now
    assert second.returncode == 0 and "0 skipped" in second.stderr, second.stderr
    assert "b.heic" not in run("status", "--skipped", "-L", lib).stdout


def _patch_box(data: bytes, box: bytes, offset: int, value: bytes) -> bytes:
    at = data.index(box) + len(box) + offset
    return data[:at] + value + data[at + len(value):]


def test_hostile_files_are_skipped_with_their_reason(tmp_path: Path, library) -> None:
    root = tmp_path / "hostile"
    root.mkdir()
    write_photo(root / "fine.png", "green")
    split().save(root / "whole.heic", quality=90)
    heic = (root / "whole.heic").read_bytes()
    (root / "truncated.heic").write_bytes(heic[: len(heic) // 2])
    big = (100_000).to_bytes(4, "big")
    (root / "huge.heic").write_bytes(_patch_box(heic, b"ispe", 4, big + big))  # declares 100000 x 100000
    split().save(root / "whole.avif", quality=90)
    (root / "bomb.avif").write_bytes(_patch_box((root / "whole.avif").read_bytes(), b"ispe", 4, big + big))
    good = write_video(root / "good.mp4", [(2, split())]).read_bytes()
    (root / "empty.mp4").write_bytes(_patch_box(good, b"stsz", 8, (0).to_bytes(4, "big")))  # a sample table of none
    (root / "broken-index.mp4").write_bytes(_patch_box(good, b"stco", 8, b"\xff\xff\xff\xf0" * 2))  # chunks past the end
    moov = good.index(b"mvhd") + 4  # version/flags, created, modified, timescale, duration (32-bit each)
    timescale = int.from_bytes(good[moov + 12: moov + 16], "big")
    (root / "ten-hours.mp4").write_bytes(_patch_box(good, b"mvhd", 16, (timescale * 36_000).to_bytes(4, "big")))
    report = library.index([root], FAKE, IndexSettings(workers=0))
    skipped = dict(report.skipped_now)
    names = {Path(p).name: reason for p, reason in skipped.items()}
    assert set(names) == {"truncated.heic", "huge.heic", "bomb.avif", "empty.mp4", "broken-index.mp4"}, names
    assert "too large" in names["huge.heic"] or "security" in names["huge.heic"].lower(), names["huge.heic"]
    assert "no video frame" in names["empty.mp4"]
    assert all(reason for reason in names.values())
    assert report.new == 5  # fine.png, whole.heic, whole.avif, good.mp4 and ten-hours.mp4 (two seconds of it)
    with library.session() as session:
        from imgsearch.store.orm import Frame

        assert session.query(Frame).count() == 2  # good.mp4 and ten-hours.mp4: one key frame each in 2 s


def test_a_heic_and_its_jpeg_export_a_raw_and_its_camera_jpeg_are_near_copies(tmp_path: Path, library) -> None:
    root = tmp_path / "copies"
    root.mkdir()
    dress = Image.open(DATA / "photos" / "dress-0.jpg").convert("RGB")
    dress.save(root / "IMG_0001.HEIC", quality=90)
    dress.save(root / "IMG_0001.jpg", quality=85)
    shoes = Image.open(DATA / "photos" / "shoes-4.jpg").convert("RGB")
    shoes = shoes.crop((0, 0, shoes.width // 2 * 2, shoes.height // 2 * 2))
    write_dng(root / "DSC_0002.DNG", np.asarray(shoes), preview=shoes)
    shoes.save(root / "DSC_0002.JPG", quality=92)
    write_photo(root / "other.png", "magenta", size=(200, 150))
    library.index([root], FAKE, IndexSettings(workers=0))
    groups = library.duplicates(DupOptions()).groups
    sets = sorted(sorted(Path(m.photo.path).name for m in g.members) for g in groups)
    assert sets == [["DSC_0002.DNG", "DSC_0002.JPG"], ["IMG_0001.HEIC", "IMG_0001.jpg"]]
    assert all(g.tier == "near" for g in groups)
    raw_group = next(g for g in groups if "DSC" in g.keeper.path)
    assert raw_group.keeper.path.endswith(".DNG")  # the RAW is the original


def test_a_folder_of_every_format_is_indexed_whole(tmp_path: Path, library) -> None:
    root = tmp_path / "everything"
    root.mkdir()
    picture = split()
    for ext, options in (("jpg", {}), ("png", {}), ("webp", {}), ("gif", {}), ("bmp", {}), ("tif", {}),
                         ("heic", {"quality": 90}), ("avif", {"quality": 90}), ("jxl", {"quality": 90})):
        picture.save(root / f"photo.{ext}", **options)
    write_dng(root / "raw.dng", np.asarray(split(96, 64)), preview=split(96, 64))
    for name, codec, fmt in (("clip.mp4", "mpeg4", None), ("clip.mov", "mpeg4", "mov"), ("clip.mkv", "libx264", None),
                             ("clip.webm", "libvpx", None), ("clip.avi", "mpeg4", None)):
        write_video(root / name, [(2, picture)], codec=codec, fmt=fmt)
    report = library.index([root], FAKE, IndexSettings(workers=0))
    assert (report.new, report.skipped, report.skipped_now) == (15, 0, [])
    with library.session() as session:
        from imgsearch.store.orm import Image as Row

        formats = sorted(r.format for r in session.query(Row))
    assert formats == sorted(["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF", "AVIF", "JXL", "RAW", "MP4", "MOV",
                              "MKV", "WEBM", "AVI"])
