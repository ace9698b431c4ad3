"""TGWUI's settings file: ``user_data/settings.yaml`` (``NAME-key`` entries set extension params)."""

from __future__ import annotations

from pathlib import Path

import yaml

from pocketpack.errors import PocketPackError


class SettingsError(PocketPackError, ValueError):
    """The settings file exists but cannot be used; the message names the file and why."""


def load_settings(path: Path | str | None) -> dict:
    """The settings as a dict; an absent file is no settings, a broken one is an error."""
    if path is None:
        return {}
    path = Path(path)
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a mapping of setting: value, found {type(data).__name__}")
    return data
