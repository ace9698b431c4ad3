"""Long-term memory for chats: persistent, per character, editable (see ``store``), recalled
and injected each turn through the context composer (see ``turns``)."""

from pocketpack.memory.store import Memory, MemoryError_, MemoryStore

__all__ = ["Memory", "MemoryError_", "MemoryStore"]
