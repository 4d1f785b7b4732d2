"""The refresh loop's per-tick experiment check: drain the logs, evaluate every running
experiment's guardrails, and roll a breached one back to control.

``ExperimentCheck(registry, logs_uri, redis_url)`` is a ``pipelines.ticks.Check``: the loop calls
it after each tick's publication with the tick's context and puts what it returns in the tick's
JSON line. Per tick it

1. drains every experiment tenant's exposure and outcome streams to Parquet (``pipelines.exposures``);
2. for each running experiment, reports on the logs since the experiment started and evaluates
   its guardrails (``models.experiments.guardrails.evaluate``: always-valid intervals, so looking
   at every tick does not inflate false rollbacks);
3. on a breach stores ``config.rolled_back(reason)`` as the tenant's next revision
   (``store.experiments``): every serving replica picks it up on its next poll of the store
   (the same path as any experiment change, seconds, no restart) and sends all traffic to
   control. The revision records why; ``tandem_experiment_rollbacks_total`` counts it and the
   replicas' ``/v1/health`` shows it.

A failing tenant is reported and never stops the others; the check never undoes the tick.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from pipelines import experiments, exposures
from store.experiments import ExperimentStore

logger = logging.getLogger(__name__)

METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "tandem_experiment_rollbacks_total": ("counter", "Experiments rolled back to control by a guardrail",
                                          ("tenant", "experiment")),
    "tandem_experiment_breached": ("gauge", "1 while an experiment's guardrail is breached or it is rolled back",
                                   ("tenant", "experiment")),
    "tandem_experiment_units": ("gauge", "Units (sessions or visitors) in the experiment's report",
                                ("tenant", "experiment", "variant")),
    "tandem_experiment_log_lost_total": ("counter", "Experiment log records lost before the drain",
                                         ("tenant", "kind")),
    "tandem_experiment_log_backlog": ("gauge", "Experiment log entries left in Redis after the drain",
                                      ("tenant", "kind")),
}
"""The check's metrics (name -> kind, description, tag keys), recorded through the loop's metrics."""


class _NoMetrics:
    def record(self, name: str, value: float = 1.0, **tags: str) -> None: ...


class ExperimentCheck:
    """Drain + guardrails for every tenant's experiment; one instance per refresh loop."""

    __name__ = "experiments"

    def __init__(self, registry: str, logs_uri: str, redis_url: str | None = None, client: Any = None):
        self.registry = registry
        self._store: ExperimentStore | None = None
        self.logs_uri = logs_uri
        self._client = client
        self._redis_url = redis_url
        self._lost_seen: dict[tuple[str, str], int] = {}

    def client(self, ctx: Any) -> Any:
        if self._client is None:
            found = getattr(ctx, "client", None)
            if found is not None:
                return found
            from store.publish import connect

            assert self._redis_url, "ExperimentCheck needs a Redis client or URL"
            self._client = connect(self._redis_url)
        return self._client

    @property
    def store(self) -> ExperimentStore:
        if self._store is None:
            self._store = ExperimentStore(self.registry)
        return self._store

    def __call__(self, ctx: Any = None) -> dict[str, Any]:
        metrics = getattr(ctx, "metrics", None) or _NoMetrics()
        t0 = time.perf_counter()
        if "://" not in self.registry and not os.path.isdir(self.registry):
            return {"name": "experiments", "ok": True, "skipped": f"no registry at {self.registry}"}
        tenants = self.store.tenants()
        drained = exposures.drain(self.client(ctx), self.logs_uri, tenants) if tenants else []
        for d in drained:
            if d.error is None:
                metrics.record("tandem_experiment_log_backlog", d.backlog, tenant=d.tenant, kind=d.kind)
        results = [self.evaluate(stored, metrics) for stored in self.store.running()]
        ok = all(d.error is None for d in drained) and all(r.get("error") is None for r in results)
        return {"name": "experiments", "ok": ok, "seconds": round(time.perf_counter() - t0, 2),
                "drained": [d.to_dict() for d in drained if d.read or d.error or d.backlog],
                "experiments": results}

    def evaluate(self, stored: Any, metrics: Any) -> dict[str, Any]:
        """One running experiment: analyse, and roll it back when a guardrail is breached."""
        cfg = stored.config
        tenant, exp_id = cfg.tenant, cfg.experiment_id
        out: dict[str, Any] = {"tenant": tenant, "experiment": exp_id, "revision": stored.revision}
        try:
            since = experiments.experiment_start(self.store, tenant, cfg)
            analysis = experiments.analyse(self.logs_uri, cfg, since=since)
            out["logs"] = analysis.logs
            for kind, lost in analysis.logs.get("missing", {}).items():
                new = lost - self._lost_seen.get((tenant, kind), 0)
                if new > 0:
                    metrics.record("tandem_experiment_log_lost_total", new, tenant=tenant, kind=kind)
                self._lost_seen[(tenant, kind)] = lost
            if analysis.decision is None:
                out.update(action="continue", state="insufficient_data", detail=analysis.error)
                return out
            report, decision = analysis.report, analysis.decision
            assert report is not None
            for variant, n in report.n_units.items():
                metrics.record("tandem_experiment_units", n, tenant=tenant, experiment=exp_id, variant=variant)
            out.update(action=decision.action, reasons=list(decision.reasons), alerts=list(decision.alerts),
                       n_units=report.n_units,
                       guardrails=[{"metric": g.metric, "variant": g.variant, "state": g.state, "bound": g.bound,
                                    "threshold": g.threshold} for g in decision.guardrails])
            if decision.action == "rollback":
                reason = "guardrail: " + "; ".join(decision.reasons)
                rolled = self.store.kill(tenant, reason, by="guardrail")
                out.update(rolled_back=True, new_revision=rolled.revision)
                metrics.record("tandem_experiment_rollbacks_total", 1, tenant=tenant, experiment=exp_id)
                logger.warning("tenant %s: experiment %s rolled back to control (revision %d): %s", tenant, exp_id,
                               rolled.revision, reason)
            metrics.record("tandem_experiment_breached", 1.0 if decision.action == "rollback" else 0.0,
                           tenant=tenant, experiment=exp_id)
        except Exception as exc:  # noqa: BLE001 - one tenant's failure is reported, the others go on
            logger.exception("experiment check of tenant %s failed", tenant)
            out["error"] = f"{type(exc).__name__}: {exc}"[:1000]
        return out
