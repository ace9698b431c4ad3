"""Which TGWUI a checkout is, and the flags / config-user.yaml keys that version accepts.

Read from the checkout, never imported: ``user_data/`` exists since v3.1 (2025-04); the flag
names are looked up in ``modules/shared.py`` (``--gpu-layers`` since 2025-05, ``--n-gpu-layers``
before; ``--cache-type`` since 2024-12, ``--cache_8bit``/``--cache_4bit`` before; ``--wbits``
and ``--groupsize`` until 2025-04-18; ``--gpu-memory`` until 2025-04-20).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pocketpack.vram.errors import VramError


@dataclass
class TGWUIVersion:
    root: Path | None
    user_data: bool = True              # models live in user_data/models
    flags: set[str] = field(default_factory=set)

    @property
    def current(self) -> bool:
        return "--gpu-layers" in self.flags or not self.flags

    def has(self, flag: str) -> bool:
        return flag in self.flags if self.flags else flag in CURRENT_FLAGS

    @property
    def models_dir(self) -> Path:
        base = self.root or Path(".")
        return base / "user_data" / "models" if self.user_data else base / "models"


CURRENT_FLAGS = {"--gpu-layers", "--n-gpu-layers", "--ctx-size", "--cache-type", "--load-in-4bit", "--load-in-8bit",
                 "--use_double_quant", "--quant_type", "--compute_dtype", "--bf16", "--loader", "--gpu-split"}


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
    return TGWUIVersion(root, (root / "user_data").is_dir(), flags)


def load_settings(entry, version: TGWUIVersion) -> tuple[list[str], dict, list[str]]:
    """(command-line flags, config-user.yaml settings, notes) for one preset entry on this version."""
    flags: list[str] = []
    settings: dict = {}
    notes: list[str] = []
    fmt = entry.format
    if fmt.startswith("gguf-"):
        # an explicit count: today -1 means "let llama-server --fit decide", not "all layers"
        ngl_value = int(entry.gpu_layers or 0)
        gpu_flag = "--gpu-layers" if version.has("--gpu-layers") else "--n-gpu-layers"
        ctx_flag = "--ctx-size" if version.has("--ctx-size") else "--n_ctx"
        flags += ["--loader", "llama.cpp", gpu_flag, str(ngl_value), ctx_flag, str(entry.ctx_size)]
        settings.update({"loader": "llama.cpp", gpu_flag.lstrip("-").replace("-", "_"): ngl_value,
                         ctx_flag.lstrip("-").replace("-", "_"): entry.ctx_size})
        if entry.cache_type != "fp16":
            if version.has("--cache-type"):
                flags += ["--cache-type", entry.cache_type]
                settings["cache_type"] = entry.cache_type
            else:
                old = {"q8_0": "--cache_8bit", "q4_0": "--cache_4bit"}[entry.cache_type]
                if version.has(old):
                    flags.append(old)
                    settings[old.lstrip("-")] = True
                else:
                    notes.append(f"this TGWUI has no quantised KV cache: use ctx {entry.ctx_size // 2} instead")
    elif fmt in ("int8",):
        flags += ["--loader", "Transformers", "--load-in-8bit"]
        settings.update({"loader": "Transformers", "load_in_8bit": True})
    elif fmt.startswith(("nf4", "fp4")):
        quant = fmt.split("-")[0]
        flags += ["--loader", "Transformers", "--load-in-4bit", "--quant_type", quant, "--compute_dtype", "bfloat16"]
        settings.update({"loader": "Transformers", "load_in_4bit": True, "quant_type": quant,
                         "compute_dtype": "bfloat16"})
        if fmt.endswith("-dq"):
            flags.append("--use_double_quant")
            settings["use_double_quant"] = True
    elif fmt in ("bf16", "fp16", "fp32"):
        flags += ["--loader", "Transformers"] + (["--bf16"] if fmt == "bf16" else [])
        settings.update({"loader": "Transformers", **({"bf16": True} if fmt == "bf16" else {})})
    elif fmt.startswith("gptq-"):
        bits, group = re.match(r"gptq-(\d)bit-g(-?\d+)", fmt).groups()
        if version.has("--wbits"):
            flags += ["--wbits", bits, "--groupsize", group]
            settings.update({"wbits": int(bits), "groupsize": int(group)})
        else:
            flags += ["--loader", "Transformers"]
            settings["loader"] = "Transformers"
            notes.append("this TGWUI has no --wbits: GPTQ checkpoints load with the Transformers loader, which "
                         "reads bits and group size from the model's quantization_config (needs gptqmodel)")
    else:
        notes.append(f"{fmt}: no loader flags known for this TGWUI")
    if version.has("--gpu-memory") and not version.has("--gpu-split") and not fmt.startswith("gguf-"):
        notes.append("older TGWUI: add --gpu-memory <GiB> to cap VRAM when offloading")
    return flags, settings, notes
