"""The typer app and what every command shares: common options, error handling, progress bars."""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Iterator, Optional

import typer

from imgsearch.config import DEFAULT_MODEL, DEFAULT_PRETRAINED, LIBRARY_ENV
from imgsearch.errors import ImgSearchError

if TYPE_CHECKING:
    from imgsearch import Library


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
    """A line for stderr; control characters other than line breaks (an escape sequence in a file name) escaped."""
    typer.echo("".join(c if c.isprintable() or c == "\n" else c.encode("unicode_escape").decode("ascii")
                       for c in message), err=True)


# How the library's parameter names appear on the command line, where they are not `--name-with-dashes`.
FLAGS = {"k": "--top", "exts": "--ext", "folder": "--in", "within_s": "--within", "similar_cosine": "--similar",
         "min_probability": "--min-prob", "tiers": "--tier", "roots": "FOLDER", "fmt": "--format",
         "templates": "--template", "query": "QUERY", "dest": "DEST", "mode": "--copy-to/--link-to"}


def flag_for(param: str, flags: Mapping[str, str] = {}) -> str:  # noqa: B006 (read only)
    """The command-line spelling of a library parameter (a command's own `flags` first)."""
    return flags.get(param) or FLAGS.get(param) or "--" + param.replace("_", "-")


@contextmanager
def handled(flags: Mapping[str, str] = {}) -> Iterator[None]:  # noqa: B006 (read only)
    """Library errors become 'Error: ...' (parameters named as flags) on stderr and their exit code;
    Ctrl-C exits 130."""
    try:
        yield
    except ImgSearchError as exc:
        err(f"Error: {exc.render(lambda param: flag_for(param, flags))}")
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err("Interrupted: work done so far is saved; run the same command again to continue.")
        raise typer.Exit(130) from None


def open_library(path: Optional[Path], create: bool = False) -> "Library":
    from imgsearch import Library

    return Library.open(path, create=create)


def model_spec(model: Optional[str], pretrained: Optional[str]):  # -> ModelSpec | None
    """None when neither option is given (the library's own model is used)."""
    from imgsearch import ModelSpec

    if model is None and pretrained is None:
        return None
    name = model or DEFAULT_MODEL
    if pretrained is None and name == DEFAULT_MODEL:
        pretrained = DEFAULT_PRETRAINED
    return ModelSpec(name, pretrained)


class TqdmProgress:
    """One tqdm bar per stage on stderr (only on a terminal); notes are printed as lines."""

    def __init__(self) -> None:
        self.bar = None

    def stage(self, name: str, total: int | None, unit: str = "file") -> None:
        from tqdm import tqdm

        self.close()
        self.bar = tqdm(total=total, desc=name, unit=unit, file=sys.stderr, dynamic_ncols=True,
                        leave=False, disable=None)  # None: bars only on a terminal

    def advance(self, n: int = 1, **figures: float) -> None:
        if self.bar is not None:
            self.bar.update(n)
            if figures:
                self.bar.set_postfix({k: f"{v:.3g}" for k, v in figures.items()}, refresh=False)

    def note(self, message: str) -> None:
        self.close()
        err(message)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def main() -> None:
    # Only the CLI configures logging: third-party libraries (open_clip, huggingface_hub) keep quiet
    # unless something is really wrong; imgsearch's own news goes through its reports and progress.
    logging.basicConfig(level=logging.ERROR, format="%(name)s: %(message)s")
    app()
