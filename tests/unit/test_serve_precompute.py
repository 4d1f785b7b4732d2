"""Pure parts of precompute and deploy: tenant normalisation, popular ranking, config rendering."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from pydantic import ValidationError

from jobs import deploy
from models.features.item import popular_items
from store import publish

CONFIG = Path(__file__).resolve().parents[2] / "serve" / "config.yaml"


def test_tenant_of_treats_every_null_as_default() -> None:
    assert [publish.tenant_of(v) for v in (None, float("nan"), pd.NA, "", "acme")] == \
        ["default", "default", "default", "default", "acme"]


def test_popular_table_ranks_purchases_above_views_and_normalises() -> None:
    items = pd.DataFrame({"item_id": ["a", "b", "c"], "views_7d": [100, 10, 50], "purchases_7d": [0, 20, 0]})
    top = popular_items(items, k=2)
    assert [i for i, _ in top] == ["b", "a"]
    assert top[0][1] == 1.0 and 0 < top[1][1] < 1
    with pytest.raises(ValueError, match="popularity column"):
        popular_items(pd.DataFrame({"item_id": ["a"]}), k=1)


def test_deploy_renders_args_and_hot_swap_generation() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    out = deploy.render(config, "reg", "redis://127.0.0.1:1/0", {"k-123": "acme"}, generation=7,
                        propensity_version="v1")
    app = out["applications"][0]
    assert app["args"]["registry_uri"].endswith("/reg") and app["args"]["api_keys"] == {"k-123": "acme"}
    uc = app["deployments"][0]["user_config"]
    assert uc == {"generation": 7, "propensity_version": "v1", "recommender_version": None}
    dep = app["deployments"][0]
    assert dep["max_queued_requests"] > 0 and dep["backpressure_config"]["retry_after_s"] > 0
    assert out["logging_config"]["encoding"] == "JSON"


def test_deploy_rejects_bad_args_naming_the_field() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    config["applications"][0]["args"]["deadline_ms"] = -5
    with pytest.raises(ValidationError, match="deadline_ms"):
        deploy.render(config, "reg", "redis://x", {})
    with pytest.raises(ValueError, match="KEY=TENANT"):
        deploy.parse_keys(["no-tenant"])
