"""Per-character (and per-chat) adapter bindings, kept in one small YAML file.

``user_data/adapter_bindings.yaml``::

    version: 1
    characters:
      Captain Flint: {adapters: {pirate: 1.0, terse: 0.5}, combination: live}
      Assistant: {adapters: {}}          # explicitly the base model
    chats:
      20250101-10-00-00: {adapters: {formal: 1.0}}

Under ``--multi-user`` each signed-in user has bindings of their own, in the same file::

    users:
      alice: {characters: {Captain Flint: {adapters: {pirate: 1.0}}}, chats: {}}

and a turn of a user uses only that user's (a turn with nobody signed in, none): one person's
binding never applies to another's chat. The tables above are the single-user host's.

A chat's binding wins over its character's. A character with no entry has no binding
(``adapters_for`` returns None: the caller keeps the user's own choice). Shorthands are
accepted when reading — ``Flint: pirate``, ``Flint: [pirate, terse]``, ``Flint: {pirate: 0.7}``.
A ``.json`` path is read and written as JSON instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from pocketpack.adapters.library import AdapterError
from pocketpack.fsutil import atomic_write
from pocketpack.turnstate import TurnState, as_turn

FILE_NAME = "adapter_bindings.yaml"
VERSION = 1


@dataclass(frozen=True)
class Binding:
    adapters: dict = field(default_factory=dict)   # name -> weight; empty = base model
    combination: str = "live"

    def to_json(self) -> dict:
        return {"adapters": dict(self.adapters), "combination": self.combination}


def _parse(value, where: str) -> Binding:
    if value is None or isinstance(value, str):
        return Binding({value: 1.0} if value else {})
    if isinstance(value, list):
        return Binding({str(v): 1.0 for v in value})
    if isinstance(value, dict):
        if "adapters" in value or "combination" in value:
            inner = _parse(value.get("adapters"), where)
            return Binding(inner.adapters, str(value.get("combination") or "live"))
        try:
            return Binding({str(k): float(v) for k, v in value.items()})
        except (TypeError, ValueError):
            raise AdapterError(f"{where}: adapter weights must be numbers") from None
    raise AdapterError(f"{where}: expected an adapter name, a list or a mapping of weights")


class _Table:
    """A set of character and chat bindings, and the changes to it (saved by ``save``)."""

    characters: dict[str, Binding]
    chats: dict[str, Binding]

    def save(self) -> None:
        raise NotImplementedError

    def bind(self, character: str | None = None, adapters=None, *, chat: str | None = None,
             combination: str = "live") -> Binding:
        """Bind a character (or a chat) to ``adapters`` (name, list or {name: weight})."""
        if not character and not chat:
            raise AdapterError("name a character or a chat to bind")
        binding = Binding(_parse(adapters, "binding").adapters, combination)
        (self.chats if chat else self.characters)[chat or character] = binding
        self.save()
        return binding

    def unbind(self, character: str | None = None, *, chat: str | None = None) -> bool:
        table = self.chats if chat else self.characters
        found = table.pop(chat or character, None) is not None
        if found:
            self.save()
        return found

    def _lookup(self, turn: TurnState) -> Binding | None:
        if turn.chat_id and turn.chat_id in self.chats:
            return self.chats[turn.chat_id]
        return self.characters.get(turn.character)


class UserBindings(_Table):
    """One user's bindings (``--multi-user``), kept in the bindings file's ``users`` table."""

    def __init__(self, owner: Bindings, user: str | None):
        self.owner, self.user = owner, user
        if user is None:  # nobody signed in: nothing to show, nothing may be written
            self.characters, self.chats = {}, {}
        else:
            self.characters, self.chats = owner.users.setdefault(user, ({}, {}))

    def save(self) -> None:
        if self.user is None:
            raise AdapterError("bindings under --multi-user are a signed-in user's own: sign in (--gradio-auth)")
        self.owner.save()


class Bindings(_Table):
    """The bindings file, read on creation and written on every change."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.characters: dict[str, Binding] = {}
        self.chats: dict[str, Binding] = {}
        self.users: dict[str, tuple[dict[str, Binding], dict[str, Binding]]] = {}
        self.reload()

    def scoped(self, who: TurnState | None) -> _Table:
        """The table ``who`` reads and changes: this one on a single-user host, the user's own
        under ``--multi-user`` (an empty one that refuses changes with nobody signed in)."""
        if who is None or not who.multi_user:
            return self
        return UserBindings(self, who.user)

    def reload(self) -> None:
        if not self.path.is_file():
            self.characters, self.chats, self.users = {}, {}, {}
            return
        try:
            text = self.path.read_text(encoding="utf-8")
            if self.path.suffix == ".json":
                data = json.loads(text) if text.strip() else {}
            else:
                import yaml

                data = yaml.safe_load(text) or {}
        except Exception as exc:  # noqa: BLE001 - any read/YAML error means an unreadable bindings file: one line
            raise AdapterError(f"{self.path}: cannot read the bindings file ({str(exc).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise AdapterError(f"{self.path}: expected a mapping with 'characters' and 'chats'")
        if int(data.get("version", VERSION)) > VERSION:
            raise AdapterError(f"{self.path}: written by a newer pocketpack (version {data['version']})")
        self.characters = {str(k): _parse(v, f"{self.path}: {k}") for k, v in (data.get("characters") or {}).items()}
        self.chats = {str(k): _parse(v, f"{self.path}: {k}") for k, v in (data.get("chats") or {}).items()}
        users = data.get("users") or {}
        if not isinstance(users, dict) or not all(isinstance(v, dict) for v in users.values()):
            raise AdapterError(f"{self.path}: 'users' must map each user to their 'characters' and 'chats'")
        self.users = {str(user): ({str(k): _parse(v, f"{self.path}: {user}: {k}")
                                   for k, v in (table.get("characters") or {}).items()},
                                  {str(k): _parse(v, f"{self.path}: {user}: {k}")
                                   for k, v in (table.get("chats") or {}).items()})
                      for user, table in users.items()}

    def save(self) -> None:
        data = {"version": VERSION,
                "characters": {k: v.to_json() for k, v in sorted(self.characters.items())},
                "chats": {k: v.to_json() for k, v in sorted(self.chats.items())}}
        users = {user: {"characters": {k: v.to_json() for k, v in sorted(chars.items())},
                        "chats": {k: v.to_json() for k, v in sorted(chats.items())}}
                 for user, (chars, chats) in sorted(self.users.items()) if chars or chats}
        if users:  # a single-user file stays as it was
            data["users"] = users
        if self.path.suffix == ".json":
            text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        else:
            import yaml

            text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, text, mode=0o600)  # under --multi-user it names every user's voices

    def adapters_for(self, state: TurnState | dict) -> Binding | None:
        """The binding for this turn's chat or character, or None when neither has one. Under
        ``--multi-user``, the turn's user's own only (none for a turn with nobody signed in)."""
        turn = as_turn(state)
        if turn.multi_user:
            return self.scoped(turn)._lookup(turn) if turn.user else None
        return self._lookup(turn)
