"""Exposure and outcome logs -> one row per experiment unit, with attribution windows.

Exposures (one row per shown list): ``variant, session_id, items, time`` (+ ``visitor_id``
for a visitor-unit experiment; ``experiment`` and ``tenant`` rows of other experiments are
ignored). Outcomes: ``session_id, event_type`` (click, cart, purchase), ``item_id``,
``revenue``, ``time``.

An outcome counts for its session when it happens between the session's first exposure and
its last exposure plus the attribution window of its kind (``attribution.click`` for clicks
and carts, ``attribution.purchase`` for purchases); with ``clicks_on_shown_items_only`` a
click counts only on an item that was shown to that session. Bad rows are quarantined with
a reason and counted, never silently dropped: missing ids or times, unknown variants,
unknown event types, negative revenue, and units seen in more than one variant.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

import pandas as pd

from models.experiments.config import ExperimentConfig

logger = logging.getLogger(__name__)

EXPOSURE_COLUMNS = ("variant", "session_id", "time")
OUTCOME_COLUMNS = ("session_id", "event_type", "time")
EVENT_TYPES = ("click", "cart", "purchase")
UNIT_COLUMNS = ("sessions", "exposures", "clicks", "converted", "orders", "revenue", "bounced")

METRIC_COLUMNS: dict[str, tuple[str, str, str | None]] = {
    # metric: (numerator, denominator, pre-period covariate for CUPED)
    "ctr": ("clicks", "exposures", "pre_clicks"),
    "conversion": ("converted", "sessions", "pre_converted"),
    "bounce": ("bounced", "sessions", None),
    "aov": ("revenue", "orders", "pre_revenue"),
    "revenue_per_session": ("revenue", "sessions", "pre_revenue"),
}


@dataclass
class UnitTable:
    """Per-unit KPI components plus what was quarantined on the way."""

    units: pd.DataFrame  # index unit_id; variant, first_time, UNIT_COLUMNS, pre_* covariates
    quarantine: Counter[str] = field(default_factory=Counter)


def _require(df: pd.DataFrame, cols: tuple[str, ...], name: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing} (has {list(df.columns)})")


def _drop(df: pd.DataFrame, bad: pd.Series, reason: str, q: Counter[str]) -> pd.DataFrame:
    n = int(bad.sum())
    if n:
        q[reason] += n
        logger.warning("quarantined %d row(s): %s", n, reason)
    return df.loc[~bad]


def _clean_exposures(exp: pd.DataFrame, config: ExperimentConfig, q: Counter[str]) -> pd.DataFrame:
    cols = EXPOSURE_COLUMNS + (("visitor_id",) if config.unit == "visitor" else ())
    _require(exp, cols, "exposures")
    if "experiment" in exp.columns:
        exp = exp.loc[exp["experiment"] == config.experiment_id]
    if "tenant" in exp.columns:
        exp = exp.loc[exp["tenant"] == config.tenant]
    exp = exp.copy()
    exp["time"] = pd.to_datetime(exp["time"], utc=True, errors="coerce")
    for c in cols:
        exp = _drop(exp, exp[c].isna(), f"exposures: missing {c}", q)
    names = {v.name for v in config.variants}
    exp = _drop(exp, ~exp["variant"].isin(names), "exposures: variant not in the config", q)
    exp["unit_id"] = exp["visitor_id" if config.unit == "visitor" else "session_id"].astype(str)
    exp["session_id"] = exp["session_id"].astype(str)
    n_var = exp.groupby("unit_id")["variant"].nunique()
    mixed = n_var.index[n_var > 1]
    return _drop(exp, exp["unit_id"].isin(mixed), "exposures: unit seen in more than one variant", q)


def _clean_outcomes(out: pd.DataFrame, q: Counter[str]) -> pd.DataFrame:
    _require(out, OUTCOME_COLUMNS, "outcomes")
    out = out.copy()
    out["time"] = pd.to_datetime(out["time"], utc=True, errors="coerce")
    for c in OUTCOME_COLUMNS:
        out = _drop(out, out[c].isna(), f"outcomes: missing {c}", q)
    out = _drop(out, ~out["event_type"].isin(EVENT_TYPES), "outcomes: unknown event_type", q)
    if "revenue" not in out.columns:
        out["revenue"] = 0.0
    out["revenue"] = pd.to_numeric(out["revenue"], errors="coerce").fillna(0.0)
    out = _drop(out, out["revenue"] < 0, "outcomes: negative revenue", q)
    out["session_id"] = out["session_id"].astype(str)
    return out


def unit_table(exposures: pd.DataFrame, outcomes: pd.DataFrame, config: ExperimentConfig,
               pre_period: pd.DataFrame | None = None) -> UnitTable:
    """Join outcomes to exposures by session within the attribution windows; one row per unit."""
    q: Counter[str] = Counter()
    exp = _clean_exposures(exposures, config, q)
    out = _clean_outcomes(outcomes, q)
    sess = exp.groupby("session_id").agg(unit_id=("unit_id", "first"), variant=("variant", "first"),
                                         first=("time", "min"), last=("time", "max"), exposures=("time", "size"))
    out = out.loc[out["session_id"].isin(sess.index)]
    o = out.join(sess[["first", "last"]], on="session_id")
    window = pd.Series(pd.Timedelta(config.attribution.click), index=o.index)
    window[o["event_type"].eq("purchase")] = pd.Timedelta(config.attribution.purchase)
    in_window = (o["time"] >= o["first"]) & (o["time"] <= o["last"] + window)
    o = o.loc[in_window]
    clicks = o.loc[o["event_type"].eq("click")]
    if config.attribution.clicks_on_shown_items_only and len(clicks):
        _require(exp, ("items",), "exposures")
        _require(clicks, ("item_id",), "outcomes")
        shown = exp[["session_id", "items"]].explode("items").dropna().rename(columns={"items": "item_id"})
        shown = shown.astype({"item_id": str}).drop_duplicates()
        clicks = clicks.astype({"item_id": str}).merge(shown, on=["session_id", "item_id"], how="inner")
    buys = o.loc[o["event_type"].eq("purchase")]
    engaged = o.loc[o["event_type"].isin(("click", "cart", "purchase")), "session_id"].unique()
    sess["clicks"] = clicks.groupby("session_id").size().reindex(sess.index, fill_value=0).astype(float)
    sess["orders"] = buys.groupby("session_id").size().reindex(sess.index, fill_value=0).astype(float)
    sess["revenue"] = buys.groupby("session_id")["revenue"].sum().reindex(sess.index, fill_value=0.0)
    sess["converted"] = (sess["orders"] > 0).astype(float)
    sess["bounced"] = ((sess["exposures"] <= 1) & ~sess.index.isin(engaged)).astype(float)
    sess["sessions"] = 1.0
    sess["exposures"] = sess["exposures"].astype(float)
    units = sess.groupby("unit_id").agg(
        variant=("variant", "first"), first_time=("first", "min"),
        **{c: (c, "sum") for c in UNIT_COLUMNS})
    if pre_period is not None:
        _require(pre_period, ("unit_id",), "pre_period")
        pre = pre_period.assign(unit_id=pre_period["unit_id"].astype(str)).drop_duplicates("unit_id")
        pre_cols = [c for c in pre.columns if c.startswith("pre_")]
        units = units.join(pre.set_index("unit_id")[pre_cols], how="left")
        units[pre_cols] = units[pre_cols].apply(pd.to_numeric, errors="coerce").fillna(0.0)
    return UnitTable(units=units, quarantine=q)
