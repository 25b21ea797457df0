"""A real browser (Debian's chromium, driven by playwright) against a real `imgsearch serve` on 127.0.0.1, over a
library indexed with a tiny CLIP trained on coloured shapes. Screenshots of every page land in the test's temp dir
(and in $IMGSEARCH_SCREENSHOTS when set: that is how docs/serve.png is made).

Without chromium these tests fail in CI (`.ci/run` installs it: apt-get install chromium) and are skipped, with the
reason, elsewhere."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.programs import missing_program, start_server
from tests.tinyclip import COLOURS, shape_image

CHROMIUM = os.environ.get("IMGSEARCH_CHROMIUM", "/usr/bin/chromium")
PER_COLOUR = 6  # i even: circles, i odd: squares
PLACES = {"red-0.jpg": (38.7169, -9.1399), "red-2.jpg": (38.7100, -9.1350), "red-4.jpg": (38.7200, -9.1450),
          "green-0.jpg": (48.8584, 2.2945), "blue-2.jpg": (40.7580, -73.9855)}  # Lisbon (3), Paris, New York
MONTHS = {"red": "2024-05", "green": "2023-11", "blue": "2021-07", "yellow": "2019-12"}  # the photos' file times


@dataclass
class Served:
    url: str
    root: Path
    library: Path
    model: Path
    shots: Path
    log: Path
    process: subprocess.Popen

    def shot(self, page, name: str) -> None:
        page.wait_for_function("""() => [...document.images].filter(i => i.getBoundingClientRect().top < innerHeight)
                                                           .every(i => i.complete && i.naturalWidth > 0)""")
        page.screenshot(path=str(self.shots / f"{name}.png"))
        extra = os.environ.get("IMGSEARCH_SCREENSHOTS")
        if extra:
            Path(extra).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(extra) / f"{name}.png"))


def _cli(*args: object, **kwargs: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imgsearch", *map(str, args)], capture_output=True, text=True,
                          timeout=300, **kwargs)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, trained_model_dir: Path) -> Iterator[Served]:
    base = tmp_path_factory.mktemp("served")
    root = base / "photos"
    root.mkdir()
    for c, colour in enumerate(COLOURS):
        for i in range(PER_COLOUR):
            shape = "square" if i % 2 else "circle"  # each its own geometry: no two are near-copies
            shape_image(colour, shape, size=160, seed=100 + 10 * c + i).save(root / f"{colour}-{i}.{'png' if i % 2 else 'jpg'}")
    shutil.copy(root / "blue-0.jpg", root / "blue-0 copy.jpg")  # one exact copy for the duplicates review
    for name, (lat, lon) in PLACES.items():  # GPS positions for the map
        with Image.open(root / name) as img:
            exif = Image.Exif()
            gps = exif.get_ifd(0x8825)
            for ref, at, value, signs in ((1, 2, lat, "NS"), (3, 4, lon, "EW")):
                degrees, rest = divmod(abs(value) * 3600, 3600)
                gps[ref], gps[at] = signs[value < 0], (degrees, rest // 60, round(rest % 60, 4))
            img.save(root / name, exif=exif.tobytes(), quality=95)
    for photo in root.iterdir():  # no EXIF dates: the timeline goes by file times, a month per colour (two yellow)
        colour, number = photo.stem.split(" ")[0].split("-")
        month = MONTHS[colour] if colour != "yellow" or int(number) < 3 else "2019-01"
        when = datetime.fromisoformat(f"{month}-15T12:00:00+00:00").timestamp()
        os.utime(photo, (when, when))
    model = shutil.copytree(trained_model_dir, base / "model")
    library = base / "lib"
    indexed = _cli("index", root, "-m", f"local-dir:{model}", "-L", library, "--workers", "0")
    assert indexed.returncode == 0, indexed.stderr
    shots = base / "screenshots"
    shots.mkdir()
    log = base / "serve.log"
    process, url = start_server(library, log, "--preload")
    yield Served(url, root, library, model, shots, log, process)
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        missing_program(f"{CHROMIUM} is missing: install it with `apt-get install chromium` (.ci/run does; in CI these "
                        "tests fail without it, they are never skipped there)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, served: Served) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=served.url)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    yield page
    context.close()
    assert not errors, f"the page reported errors: {errors}"


def names(page) -> list[str]:
    return page.eval_on_selector_all("#grid .tile .open img", "imgs => imgs.map(i => i.alt)")


def search(page, query: str) -> None:
    page.goto("/")
    page.keyboard.press("/")  # focuses the search box
    page.keyboard.type(query)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.wait_for_selector("#grid .tile")


def test_a_typed_query_shows_the_expected_photos_first(page, served: Served) -> None:
    search(page, "a photo of a red circle")
    assert "q=a+photo+of+a+red+circle" in page.url  # the state is in the URL
    expected = {f"red-{i}.jpg" for i in range(0, PER_COLOUR, 2)}
    assert set(names(page)[:len(expected)]) == expected
    assert page.title().startswith("a photo of a red circle")
    served.shot(page, "search")
    page.go_back()
    assert page.input_value("#q") == ""  # the back button works: the empty search page again


def test_similar_on_a_tile(page, served: Served) -> None:
    search(page, "a photo of a yellow square")
    first = page.locator(".tile").first
    clicked = first.locator(".open img").get_attribute("alt")
    first.hover()
    first.locator(".like").click()
    page.wait_for_url("**/?q=like*")
    page.wait_for_selector("#grid .tile")
    found = names(page)
    assert clicked not in found  # the photo itself is left out
    assert all(n.startswith("yellow-") for n in found[:PER_COLOUR - 1]), found


def test_more_like_this_and_fewer_like_this(page, served: Served) -> None:
    """Marks on the tiles rank the results again (the URL keeps them: Back and reload give the same page); a photo
    marked down leaves the results; the marks can be undone one by one or all at once."""
    search(page, "a photo of a red circle")
    plain = names(page)
    assert "Mark photos with" in page.inner_text("#marks")
    blue = next(n for n in plain if n.startswith("blue-"))
    tile = page.locator(".tile", has=page.locator(f"img[alt='{blue}']"))
    tile.hover()
    tile.locator(".mark-like").click()  # more like this blue one
    page.wait_for_url("**like=*")
    served.shot(page, "marked")
    page.set_viewport_size({"width": 390, "height": 844})
    served.shot(page, "marked-phone")
    page.set_viewport_size({"width": 1280, "height": 900})
    liked = names(page)
    assert liked.index(blue) < plain.index(blue) and liked[:8] != plain[:8]
    marked = page.locator(".tile.liked")
    assert marked.count() == 1 and marked.locator("img").get_attribute("alt") == blue
    assert marked.locator(".mark-like.on").is_visible()
    assert "Ranked with your marks: more like 1 photo(s), fewer like 0" in " ".join(page.inner_text("#marks").split())
    red = liked[0] if liked[0] != blue else liked[1]
    first_red = page.locator(".tile", has=page.locator(f"img[alt='{red}']"))
    first_red.hover()
    first_red.locator(".mark-unlike").click()  # fewer like this one: it leaves the results
    page.wait_for_function(f"() => !document.querySelector(\"img[alt='{red}']\")")
    assert red not in names(page) and "more like 1 photo(s), fewer like 1 (left out)" in " ".join(
        page.inner_text("#marks").split())
    page.reload()
    assert red not in names(page) and page.locator(".tile.liked").count() == 1  # the marks are in the URL
    page.click("#marks a")  # clear the marks
    page.wait_for_function("() => !location.search.includes('like=')")
    assert names(page) == plain


def test_select_photos_download_them_and_find_more_like_them(page, served: Served) -> None:
    import zipfile

    search(page, "a photo of a green square")
    tiles = page.locator("#grid .tile")
    assert page.locator("#selection").is_hidden()
    tiles.nth(0).hover()
    tiles.nth(0).locator(".pick-photo").check()
    tiles.nth(3).hover()
    tiles.nth(3).locator(".pick-photo").click(modifiers=["Shift"])  # a range: the 1st to the 4th
    assert page.inner_text("#selected-count") == "4 selected" and page.locator(".tile.picked").count() == 4
    served.shot(page, "selected")
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.locator("#download").is_visible() and page.locator("#more-like").is_visible()
    served.shot(page, "selected-phone")
    page.set_viewport_size({"width": 1280, "height": 900})
    chosen = names(page)[:4]
    with page.expect_download() as download:
        page.click("#download")
    archive = zipfile.ZipFile(download.value.path())
    assert sorted(archive.namelist()) == sorted(chosen)  # the four photos' files, as they are
    assert archive.read(chosen[0]) == (served.root / chosen[0]).read_bytes()
    page.click("#more-like")
    page.wait_for_url("**like=*")
    assert page.url.count("like=") == 4 and page.locator(".tile.liked").count() == 4
    page.locator("#grid .tile").nth(0).hover()
    page.locator("#grid .tile").nth(0).locator(".pick-photo").check()
    page.keyboard.press("Escape")  # clears the selection, the page stays
    assert page.locator("#selection").is_hidden() and page.locator(".tile.picked").count() == 0


def test_drop_an_image_and_combine_it_with_words(page, served: Served) -> None:
    data = io.BytesIO()
    shape_image("green", "circle", size=160, seed=999).save(data, format="PNG")
    page.goto("/")

    def drop() -> list[str]:
        dropped = page.evaluate_handle("""(b64) => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "mine.png", { type: "image/png" }));
            return transfer;
        }""", base64.b64encode(data.getvalue()).decode())
        with page.expect_navigation():  # the results of an image get an address: /?upload=ID
            page.dispatch_event("#drop", "drop", {"dataTransfer": dropped})
        page.wait_for_selector("#grid .tile")
        assert "upload=" in page.url and "Photos like the image you gave" in page.inner_text("#drop")
        return names(page)

    alone = drop()
    assert all(n.startswith("green-") for n in alone[:PER_COLOUR]), alone
    page.fill("#q", "a photo of a red circle")  # the dropped image + these words
    combined = drop()
    colours = [n.split("-")[0] for n in combined]
    assert colours[0] == "red", combined  # the words count...
    assert colours.index("green") < min(colours.index("blue"), colours.index("yellow")), combined  # ...and the image
    served.shot(page, "dropped")
    page.reload()
    assert names(page) == combined  # the same results again: the upload is kept under its id
    page.go_back()
    page.wait_for_selector("#grid .tile")
    assert names(page) == alone and "q=" not in page.url  # Back: the image alone again
    # a file picker (on a phone: the camera or the photo library) does the same
    chosen = served.root.parent / "chosen.png"
    shape_image("yellow", "square", size=160, seed=998).save(chosen)
    with page.expect_navigation():
        page.set_input_files("#pick", str(chosen))
    page.wait_for_selector("#grid .tile")
    assert all(n.startswith("yellow-") for n in names(page)[:PER_COLOUR - 1]), names(page)


def viewed(page) -> str:
    """The name of the photo the viewer shows (once its record came)."""
    page.wait_for_selector("#lightbox:not([hidden]) .lb-name:not(:empty)", state="attached")
    assert page.locator("#lightbox .lb-picture").is_visible()
    return page.eval_on_selector("#lightbox .lb-name", "e => e.textContent")


def viewing(page, name: str) -> None:
    """Wait until the viewer shows this photo."""
    page.wait_for_function("n => document.querySelector('#lightbox .lb-name').textContent === n", arg=name)


def test_page_through_results_with_the_keyboard(page, served: Served) -> None:
    search(page, "a photo of a blue square")
    order = names(page)
    page.keyboard.press("ArrowRight")  # the first tile
    page.keyboard.press("ArrowRight")  # the second
    assert page.eval_on_selector(".tile.selected .open img", "i => i.alt") == order[1]
    results = page.url
    page.keyboard.press("Enter")  # opens the viewer over the results
    page.wait_for_url("**view=*")
    assert viewed(page) == order[1] and page.url.startswith(results)
    assert "size=1280" in page.get_attribute("#lightbox .lb-picture", "src")
    served.shot(page, "viewer")
    page.keyboard.press("ArrowRight")  # the next result
    viewing(page, order[2])
    assert page.inner_text("#lightbox .lb-where").startswith("3 of ")
    page.reload()  # the URL names the photo: a reload shows it again, over the same results
    assert viewed(page) == order[2] and names(page) == order
    page.keyboard.press("ArrowLeft")
    viewing(page, order[1])
    page.keyboard.press("Escape")  # closes the viewer: the results, as they were
    page.wait_for_selector("#lightbox", state="hidden")
    assert "view=" not in page.url and names(page) == order
    assert page.evaluate("document.activeElement.closest('.tile').dataset.id") == \
        page.get_attribute(f"#grid .tile:has(img[alt='{order[1]}'])", "data-id")  # the photo seen keeps the focus
    page.keyboard.press("Escape")  # on the results: the selection goes, the page stays (it left the app before)
    assert page.locator(".tile.selected").count() == 0 and page.url.split("#")[0] == results
    page.keyboard.press("ArrowRight")
    page.keyboard.press("s")  # photos like the selected one
    page.wait_for_url("**/?q=like*")
    assert order[0] not in names(page)


def test_the_photo_page_steps_through_results(page, served: Served) -> None:
    search(page, "a photo of a blue square")
    order = names(page)
    page.locator("#grid .tile").nth(1).locator(".open").click()
    viewed(page)
    page.click("#lightbox .lb-page")  # the photo's own page (a link to keep), still in its place in the results
    page.wait_for_url("**/photo/**i=1**")
    assert order[1] in page.inner_text("figcaption")
    served.shot(page, "photo")
    page.keyboard.press("ArrowRight")  # next result
    page.wait_for_url("**i=2")
    assert order[2] in page.inner_text("figcaption")
    page.keyboard.press("Escape")  # back to the results
    page.wait_for_selector("#grid .tile")
    assert names(page) == order


def month_tiles(page) -> dict[str, int]:
    """Tiles in the page per month of the timeline (months far from the screen hold none)."""
    return page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('.month')].map(
        m => [m.dataset.month, m.querySelectorAll('.tile').length]))""")


def test_the_home_page_is_a_timeline(browser, served: Served) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 400}, base_url=served.url)  # a short window
    page = context.new_page()
    page.goto("/")
    assert page.locator(".month h2").all_inner_texts() == [
        "May 2024 6", "November 2023 6", "July 2021 7", "December 2019 3", "January 2019 3"]
    page.wait_for_selector("#m-2024-05 .tile")
    assert page.locator("#m-2024-05 .tile .open img").evaluate_all("i => i.map(x => x.alt).sort()") == \
        sorted(f"red-{i}.{'png' if i % 2 else 'jpg'}" for i in range(PER_COLOUR))
    shown = month_tiles(page)
    assert shown["2024-05"] == 6 and shown["2019-01"] == 0, shown  # only what is near the screen is in the page
    served.shot(page, "timeline")
    assert page.locator("#scrubber a").all_inner_texts() == ["2024", "2023", "2021", "2019"]
    page.click("#scrubber a:text-is('2019')")  # the scrubber jumps to a year
    page.wait_for_function("() => document.querySelectorAll('#m-2019-12 .tile').length === 3")
    assert page.evaluate("document.querySelector('#m-2019-12').getBoundingClientRect().top") < 400
    page.wait_for_function("() => document.querySelectorAll('#m-2024-05 .tile').length === 0")  # and what went far is gone
    # the viewer over the timeline: in its order, the URL names the photo, Back closes it
    first, second = page.locator("#m-2019-12 .tile .open img").evaluate_all("i => i.map(x => x.alt)")[:2]
    page.locator("#m-2019-12 .tile .open").first.click()
    assert viewed(page) == first and "view=" in page.url
    page.mouse.move(640, 200)
    page.mouse.wheel(0, -400)  # the wheel zooms in
    page.wait_for_function("() => new DOMMatrix(getComputedStyle(document.querySelector('.lb-picture')).transform).a > 1.5")
    page.keyboard.press("0")  # and 0 fits it again, so a swipe moves on
    page.keyboard.press("ArrowRight")
    viewing(page, second)
    assert "2019" in page.inner_text("#lightbox .meta")
    page.go_back()  # Back closes the viewer (it does not leave the page)
    page.wait_for_selector("#lightbox", state="hidden")
    assert "view=" not in page.url and page.locator("#timeline").is_visible()
    context.close()


def test_the_timeline_and_the_viewer_on_a_phone(browser, served: Served) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, base_url=served.url, has_touch=True,
                                  is_mobile=True)
    page = context.new_page()
    page.goto("/?ext=png")  # the filters in force apply to the timeline too
    assert page.locator(".month h2").all_inner_texts() == [
        "May 2024 3", "November 2023 3", "July 2021 3", "December 2019 1", "January 2019 2"]
    page.wait_for_selector("#m-2024-05 .tile")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the phone
    columns = page.evaluate("getComputedStyle(document.querySelector('#m-2024-05 .block')).gridTemplateColumns")
    assert len(columns.split()) == 3, columns
    served.shot(page, "timeline-phone")
    names_in = page.locator("#m-2024-05 .tile .open img").evaluate_all("i => i.map(x => x.alt)")
    page.locator("#m-2024-05 .tile .open").first.tap()
    assert viewed(page) == names_in[0]
    assert page.locator("#lightbox .lb-info").is_hidden()  # on a phone the information waits for its button
    page.tap("#lightbox .lb-info-toggle")
    assert page.locator("#lightbox .lb-info").is_visible() and names_in[0] in page.inner_text("#lightbox .meta")
    served.shot(page, "viewer-phone")
    page.tap("#lightbox .lb-info-toggle")
    swipe(page, 300, 100)  # a swipe to the left: the next photo
    viewing(page, names_in[1])
    swipe(page, 100, 300)  # to the right: back
    viewing(page, names_in[0])
    page.goto("/map")  # the map fits a phone too
    page.wait_for_selector("#map[data-ready]")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert page.locator("#map").bounding_box()["height"] >= 320
    served.shot(page, "map-phone")
    context.close()


def test_hold_to_select_on_a_phone_then_set_aside_and_undo(browser, served: Served) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, base_url=served.url, has_touch=True,
                                  is_mobile=True)
    page = context.new_page()
    page.goto("/?ext=png")
    page.wait_for_selector("#m-2024-05 .tile")
    tile = page.locator("#m-2024-05 .tile").first
    name = tile.locator(".open img").get_attribute("alt")
    box = tile.bounding_box()
    client = page.context.new_cdp_session(page)
    point = {"x": box["x"] + box["width"] / 2, "y": box["y"] + box["height"] / 2}
    client.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [point]})
    page.wait_for_selector("#m-2024-05 .tile.picked")  # held: selected (the page says so before the finger lifts)
    client.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    assert page.inner_text("#selected-count") == "1 selected" and page.locator("#lightbox").count() == 0
    served.shot(page, "selected-phone-hold")
    page.tap("#set-aside")  # out of the library, journaled
    page.wait_for_selector("#set-aside-message:not([hidden])")
    assert page.inner_text("#set-aside-message span") == "Set aside 1 photo(s): moved out of the library."
    assert not (served.root / name).exists() and page.locator(f"#timeline img[alt='{name}']").count() == 0
    with page.expect_navigation():
        page.tap("#undo-set-aside")  # and back
    page.wait_for_selector(f"#timeline img[alt='{name}']")
    assert (served.root / name).exists()
    context.close()


def test_tag_a_selection_on_the_timeline(page, served: Served) -> None:
    page.goto("/")
    page.wait_for_selector("#m-2024-05 .tile")
    tiles = page.locator("#m-2024-05 .tile")
    chosen = sorted(tiles.nth(n).locator(".open img").get_attribute("alt") for n in (0, 1))
    for n in (0, 1):
        tiles.nth(n).hover()
        tiles.nth(n).locator(".pick-photo").check()
    page.once("dialog", lambda dialog: dialog.accept("picnic, summer"))
    page.click("#tag-selection")
    page.wait_for_selector("#set-aside-message:not([hidden])")
    assert page.inner_text("#set-aside-message span") == "Tagged: picnic, summer."
    page.goto("/?tag=picnic")  # the tag is a filter at once, on the timeline and in the form's choices
    page.wait_for_selector("#timeline .tile")
    assert sorted(page.locator("#timeline .tile .open img").evaluate_all("i => i.map(x => x.alt)")) == chosen
    assert "picnic" in page.locator("select[name=tag] option").all_inner_texts()
    page.locator("#timeline .tile .open").first.click()
    viewed(page)
    assert "picnic, summer" in page.inner_text("#lightbox .meta")  # the viewer lists them
    ids = page.locator("#timeline .tile").evaluate_all("t => t.map(x => Number(x.dataset.id))")
    taken = page.evaluate("""ids => fetch('/api/v1/tags', {method: 'POST', headers: {'Content-Type': 'application/json'},
        body: JSON.stringify({ids, remove: ['picnic', 'summer']})}).then(r => r.json())""", ids)
    assert taken["photos_that_lost_one"] == 2  # as they were for the other tests


def test_a_video_plays_in_the_viewer_from_its_matched_moment(browser, tmp_path: Path, trained_model_dir: Path) -> None:
    from tests.factories import write_video

    root = tmp_path / "clips"
    noise = Image.fromarray(np.random.default_rng(0).integers(90, 110, (160, 160, 3), dtype=np.uint8))
    write_video(root / "clip.mp4", [(3.0, noise), (3.0, shape_image("yellow", "square", size=160, seed=1))])
    shape_image("red", "circle", size=160, seed=2).save(root / "red.jpg")
    library = tmp_path / "lib"
    indexed = _cli("index", root, "-m", f"local-dir:{trained_model_dir}", "-L", library, "--workers", "0")
    assert indexed.returncode == 0, indexed.stderr
    process, url = start_server(library, tmp_path / "serve.log")
    try:
        context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=url.split("?")[0])
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto("/?q=a+photo+of+a+yellow+square")
        video = page.locator("#grid .tile", has=page.locator(".at"))  # the video's best moment, with its time
        assert video.count() == 1
        moment = float(video.locator(".open").get_attribute("href").split("t=")[1]) / 1000
        assert moment >= 2.5, moment  # in the yellow scene (from 3 s), not the noise before it
        video.locator(".open").click()
        page.wait_for_selector("#lightbox .lb-video", state="visible")
        src = page.get_attribute("#lightbox .lb-video", "src")
        assert src.endswith(f"/file#t={moment:g}") and page.locator("#lightbox .lb-picture").is_hidden(), src
        assert "thumb?size=1280" in page.get_attribute("#lightbox .lb-video", "poster")
        assert not errors, errors
        context.close()
    finally:
        process.terminate()
        process.wait(timeout=30)


def swipe(page, from_x: int, to_x: int, y: int = 420) -> None:
    """A one-finger horizontal swipe on the viewer's picture (touch points, as a phone sends them)."""
    client = page.context.new_cdp_session(page)
    steps = [from_x + (to_x - from_x) * n // 6 for n in range(7)]
    client.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": steps[0], "y": y}]})
    for x in steps[1:]:
        client.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
    client.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


def test_the_map_clusters_photos_and_its_view_becomes_a_filter(page, served: Served) -> None:
    page.goto("/map")
    page.wait_for_selector("#map[data-ready]")
    assert page.inner_text("#map-count") == "5 photo(s) with a place."
    shown = page.locator(".cluster span").all_inner_texts()
    dots = page.locator("#map path.leaflet-interactive").count()  # single photos: SVG circles
    assert sum(map(int, shown)) + dots == 5, (shown, dots)
    served.shot(page, "map")
    for _ in range(5):  # a cluster zooms in until its photos come apart (into smaller clusters first, maybe)
        if page.locator("#map path.leaflet-interactive").count() >= 3:
            break
        drawn = page.get_attribute("#map", "data-drawn")
        page.locator(".cluster").first.click()
        page.wait_for_function("n => document.querySelector('#map').dataset.drawn !== n", arg=drawn)
    assert page.locator("#map path.leaflet-interactive").count() == 3 and page.locator(".cluster").count() == 0
    page.locator("#map path.leaflet-interactive").first.click()  # a photo opens in the viewer
    name = viewed(page)
    assert name in {"red-0.jpg", "red-2.jpg", "red-4.jpg"} and "view=" in page.url
    page.keyboard.press("Escape")
    page.wait_for_selector("#lightbox", state="hidden")
    with page.expect_navigation():
        page.click("#map-here")  # the map's view becomes a filter: the timeline of the photos inside it
    assert "near=" in page.url
    page.wait_for_selector("#timeline .tile")
    inside = page.locator("#timeline .tile .open img").evaluate_all("i => i.map(x => x.alt).sort()")
    assert inside == ["red-0.jpg", "red-2.jpg", "red-4.jpg"], inside
    place = page.locator("details.filters input[name=near]").input_value()
    assert place.startswith("38.7"), place


def test_a_new_query_keeps_the_filters_and_the_order(page, served: Served) -> None:
    page.goto("/?q=a+photo+of+a+red+circle&ext=png&sort=path")
    page.wait_for_selector("#grid .tile")
    assert all(n.endswith(".png") for n in names(page))
    page.fill("#q", "a photo of a blue square")
    page.keyboard.press("Enter")
    page.wait_for_url("**q=a+photo+of+a+blue+square**")
    assert "ext=png" in page.url and "sort=path" in page.url
    found = names(page)
    assert found and all(n.endswith(".png") for n in found) and found == sorted(found)  # still png, by path
    assert page.locator("details.filters[open]").count() == 1  # the filters in force are shown (and cleared there)


def test_review_duplicates_apply_and_undo(page, served: Served) -> None:
    original, copy = served.root / "blue-0.jpg", served.root / "blue-0 copy.jpg"
    before = sorted(p.name for p in served.root.iterdir())
    page.add_init_script("""window.said = []; document.addEventListener("DOMContentLoaded", () => {
        const line = document.querySelector("#dup-summary");
        new MutationObserver(() => window.said.push(line.textContent)).observe(line, {childList: true, subtree: true});
    });""")  # every text the summary line shows, however briefly
    page.goto("/dups")
    page.wait_for_selector(".group")
    # plain shapes of one colour, a few pixels apart, are near-exact by their pixels too (little detail but one
    # edge): a few small groups, the real copy among them, and no warning
    page.wait_for_function("() => document.querySelectorAll('.group').length >= 1")
    assert "exact" in page.inner_text("#groups") and "too loose" not in page.inner_text("#dup-summary")
    # similar photos (the same colour, by the model) are many: the page says so, and acting on them asks for the
    # number of groups, typed; a wrong number or a dismissal changes nothing
    assert page.locator("#borderline").is_hidden()  # the similar tier's pairs only when it is asked for
    page.select_option("#tier", "exact,near,similar")
    page.wait_for_selector("#dup-summary:has-text('threshold may be too loose')")
    # new options, no answer kept for them: the scan ran as a job, its progress shown, then the groups
    said = page.evaluate("window.said")
    scanning = [n for n, text in enumerate(said) if text.startswith("Looking for copies: ")]
    assert scanning and "too loose" in said[-1] and max(scanning) < len(said) - 1, said
    # before acting, what the similar threshold means: the pairs nearest it, each side of it, as pictures
    page.wait_for_selector("#borderline .pair img")
    threshold = float(page.inner_text("#borderline-threshold"))
    captions = page.locator("#borderline .pair figcaption").all_inner_texts()
    sides = [(c.split(":")[0], float(c.rsplit(" ", 1)[1])) for c in captions]
    assert {side for side, _ in sides} == {"grouped", "not grouped"}, captions
    assert all((cos >= threshold) == (side == "grouped") for side, cos in sides), (threshold, captions)
    served.shot(page, "dups-similar")
    page.set_viewport_size({"width": 390, "height": 844})
    page.locator("#borderline").scroll_into_view_if_needed()
    served.shot(page, "dups-similar-phone")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.click("#select-all")
    dialogs: list[str] = []
    page.once("dialog", lambda d: (dialogs.append(d.message), d.accept("1")))
    page.click("#move")
    page.wait_for_selector("#dup-message:has-text('Not confirmed: nothing was changed')")
    assert dialogs and "too loose" in dialogs[0] and "Type " in dialogs[0]
    assert sorted(p.name for p in served.root.iterdir()) == before
    page.select_option("#tier", "exact")
    page.wait_for_function("() => document.querySelectorAll('.group').length === 1")
    assert page.locator(".group .member").count() == 2 and "exact" in page.inner_text(".group h3")
    served.shot(page, "dups")
    keeper = page.locator(".member.keeper").inner_text()
    page.locator(".member:not(.keeper) button").click()  # keep the other one instead
    page.wait_for_function(f"() => !document.querySelector('.member.keeper').innerText.includes({json.dumps(keeper)})")
    page.check(".group .pick")
    page.click("#move")
    page.wait_for_selector("#dup-message:has-text('Done: 1 file(s) moved aside')")
    gone = copy if "blue-0 copy.jpg" in keeper else original  # the suggested keeper is the one moved aside
    assert not gone.exists() and sorted(p.name for p in served.root.iterdir()) == sorted(set(before) - {gone.name})
    assert [p.name for p in (served.library / "set-aside").rglob("*.jpg")] == [gone.name]
    page.wait_for_selector("#groups:has-text('No copies found.')")
    page.click("#undo")
    page.wait_for_selector("#dup-message:has-text('Undone: 1 file(s) restored')")
    assert sorted(p.name for p in served.root.iterdir()) == before and original.read_bytes() == copy.read_bytes()
    page.wait_for_selector(".group")


def test_status_and_a_live_rescan(page, served: Served) -> None:
    new = served.root / "red-new.png"
    shape_image("red", "square", size=160, seed=4242).save(new)
    try:
        page.goto("/status")
        assert f"{PER_COLOUR * len(COLOURS) + 1} indexed" in page.inner_text("main")
        page.click("#rescan")
        page.wait_for_selector("#job:has-text('Indexed:')", timeout=120_000)
        assert "1 new" in page.inner_text("#job")
        # the counts follow without a reload (after the re-scan, and every few seconds: another indexer's work too)
        page.wait_for_selector(f"#library:has-text('{PER_COLOUR * len(COLOURS) + 2} indexed')")
        served.shot(page, "status")
        new.unlink()
        assert _cli("index", "-L", served.library, "--workers", "0").returncode == 0  # another process's run
        page.wait_for_selector(f"#library:has-text('{PER_COLOUR * len(COLOURS) + 1} indexed')")
    finally:
        if new.exists():
            new.unlink()
            assert _cli("index", "-L", served.library, "--workers", "0").returncode == 0


def test_a_phone_in_dark_mode(browser, served: Served) -> None:
    context = browser.new_context(viewport={"width": 360, "height": 740}, color_scheme="dark", base_url=served.url,
                                  has_touch=True, is_mobile=True)
    page = context.new_page()
    search(page, "a photo of a green square")
    assert page.evaluate("document.documentElement.scrollWidth") <= 360  # nothing wider than the phone
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert sum(int(v) for v in background[4:-1].split(",")) < 3 * 64, background  # the dark palette
    assert page.locator(".tile .like").first.evaluate("e => getComputedStyle(e).opacity") == "1"  # no hover on touch
    served.shot(page, "phone-dark")
    context.close()


def test_the_first_page_is_small_and_makes_no_outside_request(page, served: Served) -> None:
    sizes: dict[str, int] = {}
    page.on("requestfinished", lambda r: sizes.__setitem__(r.url, r.sizes()["responseBodySize"]))
    page.goto("/?q=" + "a photo of a red square".replace(" ", "+"))
    page.wait_for_load_state("networkidle")
    assert sizes and all(url.startswith(served.url) for url in sizes), list(sizes)
    assert sum(sizes.values()) <= 300_000, sizes


def test_the_cli_asks_the_running_server(served: Served) -> None:
    query = "a photo of a yellow circle"
    hidden = served.model.with_name("model-away")
    served.model.rename(hidden)  # a command that loads the model itself would fail now: only the server can answer
    try:
        asked = _cli("search", query, "-L", served.library, "--json", "-k", "3")
        offline = _cli("search", query, "-L", served.library, "--json", "-k", "3", "--model", f"local-dir:{served.model}")
    finally:
        hidden.rename(served.model)
    assert asked.returncode == 0, asked.stderr
    top = [Path(json.loads(line)["path"]).name for line in asked.stdout.splitlines()]
    assert sorted(top) == [f"yellow-{i}.jpg" for i in range(0, PER_COLOUR, 2)]
    assert offline.returncode != 0  # the same search done here, without the model
    local = _cli("search", query, "-L", served.library, "--json", "-k", "3", "--model", f"local-dir:{served.model}")
    assert [json.loads(line)["path"] for line in local.stdout.splitlines()] == \
        [json.loads(line)["path"] for line in asked.stdout.splitlines()]
    # with marks too (a new text: only the server, which has the model loaded, can embed it)
    ids = [str(json.loads(line)["id"]) for line in asked.stdout.splitlines()]
    marks = ("--like", ids[0], "--unlike", ids[1])
    served.model.rename(hidden)
    try:
        marked = _cli("search", "a photo of a green square", "-L", served.library, "--json", "-k", "100", *marks)
    finally:
        hidden.rename(served.model)
    assert marked.returncode == 0, marked.stderr
    found = [str(json.loads(line)["id"]) for line in marked.stdout.splitlines()]
    assert ids[1] not in found and ids[0] in found  # the photo marked down left, the one marked up stays
    here = _cli("search", "a photo of a green square", "-L", served.library, "--json", "-k", "100", *marks, "--model",
                f"local-dir:{served.model}")
    assert [str(json.loads(line)["id"]) for line in here.stdout.splitlines()] == found


def test_serving_beyond_loopback_needs_the_token(browser, served: Served, tmp_path: Path) -> None:
    log = tmp_path / "open.log"
    process, url = start_server(served.library, log, "--host", "0.0.0.0")
    try:
        assert "?token=" in url
        bare = url.split("?")[0]
        context = browser.new_context()
        page = context.new_page()
        assert page.goto(bare).status == 401
        page.goto(url)  # the printed link: the token becomes a cookie and leaves the address bar
        assert "token" not in page.url and page.locator("#q").count() == 1
        assert page.goto(bare + "status").status == 200
        context.close()
        assert json.loads((served.library / "server.json").read_text())["url"].startswith("http://127.0.0.1:")
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert "Serving" in log.read_text()


def test_the_api_documentation_works_offline(page, served: Served) -> None:
    """/docs is Swagger UI served by imgsearch itself (no CDN: this machine, like many, has no internet), started
    without an inline script, so the Content-Security-Policy holds (a violation would fail the page fixture)."""
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url))
    page.goto("/docs")
    page.wait_for_selector(".opblock-summary-path:has-text('/api/v1/search')")
    assert page.locator(".opblock").count() >= 10  # every route of the API, each a block
    origin = served.url.split("?")[0].rstrip("/")
    assert asked and all(u.startswith(origin) for u in asked), [u for u in asked if not u.startswith(origin)]
    served.shot(page, "docs")
