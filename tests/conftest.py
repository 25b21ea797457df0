"""Shared fixtures, and the kinds of test as markers (applied here, in one place: see `pytest_collection_modifyitems`).
Tests never touch the network: the hub is forced offline before anything imports it. Exported models go to a cache
folder of this test session (never the user's), shared by its tests as a user's libraries share theirs."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.pop("IMGSEARCH_LIBRARY", None)
if "IMGSEARCH_CACHE" not in os.environ:
    os.environ["IMGSEARCH_CACHE"] = tempfile.mkdtemp(prefix="imgsearch-test-cache-")
    atexit.register(shutil.rmtree, os.environ["IMGSEARCH_CACHE"], ignore_errors=True)
# Models run in PyTorch unless a test asks for an exported runtime (tests/test_runtimes.py): an export per
# test would add seconds to every indexing test and prove nothing more.
os.environ["IMGSEARCH_RUNTIME"] = "torch"

from pathlib import Path

import pytest

from tests.factories import FakeEncoder
from tests.programs import missing_program

DATA = Path(__file__).parent / "data"

# A test run started in the background by a shell without job control (`CMD &` in a script, some CI runners) inherits
# SIGINT ignored, and so would every program a test starts (Python installs its Ctrl-C handler only where the signal
# is not ignored): the tests that stop a program as Ctrl-C does need it as a terminal gives it.
signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight tiny CLIP in open_clip's local-dir format (loaded through the production path)."""
    from tests.tinyclip import write_model

    return write_model(tmp_path_factory.mktemp("models") / "tiny", seed=0)


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """A tiny CLIP trained for ~40 s to match colour words to coloured shapes: once per test run, the first process
    of pytest-xdist's that needs it trains it and the others wait for it (tests only read it)."""
    from filelock import FileLock

    from tests.tinyclip import train_colours, write_model

    if worker_id == "master":  # no xdist: this session's own
        return write_model(tmp_path_factory.mktemp("models") / "colours", model=train_colours(300, seed=0))
    run = tmp_path_factory.getbasetemp().parent  # this run's folder, shared by its worker processes
    folder, done = run / "trained-colours", run / "trained-colours.done"
    with FileLock(str(run / "trained-colours.lock")):
        if not done.exists():
            write_model(folder, model=train_colours(300, seed=0))
            done.touch()
    return folder


@pytest.fixture
def photos_dir() -> Path:
    return DATA / "photos"


@pytest.fixture
def fake_encoders() -> dict[str, FakeEncoder]:
    """Fake models by name; a Library opened with `fake_loader` gets them from here."""
    return {}


@pytest.fixture
def fake_loader(fake_encoders: dict[str, FakeEncoder]):
    def load(spec):
        return fake_encoders.setdefault(spec.name, FakeEncoder(spec.name))
    return load


# The kinds of test, by module; PostgreSQL tests are found by their backend (see pytest_generate_tests). The heavy
# kinds are also `slow`: `pytest -m "not slow"` is the quick slice a contributor runs while working.
KINDS = {"test_browser.py": {"browser", "e2e"}, "test_ray.py": {"ray"}, "test_runtimes.py": {"export"},
         "test_torch_free.py": {"export", "e2e"}, "test_transcript.py": {"e2e"}, "test_dead_ends.py": {"e2e"}}
SLOW_KINDS = {"browser", "pgserver", "ray", "export", "gpu"}
# single tests of the other kinds that take longer than the quick slice affords (10-25 s each on 2 cores)
SLOW_TESTS = {"test_sharded_build_merged_on_disk_matches_one_index_and_survives_a_move",
              "test_kill_during_apply_and_undo_through_the_cli_never_loses_a_photo",
              "test_eight_threads_share_one_library_while_another_process_indexes",
              "test_a_missing_decoder_is_listed_and_the_fix_it_names_works",
              "test_read_only_library_can_be_searched_and_refuses_changes_without_advising_to_discard",
              "test_stopping_an_indexer_leaves_no_process_behind"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        kinds = set(KINDS.get(item.path.name, ())) | ({"gpu"} if item.get_closest_marker("gpu") else set())
        callspec = getattr(item, "callspec", None)
        if "postgres" in item.fixturenames or (callspec is not None and callspec.params.get("db_url") == "postgresql"):
            kinds.add("pgserver")
        if kinds & SLOW_KINDS or item.originalname in SLOW_TESTS:
            kinds.add("slow")
        for kind in sorted(kinds):
            item.add_marker(kind)


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server for the session (tests/postgres.py). Missing binaries fail the tests that need it in
    CI, and skip them elsewhere."""
    from tests.postgres import PostgresServer

    try:
        server = PostgresServer().start()
    except RuntimeError as exc:
        missing_program(str(exc))
    yield server
    server.stop()


@pytest.fixture
def db_url(request: pytest.FixtureRequest) -> str | None:
    """None (a library's own SQLite file) or a fresh database on the test PostgreSQL server, by the test's
    `backend` parameter (see pytest_generate_tests)."""
    if getattr(request, "param", "sqlite") == "sqlite":
        yield None
        return
    server = request.getfixturevalue("postgres")
    url = server.create_database()
    yield url
    from sqlalchemy import make_url

    server.drop_database(make_url(url).database)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test of a library runs on both backends: its own SQLite file, and a PostgreSQL server."""
    if "db_url" in metafunc.fixturenames:
        metafunc.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def library(tmp_path: Path, fake_loader, db_url):
    from imgsearch.library import Library

    lib = Library.open(tmp_path / "lib", create=True, encoder_loader=fake_loader, db_url=db_url)
    yield lib
    lib.close()
