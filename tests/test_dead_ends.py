"""No dead ends and no tracebacks (the defects issue, item 3): damaged, read-only and half-made libraries,
torn index files, hostile inputs; each through the real CLI where users meet it."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.factories import write_photo
from tests.test_cli import cli

ROOT = Path(__file__).parent.parent


def _run(*args: str | Path, unprivileged: bool = False) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess; `unprivileged`: file permissions apply even to root (as on any user's disk)."""
    command = [sys.executable, "-m", "imgsearch", *map(str, args)]
    if unprivileged and os.geteuid() == 0:
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", *command]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def _make_library(tmp_path: Path, model: Path, n: int = 6) -> tuple[Path, Path]:
    pics, lib = tmp_path / "pics", tmp_path / "lib"
    for i in range(n):
        write_photo(pics / f"{i}.png", ("red", "green", "blue")[i % 3], size=(40, 30), seed=i)
    out = cli("index", pics, "-m", f"local-dir:{model}", "-L", lib, "--workers", "0")
    assert out.exit_code == 0, out.output
    return pics, lib


def _chmod_tree(folder: Path, dirs: int, files: int) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(dirs if path.is_dir() else files)


def test_read_only_library_can_be_searched_and_refuses_changes_without_advising_to_discard(
        tmp_path: Path, tiny_model_dir: Path) -> None:
    if shutil.which("setpriv") is None and os.geteuid() == 0:
        pytest.fail("setpriv (util-linux) is needed to test permissions as root")
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    pics, lib = _make_library(tmp_path, model)
    assert cli("search", "red", "-L", lib).exit_code == 0  # the search cache and index files exist
    _chmod_tree(lib, 0o555, 0o444)
    try:
        found = _run("search", "a red photo", "-L", lib, "--paths", unprivileged=True)
        assert found.returncode == 0, found.stderr
        assert len(found.stdout.splitlines()) == 6 and "Traceback" not in found.stderr
        assert _run("status", "-L", lib, unprivileged=True).returncode == 0
        for args in (("index", pics), ("tag", "--labels", "red,blue"), ("dups",)):
            refused = _run(*args, "-L", lib, unprivileged=True)
            assert refused.returncode == 1, refused.stderr
            assert "is read-only" in refused.stderr and "can be searched but not changed" in refused.stderr
            assert "move the library folder away" not in refused.stderr and "Traceback" not in refused.stderr
    finally:
        _chmod_tree(lib, 0o755, 0o644)


def test_a_read_only_library_reads_what_a_killed_writer_left_in_its_wal(tmp_path: Path, tiny_model_dir: Path) -> None:
    """kill -9 leaves committed work in library.db-wal; the library then made read-only must still show it (it
    showed the database as it was before the run: 1 photo of ~900)."""
    if shutil.which("setpriv") is None and os.geteuid() == 0:
        pytest.fail("setpriv (util-linux) is needed to test permissions as root")
    _, lib = _make_library(tmp_path, tiny_model_dir)
    writer = ("import os, sqlite3, sys\n"
              "db = sqlite3.connect(sys.argv[1])\n"
              "db.execute('PRAGMA wal_autocheckpoint=0')\n"
              "db.execute('DELETE FROM images WHERE id IN (SELECT id FROM images ORDER BY id LIMIT 2)')\n"
              "db.commit()\n"
              "os._exit(0)  # as if killed: no checkpoint, the commit is only in the WAL\n")
    subprocess.run([sys.executable, "-c", writer, str(lib / "library.db")], check=True)
    assert (lib / "library.db-wal").stat().st_size > 0
    _chmod_tree(lib, 0o555, 0o444)
    try:
        status = _run("status", "-L", lib, "--json", unprivileged=True)
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["indexed"] == 4  # 6 indexed, 2 deleted by the committed, unmerged write
        _chmod_tree(lib, 0o755, 0o644)
        (lib / "library.db-shm").unlink()  # without it SQLite cannot read the WAL read-only: said, not ignored
        _chmod_tree(lib, 0o555, 0o444)
        refused = _run("status", "-L", lib, unprivileged=True)
        assert refused.returncode == 1 and "can only read with write access" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
    finally:
        _chmod_tree(lib, 0o755, 0o644)


@pytest.mark.parametrize("command", [("status",), ("search", "red"), ("index",), ("dups",)])
def test_garbage_inside_the_database_is_named_not_a_traceback(tmp_path: Path, tiny_model_dir: Path,
                                                              command: tuple[str, ...]) -> None:
    _, lib = _make_library(tmp_path, tiny_model_dir, n=300)
    db = lib / "library.db"
    size = db.stat().st_size
    with open(db, "r+b") as f:  # the schema pages at the start survive, data pages further on do not
        f.seek(size * 6 // 10)
        f.write(os.urandom(size // 5))
    out = cli(*command, "-L", lib)
    assert out.exit_code == 1, out.output
    assert "library.db is not a readable SQLite database" in out.stderr and "library.db.bak-" in out.stderr
    assert "Traceback" not in out.output and isinstance(out.exception, SystemExit)
    assert "index your photo folders again (`imgsearch index FOLDER...`)" in " ".join(out.stderr.split())  # not a bare
    # `imgsearch index`, which a library moved away has no folders for


@pytest.mark.parametrize("command", [("search", "red"), ("dups",)])
def test_garbled_text_inside_the_database_is_named_not_a_traceback(tmp_path: Path, tiny_model_dir: Path,
                                                                   command: tuple[str, ...]) -> None:
    """Bytes that are not UTF-8 inside a stored path (a flipped bit on disk): the same "damaged" message."""
    pics, lib = _make_library(tmp_path, tiny_model_dir)
    cli("status", "-L", lib)  # a checkpoint: the rows are in library.db itself, not only in its WAL
    for side in ("library.db-wal", "library.db-shm"):
        (lib / side).unlink(missing_ok=True)
    data = bytearray((lib / "library.db").read_bytes())
    at = data.find(f"{pics}/1.png".encode())
    assert at > 0
    data[at + len(str(pics)) + 1] = 0xFF  # the 1 of 1.png
    (lib / "library.db").write_bytes(bytes(data))
    out = cli(*command, "-L", lib)
    assert out.exit_code == 1 and "library.db is not a readable SQLite database" in out.stderr, out.output
    assert "Could not decode to UTF-8" in out.stderr and "Traceback" not in out.output


def test_a_lost_manifest_is_recovered_from_the_database(tmp_path: Path, tiny_model_dir: Path) -> None:
    _, lib = _make_library(tmp_path, tiny_model_dir)
    (lib / "manifest.json").unlink()
    out = cli("search", "red", "-L", lib, "--paths")
    assert out.exit_code == 0 and len(out.stdout.splitlines()) == 6, out.output
    assert (lib / "manifest.json").is_file()


def test_a_library_killed_while_being_created_is_created_again(tmp_path: Path, tiny_model_dir: Path) -> None:
    pics = tmp_path / "pics"
    write_photo(pics / "a.png", "red", size=(40, 30))
    lib = tmp_path / "lib"
    lib.mkdir()
    import sqlite3

    sqlite3.connect(lib / "library.db").close()  # killed before any table was made, or the manifest written
    out = cli("index", pics, "-m", f"local-dir:{tiny_model_dir}", "-L", lib, "--workers", "0")
    assert out.exit_code == 0, out.output
    assert "1 new" in out.stderr and (lib / "manifest.json").is_file()


@pytest.mark.parametrize("damage", ["truncate", "middle"])
def test_a_torn_index_file_is_rebuilt(tmp_path: Path, tiny_model_dir: Path, damage: str) -> None:
    _, lib = _make_library(tmp_path, tiny_model_dir)
    [index_file] = list((lib / "indexes").glob("*.faiss"))
    data = index_file.read_bytes()
    index_file.write_bytes(data[:-1] if damage == "truncate" else data[:len(data) // 2] + os.urandom(64)
                           + data[len(data) // 2 + 64:])
    for command in (("search", "red", "--paths"), ("index",)):
        out = cli(*command, "-L", lib)
        assert out.exit_code == 0 and out.exception is None, (out.output, out.exception)
    assert len(cli("search", "red", "-L", lib, "--paths").stdout.splitlines()) == 6
    assert stat.S_ISREG(os.stat(next((lib / "indexes").glob("*.faiss"))).st_mode)


def _descendants(pid: int) -> set[int]:
    """Every process below `pid` now (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def _slow_pictures(folder: Path, n: int = 160) -> None:
    from PIL import Image
    import numpy as np

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(n):  # noise compresses badly: ~1 MB JPEGs, slow enough to decode for a kill to land mid-run
        Image.fromarray(rng.integers(0, 255, (700, 900, 3), dtype=np.uint8)).save(folder / f"{i:03d}.jpg", quality=95)


@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_stopping_an_indexer_leaves_no_process_behind(tmp_path: Path, tiny_model_dir: Path, how: str) -> None:
    import signal
    import time

    _slow_pictures(tmp_path / "pics")
    log = tmp_path / "stderr.txt"
    with open(log, "w") as err:  # a file, not a pipe: processes left behind would hold a pipe open forever
        proc = subprocess.Popen([sys.executable, "-m", "imgsearch", "index", str(tmp_path / "pics"), "-L",
                                 str(tmp_path / "lib"), "-m", f"local-dir:{tiny_model_dir}", "--workers", "2"],
                                stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT, start_new_session=True)
    seen: set[int] = set()
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and len(seen) < 4:  # forkserver, tracker, 2 workers
        seen |= _descendants(proc.pid)
        time.sleep(0.05)
    time.sleep(0.5)
    seen |= _descendants(proc.pid)
    assert proc.poll() is None and len(seen) >= 4, "the run ended before its workers could be seen"
    if how == "SIGKILL":
        proc.kill()
    else:  # Ctrl-C in a terminal reaches the whole process group
        os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=60)
    stderr = log.read_text()
    deadline = time.monotonic() + 15
    while _alive(seen) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(seen), f"left behind: {[Path(f'/proc/{p}/cmdline').read_text() for p in _alive(seen)]}"
    if how == "SIGINT":
        assert proc.returncode == 130 and "Interrupted" in stderr and "Traceback" not in stderr, stderr
        assert cli("index", "-L", tmp_path / "lib", "--workers", "0").exit_code == 0  # and the next run goes on


# --- files the crawler and the reader meet ---------------------------------------------------------

def test_a_file_larger_than_memory_is_skipped_and_recorded_not_fatal(tmp_path: Path, tiny_model_dir: Path) -> None:
    pics, lib = _make_library(tmp_path, tiny_model_dir)
    huge = pics / "huge.jpg"
    with open(huge, "wb") as f:
        f.truncate(1 << 40)  # 1 TB, sparse
    for _ in range(2):  # and the next run does not die on it either
        out = cli("index", "-L", lib, "--workers", "0")
        assert out.exit_code == 0 and out.exception is None, out.output
    assert "huge.jpg" in out.stderr or "1 skipped" in out.stderr
    skipped = cli("status", "-L", lib, "--skipped").stdout
    assert f"{huge}\tfile too large to read: 1.1 TB" in skipped


def test_a_file_over_2_gib_is_read_whole(tmp_path: Path) -> None:
    from imgsearch.images.decode import Geometry, decode_file

    photo = write_photo(tmp_path / "big.jpg", "red", fmt="JPEG")
    size = photo.stat().st_size
    with open(photo, "r+b") as f:
        f.truncate((2 << 30) + 4096)  # a valid JPEG, then 2 GiB of padding after its end marker
    decoded = decode_file(str(photo), Geometry(16, 16), 10**9)
    assert decoded.size == (2 << 30) + 4096 and decoded.size > size and decoded.pixels.shape == (16, 16, 3)


def test_a_path_longer_than_the_system_allows_is_listed_as_skipped(tmp_path: Path, tiny_model_dir: Path) -> None:
    pics, lib = _make_library(tmp_path, tiny_model_dir, n=2)
    here = os.getcwd()
    try:
        os.chdir(pics)
        for _ in range(20):  # 20 x 250 bytes: past PATH_MAX (4096), each step relative
            os.mkdir("d" * 250)
            os.chdir("d" * 250)
        write_photo(Path("deep.png"), "blue", size=(20, 20))
    finally:
        os.chdir(here)
    out = cli("index", "-L", lib, "--workers", "0")
    assert out.exit_code == 0, out.output
    skipped = cli("status", "-L", lib, "--skipped").stdout
    assert "path too long for this system" in skipped and str(pics / ("d" * 250)) in skipped


def test_a_root_given_by_a_link_and_by_its_real_path_is_indexed_once(tmp_path: Path, tiny_model_dir: Path) -> None:
    pics, lib = _make_library(tmp_path, tiny_model_dir, n=3)
    (tmp_path / "alias").symlink_to(pics)
    out = cli("index", pics, tmp_path / "alias", "-L", lib, "--workers", "0")
    assert out.exit_code == 0 and "3 photo(s) searchable" in out.stderr, out.output
    (pics / "inner").symlink_to(pics)  # a link inside a root back to it: walked once too
    assert "3 photo(s) searchable" in cli("index", "-L", lib, "--workers", "0").stderr


def test_control_characters_in_names_never_reach_the_terminal_raw(tmp_path: Path, tiny_model_dir: Path) -> None:
    pics = tmp_path / "pics"
    evil = pics / "a\x1b[2Jb\nc.png"
    write_photo(evil, "red", size=(20, 20))
    (pics / "bad\x1b[31m.jpg").write_bytes(b"not a jpeg")
    lib = tmp_path / "lib"
    out = cli("index", pics, "-m", f"local-dir:{tiny_model_dir}", "-L", lib, "--workers", "0")
    assert out.exit_code == 0 and "\x1b" not in out.stderr and "bad\\x1b[31m.jpg" in out.stderr
    table = cli("search", "red", "-L", lib)
    assert "\x1b" not in table.stdout and "a\\x1b[2Jb\\nc.png" in table.stdout
    assert "\x1b" not in cli("status", "-L", lib, "--skipped").stdout
    assert str(evil) in [json.loads(line)["path"] for line in cli("search", "red", "-L", lib, "--json").stdout.splitlines()]


# --- what users type ---------------------------------------------------------------------------------

@pytest.mark.parametrize("offset", [10**8, 10**11])
def test_a_huge_offset_pages_past_the_end_without_materialising_anything(tmp_path: Path, tiny_model_dir: Path,
                                                                          offset: int) -> None:
    _, lib = _make_library(tmp_path, tiny_model_dir)
    assert cli("search", "red", "-L", lib).exit_code == 0  # cached: the next searches load no model

    def peak_kb(offset: int) -> tuple[int, str, str]:
        proc = subprocess.Popen([sys.executable, "-m", "imgsearch", "search", "red", "--offset", str(offset), "-L",
                                 str(lib)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        out, err = proc.stdout.read(), proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, err
        return usage.ru_maxrss, out, err

    normal, _, _ = peak_kb(0)
    peak, out, err = peak_kb(offset)
    assert out == "" and "No results" in err and "Traceback" not in err, err
    assert peak - normal < 100_000  # KB: no array of 10**8 results (1.2 GB) was made



@pytest.mark.parametrize("args,message", [
    (("--min-size", str(10**20)), "--min-size must be between 1 and 1,000,000 pixels"),
    (("@http://[::1",), "is not a valid URL"),
    (("@http://a b",), "is not a valid URL"),
    (("1" * 400 + ":red",), "is out of range: weights are numbers between -100 and 100"),
])
def test_extreme_values_are_usage_errors_not_tracebacks(tmp_path: Path, tiny_model_dir: Path, args: tuple,
                                                        message: str) -> None:
    _, lib = _make_library(tmp_path, tiny_model_dir)
    query = () if args[0].startswith(("@", "1")) else ("red",)
    out = cli("search", *query, *args, "-L", lib)
    assert isinstance(out.exception, SystemExit), out.exception
    assert out.exit_code == 2 and message in out.stderr, out.output


def test_dates_before_the_year_1000_compare_as_dates(tmp_path: Path, tiny_model_dir: Path) -> None:
    _, lib = _make_library(tmp_path, tiny_model_dir)
    before = cli("search", "red", "-L", lib, "--before", "0999", "--paths")
    after = cli("search", "red", "-L", lib, "--after", "0999", "--paths")
    assert before.stdout == "" and len(after.stdout.splitlines()) == 6


def test_copy_to_an_impossible_folder_is_an_error_not_a_traceback(tmp_path: Path, tiny_model_dir: Path) -> None:
    _, lib = _make_library(tmp_path, tiny_model_dir)
    out = cli("search", "red", "-L", lib, "--copy-to", "/proc/nope")
    assert out.exit_code == 1 and "cannot make the folder /proc/nope" in out.stderr and out.exception is not None
    assert isinstance(out.exception, SystemExit)
    again = cli("search", "red", "-L", lib, "--copy-to", tmp_path / "sel", "-k", "3")
    twice = cli("search", "red", "-L", lib, "--copy-to", tmp_path / "sel", "-k", "3")
    assert "Copied 3 file(s)" in again.stderr and "Copied 0 file(s)" in twice.stderr and "3 already there" in twice.stderr
    assert len(list((tmp_path / "sel").iterdir())) == 3


# --- query images by URL ---------------------------------------------------------------------------

class _Tricky:
    """A local HTTP server: /slow sends one byte every 0.3 s, /drip-headers its headers so, /ftp redirects to ftp://."""

    def __enter__(self) -> str:
        import http.server
        import threading
        import time

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                if self.path == "/drip-headers":  # the status line itself, a byte at a time, for ever
                    try:
                        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"y" * 10_000:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(0.3)
                    except OSError:
                        pass
                    return
                if self.path == "/ftp":
                    self.send_response(302)
                    self.send_header("Location", "ftp://127.0.0.1/secret.jpg")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                try:
                    for _ in range(40):
                        self.wfile.write(b"x")
                        self.wfile.flush()
                        time.sleep(0.3)
                except OSError:
                    pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()


def test_a_slow_server_cannot_hold_a_search_past_the_timeout() -> None:
    from imgsearch.errors import NetworkError
    from imgsearch.search.fetch import fetch_url

    with _Tricky() as base, pytest.raises(NetworkError, match="took over 2 s"):  # only the deadline says this
        fetch_url(f"{base}/slow", timeout_s=2.0)  # each byte arrives well within any per-read timeout


def test_a_server_dripping_its_headers_cannot_keep_the_process_alive() -> None:
    """The deadline ends the search, and then the process too: the download left waiting for headers must not hold
    the interpreter's exit (it did, for ever: a search printed its error and never returned to the shell)."""
    probe = (
        "import sys\n"
        "from imgsearch.errors import NetworkError\n"
        "from imgsearch.search.fetch import fetch_url\n"
        "try:\n"
        "    fetch_url(sys.argv[1], timeout_s=1.0)\n"
        "except NetworkError as exc:\n"
        "    print('error:', exc, flush=True)\n"
    )
    with _Tricky() as base:
        done = subprocess.run([sys.executable, "-c", probe, f"{base}/drip-headers"], capture_output=True, text=True,
                              timeout=120, cwd=ROOT)
    assert done.returncode == 0 and "took over 1 s" in done.stdout, done.stdout + done.stderr


def test_a_redirect_to_another_scheme_is_not_followed() -> None:
    from imgsearch.errors import NetworkError
    from imgsearch.search.fetch import fetch_url

    with _Tricky() as base, pytest.raises(NetworkError, match="redirects to 'ftp://127.0.0.1/secret.jpg'.*not followed"):
        fetch_url(f"{base}/ftp")
