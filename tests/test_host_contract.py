"""The TGWUI extension contract, behaviour by behaviour.

Each test names the TGWUI function (modules/extensions.py, modules/chat.py,
modules/text_generation.py at 1dcde41) whose behaviour it pins down, so that an extension
that passes here behaves the same inside text-generation-webui.
"""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest

from pocketpack.host.chat import api_chat_state, chat_turn, complete, completion_state, default_state
from pocketpack.host.extensions import ExtensionHost, ExtensionImportError, UnknownExtensionError
from tests.helpers.scripted_backend import ScriptedBackend

PROBE = '''
CALLS = []
params = {"display_name": "Probe", "is_tab": True, "greeting": "default", "seen_in_setup": None}

def setup():
    params["seen_in_setup"] = params["greeting"]
    CALLS.append("setup")

def history_modifier(history):
    CALLS.append("history_modifier")
    return history

def state_modifier(state):
    CALLS.append("state_modifier")
    return state

def chat_input_modifier(text, visible_text, state):
    CALLS.append("chat_input_modifier")
    return text, visible_text

def input_modifier(string, state, is_chat=False):
    CALLS.append(f"input_modifier(is_chat={is_chat})")
    return string

def bot_prefix_modifier(string, state):
    CALLS.append("bot_prefix_modifier")
    return string

def tokenizer_modifier(state, prompt, input_ids, input_embeds):
    CALLS.append("tokenizer_modifier")
    return prompt, input_ids, input_embeds

def logits_processor_modifier(processor_list, input_ids):
    CALLS.append("logits_processor_modifier")
    processor_list.append("probe-processor")

def output_modifier(string, state, is_chat=False):
    CALLS.append(f"output_modifier(is_chat={is_chat})")
    return string

def ui():
    CALLS.append("ui")
'''


def write_extension(root: Path, name: str, source: str, user: bool = False) -> Path:
    folder = (root / "user_data" / "extensions" / name) if user else (root / "extensions" / name)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "script.py").write_text(textwrap.dedent(source))
    return folder


@pytest.fixture
def root(tmp_path):
    (tmp_path / "extensions").mkdir()
    return tmp_path


def load(root: Path, names: list[str], settings: dict | None = None) -> ExtensionHost:
    host = ExtensionHost(root, settings=settings)
    host.load(names)
    return host


def calls(host: ExtensionHost, name: str = "probe") -> list[str]:
    return host.loaded[name].CALLS


# -- loading: modules/utils.get_available_extensions, modules/extensions.load_extensions ---------

def test_available_lists_user_extensions_first_and_they_shadow_system_ones(root):
    """get_available_extensions: user_data/extensions first, then system ones not shadowed."""
    write_extension(root, "zeta", "X = 'system'")
    write_extension(root, "alpha", "X = 'system'")
    write_extension(root, "zeta", "X = 'user'", user=True)
    host = ExtensionHost(root)
    assert host.available() == ["zeta", "alpha"]
    host.load(["zeta"])
    assert host.loaded["zeta"].X == "user"  # load_extensions prefers the user copy


def test_unknown_extension_names_the_available_ones(root):
    write_extension(root, "probe", PROBE)
    with pytest.raises(UnknownExtensionError) as err:
        load(root, ["probe", "nope"])
    assert "'nope'" in str(err.value) and "available: probe" in str(err.value)


def test_settings_override_params_before_setup_and_setup_runs_once(root):
    """apply_settings: settings['NAME-key'] replaces params[key] before setup(); setup once."""
    write_extension(root, "probe", PROBE)
    host = load(root, ["probe"], settings={"probe-greeting": "from settings.yaml"})
    module = host.loaded["probe"]
    assert module.params["seen_in_setup"] == "from settings.yaml"
    assert host.default_settings["probe-greeting"] == "default"
    host.load(["probe"])
    assert calls(host).count("setup") == 1


def test_system_extensions_are_packages_user_extensions_are_not(root, caplog):
    """load_extensions: import_module('extensions.NAME.script') vs spec_from_file_location."""
    for name, user in (("sysrel", False), ("userrel", True)):
        folder = write_extension(root, name, "from .helper import VALUE\n", user=user)
        (folder / "helper.py").write_text("VALUE = 42\n")
    with caplog.at_level(logging.ERROR):
        host = load(root, ["sysrel", "userrel"])
    assert host.loaded["sysrel"].VALUE == 42  # a hyphen-free package: relative import works
    assert "userrel" not in host.loaded and "userrel" in host.load_failures  # logged and skipped
    assert "userrel" in caplog.text


def test_hyphenated_system_extension_loads(root):
    write_extension(root, "rag-like", "OK = True\n")
    assert load(root, ["rag-like"]).loaded["rag-like"].OK


def test_missing_requirement_is_a_clear_error(root):
    """load_extensions re-raises ModuleNotFoundError (TGWUI aborts with a pip hint)."""
    write_extension(root, "needy", "import package_that_is_not_installed_anywhere\n")
    with pytest.raises(ExtensionImportError, match="pip install -r extensions/needy/requirements.txt"):
        load(root, ["needy"])


# -- a chat turn: modules/chat.chatbot_wrapper ----------------------------------------------------

def test_chat_turn_calls_hooks_in_tgwui_order(root):
    write_extension(root, "probe", PROBE)
    host = load(root, ["probe"])
    backend = ScriptedBackend()
    calls(host).clear()
    *_, history = chat_turn(host, backend, "Hi!", default_state())
    assert calls(host) == [
        "history_modifier", "state_modifier", "chat_input_modifier", "input_modifier(is_chat=True)",
        "bot_prefix_modifier", "tokenizer_modifier", "logits_processor_modifier",
        "output_modifier(is_chat=True)",
    ]
    assert history["internal"][-1][:2] == ["Hi!", "Hello there, friend."]
    assert backend.hook_calls == ["tokenizer", "logits:1"]  # the processor was appended in place


def test_instruct_mode_has_no_bot_prefix(root):
    """generate_chat_prompt adds bot_prefix only in chat and chat-instruct modes."""
    write_extension(root, "probe", PROBE)
    host = load(root, ["probe"])
    list(chat_turn(host, ScriptedBackend(), "Hi!", default_state(mode="instruct")))
    assert "bot_prefix_modifier" not in calls(host)


def test_regenerate_and_continue_skip_input_hooks(root):
    """chatbot_wrapper applies chat_input/input only to new messages."""
    write_extension(root, "probe", PROBE)
    host = load(root, ["probe"])
    backend = ScriptedBackend()
    *_, history = chat_turn(host, backend, "Hi!", default_state())
    for kwargs in ({"regenerate": True}, {"_continue": True}):
        calls(host).clear()
        *_, history = chat_turn(host, backend, "", default_state(history=history), **kwargs)
        assert "chat_input_modifier" not in calls(host)
        assert not any(c.startswith("input_modifier") for c in calls(host))
        assert "output_modifier(is_chat=True)" in calls(host)
    assert len(history["internal"]) == 1
    assert history["internal"][0][1].startswith("Hello there, friend.Hello")  # continued


def test_string_hooks_get_one_or_two_arguments_and_is_chat_only_when_declared(root):
    """_apply_string_extensions counts the non-is_chat parameters."""
    write_extension(root, "one", """
        SEEN = []
        def input_modifier(string):
            SEEN.append(string)
            return string + " [one]"
    """)
    write_extension(root, "two", """
        SEEN = []
        def input_modifier(string, state):
            SEEN.append(sorted(state)[:1])
            return string + " [two]"
    """)
    host = load(root, ["one", "two"])
    *_, history = chat_turn(host, ScriptedBackend(), "Hi", default_state())
    assert host.loaded["one"].SEEN == ["Hi"]
    assert host.loaded["two"].SEEN and isinstance(host.loaded["two"].SEEN[0], list)
    assert history["internal"][-1][0] == "Hi [one] [two]"  # applied in --extensions order
    assert history["visible"][-1][0] == "Hi"  # input_modifier changes only the internal text


def test_custom_generate_chat_prompt_first_wins(root):
    """_apply_custom_generate_chat_prompt: only the first extension that defines it runs."""
    for name in ("first", "second"):
        write_extension(root, name, f"""
            CALLED = []
            def custom_generate_chat_prompt(user_input, state, **kwargs):
                CALLED.append(sorted(kwargs))
                return "PROMPT-{name}"
        """)
    host = load(root, ["first", "second"])
    backend = ScriptedBackend()
    list(chat_turn(host, backend, "Hi", default_state()))
    assert host.loaded["first"].CALLED == [["_continue", "history"]]
    assert host.loaded["second"].CALLED == []
    assert backend.prompts == ["PROMPT-first"]


def test_custom_generate_reply_replaces_generation(root):
    """_apply_custom_generate_reply: the first one's generator produces the reply."""
    write_extension(root, "gen", """
        def custom_generate_reply(question, original_question, state, stopping_strings=None, is_chat=False):
            for text in ("A", "AB", "ABC"):
                yield text
    """)
    host = load(root, ["gen"])
    *_, history = chat_turn(host, None, "Hi", default_state())
    assert history["internal"][-1][1] == "ABC"


def test_rows_longer_than_pairs_are_kept(root):
    """TGWUI HEAD rows hold [user, assistant, tool_msg, meta]; never assume pairs."""
    write_extension(root, "probe", PROBE)
    host = load(root, ["probe"])
    history = {"internal": [["old question", "old answer", "", {"k": 1}]],
               "visible": [["old question", "old answer", "", {"k": 1}]],
               "metadata": {"user_0": {"timestamp": "x"}}, "extra_key": True}
    backend = ScriptedBackend()
    *_, out = chat_turn(host, backend, "new", default_state(history=history))
    assert out["internal"][0] == ["old question", "old answer", "", {"k": 1}]
    assert out["extra_key"] is True and out["metadata"]["user_0"] == {"timestamp": "x"}
    assert "old answer" in backend.prompts[0]


def test_output_modifier_changes_visible_only(root):
    """chatbot_wrapper runs output_modifier on output['visible'][-1][1]; internal stays raw."""
    write_extension(root, "shout", """
        def output_modifier(string, state, is_chat=False):
            return string.upper() if is_chat else string
    """)
    host = load(root, ["shout"])
    *_, history = chat_turn(host, ScriptedBackend("a <b> c"), "Hi", default_state())
    assert history["internal"][-1][1] == "a <b> c"
    assert history["visible"][-1][1] == "A &LT;B&GT; C"  # escaped first, then modified


def test_failing_hook_is_logged_with_its_name_and_the_turn_completes(root, caplog):
    write_extension(root, "broken", """
        def state_modifier(state):
            raise RuntimeError("boom")
        def output_modifier(string, state):
            raise KeyError("gone")
    """)
    write_extension(root, "probe", PROBE)
    host = load(root, ["broken", "probe"])
    earlier = {"internal": [["a", "b"]], "visible": [["a", "b"]], "metadata": {}}
    with caplog.at_level(logging.ERROR):
        *_, history = chat_turn(host, ScriptedBackend(), "Hi", default_state(history=earlier))
    assert history["internal"] == [["a", "b"], ["Hi", "Hello there, friend."]]
    notices = [f.notice() for f in host.take_failures()]
    assert notices == ["extension 'broken' failed in state_modifier: RuntimeError: boom",
                       "extension 'broken' failed in output_modifier: KeyError: 'gone'"]
    assert "extension 'broken' failed in state_modifier" in caplog.text
    assert "output_modifier(is_chat=True)" in calls(host)  # later extensions still ran


# -- plain completion: modules/text_generation._generate_reply ------------------------------------

def test_completion_calls_hooks_in_tgwui_order(root):
    write_extension(root, "probe", PROBE)
    host = load(root, ["probe"])
    calls(host).clear()
    replies = list(complete(host, ScriptedBackend("one two"), "Once upon a time", completion_state()))
    assert calls(host) == ["state_modifier", "input_modifier(is_chat=False)", "tokenizer_modifier",
                           "logits_processor_modifier", "output_modifier(is_chat=False)"]
    assert replies[-1] == "one two"


def test_stopping_strings_cut_the_reply(root):
    host = load(root, [])
    replies = list(complete(host, ScriptedBackend("alpha beta STOP gamma"), "x",
                            completion_state(custom_stopping_strings='"STOP"')))
    assert replies[-1] == "alpha beta "


# -- the OpenAI-compatible API's state (modules/api/completions.py) -------------------------------

def test_api_state_has_no_character_menu_or_unique_id_and_uses_system_message(root):
    write_extension(root, "probe", PROBE)
    host = load(root, ["probe"])
    state = api_chat_state([{"role": "system", "content": "Be brief."},
                            {"role": "user", "content": "Hi"},
                            {"role": "assistant", "content": "Hello"},
                            {"role": "user", "content": "How are you?"}])
    assert "character_menu" not in state and "unique_id" not in state and state["mode"] == "instruct"
    backend = ScriptedBackend()
    *_, history = chat_turn(host, backend, state["user_input"], state)
    assert backend.prompts[0].startswith("<system>Be brief.</system><user>Hi</user><assistant>Hello</assistant>")
    assert "bot_prefix_modifier" not in calls(host)
    assert history["internal"][-1][:2] == ["How are you?", "Hello there, friend."]


# -- UI placement: create_extensions_tabs / create_extensions_block ------------------------------

def test_is_tab_extensions_get_tabs_others_the_block(root):
    write_extension(root, "probe", PROBE)
    write_extension(root, "blocky", "def ui():\n    pass\n")
    host = load(root, ["probe", "blocky"])
    assert [n for n, _ in host.tab_extensions()] == ["Probe"]  # params['display_name']
    assert [n for n, _ in host.block_extensions()] == ["blocky"]
    list(chat_turn(host, ScriptedBackend(), "Hi", default_state()))
    assert "ui" not in calls(host)  # API-only: ui() is never called by a turn


# -- prompt shape: modules/chat.generate_chat_prompt ----------------------------------------------

def test_chat_mode_is_a_name_transcript_and_instruct_mode_uses_the_model_template(root):
    host = load(root, [])
    history = {"internal": [["Hi", "Hello!"]], "visible": [["Hi", "Hello!"]], "metadata": {}}
    backend = ScriptedBackend()
    list(chat_turn(host, backend, "Tea?", default_state(history=history, context="A cafe.", name1="Ann",
                                                         name2="Bob")))
    assert backend.prompts[-1] == "A cafe.\n\nAnn: Hi\nBob: Hello!\nAnn: Tea?\nBob:"
    list(chat_turn(host, backend, "Tea?", default_state(history=history, mode="instruct",
                                                         custom_system_message="Be kind.")))
    assert backend.prompts[-1] == ("<system>Be kind.</system><user>Hi</user><assistant>Hello!</assistant>"
                                   "<user>Tea?</user><assistant>")
