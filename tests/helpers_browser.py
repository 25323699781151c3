"""Opens an HTML file in headless Chromium and reports what a person would see go wrong.

Talks to Chromium over the DevTools protocol (one page's websocket): it collects console errors,
uncaught exceptions and failed loads while the page loads, asks the page which images decoded,
and takes a full-page screenshot. Waiting is on protocol events (the load event, command
replies), never on sleeps; the timeout only bounds a hung browser.

    result = open_page("report.html", screenshot="report.png")
    assert not result.errors and result.images and all(ok for _, ok in result.images)
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import urllib.parse
import urllib.request
from pathlib import Path

from websockets.sync.client import connect

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def find_browser() -> str | None:
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


@dataclasses.dataclass
class PageResult:
    errors: list[str]  # console errors, exceptions, failed loads
    images: list[tuple[str, bool]]  # (first characters of src, decoded with a size)
    title: str


class _Session:
    """Request/response over one DevTools websocket, buffering the events that arrive between."""

    def __init__(self, ws, timeout: float):
        self.ws = ws
        self.timeout = timeout
        self.ids = itertools.count(1)
        self.events: list[dict] = []

    def _recv(self) -> dict:
        return json.loads(self.ws.recv(timeout=self.timeout))

    def call(self, method: str, **params) -> dict:
        ident = next(self.ids)
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            msg = self._recv()
            if msg.get("id") == ident:
                if "error" in msg:
                    raise RuntimeError(f"DevTools {method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, method: str) -> dict:
        for i, ev in enumerate(self.events):
            if ev.get("method") == method:
                return self.events.pop(i)
        while True:
            msg = self._recv()
            if msg.get("method") == method:
                return msg
            self.events.append(msg)


def _errors(events: list[dict]) -> list[str]:
    out = []
    for ev in events:
        method, p = ev.get("method"), ev.get("params", {})
        if method == "Runtime.exceptionThrown":
            out.append("exception: " + json.dumps(p.get("exceptionDetails", {}))[:300])
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append("console: " + json.dumps(p.get("args", []))[:300])
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            out.append("log: " + p["entry"].get("text", "")[:300])
    return out


def _page_websocket(proc: subprocess.Popen, timeout: float) -> str:
    """Reads Chromium's "DevTools listening on ws://127.0.0.1:PORT/..." line, then its page."""
    for line in proc.stderr:
        if line.startswith("DevTools listening on "):
            break
    else:
        raise RuntimeError(f"chromium exited before DevTools started (exit {proc.wait()})")
    # Keep draining stderr so that a chatty browser never blocks on a full pipe.
    threading.Thread(target=lambda: proc.stderr.read(), daemon=True).start()
    port = urllib.parse.urlparse(line.split()[-1]).port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout) as r:
        pages = [t for t in json.load(r) if t.get("type") == "page"]
    return pages[0]["webSocketDebuggerUrl"]


def open_page(
    path: str | Path,
    *,
    screenshot: str | Path | None = None,
    width: int = 1200,
    timeout: float = 120.0,
) -> PageResult:
    """Loads `path` in headless Chromium; returns its errors and images, saves a screenshot."""
    browser = find_browser()
    if browser is None:
        raise FileNotFoundError(f"no browser found (looked for {', '.join(BROWSERS)})")
    # Chromium's helper processes (renderer, crashpad) outlive a kill of the browser alone and
    # keep writing its profile: the browser gets its own process group, and the whole group is
    # killed before the profile directory is removed.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as user_dir:
        proc = subprocess.Popen(
            [
                browser,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--remote-debugging-port=0",
                f"--user-data-dir={user_dir}",
                f"--window-size={width},900",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            url = _page_websocket(proc, timeout)
            with connect(url, max_size=None, open_timeout=timeout) as ws:
                return _inspect(_Session(ws, timeout), path, screenshot, width)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _inspect(s: _Session, path, screenshot, width: int) -> PageResult:
    """Loads the page, asks which images decoded, and optionally saves a full-page PNG."""
    for domain in ("Page", "Runtime", "Log"):
        s.call(f"{domain}.enable")
    s.call("Page.navigate", url=Path(path).resolve().as_uri())
    s.wait_for("Page.loadEventFired")
    probe = (
        "JSON.stringify({title: document.title, images: Array.from(document.images)"
        ".map(i => [i.src.slice(0, 48), i.complete && i.naturalWidth > 0])})"
    )
    seen = json.loads(s.call("Runtime.evaluate", expression=probe)["result"]["value"])
    if screenshot is not None:
        size = s.call("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": width, "height": size["height"], "scale": 1}
        shot = s.call("Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True)
        Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
    return PageResult(_errors(s.events), [tuple(i) for i in seen["images"]], seen["title"])
