"""What serving needs from the models: the serve <-> models contract, as structural types.

``serve`` holds a tenant's models in a ``ModelBundle`` typed by these protocols, not by the
predictor classes, so serving code depends on this small surface only; the predictors
(``PropensityPredictor``, ``SessionRecPredictor``) satisfy it, and mypy checks that they do.
"""

from __future__ import annotations

from typing import Protocol

import pandas as pd


class PropensityScorer(Protocol):
    """Scores live sessions from their raw canonical events."""

    @property
    def version(self) -> str: ...

    @property
    def base_rate(self) -> float: ...

    def score_events(self, events: pd.DataFrame) -> dict[str, float]:
        """P(purchase) per ``session_id`` in ``events`` (sessions without features are left out)."""
        ...


class Recommender(Protocol):
    """Recommends items after a session's prefix of item ids."""

    @property
    def version(self) -> str: ...

    def recommend(self, items: list[str], k: int = 20, exclude_seen: bool = True) -> list[tuple[str, float]]:
        """The top ``k`` (item id, score) pairs after ``items``."""
        ...

    def popular(self, k: int) -> list[tuple[str, float]]:
        """The top ``k`` items by training popularity, scores scaled to the top item's."""
        ...
