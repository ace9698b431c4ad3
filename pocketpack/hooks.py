"""An extension never breaks a chat: the one guard every ``extensions/*/script.py`` hook wears.

    @never_break("memory")
    def state_modifier(state):
        return engine().on_state(state, tgwui.turn(state))

Any exception the hook raises is logged under the extension's name and the hook returns its
input unchanged (``state_modifier`` its state, ``chat_input_modifier`` its ``(text,
visible_text)``, the string modifiers their string, ``history_modifier`` its history), so the
turn goes on without the extension's contribution. A failure the user can act on (a
:class:`~pocketpack.errors.PocketPackError`: a damaged store, a missing file...) is logged once
per process as its one line; it would otherwise repeat on every hook of every turn. Anything
else is a bug and is logged with its traceback each time.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading

from pocketpack.errors import PocketPackError

_reported: set[tuple] = set()   # user-facing failures already logged by this process
_lock = threading.Lock()

# hooks whose "input unchanged" is more than their first argument
_UNCHANGED = {"chat_input_modifier": ("text", "visible_text")}


def report_failure(extension: str, what: str, exc: BaseException, *, without: str | None = None,
                   logger: str | None = None) -> None:
    """Log ``extension``'s failure in ``what`` (a hook, a step): a ``PocketPackError`` once per
    process as its one line, anything else with its traceback."""
    log = logging.getLogger(logger or f"pocketpack.{extension}")
    without = without or extension
    if isinstance(exc, PocketPackError):
        key = (extension, type(exc).__name__, str(getattr(exc, "directory", "")),
               getattr(exc, "what", "") or str(exc))
        with _lock:
            if key in _reported:
                return
            _reported.add(key)
        log.error("%s: %s; chats go on without %s until this is fixed", extension, exc.one_line(), without)
        return
    log.error("%s: %s failed; this turn goes on without %s", extension, what, without, exc_info=exc)


def _unchanged(signature: inspect.Signature, hook: str, args: tuple, kwargs: dict):
    bound = signature.bind_partial(*args, **kwargs)
    names = _UNCHANGED.get(hook)
    if names:
        return tuple(bound.arguments.get(n) for n in names)
    first = next(iter(signature.parameters))
    return bound.arguments.get(first)


def never_break(extension: str, *, without: str | None = None, logger: str | None = None):
    """Decorate a script's TGWUI hook: on any exception, log it (:func:`report_failure`) and
    return the hook's input unchanged. ``without`` names what the turn goes on without
    (default: the extension's name); ``logger`` defaults to ``pocketpack.<extension>``."""

    def wrap(fn):
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def guarded(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - an extension never breaks a chat: logged, input returned
                report_failure(extension, fn.__name__, exc, without=without, logger=logger)
                return _unchanged(signature, fn.__name__, args, kwargs)

        return guarded

    return wrap
