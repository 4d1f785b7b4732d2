"""The synthetic generator's statistics next to the real samples' (same code for all).

The library of ``python -m jobs.calibrate [--events N] [--seed S] [--zipf-head K] [--data DIR]``.

Columns: ``pipelines.synthetic.generate(GeneratorConfig(events=N))``, YOOCHOOSE rsc15_100k
``train_full`` (session-rec TSV) and the Diginetica views sample with its purchases, all
read through the ingest adapters. Statistics, computed by ``session_stats``:

- session length (non-purchase events per session): mean / median / p90 / p99;
- distinct items per session (mean, non-purchase events);
- purchase rate: sessions with at least one purchase / sessions with a non-purchase event
  (purchases of sessions outside the views sample are ignored; n/a without purchases);
- item-popularity Zipf exponent: minus the least-squares slope of log(count) on log(rank)
  over the head, ranks 1..``--zipf-head`` (default 200) of the non-purchase item counts;
- anonymous share: sessions whose user id is null;
- median dwell: median gap in seconds between consecutive non-purchase events in a session.

The last line is one JSON object with every number.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.adapters import parse_file
from pipelines.synthetic import GeneratorConfig, generate

logger = logging.getLogger(__name__)

ZIPF_HEAD = 200
DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
ROWS = (
    ("sessions", "sessions"),
    ("events", "events (non-purchase)"),
    ("len_mean", "session length mean"),
    ("len_median", "session length median"),
    ("len_p90", "session length p90"),
    ("len_p99", "session length p99"),
    ("distinct_items_mean", "distinct items / session"),
    ("purchase_rate", "sessions with a purchase"),
    ("zipf_exponent", f"item Zipf exponent (head {ZIPF_HEAD})"),
    ("anonymous_share", "anonymous sessions"),
    ("dwell_median_s", "median dwell (s)"),
)


def zipf_exponent(counts: np.ndarray, head: int = ZIPF_HEAD) -> float:
    """Minus the slope of log(count) vs log(rank) over ranks 1..head (counts in any order)."""
    top = np.sort(np.asarray(counts, dtype=np.float64))[::-1][:head]
    top = top[top > 0]
    if len(top) < 3:
        return float("nan")
    ranks = np.arange(1, len(top) + 1, dtype=np.float64)
    slope = np.polyfit(np.log(ranks), np.log(top), 1)[0]
    return float(-slope)


def session_stats(events: pa.Table, zipf_head: int = ZIPF_HEAD) -> dict[str, Any]:
    """The calibration statistics of a canonical-columns event table (see module docstring)."""
    df = events.select(["event_time", "session_id", "user_id", "item_id", "event_type"]).to_pandas()
    df["event_time"] = pc.cast(events["event_time"], pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy()
    buys = df[df.event_type == "purchase"]
    views = df[df.event_type != "purchase"].sort_values(["session_id", "event_time"], kind="stable")
    lengths = views.groupby("session_id", sort=False).size()
    distinct = views.groupby("session_id", sort=False).item_id.nunique()
    sessions = lengths.index
    purchase_rate = float(sessions.isin(buys.session_id.unique()).mean()) if len(buys) else None
    anon = views.groupby("session_id", sort=False).user_id.apply(lambda s: s.isna().all())
    secs = views.event_time.to_numpy() / 1e6
    same = views.session_id.to_numpy()[1:] == views.session_id.to_numpy()[:-1]
    gaps = np.diff(secs)[same]
    return {
        "sessions": int(len(lengths)),
        "events": int(len(views)),
        "len_mean": round(float(lengths.mean()), 3),
        "len_median": float(lengths.median()),
        "len_p90": float(np.percentile(lengths, 90)),
        "len_p99": float(np.percentile(lengths, 99)),
        "distinct_items_mean": round(float(distinct.mean()), 3),
        "purchase_rate": None if purchase_rate is None else round(purchase_rate, 4),
        "zipf_exponent": round(zipf_exponent(views.item_id.value_counts().to_numpy(), zipf_head), 3),
        "anonymous_share": round(float(anon.mean()), 4),
        "dwell_median_s": round(float(np.median(gaps)), 1) if len(gaps) else None,
    }


def _events(fmt: str, paths: list[Path]) -> pa.Table:
    parts = []
    for path in paths:
        parsed = parse_file(fmt, path.read_bytes(), str(path))
        if parsed.events is not None:
            good = parsed.events.filter(pc.is_null(parsed.events["reason"]))
            if good.num_rows < parsed.events.num_rows:
                logger.warning("%s: %d bad rows left out of the statistics", path,
                               parsed.events.num_rows - good.num_rows)
            parts.append(good)
    return pa.concat_tables(parts)


def calibrate(events: int = 100_000, seed: int = 0, data: Path = DEFAULT_DATA,
              zipf_head: int = ZIPF_HEAD) -> dict[str, dict[str, Any]]:
    """Statistics for the generator and for each real sample found under ``data``."""
    out = {"synthetic": session_stats(generate(GeneratorConfig(events=events, seed=seed)), zipf_head)}
    yc = data / "yoochoose_rsc15_100k" / "yoochoose-clicks-100k_train_full.txt"
    digi = [data / "diginetica" / "train-item-views-sample.csv", data / "diginetica" / "train-purchases.csv"]
    if yc.exists():
        out["yoochoose_rsc15_100k"] = session_stats(_events("session-tsv", [yc]), zipf_head)
    else:
        logger.warning("%s not found: YOOCHOOSE column left out", yc)
    if all(p.exists() for p in digi):
        out["diginetica_sample"] = session_stats(_events("diginetica", digi), zipf_head)
    else:
        logger.warning("%s not found: Diginetica column left out", digi[0])
    return out


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1:
        return str(int(value))
    return str(value)


def render(stats: dict[str, dict[str, Any]], zipf_head: int = ZIPF_HEAD) -> str:
    """A Markdown table: one row per statistic, one column per source."""
    cols = list(stats)
    lines = ["| statistic | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for key, label in ROWS:
        label = label.replace(f"head {ZIPF_HEAD}", f"head {zipf_head}")
        lines.append(f"| {label} | " + " | ".join(_fmt(stats[c].get(key)) for c in cols) + " |")
    return "\n".join(lines)
