"""The bid-time fast path: same answers as FastAPI on the happy path, FastAPI for everything else."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import FastAPI, Header, HTTPException
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict, Field

from serve import hotpath


class Req(BaseModel):
    model_config = ConfigDict(extra="forbid")
    session_id: str = Field(min_length=1)
    k: int = Field(3, ge=1)


class Resp(BaseModel):
    session_id: str
    tenant: str
    items: list[str]
    score: float
    source: str


class Service:
    """The deployment's side of the protocol: key -> tenant, and the shared handler body."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def tenant_of_key(self, api_key: str) -> str | None:
        return {"k1": "acme", "k2": "globex"}.get(api_key)

    async def handle(self, endpoint: str, req: Any, tenant: str) -> BaseModel:
        self.calls.append(endpoint)
        return Resp(session_id=req.session_id, tenant=tenant, items=[f"i{j}" for j in range(req.k)],
                    score=0.1 + 0.2, source="precomputed")


def make_app(service: Service) -> FastAPI:
    api = FastAPI()
    api.add_middleware(hotpath.HotPathMiddleware, routes={"/v1/score": hotpath.Route("score", Req)})  # type: ignore[arg-type]
    seen: list[str] = []

    @api.post("/v1/score", response_model=Resp)
    async def score(req: Req, x_api_key: str | None = Header(None)) -> Any:
        seen.append("fastapi")
        tenant = service.tenant_of_key(x_api_key or "")
        if tenant is None:
            raise HTTPException(401, "unknown API key")
        return await service.handle("score", req, tenant)

    api.state.seen = seen
    return api


@pytest.fixture
def client() -> Any:
    service = Service()
    hotpath.bind(service)
    app = make_app(service)
    with TestClient(app) as c:
        yield c, service, app.state.seen
    hotpath.bind(None)


def test_happy_path_skips_fastapi_and_answers_the_same_bytes(client: Any) -> None:
    c, service, seen = client
    body = json.dumps({"session_id": "s1", "k": 2})
    fast = c.post("/v1/score", content=body, headers={"X-API-Key": "k2", "Content-Type": "application/json"})
    assert fast.status_code == 200 and seen == [] and service.calls == ["score"]
    # another media type goes through FastAPI: the same JSON document comes back
    slow = c.post("/v1/score", content=body, headers={"X-API-Key": "k2",
                                                      "Content-Type": "application/json; charset=utf-8"})
    assert slow.status_code == 200 and seen == ["fastapi"]
    assert fast.json() == slow.json() == {"session_id": "s1", "tenant": "globex", "items": ["i0", "i1"],
                                          "score": 0.30000000000000004, "source": "precomputed"}
    assert fast.headers["content-type"] == "application/json"
    assert int(fast.headers["content-length"]) == len(fast.content)


def test_errors_are_fastapis_with_the_body_replayed(client: Any) -> None:
    c, service, seen = client
    ok = {"X-API-Key": "k1", "Content-Type": "application/json"}
    bad = c.post("/v1/score", content=json.dumps({"session_id": "s1", "k": 0}), headers=ok)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "k"]
    extra = c.post("/v1/score", content=json.dumps({"session_id": "s1", "nope": 1}), headers=ok)
    assert extra.status_code == 422 and extra.json()["detail"][0]["loc"] == ["body", "nope"]
    broken = c.post("/v1/score", content=b'{"session_id": ', headers=ok)
    assert broken.status_code == 422
    unknown = c.post("/v1/score", content=json.dumps({"session_id": "s1"}),
                     headers={"X-API-Key": "zzz", "Content-Type": "application/json"})
    assert unknown.status_code == 401
    assert service.calls == []                      # no error reached the handler
    assert seen == ["fastapi"]                      # the 422s were FastAPI's before its handler ran


def test_other_paths_methods_and_prefixes(client: Any) -> None:
    c, service, seen = client
    assert c.get("/v1/score", headers={"X-API-Key": "k1"}).status_code == 405
    assert c.post("/v1/other", json={}, headers={"X-API-Key": "k1"}).status_code == 404
    assert service.calls == []
    scope = {"type": "http", "path": "/tandem/v1/score", "root_path": "/tandem"}
    assert hotpath._app_path(scope) == "/v1/score"
    assert hotpath._app_path({"type": "http", "path": "/v1/score", "root_path": ""}) == "/v1/score"


def test_a_large_body_is_replayed_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    monkeypatch.setattr(hotpath, "MAX_BODY", 8)
    service = Service()
    hotpath.bind(service)
    got: list[bytes] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        while True:
            m = await receive()
            got.append(m.get("body", b""))
            if not m.get("more_body"):
                return

    messages = [{"type": "http.request", "body": b'{"session_id": ', "more_body": True},
                {"type": "http.request", "body": b'"s9", "k": 1}', "more_body": False}]

    async def receive() -> Any:
        return messages.pop(0)

    async def send(m: Any) -> None:
        raise AssertionError("the fast path must not answer an over-long body")

    scope = {"type": "http", "method": "POST", "path": "/v1/score", "root_path": "",
             "headers": [(b"content-type", b"application/json"), (b"x-api-key", b"k1")]}
    asyncio.run(hotpath.HotPathMiddleware(inner, {"/v1/score": hotpath.Route("score", Req)})(scope, receive, send))
    hotpath.bind(None)
    assert b"".join(got) == b'{"session_id": "s9", "k": 1}' and service.calls == []
