"""Issue 14's user journeys, in a real headless Chromium against one `pocketpack serve`.

Written from the user's side: each test is a person's clicks (tabs, buttons and boxes found by
their visible names) and what that person reads on the page. One server for the module, on
the embedded Gemma 3 270M base model at --threads 1, all four extensions; replies are kept to
16 new tokens at temperature 0. The 270M model's words are not what is asserted — what the UI
shows was recalled, retrieved or refused is. Each journey's end state is saved as
.ci/artifacts/journey-<name>.png (git-ignored; CI keeps it as an artefact). The journeys share
the server's stores and run in file order (the preset one last: it reloads the model);
"will Mistral 7B fit on 8 GB?" is tests/test_journey_vram.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers.browser import ARTIFACTS, chromium, open_chat, send, serve

pytestmark = [pytest.mark.browser, pytest.mark.slow]



@pytest.fixture(scope="module")
def server(tmp_path_factory, default_model):
    user_data = tmp_path_factory.mktemp("user_data")
    with serve(user_data, default_model, "--model-dir", str(Path(default_model).parent)) as url:
        yield url, user_data


@pytest.fixture(scope="module")
def browser(server):
    with chromium() as launched:
        yield launched


@pytest.fixture()
def page(server, browser, request):
    """A fresh tab on the UI, as a person opening it: replies short and deterministic. A failed
    journey leaves its page as .ci/artifacts/journey-failed-<test>.png."""
    failed_before = request.session.testsfailed
    page = open_chat(browser, server[0], {"max_new_tokens": "16", "temperature": "0"})
    yield page
    if request.session.testsfailed > failed_before:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"journey-failed-{request.node.name}.png"), full_page=True)
    page.close()


def _open_tab(page, name: str):
    """Click a tab by its title; the panel shown (gradio renders only the selected one)."""
    tab = page.get_by_role("tab", name=name, exact=True).first
    tab.click()
    page.wait_for_function("t => t.getAttribute('aria-selected') === 'true'", arg=tab.element_handle())
    panel = page.get_by_role("tabpanel").first
    panel.wait_for(state="visible")
    return panel


def _shot(target, name: str, *, down_to=None) -> None:
    """Save ``target`` (a page or an element) as the journey's end state; with ``down_to``,
    the page from the top of ``target`` to the bottom of ``down_to``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = str(ARTIFACTS / f"journey-{name}.png")
    if down_to is None:
        target.screenshot(path=path)
        return
    target.scroll_into_view_if_needed()
    top, bottom = target.bounding_box(), down_to.bounding_box()
    page = target.page
    page.screenshot(path=path, full_page=True, clip={
        "x": 0, "y": top["y"] + page.evaluate("window.scrollY") - 8, "width": page.viewport_size["width"],
        "height": bottom["y"] + bottom["height"] - top["y"] + 16})


# -- (a) chat with memory across two chats ------------------------------------------------------
def test_a_fact_told_in_one_chat_is_recalled_in_the_next(page):
    send(page, "My sister Lena lives in Porto and works as a marine biologist.")
    page.get_by_role("button", name="New chat", exact=True).click()
    page.wait_for_function("() => document.querySelectorAll('.message.bot, [data-testid=bot]').length === 0")
    send(page, "Where does my sister live?")

    memory = _open_tab(page, "Memory")
    # opening the tab is enough: no button shows what the last reply was given, how many
    # memories there are now (the page was loaded before any) and the newest of them
    memory.get_by_text("query: Where does my sister live?").wait_for(timeout=30_000)
    memory.get_by_text("No memories yet.").wait_for(state="detached", timeout=30_000)
    newest = memory.get_by_role("row").filter(has_text="Where does my sister live?")
    newest.first.wait_for(timeout=30_000)
    # the Last injection table: the user's own words from chat 1, injected into chat 2's prompt
    recalled = memory.get_by_role("row").filter(has_text="the user said").filter(has_text="Lena lives in Porto")
    recalled.first.wait_for(timeout=30_000)
    cells = [c.strip() for c in recalled.first.get_by_role("gridcell").all_inner_texts()]
    assert cells[0] == "yes" and cells[3] == "user", cells
    _shot(memory.get_by_role("heading", name="Last injection"), "memory-recall", down_to=recalled.last)


# -- (b) upload a PDF, ask, and open the source under the answer ---------------------------------
HANDBOOK = {  # page title: its text; a page per topic, each a chunk or more, the lighthouse on page 4
    "Bread": "Mix flour, water, salt and yeast, and knead the dough for ten minutes until it is smooth and "
             "springs back when pressed. Leave it covered in a warm place until it has doubled, about an "
             "hour. Knock it back, shape the loaf and let it prove again for half an hour on a floured tray. "
             "Slash the top with a sharp knife so it can open in the oven. Bake it in a hot oven for forty "
             "minutes, until it is deep brown and sounds hollow when tapped underneath. A tray of water on "
             "the bottom shelf gives a crisper crust. Cool it on a rack for an hour before slicing, or the "
             "crumb will be gummy. Stale bread makes good crumbs, croutons and summer pudding.",
    "Roses": "Prune roses in late winter, cutting just above an outward-facing bud so the bush stays open in "
             "the middle and air can move through it. Remove dead, diseased and crossing stems first, then "
             "shorten the rest by about a third. Feed the plants in spring with a balanced fertiliser and "
             "mulch the bed with well-rotted compost, keeping it away from the stems. Water at the roots in "
             "dry weather, never over the leaves, and pick off any leaves with black spot as soon as they "
             "appear. Deadhead through the summer to keep the flowers coming, and stop in autumn so the "
             "hips can form for the birds.",
    "Trains": "The first train to the city leaves at 05:40 from platform two and the last returns at 23:15. "
              "On weekdays trains run every twenty minutes until seven in the evening, then every half hour. "
              "On Sundays the service runs every hour and the first train is not until eight. Bicycles "
              "travel free outside the morning rush, in the marked carriage at the front. Tickets bought "
              "on the train cost a pound more than at the machine, and the machine takes cards only. "
              "Season tickets are sold at the booking office, which opens at six and closes at noon on "
              "Saturdays. Delays are announced on the boards in the station hall.",
    "The Lighthouse": "The lighthouse on Gull Point is kept by Morwenna Trelawney, who climbs its ninety "
                      "steps every evening to light the lamp at sunset. The light shows two white flashes "
                      "every ten seconds and is visible eighteen nautical miles out to sea. The tower was "
                      "built of local granite and painted with red and white bands so that it can be "
                      "seen by day. Its foghorn sounds once every thirty seconds when visibility falls "
                      "below two miles. Visitors may climb the tower on Wednesday afternoons in summer, "
                      "when the keeper shows them the lens and the brass clockwork that once turned it.",
    "Knitting": "Cast on sixty stitches with a four millimetre needle and work in single rib for five "
                "centimetres, knitting the knit stitches and purling the purls. Change to stocking stitch "
                "and decrease one stitch at both ends of every fourth row until forty stitches remain. "
                "Keep a row counter on the needle, and slip the first stitch of every row for a neat edge. "
                "Cast off loosely in pattern so the edge can stretch. Block the piece under a damp cloth "
                "and leave it to dry flat before sewing the seams with mattress stitch, using the same "
                "yarn. Weave the ends in along the seams rather than across the fabric.",
    "Chess": "Control the centre early with pawns and pieces, develop the knights before the bishops and "
             "castle before move ten so the king is safe. Do not move the same piece twice in the opening "
             "without a reason, and do not bring the queen out too early where she can be chased. A rook "
             "belongs on an open file, and a knight on the rim is dim. Look for checks, captures and "
             "threats on every move, for both sides. In the endgame the king is a strong piece: bring it "
             "to the centre, and push a passed pawn with the king behind it. Two rooks on the seventh "
             "rank usually win.",
}


# scroll the element's scrolling box (the chat) until the element is near its top
SCROLL_TO_TOP = """e => {
  let box = e.parentElement;
  while (box && !(box.scrollHeight > box.clientHeight && getComputedStyle(box).overflowY !== 'visible')) {
    box = box.parentElement;
  }
  if (box) box.scrollTop += e.getBoundingClientRect().top - box.getBoundingClientRect().top - 40;
}"""


def _handbook_pdf(path: Path) -> Path:
    """The handbook as a PDF, one page per topic."""
    import fitz  # pymupdf

    doc = fitz.open()
    for title, text in HANDBOOK.items():
        page = doc.new_page()
        page.insert_textbox(fitz.Rect(72, 72, 520, 770), f"{title}\n\n{text}", fontsize=11)
    doc.save(str(path))
    doc.close()
    return path


def test_an_uploaded_pdf_is_a_clickable_source_under_the_answer(page, tmp_path):
    pdf = _handbook_pdf(tmp_path / "handbook.pdf")
    documents = _open_tab(page, "Documents")
    with page.expect_file_chooser() as chooser:
        documents.get_by_text("Click to Upload").first.click()
    chooser.value.set_files(str(pdf))
    documents.get_by_text(re.compile(r"handbook\s*\.pdf")).first.wait_for(timeout=30_000)   # the chosen file
    documents.get_by_role("button", name="Add", exact=True).click()
    documents.get_by_text("Added to global").wait_for(timeout=180_000)
    listed = documents.get_by_role("row").filter(has_text="handbook.pdf").filter(has_text="global")
    assert listed.count() == 1, documents.inner_text()   # the Documents list: name, chunks, collection

    reply = send(page, "Who keeps the lighthouse on Gull Point?")
    sources = reply.get_by_text("Sources", exact=True)
    sources.wait_for(timeout=30_000)
    source = reply.get_by_role("group").filter(has_text="handbook.pdf").first   # a <details> chip
    chip = source.locator("summary")
    label = chip.inner_text()
    assert "handbook.pdf" in label and re.search(r"score \d\.\d\d", label), label
    pages = [int(n) for n in re.search(r"pp?\. (\d+)(?:–(\d+))?", label).groups() if n]
    assert pages[0] <= 4 <= pages[-1] and pages != [1, len(HANDBOOK)], label  # around page 4, not the whole file
    # drawn as a chip (the extension's CSS reached the page), closed until asked for
    assert source.evaluate("e => getComputedStyle(e).borderTopLeftRadius") not in ("", "0px")
    passage = source.get_by_text("kept by Morwenna Trelawney", exact=False)
    assert not passage.is_visible()
    chip.click()
    passage.wait_for(state="visible", timeout=10_000)
    assert "two white flashes" in passage.inner_text()
    # the end state as the reader sees it: the question at the top of the chat, the open source below
    question = page.get_by_text("Who keeps the lighthouse on Gull Point?").last
    for _ in range(2):  # again once the chat's own scrolling after the chip opened has settled
        question.evaluate(SCROLL_TO_TOP)
        page.wait_for_timeout(400)
    _shot(page, "pdf-source")


# -- (e) memory pin / edit / delete / undo, each shown in the table at once ----------------------
def _memory_row(memory, text: str):
    return memory.get_by_role("row").filter(has_text=text)


def _cells(row) -> list[str]:
    return [c.strip() for c in row.get_by_role("gridcell").all_inner_texts()]


def test_pin_edit_delete_and_undo_show_in_the_memory_table_at_once(page):
    send(page, "My neighbour Tomas plays the cello every Sunday.")
    memory = _open_tab(page, "Memory")
    memory.get_by_role("button", name="Search", exact=True).click()   # empty search: the newest
    row = _memory_row(memory, "Tomas plays the cello")
    row.first.wait_for(timeout=30_000)
    assert _cells(row.first)[5] == ""                                   # not pinned

    # a click on the row fills the id and text boxes
    row.first.get_by_role("gridcell").last.click()
    text_box = memory.get_by_label("New text (for Save edit)")
    page.wait_for_function("b => b.value.includes('Tomas plays the cello')", arg=text_box.element_handle())
    memory_id = memory.get_by_label("Memory id").input_value()
    assert memory_id == _cells(row.first)[0]

    memory.get_by_role("button", name="Pin", exact=True).click()
    page.wait_for_function("([r]) => r.innerText.includes('yes')", arg=[row.first.element_handle()])
    assert _cells(_memory_row(memory, "Tomas plays the cello").first)[5] == "yes"

    text_box.fill("My neighbour Tomas plays the double bass every Sunday.")
    memory.get_by_role("button", name="Save edit", exact=True).click()
    edited = _memory_row(memory, "Tomas plays the double bass")
    edited.first.wait_for(timeout=30_000)
    assert _memory_row(memory, "Tomas plays the cello").count() == 0
    assert _cells(edited.first)[0] == memory_id and _cells(edited.first)[5] == "yes"   # same memory, still pinned

    memory.get_by_role("button", name="Delete", exact=True).click()
    memory.get_by_text(f"Deleted memory {memory_id}").wait_for(timeout=30_000)
    edited.first.wait_for(state="detached", timeout=30_000)

    memory.get_by_role("button", name="Undo delete", exact=True).click()
    memory.get_by_text("Restored").first.wait_for(timeout=30_000)
    restored = _memory_row(memory, "Tomas plays the double bass")
    restored.first.wait_for(timeout=30_000)
    assert _cells(restored.first)[5] == "yes"                           # back, pinned as it was
    _shot(memory.get_by_text("Search memories (empty: newest)"), "memory-edit",
          down_to=memory.get_by_text("Restored").first)


# -- (d) a flag the model cannot take is refused with its one line -------------------------------
def test_load_in_8bit_on_a_gguf_is_refused_with_its_message(page):
    model = _open_tab(page, "Model")
    assert ".gguf" in model.get_by_label("Model", exact=True).input_value()
    model.get_by_label("load-in-8bit", exact=True).check()
    model.get_by_role("button", name="Load", exact=True).click()
    refusal = model.get_by_text("--load-in-8bit: bitsandbytes flags are for the Transformers loader", exact=False)
    refusal.wait_for(timeout=60_000)
    assert "a GGUF model is already quantised" in refusal.inner_text()
    assert "Loaded" not in model.inner_text()
    _shot(model, "bad-flag")
    model.get_by_label("load-in-8bit", exact=True).uncheck()
    # the model that was loaded is still the one answering
    _open_tab(page, "Chat")
    assert "gemma-3-270m-q4_k_m.gguf" in page.get_by_text("Model:", exact=False).first.inner_text()


# -- (c) a preset applied in the VRAM advisor is used at the model's next load --------------------
def test_an_applied_preset_is_used_at_the_next_load(page):
    advisor = _open_tab(page, "VRAM advisor")
    model_name = advisor.get_by_label("Model", exact=True).input_value()
    assert model_name == "gemma-3-270m-q4_k_m.gguf"                       # the model that is loaded
    tier = advisor.get_by_label("Hardware-tier preset", exact=True).input_value()
    assert tier                                                           # chosen for this machine
    advisor.get_by_role("button", name="Apply preset to this model").click()
    saved = advisor.get_by_text("Saved in", exact=False).first
    saved.wait_for(timeout=60_000)
    assert "model-settings.yaml" in saved.inner_text() and f"on {tier}" in saved.inner_text()
    command = advisor.get_by_text(f"pocketpack serve --model {model_name}", exact=False).last.inner_text()
    flags = dict(re.findall(r"--([\w-]+) (\S+)", command))                # what the preset chose
    assert flags.get("ctx-size"), command

    model = _open_tab(page, "Model")
    model.get_by_role("button", name="Load", exact=True).click()
    used = model.get_by_text("With its saved settings (Apply preset):", exact=False)
    used.wait_for(timeout=120_000)
    assert f"Loaded {model_name}" in model.inner_text()
    applied = used.inner_text()
    for flag, value in flags.items():
        if flag != "model":
            assert f"{flag.replace('-', '_')}={value}" in applied, (flag, value, applied)
    _shot(model, "preset-applied")
