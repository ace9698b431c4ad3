"""Adapters: a library of LoRA adapters, hot-switched on a loaded model, bound to characters,
trained (QLoRA) and converted for llama.cpp on the same machine.

``scan`` / ``inspect_adapter`` read adapters from their headers; ``AdapterManager`` loads,
switches, blends and evicts them on a Transformers model, a ``llama_cpp.Llama``, or a
llama-server (TGWUI's llama.cpp loader, reached over HTTP through ``LlamaServerModel`` in
``pocketpack.adapters.llamaserver_driver``); ``Bindings`` maps
characters and chats to adapters; ``train`` and ``peft_to_gguf`` live in their own modules
(``pocketpack.adapters.train``, ``pocketpack.adapters.gguf_convert``) because they import torch.
"""

from pocketpack.adapters.binding import Binding, Bindings
from pocketpack.adapters.compat import check as check_compatible
from pocketpack.adapters.library import AdapterError, AdapterInfo, inspect_adapter, scan
from pocketpack.adapters.manager import AdapterManager, Resident

__all__ = ["AdapterError", "AdapterInfo", "AdapterManager", "Binding", "Bindings", "Resident",
           "check_compatible", "inspect_adapter", "scan"]
