"""What keeps a private photo library private when it is served: a token for anything but loopback, a Host
allowlist (DNS rebinding), an Origin check on every state-changing request (CSRF), and headers that let the
page load nothing but its own files (a Content-Security-Policy without inline scripts)."""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "imgsearch_token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' blob: data:; media-src 'self'; script-src 'self'; "
                                "style-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
                                "frame-ancestors 'none'; form-action 'self'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def new_token() -> str:
    return secrets.token_urlsafe(24)


@dataclass
class Guard:
    """Who may talk to this server: `token` (None: no token, loopback only) and the Host names it answers to."""

    port: int
    bind: str = "127.0.0.1"
    token: str | None = None
    extra_hosts: tuple[str, ...] = ()
    hosts: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        names = {"127.0.0.1", "localhost", "[::1]", *self.extra_hosts}
        if self.bind not in ("0.0.0.0", "::", ""):
            names.add(f"[{self.bind}]" if ":" in self.bind else self.bind)
        self.hosts = {f"{n}:{self.port}" for n in names} | (names if self.port in (80, 443) else set())

    def host_allowed(self, host: str) -> bool:
        return host.lower() in self.hosts

    def origin_allowed(self, origin: str) -> bool:
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and self.host_allowed(parts.netloc)

    def token_ok(self, given: str | None) -> bool:
        return self.token is None or (given is not None and secrets.compare_digest(given.encode(), self.token.encode()))


class GuardMiddleware:
    """The guard in front of every request, as plain ASGI (Starlette's BaseHTTPMiddleware costs a task and a stream
    per request: ~10% of a cached search's time)."""

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        refused = self._refuse(request)
        if refused is not None:
            await self._secured(refused)(scope, receive, send)
            return
        if self.guard.token and request.query_params.get("token"):  # the link printed at start: set the cookie once
            rest = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "token"])
            path = "/" + request.url.path.lstrip("/")  # //evil.example/x would send the browser to evil.example
            answer = RedirectResponse(path + (f"?{rest}" if rest else ""), status_code=303)
            answer.set_cookie(COOKIE, self.guard.token, httponly=True, samesite="strict",
                              secure=request.url.scheme == "https")
            await self._secured(answer)(scope, receive, send)
            return

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, secured)

    def _refuse(self, request: Request) -> Response | None:
        guard = self.guard
        if not guard.host_allowed(request.headers.get("host", "")):
            return _error(400, "bad_host", "this server does not answer to that host name")
        site = request.headers.get("sec-fetch-site")
        if request.method not in SAFE_METHODS:
            origin = request.headers.get("origin")
            if (origin is not None and not guard.origin_allowed(origin)) or site in ("cross-site", "same-site"):
                return _error(403, "bad_origin", "requests that change something must come from this server's pages")
        elif site in ("cross-site", "same-site") and request.headers.get("sec-fetch-mode") != "navigate":
            # another site's page may link here, not fetch from here: searches embed new words and cache them,
            # a duplicates scan costs seconds of CPU, thumbnails show private photos
            return _error(403, "bad_origin", "this server answers other sites' pages only with a link to its own")
        auth = request.headers.get("authorization", "")
        given = auth[7:] if auth.lower().startswith("bearer ") else request.cookies.get(COOKIE) \
            or request.query_params.get("token")
        if not guard.token_ok(given):
            return _error(401, "unauthorized", "this server needs its token: open the link it printed at start, or "
                                              "send Authorization: Bearer TOKEN")
        return None

    @staticmethod
    def _secured(response: Response) -> Response:
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        return response


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "param": None}}, status_code=status)
