"""Memories follow deleted chats.

text-generation-webui keeps each saved chat in one history file (TGWUI 1dcde41,
modules/chat.py ``get_history_file_path``): ``<user_data>/logs/chat/<character>/<unique_id>.json``,
or ``<user_data>/logs/instruct/<unique_id>.json`` in instruct mode. Deleting a chat deletes
that file (``delete_history``) and runs no extension hook, so deletion is seen from here: the
file of each chat a turn ran in is recorded once it exists, and a recorded chat whose file is
gone was deleted, so its message memories are forgotten. The check stats the recorded files
only when a turn runs in a different chat than the turn before (deleting a chat always
switches the UI to another one) or when the user asks (the tab's button); a turn in the
same chat costs one dictionary lookup.

Never pruned: chats never seen with a file (API requests carry no ``unique_id``; incognito
chats and ``--multi-user`` save no file; memories imported or added by the CLI), the chat of
the current turn, and facts consolidation wrote (they are the character's notes, not the
chat's; delete them in the tab if they should go too). Renaming a chat in TGWUI also removes
its old file: the old id's memories are forgotten and the next turn stores the renamed chat's
rows again under the new id (message times come from the history's metadata; pins on those
messages and their consolidation flags do not carry over).

The record is ``<memory store>/chat_files.json``: ``{"version": 1, "logs": {<logs dir>:
{<character>: {<chat id>: <path relative to the logs dir>}}}}``, per logs directory so that two
TGWUI installs sharing one memory store never prune each other's chats.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from pocketpack.memory.store import MemoryStore
from pocketpack.turnstate import TurnState, as_turn

log = logging.getLogger("pocketpack.memory")

RECORD = "chat_files.json"
VERSION = 1


def history_file(chat: str, character: str, mode: str | None) -> str:
    """Where TGWUI saves a chat, relative to its logs directory (``get_history_file_path``)."""
    if mode == "instruct":
        return f"instruct/{chat}.json"
    return f"chat/{character}/{chat}.json"


@dataclass
class Pruned:
    """What a prune forgot: the (character, chat id) of each deleted chat, and how many memories."""

    chats: list[tuple[str, str]] = field(default_factory=list)
    memories: int = 0


class ChatFiles:
    """Which chats had a history file, and forgetting the memories of those whose file is gone."""

    def __init__(self, memory: MemoryStore, logs_dir: str | Path, *, enabled: bool = True):
        self.memory = memory
        self.logs_dir = Path(logs_dir).resolve()
        self.enabled = enabled              # False under --multi-user: TGWUI saves no chat files
        self.path = Path(memory.store.directory) / RECORD
        self._lock = threading.Lock()
        self._all = self._load()
        self._seen: dict[str, dict[str, str]] = self._all.setdefault(str(self.logs_dir), {})
        self._last: tuple[str, str] | None = None

    # -- the record -----------------------------------------------------------------------
    def _load(self) -> dict:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:  # unreadable: start afresh, prune nothing seen before
            log.warning("memory: ignoring unreadable %s (%s)", self.path, exc)
            return {}
        logs = data.get("logs") if isinstance(data, dict) else None
        return logs if isinstance(logs, dict) else {}

    def _save(self) -> None:
        from pocketpack.fsutil import atomic_write

        # every turn may save it, and it is rebuilt from TGWUI's chat files: no fsync
        atomic_write(self.path, json.dumps({"version": VERSION, "logs": self._all}, ensure_ascii=False, indent=1),
                     fsync=False)

    def known(self) -> dict[str, dict[str, str]]:
        """character -> {chat id: history file} of the chats seen with a file (a copy)."""
        with self._lock:
            return {c: dict(chats) for c, chats in self._seen.items()}

    # -- hooks ----------------------------------------------------------------------------
    def observe(self, state: TurnState | dict) -> Pruned | None:
        """Called on every chat turn (state_modifier): record this chat's file once it exists;
        on a switch to another chat, forget the memories of chats whose file is gone."""
        turn = as_turn(state)
        chat = turn.chat_id
        if not self.enabled or not chat or turn.incognito:
            return None
        character = turn.character
        relative = history_file(chat, character, turn.mode)
        if not (self.logs_dir / relative).resolve().is_relative_to(self.logs_dir):
            return None  # a chat id or character name with "..": never look outside the logs
        key = (character, chat)
        with self._lock:
            if self._seen.get(character, {}).get(chat) != relative and (self.logs_dir / relative).is_file():
                self._seen.setdefault(character, {})[chat] = relative
                self._save()
            switched, self._last = self._last != key, key
        return self.prune(keep={key}) if switched else None

    def prune(self, keep: set[tuple[str, str]] = frozenset()) -> Pruned:
        """Forget the memories of every recorded chat whose history file is gone."""
        out = Pruned()
        if not self.enabled:
            return out
        with self._lock:
            gone = [(character, chat) for character, chats in self._seen.items() for chat, relative in chats.items()
                    if (character, chat) not in keep and not (self.logs_dir / relative).exists()]
            for character, chat in gone:
                out.memories += self.memory.forget(character, chat=chat)
                out.chats.append((character, chat))
                del self._seen[character][chat]
                if not self._seen[character]:
                    del self._seen[character]
            if gone:
                self._save()
        if gone:
            log.info("memory: forgot %d memories of %d deleted chat(s): %s", out.memories, len(gone),
                     ", ".join(f"{c}/{i}" for c, i in gone))
        return out
