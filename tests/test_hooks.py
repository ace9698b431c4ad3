"""The one "never break a chat" guard every extension script's hooks wear (issue 17: "each
``script.py`` only translates TGWUI's hooks and gradio events to [its engine], guarded by one
shared 'never break a chat' wrapper")."""

from __future__ import annotations

import logging

from pocketpack.errors import PocketPackError
from pocketpack.hooks import never_break


class DamagedStore(PocketPackError):
    """A failure the user can act on."""


def test_a_failing_hook_returns_its_input_unchanged(caplog):
    @never_break("probe")
    def state_modifier(state):
        raise RuntimeError("boom")

    @never_break("probe")
    def chat_input_modifier(text, visible_text, state):
        raise RuntimeError("boom")

    @never_break("probe")
    def output_modifier(string, state, is_chat=False):
        raise RuntimeError("boom")

    state = {"mode": "chat"}
    with caplog.at_level(logging.ERROR, logger="pocketpack.probe"):
        assert state_modifier(state) is state
        assert chat_input_modifier("hi &amp;", "hi &", state) == ("hi &amp;", "hi &")
        assert output_modifier("Hello.", state, is_chat=True) == "Hello."
        assert output_modifier(string="Hi.", state=state) == "Hi."
    failures = [r for r in caplog.records if r.name == "pocketpack.probe"]
    assert len(failures) == 4 and all(r.exc_info for r in failures)  # a bug: its traceback, every time
    assert "probe: chat_input_modifier failed; this turn goes on without probe" in caplog.text


def test_a_failure_the_user_can_act_on_is_one_line_once(caplog):
    @never_break("probe2", without="its notes")
    def state_modifier(state):
        raise DamagedStore("the notes store is damaged")

    with caplog.at_level(logging.ERROR, logger="pocketpack.probe2"):
        for _ in range(3):
            assert state_modifier({}) == {}
    said = [r for r in caplog.records if r.name == "pocketpack.probe2"]
    assert len(said) == 1 and not said[0].exc_info
    assert said[0].getMessage() == ("probe2: the notes store is damaged; chats go on without its notes "
                                    "until this is fixed")


def test_a_working_hook_is_untouched():
    @never_break("probe3")
    def input_modifier(string, state, is_chat=False):
        return string.upper()

    assert input_modifier("abc", {}) == "ABC"
    assert input_modifier.__name__ == "input_modifier"  # TGWUI finds hooks by name
