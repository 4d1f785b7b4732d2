"""The bid engine (serve.bid) with a fake clock and a fake budget store: every path to a bid or a no-bid."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from models.bidding.book import Campaign
from models.bidding.campaign import CampaignConfig, build_strategy
from models.bidding.strategies import AuctionState
from serve.bid import BidEngine, BidSettings, NoticesNotStored
from serve.bid_schemas import BidRequest, NoticeRequest
from store.budget import BudgetState, Reservation

pytestmark = pytest.mark.unit

START = datetime(2026, 1, 1, tzinfo=UTC).timestamp()


@dataclass
class FakeBudget:
    """store.budget's semantics in memory (reserve with cap/partial, idempotent win/lose, observe)."""

    budgets: dict[str, dict[str, int]] = field(default_factory=dict)
    bids: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    delay_s: float = 0.0
    fail: bool = False
    calls: list[str] = field(default_factory=list)

    async def _io(self, name: str) -> None:
        self.calls.append(name)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail:
            raise ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")

    async def observe(self, campaign: str, seen: int, budget: int, expire_at_ms: int) -> BudgetState:
        await self._io("observe")
        b = self.budgets.setdefault(campaign, {"budget": budget, "spent": 0, "reserved": 0, "seen": 0})
        b["seen"] += seen
        return BudgetState(b["budget"], b["spent"], b["reserved"], 0, b["seen"])

    async def reserve(self, campaign: str, bid_id: str, amount: int, partial: bool = False) -> Reservation:
        await self._io("reserve")
        rec = self.bids.get((campaign, bid_id))
        if rec is not None:
            return Reservation("duplicate", rec["amount"], rec["state"])
        b = self.budgets.get(campaign)
        if b is None:
            return Reservation("no_budget", 0)
        free = b["budget"] - b["spent"] - b["reserved"]
        if amount > free:
            if not (partial and free > 0):
                return Reservation("refused", max(free, 0))
            amount = free
        b["reserved"] += amount
        self.bids[(campaign, bid_id)] = {"state": "held", "amount": amount}
        return Reservation("held", amount)

    async def win(self, campaign: str, bid_id: str, price: int) -> str:
        return (await self.notices([(campaign, bid_id, price)]))[0]

    async def lose(self, campaign: str, bid_id: str) -> str:
        return (await self.notices([(campaign, bid_id, None)]))[0]

    async def notices(self, items: list[tuple[str, str, int | None]]) -> list[str]:
        await self._io("notices")
        out = []
        for campaign, bid_id, price in items:
            rec = self.bids.get((campaign, bid_id))
            b = self.budgets.setdefault(campaign, {"budget": 0, "spent": 0, "reserved": 0, "seen": 0})
            if price is None:
                if rec is None or rec["state"] != "held":
                    out.append("duplicate")
                    continue
                b["reserved"] -= rec["amount"]
                rec["state"] = "lost"
                out.append("lost")
                continue
            if rec is not None and rec["state"] == "won":
                out.append("duplicate")
                continue
            status = "unheld" if rec is None else "won"
            if rec is not None and rec["state"] == "held":
                b["reserved"] -= rec["amount"]
                status = "over_hold" if price > rec["amount"] else "won"
            b["spent"] += price
            self.bids[(campaign, bid_id)] = {"state": "won", "amount": price}
            out.append(status)
        return out


class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


class Recording:
    """A strategy that bids a fixed price and keeps the states it was shown."""

    name = "recording"

    def __init__(self, price: float):
        self.price = price
        self.states: list[AuctionState] = []

    def bid(self, pctr: float, state: AuctionState) -> float:
        self.states.append(state)
        return self.price


def campaign(price: float = 40, budget: int = 100, auctions: int = 1000, **kw: Any) -> Campaign:
    cfg = CampaignConfig.model_validate({
        "campaign_id": "c1", "budget": budget, "period_s": 3600, "start": "2026-01-01T00:00:00Z",
        "auctions_per_period": auctions, "strategy": {"kind": "constant", "price": price}, **kw})
    return Campaign(cfg, build_strategy(cfg))


def engine(store: FakeBudget, wall: float = START + 10, perf: Clock | None = None, **settings: Any) -> BidEngine:
    return BidEngine(BidSettings(**settings), lambda tenant, hold_ms: store, default_deadline_ms=1000,
                     clock=Clock(wall), perf=perf or Clock(0.0), background=False)


def req(bid_id: str = "b1", **kw: Any) -> BidRequest:
    body: dict[str, Any] = {"campaign_id": "c1", "bid_id": bid_id, "pctr": 0.01, **kw}
    if "features" in kw:
        body.pop("pctr")
    return BidRequest.model_validate(body)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_bid_is_held_against_the_period_budget_and_reported() -> None:
    store = FakeBudget()
    out = run(engine(store).bid(req(), "t1", campaign(), "vcamp-1", None))
    assert (out.bid, out.price, out.reason, out.strategy) == (True, 40, None, "constant")
    assert (out.pctr, out.pctr_source, out.period, out.campaign_version, out.tenant) == \
        (0.01, "request", 0, "vcamp-1", "t1")
    assert store.budgets["c1.0"] == {"budget": 100, "spent": 0, "reserved": 40, "seen": 1}  # period 0's budget
    assert store.calls == ["observe", "reserve"]  # the first request of a period fetches its state


def test_no_bid_reasons_before_any_budget_call() -> None:
    store = FakeBudget()
    e = engine(store)
    assert run(e.bid(req(), "t1", None, None, None)).reason == "unknown_campaign"
    early = engine(store, wall=START - 1)
    assert run(early.bid(req(), "t1", campaign(), None, None)).reason == "campaign_inactive"
    ended = campaign(end="2026-01-01T00:00:05Z")
    assert run(e.bid(req(), "t1", ended, None, None)).reason == "campaign_inactive"
    assert store.calls == []
    out = run(e.bid(req(floor=40.5), "t1", campaign(), None, None))
    assert (out.bid, out.price, out.reason) == (False, 0, "below_floor")
    assert run(e.bid(req(), "t1", campaign(price=0.7), None, None)).reason == "zero_bid"
    assert "reserve" not in store.calls


def test_spend_is_capped_by_the_store_even_with_a_stale_cache() -> None:
    store = FakeBudget()
    e = engine(store)
    c = campaign(price=40, budget=100)

    async def go() -> list[tuple[bool, int, str | None]]:
        out = []
        for i in range(5):  # no refresh in between: the cache still says 100 left
            r = await e.bid(req(f"b{i}"), "t1", c, None, None)
            out.append((r.bid, r.price, r.reason))
        return out

    assert run(go()) == [(True, 40, None), (True, 40, None), (True, 20, None),  # the third is cut to what is left
                         (False, 0, "budget_exhausted"), (False, 0, "budget_exhausted")]
    assert store.budgets["c1.0"]["reserved"] == 100


def test_a_retried_bid_id_gets_the_same_bid_once() -> None:
    store = FakeBudget()
    e = engine(store)

    async def go() -> tuple[Any, Any]:
        return (await e.bid(req("same"), "t1", campaign(), None, None),
                await e.bid(req("same"), "t1", campaign(), None, None))

    a, b = run(go())
    assert (a.bid, a.price) == (b.bid, b.price) == (True, 40)
    assert store.budgets["c1.0"]["reserved"] == 40


def test_redis_down_is_a_no_bid_and_opens_the_breaker() -> None:
    store = FakeBudget(fail=True)
    e = engine(store, breaker_failures=2)

    async def go() -> list[str | None]:
        return [(await e.bid(req(f"b{i}"), "t1", campaign(), None, None)).reason for i in range(4)]

    assert run(go()) == ["budget_unavailable"] * 4
    assert store.calls == ["observe", "observe"]  # then the breaker skipped Redis
    assert e.breaker.state == "open"


def test_slow_redis_answers_no_bid_by_the_deadline_and_releases_the_late_hold() -> None:
    store = FakeBudget()
    e = BidEngine(BidSettings(), lambda t, h: store, default_deadline_ms=1000, clock=Clock(START + 10),
                  background=False)

    async def go() -> tuple[Any, float, Any]:
        await e.bid(req("warm"), "t1", campaign(budget=1000), None, None)  # state cached
        store.delay_s = 0.2
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        out = await e.bid(req("slow", deadline_ms=20), "t1", campaign(budget=1000), None, None)
        waited = loop.time() - t0
        await asyncio.sleep(0.5)  # the reserve finishes after the answer; its hold must be released
        return out, waited, store.bids[("c1.0", "slow")]

    out, waited, record = run(go())
    assert (out.bid, out.reason) == (False, "deadline")
    assert waited < 0.15
    assert record["state"] == "lost"
    assert store.budgets["c1.0"]["reserved"] == 40  # only the warm-up bid's hold is left
    assert e.breaker.state == "closed"  # a request's own deadline is not a Redis failure


def test_a_bid_ready_after_its_deadline_is_a_no_bid() -> None:
    perf = Clock(0.0)
    store = FakeBudget()
    e = engine(store, perf=perf)

    class Slow(Recording):
        def bid(self, pctr: float, state: AuctionState) -> float:
            perf.t += 0.050  # the strategy took 50 ms of a 10 ms budget
            return 40.0

    c = campaign()
    slow = Campaign(c.config, Slow(40))

    async def go() -> Any:
        out = await e.bid(req(deadline_ms=10), "t1", slow, None, None)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return out

    out = run(go())
    assert (out.bid, out.price, out.reason) == (False, 0, "deadline")
    assert store.bids[("c1.0", "b1")]["state"] == "lost"  # held, then released
    assert store.budgets["c1.0"]["reserved"] == 0


def test_auctions_left_follow_the_period_counter() -> None:
    store = FakeBudget()
    e = engine(store)
    strategy = Recording(5)
    c = Campaign(campaign(auctions=100, budget=1000).config, strategy)

    async def go() -> None:
        for i in range(3):
            await e.bid(req(f"a{i}"), "t1", c, None, None)
        store.budgets["c1.0"]["seen"] += 50  # other replicas' requests
        await e.refresh()
        await e.bid(req("a3"), "t1", c, None, None)
        await e.refresh()

    run(go())
    assert [s.n_left for s in strategy.states] == [100, 99, 98, 100 - 53]
    assert [s.budget_left for s in strategy.states][:2] == [1000.0, 1000.0]  # stale between refreshes
    assert strategy.states[-1].budget_left == 1000 - 3 * 5
    assert store.budgets["c1.0"]["seen"] == 54


def test_pctr_from_the_model_or_a_no_bid() -> None:
    class Model:
        version = "vpctr-3"

        def __init__(self, p: float | Exception):
            self.p = p

        def predict_one(self, features: dict[str, Any]) -> float:
            if isinstance(self.p, Exception):
                raise self.p
            return self.p

    store = FakeBudget()
    e = engine(store)
    feats = {"domain": "d1", "slot": None, "floor_price": 5.0}
    ok = run(e.bid(req(features=feats), "t1", campaign(), None, Model(0.02)))
    assert (ok.bid, ok.pctr, ok.pctr_source, ok.model_version) == (True, 0.02, "model", "vpctr-3")
    assert run(e.bid(req("b2", features=feats), "t1", campaign(), None, None)).reason == "no_pctr_model"
    assert run(e.bid(req("b3", features=feats), "t1", campaign(), None, Model(RuntimeError("x")))).reason \
        == "pctr_error"
    assert run(e.bid(req("b4", features=feats), "t1", campaign(), None, Model(math.nan))).reason == "pctr_error"
    # with a prior the chain ends there instead of a no-bid, and says why; a sent pctr never uses it
    e = engine(FakeBudget())
    linear = campaign(strategy={"kind": "linear", "base": 30, "avg_ctr": 0.01}, pctr_prior=0.005, budget=1000)
    for bid_id, model, why in (("p1", None, "no_pctr_model"), ("p2", Model(RuntimeError("x")), "pctr_error"),
                               ("p3", Model(math.inf), "pctr_error")):
        out = run(e.bid(req(bid_id, features=feats), "t1", linear, None, model))
        assert (out.bid, out.price, out.pctr, out.pctr_source, out.fallback_reason, out.model_version) == \
            (True, 15, 0.005, "prior", why, None), out
    sent = run(e.bid(req("p4", pctr=0.02), "t1", linear, None, None))
    assert (sent.price, sent.pctr_source, sent.fallback_reason) == (60, "request", None)


def test_a_model_too_slow_for_the_deadline_falls_back_or_no_bids() -> None:
    perf = Clock(0.0)

    class Slow:
        version = "vslow"

        def predict_one(self, features: dict[str, Any]) -> float:
            perf.t += 0.02  # 20 ms per impression against a 10 ms deadline
            return 0.01

    e = engine(FakeBudget(), perf=perf)
    feats = {"domain": "d1"}
    late = run(e.bid(req("s1", features=feats, deadline_ms=10), "t1", campaign(), None, Slow()))
    assert (late.bid, late.reason) == (False, "deadline")
    # the next one knows the model does not fit: it does not run it, and takes the prior in time
    prior = campaign(pctr_prior=0.01)
    out = run(e.bid(req("s2", features=feats, deadline_ms=10), "t1", prior, None, Slow()))
    assert (out.bid, out.pctr_source, out.fallback_reason) == (True, "prior", "deadline"), out


def test_any_failure_of_the_bid_path_is_a_no_bid_not_an_error() -> None:
    from serve.bid import answer

    class Broken:
        async def get(self, tenant: str) -> Any:
            raise KeyError("a bug")

    e = engine(FakeBudget())
    out = run(answer(e, Broken(), "bid", req("x1"), "t1"))  # type: ignore[arg-type]
    assert (out.bid, out.price, out.reason, out.bid_id, out.tenant) == (False, 0, "error", "x1", "t1")


def test_notices_settle_holds_and_fail_loudly_when_not_stored() -> None:
    store = FakeBudget()
    e = engine(store)
    c = campaign()

    async def go() -> Any:
        for b in ("w", "l"):
            await e.bid(req(b), "t1", c, None, None)
        return await e.notice(NoticeRequest.model_validate({"notices": [
            {"campaign_id": "c1", "bid_id": "w", "outcome": "win", "price": 31, "period": 0},
            {"campaign_id": "c1", "bid_id": "l", "outcome": "loss"},
            {"campaign_id": "zz", "bid_id": "q", "outcome": "loss"},
            {"campaign_id": "c1", "bid_id": "w", "outcome": "win", "price": 31}]}),
            "t1", lambda cid: c if cid == "c1" else None)

    out = run(go())
    assert [(r.bid_id, r.status) for r in out.results] == [("w", "won"), ("l", "lost"), ("q", "unknown_campaign"),
                                                           ("w", "duplicate")]
    assert store.budgets["c1.0"] == {"budget": 100, "spent": 31, "reserved": 0, "seen": 1}  # 1 flushed so far
    store.fail = True
    with pytest.raises(NoticesNotStored):
        run(e.notice(NoticeRequest.model_validate({"notices": [
            {"campaign_id": "c1", "bid_id": "w", "outcome": "win", "price": 31}]}), "t1", lambda cid: c))


def test_the_openapi_schema_says_exactly_what_is_accepted() -> None:
    """What a generated client or a fuzzer reads: no null pctr/features/price, one source, a win's price."""
    bid = BidRequest.model_json_schema()
    assert bid["properties"]["pctr"]["type"] == "number" and "anyOf" not in bid["properties"]["pctr"]
    assert bid["properties"]["features"]["additionalProperties"] is False
    assert bid["oneOf"] == [{"required": ["pctr"]}, {"required": ["features"]}]
    notice = NoticeRequest.model_json_schema()["$defs"]["Notice"]
    assert notice["properties"]["price"] == {"type": "integer", "minimum": 0, "maximum": 10**9,
                                             "description": notice["properties"]["price"]["description"]}
    assert {"properties": {"outcome": {"const": "loss"}}, "not": {"required": ["price"]}} in notice["oneOf"]


def test_requests_are_strict() -> None:
    from pydantic import ValidationError

    bad = [{"pctr": 0.1, "features": {"a": "x"}}, {}, {"pctr": True}, {"pctr": "0.1"}, {"pctr": 1.5},
           {"pctr": 0.1, "floor": -1}, {"pctr": 0.1, "deadline_ms": 0}, {"features": {"a": True}},
           {"features": {"a": float("nan")}}, {"features": {"bad key": 1.0}}, {"pctr": 0.1, "extra": 1},
           {"pctr": None}, {"pctr": None, "features": {"a": "x"}}, {"pctr": 0.1, "features": None}]
    for extra in bad:
        with pytest.raises(ValidationError):
            BidRequest.model_validate({"campaign_id": "c1", "bid_id": "b1", **extra})
    for body in ({"campaign_id": "c.1", "bid_id": "b", "pctr": 0.1}, {"campaign_id": "c1", "bid_id": "b 1",
                                                                      "pctr": 0.1}):
        with pytest.raises(ValidationError):
            BidRequest.model_validate(body)
    ok = BidRequest.model_validate_json('{"campaign_id": "c1", "bid_id": "b", "features": {"a": 1, "b": null}}')
    assert ok.features == {"a": 1.0, "b": None}
    for notice in ({"outcome": "win"}, {"outcome": "loss", "price": 3}, {"outcome": "win", "price": 2.5},
                   {"outcome": "win", "price": None}, {"outcome": "loss", "price": None}, {"outcome": "win", "price": -1}):
        with pytest.raises(ValidationError):
            NoticeRequest.model_validate({"notices": [{"campaign_id": "c1", "bid_id": "b", **notice}]})
