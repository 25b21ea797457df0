"""One Library shared by threads (as a web server shares it), while another process indexes."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from imgsearch.config import IndexSettings, ModelSpec, SearchOptions
from imgsearch.filters import Filters
from imgsearch.search.query import parse_query
from tests.factories import write_photo

FAKE = ModelSpec("fake", None)
COLOURS = ("red", "green", "blue", "yellow")
PER_COLOUR = 6
OTHER = 240  # magenta and cyan photos the other process indexes meanwhile
THREADS = 8


def test_eight_threads_share_one_library_while_another_process_indexes(library, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    mine = {c: {str(write_photo(a / f"{c}-{i}.jpg", c, fmt="JPEG", seed=10 * n + i)) for i in range(PER_COLOUR)}
            for n, c in enumerate(COLOURS)}
    for i in range(OTHER):
        write_photo(b / f"other-{i:03d}.png", "magenta" if i % 2 else "cyan", size=(32, 24), seed=1000 + i)
    library.index([a], FAKE, IndexSettings(workers=0))
    first = len(COLOURS) * PER_COLOUR

    worker = subprocess.Popen([sys.executable, "-m", "tests.crash_worker", str(library.path), str(b)],
                              stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)
    assert worker.stdout is not None
    assert worker.stdout.readline().strip().isdigit()  # the other process is encoding now
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(worker.stdout), daemon=True)
    reader.start()

    wrong: list[str] = []
    done = {n: 0 for n in range(THREADS)}

    def check(ok: bool, what: str) -> None:
        if not ok:
            wrong.append(what)

    def work(n: int) -> None:
        step = 0
        try:
            while (worker.poll() is None or step < 8) and step < 400:
                colour = COLOURS[(n + step) % len(COLOURS)]
                op = (n + step) % 5
                if op == 0:
                    hits = library.search_text(f"a {colour} photo", k=PER_COLOUR)
                    check({h.path for h in hits} == mine[colour], f"text search for {colour}: {hits}")
                    check([h.score for h in hits] == sorted((h.score for h in hits), reverse=True), "score order")
                elif op == 1:
                    hits = library.search(parse_query([colour]), SearchOptions(k=10, filters=Filters(folder=str(a))))
                    check(all(h.path.startswith(f"{a}/") for h in hits) and len(hits) == 10, f"folder filter: {hits}")
                    check({h.path for h in hits[:PER_COLOUR]} == mine[colour], f"filtered ranking for {colour}")
                elif op == 2:
                    st = library.status()
                    check(first <= st.indexed <= first + OTHER and str(a) in [r for r, _, _ in st.roots],
                          f"status: {st.indexed} indexed, roots {st.roots}")
                elif op == 3:
                    images, written = library.tag(list(COLOURS), top=1)
                    check(first <= images <= first + OTHER and written == images, f"tag: {images}, {written}")
                else:
                    query = sorted(mine[colour])[0]
                    hits = library.search_image(query, k=PER_COLOUR - 1)
                    check({h.path for h in hits} == mine[colour] - {query}, f"image search for {colour}: {hits}")
                step += 1
        except Exception as exc:  # every failure is reported below
            wrong.append(f"thread {n}: {type(exc).__name__}: {exc}")
        done[n] = step

    threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert worker.wait(timeout=120) == 0
    reader.join(timeout=10)
    assert not wrong, wrong[:5]
    assert all(steps >= 8 for steps in done.values()), done
    assert lines and lines[-1].strip() == "done", lines[-3:]
    assert time.perf_counter() - started < 180
    assert library.status().indexed == first + OTHER
    assert all("other-" in h.path for h in library.search_text("magenta", k=OTHER // 2))
