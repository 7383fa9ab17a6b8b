"""A headless Debian chromium driven over the DevTools protocol on a pipe
(``--remote-debugging-pipe``: JSON messages separated by NUL bytes on fds 3 and 4), so the tests
need no websocket library and no port.

Why the DevTools protocol and not ``--dump-dom``: a dumped DOM has the SVGs' attributes, not
their laid-out size, and says nothing of console errors. Here the browser lays the page out at a
fixed width; the test then asks it (``Runtime.evaluate`` from the harness: the page itself has
no script) for every figure's rendered box, the sections and the banners, and collects console
errors, exceptions and every network request the page made while loading.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SKIP_REASON = "needs Debian's chromium (apt-get install chromium; .ci/run installs it)"

# Laid out in the page by the browser; evaluated by the harness (the page has no script).
INSPECT = """JSON.stringify({
  figures: [...document.querySelectorAll('figure')].map(f => {
    const s = f.querySelector('svg'); const r = s ? s.getBoundingClientRect() : null;
    return {id: f.id, width: r ? r.width : 0, height: r ? r.height : 0,
            error: !!f.querySelector('.figure-error')};
  }),
  sections: [...document.querySelectorAll('section[id]')].map(s => s.id),
  banners: [...document.querySelectorAll('.banner[id]')].map(b => {
    const r = b.getBoundingClientRect();
    return {id: b.id, text: b.textContent.trim(), width: r.width, height: r.height};
  }),
  scripts: document.querySelectorAll('script').length,
  title: document.title,
})"""


@dataclass
class Page:
    figures: list[dict[str, Any]]
    sections: list[str]
    banners: dict[str, dict[str, Any]]
    scripts: int
    title: str
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


class Browser:
    """One chromium process; ``open`` loads a page, inspects it and saves a screenshot."""

    def __init__(self, width: int = 1100, timeout: float = 30.0) -> None:
        assert CHROMIUM is not None, SKIP_REASON
        self.width, self.timeout = width, timeout
        self._profile = tempfile.TemporaryDirectory(prefix="bt-chromium-")
        to_child, self._write = os.pipe()
        self._read, from_child = os.pipe()
        # The child must find the protocol on fds 3 (commands) and 4 (answers).
        low = {3: os.dup(to_child), 4: os.dup(from_child)}

        def fds() -> None:
            for target, fd in low.items():
                os.dup2(fd, target)

        self._proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--no-first-run", "--remote-debugging-pipe", "--mute-audio",
             f"--user-data-dir={self._profile.name}", "about:blank"],
            preexec_fn=fds, pass_fds=(3, 4), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for fd in (to_child, from_child, *low.values()):
            os.close(fd)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []

    def close(self) -> None:
        with contextlib.suppress(OSError, AssertionError, TimeoutError):
            self._send("Browser.close")
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        os.close(self._write)
        os.close(self._read)
        self._profile.cleanup()

    def _message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise AssertionError("chromium closed the DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message

    def _send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        request: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            request["sessionId"] = session
        os.write(self._write, json.dumps(request).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            message = self._message(deadline)
            if message.get("id") == self._next_id:
                assert "error" not in message, f"{method}: {message['error']}"
                result: dict[str, Any] = message.get("result", {})
                return result
            self._events.append(message)

    def _wait_for(self, method: str, session: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not any(e.get("method") == method and e.get("sessionId") == session
                      for e in self._events):
            self._events.append(self._message(deadline))

    def open(self, html: Path, screenshot: Path | None = None) -> Page:
        target = self._send("Target.createTarget", url="about:blank")["targetId"]
        session = self._send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self._events.clear()
        for domain in ("Page", "Runtime", "Log", "Network"):
            self._send(f"{domain}.enable", session)
        self._send("Emulation.setDeviceMetricsOverride", session, width=self.width,
                   height=900, deviceScaleFactor=1, mobile=False)
        self._send("Page.navigate", session, url=html.resolve().as_uri())
        self._wait_for("Page.loadEventFired", session)
        value = self._send("Runtime.evaluate", session, expression=INSPECT,
                           returnByValue=True)["result"]["value"]
        data = json.loads(value)
        page = Page(figures=data["figures"], sections=data["sections"],
                    banners={b["id"]: b for b in data["banners"]}, scripts=data["scripts"],
                    title=data["title"])
        if screenshot is not None:
            size = self._send("Page.getLayoutMetrics", session)["cssContentSize"]
            shot = self._send("Page.captureScreenshot", session, format="png",
                              captureBeyondViewport=True,
                              clip={"x": 0, "y": 0, "width": size["width"],
                                    "height": size["height"], "scale": 1})
            screenshot.write_bytes(base64.b64decode(shot["data"]))
        self._collect(page, session)
        self._send("Target.closeTarget", targetId=target)
        return page

    def _collect(self, page: Page, session: str) -> None:
        for event in self._events:
            if event.get("sessionId") != session:
                continue
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error",
                                                                               "assert"):
                page.errors.append(f"console: {params.get('args')}")
            elif method == "Runtime.exceptionThrown":
                page.errors.append(f"exception: {params.get('exceptionDetails')}")
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                page.errors.append(f"log: {params['entry'].get('text')}")
            elif method == "Network.requestWillBeSent":
                page.requests.append(params["request"]["url"])
