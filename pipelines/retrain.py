"""The slow tick's retrain: a time-split snapshot, both trainers, then the promotion gates.

The feature output is cut at one time: sessions before it train the candidates, sessions
after it are the holdout on which candidate and champion are scored by the SAME gates
(``pipelines.promotion``). The champion was trained on older data, so neither model has
seen the holdout. Each trainer runs as its own process (``python -m jobs.train_*``,
connected to the same Ray cluster through ``RAY_ADDRESS``): the training stack's memory
goes back to the OS when it exits, so the long-lived loop stays flat over days of retrains.
Every file lands in the tick's work dir, which the loop removes on every exit path.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.dataset as pads

from models.propensity.predictor import REGISTRY_NAME as PROPENSITY
from models.session_rec.data import raw_next_item_pairs
from models.session_rec.predictor import REGISTRY_NAME as RECOMMENDER
from pipelines.promotion import Gate, apply_gates, load_holdout, propensity_gates, recommender_gates
from store import fs
from store.registry import Registry

logger = logging.getLogger(__name__)


class RetrainError(RuntimeError):
    """A trainer failed; the message holds the end of its log."""


def _read(uri: str) -> pd.DataFrame:
    filesystem, path = fs.filesystem(uri)
    return pads.dataset(path, filesystem=filesystem, format="parquet", partitioning="hive").to_table().to_pandas()


def champions_seen_until(reg: Registry, names: list[str]) -> pd.Timestamp | None:
    """The latest time any current champion trained on (its data window in the registry): a
    propensity model's validation end, a recommender's train/test cut; None when unknown."""
    seen: list[pd.Timestamp] = []
    for name in names:
        version = reg.champion(name)
        if version is None:
            continue
        window = reg.get(name, version).meta.get("data_window") or {}
        value = window.get("validation_max") if name == PROPENSITY else window.get("time_cut")
        try:  # the recommender's cut is unix seconds
            stamp = pd.Timestamp(value, unit="s") if isinstance(value, int | float) else \
                pd.Timestamp(value) if value else None
        except (TypeError, ValueError):
            stamp = None
        if stamp is not None and not pd.isna(stamp):
            seen.append(stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC"))
    return max(seen) if seen else None


def snapshot(features: Path | str, work: Path, time_column: str, holdout_fraction: float,
             not_before: pd.Timestamp | None = None, min_holdout_fraction: float = 0.02) -> dict[str, Any]:
    """Write train/holdout copies of ``sessions`` and ``sequences`` split at one time cut.

    The cut is the ``1 - holdout_fraction`` time quantile, moved later to ``not_before`` (the end
    of what the champions trained on) so that the gates compare both models on sessions neither
    saw, as long as at least ``min_holdout_fraction`` of the sessions stay in the holdout."""
    current = fs.resolve(str(features))  # the published version (a local symlink or an s3:// pointer)
    sessions = _read(fs.join(current, "sessions"))
    sequences = _read(fs.join(current, "sequences"))
    if sessions.empty or sequences.empty:
        raise RetrainError(f"{features}: no sessions to train on")
    times = pd.to_datetime(sessions[time_column], utc=True)
    cut = times.quantile(1.0 - holdout_fraction)
    moved = False
    if not_before is not None and not_before > cut and (times > not_before).mean() >= min_holdout_fraction:
        cut, moved = not_before, True
    out = work / "data"
    out.mkdir(parents=True, exist_ok=True)
    sessions = sessions.drop(columns=["date"], errors="ignore")
    sessions[times < cut].to_parquet(out / "train_sessions.parquet")
    sessions[times >= cut].to_parquet(out / "holdout_sessions.parquet")
    last = pd.to_datetime(sequences["last_time"], utc=True)
    sequences = sequences.drop(columns=["date"], errors="ignore")
    (out / "train_sequences").mkdir(exist_ok=True)
    sequences[last < cut].to_parquet(out / "train_sequences" / "part-0.parquet")
    holdout_seq = sequences[last >= cut]
    return {"cut": str(cut), "cut_after_champions": moved, "train_sessions": int((times < cut).sum()), "holdout_sessions": int((times >= cut).sum()),
            "holdout_sequences": len(holdout_seq), "dir": str(out),
            "pairs": raw_next_item_pairs(holdout_seq["items"].tolist(), max_pairs=5000)}


def run_job(module: str, args: list[str], timeout_s: float, log: Path) -> dict[str, Any]:
    """``python -m module args --json`` in this environment; returns its last JSON line."""
    cmd = [sys.executable, "-m", module, *args, "--json"]
    t0 = time.perf_counter()
    with log.open("wb") as err:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, timeout=timeout_s, env=dict(os.environ),
                              cwd=Path(__file__).resolve().parents[1])
    lines = [ln for ln in proc.stdout.decode(errors="replace").splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = log.read_text(errors="replace").strip().splitlines()[-8:]
        raise RetrainError(f"{module} exited {proc.returncode}: " + " | ".join(tail))
    out = json.loads(lines[-1])
    out["_seconds"] = round(time.perf_counter() - t0, 1)
    return out


def train(cfg: Any, work: Path, snap: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Train and register both candidates (never promoted here); returns each job's JSON line."""
    data = Path(snap["dir"])
    reg = Registry(cfg.registry)
    out: dict[str, dict[str, Any]] = {}
    if PROPENSITY in cfg.models:
        prop_args = ["--features", str(data / "train_sessions.parquet"), "--label", cfg.propensity_label,
                     "--time-column", cfg.time_column, "--registry", cfg.registry,
                     "--out", str(work / "art-propensity"), *cfg.propensity_args]
        out[PROPENSITY] = run_job("jobs.train_propensity", prop_args, cfg.train_timeout_s,
                                  work / "train_propensity.log")
    if RECOMMENDER not in cfg.models:
        return out
    champion = reg.champion(RECOMMENDER)
    model = cfg.recommender_model or (reg.get(RECOMMENDER, champion).meta.get("model_type") if champion else None) \
        or "vsknn"
    rec_args = ["--train", str(data / "train_sequences"), "--format", "parquet", "--model", model,
                "--registry", cfg.registry, "--artifact-dir", str(work / "art-recommender"),
                "--storage", str(work / "train-storage"), *cfg.recommender_args]
    out[RECOMMENDER] = run_job("jobs.train_recommender", rec_args, cfg.train_timeout_s, work / "train_recommender.log")
    return out


def decide(cfg: Any, reg: Registry, trained: dict[str, dict[str, Any]], snap: dict[str, Any],
           champions: dict[str, str | None]) -> dict[str, dict[str, Any]]:
    """Each candidate through its gates against the champion of before this tick (registry untouched)."""
    decisions: dict[str, dict[str, Any]] = {}
    for name, result in trained.items():
        version, champion = result.get("version"), champions.get(name)
        if version is None:
            decisions[name] = {"promoted": False, "reason": "the trainer registered no version", "gates": []}
            continue
        if champion is None:  # the registry's first model: the trainer made it champion
            decisions[name] = {"promoted": True, "candidate": version, "champion": version,
                               "previous_champion": None, "gates": [], "first": True}
            continue
        try:
            gates: list[Gate]
            if name == PROPENSITY:
                holdout = load_holdout(str(Path(snap["dir"]) / "holdout_sessions.parquet"), cfg.propensity_label,
                                       None, [reg.get(name, v) for v in (version, champion)])
                gates = propensity_gates(reg, version, champion, holdout, cfg.tolerance, cfg.psi_max,
                                         cfg.base_rate_ratio, cfg.model_cache_dir)
            else:
                gates = recommender_gates(reg, version, champion, snap["pairs"], cfg.tolerance,
                                          cache_dir=cfg.model_cache_dir)
        except Exception as exc:  # noqa: BLE001 - a gate that cannot run refuses the candidate
            logger.exception("gates for %s %s could not run", name, version)
            gates = [Gate("evaluation", False, f"{type(exc).__name__}: {exc}")]
        decisions[name] = apply_gates(reg, name, version, champion, gates, set_champion=False)
    return decisions


def promote(reg: Registry, decisions: dict[str, dict[str, Any]]) -> None:
    for name, d in decisions.items():
        if d.get("promoted") and not d.get("first"):
            reg.set_champion(name, d["candidate"], "; ".join(f"{g['name']}: {g['detail']}" for g in d["gates"]))


def roll_back(reg: Registry, decisions: dict[str, dict[str, Any]]) -> None:
    for name, d in decisions.items():
        if d.get("promoted") and not d.get("first") and reg.champion(name) == d["candidate"]:
            reg.rollback(name)
            d["rolled_back"] = True
