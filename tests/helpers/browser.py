"""One way for the browser tests to start `pocketpack serve` and Debian's Chromium.

Each browser test file used to carry its own copy of this; the server is started exactly as a
user starts it (a subprocess on 127.0.0.1, the embedded model), and Chromium with the flags this
machine's closed network needs (no background networking, no component updates).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = REPO / ".ci" / "artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def require_chromium() -> None:
    """Skip without Chromium, or fail where CI says the browser tests must run."""
    if CHROMIUM is None:
        if os.environ.get("POCKETPACK_REQUIRE_BROWSER"):
            pytest.fail("Chromium is required (POCKETPACK_REQUIRE_BROWSER=1) but not installed")
        pytest.skip("Debian's chromium is not installed (make browser installs it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(user_data: Path, model: Path, *extra: str):
    """`pocketpack serve` on a free loopback port until the block ends; yields its URL."""
    require_chromium()
    port = free_port()
    log_path = user_data / "serve.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "pocketpack", "serve", "--model", str(model), "--threads", "1", *extra,
             "--user-data-dir", str(user_data), "--listen-port", str(port)],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail("pocketpack serve exited:\n" + log_path.read_text())
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            process.kill()
            pytest.fail("pocketpack serve did not answer:\n" + log_path.read_text())
        try:
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


@contextlib.contextmanager
def chromium():
    """A headless Debian Chromium driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


REPLY_TIMEOUT_MS = 240_000  # a 16-token reply of the embedded model on one thread, with room for a loaded machine
IDLE = "() => [...document.querySelectorAll('[data-testid=status-tracker]')].every(t => t.classList.contains('hide'))"


def open_chat(browser, url: str, parameters: dict[str, str]):
    """A fresh tab on the UI with ``parameters`` (slider label -> value) set in the Parameters
    panel, as a person would before chatting."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(url, wait_until="load")
    page.get_by_placeholder("Send a message").wait_for(state="visible", timeout=60_000)
    page.get_by_text("Parameters", exact=True).click()
    for label, value in parameters.items():
        box = page.get_by_label(f"number input for {label}", exact=True)
        box.fill(value)
        box.press("Enter")
    page.get_by_text("Parameters", exact=True).click()
    return page


def wait_idle(page, timeout_ms: int = REPLY_TIMEOUT_MS) -> None:
    """Until no progress indicator shows on the page (the last event, memory storing included, is done)."""
    page.wait_for_function(IDLE, timeout=timeout_ms)


def send(page, text: str):
    """Type a message in the Chat tab, press Send, and wait until the reply is finished (the
    progress indicator gone: the reply's last step, where memories are stored, is over too)."""
    page.get_by_role("tab", name="Chat", exact=True).first.click()
    replies = page.locator(".message.bot, [data-testid='bot']")
    before = replies.count()
    page.get_by_placeholder("Send a message").fill(text)
    page.get_by_role("button", name="Send", exact=True).click()
    page.wait_for_function(f"() => document.querySelectorAll('.message.bot, [data-testid=bot]').length > {before}",
                           timeout=REPLY_TIMEOUT_MS)
    wait_idle(page)
    reply = replies.last
    assert reply.inner_text().strip() and "Is typing" not in reply.inner_text()
    return reply
