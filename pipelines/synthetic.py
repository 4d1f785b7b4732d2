"""Synthetic clickstream generator, calibrated to the real samples in ../shared/data.

``python -m jobs.generate --events N --out DIR --seed S [--days D] [--items I]``
writes canonical-schema events as Parquet partitioned by event date
(``DIR/date=YYYY-MM-DD/part-*.parquet``). Generation is vectorised numpy, so
20M events take seconds and a fixed seed gives the same rows.

Calibration (measured on the samples with ``python -m jobs.calibrate``, same method for all):

====================================  ==============================  =========================
statistic                             real sample                     generator default
====================================  ==============================  =========================
events per session (mean / median)    YOOCHOOSE 3.95 / 3; Digi 4.15 / 3  ceil(lognormal(0.9, 0.8))
session length p90 / p99              YOOCHOOSE 7 / 18; Digi 9 / 20    ~7 / ~17
distinct items / events in session    YOOCHOOSE 2.89 / 3.95 (27 % repeats)  repeat prob 0.3
item popularity Zipf (top 200 ranks)  YOOCHOOSE 0.55; Digi sample 0.32   0.84 (steeper head: known gap)
median dwell between events           YOOCHOOSE 56 s                   lognormal median 55 s
anonymous sessions                    Diginetica 57.5 %; YOOCHOOSE 100 %  70 %
sessions with a purchase              Diginetica sample 4.6 %          ~4.5 %
====================================  ==============================  =========================

Purchases are driven by a latent intent per session that also raises cart
activity and session length, so propensity models have real signal to learn;
sessions focus on a category and often move to a related item, so session
recommenders do too.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from models.schema import EVENT_SCHEMA
from store import fs

logger = logging.getLogger(__name__)

DAY_S = 86_400


class GeneratorConfig(BaseModel):
    """Generator knobs; defaults are the calibrated values above."""

    model_config = ConfigDict(extra="forbid")

    events: int = Field(1_000_000, gt=0)
    seed: int = 0
    days: int = Field(7, gt=0)
    start: str = "2026-11-01"
    items: int = Field(50_000, gt=10)
    categories: int = Field(400, gt=0)
    zipf_exponent: float = Field(1.1, gt=0)
    len_mu: float = 0.9
    len_sigma: float = Field(0.8, gt=0)
    repeat_prob: float = Field(0.3, ge=0, lt=1)
    successor_prob: float = Field(0.35, ge=0, lt=1)
    focus_prob: float = Field(0.6, ge=0, le=1)
    dwell_median_s: float = Field(55.0, gt=0)
    anonymous_share: float = Field(0.7, ge=0, le=1)
    intent_share: float = Field(0.11, ge=0, le=1)
    purchase_prob_intent: float = Field(0.38, ge=0, le=1)
    purchase_prob_browse: float = Field(0.004, ge=0, le=1)
    tenants: int = Field(1, ge=1)


def _zipf_sampler(n: int, s: float, rng: np.random.Generator, size: int) -> np.ndarray:
    """Ranks 0..n-1 drawn with P(rank r) proportional to (r+1)^-s."""
    weights = np.arange(1, n + 1, dtype=np.float64) ** -s
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    return np.searchsorted(cdf, rng.random(size), side="right").clip(max=n - 1)


def generate(cfg: GeneratorConfig) -> pa.Table:
    """Build the whole event table in memory (about 100 bytes per event)."""
    rng = np.random.default_rng(cfg.seed)
    mean_len = np.exp(cfg.len_mu + cfg.len_sigma**2 / 2) + 0.5
    n_sessions = int(cfg.events / mean_len * 1.1) + 16

    intent = rng.random(n_sessions) < cfg.intent_share
    lengths = np.ceil(rng.lognormal(cfg.len_mu, cfg.len_sigma, n_sessions)).astype(np.int64)
    lengths = np.maximum(1, lengths + intent * rng.integers(0, 3, n_sessions))
    ends = np.cumsum(lengths)
    n_sessions = int(np.searchsorted(ends, cfg.events, side="left")) + 1
    lengths, intent = lengths[:n_sessions], intent[:n_sessions]
    lengths[-1] -= int(lengths.sum() - cfg.events)
    if lengths[-1] <= 0:  # trim the tail so the total is exact
        lengths, intent = lengths[:-1], intent[:-1]
        n_sessions -= 1
    n = int(lengths.sum())
    sess = np.repeat(np.arange(n_sessions), lengths)
    starts = np.r_[0, np.cumsum(lengths)[:-1]]
    pos = np.arange(n) - starts[sess]

    # Items: a focus category per session, Zipf popularity within and across categories,
    # repeats of earlier items and moves to a related ("successor") item.
    n_cat = min(cfg.categories, cfg.items)
    per_cat = cfg.items // n_cat
    focus = _zipf_sampler(n_cat, 0.7, rng, n_sessions)
    global_items = _zipf_sampler(cfg.items, cfg.zipf_exponent, rng, n)
    in_cat = focus[sess] + n_cat * _zipf_sampler(per_cat, cfg.zipf_exponent, rng, n)
    items = np.where(rng.random(n) < cfg.focus_prob, in_cat, global_items)
    roll = rng.random(n)
    succ = (pos > 0) & (roll < cfg.successor_prob)
    order = np.argsort(pos, kind="stable")
    pos_sorted = pos[order]
    bounds = np.searchsorted(pos_sorted, np.arange(pos_sorted.max() + 2))
    for p in range(1, len(bounds) - 1):
        idx = order[bounds[p]:bounds[p + 1]]
        idx = idx[succ[idx]]
        prev = items[idx - 1]
        items[idx] = (prev + n_cat * (1 + (prev * 7 + 3) % 5)) % (per_cat * n_cat)
    rep = (pos > 0) & (roll >= cfg.successor_prob) & (roll < cfg.successor_prob + cfg.repeat_prob)
    ref = starts[sess[rep]] + (rng.random(rep.sum()) * pos[rep]).astype(np.int64)
    items[rep] = items[ref]

    # Times: sessions start across the window with a diurnal peak; lognormal dwell.
    start_ts = _session_starts(cfg, rng, n_sessions)
    dwell = rng.lognormal(np.log(cfg.dwell_median_s), 1.0, n)
    dwell[starts] = 0.0
    t = start_ts[sess] + _segment_cumsum(dwell, starts)

    # Event types: carts mostly in intent sessions; purchases close intent sessions.
    cart_p = np.where(intent[sess], 0.30, 0.04)
    etype = np.where((pos > 0) & (rng.random(n) < cart_p), 1, 0)
    etype = np.where((etype == 0) & (pos > 1) & (rng.random(n) < 0.01), 2, etype)
    buy = rng.random(n_sessions) < np.where(intent, cfg.purchase_prob_intent, cfg.purchase_prob_browse)
    last = starts + lengths - 1
    buy_idx = last[buy]
    p_items = items[buy_idx]
    p_time = t[buy_idx] + rng.lognormal(np.log(40.0), 0.7, buy.sum())

    price_by_item = np.round(rng.lognormal(3.3, 0.8, cfg.items), 2)
    users = _users(cfg, rng, n_sessions)
    tenant = None
    if cfg.tenants > 1:
        tenant = np.array([f"t{i}" for i in range(cfg.tenants)], dtype=object)[rng.integers(0, cfg.tenants, n_sessions)]

    all_sess = np.r_[sess, np.flatnonzero(buy)]
    all_items = np.r_[items, p_items]
    all_t = np.r_[t, p_time]
    all_type = np.r_[etype, np.full(buy.sum(), 3)]
    types = np.array(["view", "cart", "remove_from_cart", "purchase"], dtype=object)
    sid_str = np.char.add("s", all_sess.astype(str))
    table = pa.table(
        {
            "event_time": pa.array((all_t * 1e6).astype("int64"), pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "session_id": pa.array(sid_str, pa.string()),
            "user_id": pa.array(users[all_sess], pa.string()),
            "item_id": pa.array(np.char.add("i", all_items.astype(str)), pa.string()),
            "event_type": pa.array(types[all_type], pa.string()),
            "price": pa.array(price_by_item[all_items], pa.float64()),
            "category": pa.array(np.char.add("c", (all_items % n_cat).astype(str)), pa.string()),
            "tenant": pa.array(None if tenant is None else tenant[all_sess], pa.string())
            if tenant is not None else pa.nulls(len(all_sess), pa.string()),
        },
        schema=EVENT_SCHEMA,
    )
    return table.sort_by([("event_time", "ascending")])


def _segment_cumsum(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    total = np.cumsum(values)
    offsets = np.repeat(total[starts] - values[starts], np.diff(np.r_[starts, len(values)]))
    return total - offsets


def _session_starts(cfg: GeneratorConfig, rng: np.random.Generator, n: int) -> np.ndarray:
    t0 = np.datetime64(cfg.start, "s").astype("int64")
    day = rng.integers(0, cfg.days, n)
    # Diurnal profile: more sessions in the afternoon and evening (UTC).
    hour = rng.normal(15.0, 4.5, n) % 24.0
    return t0 + day * DAY_S + hour * 3600.0


def _users(cfg: GeneratorConfig, rng: np.random.Generator, n_sessions: int) -> np.ndarray:
    identified = rng.random(n_sessions) >= cfg.anonymous_share
    n_users = max(1, int(identified.sum() / 3))  # returning users: ~3 sessions each
    ids = np.char.add("u", _zipf_sampler(n_users, 0.6, rng, n_sessions).astype(str)).astype(object)
    ids[~identified] = None
    return ids


def write_partitioned(table: pa.Table, out: str | Path, basename: str = "part") -> dict[str, int]:
    """Write ``table`` under ``out/date=YYYY-MM-DD/`` (a local path or s3://) and return rows per date."""
    dates = pc.strftime(table["event_time"], format="%Y-%m-%d")
    counts: dict[str, int] = {}
    for date in pc.unique(dates).to_pylist():
        part = table.filter(pc.equal(dates, date))
        with fs.open_output_stream(fs.join(str(out), f"date={date}", f"{basename}-00000.parquet")) as f:
            pq.write_table(part, f, row_group_size=256_000)
        counts[date] = part.num_rows
    return counts


def replace_partitioned(table: pa.Table, out: Path) -> dict[str, int]:
    """``write_partitioned`` into a staging sibling, then swap it in for ``out``; rows per date."""
    staging = out.with_name(out.name + ".staging")
    if staging.exists():
        shutil.rmtree(staging)
    counts = write_partitioned(table, staging)
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return counts
