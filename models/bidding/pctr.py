"""The pCTR model of a campaign: the propensity pipeline's predictor, registered as ``pctr``.

A CTR model is a propensity model of clicks on impressions: trained by ``jobs.train_propensity
--name pctr`` on an impression table (multi-field categoricals with missing values), calibrated
on validation, and served by the same ``PropensityPredictor`` code as batch scoring. This class
only names its registry entry and adds the one-impression call the bid path makes.
"""

from __future__ import annotations

import logging
from typing import ClassVar

import pandas as pd

from models.propensity.predictor import PropensityPredictor

logger = logging.getLogger(__name__)

REGISTRY_NAME = "pctr"


class PctrPredictor(PropensityPredictor):
    """Calibrated P(click) of impressions; ``predict_proba`` for batches, ``predict_one`` for a bid."""

    registry_name: ClassVar[str] = REGISTRY_NAME

    def predict_one(self, features: dict[str, str | float | None]) -> float:
        """P(click) of one impression from its raw fields (absent fields count as missing)."""
        return float(self.predict_proba(pd.DataFrame([features]))[0])
