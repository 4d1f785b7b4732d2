"""Pure serving logic: request schemas, fallback order, tenant resolution, key versions."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from serve import fallback as fb
from serve.deployments import effective_tenant_config, gate_of
from serve.engine import event_json, events_frame
from serve.schemas import AppArgs, EventsRequest, ModelConfig, RecommendRequest, ScoreRequest, TenantConfig
from store import keys


def _field(exc: ValidationError) -> list[str]:
    return [".".join(str(p) for p in e["loc"]) for e in exc.errors()]


def test_score_request_defaults_and_event_parsing() -> None:
    req = ScoreRequest.model_validate({"session_id": "s1", "events": [
        {"item_id": "i1", "event_type": "cart", "event_time": "2026-11-24T12:00:00", "price": 3.5}]})
    assert req.deadline_ms is None
    assert req.events[0].event_time.tzinfo is not None  # naive times are read as UTC


@pytest.mark.parametrize(("payload", "field"), [
    ({"session_id": 42}, "session_id"),
    ({"session_id": ""}, "session_id"),
    ({"session_id": "a b"}, "session_id"),
    ({"session_id": "s", "deadline_ms": -1}, "deadline_ms"),
    ({"session_id": "s", "events": [{"item_id": "i", "event_type": "click"}]}, "events.0.event_type"),
    ({"session_id": "s", "events": [{"item_id": "i", "price": -2}]}, "events.0.price"),
    ({"session_id": "s", "colour": "red"}, "colour"),
])
def test_score_request_errors_name_the_field(payload: dict, field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        ScoreRequest.model_validate(payload)
    assert field in _field(exc.value)


def test_recommend_and_events_requests_bound_their_fields() -> None:
    with pytest.raises(ValidationError) as exc:
        RecommendRequest.model_validate({"session_id": "s", "k": 0})
    assert "k" in _field(exc.value)
    with pytest.raises(ValidationError) as exc:
        EventsRequest.model_validate({"session_id": "s", "events": []})
    assert "events" in _field(exc.value)


def test_app_args_forbid_unknown_fields_and_short_keys() -> None:
    with pytest.raises(ValidationError) as exc:
        AppArgs.model_validate({"registry_uri": "r", "redis_url": "redis://x", "redis": "oops"})
    assert "redis" in _field(exc.value)
    with pytest.raises(ValidationError):
        AppArgs.model_validate({"registry_uri": "r", "redis_url": "u", "api_keys": {"k": "t"}})


def test_fallback_order_follows_new_evidence() -> None:
    assert fb.score_steps(has_events=True, has_model=True) == ["model", "precomputed", "popular"]
    assert fb.score_steps(has_events=False, has_model=True) == ["precomputed", "popular"]
    assert fb.score_steps(has_events=True, has_model=False) == ["precomputed", "popular"]
    assert fb.recommend_steps(has_items=True, has_model=True)[0] == "model"
    assert fb.recommend_steps(has_items=False, has_model=True) == ["precomputed", "popular"]
    assert fb.skip_reason("model", True, False) == "no_model"
    assert fb.skip_reason("model", False, True) == "no_events"
    assert fb.skip_reason("popular", True, True) is None


def test_popular_excludes_seen_items_unless_asked() -> None:
    popular = [("a", 1.0), ("b", 0.8), ("c", 0.5), ("d", 0.1)]
    assert fb.top_popular(popular, ["a", "c"], k=2) == [("b", 0.8), ("d", 0.1)]
    assert fb.top_popular(popular, ["a"], k=2, exclude_seen=False) == [("a", 1.0), ("b", 0.8)]
    assert fb.top_popular([], ["a"], k=3) == []


def test_deadline_counts_down_with_its_clock() -> None:
    now = [10.0]
    dl = fb.Deadline(10.0, clock=lambda: now[0])
    assert dl.remaining_s() == pytest.approx(0.010)
    now[0] += 0.004
    assert dl.elapsed_ms() == pytest.approx(4.0)
    assert not dl.expired()
    now[0] += 0.007
    assert dl.expired()


def test_api_key_resolves_tenant_or_says_why_not() -> None:
    gate = gate_of(AppArgs(registry_uri="r", redis_url="u", api_keys={"key-a": "acme", "key-b": "bolt"}))
    assert gate.tenant("key-a") == ("acme", None)
    assert gate.tenant(None) == (None, "missing X-API-Key header")
    for bad in ("key-c", ""):
        assert gate.tenant(bad) == (None, "unknown API key")
    open_gate = gate_of(AppArgs(registry_uri="r", redis_url="u", require_api_key=False))
    assert open_gate.tenant(None) == ("default", None)


def test_user_config_pins_apply_only_to_shared_registry_tenants() -> None:
    args = AppArgs(registry_uri="r", redis_url="u",
                   tenants={"own": TenantConfig(registry_uri="/elsewhere"),
                            "pinned": TenantConfig(propensity_version="v1")})
    mc = ModelConfig(propensity_version="v9", recommender_version="r9")
    assert effective_tenant_config("own", args, mc).propensity_version is None
    assert effective_tenant_config("pinned", args, mc).propensity_version == "v1"
    shared = effective_tenant_config("other", args, mc)
    assert (shared.propensity_version, shared.recommender_version) == ("v9", "r9")


def test_namespace_versions_round_trip_the_model_version() -> None:
    ns = keys.run_version("v20261124T130000-abc123", "f00d12")
    assert keys.model_version_of(ns) == "v20261124T130000-abc123"
    assert keys.entity_key("score", ns, "s1", "acme").startswith("tandem:acme:score:")
    with pytest.raises(ValueError):
        keys.run_version("bad version", "x")


def test_events_frame_is_canonical_for_the_feature_function() -> None:
    req = EventsRequest.model_validate({"session_id": "s1", "events": [
        {"item_id": "i1", "event_time": "2026-11-24T12:00:00Z"},
        {"item_id": "i2", "event_type": "cart", "event_time": "2026-11-24T12:00:30Z", "price": 9.0}]})
    import json

    frame = events_frame([json.loads(event_json(e)) for e in req.events], "s1", "acme")
    from models.features.session import session_features

    feats = session_features(frame, cut_at_first_purchase=False)
    assert list(feats["session_id"]) == ["s1"]
    assert feats.loc[0, "n_carts"] == 1.0 and feats.loc[0, "duration_s"] == pytest.approx(30.0)
    assert feats.loc[0, "tenant"] == "acme"


def test_latency_estimate_skips_models_the_deadline_cannot_fit() -> None:
    est = fb.LatencyEstimate(alpha=0.5)
    assert est.fits(0.001)                     # unknown model: try it
    est.observe(4.0)
    assert est.fits(0.005) and not est.fits(0.003)
    est.observe(40.0)                          # a spike dominates for a while ...
    assert not est.fits(0.015)
    for _ in range(40):
        est.observe(2.0)                       # ... then decays back
    assert est.fits(0.005)
