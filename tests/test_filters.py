"""The filter table (imgsearch.filters): each filter gives the same photos through the library, the CLI, the CLI
asking a running `imgsearch serve`, the JSON API and the search-bar words; and the table is all there is to it."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image as PILImage
from typer.testing import CliRunner

from imgsearch import FILTERS, Filters, Library, SearchOptions, UsageError, parse_query, split_filters
from imgsearch.cli import app
from imgsearch.config import SERVER_FILENAME
from imgsearch.filters import BY_NAME, Near
from imgsearch.store.images import CONDITIONS
from tests.factories import write_photo, write_video
from tests.programs import start_server

QUERY = "a photo"
PARIS, LONDON = (48.8584, 2.2945), (51.5007, -0.1246)
FIJI_EAST, FIJI_WEST = (-17.8, -179.9), (-17.7134, 178.065)  # 2 degrees apart, across the 180th meridian
runner = CliRunner()


# --- the table ---------------------------------------------------------------------------------------------

def test_every_filter_has_its_sql_and_nothing_else_has() -> None:
    assert set(CONDITIONS) == set(BY_NAME)


@pytest.mark.parametrize("given,expected", [
    ({"camera": " Canon "}, {"camera": "Canon"}),
    ({"after": "2019-05"}, {"after": datetime(2019, 5, 1)}),
    ({"ext": [".JPG", "png", "jpg"]}, {"ext": ("jpg", "png")}),
    ({"tag": "beach"}, {"tag": ("beach",)}),
    ({"type": "Video"}, {"type": "video"}),
    ({"min_size": "1000"}, {"min_size": 1000}),
    ({"near": "48.8584, 2.2945, 5"}, {"near": Near(48.8584, 2.2945, 5.0)}),
    ({"camera": "", "ext": [], "tag": None}, {}),
    ({"country": "portugal"}, {"country": "PT"}), ({"country": "prt"}, {"country": "PT"}),
    ({"place": " New York City "}, {"place": "New York City"}),
])
def test_values_are_read_as_typed_and_written_back_the_same(given: dict, expected: dict) -> None:
    filters = Filters(**given)
    assert dict(filters) == expected
    back = Filters.parse({name: [t for n, t in filters.texts() if n == name] for name in filters})
    assert back == filters and hash(back) == hash(filters)


@pytest.mark.parametrize("given,param,says", [
    ({"min_size": "0"}, "min_size", "between 1 and"), ({"min_size": "12px"}, "min_size", "not a whole number"),
    ({"after": "May 2019"}, "after", "not a date"), ({"ext": "j.pg"}, "ext", "not a file extension"),
    ({"type": "movie"}, "type", "photo or video"), ({"near": "48.8,2.3"}, "near", "LAT,LON,KM"),
    ({"near": "98,2.3,5"}, "near", "latitude"), ({"near": "48,2,0"}, "near", "over 0"),
    ({"near": "nan,2,5"}, "near", "not a place"), ({"colour": "red"}, "colour", "no filter named colour"),
    ({"country": "Atlantis"}, "country", "code \\(PT\\) or its English name"),
])
def test_bad_values_name_the_filter_and_the_fix(given: dict, param: str, says: str) -> None:
    with pytest.raises(UsageError, match=says) as caught:
        Filters(**given)
    assert caught.value.param == param


def test_search_bar_words_are_filters_and_the_rest_is_the_query() -> None:
    words, filters = split_filters(["red", "car", "camera:x100v", "AFTER:2019-05", "tag:beach", "tag:sea",
                                    "in:/tmp/pics", "min-size:800", "2:dog", "like:12", "note:this"])
    assert words == ["red", "car", "2:dog", "like:12", "note:this"]
    assert dict(filters) == {"camera": "x100v", "after": datetime(2019, 5, 1), "tag": ("beach", "sea"),
                             "folder": "/tmp/pics", "min_size": 800}
    with pytest.raises(UsageError, match="given twice"):
        split_filters(["camera:x100v", "camera:canon"])
    with pytest.raises(UsageError, match="given twice"):
        Filters(camera="canon").merged(split_filters(["camera:nikon"])[1])
    assert Filters(tag="a").merged(Filters(tag=("b", "a"))) == Filters(tag=("a", "b"))


# --- every front end ------------------------------------------------------------------------------------------

@dataclass
class Served:
    library: Path
    model: Path
    url: str
    token: str | None
    root: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[Served]:
    base = tmp_path_factory.mktemp("filters")
    root, model, library = base / "photos", shutil.copytree(tiny_model_dir, base / "model"), base / "lib"
    write_photo(root / "a" / "2019" / "canon-paris.jpg", "red", fmt="JPEG", taken=datetime(2019, 5, 1), make="Canon",
                model="EOS R6", gps=PARIS)
    write_photo(root / "a" / "2020" / "nikon-london.jpg", "blue", size=(300, 200), fmt="JPEG",
                taken=datetime(2020, 7, 1), make="NIKON", model="Z6", gps=LONDON)
    os.utime(write_photo(root / "a" / "2021" / "plain.png", "green", size=(300, 200)),
             (datetime(2021, 3, 3).timestamp(),) * 2)  # no EXIF: the file's time counts
    os.utime(write_photo(root / "b" / "green.webp", "green", size=(40, 30)), (datetime(2022, 3, 3).timestamp(),) * 2)
    write_photo(root / "b" / "fiji-east.jpg", "yellow", fmt="JPEG", taken=datetime(2018, 1, 2), gps=FIJI_EAST)
    write_photo(root / "b" / "fiji-west.jpg", "white", fmt="JPEG", taken=datetime(2018, 1, 3), make="FUJIFILM",
                model="X100V", gps=FIJI_WEST)
    write_video(root / "b" / "clip.mp4", [(2.0, PILImage.new("RGB", (64, 48), (200, 40, 40)))])
    assert cli("index", root, "-m", f"local-dir:{model}", "-L", library, "--workers", "0").exit_code == 0
    tagged = cli("tag", "--labels", "a red photo,a blue photo,a green photo,a video,a map", "-L", library)
    assert tagged.exit_code == 0, tagged.output
    process, url = start_server(library, base / "serve.log", "--preload")
    info = json.loads((library / SERVER_FILENAME).read_text())
    yield Served(library, model, url.split("?")[0].rstrip("/"), info.get("token"), root)
    process.terminate()
    process.wait(timeout=30)


def cli(*args: object):  # click's Result
    return runner.invoke(app, [str(a) for a in args])


def cli_paths(*args: object) -> list[str]:
    result = cli("search", *args, "--json", "-k", 50)
    assert result.exit_code == 0, result.output
    return [json.loads(line)["path"] for line in result.stdout.splitlines()]


def api_paths(served: Served, params: list[tuple[str, str]]) -> list[str]:
    return [r["path"] for r in get_json(served, "/api/v1/search?" + urllib.parse.urlencode([("k", "50"), *params]))
            ["results"]]


def _cases(served: Served, rarest_tag: str) -> dict[str, tuple[dict, list[str], list[tuple[str, str]], list[str]]]:
    """Per case: the library's Filters values, the CLI's options, the API's parameters, the search-bar words."""
    folder = str(served.root / "a")
    return {
        "folder": ({"folder": folder}, ["--in", folder], [("folder", folder)], [f"in:{folder}"]),
        "after": ({"after": "2020"}, ["--after", "2020"], [("after", "2020")], ["after:2020"]),
        "before": ({"before": "2019-06"}, ["--before", "2019-06"], [("before", "2019-06")], ["before:2019-06"]),
        "camera": ({"camera": "nikon"}, ["--camera", "nikon"], [("camera", "nikon")], ["camera:nikon"]),
        "ext": ({"ext": ("png", "webp")}, ["--ext", "png", "--ext", "webp"], [("ext", "png"), ("ext", "webp")],
                ["ext:png", "ext:webp"]),
        "tag": ({"tag": rarest_tag}, ["--tag", rarest_tag], [("tag", rarest_tag)], [f"tag:{rarest_tag}"]),
        "type": ({"type": "video"}, ["--type", "video"], [("type", "video")], ["type:video"]),
        "min_size": ({"min_size": 100}, ["--min-size", "100"], [("min_size", "100")], ["min_size:100"]),
        "near": ({"near": "-17.75,179.95,50"}, ["--near", "-17.75,179.95,50"], [("near", "-17.75,179.95,50")],
                 ["near:-17.75,179.95,50"]),
        "place": ({"place": "london"}, ["--place", "London"], [("place", "LONDON")], ["place:london"]),
        "country": ({"country": "France"}, ["--country", "fr"], [("country", "FRA")], ["country:france"]),
        "camera+after": ({"camera": "canon", "after": "2019"}, ["--camera", "canon", "--after", "2019"],
                         [("camera", "canon"), ("after", "2019")], ["camera:canon", "after:2019"]),
    }


def test_every_filter_gives_the_same_photos_through_every_front_end(served: Served) -> None:
    lib = Library.open(served.library)
    try:
        tags = lib.tags()
        everything = lib.search(parse_query([QUERY]), SearchOptions(k=50))
    finally:
        lib.close()
    rarest = min(tags, key=lambda t: (tags[t], t))
    cases = _cases(served, rarest)
    assert {name for case in cases for name in case.split("+")} == set(BY_NAME)  # a case for every filter
    assert len(everything) == 7 and 0 < tags[rarest] < 7

    got: dict[str, dict[str, list[str]]] = {}
    lib = Library.open(served.library)
    try:
        for case, (values, _, _, _) in cases.items():
            hits = lib.search(parse_query([QUERY]), SearchOptions(k=50, filters=Filters(**values)))
            got[case] = {"library": [h.path for h in hits]}
    finally:
        lib.close()
    here = ["-L", served.library, "-m", f"local-dir:{served.model}"]
    for case, (_, options, params, words) in cases.items():
        got[case]["cli"] = cli_paths(QUERY, *options, *here)
        got[case]["cli words"] = cli_paths(QUERY, *words, *here)
        got[case]["api"] = api_paths(served, [("q", QUERY), *params])
        got[case]["api words"] = api_paths(served, [("q", shlex.join([QUERY, *words]))])
    hidden = served.model.with_name("model-away")
    served.model.rename(hidden)  # a search done here would fail now: only the server can answer these
    try:
        for case, (_, options, _, words) in cases.items():
            got[case]["cli via server"] = cli_paths(QUERY, *options, "-L", served.library)
            got[case]["cli words via server"] = cli_paths(QUERY, *words, "-L", served.library)
    finally:
        hidden.rename(served.model)

    names = {h.path: Path(h.path).name for h in everything}
    expected = {"folder": {"canon-paris.jpg", "nikon-london.jpg", "plain.png"}, "after": {"nikon-london.jpg",
                "plain.png", "green.webp", "clip.mp4"}, "before": {"canon-paris.jpg", "fiji-east.jpg", "fiji-west.jpg"},
                "camera": {"nikon-london.jpg"}, "ext": {"plain.png", "green.webp"}, "type": {"clip.mp4"},
                "min_size": {"nikon-london.jpg", "plain.png"}, "near": {"fiji-east.jpg"},
                "place": {"nikon-london.jpg"}, "country": {"canon-paris.jpg"}, "camera+after": {"canon-paris.jpg"}}
    for case, by_front_end in got.items():
        first = by_front_end["library"]
        assert all(paths == first for paths in by_front_end.values()), (case, by_front_end)
        assert 0 < len(first) < len(everything), case
        if case in expected:
            assert {names[p] for p in first} == expected[case], case
    assert len(got["tag"]["library"]) == tags[rarest]


def get_json(served: Served, path: str, data: bytes | None = None, content_type: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {served.token}"} if served.token else {}
    request = urllib.request.Request(served.url + path, data=data,
                                     headers={**headers, **({"Content-Type": content_type} if content_type else {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # the test's own server
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{path}: {exc.code} {exc.read().decode()}") from None


def test_the_upload_and_similar_routes_take_the_same_filters(served: Served) -> None:
    image = (served.root / "a" / "2019" / "canon-paris.jpg").read_bytes()
    boundary = "imgsearch-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"q.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()
    found = get_json(served, "/api/v1/search/image?k=50&ext=png&q=ext:webp", body,
                     f"multipart/form-data; boundary={boundary}")
    assert {Path(r["path"]).name for r in found["results"]} == {"plain.png", "green.webp"}

    lib = Library.open(served.library)
    try:
        first = lib.search(parse_query([QUERY]), SearchOptions(k=1, filters=Filters(type="photo")))[0]
        similar = lib.similar(first.id, SearchOptions(k=50, filters=Filters(type="photo", min_size=100)))
    finally:
        lib.close()
    got = get_json(served, f"/api/v1/images/{first.id}/similar?k=50&type=photo&min_size=100")["results"]
    assert [r["path"] for r in got] == [h.path for h in similar]
    assert similar and {Path(h.path).name for h in similar} <= {"nikon-london.jpg", "plain.png"}
    like = get_json(served, f"/api/v1/search?q=like:{first.id}+type:video&k=50")["results"]
    assert [Path(r["path"]).name for r in like] == ["clip.mp4"]


def test_an_unknown_parameter_is_refused_not_ignored(served: Served) -> None:
    with pytest.raises(AssertionError, match="400") as caught:
        get_json(served, "/api/v1/search?q=x&camra=canon")
    error = json.loads(str(caught.value).split(" 400 ", 1)[1])["error"]
    assert error["param"] == "camra" and "camera" in error["message"]


def test_the_cli_names_filters_as_its_options(served: Served) -> None:
    result = cli("search", QUERY, "--in", "/nowhere", "-L", served.library)
    assert result.exit_code == 2 and "--in" in result.stderr and "/nowhere is not inside" in result.stderr
    result = cli("search", QUERY, "near:1,2", "-L", served.library)
    assert result.exit_code == 2 and "--near '1,2' is not LAT,LON,KM" in result.stderr
    result = cli("search", "camera:canon", "-L", served.library)
    assert result.exit_code == 2 and "words to search for" in result.stderr


def test_filters_in_the_table_are_all_on_the_cli_and_the_form(served: Served) -> None:
    help_text = cli("search", "-h").stdout
    assert all(f"{f.flag} {f.metavar}" in help_text for f in FILTERS)
    with urllib.request.urlopen(f"{served.url}/?q=a+photo&type=video&ext=png", timeout=60) as response:
        page = response.read().decode()
    assert all(f'name="{f.name}"' in page for f in FILTERS)
    assert "<details class=\"filters\" open>" in page and "<option selected>video</option>" in page
    assert 'name="ext" value="png"' in page
