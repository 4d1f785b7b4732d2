"""The experiment CLIs through the shared shell: the kill switch (create/show/kill/resume/end) and
the KPI report (a simulated experiment's logs -> HTML + one JSON line); bad input exits 2 naming it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobs import experiment, kpi_report
from store.experiments import ExperimentStore

pytestmark = pytest.mark.unit


def _run(capsys: pytest.CaptureFixture[str], main: Any, *argv: str, code: int = 0) -> dict[str, Any]:
    assert main([*argv, "--json"]) == code
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_kill_switch_lifecycle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reg = str(tmp_path / "reg")
    file = tmp_path / "exp.yaml"
    file.write_text(yaml.safe_dump({**experiment.SMOKE_EXPERIMENT, "tenant": "acme"}))
    made = _run(capsys, experiment.main, "create", "--registry", reg, "--experiment", str(file))
    assert (made["tenant"], made["state"], made["revision"], made["experiment"]) == ("acme", "running", 1, "smoke")
    shown = _run(capsys, experiment.main, "show", "--registry", reg, "--tenant", "acme")
    assert shown["state"] == "running" and shown["by"].startswith("cli:")
    killed = _run(capsys, experiment.main, "kill", "--registry", reg, "--tenant", "acme", "--reason", "bad week")
    assert (killed["state"], killed["revision"], killed["kill_switch"]["reason"]) == ("rolled_back", 2, "bad week")
    assert not ExperimentStore(reg).running()  # what the replicas read: everyone in control
    resumed = _run(capsys, experiment.main, "resume", "--registry", reg, "--tenant", "acme", "--reason", "fixed")
    assert resumed["state"] == "running" and resumed["revision"] == 3
    ended = _run(capsys, experiment.main, "end", "--registry", reg, "--tenant", "acme", "--reason", "done")
    assert ended["state"] == "ended"
    assert [r.revision for r in ExperimentStore(reg).history("acme")] == [1, 2, 3, 4]


def test_kill_switch_refuses_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reg = str(tmp_path / "reg")
    out = _run(capsys, experiment.main, "kill", "--registry", reg, "--tenant", "acme", code=2)
    assert "--reason" in out["error"]
    out = _run(capsys, experiment.main, "kill", "--registry", reg, "--tenant", "acme", "--reason", "x", code=2)
    assert "no experiment" in out["error"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**experiment.SMOKE_EXPERIMENT, "variants": [
        {"name": "control", "policy": "popular", "share": 0.5},
        {"name": "chal", "policy": "version", "model_version": "v-missing", "share": 0.5}]}))
    out = _run(capsys, experiment.main, "create", "--registry", reg, "--experiment", str(bad), code=2)
    assert "chal" in out["error"] and "v-missing" in out["error"]
    bad.write_text(yaml.safe_dump({**experiment.SMOKE_EXPERIMENT, "salt": ""}))
    out = _run(capsys, experiment.main, "create", "--registry", reg, "--experiment", str(bad), code=2)
    assert "bad.yaml" in out["error"] and "salt" in out["error"]
    assert ExperimentStore(reg).tenants() == []  # nothing half-written


def test_kpi_report_smoke_writes_the_page_and_one_json_line(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = _run(capsys, kpi_report.main, "--smoke-test", "--out", str(tmp_path / "kpi.html"))
    page = Path(out["report"])
    assert page == tmp_path / "kpi.html" and page.read_text().count('class="plot"') == 4
    assert out["experiment"] == "smoke" and set(out["n_units"]) == {"control", "model", "worse"}
    conv = {r["variant"]: r for r in out["lifts"] if r["metric"] == "conversion"}
    assert conv["worse"]["rel"] < 0 < conv["model"]["rel"]  # true -20 % and +8 %
    assert out["logs"]["duplicates"] == {"exposures": 0, "outcomes": 0}


def test_kpi_report_without_logs_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reg = str(tmp_path / "reg")
    from models.experiments.config import load_config

    ExperimentStore(reg).put(load_config(experiment.SMOKE_EXPERIMENT), reason="t", by="t")
    out = _run(capsys, kpi_report.main, "--registry", reg, "--logs", str(tmp_path / "none"), code=2)
    assert "nothing to report" in out["error"] and "no exposures logged" in out["error"]
    out = _run(capsys, kpi_report.main, "--logs", str(tmp_path / "none"), code=2)
    assert "--registry" in out["error"]


def test_create_finds_pins_where_serving_does(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A challenger registered in the tenant's namespace of the shared registry, or in the tenant's
    own registry (given with --tenant-registry), can be pinned; elsewhere it is refused by name."""
    from store.registry import Registry, tenant_uri

    reg, own = str(tmp_path / "reg"), str(tmp_path / "own")
    art = tmp_path / "art"
    art.mkdir()
    (art / "m.txt").write_text("x")
    in_namespace = Registry(tenant_uri(reg, "acme")).register("recommender", art, {}).version
    in_own = Registry(own).register("propensity", art, {}).version
    file = tmp_path / "exp.yaml"

    def pinning(version: str) -> str:
        file.write_text(yaml.safe_dump({**experiment.SMOKE_EXPERIMENT, "tenant": "acme", "variants": [
            {"name": "control", "policy": "popular", "share": 0.5},
            {"name": "chal", "policy": "version", "model_version": version, "share": 0.5}]}))
        return str(file)

    made = _run(capsys, experiment.main, "create", "--registry", reg, "--experiment", pinning(in_namespace))
    assert made["pinned"] == {"chal": {"recommender": in_namespace}}
    refused = _run(capsys, experiment.main, "create", "--registry", reg, "--experiment", pinning(in_own), code=2)
    assert "chal" in refused["error"] and in_own in refused["error"]
    made = _run(capsys, experiment.main, "create", "--registry", reg, "--tenant-registry", own,
                "--experiment", pinning(in_own))
    assert made["pinned"] == {"chal": {"propensity": in_own}} and made["revision"] == 2
