"""Budget key layout and argument checks (pure, no Redis)."""

from __future__ import annotations

import pytest

from store.budget import BudgetKeys, BudgetState, Reservation


def test_campaign_keys_share_a_hash_tag_under_the_tenant() -> None:
    k = BudgetKeys("camp-2997", tenant="acme")
    assert k.budget == "tandem:acme:budget:{camp-2997}"
    assert k.pending == "tandem:acme:pending:{camp-2997}"
    assert k.bid("b1") == "tandem:acme:bid:{camp-2997}:b1"
    assert BudgetKeys("c").budget == "tandem:default:budget:{c}"


@pytest.mark.parametrize("campaign", ["", "a:b", "a{b}", "x" * 65, "a b"])
def test_bad_campaign_names_are_refused(campaign: str) -> None:
    with pytest.raises(ValueError, match="campaign"):
        BudgetKeys(campaign)


def test_bad_bid_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="bid_id"):
        BudgetKeys("c").bid("has space")
    with pytest.raises(ValueError, match="bid_id"):
        BudgetKeys("c").bid("")


def test_state_and_reservation_helpers() -> None:
    assert BudgetState(budget=100, spent=30, reserved=20).remaining == 50
    assert Reservation("held", 5).ok
    assert Reservation("duplicate", 5, "held").ok
    assert not Reservation("duplicate", 5, "won").ok
    assert not Reservation("refused", 0).ok
