"""Ray connect helpers shared by the pipelines (no argv parsing here).

``use_train_local_env`` tunes Ray Train V2 for a process that starts its own local Ray (the
local launcher ``cluster.local``, the recommender job, ``bench.train``).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import MutableMapping
from typing import Any

from store import fs

logger = logging.getLogger(__name__)

# Train V2's controller polls its workers every 2 s by default, which every fit pays at its end
# (bench.train: "report seen"). 0.2 s cut that to ~0.3 s at 2M rows (0.5 s: ~0.85 s) with the
# training phase unchanged (bench/RESULTS_train.md); a poll is one small actor call per worker.
TRAIN_HEALTH_CHECK_INTERVAL_S = "0.2"
# Train V2 (2.60) starts a PreemptionWatcher actor per run, just as training begins: one more
# Python process (~1.5 CPU-seconds of imports, then a poll every 5 s) for node-drain
# observability. A local single-node cluster has no node to drain, so the launcher turns it off.
TRAIN_LOCAL_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": TRAIN_HEALTH_CHECK_INTERVAL_S,
                   "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}



def train_storage(registry: str | None, kind: str) -> str:
    """Where a Ray Train run keeps its checkpoints: storage every node can reach.

    ``TANDEM_SCRATCH_URI`` when set (a deployment points it at its bucket), else ``_runs/`` under
    an object-store registry, else (a local registry or none: a one-machine setup) a temp dir.
    A worker on another node writes the checkpoint there and the driver reads it back, so a
    node-local directory is only right when every Train worker shares the driver's machine."""
    base = os.environ.get("TANDEM_SCRATCH_URI")
    if base:
        return fs.join(base, "train", kind, fs.new_run_id())
    if registry and fs.is_remote(registry):
        return fs.join(registry, "_runs", kind, fs.new_run_id())
    return tempfile.mkdtemp(prefix=f"tdm-train-{kind}-")


def use_train_local_env(environ: MutableMapping[str, str] = os.environ) -> None:
    """Put ``TRAIN_LOCAL_ENV`` into ``environ`` where it has no value yet (an operator's own win).

    For a process about to start its own local Ray: Train's controller reads these at start."""
    for key, value in TRAIN_LOCAL_ENV.items():
        environ.setdefault(key, value)


def connect(*, own_local: bool = False, num_cpus: int | None = None, temp_dir: str | None = None,
            train_env: bool = True, **init_kwargs: Any) -> bool:
    """Connect this driver to Ray; True when this call initialised Ray (the caller shuts it down).

    Already connected (a test session, a job calling another's library): nothing to do.
    ``RAY_ADDRESS`` set (``ray job submit``, ``.run/env``): join that cluster; Ray reads the
    auth token from ``RAY_AUTH_TOKEN_PATH`` / ``RAY_AUTH_TOKEN`` in the environment. Otherwise
    ``own_local`` starts a private local Ray for this process (no dashboard, ``num_cpus``,
    ``temp_dir``; with ``train_env`` Train's local env), and without it ``ray.init`` starts Ray's default local one.
    ``init_kwargs`` (e.g. ``log_to_driver=False``) go to ``ray.init`` when joining or starting."""
    import ray

    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS")
    if address:
        logger.info("connecting to the Ray cluster at %s (token auth: %s)", address,
                    "on" if os.environ.get("RAY_AUTH_MODE") == "token" else "off")
        ray.init(**init_kwargs)
    elif own_local:
        if train_env:
            use_train_local_env()
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, _temp_dir=temp_dir, **init_kwargs)
    else:
        ray.init(**init_kwargs)
    return True
