"""The edge between extension scripts and whichever host runs them.

Only ``extensions/*/script.py`` import this module; nothing else in ``pocketpack`` does (a test
walks the package to keep it so). It hands a script TGWUI's ``modules.shared`` when running
inside text-generation-webui and the standalone host's stand-in otherwise, a token counter over
whichever tokenizer that host has loaded, and the one reading of a hook's ``state`` dict
(:class:`~pocketpack.turnstate.TurnState`). The script passes what it got here to its engine.
"""

from __future__ import annotations

import sys
from types import ModuleType

from pocketpack.compose import Counter, tokenizer_counter
from pocketpack.turnstate import TurnState


def shared() -> ModuleType:
    """TGWUI's ``modules.shared`` if TGWUI is the host, else pocketpack's stand-in."""
    module = sys.modules.get("modules.shared")
    if module is not None and hasattr(module, "args"):
        return module
    from pocketpack.host import shared as standalone

    return standalone


def in_tgwui() -> bool:
    """TGWUI is the host (its ``modules.shared`` is loaded), not the standalone host."""
    return shared().__name__ == "modules.shared"


def counter() -> Counter:
    """Counts with the tokenizer the host has loaded at the time of each count (a model may be
    loaded or unloaded between turns), the length estimate while none is."""

    def count(text: str) -> int:
        return tokenizer_counter(getattr(shared(), "tokenizer", None))(text)

    return count


def turn(state: dict) -> TurnState:
    """This hook's reading of ``state``. ``user`` stays None until the host has users."""
    return TurnState.of(state)
