"""Search answers kept while the library does not change: the same search asked again (a page reloaded, paged back
to, a popular query, many people asking) is answered from memory, without the framework, the database or FAISS.

A route marks its answer as one that may be kept (`keep(request)`): it depends on nothing but the request and the
library. Each is kept with the library's revision read before the search ran (Library.revision: anything committed
to the database by any process, an index rebuilt) and given again only while that revision holds, so an answer is
never older than the library. A library whose revision cannot be told cheaply (PostgreSQL) keeps none.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from dataclasses import dataclass

from cachetools import LRUCache
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imgsearch import Library

KEPT_BYTES = 32 * 1024 * 1024  # the answers kept, all together (the least recently asked go first)
STATE_KEY = "imgsearch_keep"  # in the request's state: set by a route whose answer may be kept


def keep(request: Request) -> None:
    """Mark this request's answer as one that may be kept (it reads nothing but the request and the library)."""
    setattr(request.state, STATE_KEY, True)


@dataclass(frozen=True)
class Answer:
    revision: Hashable
    start: Message
    body: bytes


class Answers:
    """ASGI middleware in front of the routes (behind the guard: a kept answer goes only to whom the guard lets in).
    Only GET requests whose path matches `routes` (those that may keep their answer) are looked up: the others
    (thumbnails, originals) pay nothing, not even the revision's look at the database."""

    def __init__(self, app: ASGIApp, library: Library, routes: re.Pattern[str],
                 max_bytes: int = KEPT_BYTES) -> None:
        self.app, self.library, self.routes = app, library, routes
        self.kept: LRUCache[tuple[str, bytes], Answer] = LRUCache(max_bytes, getsizeof=lambda a: len(a.body) + 512)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or not self.routes.fullmatch(scope["path"]):
            await self.app(scope, receive, send)
            return
        try:
            revision = self.library.revision()
        except Exception:  # a damaged database, say: the route meets it too, and answers with what is wrong
            revision = None
        if revision is None:
            await self.app(scope, receive, send)
            return
        key = (scope["path"], scope["query_string"])  # (a token in it is never seen here: the guard redirects)
        kept = self.kept.get(key)
        if kept is not None and kept.revision == revision:
            await send({**kept.start, "headers": list(kept.start["headers"])})  # the guard adds to its headers
            await send({"type": "http.response.body", "body": kept.body})
            return
        start: Message = {}
        body: list[bytes] = []

        async def sending(message: Message) -> None:
            # the route has run by its answer's start: whether it may be kept is known then (nothing else is held)
            if message["type"] == "http.response.start" and scope.get("state", {}).get(STATE_KEY) \
                    and message["status"] == 200:
                start.update(message, headers=list(message.get("headers", [])))
            elif message["type"] == "http.response.body" and start:
                body.append(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, sending)
        if start and len(answer := b"".join(body)) <= self.kept.maxsize // 8:  # one answer never crowds out the rest
            self.kept[key] = Answer(revision, start, answer)
