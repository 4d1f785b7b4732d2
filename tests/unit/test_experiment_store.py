"""The experiment store: versioned per-tenant configs next to the models, atomic writes, kill/resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from models.experiments.config import ExperimentConfig
from store.experiments import ExperimentStore, ExperimentStoreError, pinned_models
from store.registry import Registry


def _cfg(tenant: str = "acme", **kw: Any) -> ExperimentConfig:
    data: dict[str, Any] = {
        "tenant": tenant, "experiment_id": "rec-1", "salt": "s1",
        "variants": [{"name": "control", "policy": "popular", "share": 0.5},
                     {"name": "model", "policy": "model", "share": 0.5}],
        "guardrails": [{"metric": "conversion"}]}
    data.update(kw)
    return ExperimentConfig.model_validate(data)


def test_put_writes_revisions_and_current(tmp_path: Path) -> None:
    store = ExperimentStore(str(tmp_path / "reg"))
    assert store.current("acme") is None and store.tenants() == []
    first = store.put(_cfg(), reason="start", by="test")
    assert first.revision == 1 and first.running
    second = store.put(_cfg(salt="s2"), reason="new salt", by="test")
    assert second.revision == 2
    cur = store.current("acme")
    assert cur is not None and cur.revision == 2 and cur.config is not None and cur.config.salt == "s2"
    assert [h.revision for h in store.history("acme")] == [1, 2]
    files = sorted(p.name for p in (tmp_path / "reg" / "_experiments" / "acme").iterdir())
    assert files == ["current.json", "r000001.json", "r000002.json"]  # no temp files left
    on_disk = json.loads((tmp_path / "reg" / "_experiments" / "acme" / "current.json").read_text())
    assert on_disk["config"]["salt"] == "s2" and on_disk["reason"] == "new salt"
    assert store.tenants() == ["acme"]


def test_kill_resume_end(tmp_path: Path) -> None:
    store = ExperimentStore(str(tmp_path / "reg"))
    store.put(_cfg(), reason="start", by="test")
    killed = store.kill("acme", "conversion fell", by="guardrail")
    assert not killed.running and killed.config is not None
    assert killed.config.kill_switch.engaged and killed.config.kill_switch.reason == "conversion fell"
    again = store.kill("acme", "a second reason")  # idempotent: the first reason stays
    assert again.revision == killed.revision
    assert store.running() == []
    resumed = store.resume("acme", "false alarm")
    assert resumed.running and resumed.config is not None and resumed.config.salt == "s1"
    assert [s.tenant for s in store.running()] == ["acme"]
    ended = store.end("acme", "done")
    assert ended.config is None and not ended.running
    with pytest.raises(ExperimentStoreError, match="no experiment"):
        store.kill("acme", "x")


def test_stale_read_modify_write_is_refused(tmp_path: Path) -> None:
    store = ExperimentStore(str(tmp_path / "reg"))
    store.put(_cfg(), reason="start", by="test")
    store.put(_cfg(salt="s2"), reason="change", by="someone else")
    with pytest.raises(ExperimentStoreError, match="changed meanwhile"):
        store.put(_cfg(salt="s3"), reason="stale", by="test", expect_revision=1)


def test_wrong_tenant_and_bad_files_are_named(tmp_path: Path) -> None:
    store = ExperimentStore(str(tmp_path / "reg"))
    with pytest.raises(ExperimentStoreError, match="tenant 'acme', not 'bolt'"):
        store.put(_cfg(), "bolt", reason="x", by="t")
    with pytest.raises(ValueError, match="tenant"):
        store.current("../etc")
    bad = tmp_path / "reg" / "_experiments" / "bolt"
    bad.mkdir(parents=True)
    (bad / "current.json").write_text(json.dumps({"tenant": "bolt", "revision": 1,
                                                  "config": {"experiment_id": "e", "salt": "s"}}))
    with pytest.raises(ExperimentStoreError, match=r"bolt/current.json.*variants"):
        store.current("bolt")
    store.put(_cfg(), reason="start", by="test")
    assert [s.tenant for s in store.running()] == ["acme"]  # one bad tenant never hides the others


def test_pinned_models_finds_the_model_of_a_version(tmp_path: Path) -> None:
    reg_uri = str(tmp_path / "reg")
    reg = Registry(reg_uri)
    art = tmp_path / "art"
    art.mkdir()
    (art / "m.txt").write_text("x")
    rec = reg.register("recommender", art, {}).version
    cfg = _cfg(variants=[{"name": "control", "policy": "popular", "share": 0.4},
                         {"name": "champ", "policy": "model", "share": 0.3},
                         {"name": "chal", "policy": "version", "model_version": rec, "share": 0.3}])
    assert pinned_models(reg_uri, cfg) == {"chal": {"recommender": rec}}
    missing = _cfg(variants=[{"name": "control", "policy": "popular", "share": 0.5},
                             {"name": "chal", "policy": "version", "model_version": "v-nope", "share": 0.5}])
    with pytest.raises(ExperimentStoreError, match="variant 'chal'.*v-nope"):
        pinned_models(reg_uri, missing)
