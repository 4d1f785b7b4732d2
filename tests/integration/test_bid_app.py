"""``/v1/bid`` and ``/v1/bid/notice`` in the real Serve app (2 replicas) with a real redis-server.

Auth before the body, 4xx for bad bodies, bids held against the budget and settled by notices,
the pCTR model on features, campaigns picked up from the registry without a redeploy, spend
never above the budget under concurrent load across replicas, and a safe no-bid within the
deadline while Redis is hung or down.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from models.bidding.campaign import CampaignConfig, CampaignSet
from store.budget import BudgetStore
from store.campaigns import publish
from store.registry import Registry
from tests.integration.test_serve_app import deploy, undeploy

pytestmark = pytest.mark.integration

KEY = "key-bidder-1"
START = datetime.fromtimestamp(int(time.time()) - 60, UTC).isoformat()  # period 0 lasts the module's day


def campaign(cid: str, **kw: Any) -> CampaignConfig:
    return CampaignConfig.model_validate({"campaign_id": cid, "budget": 500, "period_s": 86_400,
                                          "start": START, "auctions_per_period": 1000,
                                          "strategy": {"kind": "constant", "price": 7}, **kw})


# c-race holds each bid for a minute: its notices may be retried for seconds on a loaded box (503 + Retry-After),
# and a win after its hold expired is the one documented way past the cap (store.budget, late_wins)
CAMPAIGNS = [campaign("c-race", hold_ms=60_000), campaign("c-one", budget=100, strategy={"kind": "linear", "base": 20, "avg_ctr": 0.1}),
             campaign("c-fault")]


def pctr_artifact(tmp: Path) -> Path:
    """A tiny pctr model through the propensity pipeline's own encoding and fit (no Ray)."""
    from models.bidding.synthetic_ctr import SyntheticCtrConfig, make_ctr_table
    from models.propensity.artifact import save
    from models.propensity.data import LABEL, prepare
    from models.propensity.finalize import fit_local
    from models.propensity.model import PropensityConfig

    make_ctr_table(SyntheticCtrConfig(rows=3000, seed=1, base_ctr=0.1)).frame.to_csv(tmp / "imps.csv", index=False)
    prep = prepare(str(tmp / "imps.csv"), "click", None, 0, exclude=["market_price", "true_ctr"])
    booster, art = fit_local(prep.parts.train, prep.parts.validation, prep.features, LABEL,
                             PropensityConfig(num_boost_round=10))
    art.encoding = prep.encoding.to_dict()
    return save(tmp / "pctr-art", booster, art)


@pytest.fixture(scope="module")
def bidder(serve_http: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from cluster.local import free_port, start_redis, stop_group

    tmp = tmp_path_factory.mktemp("bid-app")
    port, pid_file = free_port(), tmp / "redis.pid"
    start_redis(port, tmp / "redis", pid_file)
    url = f"redis://127.0.0.1:{port}/0"
    reg = Registry(str(tmp / "reg"))
    mv = reg.register("pctr", pctr_artifact(tmp), {"kind": "lightgbm"})
    reg.set_champion("pctr", mv.version, "test")
    publish(reg, CampaignSet(campaigns=CAMPAIGNS))
    args = {"registry_uri": reg.uri, "redis_url": url, "api_keys": {KEY: "default"},
            "model_cache_dir": str(tmp / "cache"), "deadline_ms": 2000,
            "bid": {"campaign_poll_s": 0.5, "call_timeout_s": 0.5, "pool_timeout_s": 0.5, "refresh_ms": 20}}
    deploy("tandem-bid", "/b", args, num_replicas=2)
    try:
        warm(f"{serve_http}/b")
        yield {"url": f"{serve_http}/b", "redis": url, "port": port, "pid_file": pid_file, "registry": reg,
               "pctr_version": mv.version, "tmp": tmp}
    finally:
        undeploy("tandem-bid")
        stop_group(pid_file, "bid test redis-server")


def warm(url: str, timeout_s: float = 120.0) -> None:
    """Until both replicas have loaded the tenant's campaigns and pctr model (a replica's first request
    pays for the load and may no-bid on its deadline); probes under an impossible floor hold nothing."""
    deadline, streak = time.time() + timeout_s, 0
    with httpx.Client() as c:
        while streak < 8:
            assert time.time() < deadline, "the bid app did not warm up"
            r = bid(c, url, {"campaign_id": "c-fault", "bid_id": f"warm-{time.time()}", "features": {"domain": "d"},
                             "floor": 1e9})
            streak = streak + 1 if r.status_code == 200 and r.json()["reason"] == "below_floor" else 0


def bid(c: httpx.Client, url: str, body: dict[str, Any], key: str | None = KEY) -> httpx.Response:
    return c.post(f"{url}/v1/bid", json=body, headers={"X-API-Key": key} if key else {}, timeout=30)


def raw(port_url: str, head: bytes, body: bytes = b"") -> bytes:
    """One HTTP/1.1 exchange on a socket: what a client sends, byte for byte."""
    host, _, port = port_url.removeprefix("http://").split("/")[0].partition(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(head + body)
        return s.recv(65536)


def test_auth_comes_before_the_body(bidder: dict[str, Any]) -> None:
    with httpx.Client() as c:
        assert bid(c, bidder["url"], {"campaign_id": "c-race"}, key=None).status_code == 401
        assert bid(c, bidder["url"], {"campaign_id": "c-race"}, key="not-a-key").status_code == 401
        r = c.post(f"{bidder['url']}/v1/bid/notice", content=b"{not json", timeout=30,
                   headers={"Content-Type": "application/json"})
        assert r.status_code == 401
    # announced 30 MB and no key: refused on the headers, nothing read
    path = bidder["url"].split("/", 3)[3]
    answer = raw(bidder["url"], f"POST /{path}/v1/bid HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                f"Content-Length: {30 * 1024 * 1024}\r\n\r\n".encode())
    assert answer.split(b"\r\n", 1)[0].split()[1] in (b"401", b"413")


def test_bad_bodies_are_4xx_naming_the_field(bidder: dict[str, Any]) -> None:
    base = {"campaign_id": "c-race", "bid_id": "bad-1", "pctr": 0.1}
    cases = [({**base, "pctr": True}, "pctr"), ({**base, "pctr": "0.1"}, "pctr"), ({**base, "floor": -1}, "floor"),
             ({**base, "features": {"a": "x"}}, "pctr"), ({**base, "campaign_id": "c.1"}, "campaign_id"),
             ({**base, "bid_id": "has space"}, "bid_id"), ({**base, "deadline_ms": 0}, "deadline_ms"),
             ({**base, "extra": 1}, "extra")]
    with httpx.Client() as c:
        for body, field in cases:
            r = bid(c, bidder["url"], body)
            assert r.status_code == 422, (body, r.text)
            assert field in r.text, (field, r.text)
        for text in (b'{"campaign_id": "c-race", "bid_id": "n", "pctr": NaN}',
                     b'{"campaign_id": "c-race", "bid_id": "n", "pctr": Infinity}', b'{"campaign_id": '):
            r = c.post(f"{bidder['url']}/v1/bid", content=text, timeout=30,
                       headers={"X-API-Key": KEY, "Content-Type": "application/json"})
            assert r.status_code in (400, 422), (text, r.status_code, r.text)
        r = c.post(f"{bidder['url']}/v1/bid/notice", json={"notices": [
            {"campaign_id": "c-race", "bid_id": "x", "outcome": "win"}]}, headers={"X-API-Key": KEY}, timeout=30)
        assert r.status_code == 422 and "price" in r.text
        spec = c.get(f"{bidder['url']}/openapi.json", timeout=30).json()
    for path in ("/v1/bid", "/v1/bid/notice"):
        documented = set(spec["paths"][path]["post"]["responses"])
        assert {"200", "400", "401", "413", "415", "422", "429", "503"} <= documented, (path, documented)


def test_a_bid_is_held_then_settled_by_its_notice(bidder: dict[str, Any]) -> None:
    store = BudgetStore(__import__("redis").Redis.from_url(bidder["redis"]), tenant="default")
    with httpx.Client() as c:
        unknown = bid(c, bidder["url"], {"campaign_id": "nope", "bid_id": "u1", "pctr": 0.1}).json()
        assert (unknown["bid"], unknown["reason"]) == (False, "unknown_campaign")
        first = bid(c, bidder["url"], {"campaign_id": "c-one", "bid_id": "one-1", "pctr": 0.1}).json()
        assert (first["bid"], first["price"], first["strategy"], first["pctr_source"], first["period"]) == \
            (True, 20, "linear", "request", 0), first
        assert first["campaign_version"] is not None
        low = bid(c, bidder["url"], {"campaign_id": "c-one", "bid_id": "one-2", "pctr": 0.1, "floor": 25}).json()
        assert (low["bid"], low["reason"]) == (False, "below_floor")
        assert store.state("c-one.0").reserved == 20
        r = c.post(f"{bidder['url']}/v1/bid/notice", headers={"X-API-Key": KEY}, timeout=30, json={"notices": [
            {"campaign_id": "c-one", "bid_id": "one-1", "outcome": "win", "price": 13, "period": 0},
            {"campaign_id": "c-one", "bid_id": "one-1", "outcome": "win", "price": 13, "period": 0}]})
        assert r.status_code == 200, r.text
        assert [x["status"] for x in r.json()["results"]] == ["won", "duplicate"]
        modelled = bid(c, bidder["url"], {"campaign_id": "c-one", "bid_id": "one-3", "features": {
            "domain": "domain_3", "slotid": None, "floor_price": 5.0}}).json()
    s = store.state("c-one.0")
    assert (s.budget, s.spent) == (100, 13)
    assert modelled["pctr_source"] == "model" and modelled["model_version"] == bidder["pctr_version"]
    assert 0 < modelled["pctr"] < 1
    assert modelled["bid"] is True and modelled["price"] == int(min(20 * modelled["pctr"] / 0.1, 100 - 13 - 20))


def test_a_published_campaign_is_picked_up_without_a_redeploy(bidder: dict[str, Any]) -> None:
    reg: Registry = bidder["registry"]
    publish(reg, CampaignSet(campaigns=[*CAMPAIGNS, campaign("c-new", strategy={"kind": "constant", "price": 3})]))
    deadline = time.time() + 60
    with httpx.Client() as c:
        while time.time() < deadline:  # both replicas must see it
            answers = [bid(c, bidder["url"], {"campaign_id": "c-new", "bid_id": f"new-{i}-{time.time()}",
                                              "pctr": 0.1}).json() for i in range(6)]
            if all(a["bid"] for a in answers):
                break
            time.sleep(0.5)
    assert all(a["bid"] and a["price"] == 3 for a in answers), answers


def test_replicas_never_spend_past_the_budget_together(bidder: dict[str, Any]) -> None:
    """200 concurrent bids at 7 against a budget of 500 on two replicas; every bid is won at its price."""
    import redis

    async def go() -> list[dict[str, Any]]:
        limits = httpx.Limits(max_connections=16)  # concurrent, under the deployment's queue cap (503s)
        async with httpx.AsyncClient(limits=limits, timeout=60) as c:
            async def one(i: int) -> dict[str, Any]:
                r = await c.post(f"{bidder['url']}/v1/bid", headers={"X-API-Key": KEY},
                                 json={"campaign_id": "c-race", "bid_id": f"race-{i}", "pctr": 0.1})
                assert r.status_code == 200, r.text
                out: dict[str, Any] = r.json()
                if out["bid"]:
                    notice = {"notices": [{"campaign_id": "c-race", "bid_id": f"race-{i}", "outcome": "win",
                                           "price": out["price"], "period": out["period"]}]}
                    for _ in range(30):  # as an exchange does: a 503 with Retry-After is retried
                        n = await c.post(f"{bidder['url']}/v1/bid/notice", headers={"X-API-Key": KEY}, json=notice)
                        if n.status_code != 503:
                            break
                        assert "retry-after" in n.headers, n.headers
                        await asyncio.sleep(0.2)
                    assert n.status_code == 200, n.text
                return out

            return list(await asyncio.gather(*(one(i) for i in range(200))))

    answers = asyncio.run(go())
    bids = [a for a in answers if a["bid"]]
    state = BudgetStore(redis.Redis.from_url(bidder["redis"]), tenant="default").state("c-race.0")
    assert state is not None
    assert state.spent == sum(a["price"] for a in bids) <= state.budget == 500
    assert state.reserved == 0 and state.late_wins == 0
    assert 500 - state.spent < 7  # the budget was used up, not left idle
    reasons = {a["reason"] for a in answers if not a["bid"]}
    assert reasons <= {"budget_exhausted"}, reasons


def test_a_hung_or_dead_redis_gets_a_safe_no_bid_in_time(bidder: dict[str, Any]) -> None:
    from cluster.local import start_redis, stop_group

    pgid = int(bidder["pid_file"].read_text())
    with httpx.Client() as c:
        os.killpg(pgid, signal.SIGSTOP)  # hung: connections open, no answer
        try:
            for i in range(8):
                t0 = time.perf_counter()
                r = bid(c, bidder["url"], {"campaign_id": "c-fault", "bid_id": f"hung-{i}", "pctr": 0.1,
                                           "deadline_ms": 50})
                took = time.perf_counter() - t0
                assert r.status_code == 200, r.text
                assert (r.json()["bid"], r.json()["reason"]) == (False, r.json()["reason"])
                assert r.json()["reason"] in ("deadline", "budget_unavailable"), r.json()
                assert took < 2.0, took  # the 50 ms budget plus HTTP and a loaded box, never Redis's timeout
            n = c.post(f"{bidder['url']}/v1/bid/notice", headers={"X-API-Key": KEY}, timeout=30, json={
                "notices": [{"campaign_id": "c-fault", "bid_id": "hung-0", "outcome": "loss"}]})
            assert n.status_code == 503 and n.headers.get("retry-after"), n.text
        finally:
            os.killpg(pgid, signal.SIGCONT)
        stop_group(bidder["pid_file"], "bid test redis-server")  # down: connection refused
        for i in range(5):
            r = bid(c, bidder["url"], {"campaign_id": "c-fault", "bid_id": f"down-{i}", "pctr": 0.1, "deadline_ms": 50})
            assert r.status_code == 200 and r.json()["bid"] is False, r.text
            assert r.json()["reason"] in ("deadline", "budget_unavailable"), r.json()
        start_redis(bidder["port"], bidder["tmp"] / "redis", bidder["pid_file"])  # back (empty): bids resume
        deadline = time.time() + 30
        ok = False
        while time.time() < deadline and not ok:
            ok = bid(c, bidder["url"], {"campaign_id": "c-fault", "bid_id": f"back-{time.time()}",
                                        "pctr": 0.1}).json()["bid"]
            time.sleep(0.3)
        assert ok
