"""A pure-ASGI fast path for the bid-time endpoints, in front of FastAPI's router.

``POST /v1/score`` and ``POST /v1/recommend`` with ``Content-Type: application/json`` and a
known API key are parsed with the same pydantic models (``model_validate_json``), run
through the same handler code (``TandemService.score_for`` / ``recommend_for``) and
answered with the same JSON body FastAPI would send. FastAPI's routing, dependency solving
and response re-validation cost about a quarter of a replica's CPU per request, which at
1,000+ requests/s on two cores is the difference between meeting the bid budget and not.

Anything else (other paths and methods, another media type, a missing or unknown key, a
body that does not validate) is handed to FastAPI unchanged, with the body replayed, so
every error answer (401, 422 naming the field, 429/503 from Serve) comes from one place.
The OpenAPI schema still documents both endpoints: their FastAPI routes stay registered.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON = b"application/json"
MAX_BODY = 1 << 20  # larger bodies go to FastAPI (and its own limits)


class HotService(Protocol):
    """What the fast path needs from the deployment (``TandemService``)."""

    def tenant_of_key(self, api_key: str) -> str | None: ...

    async def handle(self, endpoint: str, req: BaseModel, tenant: str) -> BaseModel: ...


class Route:
    def __init__(self, endpoint: str, request_model: type[BaseModel]):
        self.endpoint = endpoint
        self.request_model = request_model


_service: HotService | None = None


def bind(service: HotService | None) -> None:
    """Make ``service`` (this replica's deployment instance) the one the fast path calls."""
    global _service
    _service = service


class HotPathMiddleware:
    """Starlette-style pure ASGI middleware: ``api.add_middleware(HotPathMiddleware, routes=...)``."""

    def __init__(self, app: ASGIApp, routes: dict[str, Route]):
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get(_app_path(scope)) if scope["type"] == "http" else None
        service = _service
        if route is None or service is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        api_key, content_type = _headers(scope)
        tenant = service.tenant_of_key(api_key) if api_key is not None else None
        if tenant is None or content_type != JSON:
            await self.app(scope, receive, send)
            return
        body, complete = await _read_body(receive)
        if complete:
            try:
                req = route.request_model.model_validate_json(body)
            except ValidationError:
                req = None
            if req is not None:
                out = (await service.handle(route.endpoint, req, tenant)).model_dump_json().encode()
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-length", str(len(out)).encode()), (b"content-type", JSON)]})
                await send({"type": "http.response.body", "body": out})
                return
        await self.app(scope, _replay(body, complete, receive), send)


def _app_path(scope: Scope) -> str:
    """The path below the app's route prefix (ASGI puts the prefix in ``root_path`` and the path)."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    result: str = path[len(root):] if root and path.startswith(root) else path
    return result


def _headers(scope: Scope) -> tuple[str | None, bytes | None]:
    """The first ``x-api-key`` and ``content-type`` header values (Starlette's ``Headers.get`` rule)."""
    api_key: str | None = None
    content_type: bytes | None = None
    for name, value in scope["headers"]:
        if name == b"x-api-key" and api_key is None:
            api_key = value.decode("latin-1")
        elif name == b"content-type" and content_type is None:
            content_type = value
    return api_key, content_type


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    """The request body; ``complete`` is False when it stopped early (disconnect, over ``MAX_BODY``)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True
        if size > MAX_BODY:
            return b"".join(chunks), False


def _replay(body: bytes, complete: bool, receive: Receive) -> Receive:
    """A ``receive`` that first yields what was already read, then continues with the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": not complete}
        return await receive()

    return replay


__all__ = ["HotPathMiddleware", "HotService", "Route", "bind"]
