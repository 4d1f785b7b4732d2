"""Deploy the tandem Serve app from ``serve/config.yaml`` with ``serve deploy``.

    python -m jobs.deploy --config serve/config.yaml --registry URI --redis URL \
        --api-key KEY=TENANT [--api-key ...] [--address http://127.0.0.1:8265] [--wait] [--reload]

The registry URI, Redis URL and API keys are written into the application's
``args`` of a resolved copy (mode 0600, under ``.run/``), validated against
``serve.schemas.AppArgs`` and the Serve deploy schema, then deployed. ``--reload``
bumps ``user_config.generation`` so running replicas hot-swap to the registry's
current champions through ``reconfigure`` without restarting.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent


def parse_keys(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, tenant = pair.partition("=")
        if not sep or not key or not tenant:
            raise SystemExit(f"--api-key must look like KEY=TENANT, got {pair!r}")
        out[key] = tenant
    return out


def render(config: dict[str, Any], registry: str, redis_url: str, api_keys: dict[str, str],
           generation: int | None = None, propensity_version: str | None = None,
           recommender_version: str | None = None, http_port: int | None = None) -> dict[str, Any]:
    """The config with the app args filled in and validated (errors name the field)."""
    from ray.serve.schema import ServeDeploySchema

    from serve.schemas import AppArgs, ModelConfig

    app = config["applications"][0]
    if "://" not in registry:
        registry = str(Path(registry).expanduser().resolve())
    app["args"] = {**app.get("args", {}), "registry_uri": registry, "redis_url": redis_url,
                   "api_keys": {**app.get("args", {}).get("api_keys", {}), **api_keys}}
    AppArgs.model_validate(app["args"])
    for dep in app.get("deployments", []):
        uc = dict(dep.get("user_config") or {})
        if generation is not None:
            uc["generation"] = generation
        if propensity_version is not None:
            uc["propensity_version"] = propensity_version
        if recommender_version is not None:
            uc["recommender_version"] = recommender_version
        dep["user_config"] = ModelConfig.model_validate(uc).model_dump()
    if http_port is not None:
        config.setdefault("http_options", {})["port"] = http_port
    ServeDeploySchema.model_validate(config)
    return config


def serve_cli() -> str:
    return str(Path(sys.executable).with_name("serve"))


def wait_running(address: str, app: str, timeout_s: float = 300.0) -> None:
    deadline = time.time() + timeout_s
    last = ""
    while time.time() < deadline:
        out = subprocess.run([serve_cli(), "status", "-a", address], capture_output=True, text=True)
        last = out.stdout
        try:
            status = yaml.safe_load(out.stdout) or {}
            state = status.get("applications", {}).get(app, {}).get("status")
        except yaml.YAMLError:
            state = None
        if state == "RUNNING":
            logger.info("application %s is RUNNING", app)
            return
        if state == "DEPLOY_FAILED":
            raise SystemExit(f"application {app} failed to deploy:\n{last}")
        time.sleep(2)
    raise SystemExit(f"application {app} not RUNNING after {timeout_s:.0f}s:\n{last}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.deploy", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "serve" / "config.yaml"))
    parser.add_argument("--registry", required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--api-key", action="append", default=[], help="KEY=TENANT (repeatable)")
    parser.add_argument("--address", default=os.environ.get("RAY_ADDRESS", "http://127.0.0.1:8265"))
    parser.add_argument("--out", default=str(ROOT / ".run" / "serve.resolved.yaml"))
    parser.add_argument("--http-port", type=int, default=None)
    parser.add_argument("--reload", action="store_true", help="hot-swap to the current champions")
    parser.add_argument("--propensity-version", default=None)
    parser.add_argument("--recommender-version", default=None)
    parser.add_argument("--wait", action="store_true", help="wait until the app is RUNNING")
    parser.add_argument("--dry-run", action="store_true", help="write the resolved config only")
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    config = yaml.safe_load(Path(ns.config).read_text())
    generation = int(time.time()) if ns.reload else None
    resolved = render(config, ns.registry, ns.redis, parse_keys(ns.api_key), generation,
                      ns.propensity_version, ns.recommender_version, ns.http_port)
    out = Path(ns.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.touch(mode=0o600, exist_ok=True)
    out.write_text(yaml.safe_dump(resolved, sort_keys=False))
    os.chmod(out, 0o600)  # it holds API keys
    shown = {**resolved["applications"][0]["args"], "api_keys": f"<{len(resolved['applications'][0]['args']['api_keys'])} keys>"}
    logger.info("resolved config %s: args %s", out, json.dumps(shown))
    if ns.dry_run:
        return 0
    proc = subprocess.run([serve_cli(), "deploy", str(out), "-a", ns.address], capture_output=True, text=True)
    sys.stderr.write(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"serve deploy failed with exit code {proc.returncode}")
    if ns.wait:
        wait_running(ns.address, resolved["applications"][0]["name"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
