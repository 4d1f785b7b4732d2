"""The layer contract: imports point one way (README "Layers"). Parsed with ``ast``; nothing is imported.

- nothing imports ``jobs`` (leaf CLIs; tests may, to run their ``main``);
- ``models`` is pure: no Ray Train/Tune/Data, and none of pipelines, store, serve, jobs, cluster;
- ``serve`` needs no training stack: no optuna, Ray Train/Tune/Data, pipelines or jobs;
- ``store`` imports none of pipelines, serve, jobs;
- ``pipelines`` imports neither serve nor jobs;
- ``bench`` imports libraries, never jobs (it runs a job as a subprocess if it must).

Lazy imports inside functions count: Ray imports a module in every worker, and a serve
replica must start without the training stack.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("models", "pipelines", "store", "serve", "jobs", "bench", "cluster")
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "models": ("ray.train", "ray.tune", "ray.data", "pipelines", "store", "serve", "jobs", "cluster"),
    "serve": ("optuna", "ray.train", "ray.tune", "ray.data", "pipelines", "jobs"),
    "store": ("pipelines", "serve", "jobs"),
    "pipelines": ("serve", "jobs"),
    "bench": ("jobs",),
    "cluster": ("jobs",),
    "jobs": ("jobs",),
}


def imported_modules(source: str, module: str) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of every module ``source`` imports, anywhere in the file.

    ``from a import b`` yields ``a`` and ``a.b`` (``b`` may be a submodule, as in
    ``from ray import tune``); relative imports are resolved against ``module``."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".")[: -node.level]
                base = ".".join([*parent, base] if base else parent)
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def _matches(name: str, banned: str) -> bool:
    return name == banned or name.startswith(banned + ".")


def violations(root: Path, packages: tuple[str, ...] = PACKAGES,
               forbidden: dict[str, tuple[str, ...]] = FORBIDDEN) -> list[str]:
    """``path:line: layer imports name`` for every import that breaks ``forbidden``."""
    found = []
    for package in packages:
        banned = forbidden.get(package, ())
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root)
            module = ".".join(rel.with_suffix("").parts)
            for line, name in imported_modules(path.read_text(encoding="utf-8"), module):
                hit = next((b for b in banned if _matches(name, b)), None)
                if hit is not None:
                    found.append(f"{rel}:{line}: {package} imports {name} (forbidden: {hit})")
    return sorted(set(found))


def test_the_repository_keeps_its_layers() -> None:
    assert violations(ROOT) == []


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_checker_flags_each_rule_on_a_synthetic_tree(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "models/a.py": "import ray.train.torch\n",
        "models/b.py": "def f():\n    from ray import tune\n",
        "models/c.py": "from store.keys import pointer_key\n",
        "models/ok.py": "import numpy\nfrom models.schema import conform\nimport ray\n",
        "serve/a.py": "import optuna\n",
        "serve/b.py": "from ray import data\n",
        "serve/ok.py": "from ray import serve\nfrom store import keys\nfrom models import schema\n",
        "store/a.py": "from pipelines import precompute\n",
        "pipelines/a.py": "from serve.engine import Engine\n",
        "pipelines/ok.py": "from store import publish\nimport ray.data\n",
        "bench/a.py": "from jobs import features\n",
        "jobs/a.py": "import jobs.generate\n",
        "cluster/a.py": "from . import b\n",
        "cluster/b.py": "from jobs.deploy import render\n",
    })
    found = violations(root)
    flagged = {f.split(":")[0] for f in found}
    assert flagged == {"models/a.py", "models/b.py", "models/c.py", "serve/a.py", "serve/b.py", "store/a.py",
                       "pipelines/a.py", "bench/a.py", "jobs/a.py", "cluster/b.py"}
    assert "models/b.py:2: models imports ray.tune (forbidden: ray.tune)" in found


def test_relative_imports_resolve_to_their_package(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"models/sub/y.py": "from .. import keys\n", "models/z.py": "from . import store\n"})
    assert violations(root) == []  # models.keys / models.store are inside models
    assert list(imported_modules("from ..store import keys\n", "models.sub.y")) == \
        [(1, "models.store"), (1, "models.store.keys")]
    assert list(imported_modules("from . import x\n", "store.codec")) == [(1, "store"), (1, "store.x")]


@pytest.mark.parametrize("name,banned,hit", [("ray.tune", "ray.tune", True), ("ray.tuner", "ray.tune", False),
                                             ("ray.tune.search", "ray.tune", True), ("jobsx", "jobs", False)])
def test_prefix_matching_is_by_module_component(name: str, banned: str, hit: bool) -> None:
    assert _matches(name, banned) is hit
