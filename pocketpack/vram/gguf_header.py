"""The GGUF header reader as the VRAM estimator sees it: :mod:`pocketpack.fileformats`'s, raising VramError."""

from __future__ import annotations

from pathlib import Path

from pocketpack.fileformats import GGML_TYPE_NAMES, FormatError, GGUFHeader, GGUFTensorInfo  # noqa: F401 - re-exported: this module's public names
from pocketpack.fileformats import read_gguf_header as _read_gguf_header
from pocketpack.vram.errors import VramError


def read_gguf_header(path: str | Path) -> GGUFHeader:
    """Parse a GGUF's header; VramError names a file that is not GGUF or ends early."""
    try:
        return _read_gguf_header(path)
    except FormatError as exc:
        raise VramError(f"{exc.path.name}: {exc.problem}") from None
