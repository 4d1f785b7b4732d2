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

from models.propensity.encoding import DataError, Encoding, fit_encoding, leaking_column

__all__ = ["DataError", "LABEL", "NON_FEATURES", "Prepared", "Split", "binary_label", "load_table", "prepare", "split"]

logger = logging.getLogger(__name__)

NON_FEATURES = {"session_id", "user_id", "tenant", "cutoff_time", "date", "purchased", "purchase_within_7d",
                "bucket", "reason", "path"}
TRUE = {"1", "true", "t", "yes", "y"}
FALSE = {"0", "false", "f", "no", "n"}


LABEL = "_label"  # the binary label column of a prepared frame


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


@dataclass
class Prepared:
    """The raw table, its train/validation/test split of encoded rows (features, ``LABEL`` and the
    time column) and the encoding fitted on the training rows."""

    raw: pd.DataFrame
    parts: Split
    encoding: Encoding

    @property
    def features(self) -> list[str]:
        return self.encoding.feature_names


def prepare(path: str, label: str, time_column: str | None, seed: int,
            exclude: tuple[str, ...] | list[str] = (), min_count: int | None = None) -> Prepared:
    """Load, split (time-ordered or stratified), fit the column encoding on the training rows only
    (``models.propensity.encoding``) and encode every split with it.

    Raises ``DataError`` naming the file and column for a missing or non-binary label, a single
    class, too few rows, an unknown ``exclude`` column, no usable feature, or a feature column
    that gives the label away on the training rows."""
    raw = load_table(path)
    if raw.empty:
        raise DataError(f"{path}: the table has no rows")
    y = binary_label(raw, label, path)
    if y.min() == y.max():
        raise DataError(f"{path}: label {label!r} has one class only ({len(y)} rows, all {int(y[0])})")
    unknown = [c for c in exclude if c not in raw.columns]
    if unknown:
        raise DataError(f"{path}: --exclude column(s) {unknown} not found; columns are {list(raw.columns)}")
    if time_column and time_column not in raw.columns:
        raise DataError(f"{path}: time column {time_column!r} not found; columns are {list(raw.columns)}")
    keys = pd.DataFrame({LABEL: y}, index=raw.index)
    if time_column:
        keys[time_column] = raw[time_column]  # same index: no conversion (tz-aware to object is slow)
    index = split(keys, LABEL, time_column, seed=seed)
    if index.kind == "stratified":
        logger.warning("no time column: stratified seeded split (seed %d), not a time-based holdout", seed)
    train_raw = raw.loc[index.train.index]
    if train_raw.empty or y[raw.index.get_indexer(index.train.index)].sum() == 0:
        raise DataError(f"{path}: the training split has no positive {label!r} rows")
    skip = NON_FEATURES | {label} | set(exclude) | ({time_column} if time_column else set())
    encoding = fit_encoding(train_raw, skip, min_count=min_count, source=path)

    def encoded(part: pd.DataFrame) -> pd.DataFrame:
        frame = encoding.transform(raw.loc[part.index]).assign(**{LABEL: part[LABEL].to_numpy()})
        if time_column:
            frame[time_column] = part[time_column]
        return frame

    parts = Split(encoded(index.train), encoded(index.validation), encoded(index.test), index.kind)
    leak = leaking_column(parts.train[encoding.feature_names], parts.train[LABEL].to_numpy())
    if leak is not None:
        raise DataError(f"{path}: column {leak[0]!r} gives the label {label!r} away ({leak[1]}): label leakage; "
                        f"remove it or pass --exclude {leak[0]}")
    return Prepared(raw, parts, encoding)
