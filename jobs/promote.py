"""Promote a registered propensity model to champion behind gates, or roll the champion back
(the CLI; the gates are in ``pipelines.promotion``).

``python -m jobs.promote --registry URI --candidate VERSION|latest [--holdout PATH --label COL
[--time-column COL]] [--tolerance 0.01] [--psi-max 0.25] [--json]``
``python -m jobs.promote --registry URI --rollback [--json]``
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from models.propensity.data import DataError
from models.propensity.predictor import REGISTRY_NAME
from pipelines.promotion import promote
from store.registry import Registry, RegistryError

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.promote", description=__doc__.splitlines()[0])
    parser.add_argument("--registry", required=True, help="registry URI (local dir or s3://)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--candidate", help="version to promote, or 'latest'")
    what.add_argument("--rollback", action="store_true", help="restore the previous champion")
    parser.add_argument("--holdout", default=None, help="table (Parquet/CSV) to score both models on")
    parser.add_argument("--label", default=None, help="label column of --holdout")
    parser.add_argument("--time-column", default=None, help="keep holdout rows after both validation windows")
    parser.add_argument("--tolerance", type=float, default=0.01, help="allowed PR-AUC drop vs the champion")
    parser.add_argument("--psi-max", type=float, default=0.25, help="bound on the score PSI")
    parser.add_argument("--base-rate-ratio", type=float, default=3.0,
                        help="mean holdout score must be within base rate / r .. base rate * r")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args(argv)
    if args.holdout and not args.label:
        parser.error("--holdout needs --label")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.rollback:
            reg = Registry(args.registry)
            current = reg.champion(REGISTRY_NAME)
            result = {"action": "rollback", "from": current, "champion": reg.rollback(REGISTRY_NAME)}
            logger.info("rolled back %s -> %s", current, result["champion"])
        else:
            result = promote(args)
    except (RegistryError, DataError, FileNotFoundError) as exc:
        logger.error("%s", exc)
        sys.stderr.write(f"error: {exc}\n")
        if args.json:
            sys.stdout.write(json.dumps({"action": "rollback" if args.rollback else "promote",
                                         "error": str(exc)}) + "\n")
        return 2
    rc = 0
    if result["action"] == "promote":
        for g in result["gates"]:
            logger.info("gate %s: %s - %s", g["name"], "PASS" if g["passed"] else "FAIL", g["detail"])
        if result["promoted"]:
            logger.info("promoted %s to champion (was %s)", result["candidate"], result.get("previous_champion"))
        elif result.get("reason", "").endswith("already the champion"):
            logger.info("%s", result["reason"])
        else:
            sys.stderr.write(f"refused: {result['candidate']} not promoted; {result['reason']}\n")
            rc = 1
    if args.json:
        sys.stdout.write(json.dumps(result, default=str) + "\n")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
