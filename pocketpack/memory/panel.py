"""What the memory tab shows and does, as plain functions (tables as lists of rows, messages
as short Markdown), so the gradio wiring in extensions/memory/script.py stays trivial."""

from __future__ import annotations

import time as _time
from pathlib import Path

from pocketpack.memory.format import relative_time
from pocketpack.memory.store import MemoryError_, MemoryStore
from pocketpack.memory.turns import Injection
from pocketpack.retrieval.store import StoreError

SEARCH_HEADERS = ["id", "score", "when", "role", "chat", "pinned", "text", "changed fact"]
LINK_HEADERS = ["newer id", "since", "newer", "older id", "older"]
INJECTION_HEADERS = ["injected", "id", "score", "role", "line"]
MANUAL_HEADERS = ["id", "character", "trigger", "keywords", "text"]


def counts_markdown(memory: MemoryStore) -> str:
    counts = memory.counts()
    if not counts:
        return "No memories yet."
    rows = "\n".join(f"| {name if name != '*' else '(all characters: notes)'} | {n} |" for name, n in sorted(counts.items()))
    return f"| character | memories |\n|---|---|\n{rows}"


def characters(memory: MemoryStore) -> list[str]:
    return memory.characters()


def search_rows(memory: MemoryStore, character: str, query: str, scope: str = "character", k: int = 20) -> list[list]:
    character = (character or "").strip()
    if not character:
        return []
    now = _time.time()
    if query and query.strip():
        found = memory.recall(character, query, k, scope=scope)
    else:
        found = memory.list(character, limit=k)
    return [[m.id, None if m.score is None else round(m.score, 3), relative_time(m.time, now), m.role,
             m.chat or "", "yes" if m.pinned else "", m.text, _link_cell(m)] for m in found]


def _link_cell(m) -> str:
    """What the "changed fact" column says: the link a memory is part of (Unlink undoes it)."""
    if m.supersedes is not None:
        return f"replaces {m.supersedes}"
    if m.superseded_by is not None:
        return f"replaced by {m.superseded_by}"
    return ""


def link_rows(memory: MemoryStore, character: str) -> list[list]:
    """Every changed-fact link of ``character``: the newer memory, since when, and the older."""
    character = (character or "").strip()
    if not character:
        return []
    now = _time.time()
    return [[n.id, relative_time(n.time, now), n.text, o.id, o.text] for n, o in memory.links(character)]


WHY_NOT = {"recalled": "recalled", "low_information": "low information", "far": "unrelated",
           "not_candidate": "not a candidate", "below_cut": "below the cut", "in_prompt": "already in the prompt",
           "note": "a note", "other_character": "another character's", "missing": "no such memory"}


def why_not(memory: MemoryStore, injection: Injection | None, memory_id, k: int | None = None) -> str:
    """The tab's "Why not recalled?": for the chosen memory and the last reply's query, which
    step left it out (see ``MemoryStore.why_not``), or that the token budget dropped it."""
    if injection is None:
        return "No recall yet in this session: chat first, then ask why a memory was not recalled."
    try:
        mid = _id(memory_id)
    except MemoryError_ as exc:
        return f"**Not done:** {exc}"
    from pocketpack.memory.turns import MemorySettings

    settings = MemorySettings()
    k = k or settings.k
    if mid in [m.id for m in injection.memories]:
        at = [m.id for m in injection.memories].index(mid)
        if at in set(injection.included):
            return f"Memory {mid} **was injected** for the last reply."
        return (f"Memory {mid}: **token budget** - recalled (rank {at + 1}) but the block's "
                f"{settings.max_tokens}-token share had no room left for it.")
    from pocketpack.memory.store import recall_options

    options = recall_options(recency_weight=settings.recency_weight, half_life_days=settings.half_life_days,
                             min_cosine=settings.min_cosine)
    try:
        got = memory.why_not(injection.character, mid, injection.query, k, options=options,
                             exclude_texts=[injection.query])
    except (MemoryError_, StoreError) as exc:
        return f"**Not done:** {exc}"
    return f"Memory {mid}: **{WHY_NOT.get(got['reason'], got['reason'])}** - {got['detail']}."


def injection_rows(injection: Injection | None) -> tuple[list[list], str]:
    if injection is None:
        return [], "Nothing injected yet in this session."
    included = set(injection.included)
    rows = [["yes" if i in included else "no (budget)", m.id, None if m.score is None else round(m.score, 3),
             m.kind if m.kind == "manual" else m.role, line]
            for i, (m, line) in enumerate(zip(injection.memories, injection.lines))]
    when = relative_time(injection.time)
    return rows, f"Last recall for **{injection.character}** ({when}), query: _{injection.query[:200]}_"


def _id(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise MemoryError_("enter a memory id (the first column of a search)") from None


def act(memory: MemoryStore, action: str, memory_id, text: str = "") -> str:
    """pin / unpin / edit / delete one memory; returns a one-line status."""
    try:
        mid = _id(memory_id)
        if action == "pin":
            memory.pin(mid, True)
        elif action == "unpin":
            memory.pin(mid, False)
        elif action == "edit":
            memory.edit(mid, text)
        elif action == "delete":
            memory.delete(mid)
        elif action == "unlink":
            older = memory.unlink(mid)
            return f"Memory {mid}: unlinked from {older}; neither replaces the other now."
        else:
            return f"Unknown action {action!r}."
    except (MemoryError_, StoreError) as exc:
        return f"**Not done:** {exc}"
    return f"Memory {mid}: {action} done."


def act_and_show(memory: MemoryStore, action: str, memory_id, text: str, character: str, query: str,
                 scope: str = "character") -> tuple[str, list[list], dict | None]:
    """A pin/unpin/edit/delete button: the status line, the table searched again (so the change
    shows at once), and, for a delete, the memory as it was (what "Undo delete" puts back)."""
    removed = None
    if action == "delete":
        try:
            found = memory.get(_id(memory_id))
        except MemoryError_:
            found = None
        removed = None if found is None else found.to_json()
    status = act(memory, action, memory_id, text)
    if removed is not None and "done" in status:
        status = f"Deleted memory {removed['id']}: “{_short(removed['text'])}”. **Undo delete** puts it back."
    else:
        removed = None
    return status, search_rows(memory, character, query, scope), removed


def undo_delete(memory: MemoryStore, removed: dict | None, character: str, query: str,
                scope: str = "character") -> tuple[str, list[list], None]:
    """Put the last deleted memory back (with its text, time, chat, pin; under a new id)."""
    if not removed:
        return "Nothing to undo.", search_rows(memory, character, query, scope), None
    record = {k: v for k, v in removed.items() if k not in ("id", "score")}
    try:
        new_id = memory.add_many([record])[0]
    except (MemoryError_, StoreError) as exc:
        return f"**Not restored:** {exc}", search_rows(memory, character, query, scope), removed
    return (f"Restored “{_short(record['text'])}” as memory {new_id}.",
            search_rows(memory, character, query, scope), None)


def selected_row(rows, row_index: int) -> tuple[int | None, str]:
    """The id and text of the clicked row of the memories table (for the edit boxes)."""
    values = rows.values.tolist() if hasattr(rows, "values") else list(rows or [])
    if not (0 <= row_index < len(values)):
        return None, ""
    row = values[row_index]
    try:
        return int(row[0]), str(row[SEARCH_HEADERS.index("text")])
    except (TypeError, ValueError):
        return None, ""


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def add_manual(memory: MemoryStore, character: str, text: str, trigger: str, keywords: str) -> str:
    try:
        words = [w.strip() for w in (keywords or "").split(",") if w.strip()]
        mid = memory.add_manual((character or "").strip() or None, text or "", trigger=trigger or "always",
                                keywords=words)
    except (MemoryError_, StoreError) as exc:
        return f"**Not added:** {exc}"
    return f"Added note {mid}."


def manual_rows(memory: MemoryStore) -> list[list]:
    rows = []
    for character in memory.characters() + [None]:
        for m in memory.list(character, kind="manual"):
            rows.append([m.id, character or "(all)", m.trigger, ", ".join(m.keywords), m.text])
    return rows


def export_to(memory: MemoryStore, directory: Path, character: str | None = None) -> Path:
    """Write a JSONL export: everything, as ``pocketpack memory export`` does, or one
    character's memories *and* the notes meant for every character (which that character sees)."""
    return export_with_summary(memory, directory, character)[0]


def export_with_summary(memory: MemoryStore, directory: Path, character: str | None = None) -> tuple[Path, str]:
    """:func:`export_to` plus a line saying what the file holds."""
    import json

    character = (character or "").strip() or None
    directory.mkdir(parents=True, exist_ok=True)
    name = "memories-" + (f"{_safe_name(character)}-" if character else "all-") + _time.strftime("%Y%m%d-%H%M%S") + ".jsonl"
    path = directory / name
    records = list(memory.export(character))
    if character:  # the notes for every character reach this one's prompt too
        records += [m.to_json() for m in memory.list(None)]
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            record.pop("score", None)
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    notes = sum(1 for r in records if r.get("kind") == "manual")
    who = f"of **{character}** (with the notes for every character)" if character else "of every character"
    return path, f"Exported {_n(len(records) - notes, 'memory', 'memories')} and {_n(notes, 'note')} {who} to `{path.name}`."


def _safe_name(character: str) -> str:
    import re

    return re.sub(r"[^\w.-]+", "_", character).strip("._")[:40] or "character"


def import_from(memory: MemoryStore, path) -> str:
    if not path:
        return "Choose a .jsonl file first."
    path = getattr(path, "name", path)  # gradio 4 may hand a tempfile wrapper
    try:
        result = memory.import_file(path)
    except (MemoryError_, StoreError) as exc:
        return f"**Not imported:** {exc}"
    return f"Imported {_n(result.new, 'new memory', 'new memories')} ({result.present} already present)."


def consolidate_character(memory: MemoryStore, character: str, older_than_days, make_generate,
                          progress=None, *, batch: int = 8) -> str:
    """The tab's Consolidate button: summarise ``character``'s memories older than
    ``older_than_days`` into pinned facts with the loaded model. ``make_generate()`` returns
    the model's ``generate`` (see :mod:`pocketpack.memory.generate`) and is only called when
    there is something to summarise; ``progress(done, total)`` is called per batch."""
    from pocketpack.memory.consolidate import consolidate, pending

    character = (character or "").strip()
    if not character:
        return "**Not done:** choose a character first."
    try:
        days = float(older_than_days)
    except (TypeError, ValueError):
        return "**Not done:** enter how many days old a memory must be."
    if days < 0:
        return "**Not done:** older-than-days cannot be negative."
    if not pending(memory, character, older_than_days=days):
        return f"Nothing to consolidate: {character} has no unconsolidated memories older than {days:g} days."
    try:
        generate = make_generate()
        result = consolidate(memory, character, generate, older_than_days=days, batch=batch, progress=progress)
    except (MemoryError_, StoreError) as exc:
        return f"**Not done:** {exc}"
    facts = "\n".join(f"- {f.text} (id {f.id})" for f in result.facts)
    head = (f"Consolidated {_n(result.consolidated, 'memory', 'memories')} of **{character}** into "
            f"{_n(len(result.facts), 'pinned fact')} in {_n(result.batches, 'batch', 'batches')} "
            f"({_n(result.dropped, 'line')} dropped).")
    return head + ("\n\n" + facts if facts else "")


def forget_deleted_chats(chat_files) -> str:
    """The tab's "Forget memories of deleted chats" button (see :mod:`pocketpack.memory.chats`)."""
    if chat_files is None or not chat_files.enabled:
        return "This host saves no chat files (e.g. --multi-user): nothing to check."
    pruned = chat_files.prune()
    if not pruned.chats:
        return "No deleted chats found: every chat seen with a history file still has it."
    names = ", ".join(f"{character}/{chat}" for character, chat in pruned.chats)
    return f"Forgot {_n(pruned.memories, 'memory', 'memories')} of {_n(len(pruned.chats), 'deleted chat')}: {names}."


def _n(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"
