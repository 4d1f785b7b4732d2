from __future__ import annotations

import sys

import pytest

from jobs import refresh
from pipelines import refresh as loop
from pipelines.refresh import RefreshConfig


def _cfg() -> RefreshConfig:
    return RefreshConfig(events="/e", features="/f", registry="/r", redis="redis://x", lateness_hours=1.0)


def test_steps_are_incremental_features_then_precompute() -> None:
    features, precompute = loop.steps(_cfg())
    assert features[2] == "jobs.features" and "--incremental" in features
    assert precompute[2] == "jobs.precompute" and precompute[precompute.index("--features") + 1] == "/f"


def test_tick_stops_at_the_first_failing_step(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = [[sys.executable, "-c", "import sys; sys.exit(3)", "first"],
             [sys.executable, "-c", "raise SystemExit('never runs')", "second"]]
    monkeypatch.setattr(loop, "steps", lambda cfg: calls)
    report = loop.tick(_cfg())
    assert report["ok"] is False and report["failed"] == calls[0][2]
    assert f"{calls[0][2]}_s" in report and f"{calls[1][2]}_s" not in report


def test_once_returns_the_tick_status(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(loop, "steps", lambda cfg: [[sys.executable, "-c", "pass", "ok"]])
    argv = ["--events", "/e", "--features", "/f", "--registry", "/r", "--redis", "redis://x", "--once"]
    assert refresh.main(argv) == 0
    monkeypatch.setattr(loop, "steps", lambda cfg: [[sys.executable, "-c", "import sys; sys.exit(3)", "bad"]])
    assert refresh.main(argv) == 1
    assert refresh.main(argv[:-1] + ["--every", "0"]) == 2
    assert "--every" in capsys.readouterr().err


def test_checks_run_after_every_tick_even_a_failed_one(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    monkeypatch.setattr(loop, "steps", lambda cfg: [[sys.executable, "-c", "import sys; sys.exit(3)", "bad"]])

    def broken(ctx: object) -> dict:
        raise RuntimeError("boom")

    report = loop.tick(_cfg(), [lambda ctx: {"name": "experiments", "ok": True}, broken])
    assert report["ok"] is False  # the steps' status; the checks report their own
    assert report["checks"][0] == {"name": "experiments", "ok": True}
    assert report["checks"][1]["ok"] is False and "boom" in report["checks"][1]["error"]
    cfg = RefreshConfig(events=str(tmp_path / "data" / "events"), features="/f", registry=str(tmp_path / "none"),
                        redis="redis://x")
    checks = loop.default_checks(cfg)
    assert [c.__name__ for c in checks] == ["experiments", "drift"]
    assert checks[0].logs_uri == str(tmp_path / "data" / "experiment_logs")  # type: ignore[attr-defined]
    assert all(c(None)["skipped"].startswith("no registry") for c in checks)  # nothing created, nothing raised
    assert not (tmp_path / "none").exists()
