"""Cut parsed blocks into retrieval chunks that follow the document's structure.

A heading always starts a new chunk (a chunk never straddles two sections); within a
section whole paragraphs are packed up to ``size`` tokens; a paragraph too long for one
chunk is cut between sentences (Latin or CJK punctuation), a sentence too long between
words, and a word too long (a CJK run, a base64 blob) by characters, so no chunk is much
over ``size``. Consecutive chunks of a section share ``overlap`` tokens of trailing
sentences, so a fact cut at a boundary is whole in one of them. Each chunk starts with its
heading path ("Chapter 2 › Rations") so the embedding knows where it sits, and records how
to join it back to its neighbours (``join``) when a hit is expanded at retrieval time.
The heading path counts against ``size`` too: it is capped at a third of it (outer levels
shortened first, the innermost heading kept), and the body gets what is left, so heading
plus body fit the embedding model's window even under deep CJK headings.
No text is dropped: a heading with no body of its own (followed at once by a sibling, or at
the end) is kept as body text of the next chunk.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable

from pocketpack.rag.parsers import Block

HEADING_SEP = " › "
CHARS_PER_TOKEN = 3.5
HEADING_MAX = 120  # characters of one heading shown in the heading path
ELLIPSIS = "…"

# Han, kana, Hangul, CJK punctuation and full-width forms: about one token a character in
# BERT-style and LLM tokenizers alike, where Latin text runs ~3.5 characters a token.
_WIDE = re.compile("[\u1100-\u11ff\u2e80-\u9fff\ua960-\ua97f\uac00-\ud7af\uf900-\ufaff\ufe30-\ufe4f"
                   "\uff00-\uffef\U00020000-\U0003ffff]")


def approx_tokens(text: str) -> int:
    """A tokenizer-free estimate, the composer's for Latin text (~3.5 characters a token),
    CJK characters one token each, so that a chunk of N tokens costs about N tokens of the
    prompt budget and fits the embedding model's window in any script."""
    wide = 0 if text.isascii() else len(text) - len(_WIDE.sub("", text))
    return max(1, math.ceil(wide + (len(text) - wide) / CHARS_PER_TOKEN))


@dataclass
class Chunk:
    """One chunk: ``text`` is what is embedded, indexed and injected."""

    text: str
    ordinal: int
    heading: str = ""
    location: str = ""
    body_start: int = 0       # where the body begins in ``text`` (after the heading line)
    overlap_chars: int = 0    # leading body characters that repeat the previous chunk
    loc: dict = field(default_factory=dict)  # {"unit": "page", "start": 3, "end": 4}

    @property
    def body(self) -> str:
        return self.text[self.body_start:]


# a sentence ends at . ! ? … (then closing quotes) before a space and a capital or digit, or at
# the CJK full stops 。！？； (then closing brackets), where no space follows
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*(\s+)(?=[\"'“‘(\[]?[A-Z0-9À-Ý])"
                           r"|[。！？；][。！？；”’」』）》]*(\s*)")
_SOFT_BREAK = re.compile(r"[，、,;:：\s]")  # where a too-long run of characters is best cut


def _sentence_pieces(text: str) -> list[tuple[str, str]]:
    """``text``'s sentences, each with the separator that joins it to the one before: " "
    where the text had space, "" between CJK sentences (the first one's is "")."""
    pieces: list[tuple[str, str]] = []
    pos, sep = 0, ""
    for m in _SENTENCE_END.finditer(text):
        g = 1 if m.group(1) is not None else 2
        end, nxt = m.start(g), m.end(g)
        if nxt >= len(text):
            break
        piece = text[pos:end].strip()
        if piece:
            pieces.append((piece, sep))
            sep = " " if nxt > end else ""
        pos = nxt
    rest = text[pos:].strip()
    if rest:
        pieces.append((rest, sep))
    return pieces


def split_sentences(text: str) -> list[str]:
    return [p for p, _ in _sentence_pieces(text)]


def _hard_split(text: str, size: int, count: Callable[[str], int]) -> list[str]:
    """Cut a run with no space in it (a CJK paragraph without punctuation, a long token) into
    pieces of at most ``size`` tokens, at a comma or similar when one is near the end."""
    out: list[str] = []
    guess = max(1, int(size * CHARS_PER_TOKEN))
    i = 0
    while i < len(text):
        piece = text[i:i + guess]
        n = count(piece)
        while len(piece) > 1 and n > size:
            piece = piece[:max(1, min(len(piece) - 1, len(piece) * size // n))]
            n = count(piece)
        if i + len(piece) < len(text):
            cut = max((m.end() for m in _SOFT_BREAK.finditer(piece, len(piece) // 2)), default=0)
            if cut:
                piece = piece[:cut]
        out.append(piece)
        i += len(piece)
    return out


def _split_long(text: str, size: int, count: Callable[[str], int]) -> list[tuple[str, str]]:
    """``text`` (over ``size`` tokens) cut between words, a word over ``size`` by characters;
    each piece with the separator joining it to the one before ("" inside a cut word)."""
    spans = [m.span() for m in re.finditer(r"\S+", text)]
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(spans):
        start = spans[i][0]
        sep = " " if out else ""
        if count(text[start:spans[i][1]]) > size:
            out += [(p, sep if k == 0 else "") for k, p in enumerate(_hard_split(text[start:spans[i][1]], size, count))]
            i += 1
            continue
        # the most words from i that fit: doubling steps, then bisection (count is monotonic)
        lo, hi = i, i + 1
        while hi < len(spans) and count(text[start:spans[hi][1]]) <= size:
            lo, hi = hi, min(len(spans), hi + 2 * (hi - i))
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if count(text[start:spans[mid][1]]) <= size:
                lo = mid
            else:
                hi = mid
        out.append((text[start:spans[lo][1]], sep))
        i = lo + 1
    return out


@dataclass
class _Unit:
    text: str
    sep: str          # how it joins the unit before it in the same chunk
    loc: tuple | None


def _units(block: Block, size: int, count: Callable[[str], int]) -> list[_Unit]:
    """A block as one unit, or cut into sentence / line / word / character units that fit ``size``."""
    if count(block.text) <= size:
        return [_Unit(block.text, "\n\n", block.loc)]
    pieces: list[tuple[str, str]] = []
    if block.kind in ("code", "row"):
        cur: list[str] = []
        groups = []
        for line in block.text.split("\n"):
            if cur and count("\n".join(cur + [line])) > size:
                groups.append("\n".join(cur))
                cur = []
            cur.append(line)
        if cur:
            groups.append("\n".join(cur))
        for group in groups:
            if count(group) > size:  # one line longer than a chunk
                pieces += [(p, "\n" if k == 0 else sep) for k, (p, sep) in enumerate(_split_long(group, size, count))]
            elif group.strip():
                pieces.append((group, "\n"))
    else:
        for sentence, sep in _sentence_pieces(block.text):
            if count(sentence) > size:
                pieces += [(p, sep if k == 0 else s) for k, (p, s) in enumerate(_split_long(sentence, size, count))]
            else:
                pieces.append((sentence, sep))
    return [_Unit(p, "\n\n" if i == 0 else sep, block.loc) for i, (p, sep) in enumerate(pieces)]


def format_location(loc: dict, heading: str = "") -> str:
    """"p. 3", "pp. 3–4", "lines 10–42", "rows 2–40", "paragraphs 5–9", "ch. 3", plus the heading path."""
    parts = []
    if loc:
        unit, a, b = loc["unit"], loc["start"], loc["end"]
        one, many = {"page": ("p.", "pp."), "line": ("line", "lines"), "row": ("row", "rows"),
                     "paragraph": ("paragraph", "paragraphs"), "chapter": ("ch.", "ch.")}.get(unit, (unit, unit))
        parts.append(f"{one} {a}" if a == b else f"{many} {a}–{b}")
    if heading:
        parts.append(heading)
    return " · ".join(parts)


@dataclass
class _Heading:
    level: int
    title: str        # the whole title, whitespace collapsed
    block: Block
    used: bool = False  # its whole text is in some chunk (heading path or body)


def _join_path(shown: list[str]) -> str:
    """The heading path line; consecutive levels cut down to "…" show as one "…"."""
    out: list[str] = []
    for t in shown:
        if not (t == ELLIPSIS and out and out[-1] == ELLIPSIS):
            out.append(t)
    return HEADING_SEP.join(out)


def _fit_path(titles: list[str], budget: int, count: Callable[[str], int]) -> list[str]:
    """How each of ``titles`` (outermost first) is shown so the path costs at most ``budget``
    tokens: each at most HEADING_MAX characters, then outer levels shortened first (to a
    prefix + "…", or to "…"), the innermost last and never removed. A shown title that
    differs from its title is "cut"; the caller puts the whole text in the body instead."""
    shown = [t if len(t) <= HEADING_MAX else t[:HEADING_MAX - 1] + ELLIPSIS for t in titles]

    def fits(i: int, candidate: str) -> bool:
        return count(_join_path(shown[:i] + [candidate] + shown[i + 1:])) <= budget

    for i in range(len(shown)):  # outermost first; the innermost is tried last
        if count(_join_path(shown)) <= budget:
            break
        full = shown[i]
        if not fits(i, ELLIPSIS):
            shown[i] = ELLIPSIS
            continue
        lo, hi = 0, len(full) - 1  # the longest prefix that fits (cost grows with length)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if fits(i, full[:mid].rstrip() + ELLIPSIS):
                lo = mid
            else:
                hi = mid - 1
        shown[i] = full[:lo].rstrip() + ELLIPSIS
    return shown


def chunk_blocks(blocks: list[Block], size: int = 200, overlap: int = 30,
                 count: Callable[[str], int] = approx_tokens) -> list[Chunk]:
    """Structure-following chunks of ``blocks``; ``size`` and ``overlap`` in tokens.

    Every character of the blocks' text ends up in some chunk: a heading's in the heading
    path of its section's chunks, or, when it has no body of its own, as body text of the
    next chunk (it would otherwise vanish from the index).
    """
    if size < 16:
        raise ValueError("chunk size must be at least 16 tokens")
    overlap = max(0, min(overlap, size // 2))
    path_budget = max(2, size // 3)  # tokens of heading path a chunk may carry
    chunks: list[Chunk] = []
    stack: list[_Heading] = []
    lead: list[Block] = []  # heading text waiting to open the next chunk's body
    current: list[_Unit] = []
    carried = ""  # overlap text opening the current chunk
    position = {id(b): i for i, b in enumerate(blocks)}

    path = ""          # the heading path line of the current section, as shown
    body_size = size   # tokens left for the body once the heading path is counted

    def set_path() -> None:
        """Fix the current section's heading path and body budget; a heading shown cut short
        and not yet whole in any chunk goes whole into the next body (no text is lost)."""
        nonlocal path, body_size
        shown = _fit_path([h.title for h in stack], path_budget, count)
        for h, s in zip(stack, shown):
            if s != h.title and not h.used:
                lead.append(h.block)
                h.used = True
        path = _join_path(shown)
        body_size = max(size // 2, size - (count(path + "\n") if path else 0))

    def emit() -> None:
        nonlocal current, carried
        if not current:
            carried = ""
            return
        body = carried + ("" if not carried or _WIDE.match(carried[-1]) else " ")
        overlap_chars = len(body)
        for n, u in enumerate(current):
            body += (u.sep + u.text) if n else u.text
        heading = path
        for h in stack:
            h.used = True
        prefix = heading + "\n" if heading else ""
        locs = [u.loc for u in current if u.loc]
        loc = {}
        if locs:
            loc = {"unit": locs[0][0], "start": min(one[1] for one in locs if one[0] == locs[0][0]),
                   "end": max(one[2] for one in locs if one[0] == locs[0][0])}
        chunks.append(Chunk(prefix + body, len(chunks), heading, format_location(loc, heading), len(prefix),
                            overlap_chars, loc))
        # the next chunk of this section opens with this one's trailing sentences
        carried = _tail(current, min(overlap, body_size // 2), count) if overlap else ""
        current = []

    filled = 0  # tokens of the units in ``current``

    def add(block: Block) -> None:
        nonlocal carried, filled
        for unit in _units(block, body_size, count):
            n = count(unit.text)
            if current and filled + (count(carried) if carried else 0) + n > body_size:
                emit()
            if not current:
                filled = 0
                if carried and count(carried) + n > body_size:
                    carried = ""  # no room for the overlap: the unit alone fills the chunk
            current.append(unit)
            filled += n

    def take_lead() -> None:
        nonlocal lead
        waiting, lead = sorted(lead, key=lambda b: position[id(b)]), []
        for b in waiting:
            add(Block(b.text, "text", loc=b.loc))

    for block in blocks:
        if block.kind == "heading":
            emit()
            carried = ""
            level = block.level or 1
            popped = []
            while stack and stack[-1].level >= level:
                popped.append(stack.pop())
            lead += [h.block for h in reversed(popped) if not h.used]  # headings that got no body
            stack.append(_Heading(level, " ".join(block.text.split()), block))
            set_path()
            continue
        if not block.text.strip():
            continue
        take_lead()
        add(block)
    emit()
    lead += [h.block for h in stack if not h.used]  # headings at the very end, with no body
    if lead:
        stack[:] = [h for h in stack if h.used]
        set_path()
        take_lead()
        emit()
    return chunks


def _tail(units: list[_Unit], overlap: int, count: Callable[[str], int]) -> str:
    """The last sentences of a chunk that fit in ``overlap`` tokens ("" if the last is longer)."""
    pieces: list[tuple[str, str]] = []
    for u in units:
        parts = [(u.text, "")] if u.sep == "\n" else _sentence_pieces(u.text)
        pieces += [(p, (u.sep if k == 0 else s)) for k, (p, s) in enumerate(parts)]
    tail, join = "", ""  # ``join``: the separator before the sentence that starts ``tail``
    for piece, sep in reversed(pieces):
        candidate = piece + (join + tail if tail else "")
        if count(candidate) > overlap:
            break
        tail, join = candidate, ("" if sep == "" else " ")
    return tail


def join_chunks(parts: list[tuple[str, str, int, int]]) -> str:
    """Join consecutive chunks of one document back into one passage.

    ``parts`` are ``(text, heading, body_start, overlap_chars)`` in document order; the repeated
    overlap is dropped and a heading line is kept only where the section changes.
    """
    return join_chunk_spans(parts)[0]


def join_chunk_spans(parts: list[tuple[str, str, int, int]]) -> tuple[str, list[tuple[int, int, int]]]:
    """``join_chunks``, plus where each part landed in the joined text: ``(start, body, end)``
    per part, ``start..body`` its heading line when it has one there, ``body..end`` the text it
    adds (its overlap with the part before left out)."""
    out = ""
    spans: list[tuple[int, int, int]] = []
    last_heading = None
    for text, heading, body_start, overlap_chars in parts:
        body = text[body_start:]
        if last_heading is None:
            spans.append((0, body_start, len(text)))
            out = text
        elif heading == last_heading:
            out += "\n"
            spans.append((len(out), len(out), len(out) + len(body) - overlap_chars))
            out += body[overlap_chars:]
        else:
            out += "\n\n"
            spans.append((len(out), len(out) + body_start, len(out) + len(text)))
            out += text
        last_heading = heading
    return out, spans


_UNIT_BREAK = re.compile(r"\n+")


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """The sentences of ``text[start:end]`` as ``(start, end)`` offsets into ``text``, each line
    cut at sentence ends, surrounding whitespace left out: the units a passage is packed by."""
    end = len(text) if end is None else end
    out: list[tuple[int, int]] = []
    pos = start
    for line in [*_UNIT_BREAK.finditer(text, start, end), None]:
        stop = line.start() if line else end
        cut = pos
        for m in _SENTENCE_END.finditer(text, pos, stop):
            g = 1 if m.group(1) is not None else 2
            if m.end(g) >= stop:
                break
            out.append((cut, m.start(g)))
            cut = m.end(g)
        out.append((cut, stop))
        pos = line.end() if line else end
    trimmed = []
    for a, b in out:
        piece = text[a:b]
        a, b = a + len(piece) - len(piece.lstrip()), b - len(piece) + len(piece.rstrip())
        if b > a:
            trimmed.append((a, b))
    return trimmed
