"""TGWUI characters: ``user_data/characters/NAME.yaml`` with ``name``, ``context``, ``greeting``."""

from __future__ import annotations

from pathlib import Path

import yaml

from pocketpack.errors import PocketPackError

DEFAULT_CHARACTER = "Assistant"
DEFAULT_CONTEXT = "The following is a conversation with a helpful, friendly AI assistant."
MAX_NAME_CHARS = 100


class CharacterNameError(PocketPackError, ValueError):
    """A character name that could address something other than one character."""


def check_character_name(name: object) -> str:
    """``name`` if it is usable as a character name, else CharacterNameError with the reason.

    A character name becomes a file name (TGWUI's ``characters/NAME.yaml``, its chat logs
    ``logs/chat/NAME/``) and part of the memory and RAG collection names, so a name that could
    climb out of a folder or split a collection name is refused wherever it comes from:
    no ``/``, ``\\``, ``..``, control characters (NUL included), no leading dot or drive, at most
    100 characters.
    """
    if not isinstance(name, str):
        raise CharacterNameError(f"a character name must be a string, not {type(name).__name__}")
    if not name.strip():
        raise CharacterNameError("a character name must not be empty")
    if len(name) > MAX_NAME_CHARS:
        raise CharacterNameError(f"a character name is at most {MAX_NAME_CHARS} characters (this one has {len(name)})")
    if "/" in name or "\\" in name or ".." in name or name.startswith(".") or ":" in name[1:2]:
        raise CharacterNameError(f"{name!r} is not a character name: no '/', '\\', '..', leading dot or drive")
    if any(not ch.isprintable() for ch in name):
        raise CharacterNameError("a character name must not contain control characters")
    return name


def list_characters(characters_dir: Path) -> list[str]:
    """Character names found in the folder, the built-in Assistant first."""
    names = sorted({p.stem for p in Path(characters_dir).glob("*.y*ml")} - {DEFAULT_CHARACTER})
    return [DEFAULT_CHARACTER] + names


def load_character(characters_dir: Path, name: str) -> dict:
    """State entries for a character (``name2``, ``context``, ``greeting``, ``character_menu``).

    ``name`` comes from the UI: it is looked up among the folder's files, never joined
    into a path, so it cannot reach outside the folder.
    """
    check_character_name(name)
    if name == DEFAULT_CHARACTER:
        return {"character_menu": name, "name2": name, "context": DEFAULT_CONTEXT, "greeting": ""}
    files = {p.stem: p for p in Path(characters_dir).glob("*.y*ml")}
    if name not in files:
        raise ValueError(f"no character named {name!r} in {characters_dir}")
    data = yaml.safe_load(files[name].read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{files[name]}: expected a mapping with name, context and greeting")
    return {
        "character_menu": name,
        "name2": str(data.get("name", name)),
        "context": str(data.get("context", "")),
        "greeting": str(data.get("greeting", "")),
    }
