"""Per-character (and per-chat) adapter bindings, kept in one small YAML file.

``user_data/adapter_bindings.yaml``::

    version: 1
    characters:
      Captain Flint: {adapters: {pirate: 1.0, terse: 0.5}, combination: live}
      Assistant: {adapters: {}}          # explicitly the base model
    chats:
      20250101-10-00-00: {adapters: {formal: 1.0}}

A chat's binding wins over its character's. A character with no entry has no binding
(``adapters_for`` returns None: the caller keeps the user's own choice). Shorthands are
accepted when reading — ``Flint: pirate``, ``Flint: [pirate, terse]``, ``Flint: {pirate: 0.7}``.
A ``.json`` path is read and written as JSON instead.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pocketpack.adapters.library import AdapterError
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


class Bindings:
    """The bindings file, read on creation and written on every change."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.characters: dict[str, Binding] = {}
        self.chats: dict[str, Binding] = {}
        self.reload()

    def reload(self) -> None:
        if not self.path.is_file():
            self.characters, self.chats = {}, {}
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

    def save(self) -> None:
        data = {"version": VERSION,
                "characters": {k: v.to_json() for k, v in sorted(self.characters.items())},
                "chats": {k: v.to_json() for k, v in sorted(self.chats.items())}}
        if self.path.suffix == ".json":
            text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        else:
            import yaml

            text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".bindings-")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, self.path)

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

    def adapters_for(self, state: TurnState | dict) -> Binding | None:
        """The binding for this turn's chat or character, or None when neither has one."""
        turn = as_turn(state)
        if turn.chat_id and turn.chat_id in self.chats:
            return self.chats[turn.chat_id]
        return self.characters.get(turn.character)
