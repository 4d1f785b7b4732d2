"""Every job without Ray runs its own ``--smoke-test`` through the shared CLI shell: tiny inputs it
makes itself, its normal code path, one final JSON line with the job's keys, exit code 0.

The jobs that need Ray run theirs in tests/integration/test_job_smoke.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs import calibrate, deploy, generate, ingest, promote, register

pytestmark = pytest.mark.unit


def _smoke(capsys: pytest.CaptureFixture[str], main: object, *argv: str) -> dict:
    assert main([*argv, "--smoke-test", "--json"]) == 0  # type: ignore[operator]
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_generate(capsys: pytest.CaptureFixture[str]) -> None:
    out = _smoke(capsys, generate.main)
    assert out["events"] > 2_000 and out["days"] == 2 and 0 < out["purchase_rate"] < 1


def test_ingest(capsys: pytest.CaptureFixture[str]) -> None:
    out = _smoke(capsys, ingest.main)
    assert out["format"] == "canonical" and out["rows_out"] == out["rows_in"] > 0 and out["quarantined_total"] == 0


def test_calibrate(capsys: pytest.CaptureFixture[str]) -> None:
    assert calibrate.main(["--smoke-test"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| statistic | synthetic |")
    assert set(json.loads(lines[-1])["stats"]) == {"synthetic"}  # the real samples only with --data


def test_register(capsys: pytest.CaptureFixture[str]) -> None:
    out = _smoke(capsys, register.main)
    assert out["name"] == "propensity" and out["champion"] is True and out["current_champion"] == out["version"]


def test_promote(capsys: pytest.CaptureFixture[str]) -> None:
    out = _smoke(capsys, promote.main)
    assert out["action"] == "promote" and [g["name"] for g in out["gates"]] == ["pr_auc", "not_collapsed", "psi"]
    assert out["promoted"] is True and out["previous_champion"] != out["champion"]


def test_deploy_renders_without_deploying(capsys: pytest.CaptureFixture[str]) -> None:
    out = _smoke(capsys, deploy.main)
    assert out["deployed"] is False and out["app"] == "tandem" and out["config"].endswith("serve.resolved.yaml")


def test_config_file_is_merged_under_the_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "generate.yaml"
    conf.write_text("events: 1500\ndays: 3\nseed: 4\nout: /nonexistent/ignored\n")
    out = _smoke(capsys, generate.main, "--config", str(conf), "--out", str(tmp_path / "ev"), "--days", "1")
    # the flag's 1 day wins over the file's 3 (a late purchase may spill into a second date partition)
    assert out["days"] <= 2 and out["out"] == str(tmp_path / "ev") and out["events"] > 1_500  # + purchases


def test_bad_config_names_the_field_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "bad.json"
    conf.write_text(json.dumps({"events": 10, "out": str(tmp_path / "x"), "evnets": 3}))
    assert generate.main(["--config", str(conf), "--json"]) == 2
    io = capsys.readouterr()
    assert "evnets" in io.err and "evnets" in json.loads(io.out.strip().splitlines()[-1])["error"]
    assert generate.main(["--events", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--events" in capsys.readouterr().err
    assert generate.main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err
