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
