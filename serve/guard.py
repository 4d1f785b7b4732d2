"""The front door of every request: size, API key and media type, before the body is read.

``GuardMiddleware`` is the outermost ASGI layer of the app. For each HTTP request, in order:

1. the docs (``/docs``, ``/redoc``, ``/openapi.json``) answer 404 when the app's ``docs`` is off;
2. a ``Content-Length`` over ``max_body_bytes`` gets 413 at once (nothing is read);
3. under ``/v1/`` the ``X-API-Key`` header is resolved to a tenant: a missing key is a 401
   except on ``/v1/health`` (which then says only up/degraded), an unknown key is always a 401;
4. a ``POST`` under ``/v1/`` must be JSON (415 otherwise); its body is read here, counting,
   and a body that grows past ``max_body_bytes`` without announcing it gets 413 as soon as it
   does, without buffering the rest.

The tenant and the body travel to the inner layers in the ASGI scope (``TENANT``, ``BODY``);
the body is replayed to whatever reads ``receive`` next. Error bodies are ``{"detail": ...}``
and never echo the key.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TENANT = "tandem.tenant"  # scope key: the authenticated tenant, or None (health without a key)
BODY = "tandem.body"      # scope key: the whole request body (bytes), read by the guard
API_PREFIX = "/v1/"
OPEN_PATHS = frozenset({"/v1/health"})   # answer without a key (with less detail)
DOCS_PATHS = frozenset({"/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"})
JSON_TYPES = (b"application/json",)
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


@dataclass(frozen=True)
class Gate:
    """What the guard checks requests against (from ``AppArgs``)."""

    api_keys: dict[str, str] = field(default_factory=dict)
    require_api_key: bool = True
    default_tenant: str = "default"
    max_body_bytes: int = 256 * 1024
    docs: bool = True

    def tenant(self, api_key: str | None) -> tuple[str | None, str | None]:
        """(tenant, None) for a usable key; (None, why) for a missing or unknown one."""
        if api_key is None:
            if self.require_api_key:
                return None, "missing X-API-Key header"
            return self.default_tenant, None
        tenant = self.api_keys.get(api_key)
        return (tenant, None) if tenant is not None else (None, "unknown API key")


class GuardMiddleware:
    """Pure ASGI middleware: ``api.add_middleware(GuardMiddleware, gate=lambda: ...)``.

    ``gate`` is called per request: the replica binds its ``Gate`` after the app is built."""

    def __init__(self, app: ASGIApp, gate: Callable[[], Gate | None]):
        self.app = app
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        gate = self.gate()
        if gate is None:
            await reply(send, 503, "the app is starting", {"retry-after": "1"})
            return
        path = app_path(scope)
        if path in DOCS_PATHS and not gate.docs:
            await reply(send, 404, "Not Found")
            return
        api_key, content_type, length = _headers(scope)
        if length is not None and (not length.isdigit() or int(length) > gate.max_body_bytes):
            status, why = (413, f"request body over {gate.max_body_bytes} bytes") if length.isdigit() \
                else (400, "invalid Content-Length header")
            await reply(send, status, why)
            return
        if not path.startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        tenant, refusal = gate.tenant(api_key)
        if refusal is not None and (api_key is not None or path not in OPEN_PATHS):
            await reply(send, 401, refusal, {"www-authenticate": "ApiKey"})
            return
        scope[TENANT] = tenant
        if scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        if content_type is not None and content_type.split(b";", 1)[0].strip().lower() not in JSON_TYPES:
            await reply(send, 415, "the request body must be JSON (Content-Type: application/json)")
            return
        body, outcome = await read_body(receive, gate.max_body_bytes)
        if outcome == "too_large":
            await reply(send, 413, f"request body over {gate.max_body_bytes} bytes")
            return
        if outcome == "disconnected":
            return
        scope[BODY] = body
        await self.app(scope, replay(body, receive), send)


def app_path(scope: Scope) -> str:
    """The path below the app's route prefix (ASGI puts the prefix in ``root_path`` and the path)."""
    path, root = str(scope.get("path", "")), str(scope.get("root_path", ""))
    return path[len(root):] if root and path.startswith(root) else path


def _headers(scope: Scope) -> tuple[str | None, bytes | None, str | None]:
    """The first ``x-api-key``, ``content-type`` and ``content-length`` values (Starlette's rule)."""
    api_key: str | None = None
    content_type: bytes | None = None
    length: str | None = None
    for name, value in scope["headers"]:
        if name == b"x-api-key" and api_key is None:
            api_key = value.decode("latin-1")
        elif name == b"content-type" and content_type is None:
            content_type = value
        elif name == b"content-length" and length is None:
            length = value.decode("latin-1").strip()
    return api_key, content_type, length


async def read_body(receive: Receive, limit: int) -> tuple[bytes, str]:
    """The body, read until done or ``limit`` is passed: (body, "ok" | "too_large" | "disconnected")."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"", "disconnected"
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", "too_large"
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), "ok"


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that first yields the whole body, then continues with the real one."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


async def reply(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    """A JSON ``{"detail": ...}`` answer."""
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


__all__ = ["BODY", "TENANT", "Gate", "GuardMiddleware", "app_path", "read_body", "replay", "reply"]
