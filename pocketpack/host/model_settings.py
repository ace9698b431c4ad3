"""The standalone host's per-model load settings: ``<user_data>/pocketpack/model-settings.yaml``.

TGWUI keeps per-model settings in ``<models>/config-user.yaml`` and applies them whenever that
model loads, command-line flags winning. The host does the same with its own file, so that the
VRAM advisor's "Apply preset" works without a TGWUI checkout: ``pocketpack serve --model NAME``
and the Model tab's Load read the entry of NAME, and every flag the user gave wins over it.

Format (YAML, versioned)::

    version: 1
    kind: pocketpack-model-settings
    models:
      mistral-7b-instruct.Q4_K_M.gguf:
        settings: {loader: llama.cpp, gpu_layers: 33, ctx_size: 8192, cache_type: q8_0}
        preset: {tier: gpu-8gb, source: gguf, format: gguf-Q4_K_M}

``settings`` keys are :class:`pocketpack.host.flags.LoadSettings` fields (TGWUI's flag names
with underscores); anything else is refused when the file is read, in one line.
"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path

import yaml

from pocketpack.fsutil import atomic_write
from pocketpack.host.settings import SettingsError

FILE = Path("pocketpack") / "model-settings.yaml"
KIND = "pocketpack-model-settings"


def settings_path(user_data_dir: str | Path) -> Path:
    return Path(user_data_dir) / FILE


def _fields() -> dict:
    from pocketpack.host.flags import LoadSettings

    return {f.name: f for f in fields(LoadSettings)}


def load_all(user_data_dir: str | Path) -> dict[str, dict]:
    """Model name -> its saved entry; an absent file is none, a broken one a SettingsError."""
    path = settings_path(user_data_dir)
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SettingsError(f"{path}: cannot be read ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or data.get("kind") != KIND or not isinstance(data.get("models") or {}, dict):
        raise SettingsError(f"{path}: not a Pocket Pack model-settings file (kind: {KIND}, models: {{...}})")
    return dict(data.get("models") or {})


def saved_settings(user_data_dir: str | Path, model_name: str) -> dict:
    """The saved load settings of ``model_name`` (a file or folder name in the models folder), checked."""
    entry = load_all(user_data_dir).get(model_name)
    if entry is None:
        return {}
    settings = entry.get("settings") if isinstance(entry, dict) else None
    if not isinstance(settings, dict):
        raise SettingsError(f"{settings_path(user_data_dir)}: {model_name}: 'settings' must be a mapping")
    known = _fields()
    unknown = [k for k in settings if k not in known]
    if unknown:
        raise SettingsError(f"{settings_path(user_data_dir)}: {model_name}: unknown setting(s) "
                            f"{', '.join(map(str, unknown))}; valid: {', '.join(known)}")
    for key, value in settings.items():
        kind = known[key].type
        ok = (isinstance(value, bool) if "bool" in str(kind) else
              value is None or (isinstance(value, int) and not isinstance(value, bool)) if "int" in str(kind) else
              value is None or isinstance(value, str))
        if not ok:
            raise SettingsError(f"{settings_path(user_data_dir)}: {model_name}: {key} has a wrong type "
                                f"({type(value).__name__})")
    return dict(settings)


def save_model_settings(user_data_dir: str | Path, model_name: str, settings: dict, preset: dict | None = None) -> Path:
    """Write ``model_name``'s entry (replacing its settings, keeping every other model's)."""
    known = _fields()
    unknown = [k for k in settings if k not in known]
    if unknown:
        raise SettingsError(f"cannot save {', '.join(unknown)} for {model_name}: the standalone host has no such "
                            "flag")
    path = settings_path(user_data_dir)
    models = load_all(user_data_dir)
    models[model_name] = {"settings": dict(settings), **({"preset": dict(preset)} if preset else {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, "# Pocket Pack: load settings per model for `pocketpack serve` (written by Apply preset).\n"
                       "# Flags given on the command line or in the Model tab win over these.\n"
                       + yaml.safe_dump({"version": 1, "kind": KIND, "models": models}, sort_keys=False))
    return path


def with_saved_settings(settings, user_data_dir: str | Path, model_path: str | Path, given=None):
    """(settings, names used): ``settings`` with the saved entry of the model filled in wherever
    ``given(dest)`` says the user asked for nothing (default: left unset on the command line)."""
    saved = saved_settings(user_data_dir, Path(model_path).name)
    if not saved:
        return settings, {}
    if given is None:
        def given(dest):
            return getattr(settings, dest, None) not in (None, False)
    used = {k: v for k, v in saved.items() if not given(k)}
    return replace(settings, **used), used
