"""Readers for the iPinYou RTB log formats, with bad rows quarantined by reason.

Formats:

* ``theta`` (han-cai/rlb-dp ``*.theta.txt``): ``click market_price pCTR`` per line, space
  separated, in time order.
* ``yzx`` (wnzhang/make-ipinyou-data ``*.yzx.txt``): ``click market_price idx:1 idx:1 ...``;
  ``idx`` are one-hot feature indexes (``featindex.txt`` maps ``col:value`` to them).
* raw iPinYou logs (season 2/3, tab separated, no header; Zhang et al., "iPinYou Global
  RTB Bidding Algorithm Competition Dataset", 2014): bid logs have ``BID_COLUMNS``;
  impression, click and conversion logs have ``IMP_COLUMNS`` (the impression's paying
  price is the market price). Empty fields and ``null`` are missing values.
* ``info.json`` (rlb-dp): training totals and the train market-price histogram.

Each reader returns the parsed rows and a ``Quarantine`` (count per reason plus the first
examples as ``file:line: reason``). ``strict=True`` raises ``IpinyouFormatError`` at the
first bad row instead, naming the file, line and field.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from models.bidding.market import MarketPrice
from models.bidding.simulate import AuctionLog

logger = logging.getLogger(__name__)

BID_COLUMNS = (
    "bidid", "timestamp", "ipinyouid", "useragent", "ip", "region", "city", "adexchange", "domain",
    "url", "urlid", "slotid", "slotwidth", "slotheight", "slotvisibility", "slotformat", "slotprice",
    "creative", "bidprice", "advertiser", "usertag",
)
IMP_COLUMNS = (
    "bidid", "timestamp", "logtype", "ipinyouid", "useragent", "ip", "region", "city", "adexchange",
    "domain", "url", "urlid", "slotid", "slotwidth", "slotheight", "slotvisibility", "slotformat",
    "slotprice", "creative", "bidprice", "payprice", "keypage", "advertiser", "usertag",
)
_INT_COLUMNS = frozenset({"logtype", "region", "city", "slotwidth", "slotheight", "slotprice",
                          "bidprice", "payprice"})
_REQUIRED = frozenset({"bidid", "timestamp"})
MISSING = frozenset({"", "null"})


class IpinyouFormatError(ValueError):
    """A row that does not parse; the message names the file, line and field."""


@dataclass
class Quarantine:
    """Rows left out, counted by reason; the first ``keep`` examples are kept verbatim."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    keep: int = 10

    def add(self, where: str, reason: str) -> None:
        self.counts[reason.split(":")[0]] += 1
        if len(self.examples) < self.keep:
            self.examples.append(f"{where}: {reason}")

    @property
    def total(self) -> int:
        return int(sum(self.counts.values()))

    def as_dict(self) -> dict[str, object]:
        return {"rows": self.total, "by_reason": dict(self.counts), "examples": list(self.examples)}


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with open(path, encoding="utf-8", errors="replace") as f:
        for i, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if line.strip():
                yield i, line


def _reject(path: Path, lineno: int, reason: str, q: Quarantine, strict: bool) -> None:
    if strict:
        raise IpinyouFormatError(f"{path}:{lineno}: {reason}")
    q.add(f"{path}:{lineno}", reason)


def _click(tok: str) -> int:
    if tok not in ("0", "1"):
        raise ValueError(f"click: expected 0 or 1, got {tok!r}")
    return int(tok)


def _price(tok: str) -> int:
    try:
        v = int(tok)
    except ValueError:
        raise ValueError(f"market_price: expected a whole number, got {tok!r}") from None
    if v < 0:
        raise ValueError(f"market_price: must be >= 0, got {v}")
    return v


def _pctr(tok: str) -> float:
    try:
        v = float(tok)
    except ValueError:
        raise ValueError(f"pCTR: expected a number, got {tok!r}") from None
    if not (math.isfinite(v) and 0.0 <= v <= 1.0):
        raise ValueError(f"pCTR: must be in [0, 1], got {tok!r}")
    return v


def read_theta(path: str | Path, strict: bool = False) -> tuple[AuctionLog, Quarantine]:
    """An rlb-dp ``*.theta.txt`` file as an ``AuctionLog`` (bad rows quarantined)."""
    path = Path(path)
    q = Quarantine()
    clicks: list[int] = []
    prices: list[int] = []
    pctrs: list[float] = []
    for lineno, line in _lines(path):
        toks = line.split()
        try:
            if len(toks) != 3:
                raise ValueError(f"fields: expected 3 (click market_price pCTR), got {len(toks)}")
            c, p, t = _click(toks[0]), _price(toks[1]), _pctr(toks[2])
        except ValueError as e:
            _reject(path, lineno, str(e), q, strict)
            continue
        clicks.append(c)
        prices.append(p)
        pctrs.append(t)
    if q.total:
        logger.warning("%s: %d bad rows quarantined %s", path, q.total, dict(q.counts))
    return AuctionLog(np.asarray(clicks, np.int8), np.asarray(prices, np.int64),
                      np.asarray(pctrs, np.float64)), q


@dataclass(frozen=True)
class YzxLog:
    """make-ipinyou-data rows: labels, market prices and one-hot feature indexes (CSR)."""

    click: np.ndarray
    price: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray

    def __len__(self) -> int:
        return len(self.click)

    def features(self, row: int) -> np.ndarray:
        return self.indices[self.indptr[row]:self.indptr[row + 1]]


def read_yzx(path: str | Path, strict: bool = False) -> tuple[YzxLog, Quarantine]:
    """A make-ipinyou-data ``*.yzx.txt`` file; a feature token must be ``index:value``."""
    path = Path(path)
    q = Quarantine()
    clicks: list[int] = []
    prices: list[int] = []
    indptr = [0]
    indices: list[int] = []
    for lineno, line in _lines(path):
        toks = line.split()
        try:
            if len(toks) < 2:
                raise ValueError(f"fields: expected click market_price feat:1 ..., got {len(toks)} fields")
            c, p = _click(toks[0]), _price(toks[1])
            feats = []
            for j, tok in enumerate(toks[2:], start=3):
                idx, sep, _ = tok.partition(":")
                if not sep or not idx.isdigit():
                    raise ValueError(f"feature: field {j} must be index:value, got {tok!r}")
                feats.append(int(idx))
        except ValueError as e:
            _reject(path, lineno, str(e), q, strict)
            continue
        clicks.append(c)
        prices.append(p)
        indices.extend(feats)
        indptr.append(len(indices))
    if q.total:
        logger.warning("%s: %d bad rows quarantined %s", path, q.total, dict(q.counts))
    return YzxLog(np.asarray(clicks, np.int8), np.asarray(prices, np.int64),
                  np.asarray(indptr, np.int64), np.asarray(indices, np.int64)), q


def read_raw_log(path: str | Path, kind: str = "imp", strict: bool = False
                 ) -> tuple[dict[str, list[object]], Quarantine]:
    """A raw iPinYou bid (``kind="bid"``) or imp/clk/conv log as columns.

    Integer columns (``slotprice``, ``payprice``, ...) become ints, other fields stay strings;
    missing values (empty or ``null``) become ``None``. ``usertag`` is a list of tag strings.
    Season-1 logs (no ``usertag`` column) are accepted with ``usertag`` missing.
    """
    path = Path(path)
    columns: tuple[str, ...]
    if kind == "bid":
        columns = BID_COLUMNS
    elif kind in ("imp", "clk", "conv"):
        columns = IMP_COLUMNS
    else:
        raise ValueError(f"kind must be bid, imp, clk or conv, got {kind!r}")
    q = Quarantine()
    out: dict[str, list[object]] = {c: [] for c in columns}
    for lineno, line in _lines(path):
        toks = line.split("\t")
        if len(toks) == len(columns) - 1:  # season 1: no user tags
            toks.append("")
        try:
            if len(toks) != len(columns):
                raise ValueError(f"fields: expected {len(columns)} tab-separated columns for a {kind} log, "
                                 f"got {len(toks)}")
            row = [_raw_value(name, tok.strip()) for name, tok in zip(columns, toks, strict=True)]
        except ValueError as e:
            _reject(path, lineno, str(e), q, strict)
            continue
        for name, value in zip(columns, row, strict=True):
            out[name].append(value)
    if q.total:
        logger.warning("%s: %d bad rows quarantined %s", path, q.total, dict(q.counts))
    return out, q


def _raw_value(name: str, tok: str) -> object:
    if tok in MISSING:
        if name in _REQUIRED:
            raise ValueError(f"{name}: required field is missing")
        return [] if name == "usertag" else None
    if name == "usertag":
        return [t for t in tok.split(",") if t]
    if name == "timestamp" and not (tok.isdigit() and len(tok) == 17):
        raise ValueError(f"timestamp: expected yyyyMMddHHmmssSSS, got {tok!r}")
    if name in _INT_COLUMNS:
        try:
            v = int(tok)
        except ValueError:
            raise ValueError(f"{name}: expected a whole number, got {tok!r}") from None
        if v < 0:
            raise ValueError(f"{name}: must be >= 0, got {v}")
        return v
    return tok


class CampaignInfo(BaseModel):
    """rlb-dp ``info.json``: training totals and the train market-price histogram."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    clk_train: int = Field(ge=0)
    imp_train: int = Field(gt=0)
    cost_train: float = Field(gt=0)
    price_counter_train: list[int] = Field(min_length=2)
    clk_test: int | None = None
    imp_test: int | None = None
    cost_test: float | None = None

    @property
    def cpm_train(self) -> float:
        """The train average market price (rlb-dp's ``cpm``), the budget's basis."""
        return self.cost_train / self.imp_train

    @property
    def ctr_train(self) -> float:
        """The train CTR (rlb-dp's ``theta_avg``)."""
        return self.clk_train / self.imp_train

    def market(self, laplace: float = 1.0) -> MarketPrice:
        return MarketPrice.from_counts(self.price_counter_train, laplace=laplace)


def load_info(path: str | Path) -> CampaignInfo:
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise IpinyouFormatError(f"{path}: not a readable JSON file ({e})") from e
    try:
        return CampaignInfo.model_validate(raw)
    except ValidationError as e:
        bad = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
        raise IpinyouFormatError(f"{path}: {bad}") from e
