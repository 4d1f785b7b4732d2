"""The replica's per-tenant model lookup: Serve's multiplexed LRU is asked at most once per
``HOT_RECHECK_S`` a tenant, and again at once for a new generation."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from serve import deployments
from serve.engine import ModelBundle


def _replica() -> SimpleNamespace:
    calls: list[str] = []

    async def tenant_models(model_id: str) -> ModelBundle:
        calls.append(model_id)
        return ModelBundle(tenant=model_id)

    return SimpleNamespace(_hot={}, generation=1, _warmed=True, _active=set(), tenant_models=tenant_models,
                           calls=calls)


def test_the_multiplexed_lookup_is_asked_once_per_recheck_and_per_generation(monkeypatch) -> None:
    models_for = deployments.TandemService.func_or_class.models_for
    now = [100.0]
    monkeypatch.setattr(deployments.time, "monotonic", lambda: now[0])
    r = _replica()

    async def go() -> list[str]:
        seen = [(await models_for(r, "acme")).tenant for _ in range(50)]
        now[0] += deployments.HOT_RECHECK_S + 0.01
        seen.append((await models_for(r, "acme")).tenant)
        r.generation = 2                                    # a hot swap: asked at once
        seen.append((await models_for(r, "acme")).tenant)
        seen.append((await models_for(r, "bolt")).tenant)
        return seen

    seen = asyncio.run(go())
    assert seen[:50] == ["acme@1"] * 50
    assert seen[50:] == ["acme@1", "acme@2", "bolt@2"]
    assert r.calls == ["acme@1", "acme@1", "acme@2", "bolt@2"]
    assert r._active == {"acme", "bolt"}


def test_the_memo_never_holds_more_tenants_than_the_replica_multiplexes() -> None:
    models_for = deployments.TandemService.func_or_class.models_for
    r = _replica()

    async def go() -> None:
        for i in range(3 * deployments.MAX_MULTIPLEXED):
            await models_for(r, f"t{i}")

    asyncio.run(go())
    assert 0 < len(r._hot) <= deployments.MAX_MULTIPLEXED
