"""Indexing on a real Ray cluster: a local Ray in this process gives the same library as the local executor,
vector for vector; a two-node cluster (two `ray start` processes on this machine) loses no photo when a node is
killed mid-run."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgsearch import store
from imgsearch.config import IndexSettings, ModelSpec
from imgsearch.library import Library
from tests.factories import write_video
from tests.programs import free_port

DATA = Path(__file__).parent / "data" / "photos"
RAY_OBJECT_STORE = 300_000_000


def derived_photos(folder: Path, n: int, size: tuple[int, int] = (160, 120)) -> Path:
    """`n` different photographs: crops of the real photos in tests/data, resized."""
    sources = [Image.open(p).convert("RGB") for p in sorted(DATA.glob("*.jpg"))]
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        src = sources[i % len(sources)]
        w, h = src.size
        cw, ch = int(w * rng.uniform(0.5, 1)), int(h * rng.uniform(0.5, 1))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        src.crop((x, y, x + cw, y + ch)).resize(size).save(folder / f"p{i:04d}.jpg", quality=90)
    return folder


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray in this process, as a user's `ray.init()` would start it (2 CPUs, capped object store)."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=RAY_OBJECT_STORE,
             log_to_driver=False, logging_level=logging.ERROR)
    yield ray
    ray.shutdown()


def test_the_ray_executor_builds_the_same_library_as_the_local_one(tmp_path: Path, local_ray,
                                                                   tiny_model_dir: Path) -> None:
    pics = derived_photos(tmp_path / "pics", 240)
    (pics / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    write_video(pics / "clip.mp4", [(2, Image.open(DATA / "dress-0.jpg").convert("RGB").resize((96, 72))),
                                    (2, Image.open(DATA / "shoes-4.jpg").convert("RGB").resize((96, 72)))])
    spec = ModelSpec(f"local-dir:{tiny_model_dir}", None)
    reports, found = [], []
    for name, settings in (("local", IndexSettings(workers=2)), ("ray", IndexSettings(ray="local"))):
        with Library.open(tmp_path / name, create=True) as lib:
            reports.append(lib.index([pics], spec, settings))
            found.append(_vectors(lib))
            assert lib.skipped() == [(str(pics / "broken.jpg"), reports[-1].skipped_now[0][1])]
    local, ray_run = reports
    assert (ray_run.new, ray_run.skipped, ray_run.indexed_total) == (local.new, local.skipped, local.indexed_total) \
        == (241, 1, 242)  # 240 photos and a video (2 frames in the index), one broken file
    assert ray_run.skipped_now == local.skipped_now
    assert ray_run.executor.startswith("a Ray cluster of 1 node (PyTorch ") and local.executor.startswith("this machine (PyTorch ")
    assert found[0].keys() == found[1].keys()
    cosines = [float(found[0][k] @ found[1][k]) for k in found[0]]
    assert min(cosines) >= 0.9999, min(cosines)
    with Library.open(tmp_path / "ray") as lib:
        assert lib.status().last_run["executor"] == ray_run.executor


@pytest.mark.parametrize("runtime", ["onnx", "openvino"])
def test_ray_workers_encode_with_the_drivers_export(tmp_path: Path, local_ray, trained_model_dir: Path, runtime: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU cluster gets the exported runtime's speed: the driver exports (and gates) the model once, the actors
    open that export, and say so; int8 (whose vectors differ from PyTorch's measurably) gives the local int8 run's
    vectors, not PyTorch's."""
    from imgsearch.models import runtimes
    from imgsearch.config import Precision

    monkeypatch.setenv("IMGSEARCH_CACHE", str(tmp_path / "cache"))
    pics = derived_photos(tmp_path / "pics", 48)
    spec = ModelSpec(f"local-dir:{trained_model_dir}", None)
    found, reports = {}, {}
    for name, settings in (("torch", IndexSettings(workers=0, runtime="torch")),
                           ("local", IndexSettings(workers=0, runtime=runtime, precision=Precision.INT8)),
                           ("ray", IndexSettings(ray="local", runtime=runtime, precision=Precision.INT8))):
        with Library.open(tmp_path / name, create=True) as lib:
            reports[name] = lib.index([pics], spec, settings)
            found[name] = _vectors(lib)
    used = f"{runtimes.display_name(runtime)} {runtimes.version(runtime)} int8"
    assert reports["local"].executor == f"this machine ({used})", reports["local"].executor
    assert reports["ray"].executor == f"a Ray cluster of 1 node ({used})", reports["ray"].executor
    assert reports["ray"].new == reports["local"].new == 48
    same = [float(found["local"][k] @ found["ray"][k]) for k in found["local"]]
    off_torch = [float(found["torch"][k] @ found["ray"][k]) for k in found["torch"]]
    assert min(same) >= 0.99999, min(same)  # the one export, run alike
    assert min(off_torch) < min(same), (min(off_torch), min(same))  # ...not PyTorch


def test_rays_own_stderr_lines_are_attributed_or_dropped(capfd: pytest.CaptureFixture) -> None:
    """Ray's C++ core worker writes its log lines straight to file descriptor 2; during a run they are passed on as
    "Ray: ...", the spurious line every Ray Data run prints is dropped, and everything else (a progress bar's
    carriage returns, text with brackets) passes unchanged."""
    from indexer.executors.ray import ray_lines_attributed

    capfd.readouterr()
    with ray_lines_attributed():
        os.write(2, b"[2026-12-05 20:48:42,210 E 10746 10746] core_worker.cc:2465: Actor with class name: 'MapWorker"
                    b"(MapBatches(Encode))' and ID: 'edc6' has constructor arguments in the object store and "
                    b"max_restarts > 0.\n")
        os.write(2, b"\r 50%|#####     | 3/6 [00:01<00:01]")
        os.write(2, b"\r100%|##########| 6/6 [00:02<00:00]\n[2026-12-05 20:48:43,001 W 10746 10760] raylet_client")
        os.write(2, b".cc:90: the object store is full\n[not Ray] a line of our own\n")
    assert capfd.readouterr().err == ("\r 50%|#####     | 3/6 [00:01<00:01]\r100%|##########| 6/6 [00:02<00:00]\n"
                                      "Ray: the object store is full\n[not Ray] a line of our own\n")


def test_a_ray_failure_is_one_line_in_words() -> None:
    """Ray's failures run to a dozen lines of actor ids and addresses: the run's error says what happened in words,
    with Ray's first line, on one line."""
    import ray.exceptions

    from indexer.executors.ray import _in_words

    died = ray.exceptions.RayError("The actor died because its node has died. Node Id: d2e7\n\tclass_name: MapWorker"
                                   "\n\tthe actor's node was terminated: dashboard_agent failed and raylet fate-shares")
    said = _in_words(died)
    assert "\n" not in said and said.startswith("a node of the cluster died") and "Node Id: d2e7)" in said
    assert _in_words(ray.exceptions.RayError("out of disk\nmore")) == "Ray reported an error (RayError: out of disk)"


def _vectors(lib: Library) -> dict[str, np.ndarray]:
    """Each still's vector by path, each video frame's by path and time."""
    with lib.session() as session:
        model = store.list_models(session)[0]
        ids, vectors = store.load_vectors(session, model.id, model.dim, frames=True)
        owners = store.frame_owners(session, ids.tolist())
        paths = store.paths_for(session, [owners.get(i, (i, 0))[0] for i in ids.tolist()])
    return {(paths[owners[i][0]] + f"@{owners[i][1]}" if i in owners else paths[i]): v
            for i, v in zip(ids.tolist(), vectors)}


def _ray(*args: str) -> subprocess.Popen:
    """`ray start ... --block` in a session of its own: the node and every process it starts die together."""
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.Popen([str(Path(sys.executable).with_name("ray")), "start", *args, "--block",
                             f"--object-store-memory={RAY_OBJECT_STORE}", "--node-ip-address=127.0.0.1"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _kill_session(sid: int) -> int:
    """SIGKILL every process of a session (a Ray node: its raylet, object store and workers)."""
    killed = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # session id
            try:
                os.kill(int(stat.parent.name), signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
    return killed


def _cluster_cpus(port: int) -> float:
    probe = subprocess.run([sys.executable, "-c", "import logging, ray; ray.init(address='127.0.0.1:%d', "
                            "logging_level=logging.ERROR); print(ray.cluster_resources().get('CPU', 0))" % port],
                           capture_output=True, text=True, timeout=120, env={**os.environ, "RAY_AUTH_MODE": "token"})
    try:
        return float(probe.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return 0.0


def under_way(run: subprocess.Popen, lib: Path) -> None:
    """Return once the run has written its first batch (polling the library it writes), while it still runs."""
    committed = 0
    while run.poll() is None and committed < 32:
        time.sleep(0.2)
        try:
            with sqlite3.connect(f"file:{lib / 'library.db'}?mode=ro", uri=True, timeout=1) as db:
                committed = db.execute("SELECT count(*) FROM images").fetchone()[0]
        except sqlite3.Error:
            pass
    assert run.poll() is None, "the run ended before it could be disturbed"


def test_a_node_killed_mid_run_loses_no_photo(tmp_path: Path, tiny_model_dir: Path) -> None:
    pics = derived_photos(tmp_path / "pics", 400, size=(1200, 900))  # big enough that decoding takes a while
    port = free_port()
    nodes = [_ray("--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false", "--disable-usage-stats")]
    try:
        deadline = time.monotonic() + 90
        while _cluster_cpus(port) < 1 and time.monotonic() < deadline:
            time.sleep(1)
        nodes.append(_ray(f"--address=127.0.0.1:{port}", "--num-cpus=2"))  # the second node
        while _cluster_cpus(port) < 3 and time.monotonic() < deadline:
            time.sleep(1)
        assert _cluster_cpus(port) == 3, "the two-node cluster did not come up"
        lib = tmp_path / "lib"
        driver = subprocess.Popen([sys.executable, "-m", "imgsearch", "index", str(pics), "-L", str(lib), "-m",
                                   f"local-dir:{tiny_model_dir}", "--ray", f"127.0.0.1:{port}"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, "RAY_AUTH_MODE": "token"})
        under_way(driver, lib)
        assert _kill_session(nodes[1].pid) >= 3  # the second node dies: raylet, object store, workers
        _, stderr = driver.communicate(timeout=600)
        assert driver.returncode == 0, stderr[-3000:]
        assert "400 new" in stderr and "0 skipped" in stderr, stderr[-1000:]
        assert "core_worker.cc" not in stderr, stderr[-3000:]  # Ray's own lines: attributed, or dropped if spurious
        with sqlite3.connect(lib / "library.db") as db:
            assert db.execute("SELECT count(*), count(DISTINCT path) FROM images").fetchone() == (400, 400)
            assert db.execute("SELECT count(*) FROM embeddings").fetchone()[0] == 400  # each photo once
    finally:
        for node in nodes:
            _kill_session(node.pid)


def _descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every process below `pid`."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            children.setdefault(int(stat.read_text().rsplit(")", 1)[1].split()[1]), []).append(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            try:
                found.append((child, (Path("/proc") / str(child) / "cmdline").read_bytes().replace(b"\0", b" ").decode()))
            except OSError:
                continue
            todo.append(child)
    return found


def test_killing_rays_dashboard_agent_ends_the_run_with_a_message(tmp_path: Path, tiny_model_dir: Path) -> None:
    """Ray's raylet fate-shares with its dashboard agent, and its core worker then ends the driver's process on the
    spot (exit 1, no Python runs). The driver is a child process: the command says what happened, in words, exits
    1, and keeps what was written."""
    pics = derived_photos(tmp_path / "pics", 400, size=(1200, 900))
    lib = tmp_path / "lib"
    run = subprocess.Popen([sys.executable, "-m", "imgsearch", "index", str(pics), "-L", str(lib), "-m",
                            f"local-dir:{tiny_model_dir}", "--ray", "local"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        under_way(run, lib)
        agents = [pid for pid, cmd in _descendants(run.pid) if "dashboard" in cmd and "agent" in cmd]
        assert agents, _descendants(run.pid)
        for pid in agents:
            os.kill(pid, signal.SIGKILL)
        _, stderr = run.communicate(timeout=600)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        _kill_session(run.pid)
    assert run.returncode == 1, stderr[-3000:]
    assert "Error: Ray's driver process ended without a word" in stderr and "Traceback" not in stderr, stderr[-3000:]
    with sqlite3.connect(lib / "library.db") as db:
        kept = db.execute("SELECT count(*) FROM images").fetchone()[0]
    assert 32 <= kept <= 400


def test_without_ray_installed_the_message_names_the_fix(tmp_path: Path, tiny_model_dir: Path) -> None:
    pics = derived_photos(tmp_path / "pics", 3)
    blocker = tmp_path / "no-ray"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['ray'] = None  # as if not installed\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(blocker), os.environ.get("PYTHONPATH")]))}
    got = subprocess.run([sys.executable, "-m", "imgsearch", "index", str(pics), "-L", str(tmp_path / "lib"), "-m",
                          f"local-dir:{tiny_model_dir}", "--ray", "local"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert got.returncode == 1 and "Ray is not installed here: pip install 'ray[data]'" in got.stderr, got.stderr
    assert "Traceback" not in got.stderr
    fix = got.stderr.split("installed here: ")[1].split(" (")[0]
    done = subprocess.run([sys.executable, "-m", *fix.replace("'", "").split()], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr  # installed here already: pip says so
