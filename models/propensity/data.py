"""Loading and splitting propensity training tables (tandem's own or foreign ones such as UCI).

Splits follow time when there is a time column (train, then validation, then test);
otherwise they are stratified and seeded, and the split says so.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

NON_FEATURES = {"session_id", "user_id", "tenant", "cutoff_time", "date", "purchased", "purchase_within_7d",
                "bucket", "reason", "path"}
TRUE = {"1", "true", "t", "yes", "y"}
FALSE = {"0", "false", "f", "no", "n"}


LABEL = "_label"  # the binary label column of a prepared frame


class DataError(ValueError):
    """The table cannot be trained on; the message names the file and column."""


def load_table(path: str) -> pd.DataFrame:
    """Parquet (file or hive-partitioned dir, local or s3://) or CSV (``;`` or ``,`` separated)."""
    p = Path(path)
    if "://" not in path and not p.exists():
        raise DataError(f"{path}: no such file or directory")
    if path.endswith((".csv", ".txt", ".tsv")):
        with open(p, newline="") as f:
            head = f.read(4096)
        try:
            sep = csv.Sniffer().sniff(head, delimiters=";,\t").delimiter
        except csv.Error:
            sep = ","
        return pd.read_csv(p, sep=sep)
    import pyarrow.dataset as ds

    return ds.dataset(path, format="parquet", partitioning="hive").to_table().to_pandas()


def binary_label(df: pd.DataFrame, label: str, source: str) -> np.ndarray:
    if label not in df.columns:
        raise DataError(f"{source}: label column {label!r} not found; columns are {list(df.columns)}")
    col = df[label]
    if col.dtype == bool:
        result: np.ndarray = col.to_numpy(np.int8)
        return result
    if col.dtype == object or str(col.dtype).startswith("string"):
        low = col.astype(str).str.strip().str.lower()
        bad = ~low.isin(TRUE | FALSE)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"{source}: label {label!r} row {row} has non-binary value {col.iloc[row]!r}")
        result = low.isin(TRUE).to_numpy(np.int8)
        return result
    values = pd.to_numeric(col, errors="coerce")
    bad = ~values.isin([0, 1])
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{source}: label {label!r} row {row} has non-binary value {col.iloc[row]!r}")
    result = values.to_numpy(np.int8)
    return result


def encode_features(df: pd.DataFrame, label: str, time_column: str | None,
                    categories: dict[str, list[str]] | None = None) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Numeric feature frame; string/bool columns become category codes (stored for serving)."""
    skip = NON_FEATURES | {label} | ({time_column} if time_column else set())
    out, cats = pd.DataFrame(index=df.index), dict(categories or {})
    for col in df.columns:
        if col in skip or col.startswith("_"):
            continue
        s = df[col]
        if col in cats or s.dtype == object or s.dtype == bool or str(s.dtype) in ("string", "category", "str"):
            values = s.astype(str)
            cats.setdefault(col, sorted(values.unique().tolist()))
            out[col] = pd.Categorical(values, categories=cats[col]).codes.astype(np.float64)
            out.loc[out[col] < 0, col] = np.nan
        elif pd.api.types.is_numeric_dtype(s):
            out[col] = s.astype(np.float64)
    return out, cats


@dataclass
class Split:
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    kind: str  # "time" or "stratified"

    def window(self, time_column: str | None) -> dict[str, str]:
        if self.kind != "time" or not time_column:
            return {"split": self.kind}
        return {"split": "time", **{f"{name}_{edge}": str(getattr(part[time_column], edge)())
                                    for name, part in (("train", self.train), ("validation", self.validation),
                                                       ("test", self.test)) for edge in ("min", "max")}}


def split(df: pd.DataFrame, label: str, time_column: str | None, fractions: tuple[float, float] = (0.7, 0.85),
          seed: int = 0) -> Split:
    """Time-ordered train/validation/test, or stratified seeded when there is no time column."""
    if len(df) < 30:
        raise DataError(f"only {len(df)} rows: need at least 30 to split train/validation/test")
    if time_column:
        if time_column not in df.columns:
            raise DataError(f"time column {time_column!r} not found; columns are {list(df.columns)}")
        ordered = df.sort_values(time_column, kind="stable")
        a, b = int(len(df) * fractions[0]), int(len(df) * fractions[1])
        return Split(ordered.iloc[:a], ordered.iloc[a:b], ordered.iloc[b:], "time")
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[], [], []]
    for cls in (0, 1):
        idx = np.flatnonzero(df[label].to_numpy() == cls)
        rng.shuffle(idx)
        a, b = int(len(idx) * fractions[0]), int(len(idx) * fractions[1])
        for i, chunk in enumerate((idx[:a], idx[a:b], idx[b:])):
            parts[i].extend(chunk.tolist())
    train, validation, test = (df.iloc[sorted(p)] for p in parts)
    return Split(train, validation, test, "stratified")


def prepare(path: str, label: str, time_column: str | None, seed: int) -> tuple[pd.DataFrame, Split, list[str],
                                                                      dict[str, list[str]]]:
    """Raw table, the train/validation/test split of the encoded frame, features and category maps."""
    raw = load_table(path)
    if raw.empty:
        raise DataError(f"{path}: the table has no rows")
    y = binary_label(raw, label, path)
    feats, categories = encode_features(raw, label, time_column)
    if feats.shape[1] == 0:
        raise DataError(f"{path}: no numeric or categorical feature columns besides the label")
    frame = feats.assign(**{LABEL: y})
    if time_column:
        if time_column not in raw.columns:
            raise DataError(f"{path}: time column {time_column!r} not found; columns are {list(raw.columns)}")
        frame[time_column] = raw[time_column].to_numpy()
    parts = split(frame, LABEL, time_column, seed=seed)
    if parts.kind == "stratified":
        logger.warning("no time column: stratified seeded split (seed %d), not a time-based holdout", seed)
    return raw, parts, list(feats.columns), categories
