"""The application: routes, error answers, security, static files; and `serve`, which runs it with uvicorn and
tells CLI commands on this machine where it is (server.json in the library folder)."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from fastapi.staticfiles import StaticFiles

from imgsearch import ImgSearchError, Library, UsageError, __version__
from imgsearch.errors import BusyError
from imgsearch.config import SERVER_FILENAME
from imgsearch.fs import atomic_write
from imgsearch.web import api, errors, views
from imgsearch.web.answers import Answers
from imgsearch.web.jobs import Jobs
from imgsearch.web.uploads import Uploads
from imgsearch.web.security import Guard, GuardMiddleware

SET_ASIDE_DIRNAME = "set-aside"
MULTIPART_OVERHEAD = 64 * 1024  # an upload's form fields and boundaries, beside the image itself


def create_app(lib: Library, guard: Guard, set_aside: Path | None = None) -> FastAPI:
    """The web app over one open library (shared by every request thread)."""
    # max_body_size: an upload past it is refused on its Content-Length before a byte of it is read, or cut off once
    # that many bytes came (Starlette would otherwise spool all of it to disk before the route saw its size)
    app = FastAPI(title="imgsearch", version=__version__, docs_url=None, redoc_url=None,
                  description="Semantic search of a photo library: the same operations as the `imgsearch` command.",
                  max_body_size=api.MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD)
    app.state.library, app.state.jobs = lib, Jobs()
    lib.rebuild_beside_searches()  # a server lives on: an outgrown index is rebuilt beside its searches
    app.state.watch = None  # serve --watch: what the watcher did last, for the status page and API
    # Starlette types a handler as taking any Exception, though it calls each with the class it is registered for
    app.add_exception_handler(ImgSearchError, errors.handle)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, errors.handle_invalid)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, errors.handle_http)  # type: ignore[arg-type]
    # searches asked again are answered from memory while the library does not change; behind the guard
    app.add_middleware(Answers, library=lib, routes=re.compile(rf"{api.PREFIX}/(search|images/[0-9]+/similar)"))
    app.add_middleware(GuardMiddleware, guard=guard)
    uploads = Uploads()
    app.include_router(api.build_router(lib, app.state.jobs, set_aside or lib.path / SET_ASIDE_DIRNAME, uploads))
    app.include_router(views.build_router(lib, uploads))
    # the API's documentation works offline: Swagger UI's files from fastapi-offline, served here (before /static)
    app.mount("/static/docs", StaticFiles(directory=str(Path(fastapi_offline.__file__).parent / "static")),
              name="docs-assets")
    app.mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="static")

    plain_openapi = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = errors.described(plain_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/docs", include_in_schema=False)
    def docs() -> FileResponse:
        return FileResponse(Path(__file__).parent / "templates" / "docs.html", media_type="text/html")

    return app


def serve(lib: Library, host: str, port: int, token: str | None, preload: Callable[[], object] | None = None,
          ready: Callable[..., None] = lambda url, elsewhere=None: None, allowed_hosts: tuple[str, ...] = (),
          watch: Callable[[str], None] | None = None) -> None:
    """Run until interrupted. `ready(url)` is called once the socket listens; server.json is written for local CLI
    commands (removed again at the end). With `watch`, the library's folders are indexed as files in them change
    (Library.watch, in a thread), and `watch` is told each run's line."""
    import uvicorn

    _check_port(host, port)
    everywhere = host in ("0.0.0.0", "::", "")
    names = own_names() if everywhere else ()
    guard = Guard(port=port, bind=host, token=token, extra_hosts=(*allowed_hosts, *names))
    app = create_app(lib, guard)
    url = _address("127.0.0.1" if everywhere else host, port)
    far = (allowed_hosts or names or (None,))[0]
    elsewhere = _address(far, port) if everywhere and far else None
    config = uvicorn.Config(errors.Enveloped(app), host=host, port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    marker = lib.path / SERVER_FILENAME

    def announce() -> None:
        while not server.started and not server.should_exit:
            threading.Event().wait(0.05)
        if server.started:
            if not lib.read_only:
                try:
                    with atomic_write(marker, "w") as f:
                        f.write(json.dumps({"url": url, "pid": os.getpid(), "token": token}))
                    os.chmod(marker, 0o600)
                except OSError:
                    pass  # CLI commands then simply do the work themselves
            if preload is not None:
                preload()
            query = f"?token={token}" if token else ""
            ready(url + query, elsewhere + query if elsewhere else None)
            if watch is not None:
                threading.Thread(target=watching, name="watch", daemon=True).start()

    stop = threading.Event()

    def watching() -> None:  # the library kept up to date while it is served (serve --watch)
        assert watch is not None
        try:
            for run in lib.watch(stop=stop):
                when = time.strftime("%H:%M:%S")
                app.state.watch = f"the library's folders, since {app.state.watch_since}; last run {when} {run.line()}"
                if not run.changes:
                    watch(run.line())
                    watch("Watching the library's folders for new, changed, moved and deleted photos and videos.")
                elif not run.quiet:
                    watch(f"{when} {run.line()}")
        except ImgSearchError as exc:
            app.state.watch = f"stopped: {exc.render(lambda name: name)}"
            watch(f"Watching stopped: {exc.render(lambda name: name)}")

    app.state.watch_since = time.strftime("%H:%M:%S")
    threading.Thread(target=announce, name="announce", daemon=True).start()
    # uvicorn stops on SIGTERM, then raises the signal again under the handler it found: by default that kills the
    # process before the `finally` below, leaving server.json (with the token) behind. Ours exits as Python does.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        server.run()
    finally:
        stop.set()
        if marker.is_file() and _owner(marker) == os.getpid():
            marker.unlink(missing_ok=True)


def _address(host: str, port: int) -> str:
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"


def own_names() -> tuple[str, ...]:
    """This machine's name (and name.local) and the addresses the system's resolver gives for it (/etc/hosts
    first): what other machines on the network call it, allowed when binding every address."""
    name = socket.gethostname()
    out = [name, f"{name}.local"] if name and name != "localhost" else []
    try:
        out += [a for a in socket.gethostbyname_ex(name)[2] if not a.startswith("127.")]
    except OSError:
        pass
    return tuple(dict.fromkeys(out))


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _check_port(host: str, port: int) -> None:
    """Refuse a port another program listens on before uvicorn tries it (its own message ends in exit 3)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a port in TIME_WAIT is free
        try:
            probe.bind((host or "0.0.0.0", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise BusyError(f"port {port} on {host} is in use (another `imgsearch serve`, or another program): "
                                f"give {{param}} another one, e.g. {port + 1 if port < 65535 else 8765}", "port") from exc
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", "host") from exc


def _owner(marker: Path) -> int | None:
    try:
        return json.loads(marker.read_text()).get("pid")
    except (OSError, ValueError):
        return None
