"""The typer app and what every command shares: common options, error handling, progress bars."""

from __future__ import annotations

import functools
import inspect
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from imgsearch.config import DEFAULT_MODEL, DEFAULT_PRETRAINED, LIBRARY_ENV
from imgsearch.errors import ImgSearchError
from imgsearch.filters import FILTERS, Filter

if TYPE_CHECKING:
    from imgsearch import Library


# Plain help (no rich markup: help texts keep their [brackets]), -h as well as --help, on every command.
HELP: dict[str, Any] = {"rich_markup_mode": None, "context_settings": {"help_option_names": ["-h", "--help"]}}

def _param(f: Filter) -> str:
    """The Python name of a search filter's option in a command's signature (see with_filters)."""
    return f"filter_{f.name}"


# A word for each option's value in --help (`--library DIR`, `--workers N`), instead of typer's Python types
# (`<list[Path]>`, `<int range>`); arguments are named by their own metavar (FOLDER, QUERY). Typer has no setting for
# it, so its one method that renders the type is replaced here, for this program's commands only.
METAVARS = {"library": "DIR", "db_url": "URL", "model": "MODEL", "pretrained": "TAG|FILE", "exclude": "GLOB",
            "ray": "ADDRESS", "runtime": "RUNTIME", "precision": "PRECISION", "template": "TEMPLATE",
            "labels_file": "FILE", "move_to": "DIR", "copy_to": "DIR", "out": "DIR", "image": "IMAGE",
            "tags": "TAG", "sort": "ORDER", "fmt": "FORMAT", "host": "HOST",
            **{_param(f): f.metavar for f in FILTERS}}


def _value_word(param: object, ctx: object) -> str:
    if isinstance(param, typer.core.TyperArgument):
        return ""
    name = getattr(param, "name", None) or "value"
    if name in METAVARS:
        return METAVARS[name]
    bare = param.bare_type().removeprefix("list[").removesuffix("]")  # type: ignore[attr-defined]
    if bare in ("int", "float"):
        return "N"
    return "PATH" if bare == "Path" else name.upper().replace("_", "-")


def _usage_name(param: object) -> str:
    """An argument in the usage line as Unix tools write it: FOLDER when required, [FOLDER] when not (typer: {FOLDER})."""
    name = param.display_name_raw  # type: ignore[attr-defined]
    name = name if param.required else f"[{name}]"  # type: ignore[attr-defined]
    return name + ("..." if param.nargs != 1 else "")  # type: ignore[attr-defined]


typer.core._TyperParameter.display_type = _value_word  # type: ignore[method-assign,assignment]
typer.core.TyperArgument._usage_display_name = _usage_name  # type: ignore[method-assign,assignment]

app = typer.Typer(
    help="Semantic image search for photo libraries: index folders, then search them by text or by image.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion, --show-completion
    pretty_exceptions_enable=False,
    **HELP,
)


def _version(value: bool) -> None:
    if value:
        from imgsearch import __version__

        typer.echo(f"imgsearch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Show the version and exit.")] = False) -> None:
    """Semantic image search for photo libraries: index folders, then search them by text or by image."""


db_app = typer.Typer(help="Library database maintenance.", no_args_is_help=True, **HELP)
app.add_typer(db_app, name="db")


LibraryOpt = Annotated[Optional[Path], typer.Option(
    "--library", "-L", envvar=LIBRARY_ENV, show_envvar=True, file_okay=False,
    help="Library folder (default: the user data dir).")]


ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", "-m", help=f"immich:NAME, local-dir:DIR (an export, or an open_clip folder), an open_clip model "
                          f"name, or hf-hub:ORG/REPO [default: the library's "
                          f"model, else {DEFAULT_MODEL}].")]


PretrainedOpt = Annotated[Optional[str], typer.Option(
    "--pretrained", help=f"Pretrained tag or checkpoint file for --model [default: {DEFAULT_PRETRAINED} "
                         f"with {DEFAULT_MODEL}].")]


def err(message: str) -> None:
    """A line for stderr; control characters other than line breaks (an escape sequence in a file name) escaped."""
    typer.echo("".join(c if c.isprintable() or c == "\n" else c.encode("unicode_escape").decode("ascii")
                       for c in message), err=True)


# How the library's parameter names appear on the command line, where they are not `--name-with-dashes`.
FLAGS = {"k": "--top", "within_s": "--within", "similar_cosine": "--similar",
         "min_probability": "--min-prob", "tiers": "--tier", "roots": "FOLDER", "fmt": "--format",
         "templates": "--template", "query": "QUERY", "dest": "DEST", "mode": "--copy-to/--link-to",
         **{f.name: f.flag for f in FILTERS}}


def with_filters(command: Callable[..., None]) -> Callable[..., None]:
    """A command with one option per search filter (imgsearch.filters.FILTERS) where its `filters` parameter is;
    it gets them there as {name: the text or texts given}."""
    names = {_param(f): f for f in FILTERS}

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> None:
        texts = {f.name: kwargs.pop(param) for param, f in names.items()}
        return command(*args, filters=texts, **kwargs)

    def option(f: Filter) -> object:
        kind = Optional[list[str]] if f.many else Optional[str]
        return Annotated[kind, typer.Option(f.flag, help=f.help, show_default=False)]

    own = list(inspect.signature(command, eval_str=True).parameters.values())
    at = [p.name for p in own].index("filters")
    added = [inspect.Parameter(param, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=option(f))
             for param, f in names.items()]
    run.__signature__ = inspect.Signature(own[:at] + added + own[at + 1:])  # type: ignore[attr-defined]
    run.__annotations__ = {**{k: v for k, v in command.__annotations__.items() if k != "filters"},
                           **{p.name: p.annotation for p in added}}
    return run


def flag_for(param: str, flags: Mapping[str, str] = {}) -> str:  # read only
    """The command-line spelling of a library parameter (a command's own `flags` first)."""
    return flags.get(param) or FLAGS.get(param) or "--" + param.replace("_", "-")


@contextmanager
def handled(flags: Mapping[str, str] = {}) -> Iterator[None]:  # read only
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


def open_library(path: Optional[Path], create: bool = False, db_url: Optional[str] = None) -> "Library":
    from imgsearch import Library

    return Library.open(path, create=create, db_url=db_url)


def model_spec(model: Optional[str], pretrained: Optional[str]):  # -> ModelSpec | None
    """None when neither option is given (the library's own model is used)."""
    from imgsearch import ModelSpec

    if model is None and pretrained is None:
        return None
    name = model or DEFAULT_MODEL
    if pretrained is None and name == DEFAULT_MODEL:
        pretrained = DEFAULT_PRETRAINED
    return ModelSpec(name, pretrained)


PROGRESS_ENV = "IMGSEARCH_PROGRESS_S"  # seconds between progress lines when stderr is not a terminal


class TqdmProgress:
    """One tqdm bar per stage on stderr when it is a terminal; otherwise (a log file, a pipe, cron) one progress
    line every IMGSEARCH_PROGRESS_S seconds (default 30), so long work never looks dead. Notes are lines."""

    def __init__(self) -> None:
        self.bar = None
        self.every_s = float(os.environ.get(PROGRESS_ENV, "30"))
        self.tty = sys.stderr.isatty()
        self._stage: tuple[str, int | None, str] = ("", None, "")
        self._done, self._started, self._said = 0, 0.0, 0.0
        self._figures: dict[str, float] = {}

    def stage(self, name: str, total: int | None, unit: str = "file") -> None:
        from tqdm import tqdm

        self.close()
        self._stage, self._done, self._figures = (name, total, unit), 0, {}
        self._started = self._said = time.monotonic()
        if self.tty:
            self.bar = tqdm(total=total, desc=name, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False)

    def advance(self, n: int = 1, **figures: float) -> None:
        self._done += n
        self._figures = figures or self._figures
        if self.bar is not None:
            self.bar.update(n)
            if figures:
                self.bar.set_postfix({k: f"{v:.3g}" for k, v in figures.items()}, refresh=False)
        elif not self.tty and time.monotonic() - self._said >= self.every_s:
            self._said = time.monotonic()
            name, total, unit = self._stage
            share = f"/{total} {unit}s ({self._done / total:.0%})" if total else f" {unit}s"
            figures_text = "".join(f", {k} {v:.3g}" for k, v in self._figures.items())
            err(f"{name}: {self._done}{share}, {time.monotonic() - self._started:.0f} s{figures_text}")

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
