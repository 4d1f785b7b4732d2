"""The HTTP front door (serve.api): guard before the body, the fast path, and errors that name the field.

The real app (``serve.api.api``) with a fake service bound: no Ray, no Redis.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serve import api as http
from serve.guard import Gate, GuardMiddleware
from serve.schemas import EventsResponse, HealthResponse, RecItem, RecommendResponse, ScoreResponse

pytestmark = pytest.mark.unit

KEY = {"X-API-Key": "k1", "Content-Type": "application/json"}


class FakeService:
    """``serve.api.Service``: records calls, answers fixed values."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.calls: list[tuple[str, str]] = []

    async def handle(self, endpoint: str, req: Any, tenant: str) -> Any:
        self.calls.append((endpoint, tenant))
        if endpoint == "score":
            return ScoreResponse(session_id=req.session_id, score=0.1 + 0.2, source="precomputed",
                                 model_version="v1", tenant=tenant)
        if endpoint == "recommend":
            return RecommendResponse(session_id=req.session_id, items=[RecItem(item_id="i1", score=1.0)],
                                     source="popular", model_version=None, tenant=tenant)
        return EventsResponse(session_id=req.session_id, accepted=len(req.events), session_length=1, stored=True,
                              tenant=tenant)

    async def health(self, detailed: bool, tenant: str | None = None) -> HealthResponse:
        if detailed:
            return HealthResponse(status="ok", redis="up", breaker="closed", models={"recommender": "v1"})
        return HealthResponse(status="ok")


@pytest.fixture
def client() -> Any:
    service = FakeService(Gate(api_keys={"k1": "acme", "k2": "globex"}, max_body_bytes=4096))
    http.bind(service)
    with TestClient(http.api) as c:
        yield c, service
    http.bind(None)


def test_fast_path_and_fastapi_answer_the_same(client: Any) -> None:
    c, service = client
    body = json.dumps({"session_id": "s1"})
    fast = c.post("/v1/score", content=body, headers=KEY)
    # a body the fast path does not take (it does not validate there) reaches FastAPI's route;
    # a valid one with the charset parameter takes the fast path too: both answer the same JSON
    charset = c.post("/v1/score", content=body, headers={**KEY, "Content-Type": "application/json; charset=utf-8"})
    assert fast.status_code == charset.status_code == 200
    assert fast.json() == charset.json() == {"session_id": "s1", "score": 0.30000000000000004,
                                             "source": "precomputed", "model_version": "v1",
                                             "fallback_reason": None, "tenant": "acme", "experiment": None,
                                             "variant": None}
    assert fast.headers["content-type"] == "application/json"
    assert int(fast.headers["content-length"]) == len(fast.content)
    rec = c.post("/v1/recommend", content=json.dumps({"session_id": "s1", "k": 1}),
                 headers={**KEY, "X-API-Key": "k2"})
    assert rec.status_code == 200 and rec.json()["tenant"] == "globex"
    ev = c.post("/v1/events", json={"session_id": "s1", "events": [{"item_id": "i1"}]}, headers=KEY)
    assert ev.status_code == 200 and ev.json()["stored"] is True
    assert service.calls == [("score", "acme"), ("score", "acme"), ("recommend", "globex"), ("events", "acme")]


def test_auth_comes_before_the_body(client: Any) -> None:
    c, service = client
    for path in ("/v1/score", "/v1/recommend", "/v1/events"):
        for headers in ({"Content-Type": "application/json"}, {**KEY, "X-API-Key": "nobody"}):
            for body in (b"{not json", json.dumps({"session_id": 42}).encode(), b""):
                r = c.post(path, content=body, headers=headers)
                assert r.status_code == 401, (path, headers, body, r.text)
                assert r.headers["www-authenticate"] == "ApiKey"
                assert "nobody" not in r.text
    assert service.calls == []


def test_bodies_are_capped_before_auth_and_while_streaming(client: Any) -> None:
    c, service = client
    big = b'{"session_id": "s1", "events": [' + b'{"item_id": "i1"},' * 1000 + b'{"item_id": "i1"}]}'
    no_key = c.post("/v1/events", content=big, headers={"Content-Type": "application/json"})
    assert no_key.status_code == 413 and "4096" in no_key.json()["detail"]
    assert c.post("/v1/events", content=big, headers=KEY).status_code == 413

    # a chunked body without Content-Length is counted as it arrives, and never read past the cap
    chunks = [{"type": "http.request", "body": b"x" * 3000, "more_body": True} for _ in range(100)]
    read: list[int] = []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        read.append(1)
        return chunks.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("an over-long body must not reach the app")

    scope = {"type": "http", "method": "POST", "path": "/v1/events", "root_path": "",
             "headers": [(b"content-type", b"application/json"), (b"x-api-key", b"k1")]}
    guard = GuardMiddleware(inner, gate=lambda: Gate(api_keys={"k1": "acme"}, max_body_bytes=4096))
    asyncio.run(guard(scope, receive, send))
    assert sent[0]["status"] == 413 and len(read) == 2
    assert service.calls == []


def test_client_mistakes_are_4xx_naming_the_field_with_short_excerpts(client: Any) -> None:
    c, service = client
    not_json = c.post("/v1/score", content=b'{"session_id": ', headers=KEY)
    assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["detail"]
    form = c.post("/v1/score", content=b"session_id=s1", headers={**KEY, "Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415
    cases = [
        ({"session_id": "s1", "k": 0}, "/v1/recommend", ["body", "k"]),
        ({"session_id": "s1", "nope": 1}, "/v1/score", ["body", "nope"]),
        ({"session_id": "__meta__"}, "/v1/score", ["body", "session_id"]),
        ({"session_id": "__all__"}, "/v1/recommend", ["body", "session_id"]),
        ({"session_id": "a:b"}, "/v1/score", ["body", "session_id"]),
        ({"session_id": "a\u0000b"}, "/v1/score", ["body", "session_id"]),
        ({"session_id": "s1", "exclude_seen": 0}, "/v1/recommend", ["body", "exclude_seen"]),
        ({"session_id": "s1", "items": ["ok", "x:y"]}, "/v1/recommend", ["body", "items", 1]),
        ({"session_id": "s1", "deadline_ms": True}, "/v1/score", ["body", "deadline_ms"]),
        ({"session_id": "s", "events": [{"item_id": "i", "price": False}]}, "/v1/events",
         ["body", "events", 0, "price"]),
        ({"session_id": "s", "events": [{"item_id": "i", "event_type": ""}]}, "/v1/events",
         ["body", "events", 0, "event_type"]),
        ({"session_id": "s", "events": [{"item_id": "i", "event_time": "9999-12-31T00:00:00Z"}]}, "/v1/events",
         ["body", "events", 0, "event_time"]),
        ({"session_id": "s", "events": [{"item_id": "i", "event_time": "0001-01-01T00:00:00Z"}]}, "/v1/score",
         ["body", "events", 0, "event_time"]),
    ]
    for body, path, loc in cases:
        r = c.post(path, content=json.dumps(body), headers=KEY)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["detail"][0]["loc"] == loc, (body, r.json())
    for literal in (b"NaN", b"Infinity", b"-Infinity"):       # Python's json reads these; they are refused
        r = c.post("/v1/events", content=b'{"session_id": "s", "events": [{"item_id": "i", "price": ' + literal +
                   b"}]}", headers=KEY)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "events", 0, "price"], r.text
    service.gate = Gate(api_keys={"k1": "acme"}, max_body_bytes=1 << 20)
    # 400 events, each with a bad price: a short answer naming fields, not the events echoed back
    many = {"session_id": "s", "events": [{"item_id": f"item-{i}", "price": -1} for i in range(400)]}
    r = c.post("/v1/events", content=json.dumps(many), headers={**KEY})
    assert r.status_code == 422 and r.json()["errors"] == 400 and len(r.json()["detail"]) == 10, r.text[:300]
    assert len(r.content) < 2500
    r = c.post("/v1/events", content=json.dumps({"session_id": "s", "events": [{"item_id": "i"}] * 10_000}),
               headers=KEY)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "events"]
    assert len(r.content) < 1000, len(r.content)
    assert service.calls == []


def test_health_says_only_up_without_a_key_and_docs_can_be_turned_off(client: Any) -> None:
    c, service = client
    assert c.get("/v1/health").json() == {"status": "ok"}
    assert c.get("/v1/health", headers={"X-API-Key": "k1"}).json()["redis"] == "up"
    assert c.get("/v1/health", headers={"X-API-Key": "zzz"}).status_code == 401
    assert c.get("/openapi.json").status_code == 200
    service.gate = Gate(api_keys={"k1": "acme"}, docs=False)
    assert [c.get(p).status_code for p in ("/docs", "/redoc", "/openapi.json")] == [404, 404, 404]


def test_other_paths_and_methods(client: Any) -> None:
    c, service = client
    assert c.get("/v1/score", headers={"X-API-Key": "k1"}).status_code == 405
    assert c.post("/v1/other", json={}, headers=KEY).status_code == 404
    assert c.get("/nowhere").status_code == 404
    assert service.calls == []


def test_unbound_app_answers_503_with_retry_after() -> None:
    http.bind(None)
    with TestClient(http.api) as c:
        r = c.post("/v1/score", json={"session_id": "s1"}, headers=KEY)
    assert r.status_code == 503 and r.headers["retry-after"] == "1"


def test_openapi_publishes_enums_patterns_security_and_every_status() -> None:
    from typing import get_args

    from models.schema import EVENT_TYPES
    from serve.schemas import EventType

    assert get_args(EventType) == EVENT_TYPES
    doc = http.api.openapi()
    event = doc["components"]["schemas"]["Event"]["properties"]
    assert event["event_type"]["enum"] == list(EVENT_TYPES)
    assert "pattern" in event["event_time"] and "pattern" in event["item_id"]
    for path in ("/v1/score", "/v1/recommend", "/v1/events"):
        op = doc["paths"][path]["post"]
        assert {"200", "400", "401", "413", "415", "422", "429", "503"} <= set(op["responses"]), path
        assert op["security"] == [{"APIKeyHeader": []}]
    assert "security" not in doc["paths"]["/v1/health"]["get"]


def test_events_not_stored_is_a_503_with_retry_after(client: Any) -> None:
    from serve.engine import EventsNotStored

    c, service = client

    async def refuse(endpoint: str, req: Any, tenant: str) -> Any:
        raise EventsNotStored("timeout", 2)

    service.handle = refuse
    r = c.post("/v1/events", json={"session_id": "s1", "events": [{"item_id": "i1"}]}, headers=KEY)
    assert r.status_code == 503 and r.headers["retry-after"] == "2" and "retry" in r.json()["detail"]
