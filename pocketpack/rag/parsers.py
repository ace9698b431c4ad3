"""Turn a document's bytes into structured blocks (headings, paragraphs, code, rows).

One maintained parser per format: pymupdf (PDF), python-docx (DOCX), ebooklib (EPUB),
trafilatura (HTML, web pages), the csv module (CSV); plain text, Markdown and source code are
split here because their structure is just lines. Every failure a user can cause — a damaged
or encrypted PDF, a binary file named .txt, an encoding nothing fits — raises ``ParseError``
with one line that names the problem; the caller skips that document and goes on.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import PurePath

from pocketpack.archive import (
    ArchiveError,
    ArchiveLimitError,
    Limits,
    SafeZip,
    inflate_size,
)
from pocketpack.errors import PocketPackError


class ParseError(PocketPackError, ValueError):
    """A document that cannot be read; the message is one line meant for the user."""


@dataclass
class Block:
    """A unit of structure. ``loc`` is ``(unit, start, end)``: ("page", 3, 3), ("line", 10, 42)."""

    text: str
    kind: str = "text"  # "heading" | "text" | "code" | "row"
    level: int = 0      # heading level, 1 = top
    loc: tuple | None = None


@dataclass
class Parsed:
    """A parsed document: its blocks in reading order, plus what is known about it."""

    blocks: list[Block]
    kind: str
    title: str = ""
    pages: int | None = None
    notes: list[str] = field(default_factory=list)


TEXT_EXT = {".txt", ".text", ".rst", ".log", ".org", ".tex"}
MARKDOWN_EXT = {".md", ".markdown", ".mdown", ".mkd"}
HTML_EXT = {".html", ".htm", ".xhtml"}
CODE_EXT = {
    ".py", ".pyi", ".js", ".mjs", ".cjs", ".ts", ".tsx", ".jsx", ".c", ".h", ".cc", ".cpp", ".cxx", ".hpp",
    ".hh", ".java", ".kt", ".kts", ".go", ".rs", ".rb", ".php", ".cs", ".swift", ".scala", ".lua", ".pl",
    ".sh", ".bash", ".zsh", ".ps1", ".r", ".jl", ".sql", ".css", ".scss", ".vue", ".svelte", ".dart",
    ".m", ".mm", ".hs", ".ml", ".ex", ".exs", ".erl", ".clj", ".zig", ".nim", ".toml", ".yaml", ".yml",
    ".json", ".jsonl", ".ini", ".cfg", ".conf", ".xml", ".proto", ".graphql", ".gradle", ".cmake",
}
CODE_NAMES = {"makefile", "dockerfile", "cmakelists.txt", "justfile", "rakefile", "gemfile"}
KIND_BY_EXT = {
    **{e: "text" for e in TEXT_EXT}, **{e: "markdown" for e in MARKDOWN_EXT}, **{e: "html" for e in HTML_EXT},
    **{e: "code" for e in CODE_EXT}, ".pdf": "pdf", ".docx": "docx", ".epub": "epub", ".csv": "csv", ".tsv": "csv",
}
SUPPORTED = sorted(KIND_BY_EXT)
_TEXT_KINDS = {"text", "markdown", "code", "csv", "html"}


@dataclass(frozen=True)
class _Job:
    """What a parser is given besides the bytes: the file's name, the archive limits and the
    charset the file or its server declared (text kinds only)."""

    name: str
    limits: Limits
    charset: str | None = None


class RefusedError(ParseError):
    """A document refused because reading it would expand past a limit (a ZIP bomb, a PDF
    stream inflating to gigabytes); the message names the limit's setting."""


def kind_of(name: str) -> str | None:
    """The parser a file name asks for, or None when the extension is not one we know."""
    path = PurePath(name)
    if path.name.lower() in CODE_NAMES:
        return "code"
    return KIND_BY_EXT.get(path.suffix.lower())


def parse(data: bytes, name: str, kind: str | None = None, content_type: str | None = None, *,
          limits: Limits | None = None) -> Parsed:
    """Parse ``data`` (the bytes of a file called ``name``) into blocks.

    ``kind`` overrides the guess from the name; ``content_type`` (from a web server) is used
    when the name says nothing, and its charset for text. An unknown kind is read as text if it
    decodes as text. ``limits`` bound what an archive (DOCX, EPUB) or a PDF's compressed
    streams may expand to (default: :class:`pocketpack.archive.Limits`' defaults).
    """
    kind = kind or kind_from_content_type(content_type) or kind_of(name) or "text"
    parser = _PARSERS[kind]
    job = _Job(name, limits or Limits(), declared_charset(data, content_type) if kind in _TEXT_KINDS else None)
    parsed = parser(data, job)
    parsed.kind = kind
    if not any(b.text.strip() for b in parsed.blocks if b.kind != "heading"):
        if kind == "pdf":
            raise ParseError("the PDF has no text layer (scanned pages?): run OCR on it first, then add it again")
        raise ParseError(f"no text found in this {kind} file")
    return parsed


def kind_from_content_type(content_type: str | None) -> str | None:
    ct = (content_type or "").split(";")[0].strip().lower()
    return {
        "text/html": "html", "application/xhtml+xml": "html", "application/pdf": "pdf",
        "text/markdown": "markdown", "text/plain": "text", "text/csv": "csv", "application/epub+zip": "epub",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
        "application/json": "code",
    }.get(ct)


# -- text decoding --------------------------------------------------------------------------
_BOMS = [(b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"),
         (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")]
UNDECODABLE = "not valid UTF-8 and its encoding could not be detected; save it as UTF-8"
# a legacy encoding is accepted only when the detector is sure: the decoded text is orderly
# (chaos, charset-normalizer's measure of odd characters, at most this) ...
_MAX_CHAOS = 0.1
# ... and reads as some language (coherence, its share of the language's common letters)
_MIN_COHERENCE = 0.1
_REPLACEMENT = "\ufffd"


def decode_text(data: bytes, declared: str | None = None) -> str:
    """Bytes to text (see :func:`decode_with_note`)."""
    return decode_with_note(data, declared)[0]


def decode_with_note(data: bytes, declared: str | None = None) -> tuple[str, str | None]:
    """Bytes to text, and a note for the user when something was replaced.

    In order: a BOM; UTF-8; the ``declared`` charset (an HTML page's or a server's) when it
    decodes; UTF-8 with a few damaged bytes (valid multi-byte UTF-8 outnumbers the invalid bytes
    four to one: the bad bytes become U+FFFD and the note says how many); else the encoding
    charset-normalizer detects, accepted only when it is sure (orderly text that reads as a
    language) — anything less is refused with one line rather than indexed as mojibake.
    A NUL byte or a high share of control characters means a binary file (an image or an
    archive renamed .txt), which is refused rather than indexed as noise.
    """
    note = None
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return _checked(data.decode(encoding)), None
            except UnicodeDecodeError as exc:
                raise ParseError(f"the file starts with a {encoding} mark but is not valid {encoding}") from exc
    if b"\x00" in data[:65536]:
        raise ParseError("this looks like a binary file, not text (it contains NUL bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None and declared:
        # as browsers do: Latin-1 means Windows-1252; UTF-16/32 without a BOM is a wrong label
        for encoding in (("cp1252", "latin-1") if declared in ("iso8859-1", "ascii") else (declared,)):
            if encoding.startswith(("utf-16", "utf-32")):
                continue
            try:
                text = data.decode(encoding)
                break
            except (LookupError, UnicodeDecodeError, ValueError):
                continue  # a wrong declaration: judged like an undeclared file
    if text is None:
        loose = data.decode("utf-8", errors="replace")
        bad = loose.count(_REPLACEMENT) - data.count(b"\xef\xbf\xbd")
        good = sum(1 for ch in loose if ord(ch) > 127) - loose.count(_REPLACEMENT)
        if good >= 4 * bad:
            text = loose
            note = (f"{bad} {'byte that is' if bad == 1 else 'bytes that are'} not valid UTF-8"
                    f" replaced with {_REPLACEMENT}")
        else:
            text = _detected(data)
    return _checked(text), note


def _detected(data: bytes) -> str:
    """The text in the legacy encoding charset-normalizer is sure of, else ``ParseError``."""
    try:
        from charset_normalizer import from_bytes

        matches = list(from_bytes(data[:1_000_000]))
    except Exception:  # noqa: BLE001 - a detector failure is an undecodable file
        matches = []
    if not matches:
        raise ParseError(UNDECODABLE)
    best = min(matches, key=lambda m: m.chaos)
    # Windows-1252, the usual legacy encoding of Western text, wins a near tie (the detector
    # cannot tell it from Baltic cp1257 on French accents)
    western = [m for m in matches if m.encoding == "cp1252" and m.chaos <= best.chaos + 0.15]
    chosen = western[0] if western else best
    if best.chaos > _MAX_CHAOS or chosen.coherence < _MIN_COHERENCE:
        raise ParseError(UNDECODABLE)
    try:
        return data.decode(chosen.encoding)
    except (LookupError, UnicodeDecodeError) as exc:  # detected on the first MB only
        raise ParseError(UNDECODABLE) from exc


def _checked(text: str) -> str:
    sample = text[:65536]
    if sample:
        control = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\n\r\t\f\v")
        if control / len(sample) > 0.05:
            raise ParseError("this looks like a binary file, not text (too many control characters)")
    return text.replace("\r\n", "\n").replace("\r", "\n")


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9._:-]+)""")


def declared_charset(data: bytes, content_type: str | None = None) -> str | None:
    """The charset a server's Content-Type, an XML declaration or an HTML ``<meta>`` names
    (in the first 4 KB), when Python knows it; None when nothing is declared."""
    import codecs

    found = []
    m = re.search(r"charset\s*=\s*[\"']?([A-Za-z0-9._:-]+)", content_type or "", re.IGNORECASE)
    if m:
        found.append(m.group(1))
    head = data[:4096]
    for pattern in (_XML_ENCODING, _META_CHARSET):
        m = pattern.search(head)
        if m:
            found.append(m.group(1).decode("ascii", "replace"))
    for name in found:
        try:
            return codecs.lookup(name).name
        except LookupError:
            continue
    return None


# -- plain text and Markdown ----------------------------------------------------------------
_ATX = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
# Plain-text headings, kept strict because a false heading becomes a section title instead of
# body text: "CHAPTER IV", "Chapter 4: The Storm", "Part Two", "Act I, Scene 2", "PREFACE",
# "IV. The Return", a line in capitals, or a line underlined (reStructuredText / setext style).
_NUMBER = (r"(?:\d+(?:\.\d+)*|[ivxlcdm]+|[a-z]|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve"
           r"|first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|last)")
_KEYWORD_HEADING = re.compile(
    r"^(?P<kw>chapter|book|part|section|act|scene|volume|canto|appendix)\s+" + _NUMBER +
    r"(?:\s*[.:,—–-]\s*\S.*|\s*\.)?$"
    r"|^(?:preface|foreword|introduction|prologue|epilogue|afterword|contents|table of contents|glossary|appendix"
    r"|bibliography|acknowledge?ments|notes|index)[.:]?$",
    re.IGNORECASE,
)
_KEYWORD_LEVEL = {"volume": 1, "book": 1, "part": 1, "act": 1, "chapter": 2, "canto": 2, "appendix": 2,
                  "section": 3, "scene": 3}
_ROMAN_HEADING = re.compile(r"^[IVXLC]+\.\s+[A-Z\"“'‘(].{0,68}$")  # "IV. The Return" (case-sensitive)
_UNDERLINE = re.compile(r"^([=\-~^*#+])\1{2,}\s*$")  # rst / setext underline, 3+ of one mark


def markdown_blocks(text: str, loc_lines: bool = False) -> list[Block]:
    """Markdown (ATX and setext headings, fenced code, paragraphs) to blocks."""
    blocks: list[Block] = []
    lines = text.split("\n")
    para: list[str] = []
    para_start = 0

    def flush(end: int) -> None:
        nonlocal para
        body = "\n".join(para).strip()
        if body:
            blocks.append(Block(body, "text", loc=("line", para_start + 1, end) if loc_lines else None))
        para = []

    i = 0
    while i < len(lines):
        line = lines[i]
        if _FENCE.match(line):
            flush(i)
            fence = _FENCE.match(line).group(1)
            start = i
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(fence):
                i += 1
            end = min(i + 1, len(lines))
            body = "\n".join(lines[start:end]).strip()
            while end > start + 1 and not lines[end - 1].strip():
                end -= 1
            blocks.append(Block(body, "code", loc=("line", start + 1, end) if loc_lines else None))
            i += 1
            continue
        m = _ATX.match(line)
        if m:
            flush(i)
            blocks.append(Block(m.group(2).strip(), "heading", len(m.group(1)),
                                loc=("line", i + 1, i + 1) if loc_lines else None))
            i += 1
            continue
        if para and len(para) == 1 and re.match(r"^(=+|-+)\s*$", line) and para[0].strip():
            level = 1 if line.strip().startswith("=") else 2
            blocks.append(Block(para[0].strip(), "heading", level, loc=("line", i, i + 1) if loc_lines else None))
            para = []
            i += 1
            continue
        if not line.strip():
            flush(i)
        else:
            if not para:
                para_start = i
            para.append(line)
        i += 1
    flush(len(lines))
    return blocks


def _parse_markdown(data: bytes, job: _Job) -> Parsed:
    text, note = decode_with_note(data, job.charset)
    blocks = markdown_blocks(text, loc_lines=True)
    title = next((b.text for b in blocks if b.kind == "heading"), "")
    return Parsed(blocks, "markdown", title=title, notes=[note] if note else [])


def _parse_text(data: bytes, job: _Job) -> Parsed:
    """Paragraphs separated by blank lines. A heading is only what plainly looks like one: an
    underlined line ("Title" over "=====", reStructuredText and setext style), or a short line
    alone that is in capitals ("CHAPTER IV"), starts with a chapter word and a number ("Part Two:
    The Storm") or is a Roman-numbered title ("IV. The Return"). Anything else is body text, so a
    list of short lines stays text."""
    text, note = decode_with_note(data, job.charset)
    blocks: list[Block] = []
    lines = text.split("\n")
    underline_styles: list[tuple[str, bool]] = []  # reStructuredText: levels in order of first use

    def underlined(title: str, mark: str, overlined: bool, first: int, last: int) -> None:
        style = (mark.strip()[0], overlined)
        if style not in underline_styles:
            underline_styles.append(style)
        blocks.append(Block(" ".join(title.split()), "heading", min(6, underline_styles.index(style) + 1),
                            loc=("line", first, last)))

    def paragraph(para: list[str], start: int) -> None:
        """``para`` are the paragraph's lines, the first at 0-based line ``start``."""
        if len(para) >= 3 and _UNDERLINE.match(para[0]) and _UNDERLINE.match(para[2]) \
                and para[0].strip()[0] == para[2].strip()[0] and not _UNDERLINE.match(para[1]):
            underlined(para[1], para[0], True, start + 1, start + 3)
            rest, rest_start = para[3:], start + 3
        elif len(para) >= 2 and _UNDERLINE.match(para[1]) and not _UNDERLINE.match(para[0]):
            underlined(para[0], para[1], False, start + 1, start + 2)
            rest, rest_start = para[2:], start + 2
        else:
            rest, rest_start = para, start
        if not rest:
            return
        body = "\n".join(rest).strip()
        loc = ("line", rest_start + 1, rest_start + len(rest))
        level = _text_heading_level(body) if len(rest) == 1 else None
        if level:
            blocks.append(Block(body, "heading", level, loc=loc))
        else:
            blocks.append(Block(_unwrap(body), "text", loc=loc))

    para: list[str] = []
    start = 0
    for i, line in enumerate(lines + [""]):
        if line.strip():
            if not para:
                start = i
            para.append(line.rstrip())
        elif para:
            paragraph(para, start)
            para = []
    if not any(b.kind == "text" for b in blocks):  # only heading-like lines: they are the text
        for b in blocks:
            b.kind, b.level = "text", 0
    return Parsed(blocks, "text", notes=[note] if note else [])


def _text_heading_level(line: str) -> int | None:
    """The heading level of a line standing alone in plain text, or None for body text."""
    line = line.strip()
    if len(line) > 72:
        return None
    m = _KEYWORD_HEADING.match(line)
    if m:
        return _KEYWORD_LEVEL.get((m.group("kw") or "").lower(), 2)
    if _ROMAN_HEADING.match(line) and not line.endswith((".", ",", ";")):
        return 2
    # truly in capitals (str.isupper ignores digits and punctuation), with a word's worth of letters
    if line.isupper() and sum(c.isalpha() for c in line) >= 2:
        return 2
    return None


def _unwrap(paragraph: str) -> str:
    """Join hard-wrapped lines of one paragraph (as in Project Gutenberg texts)."""
    lines = paragraph.split("\n")
    if len(lines) > 1 and all(len(line) < 100 for line in lines):
        return re.sub(r"(\w)-\n(\w)", r"\1\2", paragraph).replace("\n", " ")
    return paragraph


# -- source code ----------------------------------------------------------------------------
_TOP_LEVEL = re.compile(r"^(def |class |async def |function |func |fn |pub |impl |struct |interface |type |const |"
                        r"export |public |private |protected |static |package |module |#include|import |from |@)")


def _parse_code(data: bytes, job: _Job) -> Parsed:
    """Source split at blank lines that precede a top-level definition; each block keeps
    its line range, so a citation reads "lines 40–72"."""
    text, note = decode_with_note(data, job.charset)
    lines = text.split("\n")
    blocks: list[Block] = []
    start = 0
    for i in range(1, len(lines) + 1):
        boundary = i == len(lines) or (
            not lines[i - 1].strip() and lines[i].strip() and not lines[i][0].isspace()
            and (_TOP_LEVEL.match(lines[i]) or i - start > 60)
        )
        if boundary:
            body = "\n".join(lines[start:i]).strip("\n")
            if body.strip():
                used = [start + j for j, ln in enumerate(lines[start:i]) if ln.strip()]
                blocks.append(Block(body, "code", loc=("line", used[0] + 1, used[-1] + 1)))
            start = i
    return Parsed(blocks, "code", title=PurePath(job.name).name, notes=[note] if note else [])


# -- CSV ------------------------------------------------------------------------------------
def _parse_csv(data: bytes, job: _Job) -> Parsed:
    """One block per row, written "column: value; ..." so each row reads on its own."""
    name = job.name
    text, note = decode_with_note(data, job.charset)
    sample = text[:20000]
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel_tab if PurePath(name).suffix.lower() == ".tsv" else csv.excel
    try:
        rows = list(csv.reader(io.StringIO(text), dialect))
    except csv.Error as exc:
        raise ParseError(f"the CSV file is malformed: {exc}") from exc
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        return Parsed([], "csv")
    notes = [note] if note else []
    try:
        has_header = csv.Sniffer().has_header(sample)
    except csv.Error:
        has_header = False
    header = rows[0] if has_header else [f"column {i + 1}" for i in range(max(len(r) for r in rows))]
    body = rows[1:] if has_header else rows
    blocks = []
    for n, row in enumerate(body, start=2 if has_header else 1):
        cells = [f"{header[i] if i < len(header) else f'column {i + 1}'}: {v.strip()}" for i, v in enumerate(row)
                 if v.strip()]
        blocks.append(Block("; ".join(cells), "row", loc=("row", n, n)))
    return Parsed(blocks, "csv", notes=notes)


# -- HTML -----------------------------------------------------------------------------------
_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>")


def html_to_blocks(html: str | bytes, keep_all: bool = False) -> tuple[list[Block], str]:
    """HTML's main text as Markdown by trafilatura (boilerplate such as menus dropped), then
    split like Markdown. Pages too small for trafilatura's main-text heuristics (or
    ``keep_all``, for EPUB chapters) fall back to all of the page's text."""
    import trafilatura

    if isinstance(html, bytes):
        html = decode_text(html, declared_charset(html))
    html = _XML_DECL.sub("", html, count=1)  # lxml refuses text that declares an encoding
    title = ""
    md = None
    if not keep_all:
        md = trafilatura.extract(html, output_format="markdown", include_formatting=True, include_tables=True,
                                 include_comments=False, favor_recall=True)
    if not md:
        md = _html_all_text(html)
    try:
        meta = trafilatura.extract_metadata(html)
        title = (meta.title or "") if meta else ""
    except Exception:  # noqa: BLE001 - a title is a nicety
        title = ""
    return number_paragraphs(markdown_blocks(md or "")), title


def number_paragraphs(blocks: list[Block]) -> list[Block]:
    """Give blocks without a position ``("paragraph", n, n)``: n counts the text's paragraphs
    (list items, code) in order, headings not counted, so a user can find "paragraph 5" on a
    page; a heading takes the number of the paragraph that follows it."""
    n = 0
    waiting: list[Block] = []
    for b in blocks:
        if b.kind == "heading":
            waiting.append(b)
            continue
        n += 1
        for h in waiting:
            h.loc = h.loc or ("paragraph", n, n)
        waiting = []
        b.loc = b.loc or ("paragraph", n, n)
    for h in waiting:
        h.loc = h.loc or ("paragraph", max(n, 1), max(n, 1))
    return blocks


def _html_all_text(html: str) -> str:
    """Every heading and paragraph of the page, in order, as Markdown (no boilerplate removal)."""
    from lxml import html as lxml_html

    try:
        root = lxml_html.fromstring(html)
    except Exception:  # noqa: BLE001 - lxml rejects empty or odd documents
        return ""
    for bad in root.xpath("//script|//style|//noscript|//template"):
        bad.drop_tree()
    out: list[str] = []
    for el in root.iter():
        tag = el.tag if isinstance(el.tag, str) else ""
        if re.fullmatch(r"h[1-6]", tag):
            out.append("#" * int(tag[1]) + " " + " ".join(el.text_content().split()))
        elif tag in ("p", "li", "pre", "blockquote", "td", "th", "dt", "dd", "figcaption", "caption"):
            if tag != "pre" and el.xpath("ancestor::p|ancestor::li|ancestor::blockquote|ancestor::td"):
                continue
            text = el.text_content().strip() if tag == "pre" else " ".join(el.text_content().split())
            if text:
                out.append(text)
    if not out:
        body = root.find("body")
        out.append(" ".join((body if body is not None else root).text_content().split()))
    return "\n\n".join(out)


def _parse_html(data: bytes, job: _Job) -> Parsed:
    text, note = decode_with_note(data, job.charset)
    blocks, title = html_to_blocks(text)
    return Parsed(blocks, "html", title=title, notes=[note] if note else [])


# -- PDF ------------------------------------------------------------------------------------
def _parse_pdf(data: bytes, job: _Job) -> Parsed:
    """The text layer page by page (pymupdf); each paragraph block keeps its page number.

    Before any page is read, every compressed stream MuPDF would inflate whole (fonts,
    content, forms; not images, which text extraction leaves compressed) is inflated once
    within ``job.limits``, keeping nothing: a PDF whose streams expand past them is refused.
    """
    import pymupdf

    try:
        doc = pymupdf.open(stream=data, filetype="pdf")
    except Exception as exc:  # noqa: BLE001 - pymupdf raises several kinds for a bad file
        raise ParseError(f"the PDF is damaged or not a PDF ({_one_line(exc)})") from exc
    try:
        if doc.needs_pass:
            raise ParseError("the PDF is encrypted (password-protected): save an unprotected copy and add that")
        _check_pdf_streams(doc, job.limits)
        blocks: list[Block] = []
        title = (doc.metadata or {}).get("title") or ""
        # images are skipped, so MuPDF is not asked to keep them (and never decodes them)
        flags = pymupdf.TEXTFLAGS_BLOCKS & ~pymupdf.TEXT_PRESERVE_IMAGES
        try:
            for number, page in enumerate(doc, start=1):
                for b in page.get_text("blocks", sort=True, flags=flags):
                    if len(b) >= 7 and b[6] != 0:
                        continue  # an image block
                    text = _pdf_paragraph(b[4])
                    if text:
                        blocks.append(Block(text, "text", loc=("page", number, number)))
        except ParseError:
            raise
        except Exception as exc:  # noqa: BLE001 - pymupdf raises many types on a damaged PDF; each becomes one line
            raise ParseError(f"the PDF is damaged: reading its pages failed ({_one_line(exc)})") from exc
        return Parsed(blocks, "pdf", title=title, pages=doc.page_count)
    finally:
        doc.close()


def _check_pdf_streams(doc, limits: Limits) -> None:
    """Inflate each Flate-compressed stream that is not an image or an attachment, once and
    keeping nothing, within ``limits`` (per stream and in all); :class:`RefusedError` past
    them. Fonts are what MuPDF would otherwise inflate whole (a 1 GB font stream held 1 GB);
    page contents and object streams it reads as a stream, but inflating gigabytes of them
    costs minutes, so they count too. Streams with other filters (LZW, run-length) are left to
    MuPDF: they amplify far less."""
    total = 0
    try:
        count = doc.xref_length()
    except Exception:  # noqa: BLE001 - no cross-reference table to walk: MuPDF repairs or fails later
        return
    for xref in range(1, count):
        found = _pdf_flate_stream(doc, xref)
        if found is None:
            continue
        raw, what = found
        try:
            total += inflate_size(raw, limits, what=what, spent=total)
        except ArchiveLimitError as exc:
            raise RefusedError(str(exc)) from exc


def _pdf_flate_stream(doc, xref: int) -> tuple[bytes, str] | None:
    """Object ``xref``'s raw (still compressed) bytes and a name for it, when it is a Flate
    stream text extraction may inflate; None otherwise, or when the object is damaged (MuPDF
    then skips it the same way)."""
    try:
        if not doc.xref_is_stream(xref):
            return None
        subtype = doc.xref_get_key(xref, "Subtype")[1]
        if subtype == "/Image" or doc.xref_get_key(xref, "Type")[1] == "/EmbeddedFile":
            return None  # text extraction never inflates an image or an attached file
        if not doc.xref_get_key(xref, "Filter")[1].lstrip("[ ").startswith(("/FlateDecode", "/Fl")):
            return None
        font = subtype.startswith("/Type1C") or doc.xref_get_key(xref, "Length1")[0] != "null"
        return doc.xref_stream_raw(xref) or b"", f"stream {xref} of the PDF" + (" (a font)" if font else "")
    except Exception:  # noqa: BLE001 - pymupdf raises RuntimeError/ValueError for a damaged object
        return None


def _pdf_paragraph(text: str) -> str:
    text = text.strip()
    text = re.sub(r"(\w)-\n(\w)", r"\1\2", text)  # words hyphenated across lines
    return re.sub(r"[ \t]*\n[ \t]*", " ", text).strip()


# -- DOCX -----------------------------------------------------------------------------------
def _check_archive(data: bytes, limits: Limits, what: str) -> None:
    """Stream every member of the archive once within ``limits`` before a library that reads
    the whole archive itself (python-docx, ebooklib) is handed the bytes."""
    try:
        with SafeZip(data, limits, what=what) as archive:
            archive.check()
    except ArchiveLimitError as exc:
        raise RefusedError(str(exc)) from exc


def _parse_docx(data: bytes, job: _Job) -> Parsed:
    """Paragraphs and tables in body order; "Heading N" and "Title" styles become headings."""
    import zipfile

    try:
        _check_archive(data, job.limits, "the DOCX file")
    except ArchiveError as exc:
        raise ParseError(f"the DOCX file is damaged or not a DOCX ({exc})") from exc
    try:
        import docx
        from docx.table import Table

        document = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ParseError(f"the DOCX file is damaged or not a DOCX ({_one_line(exc)})") from exc
    except Exception as exc:  # noqa: BLE001 - python-docx raises many types on a damaged part; each becomes one line
        raise ParseError(f"cannot read the DOCX file ({_one_line(exc)})") from exc
    try:
        return _docx_blocks(document, Table)
    except Exception as exc:  # noqa: BLE001 - python-docx reads its parts lazily: a malformed one
        # (styles.xml or core.xml of the wrong shape) fails only when used, with any error type
        raise ParseError(f"the DOCX file is damaged: a part of it is malformed ({_one_line(exc)})") from exc


def _docx_blocks(document, Table) -> Parsed:
    blocks: list[Block] = []
    number = 0  # paragraphs with text, headings included, as a reader counts them in Word
    for part in document.iter_inner_content():
        if isinstance(part, Table):
            at = ("paragraph", max(number, 1), max(number, 1))  # a table: the paragraph it follows
            for row in part.rows:
                cells = []
                for cell in row.cells:
                    text = " ".join(cell.text.split())
                    if text and (not cells or cells[-1] != text):  # merged cells repeat
                        cells.append(text)
                if cells:
                    blocks.append(Block(" | ".join(cells), "row", loc=at))
            continue
        text = part.text.strip()
        if not text:
            continue
        number += 1
        at = ("paragraph", number, number)
        style = (part.style.name if part.style is not None else "") or ""
        m = re.match(r"(?i)heading\s*(\d)", style)
        if m:
            blocks.append(Block(text, "heading", int(m.group(1)), loc=at))
        elif style.lower() == "title":
            blocks.append(Block(text, "heading", 1, loc=at))
        else:
            blocks.append(Block(text, "text", loc=at))
    title = document.core_properties.title or next((b.text for b in blocks if b.kind == "heading"), "")
    return Parsed(blocks, "docx", title=title)


# -- EPUB -----------------------------------------------------------------------------------
def _parse_epub(data: bytes, job: _Job) -> Parsed:
    """Chapters in spine (reading) order, each chapter's HTML split like a web page."""
    import tempfile

    import ebooklib
    from ebooklib import epub

    try:
        _check_archive(data, job.limits, "the EPUB")
    except ArchiveError as exc:
        import zipfile

        cause = exc.__cause__
        problem = _epub_problem(cause) if isinstance(cause, zipfile.BadZipFile) else str(exc)
        raise ParseError(f"not a readable EPUB: {problem}") from exc

    # ebooklib reads from a path; a temporary copy keeps the API the same for uploads and URLs
    with tempfile.NamedTemporaryFile(suffix=".epub") as handle:
        handle.write(data)
        handle.flush()
        try:
            book = epub.read_epub(handle.name, options={"ignore_ncx": True})
        except Exception as exc:  # noqa: BLE001 - ebooklib raises its own EpubException, lxml's and bare ones
            raise ParseError(f"not a readable EPUB: {_epub_problem(exc)}") from exc
    try:
        return _epub_blocks(book, ebooklib, epub)
    except ParseError:
        raise
    except Exception as exc:  # noqa: BLE001 - a package file of the wrong shape fails in ebooklib's objects
        raise ParseError(f"not a readable EPUB: its package file (.opf) is malformed ({_one_line(exc)})") from exc


def _epub_blocks(book, ebooklib, epub) -> Parsed:
    docs = {item.get_id(): item for item in book.get_items_of_type(ebooklib.ITEM_DOCUMENT)
            if not isinstance(item, epub.EpubNav)}  # the table of contents is not content
    order = [docs[i] for i, _ in book.spine if i in docs] or list(docs.values())
    blocks: list[Block] = []
    for number, item in enumerate(order, start=1):
        try:
            chapter, _ = html_to_blocks(item.get_content(), keep_all=True)
        except ParseError as exc:
            raise ParseError(f"not a readable EPUB: its part {item.get_name()} is not text ({exc})") from exc
        for b in chapter:
            b.loc = ("chapter", number, number)
        blocks += chapter
    titles = book.get_metadata("DC", "title")
    title = titles[0][0] if titles else ""
    return Parsed(blocks, "epub", title=title)


def _epub_problem(exc: Exception) -> str:
    """What is wrong with an EPUB, in words, from whatever ebooklib or lxml raised: an EPUB is a
    ZIP archive whose META-INF/container.xml names a package file (.opf) listing the chapters."""
    import zipfile

    message = str(getattr(exc, "msg", "") or "")
    if isinstance(exc, zipfile.BadZipFile) or "zip" in message.lower():
        return "it is not a ZIP archive (damaged, truncated or another kind of file)"
    if isinstance(exc, KeyError):  # zipfile: "There is no item named 'X' in the archive"
        missing = exc.args[0] if exc.args else ""
        m = re.search(r"named '([^']+)'", str(missing))
        return f"{m.group(1) if m else 'a file it lists'} is missing from the archive"
    if "container" in message.lower():
        return "META-INF/container.xml is missing or names no package file (.opf)"
    if type(exc).__module__.startswith("lxml") or type(exc).__name__.endswith("SyntaxError"):
        return f"its package file (.opf) or container.xml is not valid XML ({_one_line(exc)})"
    if message:
        return _one_line(Exception(message))
    # AttributeError / TypeError from inside ebooklib: a required part of the package is absent
    return "its META-INF/container.xml or package file (.opf) is malformed (a required part is absent)"


def _one_line(exc: Exception) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


_PARSERS = {
    "text": _parse_text, "markdown": _parse_markdown, "html": _parse_html, "code": _parse_code,
    "csv": _parse_csv, "pdf": _parse_pdf, "docx": _parse_docx, "epub": _parse_epub,
}
