"""Cut parsed blocks into retrieval chunks that follow the document's structure.

A heading always starts a new chunk (a chunk never straddles two sections); within a
section whole paragraphs are packed up to ``size`` tokens; a paragraph too long for one
chunk is cut between sentences, and a sentence too long between words. Consecutive chunks
of a section share ``overlap`` tokens of trailing sentences, so a fact cut at a boundary is
whole in one of them. Each chunk starts with its heading path ("Chapter 2 › Rations") so
the embedding knows where it sits, and records how to join it back to its neighbours
(``join``) when a hit is expanded at retrieval time.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable

from pocketpack.rag.parsers import Block

HEADING_SEP = " › "


def approx_tokens(text: str) -> int:
    """A tokenizer-free estimate, the composer's (~3.5 characters a token), so that a chunk
    of N tokens costs about N tokens of the prompt budget."""
    return max(1, math.ceil(len(text) / 3.5))


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


_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-Z0-9À-Ý])")


def split_sentences(text: str) -> list[str]:
    parts = [p.strip() for p in _SENTENCE_END.split(text)]
    return [p for p in parts if p]


def _split_words(text: str, size: int, count: Callable[[str], int]) -> list[str]:
    words, out, cur = text.split(" "), [], []
    for w in words:
        if cur and count(" ".join(cur + [w])) > size:
            out.append(" ".join(cur))
            cur = []
        cur.append(w)
    if cur:
        out.append(" ".join(cur))
    return out


@dataclass
class _Unit:
    text: str
    sep: str          # how it joins the unit before it in the same chunk
    loc: tuple | None


def _units(block: Block, size: int, count: Callable[[str], int]) -> list[_Unit]:
    """A block as one unit, or cut into sentence / line / word units that fit ``size``."""
    if count(block.text) <= size:
        return [_Unit(block.text, "\n\n", block.loc)]
    if block.kind in ("code", "row"):
        pieces, cur = [], []
        for line in block.text.split("\n"):
            if cur and count("\n".join(cur + [line])) > size:
                pieces.append("\n".join(cur))
                cur = []
            cur.append(line)
        if cur:
            pieces.append("\n".join(cur))
        pieces = [p for piece in pieces for p in (_split_words(piece, size, count) if count(piece) > size else [piece])]
        return [_Unit(p, "\n\n" if i == 0 else "\n", block.loc) for i, p in enumerate(pieces)]
    pieces = []
    for sentence in split_sentences(block.text):
        pieces += _split_words(sentence, size, count) if count(sentence) > size else [sentence]
    return [_Unit(p, "\n\n" if i == 0 else " ", block.loc) for i, p in enumerate(pieces)]


def format_location(loc: dict, heading: str = "") -> str:
    """"p. 3", "pp. 3–4", "lines 10–42", "rows 2–40", "ch. 3", plus the heading path."""
    parts = []
    if loc:
        unit, a, b = loc["unit"], loc["start"], loc["end"]
        one, many = {"page": ("p.", "pp."), "line": ("line", "lines"), "row": ("row", "rows"),
                     "chapter": ("ch.", "ch.")}.get(unit, (unit, unit))
        parts.append(f"{one} {a}" if a == b else f"{many} {a}–{b}")
    if heading:
        parts.append(heading)
    return " · ".join(parts)


def chunk_blocks(blocks: list[Block], size: int = 200, overlap: int = 30,
                 count: Callable[[str], int] = approx_tokens) -> list[Chunk]:
    """Structure-following chunks of ``blocks``; ``size`` and ``overlap`` in tokens."""
    if size < 16:
        raise ValueError("chunk size must be at least 16 tokens")
    overlap = max(0, min(overlap, size // 2))
    chunks: list[Chunk] = []
    stack: list[tuple[int, str]] = []
    current: list[_Unit] = []
    carried = ""  # overlap text opening the current chunk

    def heading_path() -> str:
        return HEADING_SEP.join(t for _, t in stack)

    def emit() -> None:
        nonlocal current, carried
        if not current:
            carried = ""
            return
        body = carried + (" " if carried else "")
        overlap_chars = len(body)
        for n, u in enumerate(current):
            body += (u.sep + u.text) if n else u.text
        heading = heading_path()
        prefix = heading + "\n" if heading else ""
        locs = [u.loc for u in current if u.loc]
        loc = {}
        if locs:
            loc = {"unit": locs[0][0], "start": min(l[1] for l in locs if l[0] == locs[0][0]),
                   "end": max(l[2] for l in locs if l[0] == locs[0][0])}
        chunks.append(Chunk(prefix + body, len(chunks), heading, format_location(loc, heading), len(prefix),
                            overlap_chars, loc))
        # the next chunk of this section opens with this one's trailing sentences
        carried = _tail(current, overlap, count) if overlap else ""
        current = []

    for block in blocks:
        if block.kind == "heading":
            emit()
            carried = ""
            level = block.level or 1
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, " ".join(block.text.split())[:120]))
            continue
        if not block.text.strip():
            continue
        for unit in _units(block, size, count):
            used = sum(count(u.text) for u in current) + (count(carried) if carried else 0)
            if current and used + count(unit.text) > size:
                emit()
            current.append(unit)
    emit()
    return chunks


def _tail(units: list[_Unit], overlap: int, count: Callable[[str], int]) -> str:
    """The last sentences of a chunk that fit in ``overlap`` tokens ("" if the last is longer)."""
    sentences: list[str] = []
    for u in units:
        sentences += split_sentences(u.text) if u.sep != "\n" else [u.text]
    tail: list[str] = []
    for s in reversed(sentences):
        if count(" ".join([s] + tail)) > overlap:
            break
        tail.insert(0, s)
    return " ".join(tail)


def join_chunks(parts: list[tuple[str, str, int, int]]) -> str:
    """Join consecutive chunks of one document back into one passage.

    ``parts`` are ``(text, heading, body_start, overlap_chars)`` in document order; the repeated
    overlap is dropped and a heading line is kept only where the section changes.
    """
    out = ""
    last_heading = None
    for text, heading, body_start, overlap_chars in parts:
        body = text[body_start:]
        if last_heading is None:
            out = text
        elif heading == last_heading:
            out += "\n" + body[overlap_chars:]
        else:
            out += "\n\n" + text
        last_heading = heading
    return out
