"""What rag-enhancer does at each TGWUI hook, without TGWUI: ``extensions/rag-enhancer``
translates hooks and gradio events into calls on one ``RagEngine``.

- chat modes: ``chat_input_modifier`` (new messages) and ``state_modifier`` (regenerate and
  continue, where the question is the last user message already in the history) retrieve
  passages and register them with the shared composer;
- notebook/default: ``input_modifier(is_chat=False)`` fills ``<|injection-point|>``;
- ``output_modifier`` (chat only: in notebook mode the output is plain text, and through the
  API it is the completion itself) shows under the visible reply the sources the model saw in
  this turn's prompt, and links ``[n]`` to them — only those: a turn that injected nothing
  (documents off, nothing relevant, a greeting) shows no sources, rather than an earlier
  turn's. ``STATE_KEY`` holds them on the turn's state (the host's API reads it for its
  ``sources`` field).

A failure never costs the user a turn: it is logged under the extension's name, the turn goes
on without documents, and the reply ends with a one-line notice.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from pocketpack.rag import config
from pocketpack.rag.cite import link_citations
from pocketpack.rag.config import RagSettings
from pocketpack.rag.ingest import Library, scope_collections
from pocketpack.rag.inject import INJECTION_POINT, inject_chat, inject_prompt, question_of, strip_markers
from pocketpack.rag.retrieve import Passage, retrieve

log = logging.getLogger("pocketpack.rag")
NAME = "rag-enhancer"
STATE_KEY = "_pocketpack_rag"

# params the extension adds to RagSettings' own
EXTENSION_DEFAULTS = {
    "enabled": True,
    "citations": True,          # sources under each reply, [n] in it linked to them
    "upload_scope": "global",   # where the UI adds documents: global | character | chat
    "store_dir": "",            # default: <user_data>/pocketpack/documents
}


def _tgwui():
    from pocketpack import tgwui

    return tgwui


class RagEngine:
    """One library; what a turn injected is kept on that turn's state (for its citations)."""

    def __init__(self, params: dict):
        self.params = params
        self._library: Library | None = None
        self._lock = threading.RLock()
        self.last_context: tuple[str | None, str | None] = (None, None)  # (character, chat id) last seen
        self._cache: tuple | None = None  # (turn key, passages, time)
        self.notice: str | None = None

    # -- configuration --------------------------------------------------------------------
    @property
    def settings(self) -> RagSettings:
        return RagSettings.from_dict(self.params)

    def store_dir(self) -> Path:
        configured = str(self.params.get("store_dir") or "").strip()
        if configured:
            return Path(configured).expanduser()
        return Path(_tgwui().shared().user_data_dir) / "pocketpack" / "documents"

    @property
    def library(self) -> Library:
        with self._lock:
            if self._library is None or self._library.directory != self.store_dir():
                if self._library is not None:
                    self._library.close()
                self._library = Library(self.store_dir(), self.settings)
            self._library.settings = self.settings
            return self._library

    def save_settings(self, values: dict) -> None:
        """Apply settings from the UI and write them beside the library (the CLI reads them).
        Bad values raise ``SettingsError`` (one line for the UI) and change nothing."""
        RagSettings.from_dict({**self.params, **values}, strict=True)
        self.params.update(values)
        config.save(self.store_dir(), self.settings)
        self._cache = None

    def close(self) -> None:
        with self._lock:
            if self._library is not None:
                self._library.close()
                self._library = None

    # -- retrieval ------------------------------------------------------------------------
    def collections_for(self, state: dict) -> list[str]:
        tg = _tgwui()
        character, chat = tg.character_of(state), tg.chat_id_of(state)
        self.last_context = (character, chat)
        return scope_collections("all", character, chat)

    def passages(self, question: str, collections: list[str] | None, turn: object = None) -> list[Passage]:
        """Retrieve; within one turn (same state dict, a few seconds) the same question is
        answered from the previous call (state_modifier then chat_input_modifier)."""
        import time

        s = self.settings
        key = (id(turn) if turn is not None else None, question, tuple(collections or ()), repr(s))
        if turn is not None and self._cache and self._cache[0] == key and time.monotonic() - self._cache[2] < 10:
            return self._cache[1]
        found = retrieve(self.library, question, s.k, collections, s)
        self._cache = (key, found, time.monotonic())
        return found

    def _fail(self, hook: str, exc: Exception) -> None:
        log.warning("%s: %s failed: %s", NAME, hook, exc, exc_info=True)
        self.notice = f"{NAME}: documents were not used for this reply ({type(exc).__name__}: {exc})"

    # -- hooks ----------------------------------------------------------------------------
    def _inject(self, question: str, state: dict) -> None:
        state[STATE_KEY] = []  # until this turn's passages are in the prompt, nothing is citable
        passages = self.passages(question, self.collections_for(state), turn=state)
        numbered = inject_chat(state, passages, self.settings.budget_tokens)
        state[STATE_KEY] = numbered

    def state_modifier(self, state: dict) -> dict:
        """Regenerate/continue: the question is the history's last user message. (For a new
        message chat_input_modifier runs next and replaces this with the new question.)"""
        if not self.params.get("enabled", True):
            state.pop(STATE_KEY, None)
            return state
        if "history" not in state:
            return state
        try:
            rows = (state.get("history") or {}).get("internal") or []
            question = rows[-1][0] if rows and rows[-1] and isinstance(rows[-1][0], str) else ""
            if question.strip() and not state.get("textbox"):
                self._inject(question, state)
        except Exception as exc:  # noqa: BLE001 - never break a turn
            self._fail("state_modifier", exc)
        return state

    def chat_input_modifier(self, text: str, visible_text: str, state: dict) -> tuple[str, str]:
        if not self.params.get("enabled", True):
            state.pop(STATE_KEY, None)
        else:
            try:
                self._inject(text, state)
            except Exception as exc:  # noqa: BLE001 - never break a chat: the failure is logged and shown, the turn goes on
                self._fail("chat_input_modifier", exc)
        return text, visible_text

    def input_modifier(self, string: str, state: dict, is_chat: bool = False) -> str:
        """Notebook/default: fill ``<|injection-point|>``; the markers never reach the model."""
        if is_chat:
            return string
        state.pop(STATE_KEY, None)
        if INJECTION_POINT not in string or not self.params.get("enabled", True):
            return strip_markers(string)
        try:
            passages = self.passages(question_of(string), None)
            text, numbered = inject_prompt(string, passages, self.settings.budget_tokens)
            state[STATE_KEY] = numbered
            return text
        except Exception as exc:  # noqa: BLE001 - never break a chat (as above)
            self._fail("input_modifier", exc)
            return strip_markers(string)

    def output_modifier(self, string: str, state: dict, is_chat: bool = False) -> str:
        if not is_chat:
            return string
        try:
            if self.notice:
                notice, self.notice = self.notice, None
                return string + f"\n\n<small>⚠ {notice.replace('<', '&lt;')}</small>"
            if not self.params.get("enabled", True) or not self.params.get("citations", True):
                return string
            # only what this turn put in the prompt; no fallback to an earlier turn's passages
            return link_citations(string, state.get(STATE_KEY) or [])
        except Exception as exc:  # noqa: BLE001 - never break a chat (as above)
            log.warning("%s: output_modifier failed: %s", NAME, exc, exc_info=True)
            return string

    # -- UI actions (plain data in, plain data out) ---------------------------------------
    def upload_collection(self, scope: str | None = None) -> tuple[str, str]:
        """The collection UI uploads go to, and a phrase saying which."""
        scope = scope or self.params.get("upload_scope", "global")
        character, chat = self.last_context
        if scope == "character" and character:
            return f"character/{character}", f"character {character}"
        if scope == "chat" and chat:
            return f"chat/{chat}", f"this chat ({chat})"
        if scope in ("character", "chat"):
            return "global", "global (no chat has run yet to tell the current character/chat)"
        return "global", "global"

    def document_rows(self) -> list[list]:
        if not (self.store_dir() / "store.sqlite3").is_file():
            return []
        return [[d.id, d.name or d.source, d.chunks, d.collection, d.kind, d.source] for d in self.library.documents()]

    def try_query(self, question: str, k: int) -> list[list]:
        if not (self.store_dir() / "store.sqlite3").is_file():
            return []
        found = retrieve(self.library, question, int(k), None, self.settings)
        return [[n, round(p.score, 3), p.name or p.source, p.location, p.text] for n, p in enumerate(found, start=1)]
