"""Drive the LIVE app with synthetic visitors who know the truth (the library of ``jobs.simulate``).

Each visitor is one session of ``models.experiments.simulator.VisitorModel``: an affinity ``a``,
``1 + Poisson(pages - 1)`` pages. On each page it asks ``POST /v1/recommend`` and reads the
response's ``experiment``, ``variant`` and items; the quality of what it was shown is

    q = (1 + true_lift[variant]) * list_quality(appeal of the shown items)

(``true_lift`` per variant name is the configured truth; with ``appeal_spread`` 0, the default,
every item has appeal 1 and ``q`` is exactly ``1 + true_lift``). A page is clicked with
``ctr * sqrt(a) * q``: the click is a ``view`` event of a shown item, position-weighted, sent
to ``POST /v1/events``. The session converts with ``conversion * a * mean(q)`` and then sends
``1 + Poisson(extra_orders)`` ``purchase`` events with a log-normal order value as the price.
So the true relative conversion lift of a variant is exactly ``true_lift[variant]``, and the
KPI report's estimate can be checked against it.

Requests run concurrently (``concurrency`` sessions in flight, optionally capped at ``rps``).
Every answer is counted by status; a 503 or 429 (retryable: the app could not store the events
now) is retried after its ``Retry-After``, so nothing the simulator means to send is lost. The
result says how many sessions each variant got, what was sent, and every status seen.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from models.experiments.simulator import VisitorModel, list_quality

logger = logging.getLogger(__name__)

RETRYABLE = (429, 503)
TRANSPORT_ERROR = 599  # counted under this code: no answer (connection refused or reset, timeout)


class SimulateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(..., description="base URL of the app, e.g. http://127.0.0.1:8000")
    api_key: str = Field(..., min_length=1)
    sessions: int = Field(1000, ge=1)
    concurrency: int = Field(16, ge=1, le=1024)
    rps: float | None = Field(None, gt=0, description="cap on new sessions per second (None: as fast as it goes)")
    k: int = Field(10, ge=1, le=200, description="items asked for per page")
    true_lift: dict[str, float] = Field(default_factory=dict,
                                        description="true relative lift per variant name (others: 0)")
    appeal_spread: float = Field(0.0, ge=0.0, lt=2.0, description="item appeal in 1 +- spread/2 (0: all equal)")
    conversion: float = Field(0.04, gt=0, lt=1)
    ctr: float = Field(0.08, gt=0, lt=1)
    pages: float = Field(3.0, ge=1)
    seed: int = 0
    session_prefix: str = Field("sim", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,40}$")
    timeout_s: float = Field(10.0, gt=0)
    max_retries: int = Field(20, ge=0)


@dataclass
class SimulateResult:
    sessions: int = 0
    seconds: float = 0.0
    by_variant: dict[str, dict[str, float]] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)   # "endpoint status" -> count
    retries: int = 0
    failed: int = 0   # requests given up on (after retries, or not retryable)
    experiments: list[str] = field(default_factory=list)
    timeline: list[tuple[float, str, int]] = field(default_factory=list)  # (unix time, endpoint, status): 5xx

    @property
    def server_errors(self) -> int:
        """Answers with a 5xx status (503 included, retried or not); transport errors are apart."""
        return sum(n for k, n in self.statuses.items() if 500 <= int(k.split()[-1]) < TRANSPORT_ERROR)

    @property
    def transport_errors(self) -> int:
        return sum(n for k, n in self.statuses.items() if int(k.split()[-1]) == TRANSPORT_ERROR)

    def to_dict(self) -> dict[str, Any]:
        return {"sessions": self.sessions, "seconds": round(self.seconds, 2), "by_variant": self.by_variant,
                "statuses": self.statuses, "retries": self.retries, "failed": self.failed,
                "server_errors_5xx": self.server_errors, "transport_errors": self.transport_errors,
                "experiments": self.experiments}


def item_appeal(item_id: str, spread: float) -> float:
    """A fixed appeal per item id in ``1 +- spread/2`` (hash of the id: the same on every run)."""
    if spread == 0:
        return 1.0
    u = int.from_bytes(hashlib.blake2b(item_id.encode(), digest_size=4).digest(), "little") / 2**32
    return 1.0 + spread * (u - 0.5)


class Simulator:
    """Runs ``cfg.sessions`` visitors against the app; ``run()`` returns a ``SimulateResult``."""

    def __init__(self, cfg: SimulateConfig, client: Any = None):
        self.cfg = cfg
        self.model = VisitorModel(conversion=cfg.conversion, ctr=cfg.ctr, pages=cfg.pages)
        self.rng = np.random.default_rng(cfg.seed)
        self._client = client
        self.result = SimulateResult()
        self._sums: dict[str, dict[str, float]] = {}
        self._started = 0.0
        self._stop = False

    def stop(self) -> None:
        """Finish the sessions in flight and start no new ones."""
        self._stop = True

    async def run(self) -> SimulateResult:
        import httpx

        t0 = time.perf_counter()
        self._started = time.monotonic()
        own = self._client is None
        client = self._client or httpx.AsyncClient(
            base_url=self.cfg.url, timeout=self.cfg.timeout_s,
            limits=httpx.Limits(max_connections=self.cfg.concurrency, max_keepalive_connections=self.cfg.concurrency))
        queue: asyncio.Queue[int | None] = asyncio.Queue()
        for i in range(self.cfg.sessions):
            queue.put_nowait(i)
        for _ in range(self.cfg.concurrency):
            queue.put_nowait(None)
        try:
            await asyncio.gather(*(self._worker(client, queue) for _ in range(self.cfg.concurrency)))
        finally:
            if own:
                await client.aclose()
        r = self.result
        r.seconds = time.perf_counter() - t0
        r.by_variant = {v: dict(c) for v, c in sorted(self._sums.items())}
        for v, c in r.by_variant.items():
            c["true_lift"] = self.cfg.true_lift.get(v, 0.0)
        return r

    async def _worker(self, client: Any, queue: asyncio.Queue[int | None]) -> None:
        while (i := await queue.get()) is not None:
            if self._stop:
                continue
            if self.cfg.rps:
                wait = self._started + i / self.cfg.rps - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            await self.session(client, i)

    async def _post(self, client: Any, endpoint: str, body: dict[str, Any]) -> dict[str, Any] | None:
        r = self.result
        for attempt in range(self.cfg.max_retries + 1):
            try:
                resp = await client.post(f"/v1/{endpoint}", json=body, headers={"X-API-Key": self.cfg.api_key})
                status = resp.status_code
            except Exception as exc:  # noqa: BLE001 - a transport error is counted like a status
                status, resp = TRANSPORT_ERROR, None
                logger.debug("%s: %s", endpoint, exc)
            key = f"{endpoint} {status}"
            r.statuses[key] = r.statuses.get(key, 0) + 1
            if status >= 500:
                r.timeline.append((time.time(), endpoint, status))
            if status == 200 and resp is not None:
                return resp.json()  # type: ignore[no-any-return]
            if (status in RETRYABLE or status == TRANSPORT_ERROR) and attempt < self.cfg.max_retries:
                r.retries += 1
                retry_after = float(resp.headers.get("Retry-After", 1)) if resp is not None else 0.5
                await asyncio.sleep(min(retry_after, 5.0))
                continue
            break
        r.failed += 1
        return None

    async def session(self, client: Any, i: int) -> None:
        cfg, model, rng = self.cfg, self.model, self.rng
        sid = f"{cfg.session_prefix}-{cfg.seed}-{i}"
        a = float(model.affinity(1, rng)[0])
        pages = 1 + int(rng.poisson(cfg.pages - 1))
        qualities: list[float] = []
        shown: list[str] = []
        variant = "none"
        for _ in range(pages):
            rec = await self._post(client, "recommend", {"session_id": sid, "k": cfg.k})
            if rec is None:
                continue
            variant = rec.get("variant") or "none"
            if rec.get("experiment") and rec["experiment"] not in self.result.experiments:
                self.result.experiments.append(rec["experiment"])
            items = [it["item_id"] for it in rec.get("items", [])]
            q = self.quality(variant, items)
            qualities.append(q)
            shown.extend(items)
            self._count(variant, "exposures")
            if items and rng.random() < min(1.0, cfg.ctr * math.sqrt(a) * q):
                w = 0.85 ** np.arange(len(items))
                item = items[int(rng.choice(len(items), p=w / w.sum()))]
                if await self._event(client, sid, item, "view"):
                    self._count(variant, "clicks")
        if not qualities:
            return
        self.result.sessions += 1
        self._count(variant, "sessions")
        q_mean = float(np.mean(qualities))
        if rng.random() < min(1.0, cfg.conversion * a * q_mean):
            self._count(variant, "converted")
            mu = math.log(model.order_value_mean) - model.order_value_sigma ** 2 / 2
            for _ in range(1 + int(rng.poisson(model.extra_orders))):
                value = round(float(rng.lognormal(mu, model.order_value_sigma)), 2)
                item = shown[int(rng.integers(len(shown)))] if shown else "sim-item"
                if await self._event(client, sid, item, "purchase", value):
                    self._count(variant, "orders")
                    self._count(variant, "revenue", value)

    def quality(self, variant: str, items: list[str]) -> float:
        base = 1.0 + self.cfg.true_lift.get(variant, 0.0)
        if self.cfg.appeal_spread and items:
            appeal = np.array([item_appeal(i, self.cfg.appeal_spread) for i in items])
            base *= float(list_quality(appeal, np.arange(len(items))[None, :], 1.0)[0])
        return float(np.clip(base, 0.0, self.model.max_quality))

    async def _event(self, client: Any, sid: str, item: str, event_type: str, price: float | None = None) -> bool:
        event: dict[str, Any] = {"item_id": item, "event_type": event_type,
                                 "event_time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
        if price is not None:
            event["price"] = price
        return await self._post(client, "events", {"session_id": sid, "events": [event]}) is not None

    def _count(self, variant: str, what: str, n: float = 1.0) -> None:
        sums = self._sums.setdefault(variant, {})
        sums[what] = sums.get(what, 0.0) + n


def simulate(cfg: SimulateConfig) -> SimulateResult:
    return asyncio.run(Simulator(cfg).run())
