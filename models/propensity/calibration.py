"""Score calibration: the downsampling log-odds correction, then isotonic regression.

With negatives kept at rate ``w`` during training, a raw score p over-states the
odds by 1/w; ``q = p / (p + (1 - p) / w)`` restores them. Isotonic regression
fitted on the (untouched) validation split then maps corrected scores to
observed rates. Both are stored as plain numbers in the artifact.

Isotonic regression is a step function: it maps whole ranges of raw scores to one value,
and those ties cost ranking (PR-AUC treats a tie as one threshold) for no gain in
calibration. ``tie_break`` keeps the map strictly increasing: the output is
``(1 - tie_break) * isotonic(q) + tie_break * q``, so distinct raw scores keep their order
(the calibrated PR-AUC equals the raw one) while the value moves by at most ``tie_break``.
Artifacts written before it existed load with ``tie_break = 0`` and score as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


def correct_downsampling(p: np.ndarray, keep_rate: float) -> np.ndarray:
    """Undo negative downsampling at rate ``keep_rate`` (1.0 = no downsampling)."""
    if not 0 < keep_rate <= 1:
        raise ValueError(f"keep_rate must be in (0, 1], got {keep_rate}")
    p = np.asarray(p, dtype=np.float64)
    if keep_rate == 1.0:
        return p
    return p / (p + (1.0 - p) / keep_rate)


TIE_BREAK = 1e-6


@dataclass
class Calibrator:
    keep_rate: float = 1.0
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    tie_break: float = TIE_BREAK

    def fit(self, raw: np.ndarray, labels: np.ndarray) -> Calibrator:
        from sklearn.isotonic import IsotonicRegression

        corrected = correct_downsampling(raw, self.keep_rate)
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(corrected, labels)
        self.x = [float(v) for v in iso.X_thresholds_]
        self.y = [float(v) for v in iso.y_thresholds_]
        return self

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        corrected = correct_downsampling(raw, self.keep_rate)
        if len(self.x) < 2:
            return corrected
        result: np.ndarray = (1.0 - self.tie_break) * np.interp(corrected, self.x, self.y) + self.tie_break * corrected
        return result

    def to_dict(self) -> dict[str, Any]:
        return {"method": "isotonic", "keep_rate": self.keep_rate, "x": self.x, "y": self.y,
                "tie_break": self.tie_break}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibrator:
        return cls(keep_rate=float(d.get("keep_rate", 1.0)), x=list(d.get("x", [])), y=list(d.get("y", [])),
                   tie_break=float(d.get("tie_break", 0.0)))
