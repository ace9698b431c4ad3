"""Injection keeps the system message the user had: an empty ``custom_system_message`` means
"the instruction template's default" in TGWUI, so the composer adds to that default instead of
replacing it — in every mode, with every template, in TGWUI's prompt building and in the host."""

from __future__ import annotations

import textwrap

import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from pocketpack.compose import Block, contribute, withdraw
from pocketpack.host import shared as host_shared
from pocketpack.host.chat import chat_turn, default_state
from pocketpack.host.extensions import ExtensionHost
from pocketpack.system_message import template_default
from tests.helpers.scripted_backend import ScriptedBackend

ALPACA_DEFAULT = "Below is an instruction that describes a task. Write a response that appropriately completes the request."
# Templates written here in the shape of TGWUI's instruction templates (a default system line
# when the messages carry none), plus one with no default at all.
ALPACA = (
    "{%- set ns = namespace(found=false) -%}"
    "{%- for message in messages -%}{%- if message['role'] == 'system' -%}{%- set ns.found = true -%}{%- endif -%}{%- endfor -%}"
    "{%- if not ns.found -%}{{- '" + ALPACA_DEFAULT + "' + '\\n\\n' -}}{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' -%}{{- message['content'] + '\\n\\n' -}}"
    "{%- elif message['role'] == 'user' -%}{{- '### Instruction:\\n' + message['content'] + '\\n\\n' -}}"
    "{%- else -%}{{- '### Response:\\n' + message['content'] + '\\n\\n' -}}{%- endif -%}"
    "{%- endfor -%}{%- if add_generation_prompt -%}{{- '### Response:\\n' -}}{%- endif -%}"
)
LLAMA2_DEFAULT = "Answer the questions."
LLAMA2 = (
    "{%- set ns = namespace(found=false) -%}"
    "{%- for message in messages -%}{%- if message['role'] == 'system' -%}{%- set ns.found = true -%}{%- endif -%}{%- endfor -%}"
    "{%- if not ns.found -%}{{- '[INST] <<SYS>>\\n" + LLAMA2_DEFAULT + "\\n<</SYS>>\\n\\n' -}}{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' -%}{{- '[INST] <<SYS>>\\n' + message['content'] + '\\n<</SYS>>\\n\\n' -}}"
    "{%- elif message['role'] == 'user' -%}{{- message['content'] + ' [/INST] ' -}}"
    "{%- else -%}{{- message['content'] + ' </s><s>[INST] ' -}}{%- endif -%}"
    "{%- endfor -%}"
)
CHATML = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)
TEMPLATES = {"alpaca": (ALPACA, ALPACA_DEFAULT), "llama-2": (LLAMA2, LLAMA2_DEFAULT), "chatml": (CHATML, "")}
MEMORY = "3 days ago, you said: \u201cmy dog is called Biscuit.\u201d"


@pytest.fixture(autouse=True)
def no_tokenizer(monkeypatch):
    monkeypatch.setattr(host_shared, "tokenizer", None)


def tgwui_instruct_prompt(state: dict, user: str) -> str:
    """TGWUI's instruct branch of ``generate_chat_prompt``: the custom system message goes in
    as a system message only when it is not blank, so a blank one leaves the template's default."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    messages = []
    if state["custom_system_message"].strip() != "":
        messages.append({"role": "system", "content": state["custom_system_message"]})
    messages.append({"role": "user", "content": user})
    return env.from_string(state["instruction_template_str"]).render(messages=messages, add_generation_prompt=True)


@pytest.mark.parametrize("name", TEMPLATES)
def test_the_default_is_read_from_any_template(name):
    template, default = TEMPLATES[name]
    assert template_default(template) == default


def test_a_template_that_does_not_render_has_no_known_default():
    assert template_default("{{ raise_exception('needs two turns') }}") == ""
    assert template_default("{% for %}") == ""
    assert template_default(None) == ""


@pytest.mark.parametrize("name", ["alpaca", "llama-2"])
def test_instruct_mode_keeps_the_templates_default_system_message(name):
    template, default = TEMPLATES[name]
    state = {"mode": "instruct", "context": "", "custom_system_message": "", "instruction_template_str": template}
    assert default in tgwui_instruct_prompt(state, "What is my dog called?")  # before injection
    contribute(state, Block(name="memory", title="Memories", items=[MEMORY]))
    prompt = tgwui_instruct_prompt(state, "What is my dog called?")
    assert default in prompt and "Biscuit" in prompt
    assert prompt.index(default) < prompt.index("Biscuit")


def test_a_system_message_the_user_wrote_is_kept_and_not_doubled_with_the_default():
    state = {"mode": "instruct", "context": "", "custom_system_message": "Be terse.", "instruction_template_str": ALPACA}
    contribute(state, Block(name="memory", title="Memories", items=[MEMORY]))
    prompt = tgwui_instruct_prompt(state, "hi")
    assert "Be terse." in prompt and "Biscuit" in prompt and ALPACA_DEFAULT not in prompt


def test_when_nothing_is_injected_the_key_is_left_empty_as_the_user_had_it():
    state = {"mode": "instruct", "context": "", "custom_system_message": "", "instruction_template_str": ALPACA}
    contribute(state, Block(name="memory", title="Memories", items=[MEMORY]))
    withdraw(state, "memory")
    assert state["custom_system_message"] == ""
    contribute(state, Block(name="memory", title="Memories", items=[MEMORY]))  # the same turn again
    assert state["custom_system_message"].count(ALPACA_DEFAULT) == 1


@pytest.mark.parametrize("mode", ["chat", "chat-instruct"])
def test_chat_modes_inject_into_the_context_and_leave_the_system_message_alone(mode):
    state = {"mode": mode, "context": "Aria is a navigator.", "custom_system_message": "",
             "instruction_template_str": ALPACA}
    contribute(state, Block(name="memory", title="Memories", items=[MEMORY]))
    assert "Biscuit" in state["context"] and "Aria is a navigator." in state["context"]
    assert state["custom_system_message"] == ""  # chat-instruct's outer prompt keeps the default
    assert ALPACA_DEFAULT in tgwui_instruct_prompt(state, "command")


class TemplatedBackend(ScriptedBackend):
    """A scripted model whose chat template is a Jinja string, rendered as the host renders it."""

    def __init__(self, template: str):
        super().__init__("Biscuit.")
        self.chat_template = template

    def render_chat(self, messages):
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        return env.from_string(self.chat_template).render(messages=messages, add_generation_prompt=True)


INJECTOR = textwrap.dedent("""
    from pocketpack.compose import Block, contribute

    def state_modifier(state):
        contribute(state, Block(name="memory", title="Memories", items=["my dog is called Biscuit."]))
        return state
""")


@pytest.mark.parametrize("mode", ["instruct", "chat-instruct", "chat"])
def test_the_host_keeps_the_models_default_system_message_in_every_mode(tmp_path, mode):
    (tmp_path / "extensions" / "injector").mkdir(parents=True)
    (tmp_path / "extensions" / "injector" / "script.py").write_text(INJECTOR)
    host = ExtensionHost(tmp_path)
    host.load(["injector"])
    backend = TemplatedBackend(ALPACA)
    state = default_state(mode=mode, context="Aria is a navigator." if mode != "instruct" else "")
    list(chat_turn(host, backend, "What is my dog called?", state))
    prompt = backend.prompts[-1]
    assert "Biscuit" in prompt
    if mode == "instruct":
        assert ALPACA_DEFAULT in prompt
    else:
        assert "Aria is a navigator." in prompt
