"""No secret (API key, a password in a URL) reaches a log line or an error message."""

from __future__ import annotations

import logging

import pytest

from store.redact import redact_config, redact_text, redact_url, safe_args

pytestmark = pytest.mark.unit

SECRET_KEY = "sk-live-0123456789"


def test_urls_lose_their_password_only() -> None:
    assert redact_url("redis://:hunter2@10.0.0.1:6379/0") == "redis://:***@10.0.0.1:6379/0"
    assert redact_url("rediss://app:hunter2@h/0") == "rediss://app:***@h/0"
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redact_url("s3://bucket/registry") == "s3://bucket/registry"
    assert "hunter2" not in redact_text(f"failed redis://u:hunter2@h with {SECRET_KEY}", [SECRET_KEY])
    shown = safe_args({"redis_url": "redis://:hunter2@h/0", "api_keys": {SECRET_KEY: "acme"}, "deadline_ms": 10})
    assert shown == {"redis_url": "redis://:***@h/0", "api_keys": "<1 hidden>", "deadline_ms": 10}
    nested = redact_config({"api_key": ["k1=a", "k2=b"], "store": {"password": "pw", "url": "redis://u:pw@h"}})
    assert nested == {"api_key": "<2 hidden>", "store": {"password": "<1 hidden>", "url": "redis://u:***@h"}}


def test_a_bad_app_config_names_the_field_not_the_values(caplog: pytest.LogCaptureFixture) -> None:
    from serve.app import build_app

    args = {"registry_uri": "r", "redis_url": "redis://:hunter2@h/0", "api_keys": {"abc": "acme"}}  # key too short
    with pytest.raises(ValueError) as exc:
        build_app(args)
    assert "api_keys" in str(exc.value) and "abc" not in str(exc.value) and "hunter2" not in str(exc.value)
    caplog.set_level(logging.INFO)
    build_app({**args, "api_keys": {SECRET_KEY: "acme"}})
    assert "hunter2" not in caplog.text and SECRET_KEY not in caplog.text and "redis://:***@h/0" in caplog.text


def test_deploy_never_prints_keys_or_passwords(tmp_path, capsys: pytest.CaptureFixture[str],
                                               caplog: pytest.LogCaptureFixture) -> None:
    from jobs import deploy

    caplog.set_level(logging.INFO)
    common = ["--registry", str(tmp_path), "--redis", "redis://:hunter2@h/0", "--out", str(tmp_path / "o.yaml"),
              "--dry-run"]
    assert deploy.main([*common, "--api-key", SECRET_KEY]) == 2                # malformed: named, not echoed
    assert deploy.main([*common, "--api-key", f"{SECRET_KEY}=acme"]) == 0
    assert deploy.main([*common, "--api-key", "abc=acme"]) == 2                # too short: the field, not the value
    captured = capsys.readouterr()
    logged = caplog.text + captured.err + captured.out
    assert SECRET_KEY not in logged and "hunter2" not in logged and "abc=" not in logged
    assert "api_keys" in captured.err and "redis://:***@h/0" in caplog.text
