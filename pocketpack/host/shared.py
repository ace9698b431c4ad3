"""The standalone host's stand-in for TGWUI's ``modules.shared``.

Extension scripts reach TGWUI's globals through :func:`pocketpack.tgwui.shared`, which
returns TGWUI's real module inside TGWUI and this one inside ``pocketpack serve``; the
host keeps these names filled the way TGWUI does, so a script needs no second code path.
Only the standalone host (``pocketpack.host``) and the scripts, through ``pocketpack.tgwui``,
read it: the core is handed what it needs (a token counter, the model, paths) by the scripts.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

model = None           # the loaded Backend's model object (a llama_cpp.Llama, a PreTrainedModel...)
tokenizer = None       # something with encode()/decode(): the HF tokenizer or the Backend itself
backend = None         # the host's Backend (not in TGWUI)
model_name = "None"    # TGWUI's spelling for "no model loaded"
lora_names: list[str] = []
args = SimpleNamespace(extensions=[], nowebui=False, multi_user=False, loader=None, verbose=False,
                       lora_dir="user_data/loras", model_dir="user_data/models")
settings: dict = {}
default_settings: dict = {}
user_data_dir = Path("user_data")
gradio: dict = {}
generation_lock = None
stop_everything = False
processing_message = "*Is typing...*"
