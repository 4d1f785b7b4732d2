"""Ray connect helpers shared by the pipelines (no argv parsing here).

``use_train_local_env`` tunes Ray Train V2 for a process that starts its own local Ray (the
local launcher ``cluster.local``, the recommender job, ``bench.train``).
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

# Train V2's controller polls its workers every 2 s by default, which every fit pays at its end
# (bench.train: "report seen"). 0.2 s cut that to ~0.3 s at 2M rows (0.5 s: ~0.85 s) with the
# training phase unchanged (bench/RESULTS_train.md); a poll is one small actor call per worker.
TRAIN_HEALTH_CHECK_INTERVAL_S = "0.2"
# Train V2 (2.60) starts a PreemptionWatcher actor per run, just as training begins: one more
# Python process (~1.5 CPU-seconds of imports, then a poll every 5 s) for node-drain
# observability. A local single-node cluster has no node to drain, so the launcher turns it off.
TRAIN_LOCAL_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": TRAIN_HEALTH_CHECK_INTERVAL_S,
                   "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}



def use_train_local_env(environ: MutableMapping[str, str] = os.environ) -> None:
    """Put ``TRAIN_LOCAL_ENV`` into ``environ`` where it has no value yet (an operator's own win).

    For a process about to start its own local Ray: Train's controller reads these at start."""
    for key, value in TRAIN_LOCAL_ENV.items():
        environ.setdefault(key, value)
