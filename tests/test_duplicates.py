"""Duplicate detection: evidence, tiers, grouping limits, keeper choice, and actions that never lose a photo."""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from imgsearch.config import DupOptions, DupThresholds
from imgsearch.dups.candidates import Pair
from imgsearch.dups.grouping import Photo, group_pairs, keeper_key, pair_tier
from imgsearch.dups.hashing import full_hash, hamming, hash_array, pixel_array
from imgsearch.images.fingerprint import BLOB_BYTES, PIXEL_BYTES, TRANSFORMS, fingerprint_file
from imgsearch.errors import ImgSearchError, UsageError
from imgsearch.images.decode import default_pixel_limit

LIMIT = default_pixel_limit(1)
NEAR = ("exact", "near")


def phash(path: Path) -> np.ndarray:
    return hash_array([fingerprint_file(str(path), LIMIT)])[0]


def picture(path: Path) -> np.ndarray:
    return pixel_array([fingerprint_file(str(path), LIMIT)])[0]


@pytest.fixture
def variants(tmp_path: Path, photos_dir: Path) -> Path:
    """Real photos plus one copy of each kind the near-exact tier must catch (and distinct photos)."""
    root = tmp_path / "pics"
    shutil.copytree(photos_dir, root / "orig")
    out = root / "copies"
    out.mkdir()
    src = root / "orig"
    shutil.copy(src / "dress-0.jpg", out / "dress-0 copy.jpg")
    Image.open(src / "hat-2.jpg").save(out / "hat-2-q50.jpg", quality=50)
    img = Image.open(src / "shoes-4.jpg")
    img.resize((img.width // 2, img.height // 2), Image.Resampling.LANCZOS).save(out / "shoes-4-small.jpg", quality=90)
    ImageOps.mirror(Image.open(src / "dress-1.jpg")).save(out / "dress-1-mirrored.jpg", quality=92)
    Image.open(src / "hat-3.jpg").save(out / "hat-3.png")
    ImageEnhance.Brightness(Image.open(src / "shoes-5.jpg")).enhance(1.15).save(out / "shoes-5-bright.jpg", quality=90)
    return root


# --- evidence ----------------------------------------------------------------------------------

def test_phash_gives_imagehash_bits(photos_dir: Path) -> None:
    """imagehash (with SciPy's DCT) is the yardstick: the same bits on real photos, flipped, cropped, at both sizes."""
    import imagehash

    from imgsearch.images.fingerprint import HASH_SIDE, phash as ours

    photos = [*sorted(photos_dir.glob("*.jpg")), *sorted((photos_dir.parent / "clothing").glob("*/*.jpg"))]
    compared = 0
    for path in photos:
        grey = Image.open(path).convert("L")
        for variant in (grey, grey.transpose(Image.Transpose.ROTATE_90), grey.crop((5, 5, grey.width - 9, grey.height))):
            for size, bits in ((HASH_SIDE, 8), (2 * HASH_SIDE, 16)):
                small = variant.resize((size, size), Image.Resampling.LANCZOS)
                assert np.array_equal(ours(small, bits), imagehash.phash(small, hash_size=bits).hash), (path, size)
                compared += 1
    assert compared == 6 * len(photos) and len(photos) == 86


def test_phash_sees_flips_rotations_and_exif_orientation(tmp_path: Path, photos_dir: Path) -> None:
    src = photos_dir / "dress-0.jpg"
    img = Image.open(src)
    cases = {"mirrored": ImageOps.mirror(img), "rotated 90": img.rotate(90, expand=True),
             "flipped": ImageOps.flip(img)}
    original = phash(src)
    for name, changed in cases.items():
        changed.save(tmp_path / f"{name}.jpg", quality=90)
        distance, transform, fine, _ = hamming(original, phash(tmp_path / f"{name}.jpg"))
        assert distance <= 4 and fine <= DupThresholds().near_fine, name
        assert TRANSFORMS[transform] in {name, "rotated 270" if name == "rotated 90" else name}
    # only the EXIF tag says "rotate": the stored pixels are the same as the original's
    exif = Image.Exif()
    exif[274] = 6
    img.save(tmp_path / "exif.jpg", quality=95, exif=exif.tobytes())
    d, t, fine, _ = hamming(original, phash(tmp_path / "exif.jpg"))
    assert d <= 4 and fine <= 16 and TRANSFORMS[t] in {"rotated 90", "rotated 270"}


def test_phash_separates_different_photos_of_the_same_kind(photos_dir: Path) -> None:
    codes = {p.name: phash(p) for p in sorted(photos_dir.glob("*.jpg"))}
    names = sorted(codes)
    distances = [hamming(codes[a], codes[b]) for a in names for b in names if a < b]
    assert min(d for d, _, _, _ in distances) > DupThresholds().near_hamming + 4
    assert min(f for _, _, f, _ in distances) > 2 * DupThresholds().near_fine  # the fine code separates them further
    assert min(c for _, _, _, c in distances) > DupThresholds().near_crop  # and no inner crop of one looks like another


def test_fine_code_tells_a_crop_from_the_same_pixels(tmp_path: Path, photos_dir: Path) -> None:
    img = Image.open(photos_dir / "hat-2.jpg")
    w, h = img.size
    img.crop((w // 20, h // 20, w, h)).save(tmp_path / "crop.jpg", quality=92)
    img.save(tmp_path / "q60.jpg", quality=60)
    original = phash(photos_dir / "hat-2.jpg")
    coarse_crop, _, fine_crop, trimmed = hamming(original, phash(tmp_path / "crop.jpg"))
    _, _, fine_q60, _ = hamming(original, phash(tmp_path / "q60.jpg"))
    t = DupThresholds()
    assert fine_q60 <= 10 < t.near_fine < fine_crop  # a crop does not have the same pixels...
    assert trimmed <= t.near_crop  # ...but one of the original's inner crops matches it
    pictures = {1: picture(photos_dir / "hat-2.jpg"), 2: picture(tmp_path / "crop.jpg"), 3: picture(tmp_path / "q60.jpg"),
                4: picture(photos_dir / "dress-0.jpg")}
    assert pair_tier(Pair(1, 2, 0.6, coarse_crop, 0, fine_crop, trimmed), t, pictures=pictures) == "near"
    assert pair_tier(Pair(1, 3, 0.6, 1, 0, fine_q60, 100), t, pictures=pictures) == "near"
    # the hashes alone never decide: without the pictures, or with pictures that differ, no near-exact pair
    assert pair_tier(Pair(1, 3, 0.6, 1, 0, fine_q60, 100), t) is None
    assert pair_tier(Pair(1, 4, 0.99, 1, 0, fine_q60, 100), t, pictures=pictures) == "similar"  # not "near"


def test_full_hash_differs_on_one_byte(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"x" * 300_000)
    b.write_bytes(b"x" * 299_999 + b"y")
    assert full_hash(str(a)) != full_hash(str(b))
    assert full_hash(str(a)) == full_hash(str(a))


# --- grouping ----------------------------------------------------------------------------------

def _unit(angle: float) -> np.ndarray:
    return np.array([np.cos(angle), np.sin(angle)], dtype=np.float32)


def test_a_chain_of_look_alikes_does_not_merge_unrelated_photos() -> None:
    # photos on an arc, each 0.2 rad from the next: neighbours cos 0.980, three apart 0.825
    vectors = {i: _unit(0.2 * i) for i in range(10)}
    pairs = [Pair(i, i + 1, float(vectors[i] @ vectors[i + 1])) for i in range(9)]
    t = DupThresholds(similar_cosine=0.97)
    grouping = group_pairs(pairs, t, ("similar",), vectors, max_group=50)
    for ids in grouping.groups:
        members = np.stack([vectors[i] for i in ids])
        assert (members @ members.T).min() >= t.similar_cosine - 0.05
    assert grouping.refused_as_chain > 0
    assert sum(len(g) for g in grouping.groups) >= 8


def test_group_size_cap() -> None:
    vectors = {i: _unit(0.001 * i) for i in range(12)}
    pairs = [Pair(i, j, 0.999) for i in range(12) for j in range(i + 1, 12)]
    grouping = group_pairs(pairs, DupThresholds(), ("similar",), vectors, max_group=5)
    assert max(len(g) for g in grouping.groups) <= 5
    assert grouping.refused_by_cap > 0


def test_tiers_exact_before_near_before_similar_and_filtering() -> None:
    vectors = {i: _unit(0.0) for i in range(4)}
    rng = np.random.default_rng(0)
    scene = rng.integers(0, 256, PIXEL_BYTES, dtype=np.uint8)  # a pixel code: 64x64 grey, 4x4 colour
    pictures = {0: scene, 1: scene, 2: scene, 3: np.clip(scene.astype(int) + 2, 0, 255).astype(np.uint8)}
    pairs = [Pair(0, 1, 1.0, 0, 0, exact=True), Pair(2, 3, 0.99, 3, 0, 5), Pair(1, 2, 0.96, 30, 0)]
    t = DupThresholds()
    everything = group_pairs(pairs, t, ("exact", "near", "similar"), vectors, 50, pictures=pictures)
    assert everything.groups == [[0, 1, 2, 3]] and everything.tiers == ["similar"]
    strict = group_pairs(pairs, t, ("exact", "near"), vectors, 50, pictures=pictures)
    assert sorted(zip(strict.tiers, strict.groups)) == [("exact", [0, 1]), ("near", [2, 3])]
    assert group_pairs(pairs, t, ("exact",), vectors, 50, pictures=pictures).groups == [[0, 1]]
    # near hashes whose pictures differ are not a duplicate, whatever the cosine
    other = {0: scene, 1: rng.integers(0, 256, PIXEL_BYTES, dtype=np.uint8)}
    assert group_pairs([Pair(0, 1, 1.0, 1, 0, 2)], t, ("near",), vectors, 50, pictures=other).groups == []


def test_time_window_for_similar() -> None:
    vectors = {0: _unit(0.0), 1: _unit(0.01), 2: _unit(0.02)}
    dates = {0: datetime(2024, 5, 1, 10, 0, 0), 1: datetime(2024, 5, 1, 10, 0, 4), 2: datetime(2024, 5, 2)}
    pairs = [Pair(0, 1, 0.999), Pair(1, 2, 0.999)]
    grouping = group_pairs(pairs, DupThresholds(), ("similar",), vectors, 50, dates, within_s=10)
    assert grouping.groups == [[0, 1]]


def test_keeper_prefers_resolution_then_original_format_then_exif_then_oldest_then_size() -> None:
    def photo(i: int, w: int, size: int, exif: int, year: int, fmt: str = "JPEG") -> Photo:
        return Photo(i, f"/p/{i}.jpg", w, w, size, exif, datetime(year, 1, 1), fmt, year * 10**9)

    assert min([photo(1, 100, 9, 4, 2000), photo(2, 200, 1, 0, 2020)], key=keeper_key).id == 2  # resolution first
    # a PNG conversion ten times larger does not beat the camera's JPEG
    assert min([photo(1, 100, 5, 0, 2020), photo(2, 100, 50, 0, 2000, "PNG")], key=keeper_key).id == 1
    assert min([photo(1, 100, 5, 4, 2020), photo(2, 100, 9, 0, 2000)], key=keeper_key).id == 1  # richer EXIF
    assert min([photo(1, 100, 5, 3, 2020), photo(2, 100, 5, 3, 2001)], key=keeper_key).id == 2  # oldest file
    assert min([photo(1, 100, 5, 3, 2020), photo(2, 100, 9, 3, 2020)], key=keeper_key).id == 2  # then largest
    assert min([photo(1, 100, 5, 3, 2020), photo(2, 100, 5, 3, 2020)],
               key=lambda p: keeper_key(p, shared_orientation=int(p.id == 2))).id == 2  # not the flipped one
    assert min([photo(1, 900, 9, 4, 2000), photo(2, 100, 1, 0, 2020)],
               key=lambda p: keeper_key(p, preferred=p.id == 2)).id == 2  # a preferred folder outranks all


# --- the library ---------------------------------------------------------------------------------

def _group_names(report) -> list[tuple[str, set[str]]]:
    return sorted((g.tier, {Path(m.photo.path).name for m in g.members}) for g in report.groups)


def test_library_finds_each_kind_of_copy(library, variants: Path) -> None:
    library.index([variants], settings=_settings())
    report = library.duplicates(DupOptions(tiers=NEAR))
    found = _group_names(report)
    assert ("exact", {"dress-0.jpg", "dress-0 copy.jpg"}) in found
    for pair in ({"hat-2.jpg", "hat-2-q50.jpg"}, {"shoes-4.jpg", "shoes-4-small.jpg"},
                 {"dress-1.jpg", "dress-1-mirrored.jpg"}, {"hat-3.jpg", "hat-3.png"},
                 {"shoes-5.jpg", "shoes-5-bright.jpg"}):
        assert ("near", pair) in found, found
    assert len(found) == 6  # and nothing else: the two different dresses, hats, shoes stay apart
    mirrored = next(g for g in report.groups if any("mirrored" in m.photo.path for m in g.members))
    assert mirrored.duplicates[0].transform == "mirrored"
    small = next(g for g in report.groups if any("small" in m.photo.path for m in g.members))
    assert small.keeper.path.endswith("orig/shoes-4.jpg")  # the larger one is kept


def test_rerun_searches_only_new_photos_and_reopens_no_file(library, variants: Path) -> None:
    library.index([variants], settings=_settings())
    first = library.duplicates(DupOptions(tiers=NEAR))
    assert first.full_scan and first.hashed == 0 and first.rescanned == 12  # fingerprinted while indexing
    again = library.duplicates(DupOptions(tiers=NEAR))
    assert not again.full_scan and again.hashed == 0 and again.rescanned == 0
    assert _group_names(again) == _group_names(first)
    Image.open(variants / "orig" / "hat-3.jpg").save(variants / "copies" / "hat-3.webp", quality=90)
    library.index([variants], settings=_settings())
    third = library.duplicates(DupOptions(tiers=NEAR))
    assert third.hashed == 0 and third.rescanned == 1
    assert ("near", {"hat-3.jpg", "hat-3.png", "hat-3.webp"}) in _group_names(third)


@pytest.mark.parametrize("damage", ["garbled", "truncated", "another model's"])
def test_a_damaged_pair_cache_is_a_full_scan_with_the_same_groups(library, variants: Path, damage: str) -> None:
    """The candidate pairs live in a file beside the database (dups.pair_cache): damaged or not this model's, it is
    ignored, the scan is a full one, the groups are the same and the file is good again after."""
    from imgsearch.dups import pair_cache

    library.index([variants], settings=_settings())
    first = library.duplicates(DupOptions(tiers=NEAR))
    (cache,) = (library.path / "dups").glob("pairs-model-*.npz")
    kept = pair_cache.load(cache.parent, int(cache.stem.rsplit("-", 1)[1]))
    assert kept is not None and len(kept.pairs) >= 6 and (kept.pairs.a < kept.pairs.b).all()
    data = cache.read_bytes()
    if damage == "garbled":
        cache.write_bytes(data[:200] + bytes(255 - b for b in data[200:1200]) + data[1200:])
    elif damage == "truncated":
        cache.write_bytes(data[:len(data) // 2])
    else:  # another model's file under this model's name
        pair_cache.save(cache.parent, 999, kept.generation, kept.floor, kept.pairs)
        cache.with_name("pairs-model-999.npz").replace(cache)
    again = library.duplicates(DupOptions(tiers=NEAR))
    assert again.full_scan and again.rescanned == 12 and _group_names(again) == _group_names(first)
    assert not library.duplicates(DupOptions(tiers=NEAR)).full_scan  # the file is good again
    assert [p.name for p in cache.parent.iterdir()] == [cache.name]  # no temporary file left beside it


def test_a_forgotten_photo_leaves_the_pair_cache(library, variants: Path) -> None:
    from sqlalchemy import select

    from imgsearch.dups import pair_cache
    from imgsearch.store.orm import Image as ImageRow

    library.index([variants], settings=_settings())
    first = library.duplicates(DupOptions(tiers=NEAR))
    assert ("near", {"hat-2.jpg", "hat-2-q50.jpg"}) in _group_names(first)
    (variants / "copies" / "hat-2-q50.jpg").unlink()
    library.index([variants], settings=_settings())
    report = library.duplicates(DupOptions(tiers=NEAR))
    assert not report.full_scan and report.unreadable == []  # not "gone": forgotten by index, its pairs dropped
    assert all("hat-2-q50" not in m.photo.path for g in report.groups for m in g.members)
    (cache,) = (library.path / "dups").glob("pairs-model-*.npz")
    kept = pair_cache.load(cache.parent, int(cache.stem.rsplit("-", 1)[1]))
    with library.session() as session:
        known = {i for (i,) in session.execute(select(ImageRow.id))}
    assert kept is not None and set(kept.pairs.a.tolist()) | set(kept.pairs.b.tolist()) <= known


def test_a_library_without_fingerprints_gets_them_from_the_next_index(library, variants: Path) -> None:
    """Fingerprints written by an older version (another length) or none at all: `dups` makes the missing ones
    itself, and the next `index` fills in every one, so `dups` then reopens no file."""
    from sqlalchemy import delete, select, update

    from imgsearch.store.orm import ImageHash

    def outdate(session, ids: list[int]) -> None:
        session.execute(update(ImageHash).where(ImageHash.image_id == ids[0]).values(phashes=b"\0" * 520))  # hashes only
        version_1 = b"\0" * (BLOB_BYTES - 1)  # the same layout, no version byte: pictures resampled by area averages
        session.execute(update(ImageHash).where(ImageHash.image_id.in_(ids[1:3])).values(phashes=version_1))
        session.execute(delete(ImageHash).where(ImageHash.image_id.in_(ids[-3:])))

    library.index([variants], settings=_settings())
    expected = _group_names(library.duplicates(DupOptions(tiers=NEAR)))
    with library.sessions.begin() as session:
        ids = sorted(session.scalars(select(ImageHash.image_id)))
        assert len(ids) == 12
        outdate(session, ids)
    fallback = library.duplicates(DupOptions(tiers=NEAR, rescan=True))
    assert fallback.hashed == 6 and _group_names(fallback) == expected
    with library.sessions.begin() as session:
        outdate(session, ids)
    report = library.index([variants], settings=_settings())
    assert report.fingerprinted == 6 and report.encoded == 0
    assert "6 file(s) indexed before fingerprinted for duplicate finding" in report.summary()
    after = library.duplicates(DupOptions(tiers=NEAR, rescan=True))
    assert after.hashed == 0 and _group_names(after) == expected


def test_thresholds_are_remembered_per_model(library, variants: Path) -> None:
    library.index([variants], settings=_settings())
    assert library.duplicates(DupOptions(near_hamming=4)).thresholds.near_hamming == 4
    assert library.duplicates(DupOptions()).thresholds.near_hamming == 4
    assert library.duplicates(DupOptions(near_hamming=12)).thresholds.near_hamming == 12


def test_scoped_to_folders(library, variants: Path) -> None:
    library.index([variants], settings=_settings())
    assert library.duplicates(DupOptions(tiers=NEAR, folders=(str(variants / "copies"),))).groups == []
    assert len(library.duplicates(DupOptions(tiers=NEAR, folders=(str(variants),))).groups) == 6


def _settings():
    from imgsearch.config import IndexSettings

    return IndexSettings(workers=0)


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): full_hash(str(p)) for p in root.rglob("*") if p.is_file()}


def test_move_aside_then_undo_restores_everything(library, variants: Path, tmp_path: Path) -> None:
    library.index([variants], settings=_settings())
    before = _tree(variants)
    stats = {p: os.stat(variants / p).st_mtime_ns for p in before}
    groups = library.duplicates(DupOptions(tiers=NEAR)).groups
    aside = tmp_path / "aside"

    plan = library.act_on_duplicates(groups, move_to=aside)  # a dry run changes nothing
    assert not plan.applied and len(plan.done) == 6 and _tree(variants) == before and not aside.exists()

    done = library.act_on_duplicates(groups, move_to=aside, apply=True, yes=True)  # a library of copies
    assert len(done.done) == 6 and not done.problems
    moved = _tree(aside)
    assert len(moved) == 6 and len(_tree(variants)) == 6
    assert set(moved.values()) | set(_tree(variants).values()) == set(before.values())  # nothing lost
    for step in done.done:  # relative paths kept
        assert Path(step.dest).relative_to(aside) == Path(step.src).relative_to(variants)
    hits = library.search_text("anything", k=50)
    assert len(hits) == 6 and not any(str(aside) in h.path for h in hits)
    assert library.duplicates(DupOptions(tiers=NEAR)).groups == []

    undone = library.undo_duplicates()
    assert len(undone.done) == 6 and not undone.problems
    assert _tree(variants) == before and not aside.exists()
    assert {p: os.stat(variants / p).st_mtime_ns for p in before} == stats
    assert len(library.search_text("anything", k=50)) == 12
    report = library.index([variants], settings=_settings())
    assert (report.new, report.changed, report.removed) == (0, 0, 0)
    with pytest.raises(ImgSearchError, match="nothing to undo"):
        library.undo_duplicates()


def test_link_only_exact_copies_and_undo(library, variants: Path) -> None:
    library.index([variants], settings=_settings())
    copy = variants / "copies" / "dress-0 copy.jpg"
    original_stat = os.stat(copy)
    groups = library.duplicates(DupOptions(tiers=NEAR)).groups
    done = library.act_on_duplicates(groups, link="hard", apply=True, yes=True)
    assert [Path(s.src).name for s in done.done] == ["dress-0 copy.jpg"]
    assert not done.problems
    assert len(done.refused) == 5 and all("only exact copies" in why for _, why in done.refused)
    assert os.path.samefile(copy, variants / "orig" / "dress-0.jpg")
    assert library.duplicates(DupOptions(tiers=("exact",))).groups == []  # one file now, not two
    library.undo_duplicates()
    assert not os.path.samefile(copy, variants / "orig" / "dress-0.jpg")
    assert full_hash(str(copy)) == full_hash(str(variants / "orig" / "dress-0.jpg"))
    assert os.stat(copy).st_mtime_ns == original_stat.st_mtime_ns
    assert os.stat(copy).st_mode == original_stat.st_mode


def test_changed_file_is_left_alone(library, variants: Path, tmp_path: Path) -> None:
    library.index([variants], settings=_settings())
    groups = library.duplicates(DupOptions(tiers=("exact",))).groups
    victim = Path(groups[0].duplicates[0].photo.path)
    victim.write_bytes(victim.read_bytes() + b"edited")
    report = library.act_on_duplicates(groups, move_to=tmp_path / "aside", apply=True, yes=True)
    assert report.done == [] and "changed since it was indexed" in report.problems[0][1]
    assert victim.exists()


def test_move_to_inside_an_indexed_folder_is_refused(library, variants: Path) -> None:
    library.index([variants], settings=_settings())
    groups = library.duplicates(DupOptions(tiers=NEAR)).groups
    with pytest.raises(UsageError, match="inside the indexed folder"):
        library.act_on_duplicates(groups, move_to=variants / "dups")


def test_bad_options_are_usage_errors(library, variants: Path) -> None:
    library.index([variants], settings=_settings())
    for bad in (DupOptions(tiers=("nearish",)), DupOptions(max_group=1), DupOptions(similar_cosine=1.5),
                DupOptions(near_hamming=65)):
        with pytest.raises(UsageError):
            library.duplicates(bad)


# --- the command line ------------------------------------------------------------------------------

def test_cli_dups_outputs_dry_run_and_undo(tmp_path: Path, variants: Path, tiny_model_dir: Path) -> None:
    from tests.test_cli import cli

    lib = tmp_path / "lib"
    assert cli("index", variants, "-m", f"local-dir:{tiny_model_dir}", "-L", lib, "--workers", "0").exit_code == 0
    table = cli("dups", "-L", lib, "--tier", "exact")
    assert table.exit_code == 0, table.output
    assert "group 1: exact, 2 photos" in table.stdout and "dress-0 copy.jpg" in table.stdout
    assert "1 group(s) (1 exact): 1 copies" in table.stderr
    rows = [json.loads(line) for line in cli("dups", "-L", lib, "--tier", "exact", "--json").stdout.splitlines()]
    assert rows[0]["tier"] == "exact" and Path(rows[0]["keeper"]).name in {"dress-0.jpg", "dress-0 copy.jpg"}
    assert [m["role"] for m in rows[0]["members"]] == ["keeper", "duplicate"]
    csv_out = cli("dups", "-L", lib, "--tier", "exact", "--csv").stdout.splitlines()
    assert csv_out[0].startswith("group,tier,role,relation,path") and len(csv_out) == 3

    before = _tree(variants)
    dry = cli("dups", "-L", lib, "--tier", "exact", "--move-to", tmp_path / "aside")
    assert dry.exit_code == 0 and "Dry run" in dry.stderr and _tree(variants) == before
    assert cli("dups", "-L", lib, "--apply").exit_code == 2
    assert cli("dups", "-L", lib, "--within", "soon").exit_code == 2
    applied = cli("dups", "-L", lib, "--tier", "exact", "--move-to", tmp_path / "aside", "--apply", "--yes")
    assert applied.exit_code == 0 and "Done: move 1 file(s)" in applied.stderr
    assert len(_tree(variants)) == 11
    assert "Dups:     1 photo(s) set aside; last action: move of 1 file(s)" in cli("status", "-L", lib).stdout
    undo = cli("dups", "undo", "-L", lib)
    assert undo.exit_code == 0 and "Undone: 1 file(s) restored." in undo.stderr
    assert _tree(variants) == before
    nothing = cli("dups", "undo", "-L", lib)
    assert nothing.exit_code == 1 and "nothing to undo" in nothing.stderr


def test_keep_overrides_the_suggested_keeper(library, variants: Path) -> None:
    library.index([variants], settings=_settings())
    small = str(variants / "copies" / "shoes-4-small.jpg")
    report = library.duplicates(DupOptions(tiers=NEAR, keep=(small,)))
    group = next(g for g in report.groups if any(m.photo.path == small for m in g.members))
    assert group.keeper.path == small
    assert [m.relation for m in group.members] == ["keeper", "near"]


def test_parse_duration() -> None:
    from imgsearch.dups.options import parse_duration

    assert [parse_duration(t) for t in ("90", "30s", "10m", "2h", "1d")] == [90, 30, 600, 7200, 86400]
    with pytest.raises(UsageError, match="not a duration"):
        parse_duration("soon")


def test_a_photo_gone_since_indexing_is_reported_not_fatal(library, variants: Path) -> None:
    library.index([variants], settings=_settings())
    gone = variants / "copies" / "hat-2-q50.jpg"
    gone.unlink()
    report = library.duplicates(DupOptions(tiers=NEAR))
    assert [Path(p).name for p, _ in report.unreadable] == ["hat-2-q50.jpg"]
    assert "gone since it was indexed" in report.unreadable[0][1]
    names = _group_names(report)
    assert ("exact", {"dress-0.jpg", "dress-0 copy.jpg"}) in names and len(names) == 5


def test_borderline_pairs_are_the_nearest_each_side_of_the_similar_threshold() -> None:
    """What the web page shows before the similar tier is acted on: the pairs nearest its threshold, each side of
    it, and never a pair that is a copy by its bytes or its pixels (the threshold does not decide those)."""
    from imgsearch.dups.scan import borderline

    t = DupThresholds(similar_cosine=0.95)
    photos = {i: Photo(i, f"/p/{i}.jpg", 10, 10, 1, 0, datetime(2020, 1, 1)) for i in range(1, 12)}
    scene = np.random.default_rng(0).integers(0, 256, PIXEL_BYTES, dtype=np.uint8)
    by_cosine = [0.99, 0.96, 0.9515, 0.95, 0.949, 0.93, 0.90]  # photos 2..8 against photo 1
    pairs = [Pair(1, n + 2, c) for n, c in enumerate(by_cosine)]
    pairs += [Pair(9, 10, 0.9501, exact=True), Pair(10, 11, 0.9502, 0, 0, 0, 0)]  # exact; near by hashes and pixels
    got = borderline(pairs, t, photos, {10: scene, 11: scene}, each_side=2)
    assert [(b.b.id, b.cosine, b.grouped) for b in got] == [(5, 0.95, True), (4, 0.9515, True), (6, 0.949, False),
                                                            (7, 0.93, False)]
