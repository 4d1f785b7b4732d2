"""The benchmark peer: the bare uvicorn FastAPI app a user would write instead of Serve.

It does the same work per request as the Serve app (the same ``Engine``: same
Redis lookups, same model, same fallbacks) in one uvicorn process, so the
benchmark ratio measures what Serve's proxy, router and replica hop cost.

    python -m bench.serve_bare --args-json FILE --port P
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from typing import Annotated

from fastapi import FastAPI, Header

from serve.deployments import tenant_for
from serve.engine import Engine, ModelBundle
from serve.loader import load_bundle
from serve.schemas import AppArgs, RecommendRequest, RecommendResponse, ScoreRequest, ScoreResponse
from store.online import OnlineStore

logger = logging.getLogger(__name__)


def create_app(args: AppArgs) -> FastAPI:
    app = FastAPI(title="tandem-bare")
    cache = OnlineStore(args.redis_url, args.cache)
    engine = Engine(args, cache)
    bundles: dict[str, ModelBundle] = {}

    def models(tenant: str) -> ModelBundle:
        if tenant not in bundles:
            bundles[tenant] = load_bundle(tenant, args.registry_uri, args.tenants.get(tenant),
                                          args.model_cache_dir, args.popular_k)
        return bundles[tenant]

    models(args.default_tenant)

    @app.post("/v1/score", response_model=ScoreResponse)
    async def score(req: ScoreRequest, x_api_key: Annotated[str | None, Header()] = None) -> ScoreResponse:
        tenant = tenant_for(x_api_key, args)
        return await engine.score(req, tenant, models(tenant))

    @app.post("/v1/recommend", response_model=RecommendResponse)
    async def recommend(req: RecommendRequest,
                        x_api_key: Annotated[str | None, Header()] = None) -> RecommendResponse:
        tenant = tenant_for(x_api_key, args)
        return await engine.recommend(req, tenant, models(tenant))

    return app


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
