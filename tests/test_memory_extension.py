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
