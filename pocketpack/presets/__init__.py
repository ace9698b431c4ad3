"""Hardware-tier presets: for a machine class, which format and flags each model class should use.

Not TGWUI's sampler presets (``user_data/presets``): these describe how to *load* a model. Each
``presets/<tier>.yaml`` is generated from the VRAM estimator (``python -m pocketpack.presets.generate``)
and the tests re-check every entry against it, so a preset never recommends what does not fit.

Each tier maps every model class to a recommendation twice over: ``models`` is the best format
whatever the files (version 1's only field), and ``sources`` says what to do with the files a
user actually has -- ``gguf``, ``gptq``, ``hf`` (fp16/bf16 safetensors: 16-bit if it fits, else
8-bit, else NF4 with double quant, offloading with --gpu-split where partial), ``awq`` and
``exl2`` -- each entry sized by the estimator. A version-1 file (a user's older installed copy)
keeps its ``models`` and gets the per-source entries generated.

Where a preset is read from, first found wins (:func:`preset_dirs`): the folder the installer
copied them to in a TGWUI checkout -- ``user_data/pocketpack/presets`` (``pocketpack-data/presets``
in checkouts before v3.1, which have no ``user_data/``), found from ``--tgwui``, TGWUI's
``shared.user_data_dir`` or the working directory when it is a checkout (TGWUI runs from its root)
-- then this repository's ``presets/``, and last the estimator itself (an installed wheel has no
``presets/``), so a user's edited copy in the checkout is the one used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pocketpack.vram.errors import VramError

PRESET_DIR = Path(__file__).resolve().parents[2] / "presets"
FORMAT_VERSION = 2
# tier -> (VRAM GiB, assumed RAM GiB, description)
TIERS = {
    "cpu-8gb": (0, 8, "CPU only, 8 GB RAM"),
    "cpu-16gb": (0, 16, "CPU only, 16 GB RAM"),
    "cpu-32gb": (0, 32, "CPU only, 32 GB RAM"),
    "gpu-4gb": (4, 16, "NVIDIA GPU with 4 GB (GTX 1650, laptop 3050), 16 GB RAM"),
    "gpu-6gb": (6, 16, "NVIDIA GPU with 6 GB (RTX 2060, 3060 laptop), 16 GB RAM"),
    "gpu-8gb": (8, 16, "NVIDIA GPU with 8 GB (RTX 3060 Ti, 3070, 4060), 16 GB RAM"),
    "gpu-12gb": (12, 32, "NVIDIA GPU with 12 GB (RTX 3060, 4070), 32 GB RAM"),
    "gpu-16gb": (16, 32, "NVIDIA GPU with 16 GB (RTX 4060 Ti 16G, 4080), 32 GB RAM"),
    "gpu-24gb": (24, 64, "NVIDIA GPU with 24 GB (RTX 3090, 4090), 64 GB RAM"),
    "gpu-48gb": (48, 64, "48 GB of GPU memory (A6000, 2x 3090), 64 GB RAM"),
    "gpu-80gb": (80, 128, "80 GB of GPU memory (A100/H100 80G), 128 GB RAM"),
}
MODEL_CLASSES = ("3B", "7-8B", "13-14B", "30-34B", "70B")


@dataclass
class Entry:
    """How one model class loads on a tier."""

    model_class: str
    format: str
    loader: str
    ctx_size: int
    cache_type: str
    gpu_layers: int | None
    vram_gib: float
    ram_gib: float
    quality_loss_pct: float
    placement: str
    gpu_split: float | None = None       # Transformers offload: GiB of weights on the GPU (--gpu-split)
    compute_dtype: str | None = None     # bitsandbytes 4-bit compute dtype (--compute_dtype)

    def to_dict(self) -> dict:
        d = {"format": self.format, "loader": self.loader, "ctx_size": self.ctx_size,
             "cache_type": self.cache_type, "gpu_layers": self.gpu_layers,
             "estimated_vram_gib": self.vram_gib, "estimated_ram_gib": self.ram_gib,
             "quality_loss_pct": self.quality_loss_pct, "placement": self.placement}
        if self.gpu_split is not None:
            d["gpu_split"] = self.gpu_split
        if self.compute_dtype is not None:
            d["compute_dtype"] = self.compute_dtype
        return d


@dataclass
class Preset:
    tier: str
    description: str
    vram_gib: float
    ram_gib: float
    models: dict[str, Entry | None] = field(default_factory=dict)
    source: str = "generated"   # the file it was read from, or "generated" (built from the estimator)
    # per kind of files (gguf, gptq, hf, awq, exl2): model class -> entry, None where nothing fits
    sources: dict[str, dict[str, Entry | None]] = field(default_factory=dict)
    sources_generated: bool = False   # the file predates per-source entries (version 1): they were generated

    def to_dict(self) -> dict:
        return {"version": FORMAT_VERSION, "kind": "pocketpack-hardware-tier", "tier": self.tier,
                "description": self.description, "vram_gib": self.vram_gib, "ram_gib": self.ram_gib,
                "models": {k: (v.to_dict() if v else None) for k, v in self.models.items()},
                "sources": {src: {k: (v.to_dict() if v else None) for k, v in entries.items()}
                            for src, entries in self.sources.items()}}


def _entry(name: str, d: dict | None) -> Entry | None:
    if d is None:
        return None
    try:
        return Entry(name, str(d["format"]), str(d["loader"]), int(d["ctx_size"]), str(d.get("cache_type", "fp16")),
                     None if d.get("gpu_layers") is None else int(d["gpu_layers"]),
                     float(d["estimated_vram_gib"]), float(d["estimated_ram_gib"]),
                     float(d.get("quality_loss_pct", 0)), str(d.get("placement", "gpu")),
                     None if d.get("gpu_split") is None else float(d["gpu_split"]),
                     None if d.get("compute_dtype") is None else str(d["compute_dtype"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise VramError(f"preset entry {name}: missing or bad field ({exc})") from None


def list_tiers() -> list[str]:
    return list(TIERS)


def is_checkout(root: Path) -> bool:
    """A text-generation-webui checkout: TGWUI runs from this folder."""
    return (Path(root) / "modules" / "shared.py").is_file()


def installed_dir(root: str | Path) -> Path:
    """Where installer/install.py copies the presets in the TGWUI checkout at ``root``."""
    root = Path(root)
    return root / "user_data" / "pocketpack" / "presets" if (root / "user_data").is_dir() \
        else root / "pocketpack-data" / "presets"


def preset_dirs(tgwui: str | Path | None = None, user_data: str | Path | None = None) -> list[Path]:
    """Folders to read presets from, first found wins: the checkout's copy, then the repository's."""
    dirs: list[Path] = []
    if user_data:
        dirs.append(Path(user_data).absolute() / "pocketpack" / "presets")
    root = Path(tgwui).absolute() if tgwui else (Path.cwd() if is_checkout(Path.cwd()) else None)
    if root is not None:
        dirs.append(installed_dir(root))
    dirs.append(PRESET_DIR)
    unique: list[Path] = []
    for d in dirs:
        if d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


def find_preset(tier: str, tgwui: str | Path | None = None, user_data: str | Path | None = None) -> Path | None:
    """The file ``tier`` is read from, or None when no folder has it (it is then generated)."""
    for folder in preset_dirs(tgwui, user_data):
        path = folder / f"{tier}.yaml"
        if path.is_file():
            return path
    return None


def load_preset(tier: str, directory: Path | None = None, tgwui: str | Path | None = None,
                user_data: str | Path | None = None) -> Preset:
    """Read ``<tier>.yaml`` from ``directory``, else from :func:`preset_dirs`; without any file, build it."""
    if tier not in TIERS:
        raise VramError(f"unknown tier {tier!r}; tiers: {', '.join(TIERS)}")
    path = (Path(directory) / f"{tier}.yaml") if directory else find_preset(tier, tgwui, user_data)
    if path is None or not path.is_file():
        from pocketpack.presets.generate import build_preset

        return build_preset(tier)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise VramError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except OSError as exc:
        raise VramError(f"{path}: cannot read ({exc.strerror})") from None
    if not isinstance(data, dict) or data.get("kind") != "pocketpack-hardware-tier":
        raise VramError(f"{path}: not a Pocket Pack hardware-tier preset")
    try:
        preset = Preset(str(data["tier"]), str(data.get("description", "")), float(data["vram_gib"]),
                        float(data["ram_gib"]), source=str(path))
    except (KeyError, TypeError, ValueError) as exc:
        raise VramError(f"{path}: missing or bad field ({exc})") from None
    models = data.get("models") or {}
    if not isinstance(models, dict):
        raise VramError(f"{path}: 'models' must map model classes to entries")
    preset.models = {k: _entry(k, v) for k, v in models.items()}
    sources = data.get("sources")
    if sources is None:  # a version-1 file: per-source entries from the estimator
        from pocketpack.presets.generate import build_sources

        preset.sources = build_sources(preset.tier)
        preset.sources_generated = True
    else:
        from pocketpack.presets.tgwui import SOURCES

        if not isinstance(sources, dict) or any(not isinstance(v, dict) for v in sources.values()):
            raise VramError(f"{path}: 'sources' must map gguf/gptq/hf/awq/exl2 to model classes")
        unknown = [k for k in sources if k not in SOURCES]
        if unknown:
            raise VramError(f"{path}: unknown source(s) {', '.join(map(str, unknown))}; sources: {', '.join(SOURCES)}")
        preset.sources = {src: {k: _entry(f"{src} {k}", v) for k, v in entries.items()}
                          for src, entries in sources.items()}
    return preset


def source_entry(preset: Preset, source: str, model_class: str) -> Entry | None:
    """The entry for files of ``source`` and a model class; a VramError names the valid sources."""
    from pocketpack.presets.tgwui import SOURCES

    if source not in SOURCES:
        raise VramError(f"unknown source {source!r}; sources: {', '.join(SOURCES)}")
    return preset.sources.get(source, {}).get(model_class)


def tier_for(vram_gib: float, ram_gib: float) -> str:
    """The largest tier this machine covers."""
    best = "cpu-8gb"
    for name, (vram, ram, _) in TIERS.items():
        if vram_gib <= 0 and vram == 0 and ram <= ram_gib + 0.5 or vram_gib > 0 and 0 < vram <= vram_gib + 0.3:
            best = name
    return best


def check_preset(preset: Preset) -> list[str]:
    """Re-estimate every entry; a line per entry that does not fit the tier (empty: all fit)."""
    from pocketpack.vram.advise import RAM_RESERVE_GIB, VRAM_RESERVE_GIB, class_info
    from pocketpack.vram.estimate import estimate

    problems = []
    entries = [(name, entry, None) for name, entry in preset.models.items()]
    entries += [(name, entry, src) for src, per_class in preset.sources.items() for name, entry in per_class.items()]
    for name, entry, src in entries:
        if entry is None:
            continue
        if src:
            from pocketpack.presets.tgwui import source_of_format

            if source_of_format(entry.format) != src:
                problems.append(f"{preset.tier} {src} {name}: {entry.format} is not a {src} format")
                continue
            name_shown = f"{src} {name}"
        else:
            name_shown = name
        gguf = entry.format.startswith("gguf-")
        try:
            e = estimate(class_info(name), entry.format, ctx=entry.ctx_size, cache_type=entry.cache_type,
                         gpu_layers=entry.gpu_layers if gguf else None, gpu_split_gib=entry.gpu_split)
        except VramError as exc:
            problems.append(f"{preset.tier} {name_shown}: {exc}")
            continue
        name = name_shown
        vram = e.total_gib if preset.vram_gib > 0 else 0.0
        if preset.vram_gib <= 0 and (not gguf or entry.gpu_layers):
            problems.append(f"{preset.tier} {name}: {entry.format} needs a GPU")
        if vram > preset.vram_gib - (VRAM_RESERVE_GIB if preset.vram_gib > 0 else 0):
            problems.append(f"{preset.tier} {name}: {entry.format} needs {vram:.2f} GiB VRAM, tier has {preset.vram_gib}")
        if e.ram_gib > preset.ram_gib - RAM_RESERVE_GIB:
            problems.append(f"{preset.tier} {name}: {entry.format} needs {e.ram_gib:.2f} GiB RAM, tier has {preset.ram_gib}")
    return problems
