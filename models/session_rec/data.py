"""Readers for the recommender's input formats; errors name the file, row and field.

* ``session-tsv``: GRU4Rec / session-rec ``SessionId<TAB>ItemId<TAB>Time`` with a header.
* ``session-lines``: one session per line, item ids space-separated, in time order.
* ``prefix-target``: ``prefix<TAB>target`` with a header (the SR-GNN test split).
* ``parquet``: the feature job's ``sequences/`` (session_id, items list<string>, last_time).

Sessions come back as lists of string item ids, ordered by session start time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)


class DataError(ValueError):
    """Input that cannot be read; the message names file, row and field."""


@dataclass
class PrefixTarget:
    prefixes: list[list[str]]
    targets: list[str]


def read_session_tsv(path: str | Path) -> list[list[str]]:
    """Sessions from a GRU4Rec TSV, each sorted by time, ordered by their first event."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    df = pd.read_csv(path, sep="\t", dtype={"SessionId": str, "ItemId": str}, keep_default_na=False)
    missing = {"SessionId", "ItemId", "Time"} - set(df.columns)
    if missing:
        raise DataError(f"{path}: header lacks field(s) {sorted(missing)}; got {list(df.columns)}")
    for field in ("SessionId", "ItemId"):
        bad = np.nonzero((df[field] == "").to_numpy())[0]
        if len(bad):
            raise DataError(f"{path}: row {int(bad[0]) + 2}: field {field!r} is empty")
    times = pd.to_numeric(df["Time"], errors="coerce")
    bad = np.nonzero(times.isna().to_numpy())[0]
    if len(bad):
        raise DataError(f"{path}: row {int(bad[0]) + 2}: field 'Time' is not a number: {df['Time'].iloc[bad[0]]!r}")
    df = df.assign(Time=times).sort_values(["SessionId", "Time"], kind="stable")
    starts = df.groupby("SessionId", sort=False)["Time"].transform("min")
    df = df.assign(_start=starts).sort_values(["_start", "SessionId", "Time"], kind="stable")
    sessions = df.groupby("SessionId", sort=False)["ItemId"].agg(list)
    return [list(s) for s in sessions]


def read_session_lines(path: str | Path) -> list[list[str]]:
    """One session per line, space-separated item ids; blank lines are errors."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    out: list[list[str]] = []
    with path.open(encoding="utf-8") as f:
        for row, line in enumerate(f, start=1):
            items = line.split()
            if not items:
                raise DataError(f"{path}: row {row}: field 'items' is empty")
            out.append(items)
    return out


def read_prefix_target(path: str | Path) -> PrefixTarget:
    """``prefix<TAB>target`` pairs (header line ``prefix\ttarget``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    prefixes: list[list[str]] = []
    targets: list[str] = []
    with path.open(encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        if header != ["prefix", "target"]:
            raise DataError(f"{path}: row 1: header must be 'prefix<TAB>target', got {header}")
        for row, line in enumerate(f, start=2):
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 2:
                raise DataError(f"{path}: row {row}: expected 2 tab-separated fields, got {len(parts)}")
            prefix, target = parts[0].split(), parts[1].strip()
            if not prefix:
                raise DataError(f"{path}: row {row}: field 'prefix' is empty")
            if not target or " " in target:
                raise DataError(f"{path}: row {row}: field 'target' must be one item id, got {parts[1]!r}")
            prefixes.append(prefix)
            targets.append(target)
    return PrefixTarget(prefixes, targets)


def read_diginetica_views(path: str | Path) -> tuple[list[list[str]], np.ndarray]:
    """CIKM Cup 2016 (Diginetica) ``train-item-views.csv``: ``session_id;user_id;item_id;timeframe;eventdate``,
    the original item ids (they join ``product-categories.csv``). Sessions ordered by date, clicks by
    timeframe; returns (sessions, each session's day as unix seconds) for ``split_by_time``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    df = pd.read_csv(path, sep=";", dtype=str, keep_default_na=False)
    missing = {"session_id", "item_id", "timeframe", "eventdate"} - set(df.columns)
    if missing:
        raise DataError(f"{path}: header lacks field(s) {sorted(missing)}; got {list(df.columns)}")
    for field in ("session_id", "item_id"):
        bad = np.nonzero((df[field] == "").to_numpy())[0]
        if len(bad):
            raise DataError(f"{path}: row {int(bad[0]) + 2}: field {field!r} is empty")
    frame = pd.to_numeric(df["timeframe"], errors="coerce")
    day = pd.to_datetime(df["eventdate"], format="%Y-%m-%d", errors="coerce")
    for field, parsed in (("timeframe", frame), ("eventdate", day)):
        bad = np.nonzero(parsed.isna().to_numpy())[0]
        if len(bad):
            raise DataError(f"{path}: row {int(bad[0]) + 2}: field {field!r} is not a "
                            f"{'number' if field == 'timeframe' else 'date'}: {df[field].iloc[bad[0]]!r}")
    df = df.assign(_day=(day - pd.Timestamp(0)).dt.total_seconds(), _frame=frame)
    df = df.assign(_start=df.groupby("session_id")["_day"].transform("min"))
    df = df.sort_values(["_start", "session_id", "_frame"], kind="stable")
    grouped = df.groupby("session_id", sort=False)
    return [list(s) for s in grouped["item_id"].agg(list)], grouped["_start"].first().to_numpy(dtype=np.float64)


def read_sequences_parquet(path: str | Path) -> tuple[list[list[str]], np.ndarray]:
    """The feature job's sequences ordered by ``last_time``; returns (sessions, last_time seconds)."""
    import pyarrow.parquet as pq

    path = str(path)  # a local path or an s3:// URI (a Path would squash the scheme)
    if "://" not in path and not Path(path).exists():
        raise DataError(f"{path}: not found")
    table = pq.read_table(path)
    missing = {"session_id", "items", "last_time"} - set(table.column_names)
    if missing:
        raise DataError(f"{path}: missing field(s) {sorted(missing)}; got {table.column_names}")
    df = table.select(["session_id", "items", "last_time"]).to_pandas()
    last_col = df["last_time"]
    if pd.api.types.is_datetime64_any_dtype(last_col):
        # seconds whatever the column's unit (ns, us or ms): astype("int64") counts in that unit
        last = ((pd.to_datetime(last_col, utc=True) - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
                .to_numpy(dtype=np.float64) if last_col.notna().all() else None)
    else:
        last = pd.to_numeric(last_col, errors="coerce").to_numpy(dtype=np.float64)
    for row in range(len(df)):
        items = df["items"].iloc[row]
        if items is None or len(items) == 0:
            raise DataError(f"{path}: row {row} (session_id={df['session_id'].iloc[row]!r}): field 'items' is empty")
        if last is None or not np.isfinite(last[row]):
            raise DataError(f"{path}: row {row} (session_id={df['session_id'].iloc[row]!r}): "
                            "field 'last_time' is null or not a time")
    assert last is not None
    order = np.argsort(last, kind="stable")
    return [[str(i) for i in df["items"].iloc[r]] for r in order], last[order]


def split_by_time(sessions: list[list[str]], last: np.ndarray, test_fraction: float
                  ) -> tuple[list[list[str]], list[list[str]], float]:
    """Sessions ending after the (1 - test_fraction) quantile of last_time are test."""
    if not 0 < test_fraction < 1:
        raise DataError(f"test_fraction must be in (0, 1), got {test_fraction}")
    cut = float(np.quantile(last, 1.0 - test_fraction))
    train = [s for s, t in zip(sessions, last, strict=True) if t <= cut]
    test = [s for s, t in zip(sessions, last, strict=True) if t > cut]
    return train, test, cut


@dataclass
class EncodedData:
    """Training sessions and test pairs mapped onto the training catalogue."""

    items: object  # ItemMap; typed loosely to keep this module free of import cycles
    train: list[np.ndarray]
    test_prefixes: list[np.ndarray]
    test_targets: np.ndarray  # -1 where the target is not in the catalogue
    protocol: str
    window: dict[str, object]
    unseen_targets_dropped: int = 0  # protocol (a): next items outside the catalogue, dropped before pairing
    # the test pairs in raw item ids, for comparing models with other catalogues (promotion gates)
    raw_pairs: tuple[list[list[str]], list[str]] = dc_field(default_factory=lambda: ([], []))

    @property
    def n_train_events(self) -> int:
        return int(sum(len(s) for s in self.train))


def load_dataset(train: str | Path, test: str | Path | None, fmt: str, test_fraction: float = 0.1,
                 max_train_sessions: int | None = None, max_test_pairs: int | None = None,
                 catalogue: list[str] | None = None) -> EncodedData:
    """Read train/test in ``fmt`` and encode them.

    session-tsv / session-lines -> protocol (a): unknown test items dropped, every next position scored
    (``unseen_targets_dropped`` counts the next items lost that way: targets unseen in training).
    prefix-target -> protocol (b): train is ``session-lines``, test is ``prefix<TAB>target``.
    parquet -> protocol (a) on a time split of the sequences (``test`` optional: its own dir).
    ``catalogue``: item ids known without training events (e.g. from an item-category table); they
    are appended to the item map, so they can be recommended and are kept as test targets.
    """
    from models.evaluation.ranking import next_item_pairs
    from models.session_rec.items import ItemMap

    cut: float | None = None
    if fmt == "session-tsv":
        if test is None:
            raise DataError("--test is required for format session-tsv")
        train_s, test_s = read_session_tsv(train), read_session_tsv(test)
    elif fmt == "session-lines":
        if test is None:
            raise DataError("--test is required for format session-lines")
        train_s, test_s = read_session_lines(train), read_session_lines(test)
    elif fmt == "prefix-target":
        if test is None:
            raise DataError("--test is required for format prefix-target")
        train_s = read_session_lines(train)
        pt = read_prefix_target(test)
    elif fmt == "diginetica-views":
        if test is not None:
            train_s, test_s = read_diginetica_views(train)[0], read_diginetica_views(test)[0]
        else:
            train_s, test_s, cut = split_by_time(*read_diginetica_views(train), test_fraction)
    elif fmt == "parquet":
        if test is not None:  # an explicit test set: all of --train trains
            train_s, _ = read_sequences_parquet(train)
            test_s, _ = read_sequences_parquet(test)
        else:
            train_s, test_s, cut = split_by_time(*read_sequences_parquet(train), test_fraction)
    else:
        raise DataError(f"unknown format {fmt!r}; expected session-tsv, session-lines, prefix-target, parquet or "
                        "diginetica-views")
    if max_train_sessions is not None:
        train_s = train_s[-max_train_sessions:]
    if not train_s:
        raise DataError(f"{train}: no training sessions")
    items = ItemMap.from_sessions([*train_s, catalogue or []])
    enc_train = [items.encode(s) for s in train_s]
    dropped = 0
    if fmt == "prefix-target":
        prefixes = [items.encode(p) for p in pt.prefixes]
        targets = np.asarray([items.index.get(t, -1) for t in pt.targets], dtype=np.int64)
        protocol = "b:prefix-target"
        raw = ([[str(i) for i in p] for p in pt.prefixes], [str(t) for t in pt.targets])
    else:
        prefixes, targets = next_item_pairs(items.encode(s) for s in test_s)
        dropped = sum(unseen_next_items(s, items.index) for s in test_s)
        protocol = "a:session-next-items"
        raw = raw_next_item_pairs(test_s)
    if max_test_pairs is not None:
        prefixes, targets = prefixes[:max_test_pairs], targets[:max_test_pairs]
    window: dict[str, object] = {"train": str(train), "test": str(test) if test else None, "format": fmt,
              "train_sessions": len(enc_train), "train_events": int(sum(len(s) for s in enc_train)),
              "test_pairs": len(prefixes), "n_items": len(items), "time_cut": cut,
              "unseen_targets_dropped": dropped}
    logger.info("loaded %s", window)
    if max_test_pairs is not None:
        raw = (raw[0][:max_test_pairs], raw[1][:max_test_pairs])
    return EncodedData(items, enc_train, prefixes, targets, protocol, window, dropped, raw)


def unseen_next_items(session: list[str], index: dict[str, int]) -> int:
    """Events of a test session that would be next-item targets but are outside the catalogue: unknown
    items after at least one known item (protocol (a) drops them before it pairs prefixes and targets)."""
    known_before = False
    count = 0
    for item in session:
        if item in index:
            known_before = True
        elif known_before:
            count += 1
    return count


def read_item_categories(path: str | Path) -> dict[str, str]:
    """An item table with a header naming an item and a category column (``itemId;categoryId`` as in
    Diginetica's product-categories.csv; ``;``, ``,`` or tab separated); item id -> category id."""
    import csv

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with path.open(encoding="utf-8", newline="") as f:
        header_line = f.readline()
        delim = max(";,\t", key=header_line.count)
        header = [h.strip() for h in header_line.rstrip("\r\n").split(delim)]
        lower = [h.lower().replace("_", "") for h in header]
        if "itemid" not in lower or "categoryid" not in lower:
            raise DataError(f"{path}: row 1: header must name 'itemId' and 'categoryId' columns, got {header}")
        i_item, i_cat = lower.index("itemid"), lower.index("categoryid")
        out: dict[str, str] = {}
        for row, rec in enumerate(csv.reader(f, delimiter=delim), start=2):
            if not rec:
                continue
            if len(rec) != len(header):
                raise DataError(f"{path}: row {row}: expected {len(header)} fields, got {len(rec)}")
            item, cat = rec[i_item].strip(), rec[i_cat].strip()
            if not item:
                raise DataError(f"{path}: row {row}: field {header[i_item]!r} is empty")
            if not cat:
                raise DataError(f"{path}: row {row}: field {header[i_cat]!r} is empty")
            prev = out.setdefault(item, cat)
            if prev != cat:
                raise DataError(f"{path}: row {row}: item {item!r} has two categories ({prev!r}, {cat!r})")
    if not out:
        raise DataError(f"{path}: no rows")
    return out


def raw_next_item_pairs(sessions: Iterable[Sequence[str]], max_pairs: int | None = None,
                    seed: int = 0) -> tuple[list[list[str]], list[str]]:
    """Every (prefix, next item) of raw item-id sessions (protocol: all prefixes), a fixed-seed
    sample of ``max_pairs`` when there are more."""
    prefixes: list[list[str]] = []
    targets: list[str] = []
    for s in sessions:
        items = [str(i) for i in s]
        for t in range(1, len(items)):
            prefixes.append(items[:t])
            targets.append(items[t])
    if max_pairs is not None and len(targets) > max_pairs:
        keep = np.sort(np.random.default_rng(seed).choice(len(targets), max_pairs, replace=False))
        prefixes, targets = [prefixes[i] for i in keep], [targets[i] for i in keep]
    return prefixes, targets
