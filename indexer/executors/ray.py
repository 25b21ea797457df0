"""The Ray executor: decoding and encoding run on a Ray cluster through Ray Data, the driver (this process)
crawls, plans and writes exactly as with the local executor.

    paths -> from_items -> map_batches(decode: imgsearch's own decoders, CPU tasks)
          -> map_batches(Encoder actors, one per GPU or a few on CPUs) -> iter_batches -> Batch

Rows travel as pickled Decoded / Skipped objects (pixels only between the two stages; vectors after), so every
format, skip reason and video frame list comes back as the local pipeline makes them. Ray retries the tasks of a
node that dies; the driver writes each file once (a repeat of a retried block is dropped).

Every node must see the photos and the model at the same paths (a shared mount), and have imgsearch installed.
When the run encodes with an export (OpenVINO or ONNX Runtime: made once, and checked by the fidelity gate, by the
driver), the actors open that same export folder (the exports cache at the same path on every node) with the same
runtime; each batch says what encoded it, and the run's summary says so.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from imgsearch.config import IndexSettings, ModelSpec
from imgsearch.errors import ClusterError, ImgSearchError, MissingExtraError, ModelLoadError
from imgsearch.images.decode import Decoded, default_pixel_limit
from imgsearch.images.loader import StageTimes, decode_files
from imgsearch.models.embed import Batch, encode_batch
from imgsearch.models.encoder import Encoder
from imgsearch.workers import importable_main, worker_context

LOCAL_OBJECT_STORE_BYTES = 1_500_000_000  # a local Ray's shared memory: enough for a few batches of pixels
DECODE_CHUNK = 16  # files per decode task batch


@dataclass(frozen=True)
class RaySettings:
    address: str  # "local" (start one here), "auto" (the cluster this machine belongs to), "ray://HOST:PORT"
    gpus_per_worker: float = 0.0  # GPUs per encoder actor; 0: encode on CPUs
    encoders: int = 0  # encoder actors; 0: one per GPU share, or one per 4 CPUs


def connect(address: str) -> bool:
    """Join (or start) the Ray cluster; True when this process started it (and must stop it)."""
    try:
        import ray
    except ImportError as exc:
        raise MissingExtraError("Ray is not installed here: pip install 'ray[data]' (the \"ray\" extra of imgsearch), "
                             "or leave out {param} to index on this machine.", "ray") from exc

    if ray.is_initialized():
        return False
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    try:
        if address == "local":
            ray.init(address="local", num_cpus=os.cpu_count(), object_store_memory=LOCAL_OBJECT_STORE_BYTES, **quiet)
            return True
        ray.init(address=address, **{k: v for k, v in quiet.items() if k != "include_dashboard"})
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterError(f"cannot join the Ray cluster at {address!r} ({exc}): start it (`ray start --head`), "
                             "or give {param} local to start one on this machine.", "ray") from exc
    return False


# A line of Ray's C++ core worker, which writes straight to this process's file descriptor 2: "[2026-12-05
# 20:48:42,210 E 10746 10746] core_worker.cc:2465: ...".
_RAY_LINE = re.compile(rb"^\[\d{4}-\d\d-\d\d [\d:,.]+ [DIWEF] \d+ \d+\] \S+:\d+: ")
# What it says on every Ray Data run, wrongly (ray-project/ray#57733: no argument of ours is in the object store)
_SPURIOUS = (b"has constructor arguments in the object store",)


@contextmanager
def ray_lines_attributed() -> Iterator[None]:
    """While Ray runs in this process, its core worker's log lines (its own format, naming neither Ray nor the run)
    would land in the middle of imgsearch's progress. Route file descriptor 2 through a pipe: such a line is passed
    on as "Ray: <message>", the known spurious one is dropped, anything else (the progress bar) passes at once.
    Enter it after Ray is started (its processes must not inherit the pipe)."""
    sys.stderr.flush()
    real = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        try:
            forward()
        except OSError:  # the pipe closed under it (a writer outlived the run): nothing more to pass on
            pass

    def forward() -> None:
        pending, line_start = b"", True
        while chunk := os.read(read_end, 1 << 16):
            pending += chunk
            while pending:
                if line_start and pending.startswith(b"["):  # maybe Ray's: wait for the whole line
                    end = pending.find(b"\n")
                    if end < 0:
                        break
                    line, pending = pending[:end + 1], pending[end + 1:]
                    found = _RAY_LINE.match(line)
                    if found is None:
                        os.write(real, line)
                    elif not any(s in line for s in _SPURIOUS):
                        os.write(real, b"Ray: " + line[found.end():])
                    continue
                end = pending.find(b"\n[")
                out, pending = (pending[:end + 1], pending[end + 1:]) if end >= 0 else (pending, b"")
                os.write(real, out)
                line_start = out.endswith(b"\n")
        if pending:
            os.write(real, pending)

    reader = threading.Thread(target=pump, name="ray-stderr", daemon=True)
    reader.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(real, 2)  # the pipe's last writer closes: the reader drains it and ends
        reader.join(timeout=5)
        os.close(read_end)
        os.close(real)


def _in_words(exc: BaseException) -> str:
    """A Ray failure in one line: what happened, then Ray's own first line (its messages run to a dozen lines of
    actor ids and addresses)."""
    text = str(exc)
    first = text.strip().splitlines()[0].strip() if text.strip() else ""
    if any(s in text for s in ("node has crashed", "node has died", "raylet")) or "NodeDied" in type(exc).__name__:
        what = "a node of the cluster died (its raylet or one of Ray's agents was stopped, or ran out of memory)"
    elif "ActorDied" in type(exc).__name__:
        what = "an encoder worker died"
    else:
        what = "Ray reported an error"
    return f"{what} ({type(exc).__name__}: {first[:200]})"


def cluster_nodes() -> int:
    import ray

    return sum(1 for node in ray.nodes() if node.get("Alive"))


def _decode(batch: dict, geometry, max_pixels: int, sampling) -> dict:
    """Ray Data stage 1 (tasks): paths -> pickled Decoded or Skipped, exactly as the local loader makes them."""
    items, _, _ = decode_files([str(p) for p in batch["path"]], geometry, max_pixels, sampling)
    return {"path": batch["path"], "item": np.array([pickle.dumps(i) for i in items], dtype=object)}


class _Encode:
    """Ray Data stage 2 (an actor: the model loads once): decoded pixels -> vectors; pixels are dropped. The model
    comes as class attributes of a subclass made per run (RayExecutor.embed): constructor arguments would sit in the
    object store."""

    spec: ModelSpec
    key: str
    export: Path | None  # the driver's export folder, when it encodes with one
    encoder: Encoder

    def __init__(self) -> None:
        from imgsearch.models.encoder import load_encoder
        from imgsearch.models.runtimes import ExportedEncoder

        spec, key = self.spec, self.key
        if self.export is not None:
            try:
                self.encoder = ExportedEncoder.from_folder(self.export, key, spec.name, spec.pretrained)
            except (ModelLoadError, ImportError, OSError) as exc:
                raise ClusterError(f"the exported model {self.export} cannot be used on {os.uname().nodename} "
                                   f"({exc}): every node needs the exports folder at the same path and the same "
                                   "runtime installed, or index with {param} torch.", "runtime") from exc
            return
        self.encoder = load_encoder(spec)
        if self.encoder.device == "cpu":
            import torch

            torch.set_num_threads(os.cpu_count() or 1)  # Ray gives a 1-CPU actor one thread: encode with the node's
        if self.encoder.info.key != key:  # the weights on this node differ from the driver's
            raise ClusterError(f"the model {spec.name} on {os.uname().nodename} is not the driver's (another "
                                 "checkpoint at the same path?): every node must see the same weights.")

    def __call__(self, batch: dict) -> dict:
        items = [pickle.loads(b) for b in batch["item"]]
        decoded = [i for i in items if isinstance(i, Decoded)]
        vectors: list[bytes] = [b""] * len(items)
        if decoded:
            rows = sum(d.rows for d in decoded)
            out = np.asarray(encode_batch(Batch(decoded=decoded), self.encoder, rows).vectors, dtype=np.float32)
            start = 0
            for n, item in enumerate(items):
                if isinstance(item, Decoded):
                    vectors[n] = out[start:start + item.rows].tobytes()
                    start += item.rows
        light = [pickle.dumps(replace(i, pixels=np.zeros(0, np.uint8)) if isinstance(i, Decoded) else i)
                 for i in items]
        return {"path": batch["path"], "item": np.array(light, dtype=object),
                "vectors": np.array(vectors, dtype=object),
                "encoder": np.array([self.encoder.describe()] * len(items), dtype=object)}


def _run(executor: "RayExecutor", address: str, paths: list[str]) -> Iterator[tuple[str, Any]]:
    """The driver's work: join (or start) Ray, run the dataset; yields ("nodes", count), then ("out", block) for
    each output block, then ("done", seconds). A Ray failure is raised as a ClusterError, in words."""
    started = connect(address)
    import ray

    # Ray Data's INFO lines would drown imgsearch's own progress and summary, and its ERROR lines (a 70-line stack
    # trace when a node dies) say what the exception below says: imgsearch reports that once, in words
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        with ray_lines_attributed():
            yield "nodes", cluster_nodes()
            start = time.perf_counter()
            for out in executor._outputs(paths):
                yield "out", out
            yield "done", time.perf_counter() - start
    except ray.exceptions.RayError as exc:
        raise ClusterError(f"the Ray cluster failed the run: {_in_words(exc)}. What was written before is kept: "
                           "run the command again.") from exc
    finally:
        if started:
            ray.shutdown()


def _drive(executor: "RayExecutor", address: str, paths: list[str], send) -> None:
    """A child process running `_run` and sending what it yields; an error goes as ("error", (class, message,
    param)) for the parent to raise, anything unforeseen as ("crash", its traceback). Ctrl-C (or the parent's
    SIGINT) stops Ray here before the process ends; a second one is ignored, as after the last word."""
    def interrupt_once(_signum: int, _frame: object) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt_once)
    try:
        for message in _run(executor, address, paths):
            if message[0] == "done":
                _tell(send, message)
            else:
                send.send(message)
    except (KeyboardInterrupt, BrokenPipeError):
        pass  # stopped by the parent, or the parent is gone: nobody to tell
    except ImgSearchError as exc:
        _tell(send, ("error", (type(exc), exc.template, exc.param)))
    except BaseException:
        _tell(send, ("crash", traceback.format_exc()))


def _tell(send, message: tuple) -> None:
    """The child's last word (the parent waits for the process to end after it, and interrupts it no more)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with suppress(OSError):  # the parent is gone
        send.send(message)


def _received(receive, child) -> Iterator[tuple[str, Any]]:
    """What the child process sends, its errors raised here; its end without a last word is told in words."""
    while True:
        try:
            kind, payload = receive.recv()
        except EOFError:
            child.join(60)
            raise ClusterError(
                f"Ray's driver process ended without a word (exit status {child.exitcode}): Ray's own processes on "
                "this machine stopped (its raylet or dashboard agent was killed, or ran out of memory). What was "
                "written before is kept: run the command again.") from None
        if kind == "error":
            cls, message, param = payload
            raise cls(message, param)
        if kind == "crash":
            raise RuntimeError(f"Ray's driver process failed:\n{payload}")
        yield kind, payload
        if kind == "done":
            return


class RayExecutor:
    """Decode and encode on a Ray cluster; `embed` yields the same Batches the local executor does."""

    def __init__(self, spec: ModelSpec, key: str, dim: int, geometry, settings: IndexSettings,
                 ray_settings: RaySettings, export: Path | None = None) -> None:
        self.spec, self.key, self.dim, self.geometry = spec, key, dim, geometry
        self.settings, self.ray_settings, self.export = settings, ray_settings, export
        self.nodes = 0
        self.encoded_by: set[str] = set()  # what the actors said they encoded with

    def describe(self) -> str:
        """"a Ray cluster of 2 nodes (OpenVINO 2026.4.1 fp32)": the runtime as the actors reported it."""
        used = f" ({', '.join(sorted(self.encoded_by))})" if self.encoded_by else ""
        return f"a Ray cluster of {self.nodes} node{'s' if self.nodes != 1 else ''}{used}"

    def embed(self, paths: Sequence[str], times: StageTimes) -> Iterator[Batch]:
        """Ray's driver runs in a child process (`_drive`), which sends Ray Data's output blocks here: when Ray's
        own processes on this machine stop (a raylet, the dashboard agent it fate-shares with), Ray's core worker
        ends the process it runs in on the spot, without a word; that process is then the child, and its end is
        told here in words, with what was written before kept. A process that started Ray itself (a program
        using imgsearch's API inside its own Ray session) runs the driver's part in that session, here."""
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            yield from self._batches(_run(self, self.ray_settings.address, list(paths)), times)
            return
        context: Any = worker_context()
        receive, send = context.Pipe(duplex=False)
        with importable_main():
            child = context.Process(target=_drive, args=(self, self.ray_settings.address, list(paths), send),
                                    name="imgsearch-ray-driver")
            child.start()
        send.close()
        try:
            yield from self._batches(_received(receive, child), times)
        finally:
            receive.close()
            if child.is_alive():  # stopped here (Ctrl-C, an error writing), or Ray shutting down after the last word
                with suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGINT)  # (ignored once the child has said its last word)
            child.join(60)
            if child.is_alive():
                child.kill()
                child.join()

    def _batches(self, messages: Iterator[tuple[str, Any]], times: StageTimes) -> Iterator[Batch]:
        seen: set[str] = set()
        for kind, payload in messages:
            if kind == "out":
                batch = self._batch(payload, seen)
                if batch.decoded or batch.skipped:
                    yield batch
            elif kind == "nodes":
                self.nodes = payload
            else:  # done
                times.add(encode_s=payload)

    def _outputs(self, paths: Sequence[str]) -> Iterator[dict]:
        """Ray Data's output blocks, in the driver (the child process)."""
        import ray
        import ray.data

        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the driver shows imgsearch's own progress
        context.verbose_stats_logs = False
        resources = ray.cluster_resources()
        gpus = self.ray_settings.gpus_per_worker
        actors = self.ray_settings.encoders or (
            max(1, int(resources.get("GPU", 0) // gpus)) if gpus else max(1, int(resources.get("CPU", 1)) // 4))
        max_pixels = self.settings.max_image_pixels or default_pixel_limit(max(1, int(resources.get("CPU", 1))))
        batch_size = self.settings.batch_size or (256 if gpus else 32)
        ds = ray.data.from_items([{"path": p} for p in paths],
                                 override_num_blocks=max(1, min(len(paths) // DECODE_CHUNK, 10_000)))
        ds = ds.map_batches(_decode, fn_kwargs={"geometry": self.geometry, "max_pixels": max_pixels,
                                                "sampling": self.settings.video},
                            batch_size=DECODE_CHUNK, batch_format="numpy", num_cpus=1)
        encode = type("Encode", (_Encode,), {"spec": self.spec, "key": self.key, "export": self.export})
        ds = ds.map_batches(encode, batch_size=batch_size,
                            batch_format="numpy", num_gpus=gpus or None, num_cpus=0 if gpus else 1,
                            compute=ray.data.ActorPoolStrategy(size=actors))
        yield from ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2)

    def _batch(self, out: dict, seen: set[str]) -> Batch:
        batch, rows = Batch(), []
        self.encoded_by.update(out["encoder"].tolist())
        for raw, vec in zip(out["item"], out["vectors"]):
            item = pickle.loads(raw)
            if item.path in seen:
                continue  # a block produced twice (a task retried after its node died): written once
            seen.add(item.path)
            if isinstance(item, Decoded):
                batch.decoded.append(item)
                rows.append(np.frombuffer(vec, dtype=np.float32).reshape(item.rows, self.dim))
            else:
                batch.skipped.append(item)
        batch.vectors = np.concatenate(rows) if rows else None
        return batch

