"""The indexing driver: crawl -> plan -> (executor: decode + encode) -> store -> build; returns a RunReport."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from sqlalchemy.orm import Session, sessionmaker
from imgsearch import places, store
from imgsearch.store.orm import FRAME_ID_BASE
from imgsearch.config import IndexSettings, ModelSpec
from imgsearch.models.embed import Batch
from imgsearch.models.encoder import Encoder, ModelInfo
from imgsearch.errors import MissingExtraError, UsageError
from imgsearch.images.decode import Decoded, partial_hash
from imgsearch.vectors import build as index_build
from imgsearch.images.crawl import FileEntry, Skipped, crawl
from imgsearch.images.fingerprint import fingerprint_files, pictures_in
from imgsearch.images.formats import missing_decoder
from imgsearch.progress import Progress, SilentProgress
from imgsearch.images.loader import StageTimes
from indexer.executors import Executor
from indexer.executors.local import LocalExecutor
from imgsearch.store import KnownFile
from indexer.plan import Plan, make_plan


@dataclass
class RunReport:
    """What one indexing run did; `summary()` is the one line every run ends with."""

    new: int = 0
    changed: int = 0
    moved: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: int = 0
    encoded: int = 0
    seconds: float = 0.0
    indexed_total: int = 0  # vectors in the model's index: photos, and each video's sampled moments
    photos: int = 0  # searchable stills
    videos: int = 0  # searchable videos (their moments are in indexed_total)
    skipped_now: list[tuple[str, str]] = field(default_factory=list)  # newly skipped: (path, reason)
    fingerprinted: int = 0  # files indexed before that got their duplicate-finding fingerprint in this run
    executor: str = "this machine"  # where decoding and encoding ran (or "a Ray cluster of N nodes")
    warnings: list[str] = field(default_factory=list)
    times: StageTimes = field(default_factory=StageTimes)

    def summary(self) -> str:
        rate = f" ({self.encoded / self.seconds:.1f} img/s)" if self.encoded and self.seconds > 0 else ""
        return (f"{self.new} new, {self.changed} changed, {self.moved} moved, {self.unchanged} unchanged, "
                f"{self.removed} removed, {self.skipped} skipped; encoded {self.encoded} in "
                f"{self.seconds:.1f} s{rate} on {self.executor}; {self.searchable()} searchable"
                + (f"; {self.fingerprinted} file(s) indexed before fingerprinted for duplicate finding"
                   if self.fingerprinted else ""))

    def searchable(self) -> str:
        """What a search can find: photos, and videos with their moments apart (a video is one result)."""
        moments = self.indexed_total - self.photos
        videos = f" and {self.videos} video(s) ({moments} moments)" if self.videos else ""
        return f"{self.photos} photo(s){videos}"


def _safe_hash(path: str) -> str | None:
    try:
        return partial_hash(path)
    except OSError:
        return None


def check_roots(roots: Sequence[str | Path]) -> list[str]:
    """Folders as their real paths (symbolic links resolved, so a folder given twice is one), de-duplicated;
    raises naming the first that is not a folder."""
    out: list[str] = []
    for root in roots:
        path = Path(root).expanduser()
        if not path.is_dir():
            what = "is not a folder" if path.exists() else "does not exist"
            raise UsageError(f"{path} {what}: give folders of images to index ({{param}}).", "roots")
        text = os.path.realpath(path)
        if text not in out:
            out.append(text)
    return out


def run_index(sessions: sessionmaker[Session], encoder: Encoder, roots: Sequence[str], index_dir: Path,
              settings: IndexSettings = IndexSettings(), progress: Progress | None = None,
              executor: Executor | None = None) -> RunReport:
    """Bring the library up to date with the roots for this encoder's model and rebuild its index.

    The encoder names the model (its identity keys the vectors); the executor (default: this machine)
    decodes and encodes.
    """
    progress = progress or SilentProgress()
    started = time.perf_counter()
    report = RunReport()
    with sessions.begin() as session:
        model_id = store.get_or_create_model(session, model_record(encoder.info)).id
        store.add_roots(session, roots)
        run_id = store.start_run(session, roots, model_id).id
    executor = executor or executor_for(encoder, settings)
    try:
        plan = _plan(sessions, roots, settings, progress)
        _apply_plan(sessions, plan, report)
        decoded_elsewhere = _encode(sessions, executor, model_id, plan, progress, report)
        _fill_fingerprints(sessions, settings.workers, progress, report, decoded_elsewhere)
        _fill_places(sessions, progress, report)
        report.executor = getattr(executor, "describe", lambda: "this machine")()
        progress.stage("building index", None)
        _, index = index_build.ensure_index(sessions, model_id, index_dir, strict=True, rebuild=settings.rebuild,
                                            memory_budget=settings.index_memory)
        report.indexed_total = len(index)
        report.photos = int((index.ids() < FRAME_ID_BASE).sum())
        with sessions() as session:
            report.videos = store.video_count(session, model_id)
    except BaseException:
        _finish_run(sessions, run_id, report, "interrupted")
        raise
    finally:
        progress.close()
    report.seconds = time.perf_counter() - started
    _finish_run(sessions, run_id, report, "done")
    return report


def executor_for(encoder: Encoder, settings: IndexSettings) -> Executor:
    """Where decoding and encoding run: this machine, or a Ray cluster (settings.ray)."""
    if settings.ray is None:
        return LocalExecutor(encoder, settings)
    from indexer.executors.ray import RayExecutor, RaySettings

    info = encoder.info
    return RayExecutor(ModelSpec(info.name, info.pretrained), info.key, info.dim, info.geometry, settings,
                       RaySettings(settings.ray, settings.gpus_per_worker), encoder.folder)


def _plan(sessions: sessionmaker[Session], roots: Sequence[str], settings: IndexSettings,
          progress: Progress) -> Plan:
    progress.stage("scanning", None)
    crawled: list[FileEntry | Skipped] = []
    walked: set[tuple[int, int]] = set()
    for root in roots:
        for entry in crawl(root, settings.crawl, walked):
            crawled.append(entry)
            progress.advance()
    with sessions() as session:
        known = store.known_files(session, roots)
    return make_plan(crawled, known, _safe_hash, _decoder_installed_since)


def _decoder_installed_since(known: KnownFile) -> bool:
    """A file skipped for want of a decoder is worth another try once that decoder is installed."""
    fmt = missing_decoder(known.skip_reason)
    return fmt is not None and fmt.installed


def _apply_plan(sessions: sessionmaker[Session], plan: Plan, report: RunReport) -> None:
    """Moves, removals and unreadable files: DB-only work, one transaction."""
    with sessions.begin() as session:
        for entry, old in plan.moved:
            store.move_image(session, old.id, entry.path, entry.size, entry.mtime_ns, os.path.realpath(entry.path))
        store.delete_images(session, [k.id for k in plan.missing])
        for skip, known in plan.unreadable:
            store.save_skipped(session, skip.path, skip.size, skip.mtime_ns, skip.reason,
                               known.id if known else None)
            report.skipped_now.append((skip.path, skip.reason))
        if plan.missing or any(old for _, old in plan.unreadable):
            store.bump_generation(session)  # vectors were deleted: every model's index is stale
    report.warnings.extend(f"cannot list {d.path} ({d.reason.split(': ', 1)[-1]}): the images indexed there were kept"
                           for d in plan.unlisted_dirs)
    report.moved = len(plan.moved)
    report.removed = len(plan.missing)
    report.unchanged = len(plan.unchanged)
    report.skipped = len(plan.unreadable) + len(plan.still_skipped)


def _encode(sessions: sessionmaker[Session], executor: Executor, model_id: int, plan: Plan,
            progress: Progress, report: RunReport) -> set[int]:
    """Decode and encode what the plan needs, saving each batch; the ids of files decoded without a fingerprint (on
    a GPU, which decodes to the model's size only)."""
    with sessions() as session:
        have = store.encoded_image_ids(session, model_id)
    # path -> (existing row id or None, kind for the report)
    todo: dict[str, tuple[int | None, str]] = {e.path: (None, "new") for e in plan.new}
    todo.update((e.path, (old.id, "changed")) for e, old in plan.changed)
    # files indexed with another model only, or moved ones this model never saw: encode, count as before
    todo.update((k.path, (k.id, "unchanged")) for k in plan.unchanged if k.id not in have)
    todo.update((e.path, (old.id, "moved")) for e, old in plan.moved if old.id not in have)
    unprinted: set[int] = set()
    if not todo:
        return unprinted
    progress.stage("encoding", len(todo), unit="file")
    for batch in executor.embed(list(todo), report.times):
        write_start = time.perf_counter()
        with sessions.begin() as session:
            ids, others_stale = store.save_images(session, [(image_record(d), todo[d.path][0]) for d in batch.decoded])
            for decoded in batch.decoded:
                kind = todo[decoded.path][1]
                if kind in ("new", "changed"):
                    setattr(report, kind, getattr(report, kind) + 1)
            _save_vectors(session, model_id, ids, batch)
            store.save_fingerprints(session, [(i, d.content_hash, d.fingerprint) for i, d in zip(ids, batch.decoded)
                                              if d.fingerprint is not None])
            unprinted.update(i for i, d in zip(ids, batch.decoded) if d.fingerprint is None)
            for skip in batch.skipped:
                existing, kind = todo[skip.path]
                store.save_skipped(session, skip.path, skip.size, skip.mtime_ns, skip.reason, existing)
                report.skipped_now.append((skip.path, skip.reason))
                others_stale |= existing is not None
                if kind in ("unchanged", "moved"):
                    setattr(report, kind, getattr(report, kind) - 1)
            if others_stale:  # saving advanced this model's generation; others lost vectors
                store.bump_generation(session)
        report.times.add(write_s=time.perf_counter() - write_start)
        report.encoded += len(ids)
        report.skipped += len(batch.skipped)
        progress.advance(len(batch.decoded) + len(batch.skipped))
    report.warnings.extend(report.times.notes)
    return unprinted


def _fill_fingerprints(sessions: sessionmaker[Session], workers: int, progress: Progress, report: RunReport,
                       skip: set[int]) -> None:
    """Fingerprint the indexed files that have none for their content (indexed by an older imgsearch): duplicate
    finding then reopens no file. Not `skip`, files just decoded on a GPU: decoding them again on the CPU would undo
    what the GPU saves (`dups` makes theirs when it is run). A file that cannot be read now keeps its vectors."""
    with sessions() as session:
        rows = store.fingerprint_lengths(session)
    todo = [(i, path, content) for i, path, content, made_for, length in rows
            if i not in skip and (made_for != content or not pictures_in(length))]
    if not todo:
        return
    done = fingerprint_files([path for _, path, _ in todo], workers, progress)
    with sessions.begin() as session:
        store.save_fingerprints(session, [(i, content, blob) for (i, _, content), (blob, _) in zip(todo, done)
                                          if blob is not None])
    report.fingerprinted = sum(blob is not None for blob, _ in done)


def _fill_places(sessions: sessionmaker[Session], progress: Progress, report: RunReport, batch: int = 5000) -> None:
    """Name the place of every photo with a GPS position not looked up yet (new ones, changed ones, and all of them
    in a library indexed before places were kept): the nearest town and its country, offline. Without the "places"
    extra, the run says so and names none (the next run with it names them)."""
    with sessions() as session:
        todo = store.unplaced(session)
    if not todo:
        return
    try:
        towns = places.gazetteer()
    except MissingExtraError as exc:
        report.warnings.append(f"{len(todo)} photo(s) with a GPS position have no place name: {exc.message}")
        return
    progress.stage("naming places", len(todo), unit="photo")
    for start in range(0, len(todo), batch):
        part = todo[start:start + batch]
        found = towns.locate([(lat, lon) for _, lat, lon in part])
        with sessions.begin() as session:
            store.save_places(session, [(i, p.name, p.country) for (i, _, _), p in zip(part, found)])
        progress.advance(len(part))


def model_record(info: ModelInfo) -> store.ModelRecord:
    """What the store keeps of a model's identity."""
    return store.ModelRecord(info.key, info.name, info.pretrained, info.checkpoint_sha256, info.dim,
                             info.preprocess_signature())


def image_record(d: Decoded) -> store.ImageRecord:
    """What the store keeps of a decoded file."""
    i = d.info
    return store.ImageRecord(d.path, d.size, d.mtime_ns, d.content_hash, i.width, i.height, i.format, i.taken_at,
                             i.camera_make, i.camera_model, i.gps_lat, i.gps_lon, d.duration_ms, os.path.realpath(d.path))


def _save_vectors(session: Session, model_id: int, ids: list[int], batch: Batch) -> None:
    """A batch's vectors: one per still image, one per sampled frame of a video (rows in the batch's order)."""
    if batch.vectors is None:  # nothing encoded in this batch (every file in it was skipped)
        return
    start, stills, rows = 0, [], []
    for image_id, decoded in zip(ids, batch.decoded):
        end = start + decoded.rows
        if decoded.times_ms is None:
            stills.append(image_id)
            rows.append(start)
        else:
            store.save_frames(session, model_id, image_id, decoded.times_ms, batch.vectors[start:end])
        start = end
    if stills:
        store.save_vectors(session, model_id, stills, batch.vectors[rows])


def _finish_run(sessions: sessionmaker[Session], run_id: int, report: RunReport, status: str) -> None:
    with sessions.begin() as session:
        store.finish_run(session, run_id, status, {name: getattr(report, name) for name in store.RUN_COUNTS},
                         report.executor)
