"""The query layer: grammar, arithmetic, filters, cutoff, sorting, paging, cache, URL terms, outputs."""

from __future__ import annotations

import http.server
import json
import os
import threading
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imgsearch.search import ranking as search_mod
from imgsearch.search import searcher
from imgsearch.config import IndexSettings, ModelSpec, SearchOptions
from imgsearch.errors import ImgSearchError, NotFoundError, UsageError
from imgsearch.search.export import export_results
from imgsearch.search.fetch import fetch_url
from imgsearch.filters import Filters, check_ext, parse_date
from imgsearch.search.query import feedback_terms, parse_query
from imgsearch.search.ranking import combine
from tests.factories import write_photo

FAKE = ModelSpec("fake", None)


# --- grammar ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("words,expected", [
    (["a", "dog", "on", "the", "beach"], [(1.0, "text", "a dog on the beach")]),
    (["beach", "+", "sunset", "-", "people"], [(1.0, "text", "beach"), (1.0, "text", "sunset"), (-1.0, "text", "people")]),
    (["2:dog", "+", "0.5:@cat.jpg"], [(2.0, "text", "dog"), (0.5, "image", "cat.jpg")]),
    (["-", "rain"], [(-1.0, "text", "rain")]),
    (["@https://x.org/a.jpg", "-", "1.5:night sky"], [(1.0, "url", "https://x.org/a.jpg"), (-1.5, "text", "night sky")]),
    (["a + b"], [(1.0, "text", "a + b")]),  # an operator inside quotes is part of the phrase
    (["10:30 meeting"], [(10.0, "text", "30 meeting")]),
])
def test_parse_query(words: list[str], expected: list[tuple]) -> None:
    assert [(t.weight, t.kind, t.value) for t in parse_query(words)] == expected


@pytest.mark.parametrize("words", [[], ["+"], ["a", "+"], ["+", "a"], ["a", "-", "-", "b"], ["3:"], ["@"], ["  "]])
def test_parse_query_errors(words: list[str]) -> None:
    with pytest.raises(UsageError):
        parse_query(words)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=20), st.sampled_from(["+", "-", "2:", "@", "-1:x", "0.5:@"])), max_size=8))
def test_parser_never_crashes(words: list[str]) -> None:
    try:
        terms = parse_query(words)
    except UsageError as exc:
        assert exc.exit_code == 2 and exc.message
    else:
        assert terms and all(t.value and t.kind in ("text", "image", "url") for t in terms)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30))
def test_date_and_ext_validation_never_crash(text: str) -> None:
    for check in (lambda: parse_date(text, "--after"), lambda: check_ext(text)):
        try:
            check()
        except UsageError as exc:
            assert repr(text) in exc.message


def test_dates_parse_to_period_starts() -> None:
    assert parse_date("2021", "--after") == datetime(2021, 1, 1)
    assert parse_date("2021-06", "--after") == datetime(2021, 6, 1)
    assert parse_date("2021-06-15T08:30", "--before") == datetime(2021, 6, 15, 8, 30)


def test_combine_weights_and_cancellation() -> None:
    a, b = np.eye(3, dtype=np.float32)[:2]
    q = combine(np.stack([a, b]), [3.0, 1.0])
    np.testing.assert_allclose(q[0], np.array([3, 1, 0]) / np.sqrt(10), atol=1e-6)
    with pytest.raises(UsageError, match="cancel"):
        combine(np.stack([a, a]), [1.0, -1.0])


# --- searching a library --------------------------------------------------------------------------------

@pytest.fixture
def colours(library, tmp_path: Path):
    root = tmp_path / "pics"
    made = {
        "red": write_photo(root / "2019" / "red.jpg", "red", taken=datetime(2019, 5, 1), make="Canon", model="EOS R6", fmt="JPEG"),
        "blue": write_photo(root / "2020" / "blue.jpg", "blue", taken=datetime(2020, 7, 1), make="NIKON", model="Z6", fmt="JPEG"),
        "magenta": write_photo(root / "2021" / "magenta.png", "magenta", size=(300, 200)),
        "green": write_photo(root / "2021" / "green.webp", "green", size=(40, 30)),
        "white": write_photo(root / "misc" / "white.jpg", "white", taken=datetime(2018, 1, 2), make="Canon", model="PowerShot", fmt="JPEG"),
    }
    os.utime(made["magenta"], (datetime(2021, 3, 3).timestamp(),) * 2)  # no EXIF: the file time counts
    os.utime(made["green"], (datetime(2022, 3, 3).timestamp(),) * 2)
    library.index([root], FAKE, IndexSettings(workers=0))
    return made


def run(library, words: list[str], **options) -> list[str]:
    filters = options.pop("filters", Filters())
    return [Path(r.path).stem for r in library.search(parse_query(words), SearchOptions(filters=filters, **options), FAKE)]


def test_arithmetic_moves_the_query(library, colours) -> None:
    assert run(library, ["red", "+", "blue"], k=1) == ["magenta"]
    assert run(library, ["3:red", "+", "blue"], k=1) == ["red"]
    assert run(library, ["magenta", "-", "0.5:red"], k=1) == ["blue"]
    assert run(library, ["@" + str(colours["red"]), "+", "blue"], k=1) == ["magenta"]


def test_marks_move_the_ranking_and_unliked_photos_leave_it(library, colours) -> None:
    """Relevance feedback: the query plus the mean of the liked photos minus a smaller share of the unliked ones;
    a liked photo stays among the results (it is what the user wants), an unliked one leaves them."""
    ids = {Path(r.path).stem: r.id for r in library.search(parse_query(["red"]), SearchOptions(k=10), FAKE)}
    plain = run(library, ["red"], k=5)

    def marked(liked: list[str], unliked: list[str]) -> list[str]:
        terms = feedback_terms(parse_query(["red"]), [ids[n] for n in liked], [ids[n] for n in unliked])
        return [Path(r.path).stem for r in library.search(terms, SearchOptions(k=5), FAKE)]

    more_blue = marked(["blue"], [])
    assert more_blue.index("blue") < plain.index("blue") and more_blue[0] == "magenta"  # red + blue
    fewer_magenta = marked([], ["magenta"])
    assert "magenta" not in fewer_magenta and fewer_magenta[0] == "red" and len(fewer_magenta) == 4
    both = marked(["blue", "red"], ["white"])
    assert "white" not in both and {"blue", "red"} <= set(both)
    with pytest.raises(UsageError, match="marked both up and down"):
        feedback_terms(parse_query(["red"]), [ids["red"]], [ids["red"]])
    with pytest.raises(NotFoundError, match="no photo 999999"):
        library.search(feedback_terms(parse_query(["red"]), [999999], []), SearchOptions(k=5), FAKE)


def test_filters_compose_and_are_exact(library, colours, tmp_path: Path) -> None:
    every = dict(k=10)
    assert sorted(run(library, ["red"], filters=Filters(folder=str(tmp_path / "pics" / "2021")), **every)) == ["green", "magenta"]
    assert sorted(run(library, ["red"], filters=Filters(camera="canon"), **every)) == ["red", "white"]
    assert run(library, ["red"], filters=Filters(camera="canon", before=datetime(2019, 1, 1)), **every) == ["white"]
    assert sorted(run(library, ["red"], filters=Filters(after=datetime(2021, 1, 1)), **every)) == ["green", "magenta"]
    assert sorted(run(library, ["red"], filters=Filters(ext=("png", "webp")), **every)) == ["green", "magenta"]
    assert sorted(run(library, ["red"], filters=Filters(ext=("jpg",)), **every)) == ["blue", "red", "white"]
    assert run(library, ["red"], filters=Filters(min_size=100), **every) == ["magenta"]
    with pytest.raises(UsageError, match="/nowhere is not inside any indexed folder"):  # says why nothing matches
        run(library, ["red"], filters=Filters(folder="/nowhere"), **every)
    with pytest.raises(UsageError, match="no image is tagged 'cat'.*no image is tagged yet"):
        run(library, ["red"], filters=Filters(tag=("cat",)), **every)


def test_broad_filters_widen_the_search_instead_of_losing_results(library, colours, monkeypatch) -> None:
    monkeypatch.setattr(search_mod, "EXACT_FILTER_MAX", 0)  # force the widening path
    assert sorted(run(library, ["red"], filters=Filters(ext=("jpg",)), k=10)) == ["blue", "red", "white"]
    assert run(library, ["red"], filters=Filters(ext=("jpg",)), k=1) == ["red"]


def test_min_score_keeps_exactly_the_results_above_it(library, colours) -> None:
    scored = library.search(parse_query(["red"]), SearchOptions(k=10), FAKE)
    cutoff = (scored[1].score + scored[2].score) / 2
    kept = library.search(parse_query(["red"]), SearchOptions(k=10, min_score=cutoff), FAKE)
    assert [r.path for r in kept] == [r.path for r in scored[:2]]
    assert library.search(parse_query(["red"]), SearchOptions(k=10, min_score=0.9999), FAKE)[0].path == str(colours["red"])


def test_sort_by_date_and_path_after_the_cutoff_and_paging(library, colours) -> None:
    assert run(library, ["red"], k=5, sort="date") == ["green", "magenta", "blue", "red", "white"]
    assert run(library, ["red"], k=5, sort="path") == ["red", "blue", "green", "magenta", "white"]
    full = run(library, ["blue"], k=5)
    assert run(library, ["blue"], k=2) + run(library, ["blue"], k=2, offset=2) + run(library, ["blue"], k=2, offset=4) == full
    ranks = [r.rank for r in library.search(parse_query(["blue"]), SearchOptions(k=2, offset=2), FAKE)]
    assert ranks == [1, 2]


def test_an_order_by_date_or_path_runs_on_from_page_to_page(library, colours, monkeypatch) -> None:
    """Ordered by date, page 2 goes on where page 1 stopped (each page was ordered on its own: every page started
    again from the newest); the results ordered are the best SORTED_DEPTH by score."""
    for sort in ("date", "path"):
        whole = run(library, ["red"], k=5, sort=sort)
        assert run(library, ["red"], k=2, sort=sort) + run(library, ["red"], k=2, offset=2, sort=sort) \
            + run(library, ["red"], k=2, offset=4, sort=sort) == whole
    monkeypatch.setattr(searcher, "SORTED_DEPTH", 3)
    ordered = run(library, ["red"], k=2, sort="path") + run(library, ["red"], k=2, offset=2, sort="path")
    assert ordered == sorted(run(library, ["red"], k=3), key=lambda stem: str(colours[stem]))  # the best 3, by path
    assert run(library, ["red"], k=2, offset=4, sort="path") == []  # the list ends there


def test_repeated_text_queries_come_from_the_cache(library, colours, fake_encoders) -> None:
    before = fake_encoders["fake"].texts_encoded
    first = run(library, ["blue"], k=3)
    assert fake_encoders["fake"].texts_encoded == before + 1
    assert run(library, ["blue"], k=3) == first
    assert fake_encoders["fake"].texts_encoded == before + 1


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path):
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _Handler(*a, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_url_image_terms(library, colours, served) -> None:
    root, base = served
    write_photo(root / "q.jpg", "magenta", fmt="JPEG", seed=9)
    assert run(library, [f"@{base}/q.jpg"], k=1) == ["magenta"]
    with pytest.raises(ImgSearchError, match="HTTP 404"):
        run(library, [f"@{base}/missing.jpg"], k=1)
    with pytest.raises(ImgSearchError, match="over the 10-byte limit"):
        fetch_url(f"{base}/q.jpg", max_bytes=10)
    with pytest.raises(UsageError, match="not an http"):
        fetch_url("file:///etc/passwd")


def test_export_copies_and_links_in_rank_order_without_overwriting(library, colours, tmp_path: Path) -> None:
    results = library.search(parse_query(["red"]), SearchOptions(k=3), FAKE)
    copied = export_results(results, tmp_path / "out")
    assert [p.name for p in copied] == [f"{r.rank:03d}-{Path(r.path).name}" for r in results]
    assert copied[0].read_bytes() == Path(results[0].path).read_bytes()
    again = export_results(results[:1], tmp_path / "out")  # already there: not copied twice
    assert again == [] and len(list((tmp_path / "out").iterdir())) == 3 and copied[0].exists()
    (tmp_path / "out" / copied[0].name).write_bytes(b"another file of that name")
    third = export_results(results[:1], tmp_path / "out")  # never overwritten
    assert [p.name for p in third] == [f"{copied[0].stem} (2){copied[0].suffix}"]
    assert third[0].read_bytes() == Path(results[0].path).read_bytes()
    linked = export_results(results, tmp_path / "links", "link")
    assert all(p.is_symlink() and p.resolve() == Path(r.path).resolve() for p, r in zip(linked, results))


def test_export_vectors_npy_and_parquet(library, colours, tmp_path: Path) -> None:
    library.export_vectors(tmp_path / "npy", "npy", FAKE)
    vectors = np.load(tmp_path / "npy" / "vectors.npy")
    ids = np.load(tmp_path / "npy" / "ids.npy")
    rows = [json.loads(line) for line in (tmp_path / "npy" / "paths.jsonl").read_text().splitlines()]
    assert vectors.shape == (5, 8) and vectors.dtype == np.float32 and len(ids) == 5
    assert [r["id"] for r in rows] == ids.tolist() and {Path(r["path"]).stem for r in rows} == set(colours)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-3)
    import pyarrow.parquet as pq

    library.export_vectors(tmp_path / "pq", "parquet", FAKE)
    table = pq.read_table(tmp_path / "pq" / "vectors.parquet")
    assert table.num_rows == 5 and table.column("id").to_pylist() == ids.tolist()
    np.testing.assert_allclose(np.array(table.column("vector").to_pylist()), vectors, atol=1e-6)
    with pytest.raises(UsageError, match="not an empty folder"):
        library.export_vectors(tmp_path / "npy", "npy", FAKE)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.lists(st.text(max_size=12), min_size=1, max_size=4), folder=st.text(max_size=15),
       camera=st.text(max_size=15), ext=st.text(max_size=6), after=st.text(max_size=12),
       min_score=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)), sort=st.text(max_size=5))
def test_random_queries_and_filters_give_results_or_a_usage_error(library, colours, words, folder, camera,
                                                                  ext, after, min_score, sort) -> None:
    try:
        filters = Filters(folder=folder, camera=camera, ext=ext, after=after)  # as typed: the table reads them
        results = library.search(parse_query(words), SearchOptions(k=5, min_score=min_score, sort=sort,
                                                                   filters=filters), FAKE)
    except UsageError as exc:
        assert exc.exit_code == 2 and exc.message
    else:
        assert len(results) <= 5 and all(Path(r.path).exists() for r in results)
        if min_score is not None:
            assert all(r.score >= min_score for r in results)


def test_queries_are_capped_in_length_and_terms() -> None:
    from imgsearch.search.query import MAX_QUERY_CHARS, MAX_TERMS, check_text

    words = " + ".join(f"word{i}" for i in range(MAX_TERMS)).split()
    assert len(parse_query(words)) == MAX_TERMS
    with pytest.raises(UsageError, match=f"the query has {MAX_TERMS + 1} terms: at most {MAX_TERMS}"):
        parse_query([*words, "+", "one more"])
    assert check_text("x" * MAX_QUERY_CHARS)
    with pytest.raises(UsageError, match="characters long: at most 1,000"):
        check_text("x" * (MAX_QUERY_CHARS + 1))
    with pytest.raises(UsageError, match="characters long"):
        parse_query(["a", "+", "y" * 5000])


def test_the_text_cache_forgets_texts_unused_for_half_a_year(library) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from imgsearch import store
    from imgsearch.store.orm import TextVector, utc_now
    from imgsearch.store.vectors import TEXT_CACHE_AGE
    from indexer.pipeline import model_record
    from tests.factories import FakeEncoder

    info = FakeEncoder().info
    with library.session() as session, session.begin():
        model_id = store.get_or_create_model(session, model_record(info)).id
        store.remember_text_vectors(session, model_id, {"old words": np.ones(info.dim, np.float32)})
        session.execute(update(TextVector).values(used_at=utc_now() - TEXT_CACHE_AGE - timedelta(days=1)))
        store.remember_text_vectors(session, model_id, {"new words": np.ones(info.dim, np.float32)})
        cached, _ = store.cached_text_vectors(session, model_id, ["old words", "new words"], info.dim)
    assert sorted(cached) == ["new words"]
