"""Drive the live app with synthetic visitors whose true lift per variant is known (the yardstick of
the A/B machinery; library: ``pipelines.simulate``).

    python -m jobs.simulate --url http://127.0.0.1:8000 --api-key KEY [--sessions 1000]
        [--lift VARIANT=LIFT ...] [--concurrency 16] [--rps R] [--json]

Each visitor asks ``/v1/recommend`` on every page, reads the experiment and variant the app put
it in, clicks (a ``view`` event of a shown item) and buys (``purchase`` events with the order's
value) with probabilities that depend on what it was shown, scaled by ``1 + LIFT`` of its
variant, and sends those events to ``/v1/events``. Then ``python -m jobs.drain_exposures`` and
``python -m jobs.kpi_report`` should find the lifts given here. Every HTTP status is counted;
503 and 429 are retried after ``Retry-After``.
"""

from __future__ import annotations

import argparse
from typing import Any

from pydantic import field_validator

from pipelines import entrypoint
from pipelines.simulate import SimulateConfig, simulate


class Config(SimulateConfig, extra="forbid"):
    smoke_test: bool = False

    @field_validator("true_lift", mode="before")
    @classmethod
    def _pairs(cls, value: Any) -> Any:
        """``--lift a=0.1 --lift b=-0.2`` arrives as a list of ``NAME=LIFT`` strings."""
        if not isinstance(value, list):
            return value
        out = {}
        for pair in value:
            name, sep, lift = str(pair).partition("=")
            if not sep or not name:
                raise ValueError(f"expected VARIANT=LIFT, got {pair!r}")
            try:
                out[name] = float(lift)
            except ValueError as exc:
                raise ValueError(f"{pair!r}: the lift must be a number, e.g. model=0.05") from exc
        return out


def run(cfg: Config) -> dict[str, Any]:
    return simulate(cfg).to_dict()


def flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", help="base URL of the app")
    p.add_argument("--api-key", help="the tenant's API key")
    p.add_argument("--sessions", type=int, help="visitors (default 1000)")
    p.add_argument("--concurrency", type=int, help="sessions in flight (default 16)")
    p.add_argument("--rps", type=float, help="new sessions per second at most")
    p.add_argument("--k", type=int, help="items per page (default 10)")
    p.add_argument("--lift", dest="true_lift", action="append", metavar="VARIANT=LIFT",
                   help="true relative lift of a variant (repeatable; others 0)")
    p.add_argument("--conversion", type=float, help="baseline conversion (default 0.04)")
    p.add_argument("--ctr", type=float, help="baseline click-through per page (default 0.08)")
    p.add_argument("--appeal-spread", type=float, help="item appeal spread (default 0: quality = 1 + lift)")
    p.add_argument("--seed", type=int)
    p.add_argument("--session-prefix", help="session ids are PREFIX-SEED-N (default sim)")


def fill_smoke(values: dict[str, Any], tmp: object) -> None:
    """Five visitors against the app at --url (the smoke test needs a running app: make up / make demo)."""
    if "url" not in values or "api_key" not in values:
        raise entrypoint.BadInput("--smoke-test drives a running app: give --url and --api-key (make up starts one)")
    values.setdefault("sessions", 5)
    values.setdefault("concurrency", 2)


JOB = entrypoint.Job(prog="python -m jobs.simulate", description=__doc__.splitlines()[0], config=Config, run=run,
                     flags=flags, smoke=fill_smoke,
                     exit_code=lambda r: 1 if r["server_errors_5xx"] - r["statuses"].get("events 503", 0) else 0)


def main(argv: list[str] | None = None) -> int:
    return entrypoint.main(JOB, argv)


if __name__ == "__main__":
    raise SystemExit(main())
