"""Open a report in headless Chromium (Debian's ``chromium``) over the DevTools protocol.

One browser process per call, with a fresh profile directory, no network features, and the
DevTools port on loopback. It loads the page, collects console errors (``console.error``,
uncaught exceptions, failed loads reported by the Log domain), counts the plots and whether
each image decoded, and takes a full-page PNG screenshot. The browser is stopped by its own
pid; the profile directory is removed.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

CHROMIUM = "/usr/bin/chromium"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0")

PAGE_STATE_JS = """JSON.stringify({
  title: document.title,
  height: document.documentElement.scrollHeight,
  plots: [...document.querySelectorAll('img.plot')].map(i => ({name: i.dataset.plot, complete: i.complete,
          width: i.naturalWidth, height: i.naturalHeight}))
})"""


class BrowserError(RuntimeError):
    pass


@dataclass
class PageCheck:
    """What the browser saw."""

    url: str
    title: str
    png: bytes
    console_errors: list[str] = field(default_factory=list)
    plots: list[dict[str, Any]] = field(default_factory=list)

    @property
    def plots_decoded(self) -> int:
        return sum(1 for p in self.plots if p["complete"] and p["width"] > 0 and p["height"] > 0)


class _Cdp:
    """A minimal DevTools client: numbered commands, events buffered while waiting."""

    def __init__(self, ws_url: str, timeout: float):
        from websockets.sync.client import connect

        self.ws = connect(ws_url, max_size=None, open_timeout=timeout)
        self.timeout = timeout
        self.events: list[dict[str, Any]] = []
        self._id = 0

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + self.timeout
        while True:
            reply = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str) -> dict[str, Any]:
        for e in self.events:
            if e.get("method") == method:
                return e
        deadline = time.monotonic() + self.timeout
        while True:
            e = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            self.events.append(e)
            if e.get("method") == method:
                return e

    def close(self) -> None:
        self.ws.close()


def _console_errors(events: list[dict[str, Any]]) -> list[str]:
    errors = []
    for e in events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            errors.append("console." + p["type"] + ": " + " ".join(str(a.get("value", a.get("description", "")))
                                                                   for a in p.get("args", [])))
        elif m == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            errors.append("exception: " + str(d.get("exception", {}).get("description") or d.get("text")))
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            errors.append("log: " + str(p["entry"].get("text")))
    return errors


def check_page(path: str | os.PathLike[str], png_path: str | os.PathLike[str] | None = None, *,
               width: int = 1200, height: int = 900, timeout: float = 60.0, chromium: str = CHROMIUM) -> PageCheck:
    """Load ``path`` in headless Chromium; return console errors, plots and a full-page screenshot."""
    if not Path(chromium).exists():
        raise BrowserError(f"{chromium} not found; install Debian's chromium (make chromium)")
    url = Path(path).resolve().as_uri()
    profile = tempfile.mkdtemp(prefix="tdm-chromium-")
    log = open(Path(profile) / "stderr.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen([chromium, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                             "about:blank"], stdout=subprocess.DEVNULL, stderr=log)
    cdp: _Cdp | None = None
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BrowserError(f"chromium did not open its DevTools port (exit {proc.poll()})")
            time.sleep(0.05)
        port, ws_path = port_file.read_text().splitlines()[:2]
        cdp = _Cdp(f"ws://127.0.0.1:{port}{ws_path}", timeout)
        target = cdp.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        sid = cdp.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            cdp.call(f"{domain}.enable", session=sid)
        cdp.call("Emulation.setDeviceMetricsOverride",
                 {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=sid)
        cdp.call("Page.navigate", {"url": url}, session=sid)
        cdp.wait_event("Page.loadEventFired")
        state = json.loads(cdp.call("Runtime.evaluate", {"expression": PAGE_STATE_JS, "returnByValue": True},
                                    session=sid)["result"]["value"])
        full = int(state["height"])
        shot = cdp.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                   "clip": {"x": 0, "y": 0, "width": width, "height": full, "scale": 1}},
                        session=sid)
        png = base64.b64decode(shot["data"])
        cdp.call("Runtime.evaluate", {"expression": "0"}, session=sid)  # flush late console events
        errors = _console_errors(cdp.events)
        try:
            cdp.call("Browser.close")
        except Exception:  # noqa: BLE001 - the browser may drop the socket while closing
            pass
    finally:
        if cdp is not None:
            cdp.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
        shutil.rmtree(profile, ignore_errors=True)
    if png_path is not None:
        Path(png_path).write_bytes(png)
    return PageCheck(url=url, title=state["title"], png=png, console_errors=errors, plots=state["plots"])


def ink_fraction(png: bytes) -> float:
    """Share of pixels that are not (near) white: 0 for a blank page."""
    from matplotlib import image

    img = image.imread(io.BytesIO(png), format="png")
    rgb = np.asarray(img)[..., :3]
    return float((rgb.min(axis=-1) < 0.94).mean())
