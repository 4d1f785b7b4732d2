"""Source-format adapters for ``pipelines.ingest`` (``python -m jobs.ingest``): raw event logs -> canonical events + reasons.

Each adapter is a small pure function ``(data: bytes, source: str) -> pyarrow.Table`` in
``RAW_SCHEMA`` (canonical columns, ``reason``, ``source_file``, ``source_line``, ``raw``).
They do no I/O, so for large inputs a Ray Data job can list files, read each file's
bytes and call ``parse_file`` per file inside ``map_batches``; ``jobs.ingest`` runs them in
one process because the inputs here are small samples.

Formats (``--format``): ``yoochoose`` (clicks, and buys when given: told apart by field
count), ``session-tsv``, ``diginetica`` (views, purchases and categories: told apart by
header), ``otto``, ``retailrocket``, ``rees46``, ``canonical``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import pyarrow as pa

from pipelines.adapters.common import RAW_SCHEMA
from pipelines.adapters.formats import (
    canonical,
    diginetica,
    diginetica_categories,
    diginetica_role,
    join_categories,
    otto,
    rees46,
    retailrocket,
    session_tsv,
    yoochoose,
)

logger = logging.getLogger(__name__)

__all__ = ["FORMATS", "RAW_SCHEMA", "Parsed", "join_categories", "parse_file"]


class Adapter(Protocol):
    def __call__(self, data: bytes, source: str) -> pa.Table: ...


FORMATS: tuple[str, ...] = ("yoochoose", "session-tsv", "diginetica", "otto", "retailrocket", "rees46",
                            "canonical")


@dataclass(frozen=True)
class Parsed:
    """What one file held: events (``RAW_SCHEMA``) or an item -> category lookup."""

    events: pa.Table | None = None
    categories: pa.Table | None = None
    rejected_lookup_rows: int = 0


def adapter_for(fmt: str, gap_minutes: float = 30.0) -> Adapter:
    """The event adapter of ``fmt`` (ValueError naming the known formats otherwise)."""
    table: dict[str, Adapter] = {
        "yoochoose": yoochoose,
        "session-tsv": session_tsv,
        "diginetica": diginetica,
        "otto": otto,
        "retailrocket": partial(retailrocket, gap_minutes=gap_minutes),
        "rees46": rees46,
        "canonical": canonical,
    }
    if fmt not in table:
        raise ValueError(f"unknown format {fmt!r}; choose one of {list(FORMATS)}")
    return table[fmt]


def parse_file(fmt: str, data: bytes, source: str, gap_minutes: float = 30.0) -> Parsed:
    """Parse one file's bytes. Pure: safe to call per file from Ray Data ``map_batches``."""
    if fmt == "diginetica" and diginetica_role(data) == "categories":
        cats, rejected = diginetica_categories(data, source)
        return Parsed(categories=cats, rejected_lookup_rows=rejected)
    return Parsed(events=adapter_for(fmt, gap_minutes)(data, source))
