"""A pure-ASGI fast path for the bid-time endpoints, in front of FastAPI's router.

``POST /v1/score`` and ``POST /v1/recommend`` that passed ``serve.guard`` (size, API key, JSON
media type; the guard has read the body and resolved the tenant) are parsed with the same
pydantic models (``model_validate_json``), run through the same handler
(``Service.handle``) and answered with the same JSON body FastAPI would send. FastAPI's
routing, dependency solving and response re-validation cost about a quarter of a replica's
CPU per request, which at 1,000+ requests/s on two cores is the difference between meeting
the bid budget and not.

Anything else (other paths and methods, a body that does not validate) is handed to FastAPI
unchanged, with the body replayed, so every error answer (400, 422 naming the field) comes
from one place (``serve.errors``). The OpenAPI schema still documents both endpoints: their
FastAPI routes stay registered.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from serve.guard import BODY, TENANT, app_path

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON = b"application/json"


class HotService(Protocol):
    """What the fast path needs from the service (``serve.api.Service``)."""

    async def handle(self, endpoint: str, req: Any, tenant: str) -> BaseModel: ...


class Route:
    def __init__(self, endpoint: str, request_model: type[BaseModel]):
        self.endpoint = endpoint
        self.request_model = request_model


class HotPathMiddleware:
    """Starlette-style pure ASGI middleware: ``api.add_middleware(HotPathMiddleware, routes=..., service=...)``.

    ``service`` is called per request and returns the bound service (None: FastAPI answers)."""

    def __init__(self, app: ASGIApp, routes: dict[str, Route], service: Callable[[], HotService | None]):
        self.app = app
        self.routes = routes
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = scope.get(BODY) if scope["type"] == "http" else None
        route = self.routes.get(app_path(scope)) if body is not None else None
        tenant = scope.get(TENANT)
        service = self.service()
        if route is None or body is None or service is None or tenant is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            req = route.request_model.model_validate_json(body)
        except ValidationError:
            await self.app(scope, receive, send)   # FastAPI names the field (serve.errors)
            return
        out = (await service.handle(route.endpoint, req, tenant)).model_dump_json().encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(out)).encode()), (b"content-type", JSON)]})
        await send({"type": "http.response.body", "body": out})


__all__ = ["HotPathMiddleware", "HotService", "Route"]
