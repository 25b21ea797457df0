"""Duplicates with safe defaults, and journaled actions that survive a crash at any moment (the defects issue)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from imgsearch.config import DupOptions, IndexSettings, ModelSpec
from imgsearch.dups import actions
from imgsearch.dups.options import calibrate_similar
from imgsearch.errors import UsageError
from imgsearch.store import journal
from tests.factories import write_photo
from tests.tinyclip import shape_image

FAKE = ModelSpec("fake", None)
INLINE = IndexSettings(workers=0)
ROOT = Path(__file__).parent.parent


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _library_of(tmp_path: Path, library, originals: int = 30, copies: int = 3):
    """`originals` distinct photos and exact copies of the first `copies` of them, indexed."""
    root = tmp_path / "pics"
    colours = ("red", "green", "blue", "yellow", "white", "black", "magenta", "cyan")
    for i in range(originals):
        write_photo(root / "orig" / f"p{i:02d}.jpg", colours[i % len(colours)], fmt="JPEG", seed=i)
    (root / "copies").mkdir()
    for i in range(copies):
        shutil.copy(root / "orig" / f"p{i:02d}.jpg", root / "copies" / f"p{i:02d} copy.jpg")
    library.index([root], FAKE, INLINE)
    return root


# --- safe defaults -------------------------------------------------------------------------------

def test_default_tiers_leave_out_similar_photos(library, tmp_path: Path) -> None:
    root = _library_of(tmp_path, library, originals=16, copies=1)
    # 16 photos of 8 colours: the fake model finds same-colour photos "similar" (cosine ~0.9999)
    assert [g.tier for g in library.duplicates().groups] == ["exact"]
    similar = library.duplicates(DupOptions(tiers=("exact", "near", "similar"))).groups
    assert {g.tier for g in similar} == {"similar"} and len(similar) == 8  # one group per colour
    names = {Path(m.photo.path).name for g in similar for m in g.members}
    assert names == {p.name for p in root.rglob("*.jpg")}


def test_similar_threshold_is_calibrated_on_the_models_own_cosines() -> None:
    rng = np.random.default_rng(0)
    generic = rng.normal(size=(500, 64)).astype(np.float32)  # unrelated photos near cosine 0
    generic /= np.linalg.norm(generic, axis=1, keepdims=True)
    assert calibrate_similar(generic)["similar_cosine"] == 0.95  # never below the default
    tight = (np.ones((500, 64)) + 0.15 * rng.normal(size=(500, 64))).astype(np.float32)  # a domain model: ~0.98
    tight /= np.linalg.norm(tight, axis=1, keepdims=True)
    got = calibrate_similar(tight)
    cosines = tight[:250] @ tight[250:].T
    assert got["pairs_p99_9"] > 0.97 and got["similar_cosine"] > got["pairs_p99_9"]
    assert (cosines >= got["similar_cosine"]).mean() < 0.0005  # almost no unrelated pair reaches it
    assert got["pairs"] == 500 * 499 // 2  # every pair of a small library
    assert calibrate_similar(tight[:20]) is None  # too few photos to measure


def test_the_calibration_does_not_depend_on_the_order_of_the_ids() -> None:
    """An index run on several workers numbers photos in the order they finish: the same photos indexed twice get
    other ids. The calibration is the same, for a small library (every pair) and a large one (a sample of it)."""
    rng = np.random.default_rng(1)
    vectors = (np.ones((900, 32)) + 0.2 * rng.normal(size=(900, 32))).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    shuffled = vectors[rng.permutation(len(vectors))]
    assert calibrate_similar(shuffled) == calibrate_similar(vectors)
    sampled = calibrate_similar(vectors, most=300)
    assert sampled is not None and sampled["pairs"] == 300 * 299 // 2 and sampled["photos"] == 900
    assert calibrate_similar(shuffled, most=300) == sampled
    assert abs(sampled["pairs_p99_9"] - calibrate_similar(vectors)["pairs_p99_9"]) < 0.01  # the sample measures the tail


def test_calibrated_threshold_is_stored_used_and_shown(tmp_path: Path, tiny_model_dir: Path) -> None:
    from tests.test_cli import cli

    root = tmp_path / "pics"
    root.mkdir()
    for i in range(60):
        shape_image(("red", "blue", "green", "yellow")[i % 4], ("square", "circle")[i % 2], seed=i).save(root / f"{i:02d}.png")
    lib = tmp_path / "lib"
    assert cli("index", root, "-m", f"local-dir:{tiny_model_dir}", "-L", lib, "--workers", "0").exit_code == 0
    out = cli("dups", "-L", lib, "--tier", "similar", env={"IMGSEARCH_PROGRESS_S": "0"})
    assert out.exit_code == 0, out.output
    assert "finding candidates: 120/120 photos (100%)" in out.stderr  # progress lines when not on a terminal
    assert "calibrated on this library: 99.9% of pairs of its photos score below" in out.stderr
    from sqlalchemy import create_engine, text

    with create_engine(f"sqlite:///{lib / 'library.db'}").connect() as conn:
        stored = json.loads(conn.execute(text("SELECT calibration FROM dup_scans")).scalar())
    assert stored["photos"] == 60 and 0.95 <= stored["similar_cosine"] <= 0.9999
    assert f"similar cos >= {stored['similar_cosine']}" in out.stderr


def test_grouping_a_large_share_warns_and_apply_needs_yes(tmp_path: Path, tiny_model_dir: Path) -> None:
    from tests.test_cli import cli

    root = tmp_path / "pics"
    for i in range(12):
        write_photo(root / "a" / f"{i:02d}.png", "red", size=(40, 30), seed=i)
    shutil.copytree(root / "a", root / "b")  # half the library is copies
    lib = tmp_path / "lib"
    assert cli("index", root, "-m", f"local-dir:{tiny_model_dir}", "-L", lib, "--workers", "0").exit_code == 0
    found = cli("dups", "-L", lib)
    assert "Warning: the groups hold 100% of the library's photos" in found.stderr and "(--yes)" in found.stderr
    refused = cli("dups", "-L", lib, "--move-to", tmp_path / "aside", "--apply")
    assert refused.exit_code == 2 and "add --yes" in refused.stderr
    assert len(_files(root)) == 24 and not (tmp_path / "aside").exists()
    done = cli("dups", "-L", lib, "--move-to", tmp_path / "aside", "--apply", "--yes")
    assert done.exit_code == 0 and "Done: move 12 file(s)" in done.stderr and len(_files(root)) == 12


def test_keeper_is_the_camera_original_and_says_why(library, tmp_path: Path, photos_dir: Path) -> None:
    root = tmp_path / "pics"
    camera = root / "camera" / "IMG_0001.jpg"
    camera.parent.mkdir(parents=True)
    exif = Image.Exif()
    exif[271], exif[272] = "Canon", "EOS"
    exif.get_ifd(0x8769)[36867] = "2021:05:04 10:00:00"
    Image.open(photos_dir / "hat-2.jpg").save(camera, quality=80, exif=exif.tobytes())
    os.utime(camera, ns=(10**18, 10**18))  # taken first
    Image.open(camera).save(root / "IMG_0001.png")  # a conversion, ten times larger
    ImageOps.mirror(Image.open(camera)).save(root / "IMG_0001-mirrored.jpg", quality=95)  # an edit
    assert (root / "IMG_0001.png").stat().st_size > 5 * camera.stat().st_size
    library.index([root], FAKE, INLINE)
    [group] = library.duplicates().groups
    assert group.keeper.path == str(camera) and len(group.members) == 3
    assert group.keeper_reason == "not flipped or rotated"  # the runner-up is the mirrored JPEG
    [again] = library.duplicates(DupOptions(prefer_dirs=(str(root),))).groups  # the folder above wins nothing...
    assert again.keeper.path == str(camera)  # ...since every copy is inside it
    [moved] = library.duplicates(DupOptions(prefer_dirs=(str(root / "camera"),))).groups
    assert moved.keeper_reason == "in a preferred folder"


def test_mirrored_copy_loses_to_the_two_that_agree(library, tmp_path: Path, photos_dir: Path) -> None:
    root = tmp_path / "pics"
    root.mkdir()
    img = Image.open(photos_dir / "dress-1.jpg")
    img.save(root / "a.jpg", quality=90)
    img.save(root / "b.jpg", quality=70)
    ImageOps.mirror(img).save(root / "c-mirrored.jpg", quality=98)  # newest, largest, but the odd one out
    for n, name in enumerate(("c-mirrored.jpg", "a.jpg", "b.jpg")):  # the mirror is the oldest file, even
        os.utime(root / name, ns=(10**18 + n, 10**18 + n))
    library.index([root], FAKE, INLINE)
    [group] = library.duplicates().groups
    # the mirror is oldest and largest, yet ranks last; of the two that agree, the older one is kept
    assert [Path(m.photo.path).name for m in group.members] == ["a.jpg", "b.jpg", "c-mirrored.jpg"]
    assert group.keeper_reason == "oldest file"


def test_undo_is_a_listed_subcommand_in_either_order(tmp_path: Path, tiny_model_dir: Path) -> None:
    from tests.test_cli import cli

    root = tmp_path / "pics"
    write_photo(root / "a.png", "red", size=(40, 30))
    lib = tmp_path / "lib"
    assert cli("index", root, "-m", f"local-dir:{tiny_model_dir}", "-L", lib, "--workers", "0").exit_code == 0
    helped = cli("dups", "--help")
    assert helped.exit_code == 0 and "undo" in helped.stdout and "Put the last applied action back" in helped.stdout
    for args in (("dups", "undo", "-L", lib), ("dups", "-L", lib, "undo")):
        out = cli(*args)
        assert out.exit_code == 1 and "nothing to undo" in out.stderr, out.output
    folder = cli("dups", root, "-L", lib)  # a folder argument still scopes the search
    assert folder.exit_code == 0 and "0 group(s)" in folder.stderr


# --- crashes between a file operation and its journal ---------------------------------------------

class Crash(BaseException):
    """Stands in for kill -9: nothing after it runs, no handler cleans up."""


def _groups(library):
    return library.duplicates(DupOptions(tiers=("exact",))).groups


def test_crash_after_a_move_before_its_journal_is_settled(library, tmp_path: Path, monkeypatch) -> None:
    root = _library_of(tmp_path, library)
    before = _files(root)
    real = journal.set_aside
    calls = []

    def crash_on_second(session, item):
        calls.append(item.src)
        if len(calls) == 2:
            raise Crash  # the second file has moved; its outcome is never committed
        return real(session, item)

    monkeypatch.setattr(journal, "set_aside", crash_on_second)
    with pytest.raises(Crash):
        library.act_on_duplicates(_groups(library), move_to=tmp_path / "aside", apply=True, yes=True)
    monkeypatch.undo()
    assert len(_files(tmp_path / "aside")) == 2  # on disk: two moved...
    report = library.index([root], FAKE, INLINE)  # ...and the next run records the second instead of dropping it
    assert report.removed == 0 and any("had happened; recorded" in w for w in report.warnings)
    assert library.status().set_aside == 2
    undone = library.undo_duplicates()
    assert len(undone.done) == 2 and not undone.problems
    assert _files(root) == before and library.status().set_aside == 0
    assert len(library.search_text("red", k=100)) == 33


def test_crash_before_a_move_leaves_nothing_to_undo(library, tmp_path: Path, monkeypatch) -> None:
    root = _library_of(tmp_path, library)
    before = _files(root)
    monkeypatch.setattr(actions, "_move", lambda src, dest: (_ for _ in ()).throw(Crash()))
    with pytest.raises(Crash):
        library.act_on_duplicates(_groups(library), move_to=tmp_path / "aside", apply=True, yes=True)
    monkeypatch.undo()
    with library.session() as session:
        assert len(journal.passing_items(session)) == 1  # the intent of the first step
    assert library.index([root], FAKE, INLINE).removed == 0
    with library.session() as session:
        assert journal.passing_items(session) == []  # settled: it never happened
    assert _files(root) == before


def test_crash_after_moving_back_before_its_journal_is_settled(library, tmp_path: Path, monkeypatch) -> None:
    root = _library_of(tmp_path, library)
    before = _files(root)
    library.act_on_duplicates(_groups(library), move_to=tmp_path / "aside", apply=True, yes=True)
    real = journal.put_back
    monkeypatch.setattr(journal, "put_back", lambda session, item: (_ for _ in ()).throw(Crash()))
    with pytest.raises(Crash):
        library.undo_duplicates()  # the last file is back on disk, its journal says otherwise
    monkeypatch.setattr(journal, "put_back", real)
    undone = library.undo_duplicates()  # no "a file now exists at SRC" forever: the first step is settled
    assert not undone.problems and any("had been moved back; recorded" in n for n in undone.settled)
    assert _files(root) == before and library.status().set_aside == 0
    assert len(library.search_text("red", k=100)) == 33


def test_a_kill_while_a_link_is_undone_leaves_no_partial_copy(library, tmp_path: Path, monkeypatch) -> None:
    """Undoing a link rebuilds the file's bytes in a hidden file beside it, then renames it over the link: killed
    half-way, that half-written file stayed in the photo folder. The next undo (or dups, or index) removes it."""
    root = _library_of(tmp_path, library)
    before = _files(root)
    library.act_on_duplicates(_groups(library), link="hard", apply=True, yes=True)

    def killed_while_copying(src, dest, *args, **kwargs):
        Path(dest).write_bytes(Path(src).read_bytes()[:100])  # half-written when the kill came...
        monkeypatch.setattr(actions.os.path, "lexists", lambda path: False)  # ...and no `finally` runs after a kill
        raise Crash

    monkeypatch.setattr(actions.shutil, "copyfile", killed_while_copying)
    with pytest.raises(Crash):
        library.undo_duplicates()
    monkeypatch.undo()
    partial = list(root.rglob(".*.imgsearch-restore"))
    assert len(partial) == 1  # what the kill left (no handler ran)
    undone = library.undo_duplicates()
    assert not undone.problems and any("undo will retry it" in n for n in undone.settled)
    assert not list(root.rglob(".*.imgsearch-restore")) and _files(root) == before


def test_kill_during_apply_and_undo_through_the_cli_never_loses_a_photo(tmp_path: Path, tiny_model_dir: Path) -> None:
    root = tmp_path / "pics"
    for i in range(40):
        write_photo(root / "orig" / f"p{i:02d}.png", ("red", "green", "blue", "yellow")[i % 4], size=(64, 48), seed=i)
    shutil.copytree(root / "orig", root / "copies")
    before = _files(root)
    lib, aside = tmp_path / "lib", tmp_path / "aside"
    base = [sys.executable, "-m", "imgsearch"]
    subprocess.run([*base, "index", str(root), "-m", f"local-dir:{tiny_model_dir}", "-L", str(lib), "--workers", "0"],
                   check=True, capture_output=True, cwd=ROOT)
    rng = np.random.default_rng(1)
    kills = 0

    def aside_count() -> int:
        return sum(len(files) for _, _, files in os.walk(aside))  # folders may vanish meanwhile

    for attempt in range(4):
        for command, done in ((["dups", "-L", str(lib), "--tier", "exact", "--move-to", str(aside), "--apply",
                                "--yes"], lambda n, k: aside_count() >= k),
                              (["dups", "undo", "-L", str(lib)], lambda n, k: aside_count() <= n - k)):
            n, k = aside_count(), int(rng.integers(1, 30))
            proc = subprocess.Popen([*base, *command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
            while proc.poll() is None and not done(n, k):  # kill it in the middle of its file operations
                time.sleep(0.0005)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait()
            on_disk = [*_files(root).values(), *_files(aside).values()]
            assert sorted(on_disk) == sorted(before.values()), f"attempt {attempt}: a photo went missing or doubled"
    while True:  # undo until everything is back where it was
        out = subprocess.run([*base, "dups", "undo", "-L", str(lib)], capture_output=True, text=True, cwd=ROOT)
        if "nothing to undo" in out.stderr:
            break
        assert out.returncode == 0, out.stderr
    assert _files(root) == before and not _files(aside)
    status = subprocess.run([*base, "status", "-L", str(lib), "--json"], capture_output=True, text=True, cwd=ROOT)
    assert json.loads(status.stdout)["set_aside"] == 0 and json.loads(status.stdout)["indexed"] == 80
    assert kills >= 4


# --- where copies may go ---------------------------------------------------------------------------

def test_a_symlink_to_an_indexed_folder_is_no_way_around_the_check(library, tmp_path: Path) -> None:
    root = _library_of(tmp_path, library)
    (tmp_path / "sneaky").symlink_to(root / "orig")
    with pytest.raises(UsageError, match="inside the indexed folder"):
        library.act_on_duplicates(_groups(library), move_to=tmp_path / "sneaky" / "dups")


def test_a_symlinked_folder_inside_the_destination_cannot_redirect_moves(library, tmp_path: Path) -> None:
    root = _library_of(tmp_path, library)
    before = _files(root)
    aside = tmp_path / "aside"
    aside.mkdir()
    (aside / "copies").symlink_to(root / "orig")  # where the copies' relative folder would go
    report = library.act_on_duplicates(_groups(library), move_to=aside, apply=True, yes=True)
    assert report.done == [] and len(report.problems) == 3
    assert all("a symbolic link inside" in why for _, why in report.problems)
    assert _files(root) == before


def test_undo_keeps_a_destination_folder_that_existed_before(library, tmp_path: Path) -> None:
    _library_of(tmp_path, library)
    aside = tmp_path / "aside"
    aside.mkdir()
    library.act_on_duplicates(_groups(library), move_to=aside, apply=True, yes=True)
    assert (aside / "copies").is_dir()
    library.undo_duplicates()
    assert aside.is_dir() and not (aside / "copies").exists()  # what the action made is gone, the rest kept


def test_a_copy_that_now_leads_outside_the_library_is_left_alone(library, tmp_path: Path) -> None:
    root = tmp_path / "pics"
    original = write_photo(root / "a.jpg", "red", size=(80, 60), fmt="JPEG", seed=1)
    copy = root / "b.jpg"
    shutil.copy(original, copy)
    library.index([root], ModelSpec("fake"), IndexSettings(workers=0))
    groups = library.duplicates(DupOptions(tiers=("exact",))).groups
    assert len(groups) == 1
    outside = tmp_path / "elsewhere" / "private.jpg"
    outside.parent.mkdir()
    moved = next(m.photo.path for m in groups[0].duplicates)
    shutil.move(moved, outside)
    os.symlink(outside, moved)  # swapped for a link that leads out of the indexed folder after `dups` listed it
    done = library.act_on_duplicates(groups, move_to=tmp_path / "aside", apply=True)
    assert done.done == [] and len(done.problems) == 1
    path, why = done.problems[0]
    assert path == moved and "leads outside the library's folders" in why and str(outside) in why
    assert os.path.islink(moved) and outside.is_file() and not (tmp_path / "aside").exists()


def test_two_keepers_in_one_group_are_refused_not_ignored(library, tmp_path: Path) -> None:
    root = tmp_path / "pics"
    first = write_photo(root / "a.jpg", "red", size=(80, 60), fmt="JPEG", seed=1)
    for name in ("b.jpg", "c.jpg"):
        shutil.copy(first, root / name)
    library.index([root], ModelSpec("fake"), IndexSettings(workers=0))
    with pytest.raises(UsageError, match="names 2 photos of one group"):
        library.duplicates(DupOptions(tiers=("exact",), keep=(str(root / "b.jpg"), str(root / "c.jpg"))))
