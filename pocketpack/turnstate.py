"""One hook's reading of TGWUI's ``state`` dict, as a small typed value the core takes.

TGWUI hands every hook a ``state`` dict whose keys differ between the web UI and the
OpenAI-compatible API (no ``character_menu``, ``unique_id`` or ``textbox`` there). A script reads
it once per hook with :meth:`TurnState.of` and passes the value to its engine; the engine never
asks the dict again for these facts. The dict itself still travels beside it: the composer
writes the prompt's system text into it, which is how TGWUI lets an extension change a prompt.

Pure: no import of TGWUI or of the standalone host.
"""

from __future__ import annotations

import hashlib
import re
from contextvars import ContextVar
from dataclasses import dataclass

#: The user a request belongs to, where the host that received it knows one: ``pocketpack
#: serve``'s API sets it from the request's API key (or the header the admin named), for the
#: duration of that request. Context-local, so concurrent requests never see each other's user.
#: Read by :func:`pocketpack.tgwui.turn` (with gradio's signed-in user for web UI events).
REQUEST_USER: ContextVar[str | None] = ContextVar("pocketpack_request_user", default=None)


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
    not. ``user`` names the signed-in user where the host has users (``--multi-user`` with
    ``--gradio-auth``, or an API key mapped to a user), None otherwise. ``multi_user``: the
    host runs with ``--multi-user``; then a turn with no ``user`` has no identity, and no
    per-user data (memories, private documents, bindings) may be read or written for it.
    """

    character: str = "Assistant"
    chat_id: str | None = None
    mode: str | None = None
    rows: tuple = ()
    system_key: str = "custom_system_message"
    incognito: bool = False
    is_chat: bool = False
    user: str | None = None
    multi_user: bool = False

    @property
    def anonymous(self) -> bool:
        """Under ``--multi-user`` with nobody signed in: per-user data is off for this turn."""
        return self.multi_user and not self.user

    @classmethod
    def of(cls, state: dict, *, user: str | None = None, multi_user: bool = False) -> TurnState:
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
            user=user or None,
            multi_user=bool(multi_user),
        )


def as_turn(value: TurnState | dict) -> TurnState:
    """A TurnState from either a TurnState or a raw state dict (read once, here)."""
    return value if isinstance(value, TurnState) else TurnState.of(value)


_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def user_folder(user: str) -> str:
    """A folder name for ``user``'s own data: the name itself where it is a plain file name,
    else a digest of it (``u-…``), so that no user name can point outside its folder or land
    in another user's (``../bob``, ``bob/``, ``bob `` and ``bob`` are distinct folders)."""
    if _PLAIN_NAME.fullmatch(user) and not user.startswith("u-"):
        return user
    return "u-" + hashlib.sha256(user.encode("utf-8")).hexdigest()[:16]
