"""Which TGWUI a checkout is, and the flags / config-user.yaml keys that version accepts.

Read from the checkout, never imported: ``user_data/`` exists since v3.1 (2025-04); the flag
names are looked up in ``modules/shared.py`` and the loaders in ``modules/loaders.py``. History
that matters here (oobabooga/text-generation-webui, dated by its git log):

- ``--n-gpu-layers`` → ``--gpu-layers`` (2025-05); ``--n_ctx``/``--max_seq_len`` → ``--ctx-size`` (2025-05);
  ``--cache_8bit``/``--cache_4bit`` → ``--cache_type`` (2025-01) → ``--cache-type`` (2025-05);
- GPTQ: the GPTQ-for-LLaMa loader (2023-03 .. 2024-05-21) and AutoGPTQ (2023-06 .. 2025-01-08) took
  ``--wbits``/``--groupsize``, deleted 2025-04-18; ExLlamav2_HF loaded GPTQ and EXL2 from 2023-09-12 until
  ExLlamaV2 was removed on 2026-03-05; since then GPTQ loads with the Transformers loader (gptqmodel)
  and EXL2 does not load at all (ExLlamav3 reads EXL3 only);
- AWQ: the AutoAWQ loader 2023-10-05 .. 2024-07-23, then the Transformers loader;
- Transformers offload: ``--gpu-memory`` (until 2025-04-20), then ``--gpu-split``; ``--cpu-memory`` throughout.

The standalone host (``pocketpack serve``) is a version too (:func:`standalone`): TGWUI's current
flags plus ``--wbits``/``--groupsize``, and only the loaders the pack runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pocketpack.vram.errors import VramError

SOURCES = ("gguf", "gptq", "hf", "awq", "exl2")
SOURCE_HELP = {"gguf": "a llama.cpp .gguf file", "gptq": "a GPTQ checkpoint (quantize_config / quantization_config)",
               "hf": "fp16/bf16 safetensors (a Transformers folder)", "awq": "an AWQ checkpoint",
               "exl2": "an ExLlamaV2 EXL2 checkpoint"}


@dataclass
class TGWUIVersion:
    root: Path | None
    user_data: bool = True              # models live in user_data/models
    flags: set[str] = field(default_factory=set)
    loaders: set[str] = field(default_factory=set)
    host: bool = False                  # the pack's own standalone host, not TGWUI

    @property
    def current(self) -> bool:
        return "--gpu-layers" in self.flags or not self.flags

    def has(self, flag: str) -> bool:
        return flag in self.flags if self.flags else flag in CURRENT_FLAGS

    def has_loader(self, name: str) -> bool:
        return name in (self.loaders or CURRENT_LOADERS)

    @property
    def label(self) -> str:
        if self.host:
            return "the standalone host (pocketpack serve)"
        return f"the TGWUI checkout {self.root}" if self.root else "today's TGWUI"

    @property
    def models_dir(self) -> Path:
        base = self.root or Path(".")
        return base / "user_data" / "models" if self.user_data else base / "models"


CURRENT_FLAGS = {"--gpu-layers", "--n-gpu-layers", "--ctx-size", "--cache-type", "--load-in-4bit", "--load-in-8bit",
                 "--use_double_quant", "--quant_type", "--compute_dtype", "--bf16", "--loader", "--gpu-split",
                 "--cpu-memory"}
CURRENT_LOADERS = {"llama.cpp", "Transformers", "ExLlamav3_HF", "ExLlamav3", "TensorRT-LLM"}
HOST_LOADERS = {"llama.cpp", "Transformers", "GPTQ", "AutoGPTQ"}


def standalone() -> TGWUIVersion:
    """The pack's own host: TGWUI's flags of today, GPTQ through gptqmodel (``--loader GPTQ``)."""
    flags = {"--gpu-layers", "--n-gpu-layers", "--ctx-size", "--cache-type", "--load-in-4bit", "--load-in-8bit",
             "--use_double_quant", "--quant_type", "--compute_dtype", "--bf16", "--loader", "--wbits", "--groupsize"}
    return TGWUIVersion(None, True, flags, set(HOST_LOADERS), host=True)


def detect_version(root: str | Path | None) -> TGWUIVersion:
    """Inspect a TGWUI checkout; None describes today's TGWUI."""
    if root is None:
        return TGWUIVersion(None, True, set())
    root = Path(root)
    shared = root / "modules" / "shared.py"
    if not shared.is_file():
        raise VramError(f"{root}: not a text-generation-webui checkout (no modules/shared.py)")
    text = shared.read_text(encoding="utf-8", errors="replace")
    flags = set(re.findall(r"""['"](--[A-Za-z0-9_-]+)['"]""", text))
    loaders: set[str] = set()
    loaders_py = root / "modules" / "loaders.py"
    if loaders_py.is_file():
        loaders = set(re.findall(r"""^\s*['"]([A-Za-z0-9_.+-]+)['"]\s*:\s*\[""",
                                 loaders_py.read_text(encoding="utf-8", errors="replace"), flags=re.MULTILINE))
    if not loaders:  # before modules/loaders.py (2023-06): Transformers, llama.cpp and GPTQ-for-LLaMa
        loaders = {"Transformers", "llama.cpp"} | ({"GPTQ-for-LLaMa"} if "--wbits" in flags else set())
    return TGWUIVersion(root, (root / "user_data").is_dir(), flags, loaders)


class CannotLoad(VramError):
    """This TGWUI (or the host) has no loader for the model's files; the message says what to do."""


def _ctx(version: TGWUIVersion, ctx: int, flags: list, settings: dict, spellings=("--ctx-size", "--n_ctx")) -> None:
    flag = next((f for f in spellings if version.has(f)), spellings[-1])
    flags += [flag, str(ctx)]
    settings[flag.lstrip("-").replace("-", "_")] = ctx


def _cache(version: TGWUIVersion, cache: str, flags: list, settings: dict, notes: list, ctx: int,
           exllama: bool = False) -> None:
    if cache == "fp16":
        return
    value = {"q8_0": "q8", "q4_0": "q4"}[cache] if exllama else cache
    flag = next((f for f in ("--cache-type", "--cache_type") if version.has(f)), None)
    if flag:
        flags += [flag, value]
        settings["cache_type"] = value
        return
    old = {"q8_0": "--cache_8bit", "q4_0": "--cache_4bit"}[cache]
    if version.has(old):
        flags.append(old)
        settings[old.lstrip("-")] = True
    else:
        notes.append(f"this TGWUI has no quantised KV cache: use ctx {ctx // 2} instead")


def _offload_flags(entry, version: TGWUIVersion, ram_gib: float, flags: list, settings: dict) -> None:
    """GPU/CPU split for a partially offloaded Transformers entry, in this version's spelling."""
    split = f"{entry.gpu_split:g}"
    cpu = f"{max(1, int(ram_gib)):d}"
    if version.has("--gpu-split"):
        flags += ["--gpu-split", split]
        settings["gpu_split"] = split
    elif version.has("--gpu-memory"):
        flags += ["--gpu-memory", split]
        settings["gpu_memory_0"] = split
    else:
        raise CannotLoad(f"{version.label} has no --gpu-split: this entry offloads layers to RAM; "
                         "use a GGUF with --gpu-layers instead")
    if version.has("--cpu-memory"):
        flags += ["--cpu-memory", cpu]
        settings["cpu_memory"] = int(cpu)


def load_settings(entry, version: TGWUIVersion, source: str | None = None, ram_gib: float | None = None
                  ) -> tuple[list[str], dict, list[str]]:
    """(command-line flags, config-user.yaml settings, notes) for one preset entry on this version.

    ``source`` is the kind of files the entry is for (default: from its format); raises
    :class:`CannotLoad` when this version has no loader for them."""
    flags: list[str] = []
    settings: dict = {}
    notes: list[str] = []
    fmt = entry.format
    source = source or source_of_format(fmt)
    ctx = entry.ctx_size
    if fmt.startswith("gguf-"):
        # an explicit count: today -1 means "let llama-server --fit decide", not "all layers"
        ngl_value = int(entry.gpu_layers or 0)
        gpu_flag = "--gpu-layers" if version.has("--gpu-layers") else "--n-gpu-layers"
        flags += ["--loader", "llama.cpp", gpu_flag, str(ngl_value)]
        settings.update({"loader": "llama.cpp", gpu_flag.lstrip("-").replace("-", "_"): ngl_value})
        _ctx(version, ctx, flags, settings)
        _cache(version, entry.cache_type, flags, settings, notes, ctx)
    elif source == "hf" or fmt in ("int8", "bf16", "fp16", "fp32") or fmt.startswith(("nf4", "fp4")):
        flags += ["--loader", "Transformers"]
        settings["loader"] = "Transformers"
        if fmt == "int8":
            flags.append("--load-in-8bit")
            settings["load_in_8bit"] = True
        elif fmt.startswith(("nf4", "fp4")):
            quant = fmt.split("-")[0]
            dtype = entry.compute_dtype or "bfloat16"
            flags += ["--load-in-4bit", "--quant_type", quant, "--compute_dtype", dtype]
            settings.update({"load_in_4bit": True, "quant_type": quant, "compute_dtype": dtype})
            if fmt.endswith("-dq"):
                flags.append("--use_double_quant")
                settings["use_double_quant"] = True
        elif fmt == "bf16":
            flags.append("--bf16")
            settings["bf16"] = True
        if entry.gpu_split:
            if version.host:
                raise CannotLoad("the standalone host has no --gpu-split: this entry offloads layers to RAM; "
                                 "use a smaller format, a bigger tier or a GGUF with --gpu-layers")
            _offload_flags(entry, version, ram_gib if ram_gib is not None else 8, flags, settings)
        _truncation(version, ctx, settings)
    elif source == "gptq":
        _gptq(entry, version, flags, settings, notes)
    elif source == "awq":
        if version.host:
            raise CannotLoad("the standalone host has no AWQ loader (it runs llama.cpp, Transformers and GPTQ); "
                             "load this model in TGWUI, or use its GGUF or GPTQ release")
        loader = "AutoAWQ" if version.has_loader("AutoAWQ") else "Transformers"
        flags += ["--loader", loader]
        settings["loader"] = loader
        _truncation(version, ctx, settings)
        if loader == "Transformers":
            notes.append("AWQ through the Transformers loader needs its AWQ kernels installed in TGWUI's Python "
                         "(autoawq, or gptqmodel with recent transformers)")
    elif source == "exl2":
        loader = next((x for x in ("ExLlamav2_HF", "ExLlamav2") if version.has_loader(x)), None)
        if loader is None:
            raise CannotLoad(f"{version.label} cannot load EXL2: " + (
                "the standalone host runs llama.cpp, Transformers and GPTQ" if version.host else
                "ExLlamaV2 was removed from TGWUI on 2026-03-05 (ExLlamav3 reads EXL3 only)")
                + "; use the model's GGUF, GPTQ or EXL3 release")
        flags += ["--loader", loader]
        settings["loader"] = loader
        _ctx(version, ctx, flags, settings, ("--ctx-size", "--max_seq_len"))
        _cache(version, entry.cache_type, flags, settings, notes, ctx, exllama=True)
    else:
        notes.append(f"{fmt}: no loader flags known for this TGWUI")
    return flags, settings, notes


def _truncation(version: TGWUIVersion, ctx: int, settings: dict) -> None:
    """The Transformers loader takes no context flag: TGWUI's per-model truncation_length sets it."""
    if not version.host:
        settings["truncation_length"] = ctx
    else:
        settings["ctx_size"] = ctx


def _gptq(entry, version: TGWUIVersion, flags: list, settings: dict, notes: list) -> None:
    bits, group = (re.match(r"gptq-(\d)bit-g(-?\d+)", entry.format) or re.match(r"()()", "")).groups()
    bits, group = bits or "4", group or "128"
    if version.host:
        flags += ["--loader", "GPTQ", "--wbits", bits, "--groupsize", group]
        settings.update({"loader": "GPTQ", "wbits": int(bits), "groupsize": int(group), "ctx_size": entry.ctx_size})
        return
    old = next((x for x in ("AutoGPTQ", "GPTQ-for-LLaMa") if version.has_loader(x)), None)
    if version.has("--wbits") and old:
        flags += ["--loader", old, "--wbits", bits, "--groupsize", group]
        settings.update({"loader": old, "wbits": int(bits), "groupsize": int(group)})
        _truncation(version, entry.ctx_size, settings)
        return
    if version.has_loader("ExLlamav2_HF"):
        flags += ["--loader", "ExLlamav2_HF"]
        settings["loader"] = "ExLlamav2_HF"
        _ctx(version, entry.ctx_size, flags, settings, ("--ctx-size", "--max_seq_len"))
        notes.append("ExLlamav2_HF reads bits and group size from the checkpoint"
                     + (" (--wbits is a no-op since AutoGPTQ left, 2025-01-08)" if version.has("--wbits") else ""))
        return
    flags += ["--loader", "Transformers"]
    settings["loader"] = "Transformers"
    _truncation(version, entry.ctx_size, settings)
    notes.append("this TGWUI has no --wbits: GPTQ checkpoints load with the Transformers loader, which "
                 "reads bits and group size from the model's quantization_config (needs gptqmodel)")


def source_of_format(fmt: str) -> str:
    """The kind of files a format comes from."""
    if fmt.startswith("gguf-"):
        return "gguf"
    for prefix in ("gptq", "awq", "exl2"):
        if fmt.startswith(prefix + "-"):
            return prefix
    return "hf"


def model_sources(path: str | Path) -> list[str]:
    """The sources a model's files can give (a folder may hold a .gguf beside safetensors)."""
    p = Path(path)
    if p.is_file():
        return ["gguf"] if p.suffix.lower() == ".gguf" else []
    if not p.is_dir():
        return []
    out: list[str] = []
    if any(f.suffix.lower() == ".gguf" for f in p.iterdir() if f.is_file()):
        out.append("gguf")
    if (p / "config.json").is_file() or (p / "quantize_config.json").is_file():
        from pocketpack.host.flags import checkpoint_quant_method

        method = checkpoint_quant_method(p)
        if method in ("gptq", "awq", "exl2"):
            out.append(method)
        elif (p / "measurement.json").is_file() and not method:
            out.append("exl2")  # ExLlamaV2's convert.py writes it beside an EXL2 checkpoint
        else:
            out.append("hf")  # fp16/bf16 (or a bitsandbytes checkpoint, which the Transformers loader reads)
    return out


def sources_from_name(name: str) -> list[str]:
    """What a name says about files not on disk: .gguf, or GPTQ/AWQ/EXL2 in the name as releases are named."""
    low = name.lower()
    if low.endswith(".gguf") or "gguf" in low:
        return ["gguf"]
    for source in ("gptq", "awq", "exl2"):
        if source in low:
            return [source]
    return []
