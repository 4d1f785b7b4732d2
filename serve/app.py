"""Application builder: ``serve run serve.app:build_app`` / ``import_path: serve.app:build_app``.

``build_app(args)`` validates the arguments once (``serve.schemas.AppArgs``; a bad
field fails the deploy with its name, never with the value: it may be a key or a
password) and binds the ingress deployment.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from ray.serve import Application

from serve.deployments import TandemService
from serve.schemas import AppArgs
from store.redact import redact_url, validation_summary

logger = logging.getLogger(__name__)


def build_app(args: dict[str, Any]) -> Application:
    """The tandem Serve application for ``args`` (see ``AppArgs``)."""
    try:
        parsed = AppArgs.model_validate(args)
    except ValidationError as exc:
        raise ValueError(f"invalid tandem app args: {validation_summary(exc)}") from None
    logger.info("building tandem app: registry=%s redis=%s tenants=%s keys=%d", redact_url(parsed.registry_uri),
                redact_url(parsed.redis_url), sorted(set(parsed.api_keys.values())), len(parsed.api_keys))
    result: Application = TandemService.bind(parsed.model_dump(mode="json"))  # type: ignore[attr-defined]
    return result
