"""Exclusive runs: a lease in Redis with a fencing token, and the fenced pointer flip.

A publisher (the refresh loop, or a hand-run ``jobs.precompute``) takes the lease with
``SET key value NX PX ttl`` and gets a fencing token, a number from ``INCR`` that only
grows. While it works, a background thread renews the lease every ``ttl / 3``. Every
pointer flip runs as one Lua script that checks, inside Redis and atomically:

1. the lease is still held by this run (same owner and token), and
2. the token is not lower than the token of the run that last flipped this pointer.

So two loops, or a loop and a hand-run job, never publish over each other, and a run that
lost its lease (a long GC pause, a network partition, a process frozen by ``kill -STOP``)
can never move a pointer back to its older namespace, even if it wakes up and tries.

Keys (all under the ``tandem`` prefix; a standalone Redis, as ``cluster/local.py`` runs)::

    tandem:lease:{name}                 -> "{owner}|{token}"   (PX ttl)
    tandem:lease:{name}:fence           -> last token handed out (INCR)
    tandem:{tenant}:ptrfence:{table}    -> token of the run that last flipped the pointer
    tandem:{tenant}:ptrprev:{table}     -> the namespace the pointer held before (kept by GC)
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from store import keys

logger = logging.getLogger(__name__)

DEFAULT_NAME = "refresh"
DEFAULT_TTL_MS = 60_000

_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local token = redis.call('INCR', KEYS[2])
  redis.call('SET', KEYS[1], ARGV[1] .. '|' .. token, 'PX', ARGV[2])
  return token
end
return false
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: pointer, pointer fence, lease, previous pointer, namespace index
# ARGV: new version, token, lease value, now (unix s)
_FLIP = """
local holder = redis.call('GET', KEYS[3])
if holder ~= ARGV[3] then
  return {-1, holder}
end
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[2]) < last then
  return {-2, tostring(last)}
end
local old = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[4], ARGV[1])
if old and old ~= ARGV[1] then
  redis.call('SET', KEYS[4], old)
  redis.call('ZADD', KEYS[5], ARGV[4], old)
end
return {1, old}
"""


class LeaseError(RuntimeError):
    """The lease is held by another run, or was lost; the message names the holder."""


class FencedOut(LeaseError):
    """A pointer flip was refused: the lease is no longer ours, or a newer run already flipped."""


def lease_key(name: str = DEFAULT_NAME) -> str:
    return f"{keys.PREFIX}:lease:{name}"


def fence_key(name: str = DEFAULT_NAME) -> str:
    return f"{lease_key(name)}:fence"


def default_owner() -> str:
    """``host:pid:random``: who holds a lease, for logs and errors."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class Holder:
    owner: str
    token: int
    ttl_ms: int


class Lease:
    """One run's claim on the publication rights; use as a context manager or call the methods.

    ``acquire`` returns False when another run holds the lease; ``wait_s`` retries until then.
    ``start_renewing`` keeps it alive from a daemon thread; ``lost`` turns true when a
    renewal finds the lease gone or taken (the fenced flip refuses this run from then on).
    """

    def __init__(self, client: Any, name: str = DEFAULT_NAME, ttl_ms: int = DEFAULT_TTL_MS,
                 owner: str | None = None):
        if ttl_ms < 1000:
            raise ValueError(f"lease ttl_ms must be >= 1000, got {ttl_ms}")
        self.client, self.name, self.ttl_ms = client, name, ttl_ms
        self.owner = (owner or default_owner()).replace("|", "_")
        self.token: int | None = None
        self.lost = False
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._flip = client.register_script(_FLIP)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def value(self) -> str:
        if self.token is None:
            raise LeaseError(f"lease {self.name!r} is not held by {self.owner}")
        return f"{self.owner}|{self.token}"

    def holder(self) -> Holder | None:
        """Who holds the lease now (any run), or None."""
        raw = self.client.get(lease_key(self.name))
        if raw is None:
            return None
        owner, _, token = (raw.decode() if isinstance(raw, bytes) else raw).rpartition("|")
        return Holder(owner, int(token or 0), int(self.client.pttl(lease_key(self.name))))

    def acquire(self, wait_s: float = 0.0, poll_s: float = 0.5) -> bool:
        deadline = time.monotonic() + wait_s
        while True:
            token = self._acquire(keys=[lease_key(self.name), fence_key(self.name)], args=[self.owner, self.ttl_ms])
            if token:
                self.token, self.lost = int(token), False
                logger.info("lease %s acquired by %s (token %d, ttl %d ms)", self.name, self.owner, self.token,
                            self.ttl_ms)
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll_s)

    def acquire_or_raise(self, wait_s: float = 0.0) -> Lease:
        if not self.acquire(wait_s):
            held = self.holder()
            who = f"{held.owner} (token {held.token}, {held.ttl_ms / 1000:.0f} s left)" if held else "another run"
            raise LeaseError(f"lease {lease_key(self.name)} is held by {who}; another refresh loop or "
                             "publishing job is running")
        return self

    def renew(self) -> bool:
        """Extend the lease; False (and ``lost``) when it is no longer ours."""
        if self.token is None:
            return False
        ok = bool(self._renew(keys=[lease_key(self.name)], args=[self.value, self.ttl_ms]))
        if not ok and not self.lost:
            self.lost = True
            logger.error("lease %s lost by %s (token %d): another run may publish now", self.name, self.owner,
                         self.token)
        return ok

    def release(self) -> None:
        self.stop_renewing()
        if self.token is not None:
            try:
                self._release(keys=[lease_key(self.name)], args=[self.value])
            except Exception:  # noqa: BLE001 - the TTL frees it anyway
                logger.warning("lease %s: release failed; it expires in %d ms", self.name, self.ttl_ms)
            self.token = None

    def start_renewing(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew_loop, name=f"lease-{self.name}", daemon=True)
        self._thread.start()

    def stop_renewing(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl_ms / 3000.0):
            try:
                if not self.renew():
                    return
            except Exception as exc:  # noqa: BLE001 - a Redis blip: try again next period
                logger.warning("lease %s: renewal failed (%s); retrying", self.name, exc)

    def check(self) -> None:
        """Raise ``LeaseError`` when this run no longer holds the lease (call between steps)."""
        if self.lost or self.token is None:
            raise LeaseError(f"lease {self.name!r} lost by {self.owner}; stopping this run")

    def flip(self, table: str, tenant: str, version: str, now: float | None = None) -> str | None:
        """Point readers of ``table`` for ``tenant`` at ``version``; returns the previous version.

        Raises ``FencedOut`` when the lease is not ours or a newer run already flipped."""
        code, detail = self._flip(
            keys=[keys.pointer_key(table, tenant), keys.pointer_fence_key(table, tenant), lease_key(self.name),
                  keys.previous_key(table, tenant), keys.index_key(table, tenant)],
            args=[version, self.token if self.token is not None else -1, self.value if self.token else "",
                  now if now is not None else time.time()])
        text = detail.decode() if isinstance(detail, bytes) else detail
        if code == -1:
            self.lost = True
            raise FencedOut(f"flip of {table} for tenant {tenant} to {version} refused: the lease is held by "
                            f"{text or 'nobody'}, not {self.value}")
        if code == -2:
            raise FencedOut(f"flip of {table} for tenant {tenant} to {version} refused: a newer run (token "
                            f"{text}) already flipped it; this run has token {self.token}")
        return text

    def __enter__(self) -> Lease:
        if self.token is None:
            self.acquire_or_raise()
        self.start_renewing()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
