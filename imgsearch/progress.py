"""How long work reports how far it got: the CLI draws tqdm bars, the API default is silent."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Where long work reports how far it got (the CLI draws tqdm bars; the API default is silent)."""

    def stage(self, name: str, total: int | None) -> None: ...

    def advance(self, n: int = 1) -> None: ...

    def close(self) -> None: ...


class SilentProgress:
    def stage(self, name: str, total: int | None) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass
