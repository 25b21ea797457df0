"""Shared fixtures. Tests never touch the network: the hub is forced offline before anything imports it."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.pop("IMGSEARCH_LIBRARY", None)

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.factories import FakeEncoder  # noqa: E402

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight tiny CLIP in open_clip's local-dir format (loaded through the production path)."""
    from tests.tinyclip import write_model

    return write_model(tmp_path_factory.mktemp("models") / "tiny", seed=0)


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CLIP trained for a few seconds to match colour words to coloured shapes."""
    from tests.tinyclip import train_colours, write_model

    return write_model(tmp_path_factory.mktemp("models") / "colours", model=train_colours(300, seed=0))


@pytest.fixture
def photos_dir() -> Path:
    return DATA / "photos"


@pytest.fixture
def fake_encoders() -> dict[str, FakeEncoder]:
    """Fake models by name; a Library opened with `fake_loader` gets them from here."""
    return {}


@pytest.fixture
def fake_loader(fake_encoders: dict[str, FakeEncoder]):  # noqa: ANN201
    def load(spec):  # noqa: ANN001, ANN202
        return fake_encoders.setdefault(spec.name, FakeEncoder(spec.name))
    return load


@pytest.fixture
def library(tmp_path: Path, fake_loader):  # noqa: ANN001, ANN201
    from imgsearch.library import Library

    lib = Library.open(tmp_path / "lib", create=True, encoder_loader=fake_loader)
    yield lib
    lib.close()
