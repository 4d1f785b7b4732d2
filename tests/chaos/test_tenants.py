"""Tenants with disjoint catalogues never see each other's items, whatever path answers."""

from __future__ import annotations

import random

import httpx

from tests.chaos.conftest import CATALOGUES, Stack

ALL_ITEMS = [item for items in CATALOGUES.values() for item in items] + ["zz1", "zz2"]


def test_no_tenant_is_ever_shown_another_tenants_items(stack: Stack) -> None:
    rng = random.Random(16)
    own = {tenant: set(items) for tenant, items in CATALOGUES.items()}
    own["dune"] = own["default"]                         # no models of its own: the shared default's
    sources: dict[str, set[str]] = {t: set() for t in own}
    with httpx.Client(timeout=30) as c:
        for round_ in range(25):
            for tenant, catalogue in own.items():
                sid = f"tn-{round_}"                       # the same session ids in every tenant
                seen = rng.sample(ALL_ITEMS, rng.randint(0, 4))
                if rng.random() < 0.5:                     # live events, from any catalogue
                    ev = c.post(f"{stack.url}/v1/events", headers=stack.headers(tenant),
                                json={"session_id": sid, "events": [{"item_id": i} for i in seen] or
                                      [{"item_id": rng.choice(ALL_ITEMS)}]})
                    assert ev.status_code == 200, ev.text
                body = {"session_id": sid if rng.random() < 0.7 else f"new-{tenant}-{round_}",
                        "items": seen if rng.random() < 0.5 else [], "k": rng.choice([1, 5, 20, 200]),
                        "exclude_seen": rng.random() < 0.5}
                r = c.post(f"{stack.url}/v1/recommend", headers=stack.headers(tenant), json=body)
                assert r.status_code == 200, r.text
                out = r.json()
                got = {i["item_id"] for i in out["items"]}
                assert got <= catalogue, (tenant, body, out)
                assert out["tenant"] == tenant
                sources[tenant].add(out["source"])
    # every tenant was answered by its model and by the popular fallback at least once
    for tenant in own:
        assert {"model", "popular"} <= sources[tenant], (tenant, sources[tenant])
