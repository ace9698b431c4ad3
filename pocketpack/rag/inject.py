"""Put retrieved passages into the prompt through the shared composer, labelled ``[n]``.

Chat modes: ``inject_chat`` registers the "documents" block on the turn's state
(``pocketpack.compose.contribute``), so memory and documents share one budget whatever the
``--extensions`` order. Notebook/default: ``inject_prompt`` fills the
``<|injection-point|>`` marker superbooga users know; the question is the text between
``<|begin-user-input|>`` and ``<|end-user-input|>`` when present, else the prompt itself.

Each passage is one item, ``[n] source, location: text``. Only the passages that fit the
budget are numbered, and the list returned says which passage each ``[n]`` is — the same
numbering the model saw, which is what citations resolve against.
"""

from __future__ import annotations

import heapq
import re

from pocketpack import compose
from pocketpack.rag.retrieve import Passage

BLOCK_NAME = "rag-enhancer"
TITLE = "Documents"
TEMPLATE = ("[{title}: excerpts from the user's files. Use them when relevant and cite them by number, like [1].]\n"
            "{items}\n[End of {title}]")
ITEM_TEMPLATE = "[{n}] {text}"
BEGIN_INPUT = "<|begin-user-input|>"
END_INPUT = "<|end-user-input|>"
INJECTION_POINT = compose.INJECTION_POINT
_MARKERS = re.compile(r"<\|begin-user-input\|>|<\|end-user-input\|>|<\|injection-point\|>")


def item_text(p: Passage) -> str:
    """``source, location: text``; a first line repeating the heading the location ends with
    is dropped (it costs tokens and says nothing new)."""
    text = p.text
    first, _, rest = text.partition("\n")
    if rest and first.strip() and p.location.endswith(first.strip()):
        text = rest
    return f"{p.label()}: {text}"


def make_block(passages: list[Passage], budget: int | None, position: str = "after") -> compose.Block:
    return compose.Block(
        name=BLOCK_NAME, items=[item_text(p) for p in passages], title=TITLE, template=TEMPLATE,
        item_template=ITEM_TEMPLATE, position=position, order=60, max_tokens=budget, max_item_chars=6000,
    )


# Below this budget a passage is packed sentence by sentence, at or above it chunk by chunk.
# Chosen on the development set only (bench/rag_docs.py --sets dev: sentence packing hit 0.77
# vs 0.73 at 600 tokens, tied at 900, 1200 and 1600 tokens while spending 7-9% more words).
SENTENCES_BELOW_TOKENS = 900


def fit(passages: list[Passage], budget: int | None, count=None, *, sentences: bool | None = None) -> list[Passage]:
    """The passages to offer the composer so that as many hits as possible fit ``budget``:
    each passage at its narrowest (its best hit alone), widened one hit at a time, hits taken in
    rank order across passages, then with their neighbouring context, best passage first,
    while the budget allows. ``sentences``: widen sentence by sentence (None: when the budget
    is under ``SENTENCES_BELOW_TOKENS``, where whole chunks leave hits out)."""
    if budget is None or not passages:
        return passages
    if sentences is None:
        sentences = budget < SENTENCES_BELOW_TOKENS
    count = count or compose.estimate_tokens
    frame = count(compose.render_block(make_block([], budget), []))
    room = budget - frame

    def cost(p: Passage) -> int:
        return count(ITEM_TEMPLATE.replace("{text}", " ".join(item_text(p).split()))) + 1

    # Each passage offers its versions narrowest first, each adding some of its text: retrieved
    # passages a few sentences at a time (``Passage.ladder``: each hit's best sentences, the rest
    # of its chunk, then the context nearest it), others one hit at a time, then the context.
    # Take them in the priority of what they add, across passages: every passage's best
    # sentences first (a new passage: best first, skipping what cannot fit), the rest of the
    # hits when nothing better is waiting elsewhere, and context last, nearest first.
    offers = [p.scored_variants(sentences) for p in passages]
    at: dict[int, int] = {}  # passage index -> version offered
    used = 0
    queue = [(-offers[i][0][1], i, 0) for i, p in enumerate(passages)]
    heapq.heapify(queue)
    while queue:
        _, i, level = heapq.heappop(queue)
        versions = offers[i]
        extra = cost(versions[level][0]) - (cost(versions[at[i]][0]) if level else 0)
        if used + extra > room:
            continue  # and its wider versions cost more still
        used += extra
        at[i] = level
        if level + 1 < len(versions):
            heapq.heappush(queue, (-versions[level + 1][1], i, level + 1))
    return [offers[i][at[i]][0] for i in sorted(at)]


def effective_budget(state: dict, budget: int | None) -> int | None:
    """Our budget, bounded as the composer bounds the turn: by an explicit
    ``pocketpack_context_budget`` or a quarter of the model's context."""
    explicit = state.get("pocketpack_context_budget")
    if explicit:
        budget = int(explicit) if budget is None else min(budget, int(explicit))
    ctx = state.get("truncation_length")
    if ctx:
        quarter = max(128, int(ctx) // 4)
        budget = quarter if budget is None else min(budget, quarter)
    return budget


def _numbered(passages: list[Passage], result: compose.Composition) -> list[Passage]:
    """The passages as numbered in the prompt: label ``[n]`` is element ``n - 1``."""
    return [passages[i] for i in result.included.get(BLOCK_NAME, [])]


def inject_chat(state: dict, passages: list[Passage], budget: int | None, count=None) -> list[Passage]:
    """Register (or, with no passages, withdraw) the documents block for this turn."""
    passages = fit(passages, effective_budget(state, budget), count)
    if not passages:
        compose.withdraw(state, BLOCK_NAME, count=count)
        return []
    result = compose.contribute(state, make_block(passages, budget), count=count)
    return _numbered(passages, result)


def question_of(prompt: str, tail_chars: int = 2000) -> str:
    """The question of a notebook prompt: the marked user input, else the prompt's end."""
    m = re.search(re.escape(BEGIN_INPUT) + r"(.*?)" + re.escape(END_INPUT), prompt, re.DOTALL)
    if m:
        return m.group(1).strip()
    before = prompt.split(INJECTION_POINT, 1)[0]
    text = _MARKERS.sub("", before).strip() or _MARKERS.sub("", prompt).strip()
    return text[-tail_chars:]


def strip_markers(prompt: str) -> str:
    return _MARKERS.sub("", prompt)


def inject_prompt(prompt: str, passages: list[Passage], budget: int | None, count=None) -> tuple[str, list[Passage]]:
    """Fill ``<|injection-point|>`` with the numbered passages and drop the markers."""
    if INJECTION_POINT not in prompt:
        return strip_markers(prompt), []
    passages = fit(passages, budget, count)
    if not passages:
        return strip_markers(prompt), []
    result = compose.compose_text(prompt, [make_block(passages, budget, position="marker")], budget=budget,
                                  count=count)
    return strip_markers(result.text), _numbered(passages, result)
