"""The ONE CLI shell every job runs in: ``python -m jobs.X`` is ``entrypoint.main(JOB, argv)``.

A job declares a ``Job``: its typed ``Config`` (pydantic, ``extra="forbid"``), ``run(cfg) ->
Result`` and its flags. The shell does the rest, the same way for every job:

- logging setup (the only place it is configured);
- the config: ``--config FILE`` (YAML or JSON; ``--job-config FILE`` where the job's own
  ``--config`` means something else) is merged under the CLI flags and validated by ``Config``,
  so an error names the field (and its flag);
- ``--smoke-test``: the same code path at tiny scale; inputs the job needs and the caller did
  not give are made up in a temp dir by the job's ``smoke`` hook, removed afterwards;
- Ray: jobs that need Ray connect through ``raycluster.connect`` (``RAY_ADDRESS`` and the auth
  token from the environment; a local Ray only when no address is set);
- exit codes: 0 ok; 2 bad input (``ValidationError``, ``DataError``, ``SchemaError``,
  ``FileNotFoundError``, ``RegistryError``, ``BadInput`` and the job's own) with one line
  ``error: ...`` naming the file or field; 1 any other failure (logged with its traceback);
- output: the result as one final JSON line (always, or with ``--json``, as the job says).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from models.propensity.data import DataError as TableDataError
from models.schema import SchemaError
from models.session_rec.data import DataError as SessionDataError
from pipelines import raycluster
from store.redact import redact_config
from store.registry import RegistryError

logger = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

C = TypeVar("C", bound=BaseModel)


class BadInput(ValueError):
    """Input the job cannot use; the message names the file, row or field (exit code 2)."""


INPUT_ERRORS: tuple[type[BaseException], ...] = (ValidationError, BadInput, TableDataError, SessionDataError,
                                                 SchemaError, FileNotFoundError, FileExistsError, RegistryError)


@dataclass
class Job(Generic[C]):
    """What a job module declares; ``main`` does the rest.

    ``flags`` adds the job's own CLI flags, each with ``dest`` equal to a ``config`` field and
    no default (``argparse.SUPPRESS`` is set for all), so only the flags given override the
    ``--config`` file and the ``Config`` defaults. ``ray``: ``ray.init`` keyword arguments for
    a job that connects up front (None: the job needs no Ray, or connects itself, later).
    ``json``: ``"always"`` ends every run with the JSON line; ``"flag"`` only with ``--json``
    (then ``text``, if any, is written instead). ``text`` is written before the JSON line when
    ``json`` is ``"always"``. ``exit_code`` maps a result to a non-zero code (a refusal).
    ``smoke`` fills the inputs a ``--smoke-test`` run lacks (values dict, temp dir) and may return
    a cleanup callable (e.g. to stop a redis-server it started), called after the run."""

    prog: str
    description: str
    config: type[C]
    run: Callable[[C], Any]
    flags: Callable[[argparse.ArgumentParser], None]
    ray: dict[str, Any] | None = None
    json: Literal["always", "flag"] = "flag"
    text: Callable[[Any], str] | None = None
    exit_code: Callable[[Any], int] | None = None
    smoke: Callable[[dict[str, Any], Path], Callable[[], None] | None] | None = None
    input_errors: tuple[type[BaseException], ...] = ()
    error_fields: Callable[[dict[str, Any]], dict[str, Any]] = field(default=lambda values: {})
    summary: Callable[[Any], str] | None = None


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    for chatty in ("httpx", "httpcore"):  # one INFO line per HTTP request (jobs.simulate sends thousands)
        logging.getLogger(chatty).setLevel(logging.WARNING)


def load_config_file(path: str) -> dict[str, Any]:
    """A YAML or JSON mapping of config fields (``a-b`` keys are read as ``a_b``)."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))  # JSON is YAML too
    except yaml.YAMLError as exc:
        raise BadInput(f"{path}: not YAML or JSON: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BadInput(f"{path}: expected a mapping of config fields, got {type(data).__name__}")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def build_parser(job: Job[Any]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=job.prog, description=job.description,
                                     argument_default=argparse.SUPPRESS)
    job.flags(parser)
    own = {opt for action in parser._actions for opt in action.option_strings}
    config_flags = ["--job-config"] if "--config" in own else ["--config", "--job-config"]
    parser.add_argument(*config_flags, dest="_config_file", metavar="FILE",
                        help="YAML/JSON file of config fields; CLI flags override it")
    if "--smoke-test" not in own:
        parser.add_argument("--smoke-test", action="store_true", help="the same code path at tiny scale")
    if "--json" not in own:
        parser.add_argument("--json", action="store_true", help="end with one JSON line")
    return parser


def feature_table_flags(p: argparse.ArgumentParser) -> None:
    """The input flags of the jobs that read a feature table (train_propensity, tune_propensity)."""
    p.add_argument("--features", help="feature table: Parquet file/dir or CSV")
    p.add_argument("--label", help="binary label column")
    p.add_argument("--time-column", help="split by this column's time order")


def _flag_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    return {a.dest: a.option_strings[0] for a in parser._actions if a.option_strings}


def describe(exc: BaseException, flags: Mapping[str, str] | None = None) -> str:
    """One line for the user: a pydantic error lists each bad field (as its flag when it has one)."""
    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "config"
            name = (flags or {}).get(str(err["loc"][0]), loc) if err["loc"] else loc
            if name != loc and len(err["loc"]) > 1:
                name = f"{name} ({loc})"
            parts.append(f"{name}: {err['msg']}")
        return f"invalid {exc.title}: " + "; ".join(parts)
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def to_json(value: Any) -> str:
    def default(o: Any) -> Any:
        if hasattr(o, "dtype") and hasattr(o, "item"):  # numpy scalars
            return o.item()
        if isinstance(o, BaseModel):
            return o.model_dump()
        return str(o)

    if isinstance(value, BaseModel):
        value = value.model_dump()
    return json.dumps(value, default=default)


def _values(job: Job[Any], ns: dict[str, Any], config_file: str | None) -> dict[str, Any]:
    """The ``--config`` file's fields overridden by the flags given, minus the shell's own flags."""
    values = load_config_file(config_file) if config_file else {}
    values.update(ns)
    for shell_flag in ("json", "smoke_test"):
        if shell_flag not in job.config.model_fields:
            values.pop(shell_flag, None)
    return values


def parse_config(job: Job[C], argv: list[str]) -> C:
    """The validated ``Config`` that ``main`` would run ``argv`` with (no smoke inputs): for tests."""
    ns = vars(build_parser(job).parse_args(argv))
    return job.config.model_validate(_values(job, ns, ns.pop("_config_file", None)))


def main(job: Job[C], argv: list[str] | None = None) -> int:
    """Parse, validate, connect, run, print; returns the process exit code."""
    configure_logging()
    parser = build_parser(job)
    ns = vars(parser.parse_args(argv))
    config_file = ns.pop("_config_file", None)
    want_json = bool(ns.get("json", False))
    values: dict[str, Any] = dict(ns)
    tmp: Path | None = None
    cleanup: Callable[[], None] | None = None
    started = False
    try:
        values = _values(job, ns, config_file)
        if (values.get("smoke_test") or ns.get("smoke_test")) and job.smoke is not None:
            tmp = Path(tempfile.mkdtemp(prefix=f"tdm-smoke-{job.prog.rsplit('.', 1)[-1]}-"))
            cleanup = job.smoke(values, tmp)
        cfg = job.config.model_validate(values)
        logger.info("%s config: %s", job.prog, json.dumps(redact_config(cfg.model_dump(mode="json"))))
        if job.ray is not None:
            started = raycluster.connect(**job.ray)
        result = job.run(cfg)
    except (*INPUT_ERRORS, *job.input_errors) as exc:
        message = describe(exc, _flag_names(parser))
        logger.error("%s", message)
        sys.stderr.write(f"error: {message}\n")
        if want_json:
            sys.stdout.write(to_json({**job.error_fields(values), "error": message}) + "\n")
        return 2
    except Exception as exc:  # noqa: BLE001 - any other failure: exit 1 with one line (traceback in the log)
        logger.exception("%s failed", job.prog)
        sys.stderr.write(f"error: {job.prog} failed: {describe(exc)}\n")
        return 1
    finally:
        if started:
            import ray

            ray.shutdown()
        if cleanup is not None:
            cleanup()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    if job.summary is not None:
        logger.info("%s", job.summary(result))
    if job.json == "always":
        if job.text is not None:
            sys.stdout.write(job.text(result) + "\n")
        sys.stdout.write(to_json(result) + "\n")
    elif want_json:
        sys.stdout.write(to_json(result) + "\n")
    elif job.text is not None:
        sys.stdout.write(job.text(result) + "\n")
    return job.exit_code(result) if job.exit_code is not None else 0
