"""Journey: "will Mistral 7B fit on an 8 GB GPU?", asked in the web UI before downloading anything.

Issue 14: the VRAM advisor only knew files already on disk. A newcomer starts `pocketpack serve`,
opens the VRAM advisor tab, types "Mistral 7B", picks the 8 GB GPU, presses Estimate and reads
which formats fit, with a chart beside the answer. Debian's Chromium, driven by Playwright, does
the clicking; the end state is saved to .ci/artifacts/journey-vram.png.
"""

from __future__ import annotations

import pytest

from tests.helpers.browser import ARTIFACTS, chromium, serve

pytestmark = [pytest.mark.browser, pytest.mark.slow]



@pytest.fixture(scope="module")
def server(tmp_path_factory, default_model):
    with serve(tmp_path_factory.mktemp("user_data"), default_model, "--extensions", "vram-advisor") as url:
        yield url


@pytest.fixture(scope="module")
def page(server):
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(server, wait_until="load")
        yield page


def test_will_mistral_7b_fit_on_an_8_gb_gpu(page):
    # the newcomer opens the advisor's tab
    page.get_by_role("tab", name="VRAM advisor", exact=True).first.click()
    tab = page.locator("#vram-advisor-tab")   # the tab's panel, as the host names it
    tab.wait_for(state="visible", timeout=30000)

    # types the model's name and picks it from what the menu suggests
    model = tab.get_by_label("Model", exact=True)
    model.click()
    model.fill("Mistral 7B")
    page.get_by_role("option", name="Mistral 7B v0.1", exact=True).click()
    assert model.input_value() == "Mistral 7B v0.1"

    # picks the 8 GB GPU
    tab.get_by_label("Machine", exact=True).click()
    page.get_by_role("option", name="8 GB GPU", exact=False).first.click()
    assert tab.get_by_label("Machine", exact=True).input_value().startswith("8 GB GPU")

    tab.get_by_role("button", name="Estimate").click()

    # reads the answer: which formats fit, which do not and why
    fits = tab.get_by_text("Fits on the GPU:")
    fits.wait_for(timeout=120000)
    answer = fits.locator("xpath=ancestor::li[1]").inner_text()
    assert "gguf-Q4_K_M" in answer and "gguf-Q5_K_M" in answer and "bf16" not in answer
    does_not = tab.get_by_text("Does not fit:").locator("xpath=ancestor::li[1]").inner_text()
    assert "bf16 (needs 15.4 GiB VRAM)" in does_not
    heading = tab.get_by_role("heading", name="Mistral 7B v0.1", exact=False).inner_text()
    assert "8 GB GPU" in heading and "4096 tokens" in heading
    assert "mistralai/Mistral-7B-v0.1" in tab.inner_text()      # where the numbers come from

    # ... with a chart of the same numbers beside it
    chart = tab.get_by_text("GPU memory by format at 4096 tokens", exact=False)
    chart.wait_for(timeout=30000)
    drawn = page.locator("#vram-chart canvas, #vram-chart svg").first
    drawn.wait_for(state="visible", timeout=30000)
    assert drawn.bounding_box()["height"] > 100

    # the preset to apply follows the machine chosen
    assert tab.get_by_label("Hardware-tier preset", exact=True).input_value() == "gpu-8gb"

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / "journey-vram.png"))
