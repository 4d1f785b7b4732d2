"""Column typing and encoding of a raw training table, fitted on the training rows and stored
with the model so that batch and online scoring encode the same way.

Rules, applied to every column except the label, the time column, ``_``-prefixed columns,
tandem's id/bookkeeping columns (``NON_FEATURES``) and ``exclude``:

- **numeric** (numbers and booleans) stay numbers; missing stays missing (NaN).
- **text with numbers** ("mixed types"): when at least ``NUMERIC_SHARE`` of the non-missing
  values parse as numbers, the column is numeric and the rest count as missing (logged with
  an example); otherwise every value is a category, numbers written canonically (``7``,
  ``7.0`` and ``"7"`` are one category).
- **identifiers**: an integer column named like an id (``id``, ``user_id``, ``itemId``,
  ``visitorid``) is categorical, never a magnitude.
- **categorical** columns get LightGBM native categorical codes: ``OTHER`` (0) for values
  seen fewer than ``min_count`` times in training, beyond the ``max_categories`` most frequent
  ones, or unseen at scoring time; ``MISSING`` (1) for missing or empty values; 2, 3, ... for
  the kept values, most frequent first.

A column that cannot be used is dropped with a warning that names it, and the reason is kept
in ``Encoding.dropped`` (and in the job's JSON): all values missing; constant; id-like (at
least ``ID_SHARE`` of the non-missing values distinct: nothing generalizes); every value
rarer than ``min_count``; timestamps (text in ISO date form or datetime columns: pass them as
the time column, or derive features); integers beyond 2**53 held as floating point (they
have lost their precision, as ids do in a spreadsheet's ``2.10381E+18``); other types.
When no usable column remains, ``DataError`` lists every column with its reason.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

OTHER, MISSING = 0, 1  # categorical codes; kept values start at FIRST
FIRST = 2
NUMERIC_SHARE = 0.95
ID_SHARE = 0.9
MAX_CATEGORIES = 1000
FLOAT_EXACT = 2.0**53
_ID_NAME = re.compile(r"(^|[_\-\s.])id$|[a-z0-9]I[dD]$|^(user|item|visitor|session|product|customer|order|device)id$",
                      re.IGNORECASE)
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]|$)")


class DataError(ValueError):
    """The table cannot be trained on; the message names the file and column."""


def default_min_count(rows: int) -> int:
    """Categories seen fewer times than this in training go to ``OTHER``: 10, less for small tables."""
    return int(min(10, max(2, rows // 100)))


def looks_like_id(name: str) -> bool:
    return bool(_ID_NAME.search(name.strip()))


def canonical_strings(s: pd.Series) -> pd.Series:
    """Values as category strings (object dtype), ``None`` where missing or blank.

    Numbers are written canonically: integral values without a decimal point."""
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.map(lambda v: None if pd.isna(v) else str(bool(v))).astype(object)
    if pd.api.types.is_integer_dtype(s.dtype):
        text = s.astype("string")
        return text.astype(object).where(text.notna(), None)
    if pd.api.types.is_float_dtype(s.dtype):
        v = s.to_numpy(np.float64)
        out = np.full(len(v), None, dtype=object)
        integral = np.isfinite(v) & (np.floor(v) == v) & (np.abs(v) < FLOAT_EXACT)
        out[integral] = v[integral].astype(np.int64).astype(str)
        other = ~np.isnan(v) & ~integral
        out[other] = [repr(float(x)) for x in v[other]]
        return pd.Series(out, index=s.index, dtype=object)
    if pd.api.types.is_string_dtype(s.dtype) and not pd.api.types.is_object_dtype(s.dtype):
        text = s.str.strip()
        return text.astype(object).where(text.notna() & (text != ""), None)
    return pd.Series([_canonical(v) for v in s.to_numpy(dtype=object)], index=s.index, dtype=object)


def _canonical(v: Any) -> str | None:
    if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float | np.floating) and np.isnan(v)):
        return None
    if isinstance(v, bool | np.bool_):
        return str(bool(v))
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        f = float(v)
        return str(int(f)) if f.is_integer() and abs(f) < FLOAT_EXACT else repr(f)
    text = str(v).strip()
    return text or None


def numeric_values(s: pd.Series) -> pd.Series:
    """Float values; anything that is not a number is missing (NaN)."""
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.astype(np.float64)
    if pd.api.types.is_numeric_dtype(s.dtype):
        return s.astype(np.float64)
    values = s.to_numpy(dtype=object)
    out = pd.to_numeric(pd.Series([v.strip() if isinstance(v, str) else v for v in values], index=s.index,
                                  dtype=object), errors="coerce")
    return out.astype(np.float64)


@dataclass
class Column:
    name: str
    kind: Literal["numeric", "categorical"]
    values: list[str] = field(default_factory=list)  # categorical: kept values, code FIRST + index


@dataclass
class Encoding:
    """Fitted column plan: ``transform`` turns any frame with these columns into the float matrix
    frame the booster was trained on (categorical codes as floats)."""

    columns: list[Column]
    dropped: dict[str, str] = field(default_factory=dict)
    min_count: int = 10
    max_categories: int = MAX_CATEGORIES

    @property
    def feature_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def categorical(self) -> list[str]:
        return [c.name for c in self.columns if c.kind == "categorical"]

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        """Encoded float frame in ``feature_names`` order, same index; an absent column is
        missing (NaN, or the ``MISSING`` code for a categorical one)."""
        out: dict[str, np.ndarray] = {}
        for col in self.columns:
            if col.name not in df.columns:
                out[col.name] = np.full(len(df), MISSING if col.kind == "categorical" else np.nan, dtype=np.float64)
            elif col.kind == "numeric":
                out[col.name] = numeric_values(df[col.name]).to_numpy(np.float64)
            else:
                out[col.name] = category_codes(canonical_strings(df[col.name]), col.values)
        return pd.DataFrame(out, index=df.index, columns=self.feature_names)

    def to_dict(self) -> dict[str, Any]:
        return {"columns": [asdict(c) for c in self.columns], "dropped": dict(self.dropped),
                "min_count": self.min_count, "max_categories": self.max_categories}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Encoding:
        return cls(columns=[Column(**c) for c in d.get("columns", [])], dropped=dict(d.get("dropped", {})),
                   min_count=int(d.get("min_count", 10)), max_categories=int(d.get("max_categories", MAX_CATEGORIES)))


def category_codes(strings: pd.Series, values: list[str]) -> np.ndarray:
    """``MISSING`` for missing, ``FIRST + i`` for ``values[i]``, ``OTHER`` for anything else."""
    codes = pd.Categorical(strings, categories=values).codes.astype(np.float64)
    missing = strings.isna().to_numpy()
    return np.where(codes >= 0, codes + FIRST, np.where(missing, MISSING, OTHER))


def _plan_text(name: str, s: pd.Series, min_count: int, max_categories: int) -> Column | str:
    """A categorical (or numeric, for mostly-number text) column, or why it cannot be used."""
    strings = canonical_strings(s)
    present = strings.dropna()
    if present.empty:
        return "all values missing"
    numbers = pd.to_numeric(present, errors="coerce")
    share = float(numbers.notna().mean())
    if share >= NUMERIC_SHARE:
        if share < 1.0:
            bad = present[numbers.isna()]
            logger.warning("column %r: %d of %d values are not numbers (e.g. %r); they count as missing",
                           name, len(bad), len(present), bad.iloc[0])
        return Column(name, "numeric")
    if present.str.match(_ISO_DATE).mean() >= NUMERIC_SHARE:
        return "timestamps (text dates): pass it as the time column or derive features from it"
    if share > 0:
        logger.debug("column %r: mixed numbers and text (%.0f %% numbers): categorical", name, 100 * share)
    return _plan_categories(name, present, len(s), min_count, max_categories)


def _plan_categories(name: str, present: pd.Series, rows: int, min_count: int,
                     max_categories: int) -> Column | str:
    counts = present.value_counts(sort=False)
    if len(present) >= 10 and len(counts) >= ID_SHARE * len(present):
        return f"id-like: {len(counts)} distinct values in {len(present)} non-missing rows"
    counts = counts.sort_index(kind="stable").sort_values(ascending=False, kind="stable")
    kept = counts[counts >= min_count].index[:max_categories].tolist()
    distinct_codes = len(kept) + int(len(kept) < len(counts)) + int(len(present) < rows)
    if not kept:
        return f"every value is rarer than min_count={min_count} ({len(counts)} distinct values)"
    if distinct_codes < 2:
        return "constant"
    return Column(name, "categorical", [str(v) for v in kept])


def _plan(name: str, s: pd.Series, min_count: int, max_categories: int) -> Column | str:
    if s.isna().all():
        return "all values missing"
    dtype = s.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype) or isinstance(dtype, pd.PeriodDtype):
        return "timestamps: pass it as the time column or derive features from it"
    if pd.api.types.is_timedelta64_dtype(dtype):
        return "durations (timedelta): convert to seconds first"
    if pd.api.types.is_bool_dtype(dtype):
        return Column(name, "numeric") if s.nunique(dropna=True) > 1 or s.isna().any() else "constant"
    if pd.api.types.is_numeric_dtype(dtype):
        values = s.astype(np.float64)
        present = values.dropna()
        integral = bool(np.all(np.isfinite(present)) and np.all(np.floor(present) == present))
        if pd.api.types.is_float_dtype(dtype) and integral and float(np.abs(present).max()) >= FLOAT_EXACT:
            return (f"integers beyond 2**53 held as floating point (e.g. {present.iloc[0]:.6g}) have lost their "
                    "precision: ids mangled by scientific notation?")
        if integral and looks_like_id(name):
            return _plan_categories(name, canonical_strings(s).dropna(), len(s), min_count, max_categories)
        if present.nunique() < 2 and not values.isna().any():
            return "constant"
        return Column(name, "numeric")
    if pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype) or isinstance(
            dtype, pd.CategoricalDtype):
        return _plan_text(name, s.astype(object) if isinstance(dtype, pd.CategoricalDtype) else s, min_count,
                          max_categories)
    return f"unsupported type {dtype}"


def fit_encoding(train: pd.DataFrame, skip: set[str], min_count: int | None = None,
                 max_categories: int = MAX_CATEGORIES, source: str = "table") -> Encoding:
    """Plan every column of ``train`` but those in ``skip`` (and ``_``-prefixed ones)."""
    min_count = default_min_count(len(train)) if min_count is None else min_count
    columns, dropped = [], {}
    for name in train.columns:
        if name in skip or str(name).startswith("_"):
            continue
        planned = _plan(str(name), train[name], min_count, max_categories)
        if isinstance(planned, str):
            dropped[str(name)] = planned
            logger.warning("%s: column %r is not used: %s", source, name, planned)
        else:
            columns.append(planned)
    if not columns:
        why = "; ".join(f"{k!r}: {v}" for k, v in dropped.items()) or "no columns besides the label and time"
        raise DataError(f"{source}: no usable feature column ({why})")
    return Encoding(columns, dropped, min_count, max_categories)


def leaking_column(x: pd.DataFrame, y: np.ndarray, min_class: int = 5) -> tuple[str, str] | None:
    """The first column that gives the label away on these rows, with how: its values (or its
    missingness) split the two classes perfectly. ``None`` when there are fewer than
    ``min_class`` rows of either class (a perfect split is then too likely by chance)."""
    y = np.asarray(y)
    pos, neg = y == 1, y == 0
    if pos.sum() < min_class or neg.sum() < min_class:
        return None
    for name in x.columns:
        v = x[name].to_numpy(np.float64)
        miss = np.isnan(v)
        if miss.any() and (np.array_equal(miss, pos) or np.array_equal(miss, neg)):
            return str(name), "it is missing exactly when the label is " + ("1" if np.array_equal(miss, pos) else "0")
        if miss.any():
            continue
        lo_pos, hi_pos, lo_neg, hi_neg = v[pos].min(), v[pos].max(), v[neg].min(), v[neg].max()
        if hi_neg < lo_pos:
            return str(name), f"every training row above {hi_neg:.6g} is positive and every other negative"
        if hi_pos < lo_neg:
            return str(name), f"every training row below {lo_neg:.6g} is positive and every other negative"
    return None
