"""How a memory reads in the prompt: when it was said, by whom, quoted."""

from __future__ import annotations

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


def describe(memory: Memory, *, user_name: str | None = None, now: float | None = None) -> str:
    """One line for the prompt, from the character's point of view:
    ``3 days ago (2025-05-01), Sam said: "…"`` / ``…, you said: "…"`` / ``Note: …``."""
    if memory.kind == "manual":
        return f"Note: {memory.text}"
    when = relative_time(memory.time, now)
    date = datetime.fromtimestamp(memory.time).strftime("%Y-%m-%d")
    if memory.role == "assistant":
        who = "you"
    elif user_name and user_name.strip().lower() not in ("you", "user", ""):
        who = user_name.strip()
    else:
        who = "the user"
    when = when[0].upper() + when[1:]
    return f"{when} ({date}), {who} said: \u201c{memory.text}\u201d"
