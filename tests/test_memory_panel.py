"""The Memory tab as a user meets it: what it shows is current, a pin/edit/delete shows at once,
a clicked row fills the edit boxes, a delete can be undone, and an export says what it holds
(a character's export carries the notes every character sees, as the CLI's full export does)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from pocketpack.memory import panel
from pocketpack.memory.store import MemoryStore

pytestmark = pytest.mark.slow  # the real embedding model


@pytest.fixture()
def memory(tmp_path):
    m = MemoryStore(tmp_path / "memory")
    m.add("Aria", "user", "My dog is called Biscuit.", chat="c1")
    m.add("Aria", "user", "I restore vintage typewriters.", chat="c1")
    m.add("Bob", "user", "I race pigeons.", chat="c2")
    m.add_manual(None, "Sam prefers metric units.")
    m.add_manual("Aria", "Aria calls Sam 'captain'.")
    yield m
    m.close()


def test_a_delete_shows_at_once_and_can_be_undone(memory):
    rows = panel.search_rows(memory, "Aria", "")
    dog = next(r for r in rows if r[6] == "My dog is called Biscuit.")
    status, after, removed = panel.act_and_show(memory, "delete", dog[0], "", "Aria", "")
    assert "Deleted memory" in status and "Biscuit" in status and "Undo delete" in status
    assert all(r[6] != "My dog is called Biscuit." for r in after)  # the table is fresh
    status, restored, left = panel.undo_delete(memory, removed, "Aria", "")
    assert "Restored" in status and left is None
    back = next(r for r in restored if r[6] == "My dog is called Biscuit.")
    assert back[4] == "c1"  # its chat came back with it
    assert panel.undo_delete(memory, None, "Aria", "")[0] == "Nothing to undo."


def test_pin_and_edit_show_in_the_returned_table(memory):
    mid = next(r[0] for r in panel.search_rows(memory, "Aria", "") if "typewriters" in r[6])
    _, rows, removed = panel.act_and_show(memory, "pin", mid, "", "Aria", "")
    assert removed is None and next(r for r in rows if r[0] == mid)[5] == "yes"
    _, rows, _ = panel.act_and_show(memory, "edit", mid, "I restore typewriters and clocks.", "Aria", "")
    assert next(r for r in rows if r[0] == mid)[6] == "I restore typewriters and clocks."
    status, rows, removed = panel.act_and_show(memory, "delete", "not a number", "", "Aria", "")
    assert "Not done" in status and removed is None and len(rows) == 3


def test_a_clicked_row_fills_the_id_and_text_boxes(memory):
    rows = panel.search_rows(memory, "Aria", "")
    frame = pd.DataFrame(rows, columns=panel.SEARCH_HEADERS)  # what gradio hands the select event
    assert panel.selected_row(frame, 1) == (rows[1][0], rows[1][6])
    assert panel.selected_row(frame, 99) == (None, "")


def test_a_characters_export_holds_the_notes_everyone_sees_and_says_so(memory, tmp_path):
    path, line = panel.export_with_summary(memory, tmp_path / "exports", "Aria")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    texts = {r["text"] for r in records}
    assert {"My dog is called Biscuit.", "Aria calls Sam 'captain'.", "Sam prefers metric units."} <= texts
    assert "I race pigeons." not in texts
    assert "of **Aria** (with the notes for every character)" in line and "2 notes" in line
    path, line = panel.export_with_summary(memory, tmp_path / "exports", None)
    everything = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(everything) == 5 and "of every character" in line
