"""Apply a tier preset to one model: its own files, its own limits, the loader its host accepts.

Which entry: the tier's entry for the model's class *and the kind of files it has* (a .gguf gets a
llama.cpp entry, a Transformers folder a Transformers one, a GPTQ checkpoint its GPTQ loader -- never
another source's entry). With the files on disk the entry is re-checked against the estimator for that
very model: its own format (a Q4_K_M file, a gptq-8bit-g32 checkpoint), a context no larger than its
``max_position_embeddings``, and the tier's memory; where the preset's settings do not fit that model,
the largest that do are used and a note says so; where nothing fits, it is refused with a line.

Where it is written:
- inside a TGWUI checkout: ``<models>/config-user.yaml`` as ``"<model name>$": {key: value}`` (TGWUI's
  own "save settings" writes that exact-match pattern); we merge into that entry and keep every
  other entry and key. Sampler presets (``user_data/presets``) are never touched;
- in the standalone host (``pocketpack serve``): ``<user_data>/pocketpack/model-settings.yaml``
  (:mod:`pocketpack.host.model_settings`), read the next time that model is loaded.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from pocketpack.presets import MODEL_CLASSES, TIERS, Entry, load_preset, source_entry
from pocketpack.presets.tgwui import (
    SOURCE_HELP,
    SOURCES,
    detect_version,
    load_settings,
    model_sources,
    source_of_format,
    sources_from_name,
    standalone,
)
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
    source: str = "gguf"               # the kind of files the model has (gguf, gptq, hf, awq, exl2)
    host: bool = False                 # written for the standalone host, not TGWUI

    @property
    def command(self) -> str:
        prog = "pocketpack serve" if self.host else "python server.py"
        return prog + " " + shlex.join(["--model", self.model, *self.flags])


def class_of(n_params: float) -> str:
    """The model class of a parameter count."""
    b = n_params / 1e9
    return "3B" if b < 5 else "7-8B" if b < 10.5 else "13-14B" if b < 20 else "30-34B" if b < 45 else "70B"


def _sources_line(model: str, sources: list[str]) -> str:
    have = ", ".join(f"{s} ({SOURCE_HELP[s]})" for s in sources)
    return f"{model} has {have}" if sources else f"{model} has no model files Pocket Pack recognises"


def pick_source(model: str, sources: list[str], asked: str | None) -> str:
    """The source to use: ``asked`` when the files give it, else the one the files give (a folder
    holding a .gguf loads with llama.cpp in TGWUI, whatever else is beside it)."""
    if asked is not None and asked not in SOURCES:
        raise VramError(f"unknown source {asked!r}; sources: {', '.join(SOURCES)}")
    if asked:
        if sources and asked not in sources:
            raise VramError(f"{_sources_line(model, sources)}: it cannot give --source {asked}; "
                            f"use --source {' or '.join(sources)}")
        return asked
    if not sources:
        raise VramError(f"cannot tell what files {model} has (not in the models folder): "
                        f"give --source {'|'.join(SOURCES)}")
    return "gguf" if "gguf" in sources else sources[0]


def apply_preset(tier: str, model: str, model_class: str | None = None, tgwui: str | Path | None = None,
                 write: bool = True, user_data: str | Path | None = None, source: str | None = None,
                 host: bool = False, models_dir: str | Path | None = None) -> Applied:
    """Apply ``tier`` to ``model``: the preset is the checkout's installed copy when there is one
    (:func:`pocketpack.presets.preset_dirs`); ``write`` merges it into config-user.yaml (TGWUI) or,
    with ``host``, into the standalone host's model-settings.yaml under ``user_data``."""
    if not model or "/" in model or "\\" in model or model in (".", ".."):
        raise VramError(f"model name {model!r}: give the folder or file name inside the models folder")
    if tier not in TIERS:
        raise VramError(f"unknown tier {tier!r}; tiers: {', '.join(TIERS)}")
    if host:
        version = standalone()
        folder = Path(models_dir or "models")
    else:
        version = detect_version(tgwui)
        folder = Path(models_dir) if models_dir else (version.models_dir if tgwui is not None else None)
    path = folder / model if folder is not None else None
    on_disk = path is not None and path.exists()
    sources = model_sources(path) if on_disk else sources_from_name(model)
    chosen = pick_source(model, sources, source)
    info = _inspect(path, chosen) if on_disk else None
    if model_class is None:
        if info is None:
            where = f"not in {folder}" if folder is not None else "no --tgwui checkout or --host models folder to look in"
            raise VramError(f"{model}: {where}; give --class ({', '.join(MODEL_CLASSES)})")
        model_class = class_of(info.n_params)
    if model_class not in MODEL_CLASSES:
        raise VramError(f"unknown model class {model_class!r}; classes: {', '.join(MODEL_CLASSES)}")
    preset = load_preset(tier, tgwui=tgwui if not host else None, user_data=user_data if not host else None)
    entry = source_entry(preset, chosen, model_class)
    overall = preset.models.get(model_class)
    if overall is not None and source_of_format(overall.format) == chosen:
        entry = overall  # the tier's best format is of this source: the same answer (and a user's edit of it)
    notes: list[str] = []
    if preset.vram_gib <= 0 and chosen != "gguf":
        raise VramError(f"{model} ({chosen}) needs a GPU: the {tier} tier has none; use its GGUF release")
    if info is not None:
        # the class entry is the reference; the model's own files decide (a 7B may fit where the 8B class does not)
        entry, fit_notes = fit_to_model(entry, info, chosen, tier, model, model_class)
        notes += fit_notes
    elif entry is None:
        raise VramError(f"{model} ({chosen}, {model_class}) does not fit on the {tier} tier; "
                        "try a smaller model or a bigger tier")
    else:
        notes.append(f"{model} is not in the models folder: the {model_class} {chosen} entry is used unchecked")
    flags, settings, load_notes = load_settings(entry, version, chosen, ram_gib=preset.ram_gib - 2)
    notes += load_notes
    if preset.sources_generated:
        notes.append(f"{preset.source} predates per-source entries: the {chosen} entry comes from the estimator")
    applied = Applied(tier, model, model_class, entry, flags, settings, notes, preset_source=preset.source,
                      source=chosen, host=host)
    if write and host:
        from pocketpack.host.model_settings import save_model_settings

        applied.written = save_model_settings(Path(user_data or "user_data"), model, settings,
                                              {"tier": tier, "source": chosen, "format": entry.format})
    elif write and tgwui is not None:
        # TGWUI reads and writes it in the models folder it runs with (shared.args.model_dir)
        applied.written = write_user_config((folder or version.models_dir) / "config-user.yaml", model, settings)
    return applied


def _inspect(path: Path, source: str):
    """The model's own description for ``source``: a folder holding a .gguf beside a config.json
    is read as the .gguf for ``gguf`` and as the config.json (and its safetensors) otherwise."""
    from pocketpack.vram.inspect import inspect_gguf, inspect_model

    if source == "gguf" and path.is_dir():
        ggufs = sorted(f for f in path.glob("*.gguf") if "mmproj" not in f.name.lower())
        firsts = [f for f in ggufs if "-of-" not in f.name or "-00001-of-" in f.name]
        return inspect_gguf((firsts or ggufs)[0])
    return inspect_model(path)


def fit_to_model(entry: Entry | None, info, source: str, tier: str, model: str, model_class: str
                 ) -> tuple[Entry, list[str]]:
    """The entry re-checked for this very model: its own format and context limit on the tier's
    machine. Returns the entry to apply (possibly changed, with notes), or raises a VramError.
    ``entry`` None: the class reference does not fit the tier; the model's own files may."""
    from pocketpack.presets.generate import MAX_CTX, entry_for, tier_machine
    from pocketpack.vram.advise import (
        RAM_RESERVE_GIB,
        VRAM_RESERVE_GIB,
        native_float_format,
    )
    from pocketpack.vram.estimate import estimate

    notes: list[str] = []
    machine = tier_machine(tier)
    native = info.native
    max_ctx = info.arch.max_context
    if entry is None:
        own = entry_for(info, source, machine, model_class, fmt=native, max_ctx=min(MAX_CTX, max_ctx),
                        min_ctx=min(2048, max_ctx))
        if own is None:
            raise VramError(f"{model} ({native or source}) does not fit the {tier} tier; "
                            "try a smaller file or a bigger tier")
        notes.append(f"the tier's {model_class} {source} reference does not fit, {model} does: "
                     f"{own.format} at ctx {own.ctx_size}")
        return own, notes
    fmt = entry.format
    if native:
        fmt = native  # a pre-quantised file (GGUF, GPTQ, AWQ, EXL2, bitsandbytes) loads as itself
    elif fmt in ("bf16", "fp16"):
        fmt = native_float_format(info)
    ctx = min(entry.ctx_size, max_ctx)
    if ctx < entry.ctx_size:
        notes.append(f"ctx {ctx}: {model}'s max_position_embeddings (the preset says {entry.ctx_size})")
    candidate = replace(entry, format=fmt, ctx_size=ctx)
    try:
        e = estimate(info, fmt, ctx=ctx, cache_type=candidate.cache_type if fmt.startswith(("gguf-", "exl2-")) else "fp16",
                     gpu_layers=candidate.gpu_layers if fmt.startswith("gguf-") else None,
                     gpu_split_gib=candidate.gpu_split, device="gpu" if machine.has_gpu else "cpu")
        vram = e.total_gib if machine.has_gpu else 0.0
        fits = vram <= max(0.0, machine.vram_gib - VRAM_RESERVE_GIB) and e.ram_gib <= machine.ram_gib - RAM_RESERVE_GIB
    except VramError:
        fits, e = False, None
    if fits:
        return replace(candidate, vram_gib=round(e.total_gib if machine.has_gpu else 0.0, 2),
                       ram_gib=round(e.ram_gib, 2)), notes
    # the preset's settings do not fit this file: the largest that do, for its own format
    own = entry_for(info, source, machine, model_class, fmt=fmt if (native or source != "hf") else None,
                    max_ctx=min(MAX_CTX, max_ctx), min_ctx=min(2048, max_ctx))
    if own is None:
        need = f" (needs {e.total_gib:.1f} GiB VRAM, {e.ram_gib:.1f} GiB RAM at ctx {ctx})" if e is not None else ""
        raise VramError(f"{model} ({fmt}) does not fit the {tier} tier{need}; try a smaller file or a bigger tier")
    notes.append(f"the {model_class} preset ({entry.format}, ctx {entry.ctx_size}) does not fit {model} "
                 f"({fmt}): {own.format} at ctx {own.ctx_size} instead")
    return own, notes


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
