"""A ``generate(prompt) -> str`` over the model the running host has loaded, for consolidation.

Two hosts can run the memory extension, and each exposes its loaded model differently:

- text-generation-webui: ``modules.text_generation.generate_reply(question, state,
  stopping_strings=..., is_chat=True)`` yields the cumulative reply and takes TGWUI's
  generation lock itself (TGWUI 1dcde41, modules/text_generation.py; modules/chat.py's
  ``generate_search_query`` calls it the same way). ``is_chat=True`` skips the extensions'
  state/input/output modifiers, so no extension (this one included) rewrites or stores the
  consolidation prompt. The state is built from ``shared.settings`` (TGWUI's defaults plus
  the user's settings.yaml), made greedy the way TGWUI's API does for ``temperature: 0``.
- Pocket Pack's own host (``pocketpack serve`` / ``chat`` / the tests): the ``Runtime``
  publishes its backend as ``shared.backend``; its ``stream`` is called directly, under
  ``shared.generation_lock`` so a consolidation never interleaves with a chat turn.

pocketpack never imports TGWUI: the adapter (extensions/memory/script.py) passes TGWUI's
``generate_reply`` in when TGWUI is the host.
"""

from __future__ import annotations

import contextlib
from typing import Callable

from pocketpack.memory.consolidate import STOP
from pocketpack.memory.store import MemoryError_

MAX_NEW_TOKENS = 128  # a batch's facts: a few short lines
_THINK_ENDS = ("</think>", "<|start|>assistant<|channel|>final<|message|>")  # as TGWUI strips them


class NoModelLoaded(MemoryError_):
    """Consolidation was asked for with no model loaded; the message says what to do."""


NO_MODEL = "No model is loaded: load one in the Model tab, then consolidate."


def _final_text(text: str) -> str:
    for end in _THINK_ENDS:  # a reasoning model's thoughts are not facts
        if end in text:
            text = text.rsplit(end, 1)[1]
    return text


def _cut(text: str, stops: list[str]) -> str:
    positions = [text.find(s) for s in stops if s and s in text]
    return text[:min(positions)] if positions else text


def loaded_model_generate(shared, generate_reply=None, *,
                          max_new_tokens: int = MAX_NEW_TOKENS) -> Callable[[str], str]:
    """A greedy ``generate(prompt) -> str`` on the host's loaded model.

    ``shared`` is the host's shared module, handed in by the script (TGWUI's ``modules.shared``
    or the standalone host's stand-in); ``generate_reply`` is TGWUI's
    ``modules.text_generation.generate_reply`` when TGWUI is the host, None in Pocket Pack's
    own host. Raises :class:`NoModelLoaded` when no model is loaded.
    """
    if generate_reply is not None:
        name = getattr(shared, "model_name", None)
        idle_unloaded = (getattr(getattr(shared, "args", None), "idle_timeout", 0) or 0) > 0  # reloads on use
        if name in (None, "None") or (getattr(shared, "model", None) is None and not idle_unloaded):
            raise NoModelLoaded(NO_MODEL)

        def generate(prompt: str) -> str:
            state = dict(getattr(shared, "settings", None) or {})
            state.update(max_new_tokens=max_new_tokens, auto_max_new_tokens=False, temperature=0.0,
                         do_sample=False, top_k=1, seed=0, stream=False, custom_stopping_strings="",
                         enable_thinking=False, reasoning_effort="low", grammar_string="", max_tokens_second=0)
            reply = ""
            for reply in generate_reply(prompt, state, stopping_strings=list(STOP), is_chat=True):  # noqa: B007 - the last cumulative text is the reply
                pass
            return _cut(_final_text(reply or ""), STOP)

        return generate

    backend = getattr(shared, "backend", None)
    if backend is None:
        raise NoModelLoaded(NO_MODEL)
    from pocketpack.host.backends.base import GenerationParams

    params = GenerationParams(max_new_tokens=max_new_tokens, temperature=0.0, top_k=1, seed=0, stop=list(STOP))

    def generate(prompt: str) -> str:
        lock = getattr(shared, "generation_lock", None)
        reply = ""
        with lock if lock is not None else contextlib.nullcontext():
            for reply in backend.stream(prompt, params):
                if any(s in reply for s in STOP):
                    break
        return _cut(_final_text(reply or ""), STOP)

    return generate
