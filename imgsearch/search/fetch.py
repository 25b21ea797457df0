"""Download a query image from an http(s) URL, size-capped and with a timeout."""

from __future__ import annotations

import urllib.error
import urllib.request

from imgsearch.errors import NetworkError, UsageError
from imgsearch.images.decode import FileData

MAX_BYTES = 50 * 1024 * 1024
TIMEOUT_S = 15.0


def fetch_url(url: str, max_bytes: int = MAX_BYTES, timeout_s: float = TIMEOUT_S) -> FileData:
    """The bytes at `url`; refuses other schemes and anything larger than `max_bytes`."""
    if not url.lower().startswith(("http://", "https://")):
        raise UsageError(f"{url!r} is not an http(s) URL", "query")
    request = urllib.request.Request(url, headers={"User-Agent": "imgsearch"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 (scheme checked)
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise NetworkError(f"{url} is {int(declared):,} bytes, over the {max_bytes:,}-byte limit for query images")
            data = bytearray(response.read(max_bytes + 1))
    except urllib.error.HTTPError as exc:
        raise NetworkError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise NetworkError(f"cannot download {url}: {reason}. Check the address, or save the image and give it as "
                           "@FILE.") from exc
    if len(data) > max_bytes:
        raise NetworkError(f"{url} is over the {max_bytes:,}-byte limit for query images")
    if not data:
        raise NetworkError(f"{url} returned no data")
    return FileData(url, data, len(data), 0)
