"""Promote a registered propensity model to champion behind gates, or roll the champion back
(the CLI; the gates are in ``pipelines.promotion``).

``python -m jobs.promote --registry URI --candidate VERSION|latest [--holdout PATH --label COL
[--time-column COL]] [--tolerance 0.01] [--psi-max 0.25] [--json]``
``python -m jobs.promote --registry URI --rollback [--json]``

Exit codes: 0 promoted (or already champion) or rolled back, 1 refused by a gate (each failed
gate is named with its numbers; the registry is unchanged), 2 bad input.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from pydantic import model_validator

from pipelines import entrypoint, smoke
from pipelines.promotion import PromoteConfig, promote, rollback

logger = logging.getLogger(__name__)

Result = dict[str, Any]  # action, candidate, champion, promoted, gates (+ reason, previous_champion) or
# action, from, champion (rollback)


class Config(PromoteConfig, extra="forbid"):
    rollback: bool = False
    smoke_test: bool = False

    @model_validator(mode="after")
    def _one_action(self) -> Config:
        if bool(self.candidate) == self.rollback:
            raise ValueError("give exactly one of candidate (--candidate) and rollback (--rollback)")
        return self


def run(cfg: Config) -> Result:
    return rollback(cfg.registry) if cfg.rollback else promote(cfg)


def refused(result: Result) -> bool:
    return result["action"] == "promote" and not result["promoted"] and \
        not result.get("reason", "").endswith("already the champion")


def summary(result: Result) -> str:
    if result["action"] != "promote":
        return f"rolled back {result['from']} -> {result['champion']}"
    for g in result["gates"]:
        logger.info("gate %s: %s - %s", g["name"], "PASS" if g["passed"] else "FAIL", g["detail"])
    if result["promoted"]:
        return f"promoted {result['candidate']} to champion (was {result.get('previous_champion')})"
    if refused(result):
        return f"refused: {result['candidate']} not promoted; {result['reason']}"
    return str(result["reason"])


def flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--registry", help="registry URI (local dir or s3://)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--candidate", help="version to promote, or 'latest'")
    what.add_argument("--rollback", action="store_true", help="restore the previous champion")
    p.add_argument("--holdout", help="table (Parquet/CSV) to score both models on")
    p.add_argument("--label", help="label column of --holdout")
    p.add_argument("--time-column", help="keep holdout rows after both validation windows")
    p.add_argument("--tolerance", type=float, help="allowed PR-AUC drop vs the champion (default 0.01)")
    p.add_argument("--psi-max", type=float, help="bound on the score PSI (default 0.25)")
    p.add_argument("--base-rate-ratio", type=float,
                   help="mean holdout score must be within base rate / r .. base rate * r (default 3)")


def fill_smoke(values: dict[str, Any], tmp: Path) -> None:
    """Two tiny models in a fresh registry (the first champion); the latest is the candidate,
    gated on a holdout of other synthetic sessions."""
    if "registry" not in values:
        values["registry"] = smoke.propensity_registry(tmp, versions=2)
        values.update(holdout=smoke.session_table(tmp / "holdout", seed=1), label="purchased")
    if not values.get("rollback"):
        values.setdefault("candidate", "latest")


JOB = entrypoint.Job(prog="python -m jobs.promote", description=__doc__.splitlines()[0], config=Config, run=run,
                     flags=flags, exit_code=lambda r: 1 if refused(r) else 0, smoke=fill_smoke, summary=summary,
                     error_fields=lambda v: {"action": "rollback" if v.get("rollback") else "promote"})


def main(argv: list[str] | None = None) -> int:
    return entrypoint.main(JOB, argv)


if __name__ == "__main__":
    raise SystemExit(main())
