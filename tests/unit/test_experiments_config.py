"""Experiment config: valid configs load; every mistake names its field."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from models.experiments.config import ExperimentConfig, load_config


def _data(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "experiment_id": "rec-2026-12", "salt": "x1",
        "variants": [{"name": "control", "policy": "popular", "share": 0.5},
                     {"name": "challenger", "policy": "version", "model_version": "v20261201", "share": 0.5}],
        "guardrails": [{"metric": "conversion", "max_relative_drop": 0.02, "confidence": 0.95}],
    }
    base.update(kw)
    return base


def test_valid_config_defaults() -> None:
    cfg = ExperimentConfig.model_validate(_data())
    assert cfg.control_name == "control"
    assert cfg.treatments == ("challenger",)
    assert cfg.unit == "session" and cfg.primary_metric == "conversion"
    assert cfg.attribution.purchase.total_seconds() == 86400
    assert not cfg.kill_switch.engaged
    assert cfg.variant("challenger").model_version == "v20261201"


@pytest.mark.parametrize(("change", "field"), [
    ({"variants": [{"name": "control", "policy": "popular", "share": 0.5},
                   {"name": "m", "policy": "model", "share": 0.4}]}, "variants"),
    ({"variants": [{"name": "a", "policy": "popular", "share": 0.5},
                   {"name": "a", "policy": "model", "share": 0.5}]}, "variants"),
    ({"variants": [{"name": "c", "policy": "popular", "share": 0.5},
                   {"name": "m", "policy": "version", "share": 0.5}]}, "variants.1"),
    ({"variants": [{"name": "c", "policy": "popular", "share": 0.5},
                   {"name": "m", "policy": "model", "share": 0.5, "model_version": "v1"}]}, "variants.1"),
    ({"variants": [{"name": "m1", "policy": "model", "share": 0.5},
                   {"name": "m2", "policy": "model", "share": 0.5}]}, "control"),
    ({"control": "nope"}, "control"),
    ({"unit": "user"}, "unit"),
    ({"guardrails": [{"metric": "revenue", "max_relative_drop": 0.02}]}, "guardrails.0.metric"),
    ({"guardrails": [{"metric": "conversion", "max_relative_drop": 1.5}]}, "guardrails.0.max_relative_drop"),
    ({"attribution": {"click": "-PT5M"}}, "attribution.click"),
    ({"colour": "blue"}, "colour"),
    ({"experiment_id": "has space"}, "experiment_id"),
])
def test_errors_name_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=rf"cfg.yaml: invalid experiment config: .*{field}"):
        load_config(_data(**change), "cfg.yaml")


def test_explicit_control_and_frozen() -> None:
    cfg = ExperimentConfig.model_validate(_data(
        variants=[{"name": "champion", "policy": "model", "share": 0.9},
                  {"name": "challenger", "policy": "version", "model_version": "v2", "share": 0.1}],
        control="champion"))
    assert cfg.control_name == "champion" and cfg.shares() == {"champion": 0.9, "challenger": 0.1}
    with pytest.raises(ValidationError):
        cfg.salt = "other"  # type: ignore[misc]
