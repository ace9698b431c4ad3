"""Citations: turn ``[n]`` in a visible reply into links to expandable source blocks.

``output_modifier`` receives the reply already HTML-escaped (TGWUI escapes the visible text
and renders it as Markdown, which passes raw HTML through); this adds a superscript link per
citation and, after the reply, one ``<details>`` block per cited passage showing the exact
text that was in the prompt, its source and location. The internal history keeps the raw
reply: TGWUI applies output_modifier to the visible copy only.

Citations inside code are left alone: ``items[1]`` in a fenced block, an indented code
block or an inline `` `code` `` span is code, not a reference, so those parts of the reply
are never rewritten (and never count as citing a passage). While a reply streams, a code
span whose closing backticks have not arrived yet is code already, so a citation-looking
index in it is never linked for a moment and then unlinked.

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


_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_TICKS = re.compile(r"`+")
_BLANK_LINE = re.compile(r"(\n[ \t]*\n)")
_LIST_ITEM = re.compile(r"^ {0,3}(?:[-+*]|\d{1,9}[.)])(?:[ \t]|$)")
_ATX_HEADING = re.compile(r"^ {0,3}#{1,6}(?:[ \t]|$)")


def _indent(line: str) -> int:
    """Columns of leading whitespace, a tab advancing to the next multiple of 4 (CommonMark)."""
    lead = line[:len(line) - len(line.lstrip(" \t"))]
    return len(lead.expandtabs(4))


def _inline_code(text: str, at_end: bool = False) -> list[tuple[bool, str]]:
    """``text`` cut into (is_code, part): a run of N backticks opens a code span that the next
    run of exactly N in the same paragraph closes (CommonMark); a run with no closing match is
    plain text, except on the last line of a reply (``at_end``), where the rest of the reply
    is still streaming in and the closing run may be on its way: there it opens code."""
    parts = _BLANK_LINE.split(text)
    if len(parts) > 1:  # a code span never crosses a blank line
        return [seg for n, part in enumerate(parts)
                for seg in ([(False, part)] if n % 2 else _inline_code(part, at_end and n == len(parts) - 1))]
    out: list[tuple[bool, str]] = []
    pos = start = 0
    while True:
        m = _TICKS.search(text, pos)
        if m is None:
            break
        close = next((c for c in _TICKS.finditer(text, m.end()) if len(c.group(0)) == len(m.group(0))), None)
        if close is None:
            if at_end and "\n" not in text[m.end():].rstrip("\n"):  # on the line still streaming
                if m.start() > start:
                    out.append((False, text[start:m.start()]))
                out.append((True, text[m.start():]))
                return out
            pos = m.end()  # unmatched: literal backticks
            continue
        if m.start() > start:
            out.append((False, text[start:m.start()]))
        out.append((True, text[m.start():close.end()]))
        pos = start = close.end()
    if start < len(text):
        out.append((False, text[start:]))
    return out


def segments(reply: str) -> list[tuple[bool, str]]:
    """``reply`` cut into (is_code, part), in order, joining back to ``reply``: fenced code
    blocks (```/~~~, to the closing fence or, while the reply is still streaming, to the end),
    indented code blocks and inline code spans are code; the rest is prose, where citations are.

    An indented code block (CommonMark 4.4) is a run of lines indented 4+ columns that starts
    the reply or follows a blank line, heading or fenced block (it cannot interrupt a
    paragraph), and is not inside a list, where indented lines continue the list item."""
    out: list[tuple[bool, str]] = []
    prose: list[str] = []
    fence: str | None = None
    indented = False    # inside an indented code block
    code: list[str] = []
    may_open = True     # an indented line here would start a code block: not mid-paragraph
    in_list = False

    def flush_prose() -> None:
        nonlocal prose
        if prose:
            out.extend(_inline_code("".join(prose)))
            prose = []

    for line in reply.splitlines(keepends=True):
        blank = not line.strip()
        if indented:
            if blank or _indent(line) >= 4:
                code.append(line)
                continue
            out.append((True, "".join(code)))
            indented, code, may_open = False, [], False
        m = _FENCE.match(line)
        if fence is None:
            if m and not (m.group(1)[0] == "`" and "`" in line[m.end():]):  # a ``` line with ` after is not a fence
                fence = m.group(1)
                code = [line]
                flush_prose()
            elif not blank and _indent(line) >= 4 and may_open and not in_list:
                indented, code = True, [line]
                flush_prose()
            else:
                prose.append(line)
                if _LIST_ITEM.match(line):
                    in_list = True
                elif in_list and not blank and ((may_open and _indent(line) < 2) or _ATX_HEADING.match(line)):
                    in_list = False  # a heading, or an unindented paragraph after a blank line, ends the list
                may_open = blank or bool(_ATX_HEADING.match(line))
        else:
            code.append(line)
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not line[m.end():].strip():
                out.append((True, "".join(code)))
                fence, code, may_open = None, [], True
    if fence is not None or indented:
        out.append((True, "".join(code)))
    if prose:
        out += _inline_code("".join(prose), at_end=True)
    return out


def cited_numbers(reply: str, n_passages: int) -> list[int]:
    """The valid citation numbers in ``reply`` (outside code), in first-appearance order."""
    seen: list[int] = []
    prose = [part for is_code, part in segments(reply) if not is_code]
    for m in (m for part in prose for m in _CITE.finditer(part)):
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

    body = "".join(part if is_code else _CITE.sub(link, part) for is_code, part in segments(reply))
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
