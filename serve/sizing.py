"""How many Serve replicas to run, and how many requests each takes at once, for the cores present.

A replica is one asyncio event loop: it uses at most one core, and a cached request costs it
about a millisecond of CPU. So the default deployment runs one replica per usable core (the
ingress, HAProxy, is a few percent of a core next to them), and caps what each replica has in
flight at ``ONGOING_PER_REPLICA``: beyond that, requests wait in Serve's queue (as deep again
as the node's in-flight total), and past the queue they are shed with 429 + Retry-After
instead of queueing far beyond the bid budget. ``jobs.deploy`` fills the values in when
``serve/config.yaml`` leaves them null; a value set in the config wins.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

ONGOING_PER_REPLICA = 16
MAX_REPLICAS = 32


@dataclass(frozen=True)
class Sizing:
    num_replicas: int
    max_ongoing_requests: int
    max_queued_requests: int


def usable_cores(cgroup_cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """CPUs this process may run on: its affinity mask, lowered by a cgroup v2 CPU quota if one is set."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = cgroup_cpu_max.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def sizing(cores: int) -> Sizing:
    """One replica per core (at most ``MAX_REPLICAS``), ``ONGOING_PER_REPLICA`` in flight each."""
    if cores < 1:
        raise ValueError(f"cores must be >= 1, got {cores}")
    replicas = min(cores, MAX_REPLICAS)
    return Sizing(num_replicas=replicas, max_ongoing_requests=ONGOING_PER_REPLICA,
                  max_queued_requests=ONGOING_PER_REPLICA * replicas)
