"""The live-traffic simulator's client logic against an in-process stand-in of the API (the live
app is driven in tests/integration/test_experiment_live.py): truth per variant, retries on 503."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter

import httpx

from pipelines.simulate import SimulateConfig, Simulator, item_appeal


def _app() -> tuple[httpx.MockTransport, Counter[str]]:
    seen: Counter[str] = Counter()

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert request.headers["X-API-Key"] == "k1"
        if request.url.path == "/v1/recommend":
            h = hashlib.blake2b(body["session_id"].encode(), digest_size=1).digest()[0]
            variant = "treat" if h % 2 else "control"
            items = [{"item_id": f"i{j}", "score": 1.0} for j in range(body["k"])]
            return httpx.Response(200, json={"session_id": body["session_id"], "items": items, "experiment": "e",
                                             "variant": variant})
        seen["events"] += 1
        if seen["events"] % 3 == 0 and seen["retried"] < 50:
            seen["retried"] += 1
            return httpx.Response(503, headers={"Retry-After": "0"}, json={"detail": "events not stored"})
        ev = body["events"][0]
        seen[ev["event_type"]] += 1
        return httpx.Response(200, json={"session_id": body["session_id"], "accepted": 1})

    return httpx.MockTransport(handler), seen


def test_truth_per_variant_and_retries() -> None:
    transport, seen = _app()
    cfg = SimulateConfig(url="http://app", api_key="k1", sessions=3000, concurrency=8, conversion=0.1,
                         true_lift={"treat": 1.0}, seed=3)

    async def go() -> None:
        async with httpx.AsyncClient(base_url=cfg.url, transport=transport) as client:
            sim = Simulator(cfg, client)
            res = await sim.run()
            by = res.by_variant
            assert res.sessions == 3000 and res.experiments == ["e"]
            rate = {v: by[v]["converted"] / by[v]["sessions"] for v in ("control", "treat")}
            assert 1.6 < rate["treat"] / rate["control"] < 2.5  # true lift +100 %
            assert by["treat"]["true_lift"] == 1.0 and by["control"]["true_lift"] == 0.0
            assert res.retries == 50 and res.failed == 0
            assert res.statuses["events 503"] == 50 and res.server_errors == 50
            assert seen["purchase"] == sum(by[v]["orders"] for v in by)
            assert seen["view"] == sum(by[v]["clicks"] for v in by)
    asyncio.run(go())


def test_item_appeal_is_fixed_per_item() -> None:
    assert item_appeal("i1", 0.0) == 1.0
    a = item_appeal("i1", 0.5)
    assert a == item_appeal("i1", 0.5) and 0.75 <= a <= 1.25
