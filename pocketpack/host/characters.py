"""TGWUI characters: ``user_data/characters/NAME.yaml`` with ``name``, ``context``, ``greeting``."""

from __future__ import annotations

from pathlib import Path

import yaml

DEFAULT_CHARACTER = "Assistant"
DEFAULT_CONTEXT = "The following is a conversation with a helpful, friendly AI assistant."


def list_characters(characters_dir: Path) -> list[str]:
    """Character names found in the folder, the built-in Assistant first."""
    names = sorted({p.stem for p in Path(characters_dir).glob("*.y*ml")} - {DEFAULT_CHARACTER})
    return [DEFAULT_CHARACTER] + names


def load_character(characters_dir: Path, name: str) -> dict:
    """State entries for a character (``name2``, ``context``, ``greeting``, ``character_menu``).

    ``name`` comes from the UI: it is looked up among the folder's files, never joined
    into a path, so it cannot reach outside the folder.
    """
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
