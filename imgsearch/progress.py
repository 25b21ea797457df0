"""How long work reports how far it got: the CLI draws tqdm bars, a web app sends events, the API default is silent."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Stages of known or unknown length, advanced step by step, and one-line news between them."""

    def stage(self, name: str, total: int | None, unit: str = "file") -> None:
        """A new stage begins (the previous one is over); `total` None: length unknown."""

    def advance(self, n: int = 1, **figures: float) -> None:
        """`n` more units done; `figures` are running values worth showing (loss, img/s...)."""

    def note(self, message: str) -> None:
        """A line of news worth keeping (an epoch's results)."""

    def close(self) -> None:
        """The work is over."""


class SilentProgress:
    def stage(self, name: str, total: int | None, unit: str = "file") -> None:
        pass

    def advance(self, n: int = 1, **figures: float) -> None:
        pass

    def note(self, message: str) -> None:
        pass

    def close(self) -> None:
        pass
