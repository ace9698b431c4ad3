"""The system message an instruction template writes when it is given none.

Why: in TGWUI's instruct mode a non-empty ``custom_system_message`` *replaces* the template's
default system message (Alpaca's "Below is an instruction that describes a task…", Llama-2's
``<<SYS>>`` line, …). An injector that writes its block into an empty
``custom_system_message`` would silently erase that default; the composer starts from it
instead, so the prompt keeps what the user had and gains the block.

The default is read by rendering the template twice — once with a sentinel system message,
once with none — and taking what the second render has where the first has the sentinel.
That needs no knowledge of any template's syntax, so it holds for every template, including
ones written after this file.
"""

from __future__ import annotations

import logging
from datetime import datetime
from functools import lru_cache

log = logging.getLogger(__name__)

_SYSTEM = "\x00pocketpack-system\x00"
_USER = "\x00pocketpack-user\x00"


def _raise(message: str):
    raise ValueError(message)


@lru_cache(maxsize=16)
def _compiled(template: str):
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    # the environment TGWUI renders instruction templates in (trim/lstrip blocks, loop controls)
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.globals.update(raise_exception=_raise, strftime_now=lambda fmt: datetime.now().strftime(fmt))
    return env.from_string(template)


def _render(template: str, messages: list[dict]) -> str:
    return _compiled(template).render(messages=messages, add_generation_prompt=False,
                                      bos_token="", eos_token="", name1="You", name2="Assistant")


@lru_cache(maxsize=64)
def template_default(template: str | None) -> str:
    """The system message ``template`` renders when the messages carry none ("" if none).

    A template that fails to render (a syntax error, ``raise_exception`` on a lone user turn)
    has no default we can know: "" is returned and the failure logged at debug level.
    """
    if not template or not template.strip():
        return ""
    user = {"role": "user", "content": _USER}
    try:
        with_system = _render(template, [{"role": "system", "content": _SYSTEM}, user])
        without = _render(template, [user])
    except Exception as exc:  # noqa: BLE001 - any template error means "no known default"
        log.debug("instruction template did not render: %s", exc)
        return ""
    if _SYSTEM not in with_system:  # the template ignores system messages altogether
        return ""
    before, after = with_system.split(_SYSTEM, 1)
    if not (without.startswith(before) and without.endswith(after)) or len(without) < len(before) + len(after):
        return ""  # no system slot in the plain render: the template has no default
    return without[len(before):len(without) - len(after)].strip()
