"""Pocket Pack: run and personalise a local LLM on the hardware you have.

All logic lives here; ``extensions/<name>/script.py`` are thin adapters from
text-generation-webui's hook API to this package. Nothing here imports TGWUI.
"""

import os as _os
import sys as _sys

__version__ = "0.1.0"

# Nothing in a process running Pocket Pack phones home. ``import openvino`` sends a usage event
# to Google Analytics (and writes a client id under ~/intel) unless the user once opted out, and
# OpenVINO is imported not only by our embeddings but by gptqmodel on import. Its telemetry
# modules fall back to a no-op stub when ``openvino_telemetry`` cannot be imported; a None entry
# in sys.modules makes that import fail. Nothing else uses that package.
_sys.modules.setdefault("openvino_telemetry", None)

# Nor does it reach for a model hub: every model the pack opens is a local path the user named,
# so the Hugging Face libraries are told to stay offline before anything imports them
# (huggingface_hub reads these once, at its import; a bare name such as "gemma-3-270m" would
# otherwise become HEAD requests to huggingface.co). Gradio's analytics and version check and
# the hub's telemetry are off too. A value the user set wins. Inside a host that imported the
# hub before us (text-generation-webui), its process is its own: the variables are left alone
# there, and our own loaders still pass local_files_only and never hand the hub a bare name.
if "huggingface_hub" not in _sys.modules:
    for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
        _os.environ.setdefault(_name, "1")
_os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
