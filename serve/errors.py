"""Error answers of the app: each names what was wrong and echoes only a short excerpt of it.

- a body that is not JSON: 400 ``{"detail": "..."}``;
- a body that does not validate: 422 ``{"detail": [{loc, msg, type, input}], "errors": n}``
  with the first ``MAX_ERRORS`` errors, each input cut to ``EXCERPT_CHARS`` characters
  (FastAPI's default echoes the whole input: 10,000 events for one bad field);
- ``HTTPException``: ``{"detail": "..."}`` with its headers.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

MAX_ERRORS = 10
EXCERPT_CHARS = 40


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> str | None:
    """At most ``limit`` characters of ``value`` (JSON for containers), marked when cut."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, default=str, allow_nan=True)
        except (TypeError, ValueError):
            text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def field_errors(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """The 422 body for pydantic/FastAPI errors: the first few, short, plus the total count."""
    shown = [{"loc": [p if isinstance(p, int) else str(p) for p in e.get("loc", ())],
              "msg": str(e.get("msg", ""))[:200], "type": str(e.get("type", "")),
              "input": excerpt(e.get("input"))} for e in errors[:MAX_ERRORS]]
    return {"detail": shown, "errors": len(errors)}


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    bad_json = next((e for e in errors if e.get("type") == "json_invalid"), None)
    if bad_json is not None:
        where = (bad_json.get("ctx") or {}).get("error", "")
        return JSONResponse({"detail": f"request body is not valid JSON: {excerpt(str(where), 120)}"},
                            status_code=400)
    return JSONResponse(field_errors(errors), status_code=422)


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code,
                        headers=getattr(exc, "headers", None))


def install(api: FastAPI) -> None:
    api.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    api.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
