"""A/B variant policies in the serving chain, and the request/response fields that carry them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from serve import fallback as fb
from serve.schemas import RecommendRequest, RecommendResponse, ScoreRequest


def test_policy_steps() -> None:
    chain = ["model", "precomputed", "popular"]
    assert fb.policy_steps(chain, None, False) == chain  # no experiment
    assert fb.policy_steps(chain, "model", False) == chain  # the champion: the usual chain
    assert fb.policy_steps(chain, "popular", False) == ["popular"]  # control: never personalised
    assert fb.policy_steps(["precomputed", "popular"], "popular", False) == ["popular"]
    # a challenger pinned on this endpoint's model: the champion's precomputed rows are not its own
    assert fb.policy_steps(chain, "version", True) == ["model", "popular"]
    assert fb.policy_steps(["precomputed", "popular"], "version", True) == ["popular"]
    # pinned on the other endpoint's model: this endpoint is the champion's
    assert fb.policy_steps(chain, "version", False) == chain


def test_visitor_id_is_an_id_and_responses_name_the_experiment() -> None:
    assert RecommendRequest.model_validate({"session_id": "s", "visitor_id": "v-1"}).visitor_id == "v-1"
    assert ScoreRequest.model_validate({"session_id": "s"}).visitor_id is None
    with pytest.raises(ValidationError) as exc:
        RecommendRequest.model_validate({"session_id": "s", "visitor_id": "a:b"})
    assert exc.value.errors()[0]["loc"] == ("visitor_id",)
    body = RecommendResponse(session_id="s", items=[], source="popular", model_version=None, tenant="t")
    assert body.model_dump()["experiment"] is None and body.model_dump()["variant"] is None
