"""A real multi-node Ray cluster on one machine, and an S3 server on loopback, for tests and bench.scale.

``MultiNodeCluster`` starts a head (0 CPUs by default: all work lands on workers) and worker
nodes with ``ray start``, each in its own process group with its own free ports, temp dir and
scratch directory. With ``sandbox=True`` (the default where the kernel allows mount namespaces)
each node runs in a private mount namespace in which the whole filesystem is READ-ONLY except
that node's scratch directory, and ``/dev/shm`` (the object store) is a private tmpfs. A task
that writes outside its node's scratch fails with EROFS, and a file written by one node is
invisible to the others unless it went through the object store or the S3 server, exactly
as on separate machines. Job drivers run the same way in the head's scratch (``run_driver``).

``S3Server`` is moto's server mode on a free loopback port (a real S3 HTTP API); ``env`` holds
the settings every node and driver gets, as a deployment passes them from a Secret.

Everything is stopped by pid / process group (never ``ray stop`` or a kill by name).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from cluster.local import ROOT, ensure_token, free_port, pid_alive, port_open, stop_group, wait_for

logger = logging.getLogger(__name__)

S3_ENV_KEYS = ("AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION",
               "AWS_EC2_METADATA_DISABLED")


def _sandbox_prefix(rw_dir: Path, shm_mb: int) -> list[str]:
    """argv prefix: a private mount namespace, ``/`` read-only, ``rw_dir`` writable, private /dev/shm."""
    script = (f"mount --bind {shlex.quote(str(rw_dir))} {shlex.quote(str(rw_dir))} && "
              "mount -o remount,bind,ro / && "
              f"mount -t tmpfs -o size={shm_mb}m tmpfs /dev/shm && exec \"$@\"")
    flags = ["-m", "--propagation", "private"] if os.geteuid() == 0 else ["-Urm", "--propagation", "private"]
    return ["unshare", *flags, "sh", "-c", script, "sandbox"]


def sandbox_available() -> str | None:
    """None when per-node sandboxes work here, else the reason they do not."""
    if shutil.which("unshare") is None:
        return "unshare(1) is not installed"
    with tempfile.TemporaryDirectory(prefix="tdm-sbx-") as d:
        probe = _sandbox_prefix(Path(d), 16) + ["sh", "-c", f"touch {d}/ok && ! touch {ROOT}/.tdm-sbx 2>/dev/null"]
        proc = subprocess.run(probe, capture_output=True, text=True, timeout=30)
        if proc.returncode != 0 or not Path(d, "ok").exists():
            Path(ROOT, ".tdm-sbx").unlink(missing_ok=True)
            return f"mount namespaces are not permitted here ({proc.stderr.strip()[-200:] or proc.returncode})"
    return None


@dataclass
class S3Server:
    """moto's S3 server on a free loopback port; ``start`` creates the buckets."""

    workdir: Path
    port: int = 0
    pid_file: Path = field(init=False)

    def __post_init__(self) -> None:
        self.pid_file = self.workdir / "moto.pid"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL_S3": self.endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}

    def start(self, buckets: tuple[str, ...] = ()) -> S3Server:
        moto = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
        if moto is None:
            raise RuntimeError("moto_server is not installed (pip install 'moto[server]')")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        with open(self.workdir / "moto.log", "ab") as log:
            proc = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(self.port)], stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid_file.write_text(str(proc.pid))
        wait_for(lambda: port_open(self.port) or proc.poll() is not None, f"moto_server on {self.port}", 60)
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited: {(self.workdir / 'moto.log').read_text()[-2000:]}")
        for bucket in buckets:
            self.filesystem().create_dir(bucket)
        return self

    def filesystem(self):  # type: ignore[no-untyped-def]
        import pyarrow.fs as pafs

        return pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{self.port}", scheme="http", access_key="test",
                                 secret_key="test", region="us-east-1", allow_bucket_creation=True)

    def stop(self) -> None:
        stop_group(self.pid_file, "moto_server", timeout=10)


@dataclass
class Node:
    name: str
    scratch: Path
    pid_file: Path
    cpus: float
    pid: int = 0

    @property
    def temp_dir(self) -> Path:
        return self.scratch / "ray"


class MultiNodeCluster:
    """Head + workers via ``ray start`` in private dirs under ``root`` (short: Unix socket paths)."""

    def __init__(self, root: Path, env: dict[str, str] | None = None, sandbox: bool = True,
                 object_store_mb: int = 256, head_cpus: float = 0, head_env: dict[str, str] | None = None):
        self.root = root
        self.env = dict(env or {})
        why = sandbox_available() if sandbox else "turned off"
        self.sandbox = why is None
        self.sandbox_reason = why
        if sandbox and why:
            logger.warning("multi-node cluster without per-node sandboxes: %s", why)
        self.object_store_mb = object_store_mb
        self.head_cpus = head_cpus
        self.head_env = dict(head_env or {})
        self.token = root / "auth_token"
        self.gcs_port = 0
        self.nodes: dict[str, Node] = {}

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    def _base_env(self, node: Node) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "AWS_"))}
        for sub in ("tmp", "home"):
            (node.scratch / sub).mkdir(parents=True, exist_ok=True)
        env.update(self.env)
        env.update({
            "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token),
            "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1",
            "TMPDIR": str(node.scratch / "tmp"), "HOME": str(node.scratch / "home"),
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        })
        return env

    def _start(self, node: Node, args: list[str], env: dict[str, str]) -> None:
        ports = {"--node-manager-port": free_port(), "--object-manager-port": free_port(),
                 "--metrics-export-port": free_port(), "--dashboard-agent-listen-port": free_port(),
                 "--dashboard-agent-grpc-port": free_port(), "--runtime-env-agent-port": free_port()}
        cmd = [str(Path(sys.executable).with_name("ray")), "start", "--block", f"--temp-dir={node.temp_dir}",
               f"--num-cpus={node.cpus:g}", f"--object-store-memory={self.object_store_mb * 2**20}",
               "--disable-usage-stats", *[f"{k}={v}" for k, v in ports.items()], *args]
        if self.sandbox:
            cmd = _sandbox_prefix(node.scratch, self.object_store_mb + 512) + cmd
        node.scratch.mkdir(parents=True, exist_ok=True)
        with open(node.scratch / "node.log", "wb") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, start_new_session=True, cwd=node.scratch)
        node.pid = proc.pid
        node.pid_file.write_text(str(proc.pid))
        self.nodes[node.name] = node

    def start(self, workers: int = 2, cpus_per_worker: float = 1) -> MultiNodeCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        ensure_token(self.token)
        attempts = 5
        for attempt in range(attempts):  # a loaded machine can miss ray start's fixed 30 s registration wait
            head = Node("head", self.root / "head", self.root / "head.pid", self.head_cpus)
            self.gcs_port = free_port()
            self._start(head, ["--head", f"--port={self.gcs_port}", "--include-dashboard=false",
                               f"--dashboard-port={free_port()}", f"--ray-client-server-port={free_port()}"],
                        {**self._base_env(head), **self.head_env})
            try:
                self._wait_started(head)
                break
            except RuntimeError:
                stop_group(head.pid_file, "ray head")
                if attempt == attempts - 1:
                    raise
                logger.warning("the Ray head did not start (attempt %d); retrying", attempt + 1)
        for i in range(workers):
            self.add_worker(f"w{i + 1}", cpus_per_worker)
        return self

    def add_worker(self, name: str, cpus: float = 1, attempts: int = 5) -> Node:
        """Start a worker node and wait until the GCS counts it. ``ray start`` gives a raylet a fixed
        30 s to register, which a heavily loaded machine can miss: then it tries again."""
        for attempt in range(attempts):
            node = Node(name, self.root / name, self.root / f"{name}.pid", cpus)
            self._start(node, [f"--address={self.address}"], self._base_env(node))
            try:
                self._wait_started(node)
                return node
            except RuntimeError:
                stop_group(node.pid_file, f"ray node {name}")
                if attempt == attempts - 1:
                    raise
                logger.warning("worker %s did not start (attempt %d); retrying", name, attempt + 1)
        raise AssertionError("unreachable")

    def _wait_started(self, node: Node, timeout: float = 180) -> None:
        """Until ``ray start`` reports the node registered with the GCS (or the node exits)."""
        log = node.scratch / "node.log"
        wait_for(lambda: not pid_alive(node.pid) or "Ray runtime started" in log.read_text(errors="replace"),
                 f"Ray node {node.name}", timeout)
        if not pid_alive(node.pid):
            raise RuntimeError(f"Ray node {node.name} exited: {log.read_text(errors='replace')[-1500:]}")

    def alive_nodes(self) -> int:
        """Nodes the GCS counts as alive (asked from a fresh process, so no driver stays connected)."""
        code = ("import ray,json,sys; ray.init(address=sys.argv[1], log_to_driver=False); "
                "print(json.dumps(sum(1 for n in ray.nodes() if n['Alive'])))")
        out = self.run_driver([sys.executable, "-c", code, self.address], timeout=120, check=True, sandbox=False)
        return int(out.stdout.strip().splitlines()[-1])

    def wait_nodes(self, n: int, timeout: float = 180) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            dead = [k for k, v in self.nodes.items() if not pid_alive(v.pid) and v.pid_file.exists()]
            if dead:
                raise RuntimeError(f"Ray node(s) {dead} exited: " + " | ".join(
                    (self.nodes[k].scratch / "node.log").read_text()[-1500:] for k in dead))
            if self.alive_nodes() >= n:
                return
            time.sleep(1)
        raise RuntimeError(f"timed out waiting for {n} Ray nodes")

    def driver_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = self._base_env(self.nodes["head"])
        env["RAY_ADDRESS"] = self.address
        env.update(extra or {})
        return env

    def run_driver(self, cmd: list[str], timeout: float = 600, check: bool = True, sandbox: bool = True,
                   extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run a job driver on the head (its scratch as TMPDIR, sandboxed like the nodes)."""
        head = self.nodes["head"]
        if sandbox and self.sandbox:
            cmd = _sandbox_prefix(head.scratch, 256) + cmd
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=self.driver_env(extra_env),
                              cwd=head.scratch / "tmp")
        if check and proc.returncode != 0:
            raise RuntimeError(f"driver {' '.join(cmd[-6:])} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        return proc

    def popen_driver(self, cmd: list[str], log: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        head = self.nodes["head"]
        if self.sandbox:
            cmd = _sandbox_prefix(head.scratch, 256) + cmd
        with open(log, "ab") as out:
            return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.driver_env(extra_env),
                                    cwd=head.scratch / "tmp", start_new_session=True)

    def kill_node(self, name: str) -> None:
        """SIGKILL a node's whole process group (a machine lost mid-job)."""
        node = self.nodes[name]
        try:
            os.killpg(node.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        stop_group(node.pid_file, f"killed node {name}", timeout=5)

    def stop(self) -> None:
        for name in [n for n in self.nodes if n != "head"] + ["head"]:
            if name in self.nodes:
                stop_group(self.nodes[name].pid_file, f"ray node {name}")
        shutil.rmtree(self.root, ignore_errors=True)

    def describe(self) -> str:
        return json.dumps({"address": self.address, "sandbox": self.sandbox,
                           "nodes": {k: {"pid": v.pid, "cpus": v.cpus} for k, v in self.nodes.items()}})
