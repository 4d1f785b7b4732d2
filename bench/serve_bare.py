"""The benchmark peer: the bare uvicorn FastAPI app a user would write instead of Serve.

It serves the same HTTP API (``serve.api``: the same guard, fast path and routes) with the
same ``Engine`` (same Redis lookups, same model, same fallbacks) in uvicorn processes, so
the benchmark ratio measures what Serve's proxy, router and replica hop cost.

    python -m bench.serve_bare --args-json FILE --port P [--workers N]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from typing import Any

from fastapi import FastAPI

from serve import api as http
from serve.deployments import gate_of
from serve.engine import Engine, ModelBundle
from serve.loader import load_bundle
from serve.schemas import AppArgs, HealthResponse
from store.online import OnlineStore

logger = logging.getLogger(__name__)


class BareService:
    """``serve.api.Service`` without Serve: one engine, models loaded once per tenant."""

    def __init__(self, args: AppArgs):
        self.args = args
        self.gate = gate_of(args)
        self.engine = Engine(args, OnlineStore(args.redis_url, args.cache))
        self.bundles: dict[str, ModelBundle] = {}
        self.models(args.default_tenant)

    def models(self, tenant: str) -> ModelBundle:
        if tenant not in self.bundles:
            self.bundles[tenant] = load_bundle(tenant, self.args.registry_uri, self.args.tenants.get(tenant),
                                               self.args.model_cache_dir, self.args.popular_k)
        return self.bundles[tenant]

    async def handle(self, endpoint: str, req: Any, tenant: str) -> Any:
        if endpoint == "events":
            return await self.engine.add_events(req, tenant)
        if endpoint == "score":
            return await self.engine.score(req, tenant, self.models(tenant))
        return await self.engine.recommend(req, tenant, self.models(tenant))

    async def health(self, detailed: bool) -> HealthResponse:
        return HealthResponse(status="ok" if await self.engine.redis_state() == "up" else "degraded")


def create_app(args: AppArgs) -> FastAPI:
    http.bind(BareService(args))
    return http.api


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m bench.serve_bare")
    parser.add_argument("--args-json", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if ns.workers > 1:   # uvicorn's multi-process mode needs an import string; the factory reads the env
        os.environ["TANDEM_BARE_ARGS_JSON"] = ns.args_json
        uvicorn.run("bench.serve_bare:app_from_env", factory=True, host="127.0.0.1", port=ns.port,
                    workers=ns.workers, log_level="warning", access_log=False)
        return 0
    with open(ns.args_json) as f:
        args = AppArgs.model_validate(json.load(f))
    uvicorn.run(create_app(args), host="127.0.0.1", port=ns.port, log_level="warning", access_log=False)
    return 0


def app_from_env() -> FastAPI:
    """uvicorn factory for ``--workers N``: the app for the args file named by TANDEM_BARE_ARGS_JSON."""
    with open(os.environ["TANDEM_BARE_ARGS_JSON"]) as f:
        return create_app(AppArgs.model_validate(json.load(f)))


if __name__ == "__main__":
    raise SystemExit(main())
