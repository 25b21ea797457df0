"""The JSON API in process (FastAPI's TestClient): every endpoint, its error codes, and the guards."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from imgsearch.config import IndexSettings, ModelSpec
from imgsearch.web.app import create_app
from imgsearch.web.security import COOKIE, Guard
from tests.factories import write_photo

FAKE = ModelSpec("fake", None)
BASE = "http://127.0.0.1:8765"
COLOURS = ("red", "green", "blue", "yellow", "magenta", "cyan")


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    for n, colour in enumerate(COLOURS):
        write_photo(root / f"{colour}.jpg", colour, size=(120, 90), fmt="JPEG", seed=n)
    shutil.copy(root / "red.jpg", root / "red copy.jpg")
    return root


@pytest.fixture
def client(library, photos: Path) -> TestClient:
    library.index([photos], FAKE, IndexSettings(workers=0))
    return TestClient(create_app(library, Guard(port=8765)), base_url=BASE)


def ids_of(client: TestClient) -> dict[str, int]:
    body = client.get("/api/v1/search", params={"q": "anything", "k": 100}).json()
    return {r["name"]: r["id"] for r in body["results"]}


def job_events(client: TestClient, started: dict) -> list[dict]:
    """Every event of a job, to its end (the stream closes when the job is done)."""
    with client.stream("GET", started["events"]) as stream:
        return [json.loads(line[6:]) for line in stream.iter_lines() if line.startswith("data: ")]


def dups_answer(client: TestClient, **params) -> dict:
    """GET /api/v1/dups as the page asks it: a 202 starts a scan, followed to its end, then asked again."""
    got = client.get("/api/v1/dups", params=params)
    if got.status_code == 202:
        assert job_events(client, got.json())[-1]["ok"]
        got = client.get("/api/v1/dups", params=params)
    assert got.status_code == 200, got.text
    return got.json()


def test_search_ranks_filters_and_pages(client: TestClient, photos: Path) -> None:
    body = client.get("/api/v1/search", params={"q": "a red thing", "k": 2}).json()
    assert [r["name"] for r in body["results"]] == ["red copy.jpg", "red.jpg"] or \
        [r["name"] for r in body["results"]] == ["red.jpg", "red copy.jpg"]
    assert body["next_offset"] == 2 and body["results"][0]["score"] >= body["results"][1]["score"]
    page2 = client.get("/api/v1/search", params={"q": "a red thing", "k": 2, "offset": 2}).json()
    assert page2["offset"] == 2 and {r["name"] for r in page2["results"]}.isdisjoint({"red.jpg", "red copy.jpg"})
    assert client.get("/api/v1/search", params={"q": "red", "ext": "png"}).json()["results"] == []
    combined = client.get("/api/v1/search", params={"q": "red + blue", "k": 1}).json()["results"]
    assert combined[0]["name"] == "magenta.jpg"


def test_like_terms_and_similar_use_stored_vectors(client: TestClient) -> None:
    ids = ids_of(client)
    similar = client.get(f"/api/v1/images/{ids['red.jpg']}/similar", params={"k": 1}).json()["results"]
    assert similar[0]["name"] == "red copy.jpg"
    like = client.get("/api/v1/search", params={"q": f"like:{ids['red.jpg']} + blue", "k": 1}).json()["results"]
    assert like[0]["name"] == "magenta.jpg"
    assert client.get("/api/v1/search", params={"q": "like:999999"}).status_code == 404


def test_marks_rank_again_and_unliked_photos_leave_the_results(client: TestClient) -> None:
    ids = ids_of(client)

    def names(**params) -> list[str]:
        got = client.get("/api/v1/search", params={"q": "red", "k": 8, **params})
        assert got.status_code == 200, got.text
        return [r["name"] for r in got.json()["results"]]

    plain = names()
    marked = names(like=[ids["blue.jpg"]], unlike=[ids["magenta.jpg"]])
    assert "magenta.jpg" not in marked and marked.index("blue.jpg") < plain.index("blue.jpg")
    assert len(marked) == len(plain) - 1
    both = client.get("/api/v1/search", params={"q": "red", "like": ids["red.jpg"], "unlike": ids["red.jpg"]})
    assert both.status_code == 400 and "marked both up and down" in both.json()["error"]["message"]
    # photos liked with no words (a selection on the timeline): photos like them (the liked ones stay)
    alone = client.get("/api/v1/search", params={"like": [ids["red.jpg"], ids["yellow.jpg"]], "k": 4}).json()["results"]
    assert {r["name"] for r in alone[:3]} == {"red.jpg", "red copy.jpg", "yellow.jpg"}, alone
    for bad in ("x", "0", str(2**63)):
        refused = client.get("/api/v1/search", params={"q": "red", "like": bad})
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "like", refused.text


def test_upload_search_and_its_limits(client: TestClient) -> None:
    data = io.BytesIO()
    Image.new("RGB", (50, 40), (30, 60, 220)).save(data, format="PNG")
    found = client.post("/api/v1/search/image", files={"image": ("q.png", data.getvalue(), "image/png")},
                        params={"k": "1"})
    assert found.status_code == 200 and found.json()["results"][0]["name"] == "blue.jpg"
    # the upload's vector is kept under an id: its results have an address (pages, reload, a shared link)
    upload = found.json()["upload"]
    again = client.get("/api/v1/search", params={"upload": upload, "k": 3})
    assert again.status_code == 200 and again.json()["results"][0]["name"] == "blue.jpg"
    page2 = client.get("/api/v1/search", params={"upload": upload, "k": 3, "offset": 3}).json()["results"]
    assert {r["name"] for r in page2}.isdisjoint({r["name"] for r in again.json()["results"]})
    with_words = client.get("/api/v1/search", params={"upload": upload, "q": "red", "k": 1}).json()["results"]
    assert with_words[0]["name"] == "magenta.jpg"  # blue + red
    gone = client.get("/api/v1/search", params={"upload": "AAAAAAAAAAAA"})
    assert gone.status_code == 404 and gone.json()["error"]["param"] == "upload" and "again" in gone.text
    assert client.get("/api/v1/search", params={"upload": "../x"}).status_code == 400
    page = client.get("/", params={"upload": upload})
    assert page.status_code == 200 and page.text.count('class="tile"') == 7 and "the image you gave" in page.text
    bad = client.post("/api/v1/search/image", files={"image": ("x.png", b"not an image", "image/png")})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "usage"


@pytest.mark.parametrize("query,code", [("", "usage"), ("@/etc/passwd", "usage"), ("@http://example.com/a.jpg", "usage"),
                                       ("red +", "usage"), ('"unclosed', "usage")])
def test_bad_queries_are_400_with_the_code(client: TestClient, query: str, code: str) -> None:
    got = client.get("/api/v1/search", params={"q": query})
    assert got.status_code == 400 and got.json()["error"]["code"] == code, got.text


def test_out_of_range_parameters_are_usage_errors(client: TestClient) -> None:
    for params in ({"q": "red", "k": 0}, {"q": "red", "offset": -1}, {"q": "red", "after": "soon"},
                   {"q": "red", "min_score": 2}):
        got = client.get("/api/v1/search", params=params)
        assert got.status_code == 400 and got.json()["error"]["code"] == "usage", (params, got.text)


def test_photo_record_thumbnail_and_original(client: TestClient, photos: Path) -> None:
    ids = ids_of(client)
    info = client.get(f"/api/v1/images/{ids['red.jpg']}").json()
    assert info["path"] == str(photos / "red.jpg") and (info["width"], info["height"]) == (120, 90)
    thumb = client.get(f"/api/v1/images/{ids['red.jpg']}/thumb", params={"size": 160})
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"
    assert thumb.headers["cache-control"] == "public, no-cache" and Image.open(io.BytesIO(thumb.content)).size == (120, 90)
    again = client.get(f"/api/v1/images/{ids['red.jpg']}/thumb", params={"size": 160},
                       headers={"If-None-Match": thumb.headers["etag"]})
    assert again.status_code == 304
    whole = client.get(f"/api/v1/images/{ids['red.jpg']}/file")
    assert whole.content == (photos / "red.jpg").read_bytes()
    part = client.get(f"/api/v1/images/{ids['red.jpg']}/file", headers={"Range": "bytes=0-9"})
    assert part.status_code == 206 and part.content == (photos / "red.jpg").read_bytes()[:10]
    assert client.get("/api/v1/images/424242").json()["error"]["code"] == "not_found"
    assert client.get("/api/v1/images/424242/file").status_code == 404


def test_files_outside_the_roots_are_never_served(client: TestClient, library, photos: Path, tmp_path: Path) -> None:
    ids = ids_of(client)
    secret = tmp_path / "photos-private" / "secret.jpg"  # a folder whose name starts like the root's
    write_photo(secret, "black", fmt="JPEG")
    (photos / "green.jpg").unlink()
    (photos / "green.jpg").symlink_to(secret)  # swapped in after indexing
    assert client.get(f"/api/v1/images/{ids['green.jpg']}/file").status_code == 404
    assert client.get(f"/api/v1/images/{ids['green.jpg']}/thumb").status_code == 404
    from sqlalchemy import update

    from imgsearch.store.orm import Image as Row

    with library.sessions.begin() as session:  # a row pointing at the neighbour folder
        session.execute(update(Row).where(Row.id == ids["blue.jpg"]).values(path=str(secret)))
    assert client.get(f"/api/v1/images/{ids['blue.jpg']}/file").status_code == 404
    for path in ("/api/v1/images/..%2F..%2Fetc%2Fpasswd/file", "/api/v1/images/%2e%2e/file",
                 "/api/v1/images//etc/passwd/file", "/static/../../../../etc/passwd", "/static/%2e%2e/%2e%2e/app.py"):
        got = client.get(path)
        assert got.status_code in (400, 404) and b"root:" not in got.content, path


def test_a_photo_the_indexer_reached_through_a_link_is_served_until_the_link_changes(
        client: TestClient, library, photos: Path, tmp_path: Path) -> None:
    """The indexer follows a link out of the folder (a shared album linked in): the page must show that photo, and
    only that file: the same link re-pointed later is refused."""
    album = write_photo(tmp_path / "shared-album" / "beach.jpg", "yellow", fmt="JPEG", seed=7)
    other = write_photo(tmp_path / "shared-album" / "other.jpg", "black", fmt="JPEG", seed=8)
    (photos / "beach.jpg").symlink_to(album)
    library.index([photos], FAKE, IndexSettings(workers=0))
    beach = ids_of(client)["beach.jpg"]
    assert client.get(f"/api/v1/images/{beach}/file").content == album.read_bytes()
    assert client.get(f"/api/v1/images/{beach}/thumb").status_code == 200
    (photos / "beach.jpg").unlink()
    (photos / "beach.jpg").symlink_to(other)  # swapped after indexing: the same name now leads elsewhere
    assert client.get(f"/api/v1/images/{beach}/file").status_code == 404
    assert client.get(f"/api/v1/images/{beach}/thumb").status_code == 404


def test_dups_review_move_aside_and_undo(client: TestClient, photos: Path, library) -> None:
    before = sorted(p.name for p in photos.iterdir())
    groups = dups_answer(client)["groups"]
    assert [g["tier"] for g in groups] == ["exact"] and len(groups[0]["members"]) == 2
    keeper = groups[0]["keeper"]
    other = next(m["id"] for m in groups[0]["members"] if m["id"] != keeper)
    stale = client.post("/api/v1/dups/actions", json={"action": "move", "groups": [keeper + 1000]})
    assert stale.status_code == 400 and "reload the page" in stale.json()["error"]["message"]
    wrong = client.post("/api/v1/dups/actions", json={"action": "delete", "groups": [keeper]})
    assert wrong.status_code == 400 and "move or link" in wrong.json()["error"]["message"]
    assert len(list(photos.iterdir())) == 7
    done = client.post("/api/v1/dups/actions", json={"action": "move", "groups": [other], "keep": [other]})
    assert done.status_code == 200, done.text
    assert len(done.json()["done"]) == 1 and Path(done.json()["done"][0]["src"]).name != Path(
        library.photo(other).path).name
    assert len(list(photos.iterdir())) == 6
    assert client.get("/api/v1/dups").status_code == 202  # the answer kept before the move no longer holds
    assert client.post("/api/v1/dups/undo").status_code == 200
    assert sorted(p.name for p in photos.iterdir()) == before


def test_a_duplicates_scan_is_a_job_and_its_answer_is_kept_while_the_library_stays(client: TestClient,
                                                                                   photos: Path) -> None:
    """GET /dups costs seconds of CPU at 100k photos: the first one starts a scan job (202, its events) and answers
    once it is done; asked again, the answer comes at once, until the library changes (a new photo, an action)."""
    first = client.get("/api/v1/dups")
    assert first.status_code == 202 and first.json()["events"].startswith("/api/v1/jobs/")
    joined = client.get("/api/v1/dups")  # asked again while it runs (or after): the same job, never a second scan
    assert joined.status_code == 200 or joined.json()["job"] == first.json()["job"]
    events = job_events(client, first.json())
    assert events[0] == {**events[0], "type": "start", "kind": "duplicates scan"} and events[-1]["ok"]
    assert any(e["type"] == "stage" for e in events) and "1 group(s)" in events[-1]["summary"]
    answer = client.get("/api/v1/dups")
    assert answer.status_code == 200 and [g["tier"] for g in answer.json()["groups"]] == ["exact"]
    assert client.get("/api/v1/dups").json() == answer.json()  # kept: no new job
    similar = client.get("/api/v1/dups", params={"tier": ["exact", "near", "similar"]})
    assert similar.status_code == 202 and similar.json()["job"] == first.json()["job"] + 1  # other options: a scan
    job_events(client, similar.json())
    assert client.get("/api/v1/dups").status_code == 200  # both answers are kept
    shutil.copy(photos / "red.jpg", photos / "red again.jpg")
    assert client.post("/api/v1/jobs/rescan").status_code == 202
    job_events(client, {"events": f"/api/v1/jobs/{first.json()['job'] + 2}/events"})
    changed = client.get("/api/v1/dups")
    assert changed.status_code == 202  # a new photo: the kept answer no longer holds
    job_events(client, changed.json())
    groups = client.get("/api/v1/dups").json()["groups"]
    assert [sorted(m["name"] for m in g["members"]) for g in groups] == [["red again.jpg", "red copy.jpg", "red.jpg"]]


def test_status_tags_and_a_background_rescan(client: TestClient, photos: Path) -> None:
    status = client.get("/api/v1/status").json()
    assert status["indexed"] == 7 and status["roots"][0][0] == str(photos)
    assert client.get("/api/v1/tags").json() == {}
    write_photo(photos / "new.png", "white", seed=9)
    job = client.post("/api/v1/jobs/rescan")
    assert job.status_code == 202
    events = job_events(client, job.json())
    assert events[0]["type"] == "start" and events[-1]["type"] == "done" and events[-1]["ok"]
    assert "1 new" in events[-1]["summary"] and any(e["type"] == "stage" for e in events)
    assert client.get("/api/v1/status").json()["indexed"] == 8


def test_pages_render(client: TestClient) -> None:
    ids = ids_of(client)
    home = client.get("/")
    assert home.status_code == 200 and "<form" in home.text
    found = client.get("/", params={"q": "red"})
    assert found.text.count('class="tile"') == 7 and f'/photo/{ids["red.jpg"]}?' in found.text
    bad = client.get("/", params={"q": "red +"})
    assert bad.status_code == 400 and "ends with an operator" in bad.text
    photo = client.get(f"/photo/{ids['red.jpg']}", params={"q": "red", "i": "0"})
    assert photo.status_code == 200 and "red.jpg" in photo.text and 'id="next"' in photo.text
    assert client.get("/dups").status_code == 200 and client.get("/status").status_code == 200
    assert client.get("/docs").status_code == 200 and client.get("/openapi.json").json()["info"]["title"] == "imgsearch"


def test_the_openapi_document_says_what_the_server_does(client: TestClient) -> None:
    """FastAPI documents a 422 in its own shape; the server answers a bad parameter with a 400 in the envelope."""
    doc = client.get("/openapi.json").json()
    search = doc["paths"]["/api/v1/search"]["get"]["responses"]
    assert "422" not in search and search["400"]["content"]["application/json"]["schema"]["$ref"] == \
        "#/components/schemas/Error"
    assert all("422" not in op["responses"] for methods in doc["paths"].values() for op in methods.values())
    bad = client.get("/api/v1/search", params={"q": "red", "k": "many"})
    assert bad.status_code == 400 and set(bad.json()["error"]) == set(doc["components"]["schemas"]["Error"]
                                                                     ["properties"]["error"]["properties"])


def test_names_are_escaped_in_pages(library, tmp_path: Path) -> None:
    root = tmp_path / "x"
    write_photo(root / "<script>alert(1)</script>.png", "red")
    library.index([root], FAKE, IndexSettings(workers=0))
    page = TestClient(create_app(library, Guard(port=8765)), base_url=BASE).get("/", params={"q": "red"}).text
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# --- the guards --------------------------------------------------------------------------------------

def test_security_headers_and_no_cors(client: TestClient) -> None:
    got = client.get("/", headers={"Origin": "http://evil.example"})
    csp = got.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert "access-control-allow-origin" not in got.headers and got.headers["x-content-type-options"] == "nosniff"


def test_host_header_must_be_this_server(client: TestClient) -> None:
    assert client.get("/api/v1/status", headers={"Host": "evil.example"}).status_code == 400
    assert client.get("/api/v1/status", headers={"Host": "localhost:8765"}).status_code == 200


def test_state_changes_must_come_from_this_origin(client: TestClient) -> None:
    evil = client.post("/api/v1/dups/undo", headers={"Origin": "http://evil.example"})
    assert evil.status_code == 403 and evil.json()["error"]["code"] == "bad_origin"
    cross = client.post("/api/v1/jobs/rescan", headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    same = client.post("/api/v1/dups/undo", headers={"Origin": BASE})
    assert same.status_code == 404  # allowed through: there is simply nothing to undo


def test_a_token_is_asked_for_and_kept_in_a_strict_cookie(library, photos: Path) -> None:
    library.index([photos], FAKE, IndexSettings(workers=0))
    app = create_app(library, Guard(port=8765, bind="0.0.0.0", token="s3cret-token-for-tests"))
    client = TestClient(app, base_url=BASE, follow_redirects=False)
    assert client.get("/api/v1/status").status_code == 401
    assert client.get("/api/v1/status", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/api/v1/status", headers={"Authorization": "Bearer s3cret-token-for-tests"}).status_code == 200
    link = client.get("/", params={"token": "s3cret-token-for-tests", "q": "red"})
    assert link.status_code == 303 and link.headers["location"] == "/?q=red"
    cookie = link.headers["set-cookie"]
    assert f"{COOKIE}=s3cret-token-for-tests" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    client.cookies.set(COOKIE, "s3cret-token-for-tests")
    assert client.get("/", params={"q": "red"}).status_code == 200
    # the printed link's redirect stays on this server, whatever the path looks like
    evil = client.get(f"{BASE}//evil.example/x", params={"token": "s3cret-token-for-tests"})
    assert evil.status_code == 303 and evil.headers["location"] == "/evil.example/x", evil.headers


def test_uploads_are_capped(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from imgsearch.web import api

    monkeypatch.setattr(api, "MAX_UPLOAD_BYTES", 100)
    data = io.BytesIO()
    Image.new("RGB", (200, 200), (1, 2, 3)).save(data, format="PNG")
    got = client.post("/api/v1/search/image", files={"image": ("big.png", data.getvalue() + os.urandom(200), "image/png")})
    assert got.status_code == 400 and "over 100 bytes" in got.json()["error"]["message"]


def test_a_running_server_sees_what_another_indexer_added(client: TestClient, library, photos: Path,
                                                           fake_loader) -> None:
    from imgsearch.library import Library

    assert len(client.get("/api/v1/search", params={"q": "red", "k": 100}).json()["results"]) == 7
    write_photo(photos / "later.png", "white", seed=11)
    other = Library.open(library.path, encoder_loader=fake_loader)  # as `imgsearch index` in another process
    try:
        other.index([photos], FAKE, IndexSettings(workers=0))
    finally:
        other.close()
    names = [r["name"] for r in client.get("/api/v1/search", params={"q": "red", "k": 100}).json()["results"]]
    assert len(names) == 8 and "later.png" in names


def test_thumbnails_made_ahead_are_the_ones_served(client: TestClient, library, photos: Path) -> None:
    (photos / "cyan.jpg").write_bytes(b"not a jpeg any more")  # breaks after indexing
    assert library.make_thumbnails(threads=2) == (6, 0, 1)
    assert library.make_thumbnails(threads=2) == (0, 6, 1)
    files = list((library.path / "thumbs").rglob("*.webp"))
    assert len(files) == 5  # "red.jpg" and "red copy.jpg" hold the same bytes: one thumbnail
    cached = {p.read_bytes() for p in files}
    red = ids_of(client)["red.jpg"]
    served = client.get(f"/api/v1/images/{red}/thumb", params={"size": 300})
    assert served.status_code == 200 and served.content in cached
    assert Image.open(io.BytesIO(served.content)).size == (120, 90)  # never enlarged


def test_a_damaged_cached_thumbnail_is_made_again_not_served(client: TestClient, library) -> None:
    red = ids_of(client)["red.jpg"]
    good = client.get(f"/api/v1/images/{red}/thumb", params={"size": 160}).content
    [cached] = list((library.path / "thumbs").rglob("*.webp"))
    for damage in (bytes(len(good)), good[: len(good) // 2], b"RIFF" + good[4:-7]):  # garbled, torn, cut short
        cached.write_bytes(damage)
        served = client.get(f"/api/v1/images/{red}/thumb", params={"size": 160})
        assert served.status_code == 200 and served.content == good and cached.read_bytes() == good
    cached.write_bytes(good[:100])
    made, there, _ = library.make_thumbnails(160, threads=1)
    assert there == 0 and made == 7 and cached.read_bytes() == good  # made ahead: the damaged one is not "there"


def test_every_error_code_has_its_http_status() -> None:
    from imgsearch import errors
    from imgsearch.web.errors import STATUS

    def subclasses(cls: type) -> list[type]:
        return [cls] + [s for c in cls.__subclasses__() for s in subclasses(c)]

    codes = {c.code for c in subclasses(errors.ImgSearchError)}
    assert codes <= set(STATUS), codes - set(STATUS)
    assert (STATUS["usage"], STATUS["not_found"], STATUS["busy"], STATUS["disk_full"], STATUS["network"]) == \
        (400, 404, 409, 507, 502)


def test_busy_while_an_indexer_holds_the_library(client: TestClient, library, photos: Path) -> None:
    from imgsearch import folder

    keeper = dups_answer(client)["groups"][0]["keeper"]
    with folder.writer_lock(library.path):  # as a running `imgsearch index` holds it
        got = client.post("/api/v1/dups/actions", json={"action": "move", "groups": [keeper]})
        assert got.status_code == 409 and got.json()["error"]["code"] == "busy"
        assert client.get("/api/v1/search", params={"q": "red"}).status_code == 200  # searches go on
    assert len(list(photos.iterdir())) == 7  # nothing moved


def test_a_video_is_one_result_shown_at_its_best_moment(client: TestClient, library, photos: Path) -> None:
    from tests.factories import write_video

    write_video(photos / "clip.mp4", [(4, Image.new("RGB", (64, 48), (220, 30, 30))),
                                      (4, Image.new("RGB", (64, 48), (20, 200, 30)))])
    library.index([photos], FAKE, IndexSettings(workers=0))
    hits = client.get("/api/v1/search", params={"q": "green", "k": 100}).json()["results"]
    clip = [h for h in hits if h["name"] == "clip.mp4"]
    assert len(clip) == 1 and clip[0]["time_ms"] in (4000, 6000) and clip[0]["at"] in ("0:04", "0:06")
    assert all(h["time_ms"] is None for h in hits if h["name"] != "clip.mp4")
    red_moment = client.get(f"/api/v1/images/{clip[0]['id']}/thumb", params={"size": 160, "t": 0})
    green_moment = client.get(f"/api/v1/images/{clip[0]['id']}/thumb", params={"size": 160, "t": clip[0]["time_ms"]})
    colours = [Image.open(io.BytesIO(r.content)).convert("RGB").getpixel((20, 20)) for r in (red_moment, green_moment)]
    assert colours[0][0] > 150 > colours[0][1] and colours[1][1] > 150 > colours[1][0]  # the frame asked for
    page = client.get("/", params={"q": "green"}).text
    assert f"/photo/{clip[0]['id']}?" in page and f"t={clip[0]['time_ms']}" in page and "&#9654;" in page
    photo = client.get(f"/photo/{clip[0]['id']}", params={"t": clip[0]["time_ms"]}).text
    assert "<video" in photo and f"/file#t={clip[0]['time_ms'] // 1000}" in photo and "0:08" in photo  # its length
    ranged = client.get(f"/api/v1/images/{clip[0]['id']}/file", headers={"Range": "bytes=0-99"})
    assert ranged.status_code == 206 and len(ranged.content) == 100  # players seek with byte ranges


@pytest.mark.parametrize("path", [
    "/photo/{id}?q=x&i=\u00b2", "/photo/{id}?t=\u00b2", "/photo/{id}?q=x&i=" + "9" * 5000,
    "/api/v1/images/99999999999999999999", "/api/v1/images/99999999999999999999/similar",
    "/api/v1/images/99999999999999999999/thumb", "/api/v1/search?q=like:99999999999999999999",
    "/api/v1/search?q=like:" + "9" * 5000,
], ids=["superscript-rank", "superscript-time", "5000-digit-rank", "huge-id", "huge-id-similar", "huge-id-thumb",
        "huge-like", "5000-digit-like"])
def test_odd_numbers_in_a_url_are_a_400_with_a_code(client: TestClient, path: str) -> None:
    got = client.get(path.format(id=ids_of(client)["red.jpg"]))
    assert got.status_code in (400, 404), (got.status_code, got.text[:300])
    if path.startswith("/api/"):
        assert got.json()["error"]["code"] in ("usage", "not_found"), got.text[:300]
    else:
        assert "Traceback" not in got.text


def test_a_changed_photo_gets_a_new_thumbnail_under_the_same_url(client: TestClient, library, photos: Path) -> None:
    """Browsers revalidate thumbnails (no-cache + ETag): once the file changed and was indexed again, the URL a browser
    cached answers with the new picture, not a 304 (a year-long `immutable` kept the old one)."""
    url = f"/api/v1/images/{ids_of(client)['red.jpg']}/thumb"
    before = client.get(url)
    write_photo(photos / "red.jpg", "blue", size=(120, 90), fmt="JPEG", seed=9)
    os.utime(photos / "red.jpg", ns=(10**18, 10**18))
    library.index([photos], FAKE, IndexSettings(workers=0))
    after = client.get(url, headers={"If-None-Match": before.headers["etag"]})
    assert after.status_code == 200 and after.headers["etag"] != before.headers["etag"]
    old, new = (np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"), float).mean(axis=(0, 1)) for r in (before, after))
    assert old[0] > old[2] and new[2] > new[0]  # red then, blue now


def test_a_deleted_photo_is_said_to_be_gone_not_outside_the_folders(client: TestClient, photos: Path) -> None:
    image_id = ids_of(client)["blue.jpg"]
    (photos / "blue.jpg").unlink()
    got = client.get(f"/api/v1/images/{image_id}/file")
    assert got.status_code == 404 and "file is gone from disk" in got.json()["error"]["message"], got.text


def test_framework_errors_use_the_same_envelope(client: TestClient) -> None:
    missing = client.get("/api/v1/no-such-route")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found", missing.text
    wrong = client.delete("/api/v1/search")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed", wrong.text
    assert "allow" in {k.lower() for k in wrong.headers}  # the methods that would do


def test_other_sites_pages_may_link_here_but_not_fetch_from_here(client: TestClient) -> None:
    fetched = client.get("/api/v1/search", params={"q": "a new text to embed"},
                         headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"})
    assert fetched.status_code == 403 and fetched.json()["error"]["code"] == "bad_origin"
    image = client.get("/api/v1/dups", headers={"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "no-cors"})
    assert image.status_code == 403
    linked = client.get("/", params={"q": "red"}, headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"})
    assert linked.status_code == 200
    own = client.get("/api/v1/search", params={"q": "red"}, headers={"Sec-Fetch-Site": "same-origin"})
    assert own.status_code == 200


def test_an_upload_being_encoded_does_not_hold_up_other_requests(client: TestClient, fake_encoders) -> None:
    """The upload's decode and encode run off the event loop: while one is stuck in the encoder, a static file and
    a search are answered. (Synchronised on the encoder's own signals, not on time.)"""
    import threading

    encoder = fake_encoders["fake"]
    entered, release = threading.Event(), threading.Event()
    plain = encoder.encode_pixels

    def held(pixels: np.ndarray) -> np.ndarray:
        entered.set()
        assert release.wait(20), "the other requests never got through"
        return plain(pixels)

    encoder.encode_pixels = held
    data = io.BytesIO()
    Image.new("RGB", (50, 40), (30, 60, 220)).save(data, format="PNG")
    answer: dict = {}
    with client:  # one event loop for every request, as a server has
        upload = threading.Thread(target=lambda: answer.update(response=client.post(
            "/api/v1/search/image", files={"image": ("q.png", data.getvalue(), "image/png")})))
        upload.start()
        try:
            assert entered.wait(60)
            assert client.get("/static/style.css").status_code == 200
            assert client.get("/api/v1/search", params={"q": "a red thing"}).status_code == 200
            assert upload.is_alive()  # still inside the encoder: the two answers above did not wait for it
        finally:
            release.set()
            upload.join(60)
    assert answer["response"].status_code == 200


def test_uploads_are_kept_an_hour_after_their_last_use_and_the_latest_only(monkeypatch) -> None:
    from imgsearch.errors import NotFoundError
    from imgsearch.web import uploads as uploads_mod

    clock = [1000.0]
    monkeypatch.setattr(uploads_mod.time, "monotonic", lambda: clock[0])
    kept = uploads_mod.Uploads(kept_s=3600, kept=2)
    a, b = kept.put(np.ones(4)), kept.put(np.zeros(4))
    clock[0] += 3000
    assert kept.get(a).sum() == 4  # used again: its hour starts again
    clock[0] += 1000  # b is 4,000 s old, a 1,000 s
    with pytest.raises(NotFoundError, match="no longer kept"):
        kept.get(b)
    assert kept.get(a).sum() == 4
    c, d = kept.put(np.ones(4)), kept.put(np.ones(4))  # past the latest 2: the oldest goes
    with pytest.raises(NotFoundError):
        kept.get(a)
    assert kept.get(c).sum() == kept.get(d).sum() == 4


def test_download_a_selection_as_one_zip(client: TestClient, photos: Path) -> None:
    import zipfile

    ids = ids_of(client)
    (photos / "more").mkdir()
    shutil.copy(photos / "blue.jpg", photos / "more" / "red.jpg")  # another photo under a name already in the zip
    assert client.post("/api/v1/jobs/rescan").status_code == 202
    job_events(client, {"events": "/api/v1/jobs/1/events"})
    ids = ids | {"other red": next(r["id"] for r in client.get("/api/v1/search", params={  # (ids before: by name)
        "q": "red", "k": 20, "folder": str(photos / "more")}).json()["results"])}
    (photos / "green.jpg").unlink()  # gone since indexing: listed, not a failure of the whole download
    got = client.get("/api/v1/download", params={"id": [ids["red.jpg"], ids["other red"], ids["green.jpg"],
                                                       ids["red.jpg"]]})
    assert got.status_code == 200 and got.headers["content-type"] == "application/zip"
    assert 'filename="imgsearch-3-photos.zip"' in got.headers["content-disposition"]
    archive = zipfile.ZipFile(io.BytesIO(got.content))
    assert archive.namelist() == ["red.jpg", "red (2).jpg", "not-included.txt"]
    assert archive.read("red.jpg") == (photos / "red.jpg").read_bytes()
    assert archive.read("red (2).jpg") == (photos / "more" / "red.jpg").read_bytes()
    assert f"{ids['green.jpg']}\t" in archive.read("not-included.txt").decode()
    assert client.get("/api/v1/download").status_code == 400
    too_many = client.get("/api/v1/download", params={"id": list(range(1, 502))})
    assert too_many.status_code == 400 and "at most 500" in too_many.json()["error"]["message"]


def test_timeline_months_and_pages(library, tmp_path: Path) -> None:
    root = tmp_path / "dated"
    taken = [datetime(2024, 5, 3, 10), datetime(2024, 5, 20, 8), datetime(2024, 5, 31, 23, 59), datetime(2023, 12, 31, 12),
             datetime(2024, 6, 1, 0, 0)]
    for n, when in enumerate(taken):
        write_photo(root / f"p{n}.jpg", COLOURS[n % len(COLOURS)], taken=when, seed=n)
    undated = write_photo(root / "undated.png", "cyan", fmt="PNG")
    os.utime(undated, (datetime(2022, 2, 14, 12).timestamp(),) * 2)
    library.index([root], FAKE, IndexSettings(workers=0))
    client = TestClient(create_app(library, Guard(port=8765)), base_url=BASE)
    body = client.get("/api/v1/timeline").json()
    assert body == {"months": [{"month": "2024-06", "count": 1}, {"month": "2024-05", "count": 3},
                               {"month": "2023-12", "count": 1}, {"month": "2022-02", "count": 1}], "total": 6}
    may = client.get("/api/v1/timeline/2024-05", params={"limit": 2}).json()
    assert [p["name"] for p in may["photos"]] == ["p2.jpg", "p1.jpg"] and may["next_offset"] == 2
    assert may["photos"][0]["date"] == "2024-05-31T23:59:00" and may["photos"][0]["video"] is False
    rest = client.get("/api/v1/timeline/2024-05", params={"limit": 2, "offset": 2}).json()
    assert [p["name"] for p in rest["photos"]] == ["p0.jpg"] and rest["next_offset"] is None
    assert [p["name"] for p in client.get("/api/v1/timeline/2022-02").json()["photos"]] == ["undated.png"]
    # the filters apply: only PNGs, only after a day
    assert client.get("/api/v1/timeline", params={"ext": "png"}).json()["months"] == [{"month": "2022-02", "count": 1}]
    assert [m["month"] for m in client.get("/api/v1/timeline", params={"after": "2024-05-10"}).json()["months"]] \
        == ["2024-06", "2024-05"]
    assert client.get("/api/v1/timeline/2024-05", params={"after": "2024-05-10"}).json()["photos"][-1]["name"] == "p1.jpg"
    # the photo's record says where the timeline shows it
    assert client.get(f"/api/v1/images/{may['photos'][0]['id']}").json()["date"] == "2024-05-31T23:59:00"
    # thumbnails already made come inline when asked (one request for a block's pictures); the others by URL
    assert all("thumb" not in p for p in client.get("/api/v1/timeline/2024-05", params={"inline": 320}).json()["photos"])
    library.make_thumbnails(threads=1)
    (root / "p1.jpg").unlink()  # gone since: its tile asks the server, which says so
    inline = {p["name"]: p.get("thumb") for p in
              client.get("/api/v1/timeline/2024-05", params={"inline": 320}).json()["photos"]}
    assert inline["p1.jpg"] is None and inline["p0.jpg"].startswith("data:image/webp;base64,")
    served = client.get(f"/api/v1/images/{may['photos'][0]['id']}/thumb", params={"size": 320}).content
    assert base64.b64decode(inline["p2.jpg"].split(",", 1)[1]) == served
    for bad, field in (("/api/v1/timeline/2024-13", "month"), ("/api/v1/timeline/may", "month"),
                       ("/api/v1/timeline/2024-05?limit=0", "limit"), ("/api/v1/timeline?colour=red", "colour")):
        got = client.get(bad)
        assert got.status_code == 400, (bad, got.text)
        assert field in got.text


def test_places_for_the_map(library, tmp_path: Path) -> None:
    root = tmp_path / "trip"
    write_photo(root / "lisbon.jpg", "red", fmt="JPEG", gps=(38.7169, -9.1399), taken=datetime(2024, 5, 1))
    write_photo(root / "paris.jpg", "blue", fmt="JPEG", gps=(48.8584, 2.2945), taken=datetime(2019, 5, 1), seed=1)
    write_photo(root / "home.png", "green", fmt="PNG")
    library.index([root], FAKE, IndexSettings(workers=0))
    client = TestClient(create_app(library, Guard(port=8765)), base_url=BASE)
    body = client.get("/api/v1/places").json()
    assert len(body["ids"]) == 2 and sorted(zip(body["lat"], body["lon"])) == [(38.7169, -9.1399), (48.8584, 2.2945)]
    assert client.get("/api/v1/places", params={"after": "2020"}).json()["lat"] == [38.7169]
    assert client.get("/api/v1/places", params={"country": "FR"}).json()["lon"] == [2.2945]
    assert client.get("/api/v1/places", params={"country": "Narnia"}).status_code == 400
    page = client.get("/map", params={"place": "lisbon"})
    assert page.status_code == 200 and 'data-filters="place=lisbon"' in page.text


def test_a_selection_set_aside_leaves_the_library_and_comes_back(client: TestClient, library, photos: Path) -> None:
    ids = ids_of(client)
    chosen = [ids["red.jpg"], ids["blue.jpg"]]
    done = client.post("/api/v1/set-aside", json={"ids": chosen + [999999]})
    assert done.status_code == 200, done.text
    body = done.json()
    assert sorted(Path(s["src"]).name for s in body["done"]) == ["blue.jpg", "red.jpg"]
    assert body["problems"] == [["photo 999999", "no such photo in this library"]]
    assert not (photos / "red.jpg").exists() and not (photos / "blue.jpg").exists()
    moved = [Path(s["dest"]) for s in body["done"]]
    assert all(p.exists() and not p.is_relative_to(photos) for p in moved)  # outside the library's folders
    assert "red.jpg" not in ids_of(client) and "blue.jpg" not in ids_of(client)
    assert client.get("/api/v1/timeline").json()["total"] == 5
    undone = client.post("/api/v1/dups/undo").json()
    assert len(undone["done"]) == 2 and (photos / "red.jpg").exists() and (photos / "blue.jpg").exists()
    assert {"red.jpg", "blue.jpg"} <= set(ids_of(client))
    # more than a handful needs a yes (the page asks for the number, typed); none at all is a usage error
    many = client.post("/api/v1/set-aside", json={"ids": list(ids.values())})
    assert many.status_code == 400 and many.json()["error"]["param"] == "yes"
    assert len(list(photos.iterdir())) == 7  # nothing moved
    assert client.post("/api/v1/set-aside", json={"ids": []}).status_code == 400


def test_people_tag_photos_beside_the_model(client: TestClient, library, photos: Path) -> None:
    ids = ids_of(client)
    red, blue, green = ids["red.jpg"], ids["blue.jpg"], ids["green.jpg"]
    given = client.post("/api/v1/tags", json={"ids": [red, blue], "add": ["Holiday", " sea "]})
    assert given.json() == {"given": 4, "photos_that_lost_one": 0}
    assert client.post("/api/v1/tags", json={"ids": [red], "add": ["holiday"]}).json()["given"] == 0  # has it
    assert client.get("/api/v1/tags").json() == {"Holiday": 2, "sea": 2}
    found = client.get("/api/v1/search", params={"q": "anything", "tag": "holiday", "k": 10}).json()["results"]
    assert {r["id"] for r in found} == {red, blue}
    assert client.get("/api/v1/timeline", params={"tag": "sea"}).json()["total"] == 2
    assert ("sea", 1.0) in [tuple(t) for t in client.get(f"/api/v1/images/{red}").json()["tags"]]
    taken = client.post("/api/v1/tags", json={"ids": [blue, green], "remove": ["SEA"]}).json()
    assert taken == {"given": 0, "photos_that_lost_one": 1}
    assert client.get("/api/v1/tags").json() == {"Holiday": 2, "sea": 1}
    (photos / "red.jpg").write_bytes((photos / "yellow.jpg").read_bytes())  # the file changes: a person's tags stay
    library.index([photos], FAKE, IndexSettings(workers=0))
    assert client.get("/api/v1/tags").json() == {"Holiday": 2, "sea": 1}
    for body, param in (({"ids": [red]}, "add"), ({"ids": [], "add": ["x"]}, "ids"),
                        ({"ids": [red], "add": [""]}, "add"), ({"ids": [red], "add": ["x" * 101]}, "add")):
        refused = client.post("/api/v1/tags", json=body)
        assert refused.status_code == 400 and refused.json()["error"]["param"] == param, refused.text
    assert client.post("/api/v1/tags", json={"ids": [999999], "add": ["x"]}).status_code == 404


def test_the_home_page_and_the_map_refuse_bad_filters_in_words(client: TestClient) -> None:
    for path in ("/?country=Narnia", "/map?country=Narnia", "/?after=someday", "/map?near=1,2"):
        page = client.get(path)
        assert page.status_code == 400, path
        assert "country" in page.text or "date" in page.text or "LAT,LON,KM" in page.text, page.text[:300]
    year_zero = client.get("/api/v1/timeline/0000-01")
    assert year_zero.status_code == 400 and "years start at 0001" in year_zero.json()["error"]["message"]
    assert client.get("/").status_code == 200 and 'id="timeline"' in client.get("/").text


def test_a_search_asked_again_is_answered_from_memory_while_the_library_stays(client: TestClient, library,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    searched: list[tuple] = []
    search = library.search
    monkeypatch.setattr(library, "search", lambda *a, **kw: searched.append(a) or search(*a, **kw))
    kept = library.revision() is not None  # its own SQLite file; a PostgreSQL library keeps no answer
    ask = {"q": "a red thing", "k": 3}
    client.get("/api/v1/search", params=ask)  # a new text: its vector is cached in the library, a change
    searched.clear()
    first = client.get("/api/v1/search", params=ask)
    again = client.get("/api/v1/search", params=ask)
    assert first.status_code == again.status_code == 200 and again.content == first.content
    assert again.headers["content-security-policy"] == first.headers["content-security-policy"]
    assert len(searched) == (1 if kept else 2)
    ids = [r["id"] for r in first.json()["results"]]
    assert client.get(f"/api/v1/images/{ids[0]}/similar", params={"k": 2}).json() \
        == client.get(f"/api/v1/images/{ids[0]}/similar", params={"k": 2}).json()
    assert len(searched) == (2 if kept else 4)
    client.get("/api/v1/search", params={**ask, "offset": 3})  # another page is another answer
    assert len(searched) == (3 if kept else 5)
    # errors and searches by an upload's vector (kept an hour only) are worked out each time
    for _ in range(2):
        assert client.get("/api/v1/search", params={"q": "red", "k": 0}).status_code == 400
    data = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(data, format="PNG")
    upload = client.post("/api/v1/search/image", files={"image": ("q.png", data.getvalue(), "image/png")}).json()
    before = len(searched)
    for _ in range(2):
        assert client.get("/api/v1/search", params={"upload": upload["upload"], "k": 2}).status_code == 200
    assert len(searched) == before + 2
    # a change made through the server itself: the photo set aside leaves the same search's answer at once
    client.post("/api/v1/set-aside", json={"ids": [ids[0]]}).raise_for_status()
    assert ids[0] not in [r["id"] for r in client.get("/api/v1/search", params=ask).json()["results"]]


def test_a_kept_answer_goes_only_to_whom_the_guard_lets_in(library, photos: Path) -> None:
    library.index([photos], FAKE, IndexSettings(workers=0))
    client = TestClient(create_app(library, Guard(port=8765, bind="0.0.0.0", token="s3cret-token-for-tests")),
                        base_url=BASE)
    let_in = {"Authorization": "Bearer s3cret-token-for-tests"}
    assert client.get("/api/v1/search", params={"q": "red"}, headers=let_in).status_code == 200
    assert client.get("/api/v1/search", params={"q": "red"}).status_code == 401
    assert client.get("/api/v1/search", params={"q": "red", "token": "wrong"}).status_code == 401
    assert client.get("/api/v1/search", params={"q": "red"}, headers={**let_in, "Host": "evil.example"}) \
        .status_code == 400
