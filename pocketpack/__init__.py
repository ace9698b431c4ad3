"""Pocket Pack: run and personalise a local LLM on the hardware you have.

All logic lives here; ``extensions/<name>/script.py`` are thin adapters from
text-generation-webui's hook API to this package. Nothing here imports TGWUI.
"""

__version__ = "0.1.0"
