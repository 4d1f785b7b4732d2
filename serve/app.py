"""Application builder: ``serve run serve.app:build_app`` / ``import_path: serve.app:build_app``.

``build_app(args)`` validates the arguments once (``serve.schemas.AppArgs``; a bad
field fails the deploy with its name) and binds the ingress deployment.
"""

from __future__ import annotations

import logging
from typing import Any

from ray.serve import Application

from serve.deployments import TandemService
from serve.schemas import AppArgs

logger = logging.getLogger(__name__)


def build_app(args: dict[str, Any]) -> Application:
    """The tandem Serve application for ``args`` (see ``AppArgs``)."""
    parsed = AppArgs.model_validate(args)
    logger.info("building tandem app: registry=%s tenants=%s keys=%d", parsed.registry_uri,
                sorted(set(parsed.api_keys.values())), len(parsed.api_keys))
    result: Application = TandemService.bind(parsed.model_dump(mode="json"))  # type: ignore[attr-defined]
    return result
