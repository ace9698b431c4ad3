"""Sources under a reply, and ``[n]`` in it linked to them.

``output_modifier`` receives the reply already HTML-escaped (TGWUI escapes the visible text
and renders it as Markdown, which passes raw HTML through); this appends, under the reply, a
"Sources" row with one chip per passage that was in the turn's prompt — name, location
(page/lines/heading) and score — each a ``<details>`` that opens the exact text the model saw.
The chips are shown whatever the model writes (a small model never writes ``[n]``); when it
does, each ``[n]`` becomes a superscript link to its chip, and the chips it cited are marked.
The internal history keeps the raw reply: TGWUI applies output_modifier to the visible copy
only. ``source_records`` is the same list as data, for the API's ``sources`` field.

Citations inside code are left alone: ``items[1]`` in a fenced block, an indented code
block or an inline `` `code` `` span is code, not a reference, so those parts of the reply
are never rewritten (and never count as citing a passage). While a reply streams, a code
span whose closing backticks have not arrived yet is code already, so a citation-looking
index in it is never linked for a moment and then unlinked.

Every inserted string is escaped, and the block is one line of HTML that survives TGWUI's
Markdown pass (``html_generator.process_markdown_content``) as a raw HTML block: no ``&quot;``
(TGWUI turns ``&quot;…&quot;`` and curly-quote pairs into ``<q>`` tags, which would break an
attribute or nest across chips) and no backticks (a ````` run there starts a code block on a
new line). A reply run through ``output_modifier`` again (Continue appends to the visible
text, sources and all) first loses this module's own markup, so a reply carries one Sources
row, for the passages of its last turn.
"""

from __future__ import annotations

import hashlib
import html
import re

from pocketpack.rag.retrieve import Passage

_CITE = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")


# characters TGWUI's Markdown pass would act on inside our HTML: curly double quotes pair into
# <q> tags (its pattern matches the literal characters and the upper-case hex entities only),
# backticks start code blocks
_INERT = str.maketrans({"\u201c": "&#x201c;", "\u201d": "&#x201d;", "`": "&#96;"})


def _text(text: str) -> str:
    """Text content: escaped, on one line."""
    return html.escape(" ".join(text.split()), quote=False).translate(_INERT)


def _attr(text: str) -> str:
    return _text(text).replace('"', "&#34;")


def _body(text: str) -> str:
    lines = [html.escape(line, quote=False).translate(_INERT) for line in text.split("\n")]
    return "<br>".join(line for line in lines)


def _passage(p: Passage) -> str:
    """The passage as the model saw it, its best-matching chunk marked when there is context
    around it (the neighbouring chunks and other hits a passage is widened with)."""
    text = p.text.strip()
    words = (p.core_text or "").split()
    # the chunk as it sits in the passage (the passage may break its lines differently)
    found = re.search(r"\s+".join(map(re.escape, words)), text) if words else None
    if found is None or (found.start() == 0 and found.end() == len(text)):
        return _body(text)
    return (_body(text[:found.start()]) + '<mark class="pp-hit">' + _body(found.group(0)) + "</mark>"
            + _body(text[found.end():]))


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


# this module's own markup in a visible reply (also the <details> blocks of earlier versions)
_OUR_LINK = re.compile(r'<sup class="pp-cite"><a href="#pp-src-[0-9a-f]+-\d+"[^>]*>(\[\d+\])</a></sup>')
_OUR_SOURCES = re.compile(r'\n*<div class="pp-sources"[^>]*>.*?</details></div>'
                          r'|(?:\n\n<details class="pp-source" id="pp-src-[0-9a-f]+-\d+">.*?</div></details>)+')


def strip_sources(visible: str) -> str:
    """``visible`` without the sources and citation links an earlier pass added."""
    return _OUR_LINK.sub(r"\1", _OUR_SOURCES.sub("", visible))


def _chip(n: int, p: Passage, uid: str, cited: bool) -> str:
    """One source: ``n name location score``, opening to the passage as the model saw it."""
    where = f' <span class="pp-loc">{_text(p.location)}</span>' if p.location else ""
    return (f'<details class="pp-source{" pp-cited" if cited else ""}" id="pp-src-{uid}-{n}">'
            f'<summary title="{_attr(p.label())}"><span class="pp-n">{n}</span> '
            f'<span class="pp-name">{_text(p.name or p.source)}</span>{where} '
            f'<span class="pp-score">score {p.score:.2f}</span></summary>'
            f'<div class="pp-chunk">{_passage(p)}</div>'
            f'</details>')


def sources_html(passages: list[Passage], uid: str, cited: list[int] = ()) -> str:
    """The Sources row: a chip per passage, numbered as in the prompt, the cited ones marked."""
    chips = "".join(_chip(n, p, uid, n in cited) for n, p in enumerate(passages, start=1))
    return f'<div class="pp-sources"><span class="pp-sources-title">Sources</span> {chips}</div>'


def link_citations(reply: str, passages: list[Passage]) -> str:
    """``reply`` with ``[n]`` linked to its source and, under it, the Sources row.

    ``passages`` are the turn's, numbered as in the prompt; with none, the reply is returned
    as it is (less any markup of an earlier pass): no turn shows another turn's sources."""
    reply = strip_sources(reply)
    if not passages:
        return reply
    cited = cited_numbers(reply, len(passages))
    uid = hashlib.sha1((reply + "".join(p.text[:64] for p in passages)).encode()).hexdigest()[:8]

    def link(m: re.Match) -> str:
        numbers = [int(x) for x in m.group(1).split(",")]
        if not all(1 <= n <= len(passages) for n in numbers):
            return m.group(0)
        return "".join(
            f'<sup class="pp-cite"><a href="#pp-src-{uid}-{n}" title="{_attr(passages[n - 1].label())}">[{n}]</a></sup>'
            for n in numbers)

    body = "".join(part if is_code else _CITE.sub(link, part) for is_code, part in segments(reply))
    return body.rstrip() + "\n\n" + sources_html(passages, uid, cited)


def source_records(passages: list[Passage], reply: str = "") -> list[dict]:
    """The turn's sources as data (the API's ``sources`` field): ``n`` is the number the model
    saw the passage under, ``text`` the exact passage, ``cited`` whether ``reply`` cites it."""
    cited = cited_numbers(reply, len(passages)) if reply else []
    return [{"n": n, "name": p.name or p.source, "source": p.source, "location": p.location,
             "score": round(p.score, 4), "text": p.text, "document_id": p.doc_id, "cited": n in cited}
            for n, p in enumerate(passages, start=1)]


CSS = """
.pp-cite a { text-decoration: none; font-weight: 600; }
.pp-sources { display: flex; flex-wrap: wrap; align-items: flex-start; gap: 0.35em; margin-top: 0.6em;
  font-size: 0.85em; line-height: 1.35; }
.pp-sources-title { font-weight: 600; opacity: 0.75; padding: 0.2em 0.2em 0 0; }
details.pp-source { border: 1px solid rgba(128, 128, 128, 0.45); border-radius: 1em; padding: 0.15em 0.7em;
  margin: 0; max-width: 100%; }
details.pp-source.pp-cited { border-color: #4a7bd0; border-width: 2px; }
details.pp-source[open] { flex-basis: 100%; border-radius: 0.6em; }
details.pp-source summary { cursor: pointer; list-style: none; }
details.pp-source summary::-webkit-details-marker { display: none; }
details.pp-source summary::after { content: " \\25B8"; opacity: 0.6; }
details.pp-source[open] summary::after { content: " \\25BE"; }
details.pp-source .pp-n { font-weight: 700; }
details.pp-source .pp-loc, details.pp-source .pp-score { opacity: 0.7; }
details.pp-source .pp-chunk { margin: 0.4em 0 0.3em; padding-top: 0.4em; border-top: 1px solid rgba(128, 128, 128, 0.3);
  white-space: normal; max-height: 16em; overflow-y: auto; position: relative; }
details.pp-source mark.pp-hit { background: rgba(255, 210, 80, 0.35); color: inherit; padding: 0 0.1em; }
"""

# a click on a [n] citation opens its source (an anchor alone only scrolls to a closed chip);
# an opened source shows its best-matching part first
JS = """
document.addEventListener('click', function (event) {
  var link = event.target.closest && event.target.closest('a[href^="#pp-src-"]');
  if (!link) return;
  var chip = document.getElementById(link.getAttribute('href').slice(1));
  if (!chip) return;
  event.preventDefault();
  chip.open = true;
  chip.scrollIntoView({block: 'nearest'});
});
document.addEventListener('toggle', function (event) {
  var chip = event.target;
  if (!chip.matches || !chip.matches('details.pp-source') || !chip.open) return;
  var box = chip.querySelector('.pp-chunk'), hit = chip.querySelector('.pp-hit');
  if (box && hit) box.scrollTop = Math.max(0, hit.offsetTop - 8);
}, true);
"""
