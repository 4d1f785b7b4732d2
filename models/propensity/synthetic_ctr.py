"""A generated multi-field CTR log with the faults of real ones, and a known true click rate.

Columns (Criteo/Avazu-like):

- ``click``: the label, drawn from the true probability;
- ``hour``: time order (``YYMMDDHH`` integers, as Avazu writes it);
- ``I1``..``I{numeric}``: counts (log-normal, rounded), about ``missing`` of them missing;
- ``C1``..``C{categorical}``: hashed categorical fields (8 hex digits), Zipf-distributed over
  ``cardinality`` values each, so most values are rare; about ``missing`` of them empty;
- ``site_category``: mixed types: mostly small integers written as numbers, some as words;
- ``device_ip``: an id-like column (nearly every value distinct), which carries no signal;
- ``_p_true``: the true click probability (``_``-prefixed: never a feature; for bidding
  simulations and calibration checks).

The true log-odds is a base rate plus per-value effects of ``C1``..``C3`` (a few frequent
values carry most of it), ``log1p`` effects of ``I1``, ``I2``, an interaction of ``C1`` and
``I1``, an effect of missing ``I3`` and a daily cycle over ``hour``. Pure numpy/pandas; seeded.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _hashes(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.array([f"{v:08x}" for v in rng.integers(0, 2**32, n, dtype=np.uint64)], dtype=object)


def generate_ctr(rows: int = 20_000, *, numeric: int = 6, categorical: int = 8, cardinality: int = 2_000,
                 missing: float = 0.15, base_rate: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """The table described in the module docstring, ``rows`` rows in time order."""
    if rows < 1 or numeric < 3 or categorical < 3:
        raise ValueError("need rows >= 1, numeric >= 3 and categorical >= 3")
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2026-10-21")
    times = start + pd.to_timedelta(np.sort(rng.uniform(0, 10 * 24 * 3600, rows)), unit="s")
    hour_of_day = times.hour.to_numpy()
    out: dict[str, object] = {"hour": times.strftime("%y%m%d%H").astype(int).to_numpy()}
    logit = np.full(rows, np.log(base_rate / (1 - base_rate))) + 0.3 * np.sin(2 * np.pi * hour_of_day / 24)

    counts = {}
    for i in range(1, numeric + 1):
        v = np.round(rng.lognormal(mean=1.0 + 0.3 * i, sigma=1.0, size=rows))
        miss = rng.random(rows) < missing
        counts[i] = (v, miss)
        out[f"I{i}"] = np.where(miss, np.nan, v)
    logit += 0.35 * np.log1p(np.nan_to_num(counts[1][0] * ~counts[1][1]))
    logit -= 0.25 * np.log1p(np.nan_to_num(counts[2][0] * ~counts[2][1]))
    logit += np.where(counts[3][1], 0.4, 0.0)

    ranks = np.arange(1, cardinality + 1)
    zipf = 1.0 / ranks**1.1
    zipf /= zipf.sum()
    for j in range(1, categorical + 1):
        vocab = _hashes(rng, cardinality)
        idx = rng.choice(cardinality, size=rows, p=zipf)
        miss = rng.random(rows) < missing
        values = vocab[idx].copy()
        values[miss] = ""
        out[f"C{j}"] = values
        if j <= 3:
            effect = rng.normal(0, 0.8 if j == 1 else 0.5, cardinality) * (ranks <= 50)
            logit += np.where(miss, 0.0, effect[idx])
            if j == 1:
                logit += np.where(miss | (idx >= 5), 0.0, 0.3 * np.log1p(np.nan_to_num(counts[1][0])))
    cat = rng.integers(0, 12, rows)
    words = np.array(["news", "sports", "games", "shopping"], dtype=object)
    site = np.where(rng.random(rows) < 0.1, words[cat % 4], cat.astype(object))
    out["site_category"] = site
    logit += 0.2 * (cat % 3 == 0)
    out["device_ip"] = _hashes(rng, rows)
    p = 1.0 / (1.0 + np.exp(-logit))
    out["click"] = (rng.random(rows) < p).astype(np.int64)
    out["_p_true"] = p
    return pd.DataFrame(out)
