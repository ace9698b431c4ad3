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
from pocketpack.turnstate import REQUEST_USER, TurnState


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


def multi_user() -> bool:
    """The host runs with ``--multi-user`` (TGWUI's flag; ``pocketpack serve`` has the same)."""
    return bool(getattr(getattr(shared(), "args", None), "multi_user", False))


def request_user() -> str | None:
    """Who sent the request this hook or event runs for, where the host can tell.

    - ``pocketpack serve``'s API: the user its request's API key (or configured header) maps to
      (:data:`pocketpack.turnstate.REQUEST_USER`, set for the request).
    - Web UI events, in TGWUI and in ``pocketpack serve``: gradio sets
      ``gradio.context.LocalContext.request`` around every event handler it runs (each step of a
      streaming one included), and TGWUI calls the extension hooks inside its chat handler; the
      request's ``username`` is the ``--gradio-auth`` login, None without auth.
    TGWUI's own API (``modules/api/script.py``) checks one shared ``--api-key`` and hands the
    hooks only the request body: no identity there, so None.
    """
    user = REQUEST_USER.get()
    if user:
        return user
    if "gradio" not in sys.modules:  # the API-only host never imports gradio
        return None
    try:
        from gradio.context import LocalContext

        request = LocalContext.request.get(None)
    except (ImportError, AttributeError):  # a gradio without request-local context
        return None
    return getattr(request, "username", None) or None


def turn(state: dict) -> TurnState:
    """This hook's reading of ``state``, with the user who sent it where the host has users."""
    return TurnState.of(state, user=request_user(), multi_user=multi_user())


def viewer() -> TurnState:
    """Who a tab's event comes from (no chat): the signed-in user under ``--multi-user``, for
    the engines' tab methods that list, search or change a user's own data."""
    return TurnState(user=request_user(), multi_user=multi_user())


def enclosing_tab():
    """The ``gr.Tab`` an extension's ``ui()`` is being built in, or None: both hosts build an
    ``is_tab`` extension's ui() directly inside its tab (TGWUI's ``create_extensions_tabs``),
    so a script can refresh what it shows when a person opens the tab. Read from gradio's
    build context, which gradio 4.37 (TGWUI's) and later both keep; None elsewhere."""
    try:
        import gradio as gr
        from gradio.context import Context
    except ImportError:
        return None
    block = getattr(Context, "block", None)
    return block if isinstance(block, gr.Tab) else None
