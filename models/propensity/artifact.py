"""Self-describing propensity artifacts: the booster file plus ``propensity.json``.

``propensity.json`` holds the model kind, the feature list and order, the serving
threshold, the calibration, the base rate, metrics, data window, training config,
code version and schema version, the column encoding fitted on the training rows
(``encoding``: ``models.propensity.encoding.Encoding.to_dict``) and how the default
pipeline chose the model (``selection``). Nothing is pickled. Artifacts written before
``encoding`` existed carry ``categories`` (sorted values, codes from 0, unseen missing).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.schema import SCHEMA_VERSION

META_FILE = "propensity.json"
MODEL_FILES = {"lightgbm": "model.txt", "xgboost": "model.json"}


@dataclass
class PropensityArtifact:
    kind: str
    feature_names: list[str]
    threshold: float
    calibration: dict[str, Any]
    base_rate: float
    metrics: dict[str, Any] = field(default_factory=dict)
    data_window: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    code_version: str = "unknown"
    schema_version: int = SCHEMA_VERSION
    categories: dict[str, list[str]] = field(default_factory=dict)
    encoding: dict[str, Any] = field(default_factory=dict)
    selection: dict[str, Any] = field(default_factory=dict)


def save(directory: str | Path, booster: Any, art: PropensityArtifact) -> Path:
    """Write ``booster`` (lightgbm.Booster or xgboost.Booster) and metadata to ``directory``."""
    if art.kind not in MODEL_FILES:
        raise ValueError(f"unknown model kind {art.kind!r}; expected one of {sorted(MODEL_FILES)}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(out / MODEL_FILES[art.kind]))
    (out / META_FILE).write_text(json.dumps(art.__dict__, indent=2, sort_keys=True, default=float))
    return out


def load_meta(directory: str | Path) -> PropensityArtifact:
    path = Path(directory) / META_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: {directory} is not a propensity artifact")
    return PropensityArtifact(**json.loads(path.read_text()))
