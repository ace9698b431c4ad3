"""The standalone web UI in a real headless Chromium, on the real embedded model.

`pocketpack serve` runs as a user would start it (all four extensions, the Gemma 3 270M
GGUF); Debian's Chromium, driven by Playwright, loads the page, sends a message, watches
the reply stream in, and opens each extension's tab.
"""

from __future__ import annotations

import time

import pytest

from tests.helpers.browser import REPO, chromium, serve

pytestmark = [pytest.mark.browser, pytest.mark.slow]

EXTENSIONS = ["memory", "rag-enhancer", "adapter-switcher", "vram-advisor"]


def _display_name(extension: str) -> str:
    """The tab title TGWUI would show: params['display_name'], else the folder name."""
    import importlib.util

    # a fresh copy: another test may have changed the imported module's params (as settings do)
    spec = importlib.util.spec_from_file_location(f"fresh_{extension}", REPO / "extensions" / extension / "script.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, "params", {}).get("display_name", extension)


@pytest.fixture(scope="module")
def server(tmp_path_factory, default_model):
    user_data = tmp_path_factory.mktemp("user_data")
    with serve(user_data, default_model) as url:
        yield url, user_data


@pytest.fixture(scope="module")
def page(server):
    url, user_data = server
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url, wait_until="load")
        page.locator("#chat-input textarea").wait_for(state="visible", timeout=60000)
        yield page
        page.screenshot(path=str(user_data / "last.png"), full_page=True)


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
