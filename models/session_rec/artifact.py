"""Self-describing model directories: weights, config, item map, training info, metrics.

Layout::

    model.json        schema_version, model_type, model_config, training, metrics, data_window
    items.txt         item id per line; line i is index i
    popularity.npy    training counts per item (the cold-start fallback)
    <weights>         model specific (``*.pt`` for torch models, ``*.npz``/``*.npy`` for kNN)
"""

from __future__ import annotations

import importlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.session_rec.base import PopModel, SessionModel
from models.session_rec.items import ItemMap

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MODEL_FILE = "model.json"
POPULARITY_FILE = "popularity.npy"

# model_type -> "module:Class"; imported lazily so serving a kNN model never imports torch.
MODEL_CLASSES: dict[str, str] = {
    "pop": "models.session_rec.base:PopModel",
    "itemknn": "models.session_rec.knn:ItemKNN",
    "vsknn": "models.session_rec.knn:VSKNN",
    "vstan": "models.session_rec.stan:VSTAN",
    "gru4rec": "models.session_rec.network:GRU4RecScorer",
    "sasrec": "models.session_rec.sasrec:SASRecScorer",
    "repeat": "models.session_rec.repeat:RepeatModel",
    "category": "models.session_rec.cold:CategoryModel",
    "hybrid": "models.session_rec.hybrid:HybridModel",
}


@dataclass
class Artifact:
    model: SessionModel
    items: ItemMap
    popularity: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


def model_class(model_type: str) -> Any:
    if model_type not in MODEL_CLASSES:
        raise ValueError(f"unknown model_type {model_type!r}; expected one of {sorted(MODEL_CLASSES)}")
    module, name = MODEL_CLASSES[model_type].split(":")
    return getattr(importlib.import_module(module), name)


def save_artifact(directory: str | Path, model: SessionModel, items: ItemMap, popularity: np.ndarray,
                  training: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None,
                  data_window: dict[str, Any] | None = None) -> Path:
    """Write everything needed to load and serve ``model`` into ``directory``."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    if len(items) != model.n_items or len(popularity) != model.n_items:
        raise ValueError(f"model has {model.n_items} items, map {len(items)}, popularity {len(popularity)}")
    model.save(out)
    items.save(out)
    np.save(out / POPULARITY_FILE, np.asarray(popularity, dtype=np.float32))
    meta = {"schema_version": SCHEMA_VERSION, "model_type": model.model_type,
            "model_config": model.config_dict(), "n_items": model.n_items,
            "training": training or {}, "metrics": metrics or {}, "data_window": data_window or {}}
    (out / MODEL_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str), encoding="utf-8")
    logger.info("saved %s artifact with %d items to %s", model.model_type, model.n_items, out)
    return out


def load_artifact(directory: str | Path) -> Artifact:
    """Load a directory written by :func:`save_artifact` in one call."""
    src = Path(directory)
    path = src / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a recommender artifact (model.json missing)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON ({exc})") from exc
    for key in ("schema_version", "model_type", "n_items"):
        if key not in meta:
            raise ValueError(f"{path}: field {key!r} missing")
    if meta["schema_version"] != SCHEMA_VERSION:
        raise ValueError(f"{path}: schema_version {meta['schema_version']} != supported {SCHEMA_VERSION}")
    items = ItemMap.load(src)
    n_items = int(meta["n_items"])
    if len(items) != n_items:
        raise ValueError(f"{src / 'items.txt'}: {len(items)} ids but model.json says n_items={n_items}")
    popularity = np.load(src / POPULARITY_FILE)
    model = model_class(meta["model_type"]).load(src, meta.get("model_config", {}), n_items)
    return Artifact(model=model, items=items, popularity=popularity, meta=meta)


def pop_artifact(directory: str | Path, sessions: list[list[str]]) -> Path:
    """A popularity artifact straight from string sessions (demo and cold start)."""
    items = ItemMap.from_sessions(sessions)
    encoded = [items.encode(s) for s in sessions]
    model = PopModel.fit(encoded, len(items))
    return save_artifact(directory, model, items, model.counts)
