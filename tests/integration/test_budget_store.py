"""Budget reservations against a real redis-server: atomic caps, idempotency, expiry, async."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from typing import Any

import pytest

from store.budget import AsyncBudgetStore, BudgetStore


@pytest.fixture()
def store(redis_client: Any) -> BudgetStore:
    return BudgetStore(redis_client, tenant="t1", hold_ms=60_000)


def test_reserve_win_lose_and_idempotency(store: BudgetStore) -> None:
    assert store.reserve("c1", "b0", 5).status == "no_budget"
    store.set_budget("c1", 100)
    assert store.reserve("c1", "b1", 40).status == "held"
    assert store.reserve("c1", "b1", 40).status == "duplicate"  # retried request: held once
    assert store.reserve("c1", "b2", 50).status == "held"
    r = store.reserve("c1", "b3", 20)
    assert (r.status, r.amount) == ("refused", 10)  # 100 - 40 - 50 left
    r = store.reserve("c1", "b3", 20, partial=True)
    assert (r.status, r.amount) == ("held", 10)  # cut to what is left
    assert store.state("c1").remaining == 0
    assert store.win("c1", "b1", 31) == "won"  # second price <= bid
    assert store.win("c1", "b1", 31) == "duplicate"  # a repeated win notice changes nothing
    assert store.lose("c1", "b2") == "lost"
    assert store.lose("c1", "b2") == "duplicate"
    assert store.lose("c1", "b1") == "duplicate"  # already won: a stray loss notice is ignored
    s = store.state("c1")
    assert (s.budget, s.spent, s.reserved, s.late_wins) == (100, 31, 10, 0)
    assert store.reserve("c1", "b4", 59).status == "held"
    assert store.reserve("c1", "b5", 1).status == "refused"


def test_expired_holds_are_released_and_late_wins_counted(redis_client: Any) -> None:
    store = BudgetStore(redis_client, tenant="t2", hold_ms=50)
    store.set_budget("c", 10)
    assert store.reserve("c", "old", 10).status == "held"
    assert store.reserve("c", "new", 10).status == "refused"
    time.sleep(0.12)
    assert store.reserve("c", "new", 10).status == "held"  # the old hold expired and was swept
    assert store.win("c", "old", 7) == "late"  # its win came after all: counted, flagged
    assert store.win("c", "never-held", 1) == "unheld"
    s = store.state("c")
    assert (s.spent, s.reserved, s.late_wins) == (8, 10, 2)
    store.set_budget("c", 50, reset_spend=True)
    s = store.state("c")
    assert (s.budget, s.spent, s.reserved, s.late_wins) == (50, 0, 10, 0)


def _replica(url: str, campaign: str, worker: int, bids: int, won: list[int], seed: int) -> None:
    import redis

    client = redis.Redis.from_url(url)
    store = BudgetStore(client, tenant="race", hold_ms=60_000)
    rng = random.Random(seed)
    for i in range(bids):
        bid_id = f"w{worker}-{i}"
        amount = rng.randint(1, 40)
        r = store.reserve(campaign, bid_id, amount, partial=rng.random() < 0.5)
        if r.status == "duplicate":
            raise AssertionError(f"fresh bid id {bid_id} reported as duplicate")
        if r.ok:
            store.reserve(campaign, bid_id, amount)  # a retried request must not hold twice
            if rng.random() < 0.6:
                price = rng.randint(0, r.amount)
                store.win(campaign, bid_id, price)
                store.win(campaign, bid_id, price)  # duplicate notice
                won.append(price)
            else:
                store.lose(campaign, bid_id)
    client.close()


def test_concurrent_replicas_never_spend_past_the_budget(redis_server: str, redis_client: Any) -> None:
    store = BudgetStore(redis_client, tenant="race")
    store.set_budget("hot", 5_000)
    won: list[int] = []
    threads = [threading.Thread(target=_replica, args=(redis_server, "hot", w, 400, won, w)) for w in range(16)]
    samples: list[tuple[int, int, int]] = []
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        s = store.state("hot")
        samples.append((s.budget, s.spent, s.reserved))
        time.sleep(0.002)
    for t in threads:
        t.join()
    final = store.state("hot")
    assert final.reserved == 0  # every hold was won or lost
    assert final.spent == sum(won)  # every win counted exactly once
    assert final.spent <= final.budget
    assert all(spent + reserved <= budget for budget, spent, reserved in samples)
    assert final.budget - final.spent < 40  # the budget was contended to its end, not left idle
    assert len(samples) > 10


def test_async_clients_race_for_the_last_of_a_budget(redis_server: str) -> None:
    import redis.asyncio as aioredis

    async def main() -> tuple[int, list[int]]:
        pool = aioredis.BlockingConnectionPool.from_url(redis_server, max_connections=32)
        client = aioredis.Redis(connection_pool=pool)
        store = AsyncBudgetStore(client, tenant="arace", hold_ms=60_000)
        await store.set_budget("c", 1_000, reset_spend=True)

        async def bidder(i: int) -> int:
            r = await store.reserve("c", f"a{i}", 7)
            if r.ok:
                await store.win("c", f"a{i}", 7)
                return 7
            return 0

        paid = await asyncio.gather(*(bidder(i) for i in range(500)))
        state = await store.state("c")
        await client.aclose()
        return state.spent, list(paid)

    spent, paid = asyncio.run(main())
    assert spent == sum(paid) == 7 * (1_000 // 7)  # exactly 142 bids fit, none more


def test_observe_creates_a_period_budget_once_counts_requests_and_expires(store: BudgetStore,
                                                                         redis_client: Any) -> None:
    expire_ms = int((time.time() + 3600) * 1000)
    s = store.observe("camp.0", 5, 1_000, expire_ms)  # a new period: created at the config's budget
    assert (s.budget, s.spent, s.reserved, s.seen) == (1_000, 0, 0, 5)
    assert store.reserve("camp.0", "b1", 300).status == "held"
    store.set_budget("camp.0", 800)  # an operator's change mid-period
    s = store.observe("camp.0", 2, 1_000, expire_ms)  # never overwritten by a replica's config
    assert (s.budget, s.reserved, s.seen) == (800, 300, 7)
    assert store.state("camp.0").seen == 7
    keys = store.keys("camp.0")
    for key in (keys.budget, keys.pending):
        assert 3500 < redis_client.pttl(key) / 1000 <= 3600  # the period's keys do not outlive it for long
    with pytest.raises(ValueError, match="seen"):
        store.observe("camp.0", -1, 1_000, expire_ms)


def test_notices_in_one_pipeline_match_single_calls(store: BudgetStore) -> None:
    store.set_budget("n", 100)
    for bid_id in ("w1", "w2", "l1"):
        assert store.reserve("n", bid_id, 20).status == "held"
    out = store.notices([("n", "w1", 15), ("n", "l1", None), ("n", "w1", 15), ("n", "never", 3), ("n", "w2", 25)])
    assert out == ["won", "lost", "duplicate", "unheld", "over_hold"]
    s = store.state("n")
    assert (s.spent, s.reserved, s.late_wins) == (15 + 3 + 25, 0, 2)


def test_async_notices_and_observe(redis_server: str) -> None:
    import redis.asyncio as aioredis

    async def main() -> tuple[list[str], Any]:
        client = aioredis.Redis.from_url(redis_server)
        store = AsyncBudgetStore(client, tenant="anote", hold_ms=60_000)
        await store.observe("c.3", 1, 50, int((time.time() + 60) * 1000))
        assert (await store.reserve("c.3", "x", 30)).status == "held"
        assert (await store.reserve("c.3", "y", 30, partial=True)).amount == 20
        out = await store.notices([("c.3", "x", 12), ("c.3", "y", None)])
        state = await store.state("c.3")
        await client.aclose()
        return out, state

    out, state = asyncio.run(main())
    assert out == ["won", "lost"]
    assert (state.budget, state.spent, state.reserved, state.seen) == (50, 12, 0, 1)
