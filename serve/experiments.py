"""A replica's live A/B experiments: assignment on every request, variant policies, hot reload.

**Hot reload: a periodic re-read of the store, off the request path.** Each replica polls the
experiment store (``store.experiments``: one small ``current.json`` per tenant, next to the
models) every ``poll_s`` seconds in a background task, builds the new assigners and loads any
challenger model a new config pins (in a thread, warmed up) *before* it swaps the tenant's
live experiment in one reference assignment. A request only reads that reference: no I/O, no
lock. Why not ``user_config``/``reconfigure`` like the models:

- the kill switch (``jobs.experiment kill``) and the refresh loop's guardrail rollback then
  need only write access to the registry, not the Serve controller or the dashboard API and
  its token; a rollback is one file write, taken by every replica within ``poll_s``
  (2 s by default), far inside one refresh tick;
- experiment changes and model hot swaps never race on the deployment's ``user_config``
  (the refresh loop rewrites it on every promotion);
- a new replica (autoscaling, a restart) reads the same store on start, so it can never serve
  a stale experiment that only lived in a past ``user_config``.

``reconfigure`` (a model hot swap) triggers a re-read too, so a swap and an experiment change
made together apply together.

**Variant policies.** ``popular``: the non-personalised control, popular items for
``/v1/recommend`` and the prior for ``/v1/score``. ``model``: the tenant's champions through the
usual chain (model -> precomputed -> popular). ``version``: the pinned model version (a
challenger; ``store.experiments.pinned_models`` says whether it is a recommender or a
propensity version) in place of the champion, the other model unchanged; the precomputed
step of the pinned model's endpoint is skipped (those rows are the champion's), so the chain is
model -> popular.

**Assignment** is ``models.experiments.assignment.Assigner`` (keyed BLAKE2b, ~1-3 µs): by
session, or by ``visitor_id`` for a visitor-unit experiment (a request without one is its own
visitor). An engaged kill switch (a rollback) sends everyone to control; the response still
names the experiment and ``control``, and no exposure is logged while it is engaged, so the
report covers the experiment as it ran.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from models.experiments.assignment import Assigner
from store.experiments import ExperimentStore, StoredExperiment, pinned_models

logger = logging.getLogger(__name__)

POPULAR, MODEL, VERSION = "popular", "model", "version"
B = TypeVar("B")


@dataclass(frozen=True)
class Arm:
    """One variant as a replica serves it."""

    name: str
    policy: str
    pins: dict[str, str] = field(default_factory=dict)  # model name -> pinned version

    def skips_precomputed(self, model: str) -> bool:
        return model in self.pins


@dataclass(frozen=True)
class Assignment:
    experiment: str
    variant: str
    arm: Arm
    log: bool  # log an exposure (False while the kill switch is engaged)


class LiveExperiment:
    """One tenant's experiment, ready to assign (built off the request path)."""

    __slots__ = ("stored", "experiment", "unit", "assigner", "arms", "running", "_control", "_by_name")

    def __init__(self, stored: StoredExperiment, pins: dict[str, dict[str, str]]):
        cfg = stored.config
        assert cfg is not None
        self.stored = stored
        self.experiment = cfg.experiment_id
        self.unit = cfg.unit
        self.assigner = Assigner(cfg)
        self.running = stored.running
        self.arms = {v.name: Arm(v.name, v.policy, dict(pins.get(v.name, {}))) for v in cfg.variants}
        self._by_name = {name: Assignment(self.experiment, name, arm, self.running) for name, arm in self.arms.items()}
        self._control = self._by_name[cfg.control_name]

    def assign(self, session_id: str, visitor_id: str | None = None) -> Assignment:
        unit = (visitor_id or session_id) if self.unit == "visitor" else session_id
        return self._by_name[self.assigner.assign(unit)]

    def pinned(self) -> set[tuple[str, str]]:
        return {(m, v) for arm in self.arms.values() for m, v in arm.pins.items()}

    def state(self) -> dict[str, Any]:
        cfg = self.stored.config
        assert cfg is not None
        return {"experiment": self.experiment, "revision": self.stored.revision,
                "state": "running" if self.running else "rolled_back",
                "reason": cfg.kill_switch.reason if cfg.kill_switch.engaged else None,
                "variants": {a.name: a.policy if not a.pins else f"version {','.join(a.pins.values())}"
                             for a in self.arms.values()}}


PinnedLoader = Callable[[str, str, str], Any]
"""(tenant, model name, version) -> a loaded and warmed-up predictor; raises when it cannot."""


class Experiments:
    """Every tenant's live experiment on this replica, re-read from the store every ``poll_s``."""

    def __init__(self, registry_uri: str, load_pinned: PinnedLoader, poll_s: float = 2.0,
                 registry_for: Callable[[str], str | Sequence[str]] | None = None):
        self.store = ExperimentStore(registry_uri)
        self.registry_uri = registry_uri
        self.poll_s = poll_s
        self._load_pinned = load_pinned
        self._registry_for: Callable[[str], str | Sequence[str]] = registry_for or (lambda tenant: registry_uri)
        self.live: dict[str, LiveExperiment] = {}
        self.models: dict[tuple[str, str, str], Any] = {}  # (tenant, model, version) -> predictor
        self.errors: dict[str, str] = {}  # tenant -> why its latest revision is not live
        self.last_poll: float = 0.0
        self._revisions: dict[str, int] = {}
        self._retry: dict[str, tuple[int, float]] = {}  # tenant -> (revision that failed, monotonic time to retry)
        self.retry_s = 30.0  # a revision that failed to apply (a broken challenger) is retried this often, not every poll
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._bundles: dict[tuple[str, str], tuple[Any, Any]] = {}  # (tenant, variant) -> (champions, variant's)

    # -- request path: dictionary reads only ------------------------------------------------
    def get(self, tenant: str) -> LiveExperiment | None:
        return self.live.get(tenant)

    def model(self, tenant: str, name: str, version: str) -> Any:
        return self.models.get((tenant, name, version))

    def assign(self, tenant: str, session_id: str, visitor_id: str | None = None) -> Assignment | None:
        """The request's experiment variant: a dictionary read and a keyed hash, no I/O. Before the
        first poll (no ``reconfigure`` yet) this starts the poller; such a request has no experiment."""
        if self._task is None:
            self.start()
        live = self.live.get(tenant)
        return live.assign(session_id, visitor_id) if live is not None else None

    def variant_bundle(self, bundle: B, tenant: str, exp: Assignment) -> B:
        """The tenant's models with the variant's pinned ones in place of the champions (cached per
        variant until the champions or the pinned models change)."""
        key = (tenant, exp.variant)
        src, found = self._bundles.get(key, (None, None))
        pins = exp.arm.pins
        if src is not bundle or found is None or any(getattr(found, n) is not self.model(tenant, n, v)
                                                     for n, v in pins.items()):
            found = copy.copy(bundle)
            for name, version in pins.items():
                setattr(found, name, self.model(tenant, name, version))
            self._bundles[key] = (bundle, found)
        return cast(B, found)

    # -- background --------------------------------------------------------------------------
    def start(self) -> None:
        """Start the poller on the running event loop (idempotent)."""
        if self._task is None or self._task.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # a synchronous caller: the next request on the loop starts it
                return
            self._task = loop.create_task(self._poll_forever())

    async def _poll_forever(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:  # noqa: BLE001 - a failed poll keeps the live experiments; the next one retries
                logger.exception("reading the experiment store %s failed", self.registry_uri)
            await asyncio.sleep(self.poll_s)

    async def refresh(self) -> list[str]:
        """Re-read the store; returns the tenants whose live experiment changed."""
        async with self._lock:
            stored = await asyncio.to_thread(self._read)
            self.last_poll = time.time()
            changed = []
            for tenant, cur in stored.items():
                if cur is None or cur.config is None:
                    if tenant in self.live:
                        del self.live[tenant]
                        changed.append(tenant)
                        logger.info("tenant %s: experiment ended (revision %s)", tenant, cur and cur.revision)
                    self._revisions[tenant] = cur.revision if cur else 0
                    self.errors.pop(tenant, None)
                    continue
                if self._revisions.get(tenant) == cur.revision:
                    continue
                failed = self._retry.get(tenant)
                if failed is not None and failed[0] == cur.revision and time.monotonic() < failed[1]:
                    continue
                try:
                    live = await asyncio.to_thread(self._build, tenant, cur)
                except Exception as exc:  # noqa: BLE001 - the old revision stays live; health says why; retried
                    error = f"revision {cur.revision}: {type(exc).__name__}: {exc}"[:500]
                    if self.errors.get(tenant) != error:
                        logger.error("tenant %s: experiment not applied, the previous one stays live: %s", tenant,
                                     error)
                    self.errors[tenant] = error
                    self._retry[tenant] = (cur.revision, time.monotonic() + self.retry_s)
                    continue
                self.live[tenant] = live  # the swap: one reference, seen by the next request
                self._revisions[tenant] = cur.revision
                self.errors.pop(tenant, None)
                changed.append(tenant)
                logger.info("tenant %s: experiment %s revision %d live (%s)", tenant, live.experiment, cur.revision,
                            "running" if live.running else f"rolled back: {cur.reason}")
            for gone in set(self.live) - set(stored):
                del self.live[gone]
                changed.append(gone)
            self._drop_unused_models()
            return changed

    def _read(self) -> dict[str, StoredExperiment | None]:
        out: dict[str, StoredExperiment | None] = {}
        for tenant in self.store.tenants():
            try:
                out[tenant] = self.store.current(tenant)
            except Exception as exc:  # noqa: BLE001 - one unreadable tenant never hides the others
                self.errors[tenant] = f"unreadable: {exc}"[:500]
                if tenant in self.live:
                    out[tenant] = self.live[tenant].stored  # keep serving what is live
        return out

    def _build(self, tenant: str, cur: StoredExperiment) -> LiveExperiment:
        """Resolve pinned versions and load their models (before the swap, never on a request)."""
        assert cur.config is not None
        pins = pinned_models(self._registry_for(tenant), cur.config) if cur.running else {}
        for arm_pins in pins.values():
            for model, version in arm_pins.items():
                if (tenant, model, version) not in self.models:
                    self.models[(tenant, model, version)] = self._load_pinned(tenant, model, version)
        return LiveExperiment(cur, pins)

    def _drop_unused_models(self) -> None:
        used = {(t, m, v) for t, live in self.live.items() for m, v in live.pinned()}
        for key in set(self.models) - used:
            del self.models[key]
            logger.info("unloaded pinned %s model %s of tenant %s", key[1], key[2], key[0])

    def health(self, tenant: str) -> dict[str, Any] | None:
        live = self.live.get(tenant)
        if live is None and tenant not in self.errors:
            return None
        out: dict[str, Any] = live.state() if live is not None else {"experiment": None, "state": "none"}
        if tenant in self.errors:
            out["error"] = self.errors[tenant]
        out["polled_s_ago"] = round(time.time() - self.last_poll, 1) if self.last_poll else None
        return out
