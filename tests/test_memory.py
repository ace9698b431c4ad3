"""Memory: storage keyed to chat rows, recall with relative dates, per-character isolation,
manual notes, export/import, and the per-turn hooks on TGWUI-shaped states (web UI and API)."""

from __future__ import annotations

import html
import json
import time

import pytest

from pocketpack import compose
from pocketpack.memory.format import describe, relative_time
from pocketpack.memory.store import MemoryError_, MemoryStore
from pocketpack.memory.turns import MemorySettings, MemoryTurns, chat_key

pytestmark = pytest.mark.slow  # the real embedding model

DAY = 86400.0


@pytest.fixture()
def memory(tmp_path):
    m = MemoryStore(tmp_path / "memory")
    yield m
    m.close()


def ui_state(character="Aria", chat="20260101-10-00-00", rows=(), **extra):
    return {"mode": "chat", "character_menu": character, "name1": "Sam", "name2": character, "unique_id": chat,
            "context": f"{character} is a ship's navigator.", "custom_system_message": "",
            "history": {"internal": [list(r) for r in rows], "visible": [[html.escape(u), html.escape(a)] for u, a in rows],
                        "metadata": {}}, "textbox": "", **extra}


def api_state(rows=(), name2="AI", **extra):
    return {"mode": "instruct", "name1": "You", "name2": name2, "character": None, "context": "",
            "custom_system_message": "You are helpful.",
            "history": {"internal": [list(r) for r in rows], "visible": [[html.escape(u), html.escape(a)] for u, a in rows],
                        "metadata": {}}, **extra}


def turn(turns: MemoryTurns, state: dict, text: str, reply: str) -> dict:
    """One new-message turn as TGWUI runs it: state_modifier, chat_input_modifier, output_modifier."""
    state = turns.on_state(state)
    text, _ = turns.on_chat_input(text, html.escape(text), state)
    turns.on_output(html.escape(reply), state, is_chat=True)
    return state


# -- the store ----------------------------------------------------------------------------
def test_recall_is_per_character_and_best_first(memory):
    memory.add("Aria", "user", "My dog Biscuit is a beagle who hates thunderstorms.", time=time.time() - 3 * DAY)
    memory.add("Aria", "user", "I work night shifts at the harbour.")
    memory.add("Bob", "user", "My dog Rex is a poodle.")
    found = memory.recall("Aria", "tell me about my dog", k=5)
    assert found[0].text.startswith("My dog Biscuit") and found[0].score >= found[-1].score
    assert all("Rex" not in m.text for m in found)
    assert memory.recall("Nobody", "dog") == []
    assert memory.counts() == {"Aria": 2, "Bob": 1}
    everyone = memory.recall("Aria", "poodle", k=5, scope="global")
    assert any("Rex" in m.text for m in everyone)  # only when the user chose the global scope


def test_relative_dates_read_naturally():
    now = 1_750_000_000.0
    assert relative_time(now - 30, now) == "just now"
    assert relative_time(now - 3 * DAY - 60, now) == "3 days ago"
    assert relative_time(now - 1.5 * DAY, now) == "yesterday"
    assert relative_time(now - 21 * DAY, now) == "3 weeks ago"
    from pocketpack.memory.store import Memory

    user = Memory(id=1, text="I love sushi", role="user", character="Aria", time=now - 3 * DAY)
    bot = Memory(id=2, text="I prefer ramen", role="assistant", character="Aria", time=now - 3 * DAY)
    assert describe(user, user_name="Sam", now=now).startswith("3 days ago (")
    assert "Sam said: \u201cI love sushi\u201d" in describe(user, user_name="Sam", now=now)
    assert "the user said" in describe(user, user_name="You", now=now)
    assert "you said: \u201cI prefer ramen\u201d" in describe(bot, now=now)


def test_sync_follows_edits_deletions_and_regenerations(memory):
    rows = [["<|BEGIN-VISIBLE-CHAT|>", "Ahoy! I am Aria."], ["I have a cat named Pixel.", "What a lovely name!"],
            ["I live in Porto.", "Porto is beautiful."]]
    memory.sync_chat("Aria", "c1", rows)
    assert sorted(m.text for m in memory.list("Aria")) == sorted(
        ["I have a cat named Pixel.", "What a lovely name!", "I live in Porto.", "Porto is beautiful."])
    first = {m.text: m for m in memory.list("Aria")}
    memory.pin(first["I live in Porto."].id)

    rows[2] = ["I live in Lisbon now.", "Lisbon is beautiful."]       # edited message, regenerated reply
    report = memory.sync_chat("Aria", "c1", rows)
    assert report["written"] == 2 and memory.counts()["Aria"] == 4
    texts = {m.text: m for m in memory.list("Aria")}
    assert "I live in Porto." not in texts and texts["I live in Lisbon now."].id == first["I live in Porto."].id
    assert texts["I live in Lisbon now."].pinned  # the pin follows the message

    assert memory.sync_chat("Aria", "c1", rows)["written"] == 0      # unchanged: nothing re-stored
    memory.sync_chat("Aria", "c1", rows[:2])                          # last message deleted
    assert "I live in Lisbon now." not in [m.text for m in memory.list("Aria")]
    assert memory.counts()["Aria"] == 2
    memory.sync_chat("Aria", "c2", [["Other chat.", "Yes."]])
    memory.sync_chat("Aria", "c1", [])                                # a chat emptied
    assert [m.chat for m in memory.list("Aria")] == ["c2", "c2"]


def test_manual_notes_always_or_by_keyword(memory):
    memory.add_manual("Aria", "Sam is vegetarian.")
    memory.add_manual("Aria", "The ship is called Starling.", trigger="keyword", keywords=["ship", "vessel"])
    memory.add_manual(None, "Sam's birthday is 4 May.")                 # every character
    notes = lambda msg: sorted(m.text for m in memory.manual_for("Aria", msg))
    assert notes("hello") == ["Sam is vegetarian.", "Sam's birthday is 4 May."]
    assert "The ship is called Starling." in notes("How fast is our SHIP?")
    assert "The ship is called Starling." not in notes("I love shipping containers")  # whole words only
    assert [m.text for m in memory.manual_for("Bob", "ship")] == ["Sam's birthday is 4 May."]
    with pytest.raises(MemoryError_, match="keyword"):
        memory.add_manual("Aria", "x", trigger="keyword")
    assert all(m.kind != "manual" for m in memory.recall("Aria", "vegetarian ship", k=5))


def test_export_import_roundtrip_and_bad_lines(memory, tmp_path):
    memory.add("Aria", "user", "I collect antique maps.", time="2025-03-01T12:00:00", chat="c1")
    memory.add_manual("Aria", "Keep answers short.")
    lines = list(memory.export())
    assert {line["text"] for line in lines} == {"I collect antique maps.", "Keep answers short."}
    assert lines[0]["time"].startswith("2025-03-01T12:00:00")
    path = tmp_path / "out.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    other = MemoryStore(tmp_path / "other")
    assert other.import_jsonl(path) == 2
    assert other.recall("Aria", "old maps", k=1)[0].text == "I collect antique maps."
    assert [m.text for m in other.manual_for("Aria", "hi")] == ["Keep answers short."]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"character": "Aria", "role": "user", "text": "ok"}\n{"character": "Aria", "role": "robot", "text": "x"}\n')
    with pytest.raises(MemoryError_, match="bad.jsonl line 2: role"):
        other.import_jsonl(bad)
    assert other.counts()["Aria"] == 2  # nothing from the bad file was written
    other.close()


def test_forget_a_chat_a_character_or_everything(memory):
    memory.add("Aria", "user", "one", chat="c1")
    memory.add("Aria", "user", "two", chat="c2")
    memory.add("Bob", "user", "three")
    assert memory.forget("Aria", chat="c1") == 1
    assert memory.forget("Bob") == 1 and "Bob" not in memory.counts()
    assert memory.forget(everything=True) == 1 and memory.counts() == {}


# -- the hooks on TGWUI-shaped states -----------------------------------------------------
@pytest.fixture()
def turns(memory):
    return MemoryTurns(memory, MemorySettings(min_cosine=0.2))


def test_web_ui_turns_store_then_recall_in_a_new_chat(turns, memory):
    state = turn(turns, ui_state(chat="chat-1"), "My sister Ines teaches chemistry in Lisbon.", "How interesting!")
    assert "Ines" not in state["context"]  # nothing to recall yet
    stored = memory.list("Aria")
    assert {(m.role, m.chat, m.row) for m in stored} == {("user", "chat-1", 0), ("assistant", "chat-1", 0)}

    state = ui_state(chat="chat-2")
    turns.on_state(state)
    turns.on_chat_input("What does my sister do for a living?", "", state)
    context = state["context"]
    assert context.startswith("Aria is a ship's navigator.")
    assert "Sam said: \u201cMy sister Ines teaches chemistry in Lisbon.\u201d" in context
    assert "just now" in context.lower()
    assert state["custom_system_message"] == ""
    assert turns.last_injection.included and turns.last_injection.character == "Aria"


def test_api_turns_work_without_character_menu_or_unique_id(turns, memory):
    first = api_state()
    turn(turns, first, "Remember that my locker code is 4711.", "Noted: 4711.")
    # the next API request carries the whole conversation
    second = api_state(rows=[["Remember that my locker code is 4711.", "Noted: 4711."]])
    turn(turns, second, "Thanks. Also my bike is green.", "Green bikes are great.")
    chats = {m.chat for m in memory.list("AI")}
    assert len(chats) == 1 and next(iter(chats)).startswith("api-")   # one stable chat id
    assert memory.counts()["AI"] == 4                                  # no duplicate of row 0

    later = api_state(custom_system_message="Be brief.")
    turns.on_state(later)
    turns.on_chat_input("What was my locker code?", "", later)
    assert "4711" in later["custom_system_message"] and later["custom_system_message"].startswith("Be brief.")
    assert later["context"] == ""


def test_one_characters_memories_never_reach_anothers_prompt(turns):
    turn(turns, ui_state("Aria", chat="a1"), "My secret password is swordfish.", "I will keep it safe.")
    turn(turns, api_state(name2="Aria"), "My favourite planet is Saturn.", "Rings!")
    for state in (ui_state("Bob", chat="b1"), api_state(name2="Bob")):
        turns.on_state(state)
        turns.on_chat_input("What is my secret password and favourite planet?", "", state)
        prompt = state["context"] + state["custom_system_message"]
        assert "swordfish" not in prompt and "Saturn" not in prompt
    for state in (ui_state("Aria", chat="a2"), api_state(name2="Aria")):
        turns.on_state(state)
        turns.on_chat_input("What is my secret password and favourite planet?", "", state)
        prompt = state["context"] + state["custom_system_message"]
        assert "swordfish" in prompt and "Saturn" in prompt


def test_regenerate_and_continue_do_not_duplicate(turns, memory):
    rows = []
    state = turn(turns, ui_state(chat="c"), "Name a red fruit.", "Cherry.")
    rows = [["Name a red fruit.", "Cherry."]]
    # regenerate: no chat_input_modifier; the last row is answered again
    state = ui_state(chat="c", rows=rows)
    turns.on_state(state)
    turns.on_output("Strawberry.", state, is_chat=True)
    # continue: the full reply so far arrives at output_modifier
    state = ui_state(chat="c", rows=[["Name a red fruit.", "Strawberry."]])
    turns.on_state(state)
    turns.on_output("Strawberry. Or a raspberry &amp; a cherry.", state, is_chat=True)
    texts = sorted(m.text for m in memory.list("Aria"))
    assert texts == ["Name a red fruit.", "Strawberry. Or a raspberry & a cherry."]


def test_incognito_chats_are_never_stored(turns, memory):
    turn(turns, ui_state(chat="incognito-20260101-10-00-00"), "My bank PIN is 9999.", "I will forget it.")
    assert memory.counts() == {} or memory.counts().get("Aria", 0) == 0


def test_the_current_chats_recent_rows_are_not_recalled_again(turns, memory):
    rows = [["I planted tomatoes today.", "Lovely!"]]
    memory.sync_chat("Aria", "c", rows)
    state = ui_state(chat="c", rows=rows)
    turns.on_state(state)
    turns.on_chat_input("How are my tomatoes doing?", "", state)
    assert "planted tomatoes" not in state["context"]  # already in this chat's history
    elsewhere = ui_state(chat="other")
    turns.on_state(elsewhere)
    turns.on_chat_input("How are my tomatoes doing?", "", elsewhere)
    assert "planted tomatoes" in elsewhere["context"]


def test_memory_and_another_block_both_reach_the_prompt_in_either_order(turns, memory):
    memory.add("Aria", "user", "I am learning the cello.", chat="old")
    rag = compose.Block(name="rag-enhancer", title="Documents", items=["[1] cello.pdf p.2: tune the A string first."],
                        order=20)
    for rag_first in (True, False):
        state = ui_state(chat="new")
        if rag_first:
            compose.contribute(state, rag)
        turns.on_state(state)
        turns.on_chat_input("Any tips for my cello practice?", "", state)
        if not rag_first:
            compose.contribute(state, rag)
        assert "learning the cello" in state["context"] and "cello.pdf" in state["context"]
        assert state["context"].count("[Documents]") == 1


def test_chat_key_of_an_api_conversation_is_stable():
    first = chat_key(api_state(), first_user="Hi & welcome", first_reply=html.unescape("Hello &lt;3"))
    later = chat_key(api_state(rows=[["Hi & welcome", "Hello <3"]]))
    assert first == later and first.startswith("api-")
    assert chat_key(ui_state(chat="x")) == "x"


# -- the tab's actions (gradio-free) ------------------------------------------------------
def test_panel_search_pin_edit_delete_notes_export_import(turns, memory, tmp_path):
    from pocketpack.memory import panel

    memory.add("Aria", "user", "I restore vintage typewriters.", chat="c1")
    memory.add("Bob", "user", "I race pigeons.")
    assert "| Aria | 1 |" in panel.counts_markdown(memory) and "| Bob | 1 |" in panel.counts_markdown(memory)
    rows = panel.search_rows(memory, "Aria", "typewriter hobby")
    assert rows[0][6] == "I restore vintage typewriters." and rows[0][0] > 0
    assert all(r[6] != "I race pigeons." for r in panel.search_rows(memory, "Aria", "pigeons"))
    mid = rows[0][0]
    assert "pin done" in panel.act(memory, "pin", mid)
    assert panel.search_rows(memory, "Aria", "")[0][5] == "yes"
    assert "edit done" in panel.act(memory, "edit", mid, "I restore vintage typewriters and clocks.")
    assert panel.search_rows(memory, "Aria", "clocks")[0][6].endswith("and clocks.")
    assert "Not done" in panel.act(memory, "edit", "abc") and "Not done" in panel.act(memory, "delete", 999999)
    assert "Added note" in panel.add_manual(memory, "", "Sam prefers metric units.", "always", "")
    assert "Not added" in panel.add_manual(memory, "Aria", "x", "keyword", " , ")
    assert panel.manual_rows(memory) == [[panel.manual_rows(memory)[0][0], "(all)", "always", "", "Sam prefers metric units."]]

    path = panel.export_to(memory, tmp_path / "exports", "Aria")
    # Aria's one memory and the note every character sees (which reaches Aria's prompt too)
    assert path.parent == tmp_path / "exports" and len(path.read_text().splitlines()) == 2
    assert "delete done" in panel.act(memory, "delete", mid)
    assert panel.search_rows(memory, "Aria", "") == []
    assert panel.import_from(memory, str(path)) == "Imported 1 new memory (1 already present)."
    assert panel.search_rows(memory, "Aria", "")[0][6].endswith("and clocks.")

    assert panel.injection_rows(None)[0] == []
    state = ui_state(chat="c9")
    turns.on_state(state)
    turns.on_chat_input("Tell me about my typewriters.", "", state)
    rows, info = panel.injection_rows(turns.last_injection)
    assert "Aria" in info and any(r[0] == "yes" and "typewriters" in r[4] for r in rows)
    assert any("Sam prefers metric units." in r[4] for r in rows)  # the always-on note
