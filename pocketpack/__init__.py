"""Pocket Pack: run and personalise a local LLM on the hardware you have.

All logic lives here; ``extensions/<name>/script.py`` are thin adapters from
text-generation-webui's hook API to this package. Nothing here imports TGWUI.
"""

import sys as _sys

__version__ = "0.1.0"

# Nothing in a process running Pocket Pack phones home. ``import openvino`` sends a usage event
# to Google Analytics (and writes a client id under ~/intel) unless the user once opted out, and
# OpenVINO is imported not only by our embeddings but by gptqmodel on import. Its telemetry
# modules fall back to a no-op stub when ``openvino_telemetry`` cannot be imported; a None entry
# in sys.modules makes that import fail. Nothing else uses that package.
_sys.modules.setdefault("openvino_telemetry", None)
