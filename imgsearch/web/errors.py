"""Library errors as HTTP answers: the error's stable code picks the status, the body is JSON."""

from __future__ import annotations

import json
from http import HTTPStatus
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from imgsearch.errors import ImgSearchError

# the HTTP status for each ImgSearchError.code (anything else: 500)
STATUS = {"usage": 400, "bad_image": 400, "not_found": 404, "not_a_library": 404, "busy": 409, "not_indexed": 409,
          "schema": 409, "model_mismatch": 409, "export_failed": 500, "read_only": 403, "disk_full": 507, "network": 502,
          "model_unavailable": 503, "missing_extra": 501, "cluster": 502, "corrupt": 500, "db_unreachable": 503,
          "error": 500}


def status_of(exc: ImgSearchError) -> int:
    return STATUS.get(exc.code, 500)


def body(exc: ImgSearchError) -> dict:
    """{"error": {"code", "message", "param"}}: parameters are named as the API's fields."""
    return {"error": {"code": exc.code, "message": exc.render(lambda name: name), "param": exc.param}}


async def handle(_request: Request, exc: ImgSearchError) -> JSONResponse:
    return JSONResponse(body(exc), status_code=status_of(exc))


def invalid_fields(errors: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(field, message) for each of pydantic's validation errors (a request's, or the search form's)."""
    out = []
    for error in errors or [{}]:
        names = [part for part in error.get("loc", ["", "?"]) if isinstance(part, str)]  # not a list item's index
        field = names[-1] if names else "?"
        message = f"{field}: {error.get('msg', 'invalid value')}"
        if error.get("type") == "extra_forbidden":
            from imgsearch.web.api import SearchParams

            message = (f"{field} is not a parameter here: a search takes {', '.join(SearchParams.model_fields)} "
                       "(see /docs)")
        out.append((field, message))
    return out


async def handle_invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
    """A parameter of the wrong type or out of range is a usage error like any other (400, code usage)."""
    field, message = invalid_fields(exc.errors())[0]
    return JSONResponse({"error": {"code": "usage", "message": message, "param": field}}, status_code=400)


HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}


def framework_body(status: int, detail: str) -> dict:
    """The envelope of an error the framework raises itself (an unknown address, a wrong method, a body over the
    limit), with a code."""
    from imgsearch.web.api import MAX_UPLOAD_BYTES

    code = HTTP_CODES.get(status, "usage" if 400 <= status < 500 else "error")
    message = ({413: f"the request body is larger than this server takes (an image upload: at most "
                     f"{MAX_UPLOAD_BYTES // 2**20} MB)"}.get(status, detail))
    return {"error": {"code": code, "message": message, "param": None}}


async def handle_http(_request: Request, exc: HTTPException) -> JSONResponse:
    """The framework's errors that reach a handler, in the same envelope as the library's."""
    return JSONResponse(framework_body(exc.status_code, str(exc.detail)), status_code=exc.status_code,
                        headers=getattr(exc, "headers", None))


ENVELOPE = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["code", "message"],
    "properties": {"code": {"type": "string", "description": "stable: usage, not_found, busy, db_unreachable..."},
                   "message": {"type": "string", "description": "what is wrong and the fix"},
                   "param": {"type": ["string", "null"], "description": "the field at fault"}}}}}


def described(schema: dict) -> dict:
    """The OpenAPI document as the server behaves: a bad parameter is a 400 in the error envelope (FastAPI lists
    a 422 with its own shape), and every operation may answer an error in that envelope."""
    schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = ENVELOPE
    schema["components"]["schemas"].pop("HTTPValidationError", None)
    schema["components"]["schemas"].pop("ValidationError", None)
    ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    for methods in schema.get("paths", {}).values():
        for operation in methods.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            responses.setdefault("400", {"description": "A parameter is missing, of the wrong type or out of range",
                                         **ref})
            responses.setdefault("default", {"description": "Any other error (404, 409, 503...), in the same "
                                                            "envelope", **ref})
    return schema


class Enveloped:
    """ASGI: an error the framework answers in plain text before any handler of ours runs (a 413 for a declared
    body size, from the body-size limit) is rewritten into the error envelope, so every API error has one shape."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rewriting = False

        async def sending(message: dict) -> None:
            nonlocal rewriting
            if message["type"] == "http.response.start" and message["status"] in HTTP_CODES:
                kind = dict(message.get("headers", [])).get(b"content-type", b"")
                if kind.startswith(b"text/plain"):  # the framework's own text (a page's 404 stays a page)
                    rewriting = True
                    status = message["status"]
                    payload = json.dumps(framework_body(status, HTTPStatus(status).phrase)).encode()
                    headers = [(k, v) for k, v in message.get("headers", [])
                               if k not in (b"content-type", b"content-length")]
                    await send({**message, "headers": [*headers, (b"content-type", b"application/json"),
                                                        (b"content-length", str(len(payload)).encode())]})
                    await send({"type": "http.response.body", "body": payload, "more_body": False})
                    return
            if rewriting:
                return  # the plain-text body: replaced above
            await send(message)

        await self.app(scope, receive, sending)

