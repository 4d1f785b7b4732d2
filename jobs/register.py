"""Register an artifact directory as a new model version; a registry's first model becomes champion
(the CLI; library: ``store.registry.register_artifact``).

``python -m jobs.register --registry URI --artifact DIR [--name propensity|recommender] [--json]``

The artifact is loaded before anything is written (a propensity artifact through
``PropensityPredictor``, a recommender through ``load_artifact``), so a broken or foreign
directory is refused with its path (exit 2) and the registry is left unchanged. Later versions
are candidates: make one champion with ``python -m jobs.promote``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Literal, TypedDict

from pydantic import BaseModel, Field

from pipelines import entrypoint, smoke
from store.registry import MODEL_NAMES, register_artifact


class Config(BaseModel, extra="forbid"):
    registry: str = Field(description="registry URI (local dir or s3://)")
    artifact: str = Field(description="artifact directory to register")
    name: Literal["propensity", "recommender"] = "propensity"
    smoke_test: bool = False


class Result(TypedDict):
    name: str
    version: str
    uri: str
    champion: bool
    current_champion: str | None


def run(cfg: Config) -> Result:
    out = register_artifact(cfg.registry, cfg.name, cfg.artifact)
    return Result(name=out["name"], version=out["version"], uri=out["uri"], champion=out["champion"],
                  current_champion=out["current_champion"])


def summary(r: Result) -> str:
    if r["champion"]:
        return f"registered {r['name']} {r['version']} as the first champion"
    return (f"registered candidate {r['version']}; promote it with python -m jobs.promote --registry ... "
            f"--candidate {r['version']}")


def flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--registry", help="registry URI (local dir or s3://)")
    p.add_argument("--artifact", help="artifact directory to register")
    p.add_argument("--name", choices=MODEL_NAMES, help="model name (default propensity)")


def fill_smoke(values: dict[str, Any], tmp: Path) -> None:
    """A tiny propensity artifact (from a throw-away registry) into a fresh registry."""
    if "artifact" not in values:
        smoke.propensity_registry(tmp / "source")
        values.update(artifact=str(tmp / "source" / "model-0"), name="propensity")
    values.setdefault("registry", str(tmp / "registry"))


JOB = entrypoint.Job(prog="python -m jobs.register", description=__doc__.splitlines()[0], config=Config, run=run,
                     flags=flags, smoke=fill_smoke, summary=summary, input_errors=(ValueError, TypeError),
                     error_fields=lambda v: {"name": v.get("name", "propensity")})


def main(argv: list[str] | None = None) -> int:
    return entrypoint.main(JOB, argv)


if __name__ == "__main__":
    raise SystemExit(main())
