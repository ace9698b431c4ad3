"""How a memory reads in the prompt: when it was said, by whom, quoted.

A memory's text is data, never structure: it sits on one line between “ and ”, and
nothing in it can close that quotation early (double quotation marks inside become single
ones, as in a nested quotation), start a line of its own or run past the composer's cut
(long texts are shortened inside the quotes). The composer then defuses control tokens and
the block's own header lines (``pocketpack.compose.neutralise``).
"""

from __future__ import annotations

import re
import time as _time
from datetime import datetime

from pocketpack.memory.store import Memory


def relative_time(then: float, now: float | None = None) -> str:
    """'just now', '5 minutes ago', 'yesterday', '3 days ago', '2 weeks ago', '4 months ago'..."""
    now = _time.time() if now is None else now
    seconds = max(0.0, now - then)
    minutes, hours, days = seconds / 60, seconds / 3600, seconds / 86400
    if minutes < 2:
        return "just now"
    if hours < 1:
        return f"{int(minutes)} minutes ago"
    if hours < 2:
        return "an hour ago"
    if days < 1:
        return f"{int(hours)} hours ago"
    if days < 2:
        return "yesterday"
    if days < 14:
        return f"{int(days)} days ago"
    if days < 60:
        return f"{int(days // 7)} weeks ago"
    if days < 730:
        return f"{int(days // 30)} months ago"
    return f"{int(days // 365)} years ago"


MAX_QUOTED_CHARS = 1500   # under the composer's per-item cut, so the closing quote is kept
MAX_NAME_CHARS = 64
# double quotation marks of any script -> their single counterparts
_NESTED = str.maketrans({"\u201c": "\u2018", "\u201d": "\u2019", "\u201e": "\u201a", "\u201f": "\u201b",
                         "\u00ab": "\u2039", "\u00bb": "\u203a", "\u2033": "\u2032", "\u2036": "\u2035",
                         "\u301d": "\u2018", "\u301e": "\u2019", "\u301f": "\u2019", "\uff02": "'",
                         "\u275d": "\u275b", "\u275e": "\u275c"})
# control characters, bidi overrides and isolates: invisible, and able to reorder what is read
_INVISIBLE = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def one_line(text: str, limit: int) -> str:
    """``text`` on one line (every line break and run of spaces one space), without control
    characters, at most ``limit`` characters (cut with an ellipsis)."""
    text = " ".join(_INVISIBLE.sub("", str(text)).split())
    if len(text) > limit:
        text = text[:limit].rstrip() + "\u2026"
    return text


def quoted(text: str) -> str:
    """``text`` between \u201c and \u201d so that nothing in it ends the quotation."""
    return "\u201c" + one_line(text, MAX_QUOTED_CHARS).translate(_NESTED) + "\u201d"


def describe(memory: Memory, *, user_name: str | None = None, now: float | None = None) -> str:
    """One line for the prompt, from the character's point of view:
    ``3 days ago (2025-05-01), Sam said: "…"`` / ``…, you said: "…"`` / ``Note: …``; a fact that
    changed (``memory.before``, see ``MemoryStore.recall``): ``Since 2 weeks ago (…), Sam said:
    "We moved to Freiburg." (before that, 8 months ago (…): "I live in Brno.")``."""
    if memory.kind == "manual":
        return f"Note: {one_line(memory.text, MAX_QUOTED_CHARS)}"
    when = relative_time(memory.time, now)
    date = datetime.fromtimestamp(memory.time).strftime("%Y-%m-%d")
    if memory.role == "assistant":
        who = "you"
    elif user_name and one_line(user_name, MAX_NAME_CHARS).lower() not in ("you", "user", ""):
        who = one_line(user_name, MAX_NAME_CHARS).translate(_NESTED)
    else:
        who = "the user"
    if memory.before:  # a fact that changed: say since when, and what it was before
        then = memory.before.get("time") or 0.0
        before = (f" (before that, {relative_time(then, now)} ({_date(then)}): "
                  f"{quoted(memory.before.get('text') or '')})")
        return f"Since {when} ({date}), {who} said: {quoted(memory.text)}{before}"
    after = ""
    if memory.after:  # its newer replacement is recalled too (the line above it)
        after = f" (no longer current: changed {relative_time(memory.after.get('time') or 0.0, now)})"
    when = when[0].upper() + when[1:]
    return f"{when} ({date}), {who} said: {quoted(memory.text)}{after}"


def _date(seconds: float) -> str:
    return datetime.fromtimestamp(seconds).strftime("%Y-%m-%d")
