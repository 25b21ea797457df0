"""`imgsearch watch`: a real process on real folders, synchronised on the lines it prints (never on a fixed sleep)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from imgsearch import Library
from tests.factories import write_photo

LIMIT_S = 180  # bounds a watcher that never says what the test waits for; the test itself waits on its lines


class Watcher:
    """A process that keeps the library up to date (`imgsearch watch`, `imgsearch serve --watch`) and its log."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        self.seen = 0
        self.process = subprocess.Popen([sys.executable, "-m", "imgsearch", "watch", *args], stdout=subprocess.DEVNULL,
                                        stderr=log.open("w"), text=True)

    @classmethod
    def following(cls, process: subprocess.Popen, log: Path) -> Watcher:
        watcher = cls.__new__(cls)
        watcher.log, watcher.seen, watcher.process = log, 0, process
        return watcher

    def wait_for(self, text: str) -> str:
        """The next line (after those already waited for) that contains `text`."""
        deadline = time.monotonic() + LIMIT_S
        while time.monotonic() < deadline:
            lines = self.log.read_text().splitlines()
            for n in range(self.seen, len(lines)):
                if text in lines[n]:
                    self.seen = n + 1
                    return lines[n]
            if self.process.poll() is not None:
                raise AssertionError(f"imgsearch watch exited {self.process.returncode}: {self.log.read_text()}")
            time.sleep(0.05)
        self.process.kill()
        raise AssertionError(f"imgsearch watch never said {text!r}: {self.log.read_text()}")


def _paths(lib) -> set[str]:
    from imgsearch import store

    with lib.session() as session:
        return {Path(r.path).name for r in store.indexed_photos(session)}


def test_new_changed_moved_and_deleted_photos_are_indexed_as_they_happen(tmp_path: Path, tiny_model_dir: Path) -> None:
    photos, lib_dir = tmp_path / "photos", tmp_path / "lib"
    write_photo(photos / "red.jpg", "red", seed=1)
    write_photo(photos / "blue.jpg", "blue", seed=2)
    (lib_dir.parent / "elsewhere").mkdir()
    watcher = Watcher([str(photos), "-L", str(lib_dir), "--model", f"local-dir:{tiny_model_dir}", "--workers", "0"],
                      tmp_path / "watch.log")
    try:
        assert "2 new" in watcher.wait_for("Indexed: ")
        watcher.wait_for("Watching 1 folder(s)")
        write_photo(photos / "trip" / "green.png", "green", seed=3)  # a new folder with a new photo in it
        assert "1 new" in watcher.wait_for("Indexed: ")
        assert _paths_of(lib_dir) == {"red.jpg", "blue.jpg", "green.png"}
        os.replace(photos / "blue.jpg", photos / "trip" / "blue moved.jpg")
        assert "1 moved" in watcher.wait_for("Indexed: ")
        (photos / "red.jpg").unlink()
        assert "1 removed" in watcher.wait_for("Indexed: ")
        assert _paths_of(lib_dir) == {"green.png", "blue moved.jpg"}
        (photos / "notes.txt").write_text("not a photo")  # nothing to index: no run, nothing said
        shutil.move(str(photos / "trip"), str(lib_dir.parent / "elsewhere" / "trip"))  # a folder moved out
        assert "2 removed" in watcher.wait_for("Indexed: ")
        assert _paths_of(lib_dir) == set()
    finally:
        watcher.process.send_signal(signal.SIGINT)
        assert watcher.process.wait(timeout=60) == 0
    assert "Stopped watching." in watcher.log.read_text() and "Traceback" not in watcher.log.read_text()


def _paths_of(lib_dir: Path) -> set[str]:
    with Library.open(lib_dir) as lib:
        return _paths(lib)


def test_serve_watch_keeps_the_served_library_up_to_date(tmp_path: Path, tiny_model_dir: Path) -> None:
    import httpx

    from tests.programs import start_server

    photos, lib_dir = tmp_path / "photos", tmp_path / "lib"
    write_photo(photos / "red.jpg", "red", seed=1)
    subprocess.run([sys.executable, "-m", "imgsearch", "index", str(photos), "-L", str(lib_dir), "--model",
                    f"local-dir:{tiny_model_dir}", "--workers", "0"], check=True, capture_output=True)
    process, url = start_server(lib_dir, tmp_path / "serve.log", "--watch")
    server = Watcher.following(process, tmp_path / "serve.log")
    try:
        server.wait_for("Watching the library's folders")
        write_photo(photos / "green.png", "green", seed=3)
        assert "1 new" in server.wait_for("Indexed: ")
        status = httpx.get(url + "api/v1/status").json()
        assert status["indexed"] == 2 and "last run" in status["watching"] and "1 new" in status["watching"]
        page = httpx.get(url + "status").text
        assert "Watching" in page and "2 indexed" in page
    finally:
        process.terminate()
        process.wait(timeout=60)
