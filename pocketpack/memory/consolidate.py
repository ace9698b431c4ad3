"""Consolidation (off by default: only run when asked): old chat memories become short facts.

A character's message memories older than a threshold are read in batches, shown to a text
generator as a conversation and continued as a "- " list of facts about the user, a few-shot
prompt that a small base model continues as well as an instruction-tuned one. Each fact is
stored as a pinned, always-on manual memory of that character, its metadata naming the
memories it came from (``sources``). The originals are kept; each is flagged
``consolidated`` in its metadata so a later run does not summarise it again. A memory some
fact already names counts as consolidated too: a run killed between storing a batch's facts
and flagging its sources does not add those facts twice. No schema change: the flag lives in
the item's JSON metadata, so existing stores work as they are.

``generate(prompt) -> str`` is any text generator: TGWUI's loaded model, the host's, or a
``llama_cpp.Llama`` through :func:`llama_generate`.
"""

from __future__ import annotations

import re
import time as _time
from dataclasses import dataclass, field
from typing import Callable

from pocketpack.memory.store import MemoryError_, MemoryStore

DAY = 86400.0
MAX_FACT_CHARS = 200       # longer "facts" are rambling, not facts
MESSAGE_CHARS = 300        # of each message shown to the model (keeps the prompt small)
STOP = ["\n\n", "Conversation:"]
MIN_FACTS_CAP = 5          # a batch of n memories yields at most max(n, this) facts: small models loop
_NUMBERING = re.compile(r"^\(?\d{1,3}[.)]\s+")   # "- 1. fact": small models number their lists
_ENDINGS = (".", "!", "?", '"', "'", ")", "…")

_EXAMPLE_FACTS = ("The user has a dog named Max.", "Max is three years old.", "The user works as a nurse.")
PROMPT_HEAD = (
    "Write short facts about the user from each conversation.\n\n"
    "Conversation:\n"
    "User: I just got back from walking my dog Max in the park.\n"
    "Assistant: Sounds lovely! How old is Max?\n"
    "User: He's three. I work as a nurse, so mornings are my only free time.\n"
    "Facts about the user:\n" + "".join(f"- {f}\n" for f in _EXAMPLE_FACTS) + "\n"
)


@dataclass
class Fact:
    id: int
    text: str
    sources: list[int]


@dataclass
class ConsolidationResult:
    character: str
    considered: int = 0                 # old, unconsolidated memories found
    consolidated: int = 0               # of those, now flagged consolidated
    batches: int = 0
    facts: list[Fact] = field(default_factory=list)
    dropped: int = 0                    # lines rejected: empty, duplicate, overlong, the example's


def build_prompt(lines: list[str]) -> str:
    """The few-shot prompt for one batch; ends in ``- `` so the model continues a fact."""
    return PROMPT_HEAD + "Conversation:\n" + "\n".join(lines) + "\nFacts about the user:\n- "


def parse_facts(output: str) -> list[str]:
    """The facts in a continuation of :func:`build_prompt`: the first line, then each line
    starting with ``- `` up to the first that does not (the model moving on), list numbers
    removed; empty ones, and a last one cut off mid-sentence (as ""), kept for the caller to
    count as dropped."""
    facts = []
    for line in ("- " + (output or "").lstrip(" \t")).splitlines():
        line = line.strip()
        if line != "-" and not line.startswith("- "):
            break
        facts.append(_NUMBERING.sub("", line[1:].strip()))
    if facts and output and not output.endswith("\n") and not facts[-1].endswith(_ENDINGS):
        facts[-1] = ""  # cut off by the token limit mid-sentence
    return facts


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower().rstrip(".")


def _one_line(text: str) -> str:
    """A message as one prompt line: memory text is data and cannot start a new section."""
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= MESSAGE_CHARS else text[:MESSAGE_CHARS - 1] + "…"


def pending(store: MemoryStore, character: str, *, older_than_days: float = 7, now: float | None = None):
    """The character's message memories older than the threshold not yet consolidated, oldest first."""
    coll = store.collection(character, create=False)
    if coll is None:
        return []
    cutoff = (now if now is not None else _time.time()) - older_than_days * DAY
    summarised: set[int] = set()
    for note in coll.items(where_meta=("kind", "manual")):
        summarised.update(int(i) for i in (note.meta or {}).get("sources") or [])
    items = [it for it in coll.items(where_meta=("kind", "message"))
             if it.time < cutoff and (it.meta or {}).get("consolidated") in (None, False)
             and it.id not in summarised]
    role_order = {"user": 0, "assistant": 1}
    items.sort(key=lambda it: (it.time, (it.meta or {}).get("chat") or "", (it.meta or {}).get("row") or 0,
                               role_order.get((it.meta or {}).get("role"), 2), it.id))
    return items


def consolidate(store: MemoryStore, character: str, generate: Callable[[str], str], *, older_than_days: float = 7,
                batch: int = 8, progress: Callable[[int, int], None] | None = None,
                now: float | None = None) -> ConsolidationResult:
    """Summarise ``character``'s old memories into pinned fact notes; see the module docstring."""
    if not character or not str(character).strip():
        raise MemoryError_("a character name is required")
    if batch < 1:
        raise MemoryError_("batch must be at least 1")
    if older_than_days < 0:
        raise MemoryError_("older-than-days cannot be negative")
    items = pending(store, character, older_than_days=older_than_days, now=now)
    result = ConsolidationResult(character=character, considered=len(items))
    total = len(items)
    if progress:
        progress(0, total)
    if not items:
        return result
    coll = store.collection(character)
    known = {_norm(m.text) for m in store.list(character, kind="manual")} | {_norm(f) for f in _EXAMPLE_FACTS}
    done = 0
    for start in range(0, total, batch):
        chunk = items[start:start + batch]
        lines = [f"{'User' if (it.meta or {}).get('role') == 'user' else character}: {_one_line(it.text)}"
                 for it in chunk]
        sources = [it.id for it in chunk]
        records = []
        for fact in parse_facts(generate(build_prompt(lines))):
            key = _norm(fact)
            if not key or len(fact) > MAX_FACT_CHARS or key in known or len(records) >= max(len(chunk), MIN_FACTS_CAP):
                result.dropped += 1
                continue
            known.add(key)
            records.append({"character": character, "role": "user", "text": fact, "kind": "manual",
                            "trigger": "always", "pinned": True, "sources": sources})
        # facts first (one transaction, naming their sources), then the flags: see the docstring
        ids = store.add_many(records) if records else []
        result.facts += [Fact(id=i, text=r["text"], sources=sources) for i, r in zip(ids, records)]
        stamp = _time.time()
        for it in chunk:
            coll.update(it.id, meta={**(it.meta or {}), "consolidated": stamp})
        result.consolidated += len(chunk)
        result.batches += 1
        done += len(chunk)
        if progress:
            progress(done, total)
    return result


def llama_generate(llm, *, max_tokens: int = 128) -> Callable[[str], str]:
    """A ``generate`` over a ``llama_cpp.Llama``: greedy, stopping where the fact list ends."""
    def generate(prompt: str) -> str:
        out = llm.create_completion(prompt, max_tokens=max_tokens, temperature=0.0, stop=STOP)
        return out["choices"][0]["text"]

    return generate
