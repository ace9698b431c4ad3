"""The one error the VRAM advisor raises: its message is a single line meant for the user."""

from pocketpack.errors import PocketPackError


class VramError(PocketPackError, ValueError):
    """Bad or missing input (no config.json, truncated GGUF, unknown fields, impossible format)."""
