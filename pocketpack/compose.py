"""The context composer: the one way pack extensions put text into the prompt.

Why one mechanism: TGWUI uses only the first ``custom_generate_chat_prompt`` it finds, so two
extensions that each build the prompt clobber each other. Instead each extension *registers a
block* on the turn's state (from ``state_modifier`` or ``chat_input_modifier``) and the composer
re-renders every registered block into the system text the mode uses
(``custom_system_message`` in instruct mode, ``context`` in chat modes), starting each time
from the base text it kept aside. So:

- both memory and rag-enhancer appear, whatever the ``--extensions`` order;
- rendering twice, or re-registering a block, never duplicates anything;
- the blocks share one token budget, counted with the counter the caller passes (its script
  builds it from the loaded model's tokenizer; a length-based estimate when none is loaded),
  each block getting a fair share first;
- block items are data: newlines are flattened, chat-template control tokens and the block's
  own header/footer lines are defused, so an item cannot close its block or add a turn.

``compose_text`` does the same on a plain string (notebook/default prompts, where a
``<|injection-point|>`` marker chooses the place).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable

from pocketpack.system_message import template_default
from pocketpack.turnstate import system_key

STATE_KEY = "_pocketpack_compose"
INJECTION_POINT = "<|injection-point|>"

DEFAULT_TEMPLATE = "[{title}]\n{items}\n[End of {title}]"
DEFAULT_ITEM = "- {text}"

Counter = Callable[[str], "int | None"]


@dataclass
class Block:
    """One extension's contribution to this turn's prompt.

    ``items`` are best first; the composer keeps as many as the budget allows, in order.
    ``template`` holds ``{title}`` and ``{items}``; ``item_template`` holds ``{text}`` and
    optionally ``{n}`` (1-based number, for citations). ``position``: "before" or "after" the
    base text, or "marker" (at ``<|injection-point|>``, else before). Within a position,
    lower ``order`` comes first and is served first when the budget is short.
    """

    name: str
    items: list[str]
    title: str = ""
    template: str = DEFAULT_TEMPLATE
    item_template: str = DEFAULT_ITEM
    position: str = "after"
    order: int = 50
    max_tokens: int | None = None
    max_item_chars: int = 2000


@dataclass
class Composition:
    """What a render produced: the text and, per block, which items made it in."""

    text: str
    included: dict[str, list[int]] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)
    budget: int | None = None


# -- counting -----------------------------------------------------------------------------
def estimate_tokens(text: str) -> int:
    """A conservative stand-in when no tokenizer is loaded (~3.5 characters per token)."""
    return math.ceil(len(text) / 3.5) if text else 0


def tokenizer_counter(tokenizer) -> Counter:
    """A counter over ``tokenizer`` (anything with ``encode``), falling back to the estimate
    when it is None or fails. Scripts build one from the host's loaded tokenizer and hand it
    to their engine: the composer never looks for a tokenizer itself."""

    def count(text: str) -> int:
        if tokenizer is None or not hasattr(tokenizer, "encode"):
            return estimate_tokens(text)
        try:
            ids = tokenizer.encode(text)
        except Exception:  # noqa: BLE001 - a host's tokenizer may raise anything; counting then falls back to the estimate
            return estimate_tokens(text)
        try:
            return len(ids)
        except TypeError:  # a torch tensor of shape (1, n)
            return int(ids.shape[-1])

    return count


# -- defusing item text -------------------------------------------------------------------
_CONTROL_TOKENS = re.compile(
    r"<\|[^<>|]{0,64}\|>"                                   # <|im_start|>, <|eot_id|>, <|injection-point|>
    r"|</?(?:s|bos|eos|pad|unk|start_of_turn|end_of_turn|start_of_image|end_of_image|"
    r"im_start|im_end|system|user|assistant|model|tool|turn|think|tool_call|tool_response)(?:\s[^<>]{0,32})?>"
    r"|\[/?(?:INST|SYS|AVAILABLE_TOOLS|TOOL_CALLS|TOOL_RESULTS)\]"
    r"|<</?SYS>>",
    re.IGNORECASE,
)
_BRACKETS = str.maketrans({"<": "\u2039", ">": "\u203a", "[": "(", "]": ")"})


def _fences(block: Block) -> list[str]:
    """The literal header/footer lines of a block's template, with the title filled in."""
    out = []
    for line in block.template.splitlines():
        if "{items}" in line:
            continue
        literal = _fill(line, {"title": block.title}).strip()
        if literal:
            out.append(literal)
    return out


def neutralise(text: str, fences: list[str] = ()) -> str:
    """Make ``text`` safe to quote inside a block: one line, no control tokens, no fences."""
    text = re.sub(r"\s+", " ", str(text)).strip()
    text = _CONTROL_TOKENS.sub(lambda m: m.group(0).translate(_BRACKETS), text)
    text = text.replace("{{", "{ {").replace("}}", "} }")  # TGWUI fills {{user}}/{{char}} in context
    for fence in fences:
        pattern = re.compile(re.escape(fence), re.IGNORECASE)
        text = pattern.sub(lambda m: m.group(0).translate(_BRACKETS) if m.group(0).translate(_BRACKETS) != m.group(0)
                           else "\u201c" + m.group(0) + "\u201d", text)
    return text


def _fill(template: str, values: dict[str, str]) -> str:
    """Substitute ``{name}`` placeholders in one pass: inserted text is never re-read."""
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), template)


# -- rendering ----------------------------------------------------------------------------
def render_block(block: Block, indices: list[int]) -> str:
    fences = _fences(block)
    lines = []
    for n, i in enumerate(indices, start=1):
        item = block.items[i]
        if len(item) > block.max_item_chars:
            item = item[: block.max_item_chars].rstrip() + "\u2026"
        lines.append(_fill(block.item_template, {"text": neutralise(item, fences), "n": str(n)}))
    return _fill(block.template, {"title": block.title, "items": "\n".join(lines)})


def _select(blocks: list[Block], budget: int | None, count: Counter) -> tuple[dict[str, list[int]], dict[str, int]]:
    """Which items of each block fit: a fair share each first, then leftovers by order."""
    chosen: dict[str, list[int]] = {b.name: [] for b in blocks}
    used: dict[str, int] = {b.name: 0 for b in blocks}
    # per-item cost measured once; the block's frame is paid by its first item
    frame = {b.name: count(render_block(Block(**{**b.__dict__, "items": []}), [])) for b in blocks}
    cost = {b.name: [max(1, count(render_block(b, [i])) - frame[b.name]) for i in range(len(b.items))]
            for b in blocks}

    def cap(b: Block) -> float:
        return b.max_tokens if b.max_tokens is not None else math.inf

    def take(b: Block, limit: float, total_left: float) -> float:
        spent = 0.0
        for i in range(len(b.items)):
            if i in chosen[b.name]:
                continue
            extra = cost[b.name][i] + (frame[b.name] if not chosen[b.name] else 0)
            if used[b.name] + extra <= limit and spent + extra <= total_left:
                chosen[b.name].append(i)
                used[b.name] += extra
                spent += extra
        return spent

    total = math.inf if budget is None else float(budget)
    share = total / max(len(blocks), 1)
    left = total
    for b in blocks:                      # pass 1: nobody starves
        left -= take(b, min(cap(b), share), left)
    for b in blocks:                      # pass 2: what is left, in order
        left -= take(b, cap(b), left)
    for b in blocks:
        chosen[b.name].sort()
    return chosen, used


def compose_text(base: str, blocks: list[Block], *, budget: int | None = None,
                 count: Counter | None = None) -> Composition:
    """``base`` with the blocks placed around it (or at its injection marker), within budget.
    ``count`` is the loaded model's counter the caller was handed (:func:`tokenizer_counter`);
    without one, the length-based estimate."""
    count = count or estimate_tokens
    blocks = sorted((b for b in blocks if b.items), key=lambda b: (b.order, b.name))
    chosen, used = _select(blocks, budget, count)
    rendered = {b.name: render_block(b, chosen[b.name]) for b in blocks if chosen[b.name]}
    # trim if the real count of the rendered whole exceeds the budget (tokenizer merges)
    if budget is not None:
        for b in reversed(blocks):
            while chosen[b.name] and sum(count(t) for t in rendered.values()) > budget:
                chosen[b.name].pop()
                rendered[b.name] = render_block(b, chosen[b.name]) if chosen[b.name] else ""
            if not chosen[b.name]:
                rendered.pop(b.name, None)
    def placed(position: str) -> list[str]:
        return [rendered[b.name] for b in blocks if b.position == position and b.name in rendered]

    before, after, marker = placed("before"), placed("after"), placed("marker")
    if INJECTION_POINT in base:
        body = base.replace(INJECTION_POINT, "\n\n".join(marker), 1)
    else:
        body, before = base, marker + before
    if before or after:
        text = "\n\n".join([*before, *([body.strip("\n")] if body.strip() else []), *after])
    else:
        text = body
    return Composition(
        text=text,
        included={b.name: list(chosen[b.name]) for b in blocks},
        tokens={name: count(t) for name, t in rendered.items()},
        budget=budget,
    )


# -- the turn's state ---------------------------------------------------------------------
def turn_budget(state: dict, blocks: list[Block]) -> int | None:
    """The shared budget: ``pocketpack_context_budget`` if set, else the blocks' own caps,
    bounded by a quarter of the model's context (``truncation_length``) when known."""
    explicit = state.get("pocketpack_context_budget")
    if explicit:
        return int(explicit)
    caps = [b.max_tokens for b in blocks if b.items]
    total = None if not caps or any(c is None for c in caps) else sum(caps)
    ctx = state.get("truncation_length")
    if ctx:
        quarter = max(128, int(ctx) // 4)
        total = quarter if total is None else min(total, quarter)
    return total


def contribute(state: dict, block: Block, *, count: Counter | None = None) -> Composition:
    """Register (or replace) ``block`` for this turn and re-render the mode's system text."""
    data = state.setdefault(STATE_KEY, {"blocks": {}, "base": {}, "rendered": {}, "report": None})
    data["blocks"][block.name] = block
    return render(state, count=count)


def withdraw(state: dict, name: str, *, count: Counter | None = None) -> Composition | None:
    """Remove an extension's block for this turn (e.g. nothing relevant was found)."""
    data = state.get(STATE_KEY)
    if not data or name not in data["blocks"]:
        return None
    del data["blocks"][name]
    return render(state, count=count)


def render(state: dict, *, count: Counter | None = None) -> Composition:
    """Write base + every registered block into the state's system key; idempotent."""
    data = state.setdefault(STATE_KEY, {"blocks": {}, "base": {}, "rendered": {}, "report": None})
    key = system_key(state)
    # the mode's key may have changed since the last render: put the other key back
    for old_key in list(data["rendered"]):
        if old_key != key:
            if state.get(old_key) == data["rendered"][old_key]:
                state[old_key] = "" if old_key in data.get("empty_base", ()) else data["base"][old_key]
            data["rendered"].pop(old_key)
            data["base"].pop(old_key, None)
    current = state.get(key) or ""
    last = data["rendered"].get(key)
    if last is not None and current == last:
        base = data["base"][key]
    elif last and last in current:  # someone edited around our text: keep their edit
        base = current.replace(last, data["base"][key], 1)
    elif key == "custom_system_message" and not current.strip():
        # an empty custom system message means "the template's default"; writing ours there
        # would replace that default, so it becomes the base we add to
        base = template_default(state.get("instruction_template_str"))
        data.setdefault("empty_base", set()).add(key)
    else:
        base = current
        data.setdefault("empty_base", set()).discard(key)
    blocks = list(data["blocks"].values())
    result = compose_text(base, blocks, budget=turn_budget(state, blocks), count=count)
    text = result.text
    if not any(result.included.values()) and key in data.get("empty_base", ()):
        text = ""  # nothing injected: leave the key empty, as the user had it
    data["base"][key] = base
    data["rendered"][key] = text
    data["report"] = result
    state[key] = text
    return result


def report(state: dict) -> Composition | None:
    """The last render of this turn (which items of each block were included)."""
    data = state.get(STATE_KEY)
    return data["report"] if data else None
