"""Register an artifact directory as a new model version; a registry's first model becomes champion.

``python -m jobs.register --registry URI --artifact DIR [--name propensity|recommender] [--json]``

The artifact is loaded before anything is written (a propensity artifact through
``PropensityPredictor``, a recommender through ``load_artifact``), so a broken or foreign
directory is refused with its path and the registry is left unchanged. Later versions are
candidates: make one champion with ``python -m jobs.promote``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from store.registry import Registry, RegistryError

logger = logging.getLogger(__name__)

NAMES = ("propensity", "recommender")


def artifact_meta(name: str, artifact_dir: Path) -> dict[str, Any]:
    """Load the artifact (proving it is servable) and return the metadata the registry keeps."""
    if not artifact_dir.is_dir():
        raise FileNotFoundError(f"artifact directory {artifact_dir} does not exist")
    if name == "propensity":
        from models.propensity.artifact import load_meta
        from models.propensity.predictor import PropensityPredictor

        art = load_meta(artifact_dir)
        try:
            PropensityPredictor(str(artifact_dir))
        except Exception as exc:  # a corrupt model file, whatever the library raises
            raise RegistryError(f"{artifact_dir}: the {art.kind} model does not load: {exc}") from exc
        return {"metrics": art.metrics, "data_window": art.data_window, "config": art.config,
                "kind": art.kind, "code_version": art.code_version}
    from models.session_rec.artifact import load_artifact

    try:
        rec = load_artifact(artifact_dir)
    except FileNotFoundError:
        raise
    except Exception as exc:  # bad meta, item map or weights
        raise RegistryError(f"{artifact_dir}: not a loadable recommender artifact: {exc}") from exc
    return {"metrics": rec.meta.get("metrics", {}), "data_window": rec.meta.get("data_window", {}),
            "kind": rec.meta["model_type"]}


def register(registry_uri: str, name: str, artifact_dir: str) -> dict[str, Any]:
    """Register ``artifact_dir`` under ``name``; champion when the registry has none yet."""
    meta = artifact_meta(name, Path(artifact_dir))
    reg = Registry(registry_uri)
    mv = reg.register(name, artifact_dir, meta)
    first = reg.champion(name) is None
    if first:
        reg.set_champion(name, mv.version, "first model of this registry")
    return {"name": name, "version": mv.version, "uri": mv.uri, "champion": first,
            "current_champion": reg.champion(name)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.register", description=__doc__.splitlines()[0])
    parser.add_argument("--registry", required=True, help="registry URI (local dir or s3://)")
    parser.add_argument("--artifact", required=True, help="artifact directory to register")
    parser.add_argument("--name", choices=NAMES, default="propensity", help="model name")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result = register(args.registry, args.name, args.artifact)
    except (RegistryError, FileNotFoundError, ValueError, TypeError) as exc:
        logger.error("%s", exc)
        sys.stderr.write(f"error: {exc}\n")
        if args.json:
            sys.stdout.write(json.dumps({"name": args.name, "error": str(exc)}) + "\n")
        return 2
    if not result["champion"]:
        logger.info("registered candidate %s; promote it with python -m jobs.promote --registry %s --candidate %s",
                    result["version"], args.registry, result["version"])
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
