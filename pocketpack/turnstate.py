"""One hook's reading of TGWUI's ``state`` dict, as a small typed value the core takes.

TGWUI hands every hook a ``state`` dict whose keys differ between the web UI and the
OpenAI-compatible API (no ``character_menu``, ``unique_id`` or ``textbox`` there). A script reads
it once per hook with :meth:`TurnState.of` and passes the value to its engine; the engine never
asks the dict again for these facts. The dict itself still travels beside it: the composer
writes the prompt's system text into it, which is how TGWUI lets an extension change a prompt.

Pure: no import of TGWUI or of the standalone host.
"""

from __future__ import annotations

from dataclasses import dataclass


def system_key(state: dict) -> str:
    """The state key the prompt's system part comes from in this turn's mode.

    In ``instruct`` mode (the API's default) TGWUI builds the system message from
    ``custom_system_message``; in ``chat`` and ``chat-instruct`` from ``context``.
    """
    return "custom_system_message" if state.get("mode", "instruct") == "instruct" else "context"


def _character(state: dict) -> str:
    """The character a turn belongs to, in the UI (``character_menu``) and the API alike."""
    for key in ("character_menu", "character", "name2"):
        value = state.get(key)
        if value:
            return str(value)
    return "Assistant"


@dataclass(frozen=True)
class TurnState:
    """What a hook needs to know about its turn, read once from TGWUI's state dict.

    ``chat_id`` is TGWUI's ``unique_id``; the API sends none, so API turns have None here.
    ``rows`` are the history's internal rows (lists: user text, reply, maybe more).
    ``is_chat``: chat turns carry a history and a mode; /v1/completions and notebook turns do
    not. ``user`` names the signed-in user where the host has users; None until it does.
    """

    character: str = "Assistant"
    chat_id: str | None = None
    mode: str | None = None
    rows: tuple = ()
    system_key: str = "custom_system_message"
    incognito: bool = False
    is_chat: bool = False
    user: str | None = None

    @classmethod
    def of(cls, state: dict, *, user: str | None = None) -> TurnState:
        history = state.get("history")
        internal = (history or {}).get("internal") if isinstance(history, dict) else None
        chat = state.get("unique_id")
        chat_id = str(chat) if chat else None
        return cls(
            character=_character(state),
            chat_id=chat_id,
            mode=state.get("mode"),
            rows=tuple(r for r in internal or [] if isinstance(r, (list, tuple))),
            system_key=system_key(state),
            incognito=(chat_id or "").startswith("incognito-"),  # TGWUI never saves these chats
            is_chat=isinstance(history, dict) and "mode" in state,
            user=user,
        )


def as_turn(value: TurnState | dict) -> TurnState:
    """A TurnState from either a TurnState or a raw state dict (read once, here)."""
    return value if isinstance(value, TurnState) else TurnState.of(value)
