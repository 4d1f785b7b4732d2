"""Every manifest in cluster/kuberay/ validates against KubeRay's CRD schemas (vendored in
tests/fixtures/kuberay, see PROVENANCE.md) and deploys the way users deploy: secrets and S3
credentials come from Kubernetes Secrets, never inline; jobs read and write s3:// only. Then
what the schema cannot see: the refresh entrypoints parse with ``jobs.refresh``'s own CLI and
cover both cadences, and the RayService's serveConfigV2 is Serve's deploy schema with tandem's
app args."""

from __future__ import annotations

import copy
import gzip
import json
import re
import shlex
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "cluster" / "kuberay").glob("*.yaml"))
SCHEMAS = ROOT / "tests" / "fixtures" / "kuberay"
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|ACCESS_KEY|CREDENTIAL|REDIS_URL", re.I)
PATH_FLAGS = ("--events", "--out", "--features", "--registry", "--train", "--test", "--input", "--storage")


def _strict(node: Any) -> Any:
    """The schema with unknown fields refused (as ``kubectl apply`` does with strict field
    validation), except where the CRD keeps them (x-kubernetes-preserve-unknown-fields)."""
    if isinstance(node, dict):
        out = {k: _strict(v) for k, v in node.items()}
        if "properties" in out and "additionalProperties" not in out \
                and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


@cache
def schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict schema, from the vendored CRDs."""
    out = {}
    for path in SCHEMAS.glob("*.schema.json.gz"):
        crd = json.loads(gzip.decompress(path.read_bytes()))
        for version, schema in crd["versions"].items():
            out[(f"{crd['group']}/{version}", crd["kind"])] = _strict(schema)
    return out


def documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((f"{path.name}:{doc.get('kind')}/{doc.get('metadata', {}).get('name')}", doc))
    return docs


def validate(doc: dict[str, Any]) -> list[str]:
    """Schema errors, each naming the field path."""
    key = (doc.get("apiVersion", ""), doc.get("kind", ""))
    if not key[0].startswith("ray.io/"):
        return [] if doc.get("metadata", {}).get("name") else ["metadata.name is missing"]
    if key not in schemas():
        return [f"no vendored KubeRay schema for {key}"]
    validator = jsonschema.Draft7Validator(schemas()[key])
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(doc)]


def containers(node: Any) -> list[dict[str, Any]]:
    """Every container spec anywhere in a manifest."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                found += [c for c in value if isinstance(c, dict)]
            else:
                found += containers(value)
    elif isinstance(node, list):
        for value in node:
            found += containers(value)
    return found


def entrypoints(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "entrypoint" and isinstance(v, str)] + \
            [e for v in node.values() for e in entrypoints(v)]
    if isinstance(node, list):
        return [e for v in node for e in entrypoints(v)]
    return []


@pytest.mark.parametrize("name,doc", documents(), ids=[n for n, _ in documents()])
def test_manifest_matches_the_kuberay_crd_schema(name: str, doc: dict[str, Any]) -> None:
    assert validate(doc) == [], name


@pytest.mark.parametrize("name,doc", documents(), ids=[n for n, _ in documents()])
def test_secrets_and_s3_settings_come_from_secrets(name: str, doc: dict[str, Any]) -> None:
    for c in containers(doc):
        env = {e["name"]: e for e in c.get("env", [])}
        for key, entry in env.items():
            if SECRET_NAME.search(key):
                assert "value" not in entry and "secretKeyRef" in entry.get("valueFrom", {}), \
                    f"{name}: container {c.get('name')} sets {key} inline; use valueFrom.secretKeyRef"
        assert "RAY_AUTH_TOKEN" in env, f"{name}: container {c.get('name')} has no RAY_AUTH_TOKEN from a Secret"
        secret_refs = [s["secretRef"]["name"] for s in c.get("envFrom", []) if "secretRef" in s]
        assert "tandem-s3" in secret_refs, f"{name}: container {c.get('name')} gets no S3 settings (envFrom tandem-s3)"


def test_rayservice_and_cluster_yaml_start_haproxy_as_the_local_stack_does() -> None:
    from cluster.local import HAPROXY_RETRY_ON

    [doc] = [d for n, d in documents() if n.startswith("rayservice.yaml:RayService/")]
    for c in containers(doc):
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1", c.get("name")
        assert env["RAY_SERVE_HAPROXY_RETRY_ON"] == HAPROXY_RETRY_ON, c.get("name")
        assert env["RAY_SERVE_HAPROXY_BINARY_PATH"].endswith("/cluster/haproxy_launch.py"), c.get("name")
    text = (ROOT / "cluster.yaml").read_text()      # and `ray up cluster.yaml`
    assert f'RAY_SERVE_HAPROXY_RETRY_ON="{HAPROXY_RETRY_ON}"' in text and "RAY_SERVE_ENABLE_HA_PROXY=1" in text
    assert "RAY_SERVE_HAPROXY_BINARY_PATH=/home/ubuntu/tandem/cluster/haproxy_launch.py" in text


@pytest.mark.parametrize("name,doc", documents(), ids=[n for n, _ in documents()])
def test_job_entrypoints_use_object_storage_only(name: str, doc: dict[str, Any]) -> None:
    for entry in entrypoints(doc):
        words = shlex.split(entry.replace("\n", " "))
        inner = [w for part in words for w in (shlex.split(part) if " " in part else [part])]
        for flag, value in zip(inner, inner[1:], strict=False):
            if flag in PATH_FLAGS:
                assert value.startswith("s3://"), f"{name}: {flag} {value} is not on the object store"


def test_the_refresh_loop_runs_its_feature_job_on_s3() -> None:
    jobs = [doc for _, doc in documents() if doc.get("kind") in ("RayJob", "RayCronJob")]
    commands = " ".join(e for doc in jobs for e in entrypoints(doc))
    assert re.search(r"python -m jobs\.refresh .*--features s3://", commands), commands


def _refresh_argv(entrypoint: str) -> list[str]:
    argv = shlex.split(entrypoint.replace("$TANDEM_REDIS_URL", "redis://redis:6379/0"))
    assert argv[:3] == ["python", "-m", "jobs.refresh"], argv
    return argv[3:]


def test_refresh_jobs_parse_with_the_refresh_cli_and_cover_both_cadences() -> None:
    from jobs import refresh
    from pipelines import entrypoint
    from pipelines.refresh import RefreshLoop

    runs = {}
    for name, doc in documents():
        job = doc["spec"].get("jobTemplate", doc["spec"])
        if "jobs.refresh" not in job.get("entrypoint", ""):
            continue
        cfg = entrypoint.parse_config(refresh.JOB, _refresh_argv(job["entrypoint"]))
        cadences = [c for c, _ in RefreshLoop.cadences_of(cfg)]
        assert len(cadences) == 1, (name, cadences)
        runs[cadences[0]] = doc["kind"]
    assert runs == {"fast": "RayJob", "slow": "RayCronJob"}


def test_rayservice_serve_config_is_a_valid_serve_deploy_config() -> None:
    from ray.serve.schema import ServeDeploySchema

    from serve.schemas import AppArgs

    doc = next(d for _, d in documents() if d["kind"] == "RayService")
    config = ServeDeploySchema.model_validate(yaml.safe_load(doc["spec"]["serveConfigV2"]))
    AppArgs.model_validate(config.applications[0].args)


def test_the_validator_catches_a_typo_and_an_inline_secret() -> None:
    (name, doc), = [(n, d) for n, d in documents() if d.get("kind") == "RayCluster"][:1]
    typo = copy.deepcopy(doc)
    typo["spec"]["headGroupSpec"]["rayStartParam"] = typo["spec"]["headGroupSpec"].pop("rayStartParams")
    assert any("rayStartParam" in e for e in validate(typo))
    wrong_type = copy.deepcopy(doc)
    wrong_type["spec"]["workerGroupSpecs"][0]["replicas"] = "two"
    assert any("replicas" in e for e in validate(wrong_type))
    inline = copy.deepcopy(doc)
    containers(inline)[0]["env"].append({"name": "AWS_SECRET_ACCESS_KEY", "value": "hunter2"})
    with pytest.raises(AssertionError, match="inline"):
        test_secrets_and_s3_settings_come_from_secrets(name, inline)


def test_cluster_yaml_matches_rays_launcher_schema_and_keeps_secrets_out() -> None:
    """``ray up cluster.yaml``: Ray's own launcher schema; the token file and S3 access reach every
    node without a secret in the file (IAM instance profile, mounted ~/.ray/auth_token)."""
    import ray.autoscaler

    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.Draft7Validator(schema).validate(config)
    text = (ROOT / "cluster.yaml").read_text()
    assert not re.search(r"(AWS_SECRET_ACCESS_KEY|RAY_AUTH_TOKEN)\s*[=:]\s*\S", text)
    assert config["file_mounts"]["/home/ubuntu/.ray/auth_token"] == "~/.ray/auth_token"
    for node in config["available_node_types"].values():
        assert node["node_config"].get("IamInstanceProfile"), "every node needs S3 access"
    for cmd in config["head_start_ray_commands"] + config["worker_start_ray_commands"]:
        if "ray start" in cmd:
            assert "RAY_AUTH_MODE=token" in cmd
