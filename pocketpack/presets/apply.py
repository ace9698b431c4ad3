"""Apply a tier preset to one model: a config-user.yaml entry in the checkout, or a command line.

TGWUI reads per-model load settings from ``<models>/config-user.yaml`` as ``"<model name>$": {key:
value}`` (its own "save settings" writes that exact-match pattern); we merge into that entry and
keep every other entry and key. Sampler presets (``user_data/presets``) are never touched.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pocketpack.presets import MODEL_CLASSES, Entry, load_preset
from pocketpack.presets.tgwui import TGWUIVersion, detect_version, load_settings
from pocketpack.vram.errors import VramError


@dataclass
class Applied:
    tier: str
    model: str
    model_class: str
    entry: Entry
    flags: list[str]
    settings: dict
    notes: list[str] = field(default_factory=list)
    written: Path | None = None
    preset_source: str = "generated"   # the preset file used, or "generated"

    @property
    def command(self) -> str:
        return "python server.py " + shlex.join(["--model", self.model, *self.flags])


def class_of(n_params: float) -> str:
    """The model class of a parameter count."""
    b = n_params / 1e9
    return "3B" if b < 5 else "7-8B" if b < 10.5 else "13-14B" if b < 20 else "30-34B" if b < 45 else "70B"


def _guess_class(version: TGWUIVersion, model: str) -> str:
    from pocketpack.vram.inspect import inspect_model

    path = version.models_dir / model
    if not path.exists():
        raise VramError(f"{model}: not in {version.models_dir}; give --class ({', '.join(MODEL_CLASSES)})")
    return class_of(inspect_model(path).n_params)


def apply_preset(tier: str, model: str, model_class: str | None = None, tgwui: str | Path | None = None,
                 write: bool = True, user_data: str | Path | None = None) -> Applied:
    """Apply ``tier`` to ``model``; the preset is the checkout's installed copy when there is one
    (:func:`pocketpack.presets.preset_dirs`), and ``write`` merges it into config-user.yaml."""
    if not model or "/" in model or "\\" in model or model in (".", ".."):
        raise VramError(f"model name {model!r}: give the folder or file name inside the models folder")
    version = detect_version(tgwui)
    if model_class is None:
        if tgwui is None:
            raise VramError(f"without --tgwui give --class ({', '.join(MODEL_CLASSES)})")
        model_class = _guess_class(version, model)
    if model_class not in MODEL_CLASSES:
        raise VramError(f"unknown model class {model_class!r}; classes: {', '.join(MODEL_CLASSES)}")
    preset = load_preset(tier, tgwui=tgwui, user_data=user_data)
    entry = preset.models.get(model_class)
    if entry is None:
        raise VramError(f"no {model_class} model fits the {tier} tier; try a smaller class")
    flags, settings, notes = load_settings(entry, version)
    applied = Applied(tier, model, model_class, entry, flags, settings, notes, preset_source=preset.source)
    if write and tgwui is not None:
        applied.written = write_user_config(version.models_dir / "config-user.yaml", model, settings)
    return applied


def write_user_config(path: Path, model: str, settings: dict) -> Path:
    """Merge ``settings`` into the model's exact-match entry, keeping everything else."""
    if path.name != "config-user.yaml" or "presets" in path.parts:
        raise VramError(f"refusing to write {path}: only <models>/config-user.yaml is ever written")
    data: dict = {}
    if path.is_file():
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise VramError(f"{path}: not valid YAML, left untouched ({str(exc).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise VramError(f"{path}: expected a mapping of model patterns, left untouched")
    key = f"{model}$"
    entry = dict(data.get(key) or {})
    entry.update(settings)
    data[key] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path
