"""What the rag-enhancer test files share: a small document, a library on the real model
behind a counting embedder, and the extension script loaded the way TGWUI loads it."""

from __future__ import annotations

import importlib

import pytest

from pocketpack.rag.config import RagSettings
from pocketpack.rag.ingest import Library
from tests.helpers.embedders import CountingEmbedder

HARBOUR = """# Harbour Guide

## Tides

High tide at Port Avel is at 06:12 on Mondays. Boats must wait for the tide before crossing the bar.

## Provisions

The chandlery on Quay Street sells rope, diesel and tinned sardines. It closes at noon on Saturdays.
"""


@pytest.fixture()
def embedder():
    return CountingEmbedder()


@pytest.fixture()
def lib(tmp_path, embedder):
    library = Library(tmp_path / "store", RagSettings(chunk_size=60, chunk_overlap=10), embedder=embedder)
    yield library
    library.close()


@pytest.fixture()
def script(tmp_path):
    """extensions/rag-enhancer/script.py on a fresh store; its params are restored after."""
    module = importlib.import_module("extensions.rag-enhancer.script")
    saved = dict(module.params)
    module.params["store_dir"] = str(tmp_path / "docs")
    module._engine = None
    module.setup()
    yield module
    module.engine().close()
    module._engine = None
    module.params.clear()
    module.params.update(saved)
