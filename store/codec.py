"""The value format of published rows, defined once for the writer (precompute) and the readers (serve).

- ``score`` rows: a float as its ``repr`` (``"0.125"``), which is also valid JSON;
- ``recs`` and ``popular`` rows: a compact JSON list of ``[item_id, score]`` pairs, best first;
- live session lists hold one compact JSON object per event.

``decode`` never raises: a missing or unreadable value is ``None`` (and logged).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

logger = logging.getLogger(__name__)

_COMPACT = (",", ":")


def encode_score(score: float) -> str:
    return repr(float(score))


def encode_top_k(pairs: Iterable[tuple[str, float]]) -> str:
    return json.dumps([[item, float(score)] for item, score in pairs], separators=_COMPACT)


def encode_event(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=_COMPACT)


def decode(raw: bytes | str | None) -> Any | None:
    """A stored JSON value, or None when missing or unreadable."""
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except (ValueError, TypeError):
        logger.warning("unreadable stored value %r", raw[:80] if isinstance(raw, bytes | str) else raw)
        return None


def as_score(value: Any) -> float | None:
    """A decoded ``score`` value as a float, or None when it is not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def as_top_k(value: Any) -> list[tuple[str, float]] | None:
    """A decoded ``recs``/``popular`` value as ``(item_id, score)`` pairs, or None when it is not a list."""
    if not isinstance(value, list):
        return None
    return [(str(p[0]), float(p[1])) for p in value]
