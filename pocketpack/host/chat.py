"""A chat turn and a plain completion, with hooks where TGWUI calls them.

``chat_turn`` mirrors ``modules.chat.chatbot_wrapper`` and ``complete`` mirrors
``modules.text_generation._generate_reply`` (TGWUI 1dcde41): the same hook order, the same
arguments, the same history shape (``{internal, visible, metadata}``, rows that may hold
more than two entries). Prompt text comes from the backend's own chat template, since the
host has no instruction-template files of its own.
"""

from __future__ import annotations

import copy
import html
import re
import sys
import time
from datetime import datetime
from typing import Iterator

from pocketpack.host import shared
from pocketpack.host.backends.base import Backend, GenerationParams
from pocketpack.host.extensions import ExtensionHost
from pocketpack.turnstate import system_key

CHAT_MODES = ("chat", "chat-instruct")


def default_state(**overrides) -> dict:
    """A chat state shaped like TGWUI's UI state (``ui.gather_interface_values``)."""
    state = {
        "mode": "chat",
        "name1": "You",
        "name2": "Assistant",
        "user_bio": "",
        "context": "The following is a conversation with a helpful, friendly AI assistant.",
        "greeting": "",
        "custom_system_message": "",
        "character_menu": "Assistant",
        "unique_id": datetime.now().strftime("%Y%m%d-%H-%M-%S"),
        "history": new_history(),
        "textbox": "",
        "stream": True,
        "max_new_tokens": 200,
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": 40,
        "repetition_penalty": 1.1,
        "seed": -1,
        "truncation_length": 2048,
        "custom_stopping_strings": "",
        "add_bos_token": True,
    }
    state.update(overrides)
    return state


def api_chat_state(messages: list[dict], **overrides) -> dict:
    """The state TGWUI's OpenAI-compatible API builds for ``/v1/chat/completions``.

    Default mode ``instruct``; system messages become ``custom_system_message``; earlier
    turns become the history; and, as there, no ``character_menu``, ``unique_id`` or ``textbox``.
    """
    system = "\n".join(m["content"] for m in messages if m.get("role") == "system")
    turns = [m for m in messages if m.get("role") in ("user", "assistant")]
    if not turns or turns[-1]["role"] != "user":
        raise ValueError("the last message must be a user message")
    history = new_history()
    pending_user = None
    for message in turns[:-1]:
        if message["role"] == "user":
            if pending_user is not None:
                history["internal"].append([pending_user, ""])
            pending_user = message["content"]
        else:
            history["internal"].append([pending_user or "", message["content"]])
            pending_user = None
    if pending_user is not None:
        history["internal"].append([pending_user, ""])
    history["visible"] = [[html.escape(u), html.escape(a)] for u, a, *_ in history["internal"]]
    state = default_state(mode="instruct", custom_system_message=system, history=history, character=None,
                          context="", stream=False)
    for key in ("character_menu", "unique_id", "textbox"):
        state.pop(key)
    state["user_input"] = turns[-1]["content"]
    state.update(overrides)
    return state


def completion_state(**overrides) -> dict:
    """The state TGWUI's API builds for ``/v1/completions``: no mode, names, context or history."""
    state = default_state(**overrides)
    for key in ("mode", "name1", "name2", "context", "greeting", "history", "character_menu",
                "unique_id", "textbox", "user_bio", "custom_system_message"):
        if key not in overrides:
            state.pop(key, None)
    return state


def new_history() -> dict:
    return {"internal": [], "visible": [], "metadata": {}}


def _stamp(metadata: dict, role: str, row: int) -> None:
    metadata.setdefault(f"{role}_{row}", {})["timestamp"] = time.strftime("%Y-%m-%d %H:%M:%S")


def _set_row(rows: list, index: int, user: str, reply: str) -> None:
    """Write a row's first two entries and keep whatever else the row carries."""
    row = list(rows[index])
    row[0:2] = [user, reply]
    rows[index] = row


def stopping_strings(state: dict) -> list[str]:
    """Chat modes stop where the model starts speaking for either party (``get_stopping_strings``)."""
    if state.get("mode") in CHAT_MODES:
        return [f"\n{state['name1']}:", f"\n{state['name2']}:"]
    return []


def _custom_stopping_strings(state: dict) -> list[str]:
    value = state.get("custom_stopping_strings") or []
    if isinstance(value, str):
        value = re.findall(r'"((?:[^"\\]|\\.)*)"', value)
    return [v.encode().decode("unicode_escape") if isinstance(v, str) else v for v in value]


def _system_text(state: dict) -> str:
    """The prompt's system part, read from the key the composer writes to (``system_key``)."""
    key = system_key(state)
    parts = [state.get(key, "")] + ([state.get("user_bio", "")] if key == "context" else [])
    return "\n\n".join(p.strip() for p in parts if p and p.strip())


def plain_chat_prompt(messages: list[dict]) -> str:
    """A template-free rendering, for when no model (hence no template) is loaded."""
    lines = [m["content"] if m["role"] == "system" else f"{m['role'].capitalize()}: {m['content']}"
             for m in messages]
    return "\n".join(lines) + "\nAssistant:"


def transcript_prompt(messages: list[dict], name1: str, name2: str) -> str:
    """TGWUI's ``chat`` mode: the default ``chat_template_str`` writes the conversation as a
    transcript — the context, a blank line, then ``Name: message`` lines — and ends with
    ``name2:`` for the model to go on. Any model, base or instruction-tuned, can continue it."""
    parts = []
    for message in messages:
        if message["role"] == "system":
            parts.append(message["content"] + "\n\n")
        else:
            speaker = name1 if message["role"] == "user" else name2
            parts.append(f"{speaker}: {message['content']}\n")
    return "".join(parts) + f"{name2}:"


def generate_chat_prompt(backend: Backend | None, user_input: str, state: dict, **kwargs) -> str:
    """The prompt for a chat turn, as TGWUI's ``generate_chat_prompt`` builds it.

    ``chat`` mode renders a ``Name: message`` transcript; ``instruct`` and ``chat-instruct``
    render role messages with the model's own template (the system part is
    ``custom_system_message`` in instruct mode, the character's context otherwise). Oldest
    rows are dropped until the prompt leaves room for ``max_new_tokens`` within
    ``truncation_length``.
    """
    _continue = kwargs.get("_continue", False)
    history = kwargs.get("history", state.get("history", new_history()))["internal"]
    system = _system_text(state)
    rows = [list(r) for r in history]
    partial_reply = ""
    if _continue and rows:
        user_input, partial_reply = rows[-1][0], rows[-1][1]
        rows = rows[:-1]

    def render(kept: list) -> str:
        messages = [{"role": "system", "content": system}] if system else []
        for row in kept:
            if row[0] and row[0] != "<|BEGIN-VISIBLE-CHAT|>":
                messages.append({"role": "user", "content": row[0]})
            if len(row) > 1 and row[1]:
                messages.append({"role": "assistant", "content": row[1]})
        messages.append({"role": "user", "content": user_input})
        if state.get("mode") == "chat":
            prompt = transcript_prompt(messages, state.get("name1", "You"), state.get("name2", "Assistant"))
            return prompt + (" " + partial_reply if partial_reply else "")
        prompt = backend.render_chat(messages) if backend else plain_chat_prompt(messages)
        return prompt + partial_reply  # bot_prefix is the caller's, as in TGWUI

    budget = int(state.get("truncation_length", 2048)) - int(state.get("max_new_tokens", 200))
    prompt = render(rows)
    count = backend.count_tokens if backend else (lambda text: len(text) // 4)
    if rows and count(prompt) > budget:
        # the fewest oldest rows to drop, found by bisection: a pasted megabyte costs a few
        # tokenizations, not one per row of history (dropping every row is the fallback, and
        # is known at once when the new message alone is over the budget)
        low, high = 1, len(rows)
        if count(render([])) > budget:
            low = high
        while low < high:
            mid = (low + high) // 2
            if count(render(rows[mid:])) <= budget:
                high = mid
            else:
                low = mid + 1
        prompt = render(rows[high:])
    return prompt


def complete(host: ExtensionHost, backend: Backend | None, question: str, state: dict,
             stopping: list[str] | None = None, is_chat: bool = False) -> Iterator[str]:
    """Yield the cumulative reply, mirroring ``text_generation._generate_reply``.

    Non-chat: ``state_modifier`` → ``input_modifier`` → generation (with the tokenizer and
    logits hooks on Transformers-family backends) → ``output_modifier`` on the whole output.
    """
    custom = host.apply("custom_generate_reply")
    if custom is None and backend is None:
        raise RuntimeError("no model is loaded")
    original_question = question
    if not is_chat:
        state = host.apply("state", state)
        question = host.apply("input", question, state)
    stops = list(stopping or []) + _custom_stopping_strings(state)
    if getattr(shared.args, "verbose", False):  # as TGWUI's --verbose: show what the model is given
        print(f"PROMPT=\n{question}\n", file=sys.stderr, flush=True)

    if custom is not None:
        name, func = custom
        generator = func(question, original_question, state, stops, is_chat=is_chat)
    else:
        params = GenerationParams.from_state(state, stop=stops)
        generator = backend.stream(
            question, params,
            tokenizer_hook=lambda prompt, ids, embeds: host.apply("tokenizer", state, prompt, ids, embeds),
            logits_hook=lambda processors, ids: host.apply("logits_processor", processors, ids),
        )
    reply = ""
    for reply in generator:
        cut = _cut_at_stop(reply, stops)
        if cut is not None:
            reply = cut
            yield reply
            break
        yield reply
    if not is_chat:
        reply = host.apply("output", reply, state)
    yield reply


def _cut_at_stop(text: str, stops: list[str]) -> str | None:
    positions = [text.find(s) for s in stops if s and s in text]
    return text[: min(positions)] if positions else None


def chat_turn(host: ExtensionHost, backend: Backend | None, text: str, state: dict,
              regenerate: bool = False, _continue: bool = False,
              loading_message: bool = True) -> Iterator[dict]:
    """Yield the history as the reply streams, mirroring ``chat.chatbot_wrapper``.

    Order: ``history_modifier`` (on the copy that becomes the saved history) →
    ``state_modifier`` → [new messages only] ``chat_input_modifier`` → ``input_modifier`` →
    ``custom_generate_chat_prompt`` (first wins) or the default prompt + ``bot_prefix_modifier``
    → generation → ``output_modifier`` on the final visible reply. The internal history
    keeps the raw text; only ``visible`` is escaped and passed through output_modifier.
    """
    if backend is not None and backend.chat_template and not state.get("instruction_template_str"):
        # as in TGWUI, instruct mode's template (and so its default system message) is the model's
        state["instruction_template_str"] = backend.chat_template
    output = copy.deepcopy(state["history"])
    output = host.apply("history", output)
    state = host.apply("state", state)
    output.setdefault("metadata", {})
    output.setdefault("internal", [])
    output.setdefault("visible", [])

    if not (regenerate or _continue):
        visible_text = html.escape(text)
        row_idx = len(output["internal"])
        text, visible_text = host.apply("chat_input", text, visible_text, state)
        text = host.apply("input", text, state, is_chat=True)
        output["internal"].append([text, ""])
        output["visible"].append([visible_text, ""])
        _stamp(output["metadata"], "user", row_idx)
        if loading_message:
            yield {"visible": output["visible"][:-1] + [[visible_text, "*Is typing...*"]],
                   "internal": output["internal"], "metadata": output["metadata"]}
    else:
        if not output["internal"]:
            raise ValueError("there is no message to regenerate or continue")
        text, visible_text = output["internal"][-1][0], output["visible"][-1][0]
        row_idx = len(output["internal"]) - 1
        if regenerate:
            versions = output["metadata"].setdefault(f"assistant_{row_idx}", {}).setdefault("versions", [])
            versions.append({"content": output["internal"][-1][1], "visible_content": output["visible"][-1][1]})
        last_reply = [output["internal"][-1][1], output["visible"][-1][1]]

    row_idx = len(output["internal"]) - 1
    kwargs = {
        "_continue": _continue,
        "history": output if _continue else {k: (v[:-1] if k in ("internal", "visible") else v)
                                             for k, v in output.items()},
    }
    prompt = host.apply("custom_generate_chat_prompt", text, state, **kwargs)
    if prompt is None:
        prompt = generate_chat_prompt(backend, text, state, **kwargs)
        if state.get("mode") in CHAT_MODES and not _continue:
            prompt += host.apply("bot_prefix", "", state)
    _stamp(output["metadata"], "assistant", row_idx)

    for reply in complete(host, backend, prompt, state, stopping_strings(state), is_chat=True):
        if state.get("mode") in CHAT_MODES:
            if not _continue:
                reply = reply.lstrip()
            for name in (state["name2"], state["name1"]):
                if reply.startswith(name + ":"):
                    reply = reply[len(name) + 1:]
                    break
            visible_reply = re.sub("(<USER>|<user>|{{user}})", state["name1"], reply)
        else:
            visible_reply = reply
        visible_reply = html.escape(visible_reply)
        if _continue:
            _set_row(output["internal"], -1, text, last_reply[0] + reply)
            _set_row(output["visible"], -1, visible_text, last_reply[1] + visible_reply)
        else:
            _set_row(output["internal"], -1, text, reply.lstrip(" "))
            _set_row(output["visible"], -1, visible_text, visible_reply.lstrip(" "))
        if state.get("stream", True):
            yield output

    output["visible"][-1][1] = host.apply("output", output["visible"][-1][1], state, is_chat=True)
    yield output
