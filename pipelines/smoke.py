"""Tiny real inputs for ``--smoke-test`` runs: synthetic events, a session feature table, session
files for the recommenders and a registry with a propensity champion. No Ray, seconds each.

A job's smoke hook calls these only for the inputs its caller did not give, in a temp dir
the entrypoint removes afterwards, so the job then runs its normal code path at tiny scale.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from models.features.sequences import sequences
from models.features.session import LABEL, SESSION_FEATURES, session_features
from pipelines.synthetic import GeneratorConfig, generate, write_partitioned

logger = logging.getLogger(__name__)

SMOKE_EVENTS = 4_000
TIME_COLUMN = "cutoff_time"


def _tiny(seed: int = 0) -> GeneratorConfig:
    # more buyers than the calibrated 4.5 %, so every split of a few hundred sessions has positives
    return GeneratorConfig(events=SMOKE_EVENTS, days=3, items=300, seed=seed, intent_share=0.3)


def events_dir(root: Path, seed: int = 0) -> str:
    """Canonical events under ``root/events/date=.../``."""
    root.mkdir(parents=True, exist_ok=True)
    write_partitioned(generate(_tiny(seed)), root / "events")
    return str(root / "events")


def session_table(root: Path, seed: int = 0) -> str:
    """A session feature table (``models.features.session``) with the label ``purchased``."""
    root.mkdir(parents=True, exist_ok=True)
    feats = session_features(generate(_tiny(seed)).to_pandas())
    path = root / "sessions.parquet"
    feats.to_parquet(path, index=False)
    logger.info("smoke: %d sessions, %d with a purchase", len(feats), int(feats[LABEL].sum()))
    return str(path)


def feature_table_inputs(values: dict[str, object], root: Path) -> None:
    """``features``/``label``/``time_column`` of a tiny session table, unless ``features`` is given."""
    if "features" not in values:
        values.update(features=session_table(root), label=LABEL, time_column=TIME_COLUMN)


def session_files(root: Path, seed: int = 0) -> tuple[str, str]:
    """Train and test files in the ``session-lines`` format (one session's items per line), time-split."""
    root.mkdir(parents=True, exist_ok=True)
    seqs = sequences(generate(_tiny(seed)).to_pandas()).sort_values("last_time", kind="stable")
    lines = [" ".join(items) for items in seqs["items"] if len(items) > 1]
    cut = int(len(lines) * 0.8)
    train, test = root / "train.txt", root / "test.txt"
    train.write_text("\n".join(lines[:cut]) + "\n", encoding="utf-8")
    test.write_text("\n".join(lines[cut:]) + "\n", encoding="utf-8")
    return str(train), str(test)


def propensity_registry(root: Path, versions: int = 1) -> str:
    """A registry with ``versions`` tiny LightGBM propensity models; the first is champion."""
    from models.propensity.artifact import save
    from models.propensity.finalize import fit_local
    from models.propensity.model import PropensityConfig
    from models.propensity.predictor import REGISTRY_NAME, PropensityPredictor
    from store.registry import Registry

    table = pq.read_table(session_table(root)).to_pandas()
    half = len(table) // 2
    train, val = table.iloc[:half], table.iloc[half:]
    reg = Registry(str(root / "registry"))
    for i in range(versions):
        booster, art = fit_local(train, val, list(SESSION_FEATURES), LABEL, PropensityConfig(num_boost_round=10, seed=i))
        out = root / f"model-{i}"
        save(out, booster, art)
        scores = PropensityPredictor(str(out)).predict_proba(val)
        art.metrics["validation_scores"] = np.quantile(scores, np.linspace(0, 1, 21)).tolist()
        save(out, booster, art)
        mv = reg.register(REGISTRY_NAME, out, {"metrics": art.metrics, "kind": art.kind})
        if reg.champion(REGISTRY_NAME) is None:
            reg.set_champion(REGISTRY_NAME, mv.version, "smoke test")
    return reg.uri


def feature_dir(root: Path, seed: int = 0) -> str:
    """A feature output as the feature job lays it out (``sessions/``, ``sequences/``, ``items/``),
    computed in process by the same ``models.features`` code (no Ray)."""
    from models.features.item import items_from_daily

    events = generate(_tiny(seed)).to_pandas()
    out = root / "features"
    for name in ("sessions", "sequences", "items"):
        (out / name).mkdir(parents=True, exist_ok=True)
    session_features(events).to_parquet(out / "sessions" / "part-0.parquet", index=False)
    sequences(events).to_parquet(out / "sequences" / "part-0.parquet", index=False)
    daily = events.assign(date=events["event_time"].dt.strftime("%Y-%m-%d"),
                          views=(events["event_type"] == "view").astype(int),
                          carts=(events["event_type"] == "cart").astype(int),
                          purchases=(events["event_type"] == "purchase").astype(int))
    counts = daily.groupby(["date", "item_id"], as_index=False)[["views", "carts", "purchases"]].sum()
    items_from_daily(counts, events["event_time"].max()).to_parquet(out / "items" / "part-0.parquet", index=False)
    return str(out)


def recommender_champion(registry_uri: str, root: Path, seed: int = 0) -> str:
    """Register a popularity recommender over the tiny sessions as champion; returns its version."""
    from models.session_rec.artifact import pop_artifact
    from models.session_rec.predictor import REGISTRY_NAME
    from store.registry import Registry

    sessions = [list(s) for s in sequences(generate(_tiny(seed)).to_pandas())["items"]]
    art = pop_artifact(root / "pop", sessions)
    reg = Registry(registry_uri)
    mv = reg.register(REGISTRY_NAME, art, {"model_type": "pop"})
    reg.set_champion(REGISTRY_NAME, mv.version, "smoke test")
    return mv.version


def private_redis(root: Path) -> tuple[str, Callable[[], None]]:
    """A redis-server of our own on a free loopback port (pid file under ``root``); (URL, stop)."""
    from cluster.local import free_port, start_redis, stop_group

    root.mkdir(parents=True, exist_ok=True)
    port, pid_file = free_port(), root / "redis.pid"
    start_redis(port, root, pid_file)

    def stop() -> None:
        stop_group(pid_file, "smoke-test redis-server")

    return f"redis://127.0.0.1:{port}/0", stop
