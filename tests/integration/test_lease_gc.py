"""The lease, the fenced pointer flip and namespace GC against a real redis-server."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from store import gc, keys
from store.lease import FencedOut, Lease, LeaseError, lease_key

pytestmark = pytest.mark.integration


def _namespace(client: Any, table: str, version: str, tenant: str = "default", rows: int = 5,
               created: float | None = None) -> None:
    pipe = client.pipeline(transaction=False)
    gc.register(pipe, table, version, tenant, created)
    for i in range(rows):
        pipe.set(keys.entity_key(table, version, f"s{i}", tenant), "0.5", ex=600)
    pipe.set(keys.meta_key(table, version, tenant), "{}", ex=600)
    pipe.execute()


def _ns_keys(client: Any, table: str, version: str, tenant: str = "default") -> int:
    return len(list(client.scan_iter(match=keys.namespace(table, version, tenant) + ":*")))


def test_one_holder_at_a_time_and_tokens_grow(redis_client: Any) -> None:
    a, b = Lease(redis_client, owner="a"), Lease(redis_client, owner="b")
    assert a.acquire() and not b.acquire()
    with pytest.raises(LeaseError, match="held by a"):
        b.acquire_or_raise()
    a.release()
    assert b.acquire() and b.token is not None and a.token is None
    assert b.token > 1


def test_waiting_acquire_gets_the_lease_when_it_expires(redis_client: Any) -> None:
    a, b = Lease(redis_client, owner="a", ttl_ms=1000), Lease(redis_client, owner="b", ttl_ms=1000)
    assert a.acquire()
    t0 = time.monotonic()
    assert b.acquire(wait_s=5, poll_s=0.1)  # a never renews: its lease runs out
    assert 0.5 < time.monotonic() - t0 < 3


def test_renewal_keeps_the_lease_past_its_ttl(redis_client: Any) -> None:
    with Lease(redis_client, owner="a", ttl_ms=1000) as a:
        time.sleep(2.0)
        assert not Lease(redis_client, owner="b").acquire()
        a.check()
        a.flip("score", "default", "v1.r1")
    assert redis_client.get(lease_key()) is None  # released on exit


def test_a_run_that_lost_its_lease_cannot_move_the_pointer_back(redis_client: Any) -> None:
    old = Lease(redis_client, owner="old", ttl_ms=1000)
    assert old.acquire()
    assert old.flip("recs", "default", "v1.rold") is None
    redis_client.delete(lease_key())  # the old run stalls past its ttl (a long pause)
    new = Lease(redis_client, owner="new", ttl_ms=5000)
    assert new.acquire() and new.token > old.token  # type: ignore[operator]
    assert new.flip("recs", "default", "v2.rnew") == "v1.rold"
    with pytest.raises(FencedOut, match="held by new"):
        old.flip("recs", "default", "v1.rold-again")  # wakes up and tries
    assert old.lost
    assert redis_client.get(keys.pointer_key("recs")) == b"v2.rnew"
    # even holding the lease again later, an older token never flips over a newer one
    new.release()
    redis_client.set(lease_key(), f"old|{old.token}", px=5000)
    with pytest.raises(FencedOut, match="newer run"):
        old.flip("recs", "default", "v1.rold-again")
    assert redis_client.get(keys.pointer_key("recs")) == b"v2.rnew"
    assert redis_client.get(keys.previous_key("recs")) == b"v1.rold"


def test_two_racing_publishers_never_interleave(redis_client: Any) -> None:
    """Two loops each try to take the lease and flip 20 times; every flip is by the holder."""
    flips: list[tuple[str, int]] = []
    errors: list[BaseException] = []

    def loop(name: str) -> None:
        lease = Lease(redis_client, owner=name, ttl_ms=2000)
        try:
            for i in range(20):
                if lease.acquire(wait_s=5, poll_s=0.01):
                    lease.flip("score", "default", f"v{i}.r{name}")
                    flips.append((name, lease.token))  # type: ignore[arg-type]
                    lease.release()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=loop, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(flips) == 40
    tokens = [t for _, t in flips]
    assert len(set(tokens)) == 40  # each flip under its own lease
    last = int(redis_client.get(keys.pointer_fence_key("score")))
    assert last == max(tokens)


def test_gc_keeps_live_previous_and_young_namespaces(redis_client: Any) -> None:
    lease = Lease(redis_client, owner="gc")
    assert lease.acquire()
    now = time.time()
    for i in range(4):
        _namespace(redis_client, "score", f"v{i}.r1", created=now - 1000 + i)
        lease.flip("score", "default", f"v{i}.r1", now=now - 1000 + i)
    _namespace(redis_client, "score", "dead.r1", created=now - 1000)  # a killed run's partial namespace
    _namespace(redis_client, "score", "young.r1", created=now - 5)  # a run writing right now
    _namespace(redis_client, "recs", "v0.r1", tenant="acme", created=now - 1000)
    lease.flip("recs", "acme", "v0.r1")
    report = gc.collect(redis_client, grace_s=60, now=now, batch=2)
    assert sorted(report.deleted) == ["default/score/dead.r1", "default/score/v0.r1", "default/score/v1.r1"]
    assert report.deleted_keys == 3 * 6 and report.waiting == 1
    for v, alive in (("v0.r1", False), ("v1.r1", False), ("v2.r1", True), ("v3.r1", True), ("dead.r1", False),
                     ("young.r1", True)):
        assert (_ns_keys(redis_client, "score", v) == 6) is alive, v
    assert _ns_keys(redis_client, "recs", "v0.r1", "acme") == 6
    index = {m.decode() for m in redis_client.zrange(keys.index_key("score"), 0, -1)}
    assert index == {"v2.r1", "v3.r1", "young.r1"}
    # the retired namespace's grace runs from its flip: v2 stopped being live just now
    assert gc.collect(redis_client, grace_s=60, now=now).deleted == []


def test_a_served_namespace_is_never_deleted(redis_client: Any) -> None:
    lease = Lease(redis_client, owner="gc")
    assert lease.acquire()
    _namespace(redis_client, "recs", "v1.r1", tenant="a")
    lease.flip("recs", "a", "v1.r1")
    with pytest.raises(gc.NamespaceServed):
        gc.delete_namespace(redis_client, "recs", "v1.r1", "a", batch=2)
    assert _ns_keys(redis_client, "recs", "v1.r1", "a") == 6
