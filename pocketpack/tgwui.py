"""The edge between extension scripts and whichever host runs them.

Only ``extensions/*/script.py`` call this module. It hands them TGWUI's ``modules.shared``
when running inside text-generation-webui and the standalone host's stand-in otherwise,
plus the few readings of TGWUI's state dict that every extension needs and that differ
between the web UI and the OpenAI-compatible API.
"""

from __future__ import annotations

import sys
from types import ModuleType


def shared() -> ModuleType:
    """TGWUI's ``modules.shared`` if TGWUI is the host, else pocketpack's stand-in."""
    module = sys.modules.get("modules.shared")
    if module is not None and hasattr(module, "args"):
        return module
    from pocketpack.host import shared as standalone

    return standalone


def character_of(state: dict) -> str:
    """The character a turn belongs to, in the UI (``character_menu``) and the API alike."""
    for key in ("character_menu", "character", "name2"):
        value = state.get(key)
        if value:
            return str(value)
    return "Assistant"


def chat_id_of(state: dict) -> str | None:
    """The chat's id; the API sends none, so API turns share one chat per character."""
    value = state.get("unique_id")
    return str(value) if value else None


def is_incognito(state: dict) -> bool:
    """TGWUI never saves chats whose id starts with ``incognito-``; neither do we."""
    return (chat_id_of(state) or "").startswith("incognito-")


def system_key(state: dict) -> str:
    """The state key the prompt's system part comes from in this turn's mode.

    In ``instruct`` mode (the API's default) TGWUI builds the system message from
    ``custom_system_message``; in ``chat`` and ``chat-instruct`` from ``context``.
    """
    return "custom_system_message" if state.get("mode", "instruct") == "instruct" else "context"


def count_tokens(text: str) -> int | None:
    """Tokens ``text`` takes with the loaded model's tokenizer, or None when none is loaded."""
    tokenizer = getattr(shared(), "tokenizer", None)
    if tokenizer is None or not hasattr(tokenizer, "encode"):
        return None
    try:
        ids = tokenizer.encode(text)
    except Exception:  # noqa: BLE001 - a host's tokenizer may raise anything; counting then falls back to the estimate
        return None
    try:
        return len(ids)
    except TypeError:  # a torch tensor of shape (1, n)
        return int(ids.shape[-1])
