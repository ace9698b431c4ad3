"""Load a model with the loader TGWUI would pick, or say in one line why it cannot be loaded.

``load_model`` is the only entry point: it infers the loader (``flags.infer_loader``),
refuses impossible flag combinations (``flags.check_flags`` -> ``FlagConflict``), checks
that the path holds what that loader needs (-> ``ModelLoadError``), and only then imports
the heavy library of the chosen backend, so that a bad path or flag costs no torch import.

Both exceptions carry one line a user can act on; the CLI prints it and exits non-zero.
"""

from __future__ import annotations

import re
from pathlib import Path

from pocketpack.host.backends.base import Backend, GenerationParams, ModelLoadError
from pocketpack.host.flags import FlagConflict, LoadSettings, check_flags, infer_loader

__all__ = [
    "Backend", "GenerationParams", "ModelLoadError", "FlagConflict", "LoadSettings",
    "load_model", "find_gguf", "one_line",
]

_WEIGHT_SUFFIXES = (".safetensors",)
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def one_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (or its type name)."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


def find_gguf(folder: Path) -> Path:
    """The .gguf file TGWUI would load from ``folder`` (the first part of a split model)."""
    ggufs = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".gguf")
    if not ggufs:
        raise ModelLoadError(f"no .gguf file in {folder}")
    parts = [p for p in ggufs if re.search(r"-0*1-of-\d+\.gguf$", p.name.lower())]
    return parts[0] if parts else ggufs[0]


def _check_hf_folder(path: Path, loader: str) -> None:
    """A Transformers/GPTQ model is a folder with config.json and safetensors weights."""
    if path.is_file():
        raise ModelLoadError(
            f"{path.name} is a file; a {loader} model is a folder with config.json and "
            f".safetensors weights (a single-file model must be a .gguf)")
    names = [p.name for p in path.iterdir()]
    if not names:
        raise ModelLoadError(f"{path} is empty: no model in it")
    if "config.json" not in names:
        raise ModelLoadError(f"{path} has no config.json: not a {loader} model folder "
                             "(nor a folder with a .gguf file)")
    if not any(n.endswith(_WEIGHT_SUFFIXES) for n in names):
        if any(n.endswith(_PICKLE_SUFFIXES) for n in names):
            raise ModelLoadError(
                f"{path} holds only pickle weights (.bin/.pt); pocketpack loads .safetensors "
                "only (pickles can run code): convert them with save_pretrained(safe_serialization=True)")
        raise ModelLoadError(f"{path} has config.json but no .safetensors weights")


def load_model(path: str | Path, settings: LoadSettings | None = None) -> Backend:
    """Load the model at ``path`` (a .gguf file or a model folder) with ``settings``.

    Raises ``FlagConflict`` for impossible flags and ``ModelLoadError`` for a missing,
    corrupt or unloadable model; both messages are one line.
    """
    settings = settings or LoadSettings()
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelLoadError(f"model not found: {path}")
    loader = infer_loader(path, settings)
    check_flags(settings, loader)

    if path.is_file() and path.suffix.lower() == ".gguf" and loader != "llama.cpp":
        raise FlagConflict(f"{path.name} is a GGUF file: it loads with llama.cpp, "
                           f"not with --loader {loader}")

    if loader == "llama.cpp":
        if path.is_dir():
            path = find_gguf(path)
        elif path.suffix.lower() != ".gguf":
            raise ModelLoadError(f"{path.name} is not a .gguf file (--loader llama.cpp)")
        from pocketpack.host.backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend(path, settings)

    _check_hf_folder(path, loader)
    if loader == "Transformers":
        from pocketpack.host.backends.transformers_hf import TransformersBackend

        return TransformersBackend(path, settings)
    from pocketpack.host.backends.gptq import GPTQBackend

    return GPTQBackend(path, settings, legacy=(loader == "AutoGPTQ"))
