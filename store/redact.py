"""Keep secrets out of logs and error messages: URL passwords, API keys, pydantic inputs."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:@/\s]*):(?P<secret>[^@/\s]*)@")


def redact_url(url: str) -> str:
    """``redis://user:pw@host`` -> ``redis://user:***@host`` (anything else unchanged)."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url)


def redact_text(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """``text`` with URL passwords and each of ``secrets`` masked."""
    text = redact_url(text)
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def validation_summary(exc: ValidationError) -> str:
    """Each error's field and message, without the input values pydantic's own message prints."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors())


def safe_args(args: dict[str, Any]) -> dict[str, Any]:
    """App args fit for a log line: API keys counted, URLs without passwords."""
    return redact_config(args)


SECRET_FIELD = re.compile(r"(api_?keys?|password|secret|token)", re.I)


def redact_config(values: dict[str, Any]) -> dict[str, Any]:
    """A config (a job's, an app's) fit for a log line: fields named like a secret (``api_key``,
    ``password``, ``token``...) replaced by a count, URLs without their passwords, nested too."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if SECRET_FIELD.search(key) and value:
            out[key] = f"<{len(value) if isinstance(value, list | dict) else 1} hidden>"
        elif isinstance(value, dict):
            out[key] = redact_config(value)
        elif isinstance(value, str):
            out[key] = redact_url(value)
        elif isinstance(value, list):
            out[key] = [redact_url(v) if isinstance(v, str) else v for v in value]
        else:
            out[key] = value
    return out
