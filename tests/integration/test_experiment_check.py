"""The refresh loop's experiment check against a real redis-server: drain the logs, report,
roll a harmful variant back to control in the store, leave a healthy one running."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from models.experiments.config import ExperimentConfig
from models.experiments.simulator import Arm, VisitorModel, simulate_experiment, to_logs
from pipelines import experiments
from pipelines.experiment_checks import ExperimentCheck
from store import explog, keys
from store.experiments import ExperimentStore

pytestmark = pytest.mark.integration


def _config(tenant: str) -> ExperimentConfig:
    return ExperimentConfig.model_validate({
        "tenant": tenant, "experiment_id": f"exp-{tenant}", "salt": "s",
        "variants": [{"name": "control", "policy": "popular", "share": 0.5},
                     {"name": "model", "policy": "model", "share": 0.5}],
        "guardrails": [{"metric": "conversion", "max_relative_drop": 0.02}],
        "sequential": {"min_units": 200}})


def push_simulation(client: Any, tenant: str, quality: float, n: int, seed: int) -> None:
    """A simulated experiment's logs, written to the tenant's streams as the serving replicas write them."""
    rng = np.random.default_rng(seed)
    sim = simulate_experiment(VisitorModel(conversion=0.1), (Arm("control", 0.5), Arm("model", 0.5, quality)), n, 12,
                              rng)
    exp, out, _ = to_logs(sim, tenant=tenant, experiment_id=f"exp-{tenant}", start=pd.Timestamp.now(tz="UTC"),
                          tick_seconds=300, rng=rng)
    ms = (exp["time"].astype("int64") // 1_000_000).to_numpy()
    explog.append(client, "exposures", tenant, (explog.exposure(
        tenant, r.experiment, r.variant, r.session_id, None, r.items, "v1", "model", "recommend", int(t), "w", i)
        for i, (r, t) in enumerate(zip(exp.itertuples(), ms, strict=True))), maxlen=10_000_000)
    oms = (out["time"].astype("int64") // 1_000_000).to_numpy()
    pipe = client.pipeline(transaction=False)
    for r, t in zip(out.itertuples(), oms, strict=True):  # clicks arrive as views, as /v1/events stores them
        kind = "view" if r.event_type == "click" else r.event_type
        pipe.xadd(keys.events_stream_key(tenant), explog.event_entry(r.session_id, r.item_id, kind, int(t),
                                                                   float(r.revenue) if kind == "purchase" else None))
    pipe.execute()


def test_check_rolls_back_the_harmful_experiment_only(redis_client: Any, tmp_path: Path) -> None:
    registry, logs = str(tmp_path / "reg"), str(tmp_path / "logs")
    store = ExperimentStore(registry)
    for tenant in ("good", "harm"):
        store.put(_config(tenant), reason="start", by="test")
    push_simulation(redis_client, "good", 1.0, 6000, 1)
    push_simulation(redis_client, "harm", 0.6, 6000, 2)

    check = ExperimentCheck(registry, logs, client=redis_client)
    result = check()
    assert result["ok"], result
    by_tenant = {r["tenant"]: r for r in result["experiments"]}
    assert by_tenant["good"]["action"] == "continue" and "rolled_back" not in by_tenant["good"]
    harm = by_tenant["harm"]
    assert harm["action"] == "rollback" and harm["rolled_back"]
    assert any("conversion" in r for r in harm["reasons"])
    assert {d["tenant"] for d in result["drained"]} == {"good", "harm"}

    stored = store.current("harm")
    assert stored is not None and stored.config is not None and stored.config.kill_switch.engaged
    assert stored.by == "guardrail" and "conversion" in stored.reason
    assert [s.tenant for s in store.running()] == ["good"]

    # the next tick drains nothing new and evaluates only the running experiment
    again = check()
    assert [r["tenant"] for r in again["experiments"]] == ["good"]
    assert again["drained"] == []

    # the KPI report on the same logs finds the direction of the harm
    analysis = experiments.analyse(logs, stored.config)
    lift = analysis.report.lift_table().set_index(["metric", "variant"]).loc[("conversion", "model")]  # type: ignore[union-attr]
    assert lift["rel_hi"] < 0
    page = experiments.write_report(analysis, str(tmp_path / "kpi.html"))
    assert Path(page).read_text().count('class="plot"') >= 3
