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


def api_users(settings: dict) -> tuple[dict[str, str], str | None]:
    """Who an API request comes from: ``({api_key: user}, header)`` from settings.yaml's

    .. code-block:: yaml

        users:
          alice: {api_key: "sk-alice-…"}
          bob: {api_key: "sk-bob-…"}
        user_header: X-Pocketpack-User   # only behind a proxy that sets it; off unless named

    A header is trusted only when the admin names it here (a client could send any header).
    Two users with one key would be one identity for both: refused, as is an empty key.
    """
    users = settings.get("users") or {}
    if not isinstance(users, dict):
        raise SettingsError(f"settings 'users': expected a mapping of name: {{api_key: …}}, found {type(users).__name__}")
    keys: dict[str, str] = {}
    for name, entry in users.items():
        key = entry.get("api_key") if isinstance(entry, dict) else None
        if not isinstance(key, str) or not key.strip():
            raise SettingsError(f"settings 'users': {name!r} has no api_key (expected {name}: {{api_key: \"…\"}})")
        if key in keys:
            raise SettingsError(f"settings 'users': {keys[key]!r} and {name!r} have the same api_key")
        keys[key] = str(name)
    header = settings.get("user_header") or None
    if header is not None and not isinstance(header, str):
        raise SettingsError(f"settings 'user_header': expected a header name, found {type(header).__name__}")
    return keys, header
