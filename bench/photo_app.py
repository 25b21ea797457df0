"""The photo app in a real browser (Debian's chromium through playwright) against a real `imgsearch serve`, on a
library of --photos photos, beside the same flows on a library of --baseline photos in the same run (the ratio shows
whether the page's cost grows with the library).

The libraries' rows point at the real photos of ../shared/data/clothing (symbolic links, cycled: 3,409 files, so
3,409 contents and their thumbnails, made first as `index --thumbnails` makes them), with
dates spread over ten years and GPS positions around 40 cities for 60% of them; thumbnails and previews are made by
the server from the real files, as for any library. No model is needed: the timeline, the viewer and the map ask none.

Measured: the timeline's first paint (warm: the second load), a jump to the oldest year with the scrubber, the
viewer's next photo (preview not made yet, then made), the map's time to its first drawing with every point, and the
frames per second while it is dragged around.

    python bench/photo_app.py --photos 100000 --baseline 1000
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.programs import start_server  # `imgsearch serve` as a user starts it

CLOTHING = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "clothing"
CHROMIUM = os.environ.get("IMGSEARCH_CHROMIUM", "/usr/bin/chromium")
CITIES = np.random.default_rng(7).uniform([-40, -120], [60, 140], (40, 2))


def build(lib_dir: Path, links: Path, n: int) -> None:
    from imgsearch import store
    from imgsearch.library import Library
    from imgsearch.progress import SilentProgress
    from indexer.pipeline import RunReport, _fill_places

    sources = sorted(CLOTHING.rglob("*.jpg"))
    rng = np.random.default_rng(n)
    links.mkdir(parents=True)
    start = datetime(2015, 1, 1)
    with Library.open(lib_dir, create=True) as lib:
        records = []
        for i in range(n):
            real = sources[i % len(sources)]
            link = links / f"{i:06d}.jpg"
            link.symlink_to(real)
            lat = lon = None
            if rng.random() < 0.6:
                lat, lon = CITIES[rng.integers(len(CITIES))] + rng.normal(0, 0.05, 2)
            records.append((store.ImageRecord(str(link), real.stat().st_size, 1, f"src-{i % len(sources)}", 640, 480, "JPEG",
                                              start + timedelta(seconds=int(rng.integers(0, 10 * 365 * 86400))),
                                              None, None, lat, lon, None, str(real.resolve())), None))
        with lib.sessions.begin() as session:
            for lo in range(0, n, 10_000):
                store.save_images(session, records[lo:lo + 10_000])
        _fill_places(lib.sessions, SilentProgress(), RunReport())  # names the places as index does
        lib.make_thumbnails()  # as `index --thumbnails` does (one per content: the 3,409 files)


VISIBLE_DONE = """() => { const imgs = [...document.querySelectorAll('#timeline .tile img')]
    .filter(i => { const r = i.getBoundingClientRect(); return r.bottom > 0 && r.top < innerHeight; });
  return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }"""


def measure(browser, url: str) -> dict[str, float]:
    out: dict[str, float] = {}
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(url + "/")
    page.wait_for_function(VISIBLE_DONE, timeout=120_000)  # cold: thumbnails made
    paints = []
    for _ in range(3):
        page.goto(url + "/")
        page.wait_for_function(VISIBLE_DONE, timeout=120_000)
        paints.append(page.evaluate("performance.now()"))
    out["first paint, warm (ms)"] = statistics.median(paints)
    jumps = []
    # timed in the page, from the click's event to the first frame where every tile on screen shows its picture (the
    # driver's own waits before and after a click are not the page's)
    page.evaluate("() => { const done = " + VISIBLE_DONE + """;
        document.addEventListener('click', () => { window.clickedAt = performance.now(); window.doneAt = null;
          const poll = () => { if (done()) window.doneAt = performance.now(); else requestAnimationFrame(poll); };
          requestAnimationFrame(poll); }, true); }""")
    for year in page.locator("#scrubber a").all_inner_texts()[::-1][:3]:  # the oldest years first
        page.click(f"#scrubber a:text-is('{year}')")
        page.wait_for_function("() => window.doneAt !== null", timeout=120_000)
        assert page.evaluate("y => [...document.querySelectorAll('.month')].some(m => m.dataset.month.startsWith(y) "
                             "&& m.querySelector('.tile') && m.getBoundingClientRect().bottom > 0 "
                             "&& m.getBoundingClientRect().top < innerHeight)", year)
        jumps.append(page.evaluate("window.doneAt - window.clickedAt"))
    out["jump to a year (ms)"] = statistics.median(jumps)
    out["tiles in the page"] = page.locator("#timeline .tile").count()
    out["blocks in the page"] = page.locator("#timeline .block").count()
    page.locator("#timeline .tile .open").first.click()
    page.wait_for_function("() => document.querySelector('.lb-picture').complete")
    for label in ("viewer next photo, preview made now (ms)", "viewer next photo, preview made before (ms)"):
        steps = []
        for _ in range(8):
            t0 = page.evaluate("performance.now()")
            before = page.get_attribute(".lb-picture", "src")
            page.keyboard.press("ArrowRight")
            page.wait_for_function("s => { const i = document.querySelector('.lb-picture'); "
                                   "return i.getAttribute('src') !== s && i.complete && i.naturalWidth > 0; }", arg=before)
            steps.append(page.evaluate("performance.now()") - t0)
        out[label] = statistics.median(steps)
        for _ in range(8):
            page.keyboard.press("ArrowLeft")
        page.wait_for_function("() => document.querySelector('.lb-picture').complete")
    context.close()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    t0 = time.perf_counter()
    page.goto(url + "/map")
    page.wait_for_selector("#map[data-ready]", timeout=120_000)
    out["map ready (ms)"] = (time.perf_counter() - t0) * 1000
    out["map points"] = int(page.get_attribute("#map", "data-points"))
    page.evaluate("() => { window.frames_ = 0; const tick = () => { window.frames_++; requestAnimationFrame(tick); }; "
                  "requestAnimationFrame(tick); }")
    box = page.locator("#map").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    start_frames = page.evaluate("window.frames_")
    t0 = time.perf_counter()
    for _ in range(4):  # drag the map around for a while
        page.mouse.move(cx, cy)
        page.mouse.down()
        page.mouse.move(cx - 300, cy - 150, steps=30)
        page.mouse.move(cx + 300, cy + 150, steps=60)
        page.mouse.move(cx, cy, steps=30)
        page.mouse.up()
    seconds = time.perf_counter() - t0
    out["map frames per second while dragged"] = (page.evaluate("window.frames_") - start_frames) / seconds
    out["map clusters drawn"] = page.locator(".cluster").count()
    context.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=100_000)
    parser.add_argument("--baseline", type=int, default=1_000)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="bench-photo-app-"))
    results = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        for n in (args.baseline, args.photos):
            t = time.perf_counter()
            build(work / f"lib{n}", work / f"photos{n}", n)
            print(f"library of {n:,} photos written in {time.perf_counter() - t:.0f} s", flush=True)
            process, url = start_server(work / f"lib{n}", work / f"serve{n}.log")
            try:
                results[n] = measure(browser, url.split("?")[0].rstrip("/"))
            finally:
                process.terminate()
                process.wait(timeout=30)
        browser.close()
    print(f"\n{'':<46}" + "".join(f"{n:>12,}" for n in results) + f"{'ratio':>8}")
    for key in results[args.photos]:
        a, b = results[args.baseline][key], results[args.photos][key]
        print(f"{key:<46}{a:>12,.1f}{b:>12,.1f}{(b / a if a else float('nan')):>8.2f}")
    print(f"\n{os.cpu_count()} cores, {datetime.now():%Y-%m-%d}, chromium {CHROMIUM}")


if __name__ == "__main__":
    main()
