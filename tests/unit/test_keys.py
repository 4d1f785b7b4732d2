from __future__ import annotations

import pytest

from store import keys


def test_layout_is_versioned_and_tenant_scoped() -> None:
    assert keys.pointer_key("score", "acme") == "tandem:acme:ptr:score"
    assert keys.entity_key("score", "v1", "s42", "acme") == "tandem:acme:score:v1:s42"
    assert keys.meta_key("recs", "v2") == "tandem:default:recs:v2:__meta__"
    assert keys.session_key("s1", "acme") == "tandem:acme:sess:s1"


def test_tenants_never_share_a_prefix() -> None:
    a = keys.entity_key("score", "v1", "s1", "a")
    b = keys.entity_key("score", "v1", "s1", "ab")
    assert not a.startswith(keys.namespace("score", "v1", "ab")) and not b.startswith(keys.namespace("score", "v1", "a"))


@pytest.mark.parametrize("tenant", ["", "a:b", "x" * 65, "a b", "*"])
def test_unsafe_tenant_rejected(tenant: str) -> None:
    with pytest.raises(ValueError, match="tenant"):
        keys.pointer_key("score", tenant)


def test_unknown_table_rejected() -> None:
    with pytest.raises(ValueError, match="unknown table"):
        keys.namespace("nope", "v1")
