"""Model-loading flags, spelled exactly as text-generation-webui spells them.

A user (or a hardware-tier preset) should be able to paste the flags they give TGWUI and get
the same load here, so names, aliases and ``dest`` match TGWUI's ``modules/shared.py`` (and,
for ``--wbits``/``--groupsize``, the AutoGPTQ flags TGWUI had before 2025). Unlike TGWUI,
every flag defaults to ``None``/``False`` so that :func:`check_flags` can tell a flag the
user typed from a default (TGWUI's own default values, see ``NEUTRAL``, never count as
typed), and an impossible combination is refused in one line instead of being silently
ignored or failing deep inside a loader.

:class:`LoadSettings` carries the same values without argparse, for code (the web UI, the
presets, the tests) that loads a model directly.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from pocketpack.errors import PocketPackError

# Loader names as TGWUI writes them; 'GPTQ' loads through gptqmodel, 'AutoGPTQ' through the
# legacy auto-gptq package (TGWUI's own name for that loader before 2025).
LOADERS = ("llama.cpp", "Transformers", "GPTQ", "AutoGPTQ")
CACHE_TYPES = ("fp16", "q8_0", "q4_0")
QUANT_TYPES = ("nf4", "fp4")
COMPUTE_DTYPES = ("bfloat16", "float16", "float32")
WBITS = (2, 3, 4, 8)

# Loaders TGWUI has (or had) that this pack does not run.
_FOREIGN_LOADERS = {
    "exllamav3", "exllamav3_hf", "exllamav2", "exllamav2_hf", "exllama", "exllama_hf",
    "llamacpp_hf", "tensorrt-llm", "hqq", "autoawq", "gptq-for-llama", "ctransformers",
}

_BNB_FLAGS = ("load_in_8bit", "load_in_4bit", "quant_type", "use_double_quant", "compute_dtype")
_LLAMACPP_ONLY = ("gpu_layers", "cache_type", "batch_size", "no_mmap", "mlock")


class FlagConflict(PocketPackError, ValueError):
    """Flags that cannot work together (or a value a flag cannot take); the message is one line."""


def flag_name(dest: str) -> str:
    """The spelling a user typed for ``dest`` (TGWUI mixes dashes and underscores)."""
    return {
        "quant_type": "--quant_type",
        "use_double_quant": "--use_double_quant",
        "compute_dtype": "--compute_dtype",
    }.get(dest, "--" + dest.replace("_", "-"))


def add_model_flags(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add TGWUI's model-loading flags to ``parser``, grouped as TGWUI's ``--help`` groups them."""
    g = parser.add_argument_group("Model loader")
    g.add_argument("--loader", type=str, default=None,
                   help="Model loader; autodetected when omitted. Valid options: "
                        "llama.cpp, Transformers, GPTQ (gptqmodel), AutoGPTQ (legacy auto-gptq).")

    g = parser.add_argument_group("Context and cache")
    g.add_argument("--ctx-size", "--n_ctx", "--max_seq_len", dest="ctx_size", type=int,
                   default=None, metavar="N",
                   help="Context size in tokens. Default: the model's, at most 8192.")
    g.add_argument("--cache-type", "--cache_type", dest="cache_type", type=str, default=None,
                   metavar="N", help="llama.cpp KV cache type: fp16, q8_0, q4_0.")

    g = parser.add_argument_group("llama.cpp")
    g.add_argument("--gpu-layers", "--n-gpu-layers", dest="gpu_layers", type=int, default=None,
                   metavar="N", help="Layers to offload to the GPU. -1 = all.")
    g.add_argument("--threads", type=int, default=None,
                   help="CPU threads (llama.cpp; torch threads for the other loaders).")
    g.add_argument("--batch-size", dest="batch_size", type=int, default=None,
                   help="Prompt tokens evaluated per batch.")
    g.add_argument("--no-mmap", dest="no_mmap", action="store_true",
                   help="Prevent mmap from being used.")
    g.add_argument("--mlock", action="store_true", help="Force the system to keep the model in RAM.")
    g.add_argument("--chat-format", dest="chat_format", type=str, default=None,
                   help="(pocketpack) llama-cpp-python chat format, e.g. gemma, chatml; "
                        "default: the GGUF's own template.")

    g = parser.add_argument_group("Transformers/Accelerate")
    g.add_argument("--cpu", action="store_true", help="Use the CPU to generate text.")
    g.add_argument("--load-in-8bit", dest="load_in_8bit", action="store_true",
                   help="Load the model with 8-bit precision (using bitsandbytes).")
    g.add_argument("--bf16", action="store_true", help="Load the model with bfloat16 precision.")
    g.add_argument("--trust-remote-code", dest="trust_remote_code", action="store_true",
                   help="Set trust_remote_code=True while loading the model.")

    g = parser.add_argument_group("bitsandbytes 4-bit")
    g.add_argument("--load-in-4bit", dest="load_in_4bit", action="store_true",
                   help="Load the model with 4-bit precision (using bitsandbytes).")
    g.add_argument("--use_double_quant", action="store_true", help="use_double_quant for 4-bit.")
    g.add_argument("--compute_dtype", type=str, default=None,
                   help="compute dtype for 4-bit: bfloat16, float16 (default), float32.")
    g.add_argument("--quant_type", type=str, default=None,
                   help="quant_type for 4-bit: nf4 (default), fp4.")

    g = parser.add_argument_group("GPTQ (TGWUI's AutoGPTQ flags before 2025)")
    g.add_argument("--wbits", type=int, default=None,
                   help="Bits of a pre-quantized GPTQ model: 2, 3, 4 or 8.")
    g.add_argument("--groupsize", type=int, default=None, help="GPTQ group size (-1 = none).")
    return parser


@dataclass
class LoadSettings:
    """How to load a model; ``None`` means "not given, use the loader's default"."""

    loader: str | None = None
    # llama.cpp / context
    gpu_layers: int | None = None
    ctx_size: int | None = None
    cache_type: str | None = None
    threads: int | None = None
    batch_size: int | None = None
    no_mmap: bool = False
    mlock: bool = False
    chat_format: str | None = None
    # Transformers
    cpu: bool = False
    load_in_8bit: bool = False
    bf16: bool = False
    trust_remote_code: bool = False
    # bitsandbytes 4-bit
    load_in_4bit: bool = False
    use_double_quant: bool = False
    compute_dtype: str | None = None
    quant_type: str | None = None
    # GPTQ
    wbits: int | None = None
    groupsize: int | None = None

    @classmethod
    def from_args(cls, args: Any) -> "LoadSettings":
        """Settings from an argparse namespace (attributes it lacks keep their defaults)."""
        kwargs = {}
        for f in fields(cls):
            if hasattr(args, f.name):
                kwargs[f.name] = getattr(args, f.name)
        return cls(**kwargs)


def normalize_loader(name: str) -> str:
    """TGWUI's loader spellings (``llamacpp``, ``hf``, ``auto-gptq`` ...) to a name in LOADERS."""
    key = name.strip().lower().replace(" ", "-")
    aliases = {
        "llama.cpp": "llama.cpp", "llamacpp": "llama.cpp", "llama-cpp": "llama.cpp",
        "llama_cpp": "llama.cpp", "gguf": "llama.cpp",
        "transformers": "Transformers", "huggingface": "Transformers", "hf": "Transformers",
        "hugging_face": "Transformers", "hugging-face": "Transformers",
        "gptq": "GPTQ", "gptqmodel": "GPTQ",
        "autogptq": "AutoGPTQ", "auto-gptq": "AutoGPTQ", "auto_gptq": "AutoGPTQ",
    }
    if key in aliases:
        return aliases[key]
    if key in _FOREIGN_LOADERS:
        raise FlagConflict(
            f"--loader {name}: pocketpack does not run that TGWUI loader; "
            f"valid options: {', '.join(LOADERS)}")
    raise FlagConflict(f"--loader {name}: unknown loader; valid options: {', '.join(LOADERS)}")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def checkpoint_quant_method(folder: Path) -> str | None:
    """``quant_method`` of a Transformers-style folder ('gptq', 'bitsandbytes', ...), if any."""
    if (folder / "quantize_config.json").is_file():
        return str(_read_json(folder / "quantize_config.json").get("quant_method", "gptq")).lower()
    qc = _read_json(folder / "config.json").get("quantization_config")
    if isinstance(qc, dict) and qc.get("quant_method"):
        return str(qc["quant_method"]).lower()
    return None


def infer_loader(model_path: str | Path, args: Any = None) -> str:
    """The loader TGWUI would pick for ``model_path`` (``args.loader`` wins when given).

    As TGWUI's ``models_settings.infer_loader``: a ``.gguf`` file, or a folder holding one,
    is llama.cpp. As TGWUI did before 2025: a folder with ``quantize_config.json`` (or a GPTQ
    ``quantization_config`` in ``config.json``), or ``--wbits`` > 0, is GPTQ. Else Transformers.
    """
    explicit = getattr(args, "loader", None) if args is not None else None
    if explicit:
        return normalize_loader(explicit)
    path = Path(model_path)
    if path.suffix.lower() == ".gguf" and not path.is_dir():
        return "llama.cpp"
    if path.is_dir():
        if any(p.suffix.lower() == ".gguf" for p in path.iterdir() if p.is_file()):
            return "llama.cpp"
        if checkpoint_quant_method(path) == "gptq":
            return "GPTQ"
    wbits = getattr(args, "wbits", None) if args is not None else None
    if isinstance(wbits, int) and wbits > 0:
        return "GPTQ"
    return "Transformers"


# Values that ask for nothing beyond a loader's default: TGWUI's own defaults (what its
# shared.args and UI dropdowns always carry) and "unset" numbers. They never count as a flag
# the user gave, so that settings from a form or from TGWUI's args do not trip a conflict.
NEUTRAL = {
    "gpu_layers": (-1, 0),
    "cache_type": ("fp16",),
    "quant_type": ("nf4",),
    "compute_dtype": ("float16",),
    "batch_size": (1024,),
    "wbits": (0,),
    "groupsize": (-1,),
    "chat_format": ("",),
}


def _given(args: Any, dest: str) -> bool:
    """Whether ``dest`` asks for something (a True switch or a non-neutral value)."""
    value = getattr(args, dest, None)
    if value is None or value is False:
        return False
    return value not in NEUTRAL.get(dest, ())


def _value_problems(args: Any) -> list[str]:
    """Values no loader accepts, whatever the loader."""
    out = []
    get = lambda dest: getattr(args, dest, None)
    if get("cache_type") is not None and get("cache_type") not in CACHE_TYPES:
        out.append(f"--cache-type {get('cache_type')}: valid options are {', '.join(CACHE_TYPES)}")
    if get("quant_type") is not None and get("quant_type") not in QUANT_TYPES:
        out.append(f"--quant_type {get('quant_type')}: valid options are {', '.join(QUANT_TYPES)}")
    if get("compute_dtype") is not None and get("compute_dtype") not in COMPUTE_DTYPES:
        out.append(f"--compute_dtype {get('compute_dtype')}: valid options are "
                   f"{', '.join(COMPUTE_DTYPES)}")
    if get("wbits") not in (None, 0) and get("wbits") not in WBITS:
        out.append(f"--wbits {get('wbits')}: GPTQ supports {', '.join(map(str, WBITS))} bits")
    if get("groupsize") is not None and not (get("groupsize") == -1 or get("groupsize") > 0):
        out.append(f"--groupsize {get('groupsize')}: must be -1 (no grouping) or a positive size")
    if get("gpu_layers") is not None and get("gpu_layers") < -1:
        out.append(f"--gpu-layers {get('gpu_layers')}: must be -1 (all) or a layer count >= 0")
    for dest in ("ctx_size", "threads"):
        if get(dest) is not None and get(dest) < 0:
            out.append(f"{flag_name(dest)} {get(dest)}: must not be negative")
    if get("batch_size") is not None and get("batch_size") <= 0:
        out.append(f"--batch-size {get('batch_size')}: must be positive")
    return out


def check_flags(args: Any, loader: str) -> None:
    """Raise :class:`FlagConflict` (one line) when ``args`` cannot work with ``loader``.

    ``args`` is an argparse namespace or a :class:`LoadSettings`. All problems found are
    named in the one line, separated by '; ', so a user fixes them in one go.
    """
    loader = normalize_loader(loader)
    problems = _value_problems(args)
    given = lambda dest: _given(args, dest)

    if given("load_in_8bit") and given("load_in_4bit"):
        problems.append("--load-in-8bit and --load-in-4bit cannot be used together: pick one")
    if not given("load_in_4bit"):
        extra = [flag_name(d) for d in ("quant_type", "use_double_quant", "compute_dtype") if given(d)]
        if extra:
            verb = "applies" if len(extra) == 1 else "apply"
            problems.append(f"{', '.join(extra)} only {verb} with --load-in-4bit")

    if loader == "llama.cpp":
        if given("wbits") or given("groupsize"):
            used = [flag_name(d) for d in ("wbits", "groupsize") if given(d)]
            what = "is a GPTQ flag" if len(used) == 1 else "are GPTQ flags"
            problems.append(f"{'/'.join(used)} {what} and a GGUF model is llama.cpp: "
                            "drop it (the quantisation is in the .gguf file)")
        bnb = [flag_name(d) for d in _BNB_FLAGS if given(d)]
        if bnb:
            problems.append(f"{', '.join(bnb)}: bitsandbytes flags are for the Transformers "
                            "loader; a GGUF model is already quantised (pick a smaller .gguf)")
        if given("bf16"):
            problems.append("--bf16 is a Transformers flag; a GGUF model keeps its own precision")
        if given("cpu") and given("gpu_layers"):
            problems.append(f"--cpu with --gpu-layers {args.gpu_layers}: "
                            "use one (--cpu means --gpu-layers 0)")
    else:
        cpp = [flag_name(d) for d in _LLAMACPP_ONLY if given(d)]
        if cpp:
            problems.append(f"{', '.join(cpp)}: llama.cpp-only flag{'s' if len(cpp) > 1 else ''}, "
                            f"meaningless with the {loader} loader")
        if given("chat_format"):
            problems.append(f"--chat-format is for llama.cpp; the {loader} loader uses the "
                            "tokenizer's chat template")

    if loader == "Transformers" and (given("wbits") or given("groupsize")):
        used = [flag_name(d) for d in ("wbits", "groupsize") if given(d)]
        verb = "needs" if len(used) == 1 else "need"
        problems.append(f"{'/'.join(used)} {verb} a GPTQ checkpoint (quantize_config.json) or "
                        "--loader GPTQ, not the Transformers loader")
    if loader in ("GPTQ", "AutoGPTQ"):
        bnb = [flag_name(d) for d in _BNB_FLAGS if given(d)]
        if bnb:
            problems.append(f"{', '.join(bnb)}: a GPTQ checkpoint is already quantised; "
                            "bitsandbytes cannot quantise it again")

    if problems:
        raise FlagConflict("; ".join(dict.fromkeys(problems)))
