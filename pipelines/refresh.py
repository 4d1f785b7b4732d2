"""The scheduled refresh loop: a fast tick (features + precompute) and a slow tick (retrain, gate,
promote, hot-swap) from one typed config, run unattended for days.

Scheduling. Time is cut into slots of each cadence (``fast_every_s``, default 5 min;
``slow_every_s``, default a day, aligned to UTC midnight). When a slot has ended, the loop runs
that cadence's tick for it; the tick id is ``{cadence}-{slot start}``, so it is the same
however often the tick is retried. A tick that fails is retried after ``retry_s`` until the
next slot supersedes it (features are incremental, so the newer slot covers the older one);
a tick that overruns skips to the latest slot.

Exclusive runs. Each tick holds the Redis lease (``store.lease``): a second loop, or a
hand-run job, skips the slot (``outcome: locked``) instead of publishing over it, and every
pointer flip is fenced, so a stale run can never move a pointer back.

Idempotence and self-healing. A finished tick writes a marker with the namespaces it made
live. A retried tick whose marker exists and whose pointers and manifests are all still in
Redis is a no-op (``outcome: noop``); if Redis lost them (a flush, a restart without AOF) the
tick runs again and republishes (``republished`` in its JSON line). Every fast tick also
republishes every table, so a missing pointer heals within one cadence anyway.

Each tick ends with one JSON line on stdout (and in ``tandem:refresh:last:{cadence}``);
metrics go to Ray's Prometheus endpoint (``pipelines.loop_metrics``). ``checks`` is the list
of per-tick checks (guardrails) run after the publication.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal, TextIO

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from pipelines import ticks
from pipelines.loop_metrics import NullLoopMetrics, loop_metrics
from pipelines.precompute import Predictors
from store import keys, publish
from store.lease import Lease, LeaseError
from store.modelcache import ModelCache, pid_alive

logger = logging.getLogger(__name__)

CADENCES = ("fast", "slow")


class RefreshConfig(BaseModel):
    """One config for both cadences (``python -m jobs.refresh --config FILE``)."""

    model_config = ConfigDict(extra="forbid")

    events: str = Field(..., description="canonical events (date= partitions), local or s3://")
    features: str = Field(..., description="feature output: local (a symlink the feature job flips) or s3:// "
                          "(a _CURRENT pointer object)")
    registry: str
    redis: str
    fast_every_s: float = Field(300.0, gt=0, description="fast tick: features + precompute")
    slow_every_s: float = Field(86400.0, ge=0, description="slow tick: retrain, gate, promote, swap (0: off)")
    run: Literal["both", "fast", "slow"] = "both"
    lateness_hours: float = Field(1.0, ge=0, description="late events reprocessed by the incremental features")
    active_window_s: float = Field(3600.0, gt=0, description="precompute sessions active this close to the slot end")
    max_future_minutes: float = Field(10.0, ge=0, description="event times beyond now + this are quarantined")
    buckets: int = Field(4, ge=1, description="feature job buckets (kept from the first run)")
    tables: list[str] = Field(default_factory=lambda: list(keys.TABLES))
    ttl_cadences: float = Field(publish.DEFAULT_TTL_CADENCES, gt=1, description="row TTL = this x fast cadence")
    gc_grace_s: float = Field(120.0, ge=0, description="superseded namespaces live this long for in-flight reads")
    lease_ttl_s: float = Field(60.0, ge=1)
    lease_wait_s: float = Field(0.0, ge=0, description="wait for the lease before skipping a slot")
    retry_s: float = Field(30.0, gt=0, description="retry a failed tick after this long")
    # slow tick
    models: list[Literal["propensity", "recommender"]] = Field(
        default_factory=lambda: ["propensity", "recommender"], description="models the slow tick retrains")
    propensity_label: str = "purchased"
    time_column: str = "cutoff_time"
    holdout_fraction: float = Field(0.1, gt=0, lt=0.5)
    recommender_model: str | None = Field(None, description="default: the champion's model type, else vsknn")
    propensity_args: list[str] = Field(default_factory=list, description="extra jobs.train_propensity flags")
    recommender_args: list[str] = Field(default_factory=list, description="extra jobs.train_recommender flags")
    tolerance: float = Field(0.01, ge=0)
    psi_max: float = Field(0.25, gt=0)
    base_rate_ratio: float = Field(3.0, gt=1)
    train_timeout_s: float = Field(3600.0, gt=0)
    serve_app: str | None = Field("tandem", description="Serve app to hot-swap (None: no swap)")
    serve_address: str | None = Field(None, description="dashboard URL of the serving cluster (None: this one)")
    verify_timeout_s: float = Field(60.0, gt=0)
    experiment_logs: str | None = Field(None, description="drained experiment logs (local or s3://) for the "
                                        "guardrail check (default_checks: experiment_logs next to the events)")
    model_cache_dir: str | None = None
    work_dir: str | None = Field(None, description="parent of each tick's scratch dir (default: the temp dir)")
    clock_file: str | None = Field(None, description="simulated clock (ISO time in a file), for soaks and tests")


class Clock:
    """The wall clock."""

    def now(self) -> pd.Timestamp:
        return pd.Timestamp.now(tz="UTC")

    def sleep_until(self, when: pd.Timestamp, stop_s: float | None = None) -> None:
        time.sleep(max(0.0, min((when - self.now()).total_seconds(), stop_s if stop_s is not None else math.inf)))


class FileClock(Clock):
    """Simulated time read from a file (an ISO timestamp) that a driver advances (bench.soak)."""

    def __init__(self, path: str, poll_s: float = 0.1):
        self.path, self.poll_s = Path(path), poll_s

    def now(self) -> pd.Timestamp:
        for _ in range(50):
            try:
                now = pd.Timestamp(self.path.read_text().strip())
                if not pd.isna(now):  # an empty file (being rewritten) reads as NaT
                    return now.tz_convert("UTC")
            except (OSError, ValueError):
                pass
            time.sleep(self.poll_s)  # being rewritten
        raise RuntimeError(f"clock file {self.path} is unreadable")

    def sleep_until(self, when: pd.Timestamp, stop_s: float | None = None) -> None:
        deadline = time.monotonic() + (stop_s if stop_s is not None else math.inf)
        while self.now() < when and time.monotonic() < deadline:
            time.sleep(self.poll_s)


def last_slot(now: pd.Timestamp, every_s: float) -> pd.Timestamp:
    """Start of the latest slot of ``every_s`` that has ended at ``now`` (slots aligned to the epoch)."""
    t = now.timestamp()
    return pd.Timestamp(math.floor(t / every_s) * every_s - every_s, unit="s", tz="UTC")


def tick_id(cadence: str, slot: pd.Timestamp) -> str:
    return f"{cadence}-{slot:%Y%m%dT%H%M%S}"


def default_checks(cfg: RefreshConfig) -> list[ticks.Check]:
    """The per-tick checks of ``python -m jobs.refresh``: experiment guardrails (drain, evaluate, roll
    back; logs from ``experiment_logs``, default ``experiment_logs`` next to the events) and PSI
    drift of the propensity champion over the sessions of the active window."""
    from pipelines.drift import DriftCheck
    from pipelines.experiment_checks import ExperimentCheck

    logs = cfg.experiment_logs or f"{cfg.events.rstrip('/').rsplit('/', 1)[0]}/experiment_logs"
    return [ExperimentCheck(cfg.registry, logs, cfg.redis),
            DriftCheck(cfg.registry, cfg.features, window_s=cfg.active_window_s, cache_dir=cfg.model_cache_dir)]


def marker_key(tid: str) -> str:
    return f"{keys.PREFIX}:refresh:tick:{tid}"


def attempts_key(tid: str) -> str:
    return f"{keys.PREFIX}:refresh:attempts:{tid}"


class RefreshLoop:
    """Runs the ticks of ``cfg``; ``checks`` run after each tick's publication (see ``ticks.Check``)."""

    def __init__(self, cfg: RefreshConfig, checks: list[ticks.Check] | None = None, clock: Clock | None = None,
                 metrics: NullLoopMetrics | None = None, out: TextIO = sys.stdout):
        self.cfg = cfg
        self.checks = list(checks or [])
        if cfg.experiment_logs and not any(getattr(c, "__name__", "") == "experiments" for c in self.checks):
            from pipelines.experiment_checks import ExperimentCheck

            self.checks.append(ExperimentCheck(cfg.registry, cfg.experiment_logs, cfg.redis))
        self.clock = clock or (FileClock(cfg.clock_file) if cfg.clock_file else Clock())
        self.metrics = metrics or loop_metrics()
        for check in self.checks:  # a check's own metrics (its module's METRICS table) go through the loop's
            self.metrics.register(getattr(sys.modules.get(type(check).__module__), "METRICS", {}))
        self.out = out
        self.client = publish.connect(cfg.redis)
        self.predictors = Predictors()
        self.done: dict[str, pd.Timestamp] = {}
        self.expected: set[tuple[str, str]] = set()  # (table, tenant) pointers published: a flush is noticed
        self.retry_at: dict[str, float] = {}
        self.ticks_run = self.ticks_failed = 0
        self.last_report: dict[str, Any] | None = None

    # -- scheduling ------------------------------------------------------------
    @staticmethod
    def cadences_of(cfg: RefreshConfig) -> list[tuple[str, float]]:
        out = []
        if cfg.run in ("both", "fast"):
            out.append(("fast", cfg.fast_every_s))
        if cfg.run in ("both", "slow") and cfg.slow_every_s > 0:
            out.append(("slow", cfg.slow_every_s))
        return out

    def cadences(self) -> list[tuple[str, float]]:
        return self.cadences_of(self.cfg)

    def due(self, now: pd.Timestamp) -> list[tuple[str, pd.Timestamp]]:
        """The latest ended slot of each cadence not yet done and not waiting for a retry."""
        out = []
        for cadence, every in self.cadences():
            slot = last_slot(now, every)
            if self.done.get(cadence) is not None and slot <= self.done[cadence]:
                continue
            if time.monotonic() < self.retry_at.get(f"{cadence}-{slot}", 0.0):
                continue
            out.append((cadence, slot))
        return out

    def next_wake(self, now: pd.Timestamp) -> pd.Timestamp:
        ends = [last_slot(now, every) + pd.Timedelta(seconds=2 * every) for _, every in self.cadences()]
        return min(ends)

    def run(self, max_ticks: int = 0, once: bool = False) -> int:
        """Tick forever (or ``max_ticks`` ticks, or one round with ``once``); returns an exit code."""
        self.startup()
        ran, failed = 0, 0
        while True:
            now = self.clock.now()
            for cadence, slot in self.due(now):
                report = self.tick(cadence, slot)
                ran += 1
                failed += report["outcome"] == "failed"
                self.ticks_run, self.ticks_failed, self.last_report = ran, failed, report
                if max_ticks and ran >= max_ticks:
                    return 1 if failed else 0
            if once:
                return 1 if failed else 0
            pending = [t for t in self.retry_at.values() if t > time.monotonic()]
            wait = min(pending) - time.monotonic() if pending else None
            self.clock.sleep_until(self.next_wake(now), stop_s=wait)

    def startup(self) -> None:
        """Clean what a killed run may have left: model cache copies and this loop's tick dirs."""
        ModelCache(self.cfg.model_cache_dir).clean()
        parent = Path(self.cfg.work_dir or tempfile.gettempdir())
        for stale in parent.glob("tdm-tick-*"):
            try:
                owner = int(stale.name.split("-")[2])
            except (IndexError, ValueError):
                continue
            if not pid_alive(owner):
                shutil.rmtree(stale, ignore_errors=True)

    # -- one tick --------------------------------------------------------------
    def tick(self, cadence: str, slot: pd.Timestamp) -> dict[str, Any]:
        every = self.cfg.fast_every_s if cadence == "fast" else self.cfg.slow_every_s
        tid = tick_id(cadence, slot)
        report: dict[str, Any] = {"tick": tid, "cadence": cadence, "slot": str(slot), "outcome": "failed"}
        t0 = time.perf_counter()
        lease = Lease(self.client, ttl_ms=int(self.cfg.lease_ttl_s * 1000))
        work: Path | None = None
        try:
            if not lease.acquire(self.cfg.lease_wait_s):
                held = lease.holder()
                report.update(outcome="locked", held_by=held.owner if held else None)
                return report
            lease.start_renewing()
            ttl = int(max(4 * every, 3600))
            attempt = int(self.client.incr(attempts_key(tid)))
            self.client.expire(attempts_key(tid), ttl)
            report["attempt"] = attempt
            if self._already_published(tid, cadence):
                report["outcome"] = "noop"
                return report
            work = Path(tempfile.mkdtemp(prefix=f"tdm-tick-{_pid()}-", dir=self.cfg.work_dir))
            ctx = ticks.TickContext(self.cfg, cadence, tid, slot, slot + pd.Timedelta(seconds=every),
                                    self.clock.now(), self.client, lease, work, self.predictors, self.metrics, report,
                                    self.expected)
            (ticks.fast_tick if cadence == "fast" else ticks.slow_tick)(ctx)
            ticks.run_checks(ctx, self.checks)
            report["outcome"] = "partial" if (report.get("precompute") or {}).get("failed") else "ok"
            self._mark(tid, report, ttl)
        except LeaseError as exc:
            report.update(outcome="failed", error=f"lease lost: {exc}")
        except Exception as exc:  # noqa: BLE001 - a failed tick is reported and retried, never fatal
            logger.exception("%s tick %s failed; the previous tables stay live", cadence, tid)
            report.update(outcome="failed", error=f"{type(exc).__name__}: {exc}"[:2000])
        finally:
            lease.release()
            if work is not None:
                shutil.rmtree(work, ignore_errors=True)
            self._finish(cadence, slot, tid, report, t0)
        return report

    def _already_published(self, tid: str, cadence: str) -> bool:
        raw = self.client.get(marker_key(tid))
        if raw is None:
            return False
        published = json.loads(raw).get("published", {})
        for table, tenants in published.items():
            for tenant in tenants:
                ptr = self.client.get(keys.pointer_key(table, tenant))
                if ptr is None or not self.client.exists(keys.meta_key(table, ptr.decode(), tenant)):
                    logger.warning("%s was done, but %s/%s is gone from Redis: running it again", tid, table, tenant)
                    return False
        return True

    def _mark(self, tid: str, report: dict[str, Any], ttl: int) -> None:
        published: dict[str, dict[str, str]] = {}
        for table, rep in (report.get("precompute") or {}).items():
            if isinstance(rep, dict) and "namespace" in rep:
                published[table] = {tenant: rep["namespace"] for tenant in rep.get("rows", {})}
        self.client.set(marker_key(tid), json.dumps({"outcome": report["outcome"], "published": published}), ex=ttl)

    def _finish(self, cadence: str, slot: pd.Timestamp, tid: str, report: dict[str, Any], t0: float) -> None:
        report["seconds"] = round(time.perf_counter() - t0, 2)
        outcome = report["outcome"]
        if outcome in ("ok", "noop", "partial"):
            self.done[cadence] = slot
            for key in [k for k in self.retry_at if k.startswith(f"{cadence}-")]:
                del self.retry_at[key]  # this slot supersedes older retries: the dict never grows
            self.metrics.record("tandem_refresh_last_success_timestamp", time.time(), cadence=cadence)
        else:  # failed, or locked by another run: retry (a finished holder leaves a marker: then a no-op)
            self.retry_at[f"{cadence}-{slot}"] = time.monotonic() + self.cfg.retry_s
        self.metrics.record("tandem_refresh_ticks_total", cadence=cadence, outcome=outcome)
        self.metrics.record("tandem_refresh_tick_seconds", report["seconds"], cadence=cadence)
        try:
            mem = ticks.redis_memory(self.client)
            report["redis"] = mem
            self.metrics.record("tandem_redis_used_memory_bytes", mem["used_memory"])
            self.metrics.record("tandem_redis_maxmemory_bytes", mem["maxmemory"])
            self.client.set(f"{keys.PREFIX}:refresh:last:{cadence}", ticks.dumps(report))
        except Exception as exc:  # noqa: BLE001 - Redis down: the JSON line still goes out
            report["redis"] = {"error": str(exc)}
        self.out.write(ticks.dumps(report) + "\n")
        self.out.flush()


def _pid() -> int:
    import os

    return os.getpid()
