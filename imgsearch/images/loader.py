"""Parallel decode + preprocess with a bounded look-ahead, on CPU worker processes and optionally
on the GPU at the same time.

CPU workers import Pillow and numpy only (never torch): a pool forked after torch has run can
hang, so the pool uses forkserver (spawn where that is missing). With a TensorDecoder, JPEGs are
taken from the front of one shared work list by the GPU while the CPU workers take from the back,
so both decoders stay busy whatever their relative speed."""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional
from imgsearch.errors import ImageError
from imgsearch.workers import importable_main, process_pool
from imgsearch.images.decode import (Decoded, FileData, Geometry, decode_data, decode_video, file_limit, format_of_file,
                                     read_file)
from imgsearch.images.crawl import Skipped
from imgsearch.images import formats
from imgsearch.images.formats import VIDEO_FORMAT
from imgsearch.config import VideoSampling

if TYPE_CHECKING:
    from imgsearch.images.gpu import TensorDecoder


ChunkDecoder = Optional[Callable[[Sequence[str], Geometry, int, VideoSampling], tuple[list, float, float]]]


CHUNK = 8  # files per CPU task: amortises IPC without making the look-ahead coarse


GPU_BATCH = 32  # files per GPU decode call


GPU_THREADS = 2  # while one thread waits on nvJPEG, the other parses headers and resizes


# Measured on an H100 + 16 cores (BENCHMARKS.md): nvJPEG alone decodes faster than nvJPEG plus
# Pillow workers on the same JPEGs (its CPU-side stages starve), so by default the GPU takes every
# JPEG and a few CPU workers take the other formats and what the GPU hands back.
GPU_SIDE_WORKERS = 4


JPEG_SUFFIXES = tuple(formats.JPEG.extensions)  # what the GPU decoder takes (by name; by content after)


@dataclass
class StageTimes:
    """Busy seconds per stage (summed over workers) and who decoded what; for --verbose."""

    read_s: float = 0.0
    decode_cpu_s: float = 0.0
    decode_gpu_s: float = 0.0
    transfer_s: float = 0.0
    encode_s: float = 0.0
    write_s: float = 0.0
    cpu_images: int = 0
    gpu_images: int = 0
    cpu_workers: int = 0
    notes: list[str] = field(default_factory=list)  # what the user should hear about (run warnings)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **amounts: float) -> None:
        with self._lock:
            for name, value in amounts.items():
                setattr(self, name, getattr(self, name) + value)

    def breakdown(self, wall_s: float) -> str:
        """One line per stage: busy seconds, and for the decoders their rate."""
        workers = max(1, self.cpu_workers)
        lines = [
            f"read      {self.read_s:8.2f} s (summed over readers)",
            f"decode    CPU {self.decode_cpu_s:8.2f} s over {self.cpu_workers} workers "
            f"({self.decode_cpu_s / workers:.2f} s each) for {self.cpu_images} images; "
            f"GPU {self.decode_gpu_s:.2f} s for {self.gpu_images} images",
            f"transfer  {self.transfer_s:8.2f} s",
            f"encode    {self.encode_s:8.2f} s",
            f"write     {self.write_s:8.2f} s",
            f"wall      {wall_s:8.2f} s",
        ]
        return "\n".join(lines)


def _skip(path: str, exc: ImageError) -> Skipped:
    try:
        st = os.stat(path)
        size, mtime_ns = st.st_size, st.st_mtime_ns
    except OSError:
        size, mtime_ns = 0, 0
    return Skipped(path, exc.message, size, mtime_ns)


def _decode_timed(path: str, geo: Geometry, max_pixels: int, sampling: VideoSampling) -> tuple[Decoded | Skipped, float, float]:
    """Decode one file, timing read and decode; any failure becomes a Skipped with its reason."""
    t0 = time.perf_counter()
    try:
        if format_of_file(path) is VIDEO_FORMAT:  # FFmpeg reads it as it decodes
            return decode_video(path, geo, max_pixels, sampling), 0.0, time.perf_counter() - t0
        data = read_file(path, file_limit(max_pixels))
        t1 = time.perf_counter()
        return decode_data(data, geo, max_pixels), t1 - t0, time.perf_counter() - t1
    except ImageError as exc:
        return _skip(path, exc), 0.0, time.perf_counter() - t0


def decode_files(paths: Sequence[str], geo: Geometry, max_pixels: int,
                 sampling: VideoSampling) -> tuple[list[Decoded | Skipped], float, float]:
    out, read_s, decode_s = [], 0.0, 0.0
    for p in paths:
        item, r, d = _decode_timed(p, geo, max_pixels, sampling)
        out.append(item)
        read_s += r
        decode_s += d
    return out, read_s, decode_s


def _crashed(path: str) -> Skipped:
    return _skip(path, ImageError("the image decoder crashed on this file (it is retried when the file changes)"))


def load(paths: Sequence[str], geo: Geometry, max_pixels: int, workers: int,
         tensor_decoder: "TensorDecoder | None" = None, times: StageTimes | None = None,
         share_jpegs: bool = True, decode_chunk: ChunkDecoder = None,
         sampling: VideoSampling = VideoSampling()) -> Iterator[Decoded | Skipped]:
    """Every path comes back once, decoded or skipped; memory stays flat (bounded look-ahead). Videos come back
    as their sampled frames (`sampling`).

    With a tensor decoder, `share_jpegs=False` keeps the CPU workers off JPEGs (the GPU takes them all).
    """
    times = times if times is not None else StageTimes()
    times.cpu_workers = max(0, workers)
    if workers <= 0 and tensor_decoder is None:
        for path in paths:
            item, r, d = _decode_timed(path, geo, max_pixels, sampling)
            times.add(read_s=r, decode_cpu_s=d, cpu_images=1)
            yield item
        return
    yield from _Pipeline(paths, geo, max_pixels, workers, tensor_decoder, times, share_jpegs,
                         decode_chunk or decode_files, sampling).run()


class _Pipeline:
    """Threads that keep the process pool and the GPU decoder fed from one work list."""

    def __init__(self, paths: Sequence[str], geo: Geometry, max_pixels: int, workers: int,
                 tensor_decoder: "TensorDecoder | None", times: StageTimes, share_jpegs: bool,
                 decode_chunk: Callable, sampling: VideoSampling) -> None:
        self.decode_chunk = decode_chunk  # module-level, so worker processes can import it
        self.sampling = sampling
        jpegs = [p for p in paths if p.lower().endswith(JPEG_SUFFIXES)]
        others = [p for p in paths if not p.lower().endswith(JPEG_SUFFIXES)]
        # GPU pops JPEGs from the left; CPU workers pop from the right (other formats first).
        self.work: deque[str] = deque(jpegs + others if tensor_decoder else others + jpegs)
        self.handback: deque[str] = deque()  # files the GPU could not decode: CPU workers take them first
        self.cpu_takes_jpegs = tensor_decoder is None or (workers > 0 and share_jpegs)
        self.geo, self.max_pixels, self.workers = geo, max_pixels, workers
        self.decoder, self.times = tensor_decoder, times
        self.lock = threading.Lock()
        self.out: queue.Queue = queue.Queue(maxsize=max(8, workers * 4))
        self.stop = threading.Event()
        self.gpu_done = threading.Event()
        if tensor_decoder is None:
            self.gpu_done.set()

    def _take_gpu(self, n: int) -> list[str]:
        with self.lock:
            taken: list[str] = []
            while self.work and len(taken) < n and self.work[0].lower().endswith(JPEG_SUFFIXES):
                taken.append(self.work.popleft())
            return taken

    def _take_cpu(self, n: int) -> list[str]:
        with self.lock:
            taken = [self.handback.popleft() for _ in range(min(n, len(self.handback)))]
            while self.work and len(taken) < n and (self.cpu_takes_jpegs
                                                    or not self.work[-1].lower().endswith(JPEG_SUFFIXES)):
                taken.append(self.work.pop())
            return taken

    def _cpu_finished(self) -> bool:
        with self.lock:
            return self.gpu_done.is_set() and not self.work and not self.handback

    def _put(self, item: object) -> None:
        while not self.stop.is_set():
            try:
                self.out.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def run(self) -> Iterator[Decoded | Skipped]:
        threads = [threading.Thread(target=self._guard, args=(self._cpu_feeder,), daemon=True)]
        if self.decoder is not None:
            threads += [threading.Thread(target=self._guard, args=(self._gpu_worker,), daemon=True)
                        for _ in range(GPU_THREADS)]
        self.gpu_running = len(threads) - 1
        for t in threads:
            t.start()
        finished = 0
        try:
            while finished < len(threads):
                item = self.out.get()
                if item is None:
                    finished += 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield from item
        finally:
            self.stop.set()
            for t in threads:
                t.join()

    def _guard(self, target) -> None:
        try:
            target()
        except BaseException as exc:  # surfaced in the consumer's thread
            self._put(exc)
        finally:
            if target == self._gpu_worker:
                with self.lock:
                    self.gpu_running -= 1
                    if self.gpu_running == 0:
                        self.gpu_done.set()
            self._put(None)

    def _cpu_feeder(self) -> None:
        if self.workers <= 0:
            self._cpu_inline()
            return
        with importable_main():  # for the pool's whole life: it starts workers lazily, on later submits
            self._cpu_pool_feeder()

    def _cpu_pool_feeder(self) -> None:
        pending: dict[Future, list[str]] = {}
        stalled = 0  # pool rebuilds since the last progress: 3 means processes are the problem, not files
        suspects: list[str] = []  # files that were in flight when a worker died: retried one at a time
        pool = self._healthy_pool()
        try:
            while pool is not None and not self.stop.is_set():
                limit = 1 if suspects else self.workers * 3
                broken = False
                while len(pending) < limit and not broken:
                    chunk = [suspects.pop(0)] if suspects else self._take_cpu(CHUNK)
                    if not chunk:
                        break
                    try:
                        pending[pool.submit(self.decode_chunk, chunk, self.geo, self.max_pixels, self.sampling)] = chunk
                    except BrokenProcessPool:
                        suspects.extend(chunk)
                        broken = True
                if not pending and not broken:
                    if self._cpu_finished():
                        return
                    time.sleep(0.01)  # the GPU may still hand files back
                    continue
                done, _ = wait(list(pending), timeout=0.5, return_when=FIRST_COMPLETED) if pending else (set(), set())
                for fut in done:
                    chunk = pending.pop(fut)
                    try:
                        items, read_s, decode_s = fut.result()
                    except BrokenProcessPool:
                        if len(chunk) == 1 and not pending and not broken:  # alone, and it killed a healthy worker
                            self._put([_crashed(chunk[0])])
                            stalled = -1  # a culprit found is progress (the rebuild below makes it 0)
                        else:
                            suspects.extend(chunk)
                        broken = True
                        continue
                    self.times.add(read_s=read_s, decode_cpu_s=decode_s, cpu_images=len(items))
                    self._put(items)
                    stalled = 0
                if broken:
                    suspects.extend(p for c in pending.values() for p in c)
                    pending.clear()
                    pool.shutdown(wait=False, cancel_futures=True)
                    stalled += 1
                    pool = self._healthy_pool() if stalled < 3 else None
            if pool is None:  # worker processes cannot start here: decode in this process instead
                with self.lock:
                    self.handback.extend(suspects)
                self.times.notes.append("decode worker processes could not start; decoded in the main process")
                self._cpu_inline()
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    def _healthy_pool(self) -> ProcessPoolExecutor | None:
        """A fresh pool that has run a no-op task: a pool whose workers cannot even start is no pool."""
        pool = process_pool(self.workers)
        try:
            pool.submit(self.decode_chunk, [], self.geo, self.max_pixels, self.sampling).result(timeout=120)
            return pool
        except (BrokenProcessPool, TimeoutError, OSError):
            pool.shutdown(wait=False, cancel_futures=True)
            return None

    def _cpu_inline(self) -> None:
        while not self.stop.is_set():
            chunk = self._take_cpu(CHUNK)
            if not chunk:
                if self._cpu_finished():
                    return
                time.sleep(0.01)
                continue
            items, read_s, decode_s = self.decode_chunk(chunk, self.geo, self.max_pixels, self.sampling)
            self.times.add(read_s=read_s, decode_cpu_s=decode_s, cpu_images=len(items))
            self._put(items)

    def _gpu_worker(self) -> None:
        assert self.decoder is not None
        with ThreadPoolExecutor(max_workers=4) as readers:  # file reads release the GIL
            batch = self._take_gpu(GPU_BATCH)
            ahead = readers.map(self._read, batch) if batch else None
            while batch and not self.stop.is_set():
                files = list(ahead)  # type: ignore[arg-type]
                batch = self._take_gpu(GPU_BATCH)  # read the next batch while decoding this one
                ahead = readers.map(self._read, batch) if batch else None
                self._decode_on_gpu([f for f in files if isinstance(f, FileData)])
                skipped = [f for f in files if isinstance(f, Skipped)]
                if skipped:
                    self._put(skipped)

    def _read(self, path: str) -> FileData | Skipped:
        t0 = time.perf_counter()
        try:
            return read_file(path, file_limit(self.max_pixels))
        except ImageError as exc:
            return _skip(path, exc)
        finally:
            self.times.add(read_s=time.perf_counter() - t0)

    def _decode_on_gpu(self, files: list[FileData]) -> None:
        assert self.decoder is not None
        t0 = time.perf_counter()
        decoded, fallback = self.decoder.decode(files)
        self.times.add(decode_gpu_s=time.perf_counter() - t0, gpu_images=len(decoded))
        if fallback:
            with self.lock:
                self.handback.extend(fallback)
        if decoded:
            self._put(decoded)
