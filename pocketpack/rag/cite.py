"""Citations: turn ``[n]`` in a visible reply into links to expandable source blocks.

``output_modifier`` receives the reply already HTML-escaped (TGWUI escapes the visible text
and renders it as Markdown, which passes raw HTML through); this adds a superscript link per
citation and, after the reply, one ``<details>`` block per cited passage showing the exact
text that was in the prompt, its source and location. The internal history keeps the raw
reply: TGWUI applies output_modifier to the visible copy only.

Every inserted string is escaped; attribute values avoid ``&quot;`` because TGWUI turns
``&quot;…&quot;`` pairs into ``<q>`` tags, which would break an attribute.
"""

from __future__ import annotations

import hashlib
import html
import re

from pocketpack.rag.retrieve import Passage

_CITE = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")


def _attr(text: str) -> str:
    text = " ".join(text.split())
    return html.escape(text, quote=False).replace('"', "&#34;").replace("\u201c", "&#34;").replace("\u201d", "&#34;")


def _body(text: str) -> str:
    lines = [html.escape(line, quote=False) for line in text.strip().split("\n")]
    return "<br>".join(line for line in lines)


def cited_numbers(reply: str, n_passages: int) -> list[int]:
    """The valid citation numbers in ``reply``, in first-appearance order."""
    seen: list[int] = []
    for m in _CITE.finditer(reply):
        for part in m.group(1).split(","):
            n = int(part)
            if 1 <= n <= n_passages and n not in seen:
                seen.append(n)
    return seen


def link_citations(reply: str, passages: list[Passage], *, show_uncited: bool = False) -> str:
    """``reply`` with ``[n]`` linked and the cited passages appended as expandable blocks."""
    if not passages:
        return reply
    cited = cited_numbers(reply, len(passages))
    if not cited and not show_uncited:
        return reply
    uid = hashlib.sha1((reply + "".join(p.text[:64] for p in passages)).encode()).hexdigest()[:8]

    def link(m: re.Match) -> str:
        numbers = [int(x) for x in m.group(1).split(",")]
        if not all(1 <= n <= len(passages) for n in numbers):
            return m.group(0)
        return "".join(
            f'<sup class="pp-cite"><a href="#pp-src-{uid}-{n}" title="{_attr(passages[n - 1].label())}">[{n}]</a></sup>'
            for n in numbers)

    body = _CITE.sub(link, reply)
    shown = cited or list(range(1, len(passages) + 1))
    blocks = []
    for n in shown:
        p = passages[n - 1]
        blocks.append(
            f'<details class="pp-source" id="pp-src-{uid}-{n}"><summary>[{n}] {_attr(p.label())}'
            f' <small>(score {p.score:.2f})</small></summary><div class="pp-chunk">{_body(p.text)}</div></details>'
        )
    return body.rstrip() + "\n\n" + "\n\n".join(blocks)


CSS = """
.pp-cite a { text-decoration: none; font-weight: 600; }
details.pp-source { margin: 0.3em 0; padding: 0.2em 0.6em; border-left: 3px solid #8888; font-size: 0.9em; }
details.pp-source summary { cursor: pointer; }
details.pp-source .pp-chunk { white-space: normal; margin-top: 0.4em; opacity: 0.9; }
"""
