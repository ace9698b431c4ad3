"""The one error the VRAM advisor raises: its message is a single line meant for the user."""


class VramError(ValueError):
    """Bad or missing input (no config.json, truncated GGUF, unknown fields, impossible format)."""
