"""Faults under load on the default deployment: Redis hung, killed and restarted; a replica killed.

Clients behave as the API tells them: a 503 with Retry-After on /v1/events means "send this batch
again" (same batch_id), and a connection closed before any answer means "send it again" too (every
endpoint is safe to repeat: score and recommend read, a batch with a batch_id is stored once). The
second happens when HAProxy reloads after a replica died: a request racing the old process closing
its idle client connections gets no answer at all. Such retries are counted, not hidden. The checks: no 5xx other than those retryable 503s on /v1/events, every
batch acknowledged at last, and every acknowledged batch in the event stream exactly once (those
acknowledged after Redis came back: the kill takes what an un-persisted Redis held with it).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.chaos.conftest import Stack, _publish_popular

TENANTS = ("default", "acme", "bolt")


@dataclass
class Load:
    stack: Stack
    stop: threading.Event = field(default_factory=threading.Event)
    codes: Counter = field(default_factory=Counter)          # (endpoint, status) -> n
    acked: dict[str, float] = field(default_factory=dict)    # batch_id -> time it was acknowledged
    unretryable: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)           # what each failure was, for the message
    seq: Iterator[int] = field(default_factory=itertools.count)
    lock: threading.Lock = field(default_factory=threading.Lock)
    started: float = field(default_factory=time.time)

    def reads(self, path: str, tenant: str) -> None:
        with httpx.Client(timeout=10) as c:
            for i in itertools.count():
                if self.stop.is_set():
                    return
                body = {"session_id": f"f{i % 50}", "k": 5} if path == "/v1/recommend" else {"session_id": f"f{i % 50}"}
                self._record(path, self._post(c, path, tenant, body))

    def events(self, tenant: str) -> None:
        with httpx.Client(timeout=10) as c:
            while not self.stop.is_set():
                with self.lock:
                    batch = f"{tenant}-{next(self.seq)}"
                body = {"session_id": f"f{len(batch) % 50}", "batch_id": batch,
                        "events": [{"item_id": "x1"}, {"item_id": "x2", "event_type": "cart"}]}
                for _attempt in range(120):                    # the client keeps the batch until stored
                    r = self._post(c, "/v1/events", tenant, body)
                    self._record("/v1/events", r)
                    if r is not None and r.status_code == 200:
                        self.acked[batch] = time.time()
                        break
                    if r is not None and r.status_code == 503:
                        if "retry-after" not in r.headers:
                            self.unretryable.append(f"503 without Retry-After: {r.text[:200]}")
                        time.sleep(min(float(r.headers.get("retry-after", "1")), 1.0) / 4)
                        continue
                    if r is not None:
                        self.unretryable.append(f"{r.status_code}: {r.text[:200]}")
                        break
                    time.sleep(0.1)                              # a connection error: retry it too

    def _post(self, c: httpx.Client, path: str, tenant: str, body: dict) -> httpx.Response | None:
        t0 = time.time()
        try:
            try:
                r = c.post(f"{self.stack.url}{path}", json=body, headers=self.stack.headers(tenant))
            except httpx.RemoteProtocolError:          # closed before any answer: send it again, once
                self.codes[(path, "resent_after_close")] += 1
                r = c.post(f"{self.stack.url}{path}", json=body, headers=self.stack.headers(tenant))
        except httpx.HTTPError as exc:
            self.errors.append(f"{path}: {type(exc).__name__} after {time.time() - t0:.2f}s at {t0:.2f}: {exc}")
            return None
        if r.status_code >= 500:
            self.errors.append(f"{path}: {r.status_code} at {t0:.2f}: {r.text[:200]}")
        return r

    def _record(self, path: str, r: httpx.Response | None) -> None:
        self.codes[(path, r.status_code if r is not None else "connection_error")] += 1


@contextmanager
def load(stack: Stack) -> Iterator[Load]:
    state = Load(stack)
    threads = [threading.Thread(target=state.reads, args=(p, t)) for p in ("/v1/score", "/v1/recommend")
               for t in TENANTS[:2]]
    threads += [threading.Thread(target=state.events, args=(t,)) for t in TENANTS]
    for t in threads:
        t.start()
    try:
        yield state
    finally:
        state.stop.set()
        for t in threads:
            t.join(timeout=120)


def _stream_batches(stack: Stack) -> Counter:
    import redis

    from store import keys

    client = redis.Redis.from_url(stack.cfg.redis_url)
    try:
        seen: Counter = Counter()        # batch id -> events of it in the stream (2 a batch)
        for tenant in TENANTS:
            for _id, fields in client.xrange(keys.events_stream_key(tenant)):
                assert json.loads(fields[b"event"])["item_id"] in ("x1", "x2")
                seen[fields[b"batch_id"].decode()] += 1
        return seen
    finally:
        client.close()


def _failures(state: Load) -> dict:
    return {k: n for k, n in state.codes.items() if k[1] == "connection_error" or
            (isinstance(k[1], int) and k[1] >= 500 and not (k[0] == "/v1/events" and k[1] == 503))}


def _explain(state: Load) -> str:
    """The answers, the first client-side failures and HAProxy's own log of every 5xx (which side sent it)."""
    log = state.stack.ingress_log
    proxy = log.since(state.started) if log is not None else ["(no HAProxy log)"]
    replica_errors = []   # and what the replicas logged as errors (an app 500 leaves a traceback there)
    for f in sorted(Path(state.stack.cfg.ray_temp_dir).glob("session_latest/logs/serve/replica_*.log")):
        replica_errors += [f"{f.name}: {line.strip()[:300]}" for line in f.read_text(errors="replace").splitlines()
                           if " ERROR " in line or "Traceback" in line]
    return (f"{dict(state.codes)}\nclient: {[e for e in state.errors if 'not stored' not in e][:10]}\n"
            f"HAProxy 5xx (status, termination state; S = the server side ended it): {proxy[:20]}\n"
            f"replica errors: {replica_errors[-20:]}")


def test_redis_hung_killed_and_restarted_under_load(stack: Stack) -> None:
    from cluster.local import STACK_ENV, stack_id, start_redis

    pid_file = stack.cfg.run_dir / "redis.pid"
    with load(stack) as state:
        time.sleep(3)
        pid = int(pid_file.read_text())
        os.killpg(pid, signal.SIGSTOP)                          # hung: accepts, answers nothing
        time.sleep(3)
        os.killpg(pid, signal.SIGCONT)
        time.sleep(2)
        os.killpg(pid, signal.SIGKILL)                          # killed
        killed_at = time.time()
        time.sleep(3)
        start_redis(stack.cfg.redis_port, stack.cfg.run_dir / "redis", pid_file,
                    env={**os.environ, STACK_ENV: stack_id(stack.cfg)})
        _publish_popular(stack.cfg.redis_url)
        time.sleep(6)
    print(f"\nredis hung/killed/restarted: {dict(state.codes)}")
    assert _failures(state) == {}, _explain(state)
    assert state.unretryable == []
    assert state.codes[("/v1/events", 503)] > 0, state.codes    # the fault was felt, and said so
    assert state.codes[("/v1/score", 200)] > 0 and state.codes[("/v1/recommend", 200)] > 0
    # every batch was acknowledged at last (the clients retried the 503s) ...
    assert len(state.acked) >= 10
    # ... and each one acknowledged after the restart is in the stream, once (2 events a batch)
    after = [b for b, t in state.acked.items() if t > killed_at + 3]
    assert after, "no batch was stored after Redis came back"
    stream = _stream_batches(stack)
    assert {b: stream[b] for b in after} == {b: 2 for b in after}     # there, and once
    assert max(stream.values()) == 2


def test_a_replica_killed_under_load(stack: Stack) -> None:
    from cluster.local import HAPROXY_RETRY_ON, stack_id, tagged_pids

    configs = list(Path(stack.cfg.haproxy_dir).rglob("*.cfg"))
    assert configs and all(f"retry-on {HAPROXY_RETRY_ON}" in c.read_text() for c in configs), configs
    running = list(Path(stack.cfg.haproxy_dir).rglob("*.cfg.tandem"))    # what HAProxy runs (the launcher's)
    assert running and all("option http-buffer-request" in c.read_text() for c in running), running
    replicas = [p for p in tagged_pids(stack_id(stack.cfg))
                if open(f"/proc/{p}/comm").read().strip().startswith("ray::ServeRepli")]
    assert len(replicas) == 2, replicas
    with load(stack) as state:
        time.sleep(3)
        os.kill(replicas[0], signal.SIGKILL)
        killed_at = time.time()
        print(f"killed replica {replicas[0]} at {killed_at:.2f}")
        time.sleep(15)                                          # Serve replaces it meanwhile
    assert stack.ingress_log is not None and stack.ingress_log.lines > 0   # HAProxy's log reached the test
    print(f"\nreplica killed: {dict(state.codes)}; HAProxy sent {stack.ingress_log.retried(killed_at - 1)} "
          "requests again to the other replica")
    assert _failures(state) == {}, _explain(state)
    assert state.unretryable == []
    assert state.codes[("/v1/score", 200)] > 0 and state.codes[("/v1/events", 200)] > 0
    stream = _stream_batches(stack)
    during = [b for b, t in state.acked.items() if t > killed_at]
    assert {b: stream[b] for b in during} == {b: 2 for b in during}  # HAProxy's retries stored nothing twice
    deadline = time.time() + 90
    while time.time() < deadline:                               # and the deployment heals itself
        alive = [p for p in tagged_pids(stack_id(stack.cfg))
                 if open(f"/proc/{p}/comm").read().strip().startswith("ray::ServeRepli")]
        if len(alive) == 2:
            break
        time.sleep(1)
    assert len(alive) == 2
