"""Deploy the tandem Serve app from ``serve/config.yaml`` with ``serve deploy``.

    python -m jobs.deploy --config serve/config.yaml --registry URI --redis URL \
        --api-key KEY=TENANT [--api-key ...] [--address http://127.0.0.1:8265] [--wait] [--reload]

The registry URI, Redis URL and API keys are written into the application's
``args`` of a resolved copy (mode 0600, under ``.run/``); a deployment's
``num_replicas``, ``max_ongoing_requests`` and ``max_queued_requests`` left null in the
config are set from the cores present (``serve.sizing``, ``--cores`` to override). The
copy is validated against
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
from typing import Any, TypedDict

import yaml
from pydantic import BaseModel, Field, ValidationError

from pipelines import entrypoint
from store.redact import redact_text, safe_args, validation_summary

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
DEPLOY_ATTEMPTS = 5
TRANSIENT_DEPLOY_ERRORS = ("Failed to connect to Ray at address", "Request failed with status code 500")


def parse_keys(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, tenant = pair.partition("=")
        if not sep or not key or not tenant:
            # never echo the argument: it holds a key
            raise entrypoint.BadInput(f"--api-key must look like KEY=TENANT (argument {len(out) + 1} does not)")
        out[key] = tenant
    return out


def render(config: dict[str, Any], registry: str, redis_url: str, api_keys: dict[str, str],
           generation: int | None = None, propensity_version: str | None = None,
           recommender_version: str | None = None, http_port: int | None = None,
           cores: int | None = None) -> dict[str, Any]:
    """The config with the app args and sizing filled in and validated (errors name the field)."""
    from ray.serve.schema import ServeDeploySchema

    from serve.schemas import AppArgs, ModelConfig
    from serve.sizing import sizing, usable_cores

    size = sizing(cores or usable_cores())

    app = config["applications"][0]
    if "://" not in registry:
        registry = str(Path(registry).expanduser().resolve())
    app["args"] = {**app.get("args", {}), "registry_uri": registry, "redis_url": redis_url,
                   "api_keys": {**app.get("args", {}).get("api_keys", {}), **api_keys}}
    AppArgs.model_validate(app["args"])
    for dep in app.get("deployments", []):
        for key in ("num_replicas", "max_ongoing_requests", "max_queued_requests"):
            if dep.get(key) is not None:
                continue
            if key == "num_replicas" and dep.get("autoscaling_config"):
                dep.pop(key, None)  # the autoscaler picks the count
            else:
                dep[key] = getattr(size, key)
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
            raise RuntimeError(f"application {app} failed to deploy:\n{last}")
        time.sleep(2)
    raise RuntimeError(f"application {app} not RUNNING after {timeout_s:.0f}s:\n{last}")


class Config(BaseModel, extra="forbid"):
    config: str = Field(str(ROOT / "serve" / "config.yaml"), description="the Serve config YAML")
    registry: str
    redis: str
    api_key: list[str] = Field(default_factory=list, description="KEY=TENANT pairs")
    address: str | None = Field(None, description="Ray dashboard address (default: RAY_ADDRESS, else "
                                                  "http://127.0.0.1:8265)")
    out: str = str(ROOT / ".run" / "serve.resolved.yaml")
    http_port: int | None = Field(None, ge=1, le=65535, description="default: TANDEM_SERVE_PORT (from .run/env), "
                                  "else the config's port")
    cores: int | None = Field(None, ge=1, description="size the replicas for this many cores (default: the cores "
                              "present)")
    reload: bool = False
    propensity_version: str | None = None
    recommender_version: str | None = None
    wait: bool = False
    dry_run: bool = False
    smoke_test: bool = False


class Result(TypedDict):
    config: str
    app: str
    deployed: bool
    generation: int | None


def run(cfg: Config) -> Result:
    address = cfg.address or os.environ.get("RAY_ADDRESS", "http://127.0.0.1:8265")
    config = yaml.safe_load(Path(cfg.config).read_text())
    generation = int(time.time()) if cfg.reload else None
    http_port = cfg.http_port or (int(os.environ["TANDEM_SERVE_PORT"]) if os.environ.get("TANDEM_SERVE_PORT") else None)
    try:
        resolved = render(config, cfg.registry, cfg.redis, parse_keys(cfg.api_key), generation,
                          cfg.propensity_version, cfg.recommender_version, http_port, cfg.cores)
    except ValidationError as exc:  # pydantic's own message prints the values: keys, passwords
        raise entrypoint.BadInput(f"{cfg.config}: {validation_summary(exc)}") from None
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.touch(mode=0o600, exist_ok=True)
    out.write_text(yaml.safe_dump(resolved, sort_keys=False))
    os.chmod(out, 0o600)  # it holds API keys
    app = resolved["applications"][0]
    logger.info("resolved config %s: args %s", out, json.dumps(safe_args(app["args"])))
    result = Result(config=str(out), app=app["name"], deployed=False, generation=generation)
    if cfg.dry_run:
        return result
    secrets = list(app["args"]["api_keys"])
    for attempt in range(1, DEPLOY_ATTEMPTS + 1):
        proc = subprocess.run([serve_cli(), "deploy", str(out), "-a", address], capture_output=True, text=True)
        sys.stderr.write(redact_text(proc.stdout + proc.stderr, secrets))
        # a busy head's dashboard can refuse a connection for a moment, or fail a request while it
        # (re)starts the Serve controller: retry those cases only
        if proc.returncode == 0 or not any(m in proc.stdout + proc.stderr for m in TRANSIENT_DEPLOY_ERRORS):
            break
        logger.warning("the dashboard at %s failed the deploy request (attempt %d/%d); retrying in 5 s",
                       address, attempt, DEPLOY_ATTEMPTS)
        time.sleep(5)
    if proc.returncode != 0:
        raise RuntimeError(f"serve deploy failed with exit code {proc.returncode}")
    if cfg.wait:
        wait_running(address, app["name"])
    result["deployed"] = True
    return result


def flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="the Serve config YAML (default serve/config.yaml)")
    p.add_argument("--registry")
    p.add_argument("--redis")
    p.add_argument("--api-key", action="append", help="KEY=TENANT (repeatable)")
    p.add_argument("--address", help="Ray dashboard address (default: RAY_ADDRESS, else http://127.0.0.1:8265)")
    p.add_argument("--out", help="the resolved config (default .run/serve.resolved.yaml, mode 0600)")
    p.add_argument("--http-port", type=int, help="default: TANDEM_SERVE_PORT, else the config's port")
    p.add_argument("--cores", type=int, help="size the replicas for this many cores (default: the cores present)")
    p.add_argument("--reload", action="store_true", help="hot-swap to the current champions")
    p.add_argument("--propensity-version")
    p.add_argument("--recommender-version")
    p.add_argument("--wait", action="store_true", help="wait until the app is RUNNING")
    p.add_argument("--dry-run", action="store_true", help="write the resolved config only")


def fill_smoke(values: dict[str, Any], tmp: Path) -> None:
    """Render and validate into a temp file; never deploys."""
    values.setdefault("registry", str(tmp / "registry"))
    values.setdefault("redis", "redis://127.0.0.1:6379/0")
    values.setdefault("api_key", ["smoke-key=default"])
    values.setdefault("out", str(tmp / "serve.resolved.yaml"))
    values["dry_run"] = True


JOB = entrypoint.Job(prog="python -m jobs.deploy", description=__doc__.splitlines()[0], config=Config, run=run,
                     flags=flags, smoke=fill_smoke)


def main(argv: list[str] | None = None) -> int:
    return entrypoint.main(JOB, argv)


if __name__ == "__main__":
    raise SystemExit(main())
