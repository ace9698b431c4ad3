"""The memory extension loaded by the host as TGWUI loads it, end to end: hooks in TGWUI's
order, through the web-UI path and the OpenAI-compatible API path, with another block
contributor in either --extensions order. The model is scripted; the embeddings are real."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pocketpack.host import shared
from pocketpack.host.api import chat_completion
from pocketpack.host.chat import default_state
from pocketpack.host.runtime import Runtime
from tests.helpers.scripted_backend import ScriptedBackend

pytestmark = pytest.mark.slow  # the real embedding model

REPO = Path(__file__).resolve().parents[1]

# a stand-in for rag-enhancer: another extension injecting through the composer
RAG_PROBE = '''
from pocketpack import compose

def state_modifier(state):
    compose.contribute(state, compose.Block(name="rag-enhancer", title="Documents", order=20,
                                            items=["[1] sailing-guide.pdf p.3: reef the mainsail early."]))
    return state
'''


def make_runtime(tmp_path: Path, extensions: list[str], reply: str = "Noted.") -> Runtime:
    user_data = tmp_path / "user_data"
    if "ragprobe" in extensions:
        folder = user_data / "extensions" / "ragprobe"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "script.py").write_text(textwrap.dedent(RAG_PROBE))
    runtime = Runtime(root=REPO, user_data_dir=user_data, extensions=extensions)
    runtime.backend = ScriptedBackend(reply)
    shared.tokenizer = None
    return runtime


def chat(runtime: Runtime, text: str, state: dict, **kwargs) -> dict:
    *_, history = runtime.chat(text, state, **kwargs)
    state["history"] = history
    return history


def ui_state(character: str, chat_id: str) -> dict:
    return default_state(character_menu=character, name2=character, name1="Sam", unique_id=chat_id,
                         context=f"{character} is a sailing instructor.")


def memories(runtime: Runtime):
    return runtime.host.loaded["memory"].turns().memory


def test_ui_path_stores_each_exchange_and_recalls_it_in_another_chat(tmp_path):
    runtime = make_runtime(tmp_path, ["memory"], reply="Then we should sail the Tagus together.")
    state = ui_state("Aria", "chat-1")
    chat(runtime, "I keep my boat, the Gaivota, in Lisbon.", state)
    stored = memories(runtime).list("Aria")
    assert {(m.role, m.chat, m.row) for m in stored} == {("user", "chat-1", 0), ("assistant", "chat-1", 0)}
    assert "Then we should sail the Tagus together." in {m.text for m in stored}

    other = ui_state("Aria", "chat-2")
    chat(runtime, "What is my boat called?", other)
    prompt = runtime.backend.prompts[-1]
    assert "Aria is a sailing instructor." in prompt
    assert "Sam said: \u201cI keep my boat, the Gaivota, in Lisbon.\u201d" in prompt

    # regenerate and continue answer the same row: still recalled, never duplicated
    runtime.backend.reply = "It is the Gaivota."
    chat(runtime, "", other, regenerate=True)
    assert "Gaivota, in Lisbon" in runtime.backend.prompts[-1]
    chat(runtime, "", other, _continue=True)
    assert memories(runtime).counts()["Aria"] == 4
    assert runtime.host.take_failures() == []


def test_api_path_without_character_menu_or_unique_id(tmp_path):
    runtime = make_runtime(tmp_path, ["memory"], reply="I will remember.")
    body = {"character": "Aria", "messages": [{"role": "system", "content": "Answer briefly."},
                                              {"role": "user", "content": "My daughter Lucia turns seven in June."}]}
    chat_completion(runtime, body)
    assert memories(runtime).counts()["Aria"] == 2
    runtime.backend.reply = "Lucia."
    chat_completion(runtime, {"character": "Aria", "messages": [{"role": "user", "content": "What is my daughter's name?"}]})
    assert "My daughter Lucia turns seven in June." in runtime.backend.prompts[-1]   # instruct mode: system message
    assert memories(runtime).counts()["Aria"] == 4


def test_an_api_client_resending_its_history_gets_no_copy_of_it_as_memories(tmp_path):
    """Found in TGWUI's real API server: a client resends the whole conversation, and a changed
    first reply makes it a new chat, so memory must recognise the prompt's rows by their text."""
    runtime = make_runtime(tmp_path, ["memory"], reply="Lovely city.")
    fact = "My sister Lena lives in Porto and works as a marine biologist."
    chat_completion(runtime, {"character": "Aria", "messages": [{"role": "user", "content": fact}]})
    runtime.backend.reply = "She studies dolphins."
    chat_completion(runtime, {"character": "Aria", "messages": [
        {"role": "user", "content": fact}, {"role": "assistant", "content": "Nice!"},
        {"role": "user", "content": "What does my sister do?"}]})
    prompt = runtime.backend.prompts[-1]
    assert prompt.count("Lena lives in Porto") == 1  # the history row, not a memory of it
    assert "Lovely city." in prompt                   # a memory the prompt lacked still comes
    # and in a fresh conversation the fact is recalled as a memory
    chat_completion(runtime, {"character": "Aria", "messages": [{"role": "user", "content": "Where does Lena live?"}]})
    assert "Lena lives in Porto" in runtime.backend.prompts[-1]


def test_one_characters_memories_never_reach_anothers_prompt(tmp_path):
    runtime = make_runtime(tmp_path, ["memory"], reply="Understood.")
    chat(runtime, "My alarm code is 5150.", ui_state("Aria", "a-1"))
    chat_completion(runtime, {"character": "Aria", "messages": [{"role": "user", "content": "I was born in Faro."}]})
    asked = "What is my alarm code and where was I born?"
    chat(runtime, asked, ui_state("Bob", "b-1"))
    chat_completion(runtime, {"messages": [{"role": "user", "content": asked}]})   # the API's default character
    chat_completion(runtime, {"character": "Bob", "messages": [{"role": "user", "content": asked}]})
    for prompt in runtime.backend.prompts[-3:]:
        assert "5150" not in prompt and "Faro" not in prompt
    chat(runtime, asked, ui_state("Aria", "a-2"))
    assert "5150" in runtime.backend.prompts[-1] and "Faro" in runtime.backend.prompts[-1]


@pytest.mark.parametrize("order", [["memory", "ragprobe"], ["ragprobe", "memory"]])
def test_memory_and_another_contributor_both_reach_the_prompt(tmp_path, order):
    runtime = make_runtime(tmp_path, order, reply="Good plan.")
    chat(runtime, "I get seasick on long crossings.", ui_state("Aria", "c-1"))
    chat(runtime, "Any advice for my long crossing next week?", ui_state("Aria", "c-2"))
    prompt = runtime.backend.prompts[-1]
    assert "I get seasick on long crossings." in prompt
    assert "sailing-guide.pdf" in prompt
    assert prompt.count("[Documents]") == 1 and prompt.count("[Memories from earlier conversations") == 1
    assert runtime.host.take_failures() == []


def test_incognito_chats_leave_nothing_behind(tmp_path):
    runtime = make_runtime(tmp_path, ["memory"])
    chat(runtime, "My passport number is X1234567.", ui_state("Aria", "incognito-20260101-10-00-00"))
    assert memories(runtime).counts().get("Aria", 0) == 0


def test_the_tab_builds_with_the_installed_gradio(tmp_path):
    import gradio as gr

    runtime = make_runtime(tmp_path, ["memory"])
    with gr.Blocks():
        runtime.host.build_ui("memory", runtime.host.loaded["memory"])
    assert runtime.host.take_failures() == []


# -- deleted chats: memories follow the history file ---------------------------------------
def save_history(runtime: Runtime, state: dict) -> Path:
    """Write the chat's history file where TGWUI's ``save_history`` puts it (this host saves none)."""
    import json

    logs = shared.user_data_dir / "logs"
    path = (logs / "instruct" / f"{state['unique_id']}.json" if state["mode"] == "instruct"
            else logs / "chat" / state["character_menu"] / f"{state['unique_id']}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state["history"]))
    return path


def chats_of(runtime: Runtime, character: str) -> set:
    return {m.chat for m in memories(runtime).list(character)}


def test_memories_of_a_chat_deleted_in_tgwui_are_forgotten(tmp_path):
    from pocketpack.memory import panel

    runtime = make_runtime(tmp_path, ["memory"], reply="Noted.")
    script = runtime.host.loaded["memory"]
    files = {}
    for character, chat_id, text in (("Aria", "20260101-10-00-00", "My cat is called Miso."),
                                     ("Aria", "20260102-10-00-00", "I live in Porto."),
                                     ("Bob", "20260101-10-00-00", "I race pigeons.")):
        state = ui_state(character, chat_id)
        files[(character, chat_id)] = save_history(runtime, state)       # TGWUI's start_new_chat saves it
        chat(runtime, text, state)
        save_history(runtime, state)
    unsaved = ui_state("Aria", "20260103-10-00-00")                       # never saved (as --multi-user)
    chat(runtime, "I play the cello.", unsaved)
    instruct = ui_state("Aria", "20260104-10-00-00")
    instruct["mode"] = "instruct"
    files[("Aria", "instruct")] = save_history(runtime, instruct)       # logs/instruct/<id>.json
    chat(runtime, "I am allergic to peanuts.", instruct)
    chat_completion(runtime, {"character": "Aria", "messages": [{"role": "user", "content": "I was born in Faro."}]})
    api_chats = {c for c in chats_of(runtime, "Aria") if c.startswith("api-")}
    assert len(api_chats) == 1 and len(chats_of(runtime, "Aria")) == 5 and memories(runtime).counts()["Bob"] == 2

    # the user deletes the Miso chat in TGWUI (delete_history removes its file); TGWUI then shows
    # another chat, and the next turn there forgets the deleted chat's memories
    files[("Aria", "20260101-10-00-00")].unlink()
    chat(runtime, "What is my cat called, and which instrument do I play?", ui_state("Aria", "20260102-10-00-00"))
    assert chats_of(runtime, "Aria") == {"20260102-10-00-00", "20260103-10-00-00", "20260104-10-00-00"} | api_chats
    assert "Miso" not in runtime.backend.prompts[-1] and "cello" in runtime.backend.prompts[-1]
    assert chats_of(runtime, "Bob") == {"20260101-10-00-00"}             # same chat id, another character
    assert runtime.host.take_failures() == []

    # the tab's button finds a chat deleted since, here one in instruct mode
    files[("Aria", "instruct")].unlink()
    assert panel.forget_deleted_chats(script.turns().chat_files) == (
        "Forgot 2 memories of 1 deleted chat: Aria/20260104-10-00-00.")
    assert panel.forget_deleted_chats(script.turns().chat_files).startswith("No deleted chats found")

    # the record survives a restart: a chat deleted while TGWUI was closed is forgotten on the first turn
    script.reset()
    files[("Bob", "20260101-10-00-00")].unlink()
    chat(runtime, "Hello again.", ui_state("Aria", "20260102-10-00-00"))
    assert memories(runtime).counts().get("Bob", 0) == 0
    # never pruned: the API chat, the chat that never had a file, the current one
    assert chats_of(runtime, "Aria") == {"20260102-10-00-00", "20260103-10-00-00"} | api_chats
    assert runtime.host.take_failures() == []


def test_the_current_chat_and_multi_user_hosts_are_never_pruned(tmp_path):
    runtime = make_runtime(tmp_path, ["memory"], reply="Noted.")
    state = ui_state("Aria", "20260101-10-00-00")
    path = save_history(runtime, state)
    chat(runtime, "My cat is called Miso.", state)
    path.unlink()                      # gone under the current chat: kept while the user is in it
    chat(runtime, "And she is grey.", state)
    assert memories(runtime).counts()["Aria"] == 4

    from pocketpack.turnstate import REQUEST_USER

    script = runtime.host.loaded["memory"]
    script.reset()
    shared.args.multi_user = True      # TGWUI saves no chat files: nothing is ever pruned
    token = REQUEST_USER.set("sam")    # a signed-in user (memory is off for nobody under --multi-user)
    try:
        first = ui_state("Aria", "20260102-10-00-00")
        gone = save_history(runtime, first)
        chat(runtime, "Hi.", first)
        gone.unlink()
        other = ui_state("Aria", "20260103-10-00-00")
        save_history(runtime, other)
        chat(runtime, "Hello again.", other)
        assert script.turns("sam").memory.counts()["Aria"] == 4
    finally:
        REQUEST_USER.reset(token)
        shared.args.multi_user = False


def test_a_chat_id_never_makes_memory_look_outside_the_logs_folder(tmp_path):
    runtime = make_runtime(tmp_path, ["memory"], reply="Noted.")
    outside = tmp_path / "user_data" / "escape.json"  # chat/Aria/../../../escape.json from the logs
    (tmp_path / "user_data" / "logs" / "chat" / "Aria").mkdir(parents=True)  # the OS walks through it
    outside.write_text("{}")
    chat(runtime, "My cat is called Miso.", ui_state("Aria", "../../../escape"))
    assert runtime.host.loaded["memory"].turns().chat_files.known() == {}
    outside.unlink()
    chat(runtime, "Hello.", ui_state("Aria", "20260101-10-00-00"))
    assert memories(runtime).counts()["Aria"] == 4   # nothing forgotten on the strength of that file


# -- consolidation from the tab, on the host's loaded model ---------------------------------
def test_the_tabs_consolidation_uses_the_hosts_loaded_model(tmp_path):
    import time

    from pocketpack.memory import panel

    runtime = make_runtime(tmp_path, ["memory"])
    script = runtime.host.loaded["memory"]
    memory = memories(runtime)
    old = time.time() - 30 * 86400
    memory.add_many([{"character": "Aria", "role": "user", "text": f"I sailed to island {i}.", "chat": "c1", "row": i,
                      "time": old + i} for i in range(3)])
    shared.backend = None
    assert "No model is loaded" in panel.consolidate_character(memory, "Aria", 7, script.turns().generate)
    shared.backend = runtime.backend = ScriptedBackend("The user sails to islands.\n- The user owns a boat.\n\nmore")
    calls = []
    message = panel.consolidate_character(memory, "Aria", 7, script.turns().generate,
                                          progress=lambda d, t: calls.append((d, t)), batch=2)
    shared.backend = None
    assert message.startswith("Consolidated 3 memories of **Aria** into 2 pinned facts in 2 batches")
    assert calls == [(0, 3), (2, 3), (3, 3)]
    assert "User: I sailed to island 0." in runtime.backend.prompts[0]
    assert {m.text for m in memory.pinned("Aria")} == {"The user sails to islands.", "The user owns a boat."}
    # consolidation is never automatic: chat turns do not run it
    memory.add("Aria", "user", "I sailed to island 9.", time=old, chat="c1", row=9)
    runtime.backend.reply = "Nice."
    chat(runtime, "Hello.", ui_state("Aria", "c2"))
    assert len(memory.pinned("Aria")) == 2 and len(runtime.backend.prompts) == 3


def test_the_tabs_consolidation_with_the_embedded_model(tmp_path, default_model):
    import time

    from pocketpack.host.flags import LoadSettings
    from pocketpack.memory import panel

    runtime = make_runtime(tmp_path, ["memory"])
    runtime.load_model(default_model, LoadSettings(threads=1, ctx_size=2048))
    try:
        memory = memories(runtime)
        old = time.time() - 30 * 86400
        memory.add_many([{"character": "Aria", "role": role, "text": text, "chat": "c1", "row": 0, "time": old}
                         for role, text in (("user", "I just adopted a beagle called Pepper."),
                                            ("assistant", "Congratulations! How is Pepper settling in?"))])
        calls = []
        message = panel.consolidate_character(memory, "Aria", 7, runtime.host.loaded["memory"]._generate,
                                              progress=lambda d, t: calls.append((d, t)))
        assert message.startswith("Consolidated 2 memories of **Aria** into") and calls == [(0, 2), (2, 2)]
        assert all(m.consolidated for m in memory.list("Aria", kind="message"))
        assert all(0 < len(m.text) <= 200 and m.pinned for m in memory.list("Aria", kind="manual"))
    finally:
        runtime.unload_model()
