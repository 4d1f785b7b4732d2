"""The bodies of the refresh loop's two ticks (``pipelines.refresh`` schedules them).

Fast tick: incremental features (bad rows, files and partitions quarantined), then the
sessions active in the window scored into new namespaces and flipped under the lease, then
GC of superseded namespaces, then the per-tick checks.

Slow tick: a time-split snapshot, both trainers, the SAME gates for both models on the same
holdout, then, for what passed: the candidate's tables written BEFORE the registry moves,
the registry's champion, the tables' pointers, a hot swap of the replicas and a check that
every replica serves the new versions. A failed gate keeps the champion (the JSON line and
``tandem_promotion_decisions_total`` say which gate and why); a failed swap rolls the
registry back and swaps the replicas back.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines import features as feature_job
from pipelines import hotswap, precompute, retrain
from pipelines.loop_metrics import NullLoopMetrics
from store import fs, gc, keys
from store.lease import Lease
from store.registry import Registry

logger = logging.getLogger(__name__)


@dataclass
class TickContext:
    """What a tick needs; ``report`` becomes its JSON line."""

    cfg: Any  # pipelines.refresh.RefreshConfig
    cadence: str
    tick_id: str
    slot_start: pd.Timestamp
    slot_end: pd.Timestamp
    now: pd.Timestamp
    client: Any
    lease: Lease
    work: Path
    predictors: precompute.Predictors
    metrics: NullLoopMetrics
    report: dict[str, Any] = field(default_factory=dict)
    expected: set[tuple[str, str]] = field(default_factory=set)  # pointers this loop has published


Check = Callable[[TickContext], dict[str, Any]]  # per-tick checks (guardrails): {"name", "ok", ...}


def published_pairs(client: Any, tables: list[str]) -> set[tuple[str, str]]:
    """(table, tenant) of every pointer or namespace index in Redis now."""
    out: set[tuple[str, str]] = set()
    for tenant in gc.tenants_indexed(client):
        for table in tables:
            if client.exists(keys.pointer_key(table, tenant), keys.index_key(table, tenant)):
                out.add((table, tenant))
    return out


def missing_pointers(client: Any, pairs: set[tuple[str, str]]) -> list[str]:
    """``table/tenant`` of the given pointers that are gone, or whose namespace expired or was flushed."""
    out = []
    for table, tenant in sorted(pairs):
        ptr = client.get(keys.pointer_key(table, tenant))
        if ptr is None or not client.exists(keys.meta_key(table, ptr.decode(), tenant)):
            out.append(f"{table}/{tenant}")
    return out


def _new_quarantine(manifest: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, int]:
    """Quarantined rows of files this run read for the first time (a reprocessed file counts once)."""
    seen = set((previous or {}).get("quarantine_by_file", {}))
    out: dict[str, int] = {}
    for path, reasons in manifest.get("quarantine_by_file", {}).items():
        if path not in seen:
            for reason, n in reasons.items():
                out[reason] = out.get(reason, 0) + int(n)
    return out


def _precompute_cfg(ctx: TickContext, versions: dict[str, str] | None = None) -> precompute.PrecomputeConfig:
    cfg = ctx.cfg
    return precompute.PrecomputeConfig(
        features=cfg.features, registry=cfg.registry, redis=cfg.redis, tables=list(cfg.tables),
        cadence_s=cfg.fast_every_s, ttl_cadences=cfg.ttl_cadences, model_cache_dir=cfg.model_cache_dir,
        since=(ctx.slot_end - pd.Timedelta(seconds=cfg.active_window_s)).to_pydatetime(), versions=versions or {})


def _gc(ctx: TickContext, protect: set[str]) -> None:
    rep = gc.collect(ctx.client, tables=ctx.cfg.tables, grace_s=ctx.cfg.gc_grace_s, protect=protect)
    ctx.report["gc"] = rep.as_dict()
    ctx.metrics.record("tandem_gc_namespaces_deleted_total", len(rep.deleted))


def _phase(ctx: TickContext, name: str, start: float) -> None:
    """Wall-clock window of a phase in the JSON line (the soak splits latency by it)."""
    ctx.report.setdefault("phases", {})[name] = [round(start, 3), round(time.time(), 3)]


def fast_tick(ctx: TickContext) -> None:
    cfg = ctx.cfg
    out = cfg.features if fs.is_remote(cfg.features) else str(Path(cfg.features).absolute())
    t0 = time.time()
    previous = feature_job.previous_manifest(out)
    manifest = feature_job.run(cfg.events, out, incremental=True, lateness_hours=cfg.lateness_hours,
                               buckets=cfg.buckets, now=ctx.now, max_future_minutes=cfg.max_future_minutes)
    new_q = {} if manifest.get("unchanged") else _new_quarantine(manifest, previous)
    for reason, n in new_q.items():
        ctx.metrics.record("tandem_quarantined_events_total", n, reason=reason)
    ctx.report["features"] = {"rows_in": manifest.get("rows_in"), "sessions": manifest.get("sessions"),
                              "watermark": manifest.get("watermark"), "unchanged": bool(manifest.get("unchanged")),
                              "quarantined_new": new_q, "duplicates_dropped": manifest.get("duplicates_dropped", 0),
                              "seconds": manifest.get("seconds")}
    _phase(ctx, "features", t0)
    ctx.lease.check()
    t0 = time.time()
    expected = ctx.expected | published_pairs(ctx.client, list(cfg.tables))
    missing = missing_pointers(ctx.client, expected)
    pcfg = _precompute_cfg(ctx)
    written = precompute.write(pcfg, ctx.client, ctx.tick_id.split("-", 1)[1][4:] + precompute.new_run_id("-"),
                               ctx.predictors)
    ctx.report["precompute"] = precompute.commit(pcfg, ctx.client, written, ctx.lease)
    ctx.expected |= {(t, tenant) for t, rep in ctx.report["precompute"].items() if isinstance(rep, dict)
                     for tenant in rep.get("rows", {})}
    still = missing_pointers(ctx.client, expected)
    healed = [m for m in missing if m not in still]
    for m in healed:
        ctx.metrics.record("tandem_pointers_republished_total", table=m.split("/")[0])
    if missing:
        ctx.report["republished"] = healed
        ctx.report["still_missing"] = still
    _gc(ctx, precompute.namespaces(written))
    _phase(ctx, "publish", t0)


def slow_tick(ctx: TickContext) -> None:
    cfg = ctx.cfg
    reg = Registry(cfg.registry)
    champions = {name: reg.champion(name) for name in ("propensity", "recommender")}
    snap = retrain.snapshot(Path(cfg.features), ctx.work, cfg.time_column, cfg.holdout_fraction,
                            not_before=retrain.champions_seen_until(reg, list(cfg.models)))
    ctx.report["snapshot"] = {k: v for k, v in snap.items() if k not in ("pairs", "dir")}
    trained = retrain.train(cfg, ctx.work, snap)
    ctx.report["trained"] = {n: {"version": t.get("version"), "seconds": t.get("_seconds")} for n, t in trained.items()}
    ctx.lease.check()
    decisions = retrain.decide(cfg, reg, trained, snap, champions)
    ctx.report["gates"] = {n: {k: d.get(k) for k in ("promoted", "candidate", "champion", "reason")}
                           | {"gates": [{"name": g["name"], "passed": g["passed"], "detail": g["detail"]}
                                        for g in d.get("gates", [])]} for n, d in decisions.items()}
    for name, d in decisions.items():
        failed = [g["name"] for g in d.get("gates", []) if not g["passed"]]
        decision = "first" if d.get("first") else ("promoted" if d.get("promoted") else "refused")
        ctx.metrics.record("tandem_promotion_decisions_total", model=name, decision=decision,
                           gate=failed[0] if failed else "all_passed")
        if failed:
            logger.warning("%s candidate %s refused (the champion %s stays): %s", name, d.get("candidate"),
                           d.get("champion"), d.get("reason"))
    promoted = {n: d["candidate"] for n, d in decisions.items() if d.get("promoted")}
    if not promoted:
        return
    versions = {n: promoted.get(n) or champions[n] for n in champions if promoted.get(n) or champions[n]}
    pcfg = _precompute_cfg(ctx, versions)  # type: ignore[arg-type]
    t0 = pd.Timestamp.now()
    w0 = time.time()
    written = precompute.write(pcfg, ctx.client, "s" + precompute.new_run_id(), ctx.predictors)
    ctx.lease.check()
    retrain.promote(reg, decisions)
    ctx.report["precompute"] = precompute.commit(pcfg, ctx.client, written, ctx.lease)
    ctx.report["promoted_at"] = round(time.time(), 3)
    _phase(ctx, "publish", w0)
    if not cfg.serve_app:
        ctx.report["swap"] = "skipped: no serve_app configured"
        return
    try:
        generation = hotswap.swap(cfg.serve_app, versions, cfg.serve_address)  # type: ignore[arg-type]
        check = hotswap.verify(ctx.client, cfg.serve_app, generation, versions, cfg.serve_address,  # type: ignore[arg-type]
                               cfg.verify_timeout_s)
        seconds = (pd.Timestamp.now() - t0).total_seconds()
        ctx.report["swap"] = {"generation": generation, "versions": versions, **check,
                              "promote_to_served_s": round(seconds, 2)}
        ctx.metrics.record("tandem_swap_seconds", seconds)
        _phase(ctx, "swap", ctx.report["promoted_at"])
    except Exception as exc:
        retrain.roll_back(reg, decisions)
        back = {n: reg.champion(n) for n in champions}
        ctx.report["swap"] = {"error": f"{type(exc).__name__}: {exc}", "rolled_back_to": back}
        try:
            hotswap.swap(cfg.serve_app, back, cfg.serve_address)
        except Exception:  # noqa: BLE001 - the error above is what the tick reports
            logger.exception("swapping back to %s failed", back)
        raise


def run_checks(ctx: TickContext, checks: list[Check]) -> None:
    """The per-tick checks (issue 14 plugs guardrail evaluation in here); a failing check is reported,
    it never undoes the tick."""
    results = []
    for check in checks:
        try:
            results.append(check(ctx))
        except Exception as exc:  # noqa: BLE001
            results.append({"name": getattr(check, "__name__", "check"), "ok": False,
                            "error": f"{type(exc).__name__}: {exc}"})
    if results:
        ctx.report["checks"] = results


def redis_memory(client: Any) -> dict[str, int]:
    info = client.info("memory")
    return {"used_memory": int(info.get("used_memory", 0)), "maxmemory": int(info.get("maxmemory", 0))}


def dumps(report: dict[str, Any]) -> str:
    return json.dumps(report, default=str, separators=(",", ":"))
