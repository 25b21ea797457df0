"""Asking a running `imgsearch serve` instead of loading a model: a warm server answers a text query in
milliseconds where a cold command needs seconds. Standard library only; any trouble means: do it locally."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from imgsearch.config import SERVER_FILENAME

TIMEOUT_S = 5.0


def running_server(library: Path) -> dict | None:
    """The server this machine runs for the library ({url, pid, token}), if its process is alive."""
    try:
        info = json.loads((library / SERVER_FILENAME).read_text())
        os.kill(int(info["pid"]), 0)
        return info
    except (OSError, ValueError, KeyError, TypeError):
        return None


def search(server: dict, params: list[tuple[str, str]]) -> list[dict] | None:
    """The server's results for /api/v1/search with these parameters; None when it cannot answer (the caller then
    searches itself, and reports any error the way it always does)."""
    url = server["url"].rstrip("/") + "/api/v1/search?" + urllib.parse.urlencode(params)
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {server['token']}"}
                                     if server.get("token") else {})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # our own server's URL
            return json.loads(response.read())["results"]
    except (urllib.error.URLError, OSError, ValueError, KeyError):
        return None
