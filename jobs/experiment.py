"""A tenant's A/B experiment by hand: create, show, kill, resume, end (the kill switch).

    python -m jobs.experiment create --registry URI --experiment FILE [--tenant-registry URI] [--reason TEXT]
    python -m jobs.experiment show   --registry URI --tenant T
    python -m jobs.experiment kill   --registry URI --tenant T --reason TEXT
    python -m jobs.experiment resume --registry URI --tenant T --reason TEXT
    python -m jobs.experiment end    --registry URI --tenant T --reason TEXT

The config lives next to the models (``store.experiments``); every change is a new revision
that records who made it and why. The serving replicas re-read it every few seconds, so
``kill`` moves all of the tenant's traffic to control within seconds, the same path the refresh
loop's guardrails take. ``resume`` lets the same experiment (id, salt, shares) run again;
start a clean one with ``create`` and a new ``experiment_id`` or ``salt``. ``FILE`` is a YAML
or JSON ``models.experiments.config.ExperimentConfig``; a pinned ``model_version`` must exist
(as a recommender or a propensity version) in the tenant's own registry (``--tenant-registry``),
its namespace in ``--registry`` or ``--registry`` itself: where serving looks for it.
"""

from __future__ import annotations

import argparse
import getpass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, model_validator

from models.experiments.config import load_config
from pipelines import entrypoint
from pipelines.experiments import read_experiment_file
from store.experiments import ExperimentStore, ExperimentStoreError, StoredExperiment, pinned_models
from store.registry import pin_lookup

Action = Literal["create", "show", "kill", "resume", "end"]


class Config(BaseModel, extra="forbid"):
    action: Action
    registry: str = Field(description="registry URI (local dir or s3://) the app serves from")
    tenant: str | None = Field(None, description="default: the experiment file's tenant, else 'default'")
    tenant_registry: str | None = Field(None, description="create: the tenant's own registry, when the app's "
                                        "tenant config gives it one (pins are looked up there first)")
    experiment: str | None = Field(None, description="experiment config file (YAML or JSON), for create")
    reason: str = Field("", max_length=500)
    by: str = Field(default_factory=lambda: f"cli:{_user()}", max_length=100)
    smoke_test: bool = False

    @model_validator(mode="after")
    def _needs(self) -> Config:
        if self.action == "create" and not self.experiment:
            raise ValueError("create needs --experiment FILE")
        if self.action in ("kill", "resume", "end") and not self.reason.strip():
            raise ValueError(f"{self.action} needs --reason (it is recorded with the revision)")
        return self


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def describe(stored: StoredExperiment | None, tenant: str) -> dict[str, Any]:
    if stored is None:
        return {"tenant": tenant, "state": "none", "revision": 0}
    cfg = stored.config
    state = "ended" if cfg is None else ("rolled_back" if cfg.kill_switch.engaged else "running")
    out: dict[str, Any] = {"tenant": tenant, "state": state, "revision": stored.revision, "reason": stored.reason,
                           "by": stored.by, "written_at": stored.written_at}
    if cfg is not None:
        out.update(experiment=cfg.experiment_id, variants=[v.model_dump(exclude_none=True) for v in cfg.variants],
                   kill_switch=cfg.kill_switch.model_dump())
    return out


def run(cfg: Config) -> dict[str, Any]:
    store = ExperimentStore(cfg.registry)
    if cfg.action == "create":
        assert cfg.experiment is not None
        exp = read_experiment_file(cfg.experiment, cfg.tenant)
        # refuses a version none of the tenant's registries has (the order serving looks them up in)
        pins = pinned_models(pin_lookup(cfg.registry, exp.tenant, cfg.tenant_registry), exp)
        stored = store.put(exp, reason=cfg.reason or f"created from {cfg.experiment}", by=cfg.by)
        return {"action": "create", **describe(stored, exp.tenant), "pinned": pins}
    tenant = cfg.tenant or "default"
    if cfg.action == "show":
        return {"action": "show", **describe(store.current(tenant), tenant)}
    if cfg.action == "kill":
        stored = store.kill(tenant, cfg.reason, by=cfg.by)
    elif cfg.action == "resume":
        stored = store.resume(tenant, cfg.reason, by=cfg.by)
    else:
        stored = store.end(tenant, cfg.reason, by=cfg.by)
    return {"action": cfg.action, **describe(stored, tenant)}


def summary(r: dict[str, Any]) -> str:
    what = f"tenant {r['tenant']}: experiment {r.get('experiment', '-')} {r['state']} (revision {r['revision']})"
    return f"{what}: {r['reason']}" if r.get("reason") else what


def flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["create", "show", "kill", "resume", "end"])
    p.add_argument("--registry", help="registry URI (local dir or s3://)")
    p.add_argument("--tenant", help="tenant (default: the file's, else 'default')")
    p.add_argument("--tenant-registry", help="create: the tenant's own registry URI, if it has one")
    p.add_argument("--experiment", help="experiment config file (YAML/JSON), for create")
    p.add_argument("--reason", help="why (recorded; required for kill, resume, end)")
    p.add_argument("--by", help="who (default cli:$USER)")


SMOKE_EXPERIMENT = {
    "experiment_id": "smoke", "salt": "s1",
    "variants": [{"name": "control", "policy": "popular", "share": 0.5},
                 {"name": "model", "policy": "model", "share": 0.5}],
    "guardrails": [{"metric": "conversion", "max_relative_drop": 0.02, "confidence": 0.95}]}


def fill_smoke(values: dict[str, Any], tmp: Path) -> None:
    """A fresh registry; ``create`` gets a two-variant experiment file, the others one already created."""
    values.setdefault("registry", str(tmp / "registry"))
    if values.get("action") == "create":
        if "experiment" not in values:
            (tmp / "experiment.yaml").write_text(yaml.safe_dump(SMOKE_EXPERIMENT))
            values["experiment"] = str(tmp / "experiment.yaml")
        return
    tenant = values.get("tenant") or "default"
    store = ExperimentStore(values["registry"])
    if store.current(tenant) is None:
        store.put(load_config({**SMOKE_EXPERIMENT, "tenant": tenant}), reason="smoke test", by="smoke")
    values.setdefault("reason", "smoke test")


JOB = entrypoint.Job(prog="python -m jobs.experiment", description=__doc__.splitlines()[0], config=Config, run=run,
                     flags=flags, smoke=fill_smoke, text=summary,
                     input_errors=(ExperimentStoreError, ValueError),
                     error_fields=lambda v: {"action": v.get("action"), "tenant": v.get("tenant")})


def main(argv: list[str] | None = None) -> int:
    return entrypoint.main(JOB, argv)


if __name__ == "__main__":
    raise SystemExit(main())
