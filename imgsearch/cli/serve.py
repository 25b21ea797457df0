"""`imgsearch serve`: the library in a browser, and a JSON API, from a warm process."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from imgsearch.cli.app import LibraryOpt, app, err, handled, open_library
from imgsearch.errors import UsageError


@app.command()
def serve(
    library: LibraryOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on. Anything but loopback (127.0.0.1, ::1) needs a "
                                           "token: --token-file, or one is made and printed in the URL.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8765,
    allowed_host: Annotated[Optional[list[str]], typer.Option(
        "--allowed-host", metavar="NAME", show_default=False,
        help="Another name or address clients reach this machine by, e.g. photos.lan or 192.168.1.10 (repeatable; "
             "with --host 0.0.0.0 the machine's own name and addresses are allowed already).")] = None,
    token_file: Annotated[Optional[Path], typer.Option(help="A file holding the token clients must show (a "
                                                            "browser once, in the printed URL).", dir_okay=False)] = None,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the page in a browser.")] = False,
    preload: Annotated[bool, typer.Option("--preload", help="Load the model at start, not at the first new query.")]
    = False,
    watch: Annotated[bool, typer.Option("--watch", help="Also keep the library up to date as photos in its folders "
                                                        "are added, changed, moved or deleted (as imgsearch watch).")]
    = False,
) -> None:
    """Serve the library: search, photos, duplicates and status in a browser; a JSON API at /api/v1 (docs: /docs).
    While it runs, `imgsearch search` on this machine asks it instead of loading a model.

    \b
    Examples:
      imgsearch serve
      imgsearch serve --host 0.0.0.0     # from other machines too, with the token it prints
      imgsearch serve --watch            # new photos searchable as they arrive
    """
    from imgsearch.web.app import serve as run
    from imgsearch.web.security import is_loopback, new_token

    with handled():
        token = None
        if token_file is not None:
            try:
                token = token_file.expanduser().read_text().strip()
            except OSError as exc:
                raise UsageError(f"cannot read {{param}} {token_file}: {exc.strerror or exc}", "token_file") from exc
            if len(token) < 16:
                raise UsageError("the token in {param} is too short: use at least 16 characters", "token_file")
        elif not is_loopback(host):
            token = new_token()  # never open to a network without one
        with open_library(library) as lib:

            def ready(url: str, elsewhere: str | None = None) -> None:
                err(f"Serving {lib.path} at {url}  (Ctrl-C stops)")
                if elsewhere:
                    err(f"From other machines: {elsewhere}")
                if open_browser:
                    import webbrowser

                    webbrowser.open(url)

            run(lib, host, port, token, (lambda: lib.encoder_for(None)) if preload else None, ready,
                tuple(allowed_host or ()), err if watch else None)
