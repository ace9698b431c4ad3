"""Fixtures shared by every test file: the embedded model, assembled once per machine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# nothing may reach a model hub: fail fast instead of hanging on a download
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="session")
def default_model() -> Path:
    """The Gemma 3 270M Q4_K_M GGUF in ./models (where `make setup` puts it)."""
    from pocketpack.host.default_model import ensure_default_model

    return ensure_default_model(REPO / "models")


@pytest.fixture(scope="session")
def default_model_reader(default_model):
    """The gguf package's own reader of the embedded model, the reference our header parser is
    checked against (parsing its 262k-entry vocabulary takes it ~10 s: read once)."""
    from gguf import GGUFReader

    return GGUFReader(str(default_model), "r")
