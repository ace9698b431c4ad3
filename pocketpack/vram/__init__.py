"""VRAM advisor: what fits on this machine, in which format, before anything is loaded.

``inspect_model`` reads a folder, config.json or .gguf without loading weights;
``estimate`` sizes one configuration with a breakdown; ``advise`` ranks the ones that fit.
"""

from pocketpack.vram.errors import VramError
from pocketpack.vram.formats import Format, parse_format
from pocketpack.vram.inspect import ModelInfo, inspect_adapter, inspect_model

__all__ = ["VramError", "Format", "parse_format", "ModelInfo", "inspect_model", "inspect_adapter"]
