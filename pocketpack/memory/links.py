"""Facts that change: a newer memory linked, when it is stored, to the older one it replaces.

"I live in Brno" and, months later, "Big news: I've relocated to Freiburg" say something about
the same thing with a different value. When a user message is stored, its nearest earlier user
statements of the same character (faiss, the vector already computed for it) are looked at; it
is linked to the nearest one that passes :data:`RULE`:

- both carry information (``TermStats.information``: content-free messages state no fact) and
  neither is a question;
- their cosine is at least ``min_cosine`` (about the same thing);
- each holds a rare word (``TermStats.unit`` at least ``rare``) the other lacks, and at most
  ``max_new`` of them: the value changed ("nurse" / "carpenter") and little else did; a message
  that only repeats the older's topic words, or a long one saying many new things, is not a
  change;

or it is a correction said within ``near_rows`` of the user's own messages in the same chat,
sharing a rare word with it (the value corrected) and bringing one of its own.

The rule was chosen on the long-chat benchmark's dev split only, by link F1 against the
generator's true pairs (``bench/memory_links.py``): dev precision 0.44, recall 0.33; on the
report split 0.40 / 0.35. It is a hint, not a fact: "I live in Brno." / "I live in Freiburg."
(cosine 0.49) is not linked. At recall (``MemoryStore.recall``) a linked newer memory that is
recalled too goes right above the older and its line in the prompt says since when and what it
was before; the opt-in set also brings in a newer one not recalled (``bring_linked``), which
costs LoCoMo (see README). A link is stored both ways in the memories' meta: the newer's
``supersedes`` (the older id) and the older's ``superseded_by`` (the newer id). The user sees
them in the Memory tab and can undo one: the newer then keeps ``not_supersedes`` so that
re-linking never makes it again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pocketpack.retrieval.search import TermStats


@dataclass(frozen=True)
class LinkRule:
    min_cosine: float = 0.5        # the two statements are about the same thing
    min_information: float = 1.0   # both state something (TermStats.information)
    rare: float = 0.6              # a word this rare (TermStats.unit) is a value
    neighbours: int = 10           # nearest memories looked at (faiss), the new one included
    near_rows: int = 2             # a correction: the user's messages this many rows back in the same chat
    max_new: int = 1               # a change: at most this many rare words on either side the other lacks
    follow_cosine: float = 0.0     # bring_linked: a newer memory is brought in only this close to the query
                                   # (dev: 0.2 kept terse corrections out, "Sorry, correction: 143, not 809!")


RULE = LinkRule()
VERSION = 2  # of the rule's code: a store linked by another version is linked again (benches)


def is_question(text: str) -> bool:
    return text.rstrip().endswith("?")


def rare_words(stats: TermStats, text: str, rare: float) -> set[str]:
    """The stems of ``text`` at least ``rare`` rare in the store (its values: names, places...)."""
    return {s for s in stats.stems_of(text) if stats.unit(s) >= rare}


def eligible(stats: TermStats, item, rule: LinkRule = RULE) -> bool:
    """A user's message (not a note, not a question) that states something."""
    meta = item.meta or {}
    return (meta.get("role", "user") == "user" and meta.get("kind", "message") == "message"
            and not is_question(item.text) and stats.information(item.text) >= rule.min_information)


def find_older(coll, item, vector: np.ndarray, stats: TermStats, rule: LinkRule = RULE) -> tuple[int, float] | None:
    """The older memory ``item`` replaces, with their cosine, or None (see the module docstring)."""
    if not eligible(stats, item, rule):
        return None
    refused = set((item.meta or {}).get("not_supersedes") or [])
    got = _correction_of(coll, item, stats, rule, refused)
    if got is not None:
        return got, float(vector @ coll.vectors([got]).get(got, vector * 0))
    near = [(i, c) for i, c in coll.dense(vector, rule.neighbours) if i != item.id and c >= rule.min_cosine
            and i not in refused]
    if not near:
        return None
    found = {it.id: it for it in coll.get([i for i, _ in near])}
    mine = rare_words(stats, item.text, rule.rare)
    if not mine:
        return None
    for i, c in sorted(near, key=lambda p: -p[1]):
        old = found.get(i)
        if old is None or old.time >= item.time or not eligible(stats, old, rule):
            continue
        theirs = rare_words(stats, old.text, rule.rare)
        if 0 < len(mine - theirs) <= rule.max_new and 0 < len(theirs - mine) <= rule.max_new:
            return i, c
        return None  # the nearest earlier statement is not a change: no link to a farther one
    return None


def _correction_of(coll, item, stats: TermStats, rule: LinkRule, refused: set) -> int | None:
    """A correction said right after the statement it corrects ("Sorry, correction: 143, not
    809!" after "They gave me room 809"): one of the user's ``near_rows`` previous messages in
    the same chat that shares a rare word with it (the value corrected) while it brings a rare
    word of its own (the new value). Any shared word linked half of a LoCoMo conversation (its
    speakers' names)."""
    meta = item.meta or {}
    chat, row = meta.get("chat"), meta.get("row")
    if not chat or not isinstance(row, int) or rule.near_rows <= 0:
        return None
    mine = rare_words(stats, item.text, rule.rare)
    if not mine:
        return None
    for back in range(1, rule.near_rows + 1):
        if row - back < 0:
            break
        old = coll.by_key(f"{chat}:{row - back}:user")
        if old is None or old.id in refused or old.time > item.time or not eligible(stats, old, rule):
            continue
        theirs = rare_words(stats, old.text, rule.rare)
        if mine & theirs and mine - theirs:
            return old.id
    return None


def link_new(coll, ids: list[int], rule: LinkRule = RULE) -> dict[int, int]:
    """Link each of ``ids`` (just stored) to the older memory it replaces; newer -> older."""
    if not ids:
        return {}
    items = coll.get(ids)
    if not items:
        return {}
    stats = TermStats(coll, [it.text for it in items])
    vectors = coll.vectors([it.id for it in items])
    made: dict[int, int] = {}
    for it in sorted(items, key=lambda x: (x.time, x.id)):
        meta = it.meta or {}
        if meta.get("supersedes") is not None or it.id not in vectors:
            continue
        got = find_older(coll, it, vectors[it.id], stats, rule)
        if got is None:
            continue
        older = got[0]
        set_link(coll, it.id, older)
        made[it.id] = older
    return made


def set_link(coll, newer: int, older: int) -> None:
    """Record that ``newer`` replaces ``older`` (both ways, in their meta)."""
    got = {it.id: it for it in coll.get([newer, older])}
    if newer not in got or older not in got:
        return
    coll.update(newer, meta={**(got[newer].meta or {}), "supersedes": older})
    coll.update(older, meta={**(got[older].meta or {}), "superseded_by": newer})


def remove_link(coll, newer: int) -> int | None:
    """Undo ``newer``'s link (it is never made again); returns the older id it was linked to."""
    got = coll.get([newer])
    if not got:
        return None
    meta = dict(got[0].meta or {})
    older = meta.pop("supersedes", None)
    if older is None:
        return None
    meta["not_supersedes"] = sorted(set(meta.get("not_supersedes") or []) | {int(older)})
    coll.update(newer, meta=meta)
    old = coll.get([int(older)])
    if old and (old[0].meta or {}).get("superseded_by") == newer:
        old_meta = dict(old[0].meta)
        old_meta.pop("superseded_by", None)
        coll.update(int(older), meta=old_meta)
    return int(older)


def clear_links(coll) -> int:
    """Drop every link of ``coll`` (not the user's undos); returns how many memories changed."""
    n = 0
    for key in ("supersedes", "superseded_by"):
        for it in _linked(coll, key):
            meta = dict(it.meta or {})
            meta.pop(key, None)
            coll.update(it.id, meta=meta)
            n += 1
    return n


def _linked(coll, key: str):
    """The items of ``coll`` whose meta holds ``key`` (a scan: the tab's links list and a relink
    read them, never a chat turn)."""
    return [it for it in coll.items(where_meta=("role", "user")) if (it.meta or {}).get(key) is not None]


def links_of(coll) -> list[tuple[object, object]]:
    """(newer, older) items of every link in ``coll``, newest first."""
    newer = sorted(_linked(coll, "supersedes"), key=lambda it: -it.time)
    older = {it.id: it for it in coll.get([int(it.meta["supersedes"]) for it in newer])}
    return [(it, older[int(it.meta["supersedes"])]) for it in newer if int(it.meta["supersedes"]) in older]
