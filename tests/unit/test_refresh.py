"""The refresh loop's scheduling and config, without Ray or Redis."""

from __future__ import annotations

import threading
from pathlib import Path

import pandas as pd
import pytest

from jobs import refresh
from pipelines import entrypoint
from pipelines.refresh import FileClock, RefreshConfig, RefreshLoop, default_checks, last_slot, tick_id

pytestmark = pytest.mark.unit

BASE = {"events": "/e", "features": "/f", "registry": "/r", "redis": "redis://127.0.0.1:1/0"}


def test_slots_are_aligned_and_tick_ids_deterministic() -> None:
    now = pd.Timestamp("2026-11-03T12:07:31Z")
    assert last_slot(now, 300) == pd.Timestamp("2026-11-03T12:00:00Z")
    assert last_slot(now, 3600) == pd.Timestamp("2026-11-03T11:00:00Z")
    assert last_slot(now, 86400) == pd.Timestamp("2026-11-02T00:00:00Z")
    assert tick_id("fast", last_slot(now, 300)) == "fast-20261103T120000"
    assert tick_id("fast", last_slot(now + pd.Timedelta(seconds=100), 300)) == "fast-20261103T120000"


def test_due_runs_each_ended_slot_once_and_waits_for_retries() -> None:
    loop = RefreshLoop.__new__(RefreshLoop)  # scheduling only: no Redis client
    loop.cfg = RefreshConfig(**BASE, slow_every_s=3600)
    loop.done, loop.retry_at = {}, {}
    now = pd.Timestamp("2026-11-03T12:07:00Z")
    assert loop.due(now) == [("fast", pd.Timestamp("2026-11-03T12:00:00Z")),
                             ("slow", pd.Timestamp("2026-11-03T11:00:00Z"))]
    loop.done = {"fast": pd.Timestamp("2026-11-03T12:00:00Z"), "slow": pd.Timestamp("2026-11-03T11:00:00Z")}
    assert loop.due(now) == []
    later = pd.Timestamp("2026-11-03T12:31:00Z")  # a long tick: only the latest slot runs
    assert loop.due(later) == [("fast", pd.Timestamp("2026-11-03T12:25:00Z"))]
    loop.retry_at = {f"fast-{pd.Timestamp('2026-11-03T12:25:00Z')}": float("inf")}
    assert loop.due(later) == []
    assert loop.next_wake(now) == pd.Timestamp("2026-11-03T12:10:00Z")


def test_config_rejects_unknown_and_bad_fields_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="fast_every_s"):
        RefreshConfig(**BASE, fast_every_s=0)
    with pytest.raises(ValueError, match="extra_forbidden|fast_evry"):
        RefreshConfig(**BASE, fast_evry=5)
    cfg = tmp_path / "refresh.yaml"
    cfg.write_text("events: /e\nfeatures: /f\nregistry: /r\nredis: redis://x\nslow_every_s: 3600\n")
    parsed = entrypoint.parse_config(refresh.JOB, ["--config", str(cfg), "--fast-every", "60", "--no-swap"])
    assert (parsed.fast_every_s, parsed.slow_every_s, parsed.serve_app) == (60, 3600, None)
    assert [c for c, _ in RefreshLoop.cadences_of(parsed)] == ["fast", "slow"]
    cfg.write_text("events: /e\nfeatures: /f\nregistry: /r\nredis: redis://x\nlateness: 3\n")
    assert refresh.main(["--config", str(cfg)]) == 2
    assert "lateness" in capsys.readouterr().err
    assert refresh.main(["--config", str(cfg).replace("refresh", "nope")]) == 2


def test_default_checks_are_guardrails_and_drift_and_skip_without_a_registry(tmp_path: Path) -> None:
    cfg = RefreshConfig(**{**BASE, "events": str(tmp_path / "data" / "events"),
                           "registry": str(tmp_path / "none")})
    checks = default_checks(cfg)
    assert [c.__name__ for c in checks] == ["experiments", "drift"]
    assert checks[0].logs_uri == str(tmp_path / "data" / "experiment_logs")  # type: ignore[attr-defined]
    assert all(c(None)["skipped"].startswith("no registry") for c in checks)  # nothing created, nothing raised
    assert not (tmp_path / "none").exists()


def test_file_clock_reads_the_simulated_time(tmp_path: Path) -> None:
    path = tmp_path / "clock"
    path.write_text("2026-11-03T12:00:00+00:00")
    clock = FileClock(str(path), poll_s=0.01)
    assert clock.now() == pd.Timestamp("2026-11-03T12:00:00Z")
    clock.sleep_until(pd.Timestamp("2026-11-03T13:00:00Z"), stop_s=0.05)  # returns at stop_s
    path.write_text("2026-11-03T13:00:00Z")
    clock.sleep_until(pd.Timestamp("2026-11-03T13:00:00Z"))
    path.write_text("")  # being rewritten: read again, never NaT
    threading.Timer(0.1, lambda: path.write_text("2026-11-03T14:00:00Z")).start()
    assert clock.now() == pd.Timestamp("2026-11-03T14:00:00Z")
