"""The memory extension's params as one typed model (``pocketpack.settings``): what
extensions/memory/script.py offers in TGWUI's settings.yaml (``memory-k: 8``) and its tab."""

from __future__ import annotations

from typing import ClassVar, Union

from pocketpack.settings import Bool, ExtensionSettings, Float, Int, Str


class MemoryParams(ExtensionSettings):
    extension: ClassVar[str] = "memory"

    enabled: Bool = True
    scope: Str = "character"          # chat | character | global
    k: Int = 6                        # memories recalled per turn
    max_tokens: Int = 400             # prompt budget for the memory block
    min_cosine: Float = 0.3           # relevance floor for recalled memories
    exclude_recent_rows: Int = 12     # rows of the current chat already in the prompt
    max_message_chars: Int = 8000     # of each message, what is stored, embedded and searched (0 = all)
    store_dir: Str = ""               # default: <user_data>/pocketpack/memory
    store_url: Str = ""               # postgresql://user:password@host:port/db; default: $POCKETPACK_STORE_URL, else store_dir
    embedding_model: Str = ""         # a local sentence-transformers folder; default: all-MiniLM-L6-v2
    approx_threshold: Int = 50000     # memories per character beyond which faiss search is approximate (IVF)
    preload: Union[bool, str] = "auto"  # load the embedding model at start-up: "auto" (inside TGWUI), true, false

    @classmethod
    def error_class(cls) -> type[Exception]:
        from pocketpack.memory.store import MemoryError_

        return MemoryError_

    def turn_settings(self):
        """What ``MemoryTurns`` reads of these (``pocketpack.memory.turns.MemorySettings``)."""
        from pocketpack.memory.turns import MemorySettings

        return MemorySettings(enabled=self.enabled, scope=self.scope, k=self.k, max_tokens=self.max_tokens,
                              min_cosine=self.min_cosine, exclude_recent_rows=self.exclude_recent_rows,
                              max_message_chars=self.max_message_chars)
