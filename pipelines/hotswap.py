"""Hot-swap the running Serve replicas to new model versions, then verify that every replica serves them.

``swap`` reads the application config Serve is running (so the app's args, API keys among
them, never pass through the loop), pins the new versions and bumps ``generation`` in each
deployment's ``user_config``, and applies it declaratively, as ``serve deploy`` does: only
``user_config`` changes, so Serve calls ``reconfigure`` on the live replicas (they load the
new models beside the old ones, then flip) and restarts none. Two transports:

- ``address=None``: the Serve controller of the Ray cluster this process is connected to
  (the loop as a ``ray job`` on the serving cluster; ``make up``);
- ``address="http://head:8265"``: the dashboard's REST API of another cluster
  (``GET``/``PUT /api/serve/applications/``, token from ``RAY_AUTH_TOKEN[_PATH]``).

``verify`` needs no HTTP path to the replicas: each replica writes what it serves to Redis
(``store.keys.replica_key``, refreshed on every health check) and the loop checks that every
RUNNING replica Serve lists reports the expected generation and versions.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.request
from typing import Any

from store import keys

logger = logging.getLogger(__name__)

DEPLOYMENT = "Tandem"


class SwapError(RuntimeError):
    """The swap could not be applied or verified; the message says which replica lags."""


def _token() -> str | None:
    token = os.environ.get("RAY_AUTH_TOKEN")
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if not token and path and os.path.exists(path):
        token = open(path).read().strip()
    return token or None


def _rest(address: str, method: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    req = urllib.request.Request(f"{address.rstrip('/')}/api/serve/applications/", method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    token = _token()
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=30) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else {}


def details(address: str | None = None) -> dict[str, Any]:
    """Serve's instance details (applications, their deployed configs and replicas)."""
    if address:
        return _rest(address, "GET")
    from ray.serve.context import _get_global_client

    client = _get_global_client()
    if client is None:
        raise SwapError("no Serve controller on this Ray cluster")
    return dict(client.get_serve_details())


def pinned_config(info: dict[str, Any], app: str, versions: dict[str, str | None], generation: int) -> dict[str, Any]:
    """The declarative config Serve runs, with ``app``'s user_config pinned to ``versions``."""
    apps = info.get("applications") or {}
    if app not in apps or not apps[app].get("deployed_app_config"):
        raise SwapError(f"application {app!r} is not deployed from a config (deployed: {sorted(apps)})")
    configs = []
    for name, a in apps.items():
        cfg = dict(a["deployed_app_config"])
        if name == app:
            deployments = [dict(d) for d in cfg.get("deployments") or []]
            if not any(d.get("name") == DEPLOYMENT for d in deployments):
                deployments.append({"name": DEPLOYMENT})
            for d in deployments:
                if d.get("name") == DEPLOYMENT:
                    uc = dict(d.get("user_config") or {})
                    uc["generation"] = generation
                    for model in ("propensity", "recommender"):
                        if model in versions:
                            uc[f"{model}_version"] = versions[model]
                    d["user_config"] = uc
            cfg["deployments"] = deployments
        configs.append(cfg)
    out: dict[str, Any] = {"applications": configs}
    for key in ("proxy_location", "target_capacity"):  # kept as they are
        if info.get(key) is not None:
            out[key] = info[key]
    http = info.get("http_options") or {}
    out["http_options"] = {k: http[k] for k in ("host", "port", "request_timeout_s", "keep_alive_timeout_s")
                           if k in http and http[k] is not None}
    return out


def swap(app: str, versions: dict[str, str | None], address: str | None = None) -> int:
    """Apply the pinned versions to ``app``; returns the new generation."""
    generation = int(time.time() * 1000)
    config = pinned_config(details(address), app, versions, generation)
    if address:
        _rest(address, "PUT", config)
    else:
        from ray.serve.context import _get_global_client
        from ray.serve.schema import ServeDeploySchema

        _get_global_client().deploy_apps(ServeDeploySchema.model_validate(config))  # type: ignore[union-attr]
    logger.info("hot swap of %s to %s (generation %d) submitted", app, versions, generation)
    return generation


def _deployment(info: dict[str, Any], app: str) -> dict[str, Any]:
    deps = ((info.get("applications") or {}).get(app) or {}).get("deployments") or {}
    return dict(deps.get(DEPLOYMENT) or {})


def _state(value: Any) -> str:
    return str(value).upper().rsplit(".", 1)[-1]


def running_replicas(info: dict[str, Any], app: str) -> list[str]:
    return [r["replica_id"] for r in _deployment(info, app).get("replicas") or [] if _state(r.get("state")) == "RUNNING"]


def settling(info: dict[str, Any], app: str) -> list[str]:
    """Replicas on their way up (starting, recovering): they must report too before a swap is done;
    and the deployment itself while it is not HEALTHY."""
    dep = _deployment(info, app)
    out = [f"{r['replica_id']}:{_state(r.get('state'))}" for r in dep.get("replicas") or []
           if _state(r.get("state")) not in ("RUNNING", "STOPPING")]
    if _state(dep.get("status")) != "HEALTHY":
        out.append(f"deployment:{_state(dep.get('status'))}")
    return out


def reports(client: Any, app: str, replicas: list[str]) -> dict[str, dict[str, Any] | None]:
    raw = client.mget([keys.replica_key(app, r) for r in replicas]) if replicas else []
    return {r: (json.loads(v) if v else None) for r, v in zip(replicas, raw, strict=True)}


def verify(client: Any, app: str, generation: int, versions: dict[str, str | None], address: str | None = None,
           timeout_s: float = 60.0, poll_s: float = 0.5) -> dict[str, Any]:
    """Wait until every RUNNING replica of ``app`` reports ``generation`` and ``versions``."""
    t0 = time.monotonic()
    last: dict[str, Any] = {}
    while True:
        info = details(address)
        replicas = running_replicas(info, app)
        got = reports(client, app, replicas)
        lagging: dict[str, Any] = {r: (rep or {}).get("versions") for r, rep in got.items()
                                   if not rep or int(rep.get("generation", -1)) < generation
                                   or any(rep.get("versions", {}).get(m) != v for m, v in versions.items() if v)}
        lagging.update({s: "settling" for s in settling(info, app)})
        last = {"replicas": len(replicas), "lagging": lagging}
        if replicas and not lagging:
            return {"ok": True, "seconds": round(time.monotonic() - t0, 2), "replicas": len(replicas)}
        if time.monotonic() - t0 > timeout_s:
            raise SwapError(f"after {timeout_s:.0f}s {len(lagging)} of {len(replicas)} replicas of {app} do not "
                            f"serve {versions} (generation {generation}): {last['lagging']}")
        time.sleep(poll_s)
