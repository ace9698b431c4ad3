"""The standalone web UI in a real headless Chromium, on the real embedded model.

`pocketpack serve` runs as a user would start it (all four extensions, the Gemma 3 270M
GGUF); Debian's Chromium, driven by Playwright, loads the page, sends a message, watches
the reply stream in, and opens each extension's tab.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
EXTENSIONS = ["memory", "rag-enhancer", "adapter-switcher", "vram-advisor"]


def _display_name(extension: str) -> str:
    """The tab title TGWUI would show: params['display_name'], else the folder name."""
    import importlib.util

    # a fresh copy: another test may have changed the imported module's params (as settings do)
    spec = importlib.util.spec_from_file_location(f"fresh_{extension}", REPO / "extensions" / extension / "script.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, "params", {}).get("display_name", extension)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, default_model):
    if CHROMIUM is None:
        if os.environ.get("POCKETPACK_REQUIRE_BROWSER"):
            pytest.fail("Chromium is required (POCKETPACK_REQUIRE_BROWSER=1) but not installed")
        pytest.skip("Debian's chromium is not installed (make browser installs it)")
    user_data = tmp_path_factory.mktemp("user_data")
    port = _free_port()
    log = open(user_data / "serve.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "pocketpack", "serve", "--model", str(default_model), "--threads", "1",
         "--user-data-dir", str(user_data), "--listen-port", str(port)],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail("pocketpack serve exited:\n" + (user_data / "serve.log").read_text())
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("pocketpack serve did not answer:\n" + (user_data / "serve.log").read_text())
    yield url, user_data
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    url, user_data = server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url, wait_until="load")
        page.locator("#chat-input textarea").wait_for(state="visible", timeout=60000)
        yield page
        page.screenshot(path=str(user_data / "last.png"), full_page=True)
        browser.close()


def test_page_loads_on_127_0_0_1(server, page):
    assert server[0].startswith("http://127.0.0.1:")
    assert page.title() == "Pocket Pack"
    assert page.locator("#chat-input textarea").is_visible()


def test_a_message_gets_a_streamed_reply(page):
    # greedy decoding in instruct mode: the base 270M model answers at length, the same every run
    page.get_by_text("Parameters").first.click()
    temperature = page.locator("#temperature input[type=number]")
    temperature.fill("0")
    temperature.press("Enter")
    page.locator("#mode").get_by_label("instruct", exact=True).check()
    page.locator("#chat-input textarea").fill("Name three colours of the rainbow.")
    page.locator("#Generate").click()
    bot = page.locator("#chat .message.bot, #chat [data-testid='bot']").last
    lengths = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if bot.count():
            text = bot.inner_text().strip()
            if text and "Is typing" not in text and (not lengths or len(text) != lengths[-1]):
                lengths.append(len(text))
        finished = page.locator("#Generate").is_enabled() and len(lengths) > 0 and _settled(page, bot, lengths)
        if finished:
            break
        time.sleep(0.05)
    assert lengths, "no reply appeared"
    assert len(lengths) >= 2, f"the reply arrived in one piece, not streamed: {lengths}"
    assert lengths == sorted(lengths), f"streamed text must only grow: {lengths}"


def _settled(page, bot, lengths) -> bool:
    time.sleep(1.0)
    return len(bot.inner_text().strip()) == lengths[-1]


@pytest.mark.parametrize("extension", EXTENSIONS)
def test_each_extension_tab_renders(page, extension):
    tab = page.get_by_role("tab", name=_display_name(extension), exact=True).first
    tab.click()
    panel = page.locator(f"#{extension}-tab")
    panel.wait_for(state="visible", timeout=15000)
    assert panel.inner_text().strip(), f"the {extension} tab is empty"
    assert "failed in ui" not in panel.inner_text()
