"""Download a query image from an http(s) URL: size-capped, one deadline for the whole download, and
redirects held to the same rules as the URL itself."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.parse
import urllib.request

from imgsearch.errors import NetworkError, UsageError
from imgsearch.images.decode import FileData
from imgsearch.workers import StillRunning, in_background

MAX_BYTES = 50 * 1024 * 1024
TIMEOUT_S = 15.0
CHUNK = 64 * 1024
SCHEMES = ("http", "https")


def check_url(url: str) -> str:
    """The URL, if it is a well-formed http(s) address; a usage error naming what is wrong otherwise."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 (raises for a port that is not a number)
    except ValueError as exc:
        raise UsageError(f"{url!r} is not a valid URL ({exc})", "query") from exc
    if parts.scheme.lower() not in SCHEMES:
        raise UsageError(f"{url!r} is not an http(s) URL", "query")
    if not parts.hostname or any(c.isspace() or ord(c) < 32 for c in url):
        raise UsageError(f"{url!r} is not a valid URL (no host, or spaces in it: write them as %20)", "query")
    return url


class _SameRules(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to another http(s) URL."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        try:
            check_url(newurl)
        except UsageError:
            raise NetworkError(f"{req.full_url} redirects to {newurl!r}, which is not an http(s) URL: not followed") \
                from None
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch_url(url: str, max_bytes: int = MAX_BYTES, timeout_s: float = TIMEOUT_S) -> FileData:
    """The bytes at `url`; refuses other schemes, anything larger than `max_bytes`, and downloads (redirects
    included) that take longer than `timeout_s` in all (a server sending one byte at a time included)."""
    check_url(url)
    opened: list = []  # the response, so that a download past its deadline can be cut off from here
    # in a daemon thread: one still waiting for a server that drips its headers must not keep the process alive
    pending = in_background(lambda: _download(url, max_bytes, timeout_s, opened))
    try:
        data = pending(timeout_s)
    except StillRunning:
        for response in opened:
            response.close()  # the download thread's next read fails and it ends
        raise NetworkError(f"cannot download {url}: it took over {timeout_s:g} s. Check the address, or save the "
                           "image and give it as @FILE.") from None
    return FileData(url, data, len(data), 0)


def _download(url: str, max_bytes: int, timeout_s: float, opened: list) -> bytearray:
    opener = urllib.request.build_opener(_SameRules)
    request = urllib.request.Request(url, headers={"User-Agent": "imgsearch"})
    data = bytearray()
    try:
        with opener.open(request, timeout=timeout_s) as response:
            opened.append(response)
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise NetworkError(f"{url} is {int(declared):,} bytes, over the {max_bytes:,}-byte limit for query "
                                   "images")
            while len(data) <= max_bytes and (chunk := response.read1(CHUNK)):
                data += chunk
    except urllib.error.HTTPError as exc:
        raise NetworkError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, TimeoutError, OSError, ValueError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        raise NetworkError(f"cannot download {url}: {reason}. Check the address, or save the image and give it as "
                           "@FILE.") from exc
    if len(data) > max_bytes:
        raise NetworkError(f"{url} is over the {max_bytes:,}-byte limit for query images")
    if not data:
        raise NetworkError(f"{url} returned no data")
    return data
