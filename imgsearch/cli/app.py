"""The typer app and what every command shares: common options, error handling, progress bars."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Iterator, Optional
import typer
from imgsearch.config import DEFAULT_MODEL, DEFAULT_PRETRAINED, LIBRARY_ENV
from imgsearch.errors import ImgSearchError

if TYPE_CHECKING:
    from imgsearch.library import Library


app = typer.Typer(
    help="Semantic image search for photo libraries: index folders, then search them by text or by image.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


db_app = typer.Typer(help="Library database maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")


LibraryOpt = Annotated[Optional[Path], typer.Option(
    "--library", "-L", envvar=LIBRARY_ENV, show_envvar=True, file_okay=False,
    help="Library folder (default: the user data dir).")]


ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", "-m", help=f"open_clip model name, hf-hub:ORG/REPO, or local-dir:DIR [default: the library's "
                          f"model, else {DEFAULT_MODEL}].")]


PretrainedOpt = Annotated[Optional[str], typer.Option(
    "--pretrained", help=f"Pretrained tag or checkpoint file for --model [default: {DEFAULT_PRETRAINED} "
                         f"with {DEFAULT_MODEL}].")]


def err(message: str) -> None:
    typer.echo(message, err=True)


@contextmanager
def handled() -> Iterator[None]:
    """Library errors become 'Error: ...' on stderr and their exit code; Ctrl-C exits 130."""
    try:
        yield
    except ImgSearchError as exc:
        err(f"Error: {exc.message}")
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err("Interrupted: work done so far is saved; run the same command again to continue.")
        raise typer.Exit(130) from None


def open_library(path: Optional[Path], create: bool = False) -> "Library":
    from imgsearch.library import Library

    return Library.open(path, create=create)


def model_spec(model: Optional[str], pretrained: Optional[str]):  # -> ModelSpec | None
    """None when neither option is given (the library's own model is used)."""
    from imgsearch.config import ModelSpec

    if model is None and pretrained is None:
        return None
    name = model or DEFAULT_MODEL
    if pretrained is None and name == DEFAULT_MODEL:
        pretrained = DEFAULT_PRETRAINED
    return ModelSpec(name, pretrained)


class TqdmProgress:
    """One tqdm bar per pipeline stage, on stderr."""

    def __init__(self) -> None:
        self.bar = None

    def stage(self, name: str, total: int | None) -> None:
        from tqdm import tqdm

        self.close()
        unit = "img" if name == "encoding" else "file"
        self.bar = tqdm(total=total, desc=name, unit=unit, file=sys.stderr, dynamic_ncols=True,
                        leave=False, disable=None)  # None: bars only on a terminal

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def main() -> None:
    app()
