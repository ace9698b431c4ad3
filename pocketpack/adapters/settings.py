"""The adapter-switcher extension's params as one typed model (``pocketpack.settings``): what
extensions/adapter-switcher/script.py offers in TGWUI's settings.yaml and its tab."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Optional

from pydantic import BeforeValidator

from pocketpack.settings import Bool, ExtensionSettings, Str, _to_float

# "" or 0 (as the script's default may be cleared in settings.yaml): no budget
OptionalFloat = Annotated[Optional[float], BeforeValidator(lambda v: None if v in ("", None) else _to_float(v))]


class AdapterParams(ExtensionSettings):
    extension: ClassVar[str] = "adapter-switcher"

    folders: Str = ""                 # extra adapter folders, comma-separated (user_data/loras is always scanned)
    budget_mb: OptionalFloat = 1024   # memory for resident adapters; least recently used are evicted
    allow_pickle: Bool = False        # .bin/.pt adapters run code when loaded: off unless you trust them
    auto_bind: Bool = True            # switch to the character's adapters before each turn
    combination: Str = "live"         # live | cat | svd | linear

    @classmethod
    def error_class(cls) -> type[Exception]:
        from pocketpack.adapters.library import AdapterError

        return AdapterError

    def folder_paths(self) -> list[Path]:
        """The extra adapter folders, each expanded (``~``)."""
        return [Path(p.strip()).expanduser() for p in self.folders.split(",") if p.strip()]

    @property
    def budget_bytes(self) -> int | None:
        """The resident adapters' memory budget in bytes; None (no budget) for 0 or none."""
        return int(self.budget_mb * 1024 * 1024) if self.budget_mb else None
