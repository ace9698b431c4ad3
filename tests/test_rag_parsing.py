"""rag-enhancer without the embedding model: parsers on real files made here, chunking,
upload names, URL fetching against a local server, injection labels and citations."""

from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path

import pytest

from pocketpack.rag.chunking import chunk_blocks, join_chunks
from pocketpack.rag.fetch import FetchError, fetch
from pocketpack.rag.ingest import safe_upload_name
from pocketpack.rag.inject import INJECTION_POINT, inject_prompt, question_of
from pocketpack.rag.parsers import Block, ParseError, parse
from pocketpack.rag.retrieve import Passage
from tests.helpers.archives import small_epub


# -- files made with the real libraries -------------------------------------------------------
def make_pdf(pages: list[str], *, encrypt: bool = False) -> bytes:
    import pymupdf

    doc = pymupdf.open()
    for text in pages:
        page = doc.new_page()
        page.insert_textbox(pymupdf.Rect(72, 72, 540, 770), text, fontsize=11)
    kwargs = {"encryption": pymupdf.PDF_ENCRYPT_AES_256, "user_pw": "secret", "owner_pw": "owner"} if encrypt else {}
    data = doc.tobytes(**kwargs)
    doc.close()
    return data


def make_image_only_pdf() -> bytes:
    import pymupdf

    doc = pymupdf.open()
    page = doc.new_page()
    pix = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 40, 40), False)
    pix.clear_with(200)
    page.insert_image(pymupdf.Rect(72, 72, 272, 272), pixmap=pix)
    data = doc.tobytes()
    doc.close()
    return data


def make_docx(path: Path) -> None:
    import docx

    d = docx.Document()
    d.add_heading("Field Manual", level=1)
    d.add_paragraph("Intro text about the expedition.")
    d.add_heading("Rations", level=2)
    d.add_paragraph("Each member carries four tins of sardines.")
    table = d.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Item", "Count"
    table.cell(1, 0).text, table.cell(1, 1).text = "Lanterns", "7"
    d.save(path)


def texts(parsed):
    return [b.text for b in parsed.blocks]


# -- parsers ----------------------------------------------------------------------------------
def test_pdf_text_keeps_page_numbers():
    parsed = parse(make_pdf(["The bridge opened in 1889.", "Its span is 300 metres long."]), "b.pdf")
    assert parsed.pages == 2
    assert [(b.text, b.loc) for b in parsed.blocks] == [
        ("The bridge opened in 1889.", ("page", 1, 1)), ("Its span is 300 metres long.", ("page", 2, 2))]


def test_bad_pdfs_are_one_clear_line_each():
    with pytest.raises(ParseError, match="encrypted"):
        parse(make_pdf(["secret"], encrypt=True), "locked.pdf")
    with pytest.raises(ParseError, match="damaged or not a PDF"):
        parse(b"%PDF-1.7\n this is not really a pdf", "broken.pdf")
    with pytest.raises(ParseError, match="no text layer"):
        parse(make_image_only_pdf(), "scan.pdf")


def test_docx_headings_paragraphs_and_tables(tmp_path):
    make_docx(tmp_path / "m.docx")
    parsed = parse((tmp_path / "m.docx").read_bytes(), "m.docx")
    kinds = [(b.kind, b.text) for b in parsed.blocks]
    assert ("heading", "Field Manual") in kinds and ("heading", "Rations") in kinds
    assert ("text", "Each member carries four tins of sardines.") in kinds
    assert ("row", "Lanterns | 7") in kinds
    with pytest.raises(ParseError, match="DOCX"):
        parse(b"PK\x03\x04 not a zip really", "bad.docx")


def test_epub_chapters_in_reading_order(tmp_path):
    small_epub(tmp_path / "b.epub")
    parsed = parse((tmp_path / "b.epub").read_bytes(), "b.epub")
    body = [(b.text, b.loc) for b in parsed.blocks if b.kind == "text"]
    assert [t for t, _ in body] == ["The orchard had forty pear trees.", "The well was dug in the spring of 1802."]
    assert body[0][1][1] < body[1][1][1]  # chapter numbers increase
    assert parsed.title == "Two Chapters"


def test_html_drops_boilerplate_and_keeps_headings():
    page = ("<html><body><nav><a href='/'>Home</a> <a href='/x'>Products</a></nav><article><h1>Tide Tables</h1>"
            "<p>High tide at the harbour is at 06:12 on Monday, and the low tide follows at 12:30.</p>"
            "<h2>Warnings</h2><p>Do not cross the causeway within two hours of high water, ever.</p></article>"
            "<footer>Copyright 2024 All rights reserved</footer></body></html>")
    parsed = parse(page.encode(), "t.html")
    headings = [b.text for b in parsed.blocks if b.kind == "heading"]
    assert headings == ["Tide Tables", "Warnings"]
    assert not any("Copyright" in t or "Products" in t for t in texts(parsed))


def test_csv_rows_read_as_column_value_pairs():
    parsed = parse(b"city,population\nLyon,522000\nNantes,320000\n", "c.csv")
    assert [(b.text, b.loc) for b in parsed.blocks] == [
        ("city: Lyon; population: 522000", ("row", 2, 2)), ("city: Nantes; population: 320000", ("row", 3, 3))]


def test_source_code_blocks_keep_line_ranges():
    code = b"import os\n\n\ndef alpha():\n    return 1\n\n\nclass Beta:\n    pass\n"
    parsed = parse(code, "m.py")
    # a range ends at the block's last line of code: blank lines and the final newline are not cited
    assert [b.loc for b in parsed.blocks] == [("line", 1, 1), ("line", 4, 5), ("line", 8, 9)]
    assert parsed.blocks[1].text.startswith("def alpha")
    three = chunk_blocks(parse(b"def f():\n    x = 1\n    return x\n", "f.py").blocks)
    assert [c.location for c in three] == ["lines 1–3"]


def test_text_encodings_and_binary_files():
    assert "crème brûlée" in texts(parse("Une crème brûlée, déjà prête à être dégustée. " .encode("cp1252") * 4,
                                        "fr.txt"))[0]
    assert texts(parse("\ufeffBOM text here".encode("utf-8"), "b.txt")) == ["BOM text here"]
    with pytest.raises(ParseError, match="binary"):
        parse(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8, "image.txt")
    with pytest.raises(ParseError, match="not valid UTF-8 and its encoding could not be detected"):
        parse(bytes(range(128, 256)) * 40, "mystery.txt")


def test_markdown_and_empty_files():
    parsed = parse(b"Title\n=====\n\nBody one.\n\n```\ncode line\n```\n", "r.md")
    assert [(b.kind, b.text) for b in parsed.blocks] == [("heading", "Title"), ("text", "Body one."),
                                                          ("code", "```\ncode line\n```")]
    with pytest.raises(ParseError, match="no text"):
        parse(b"   \n\n  ", "empty.txt")


# -- chunking ---------------------------------------------------------------------------------
def test_chunks_follow_headings_and_respect_size_and_overlap():
    sentences = " ".join(f"Fact number {i} concerns the harbour crane {i}." for i in range(30))
    blocks = [Block("Port", "heading", 1), Block("Short intro.", loc=("page", 1, 1)),
              Block("Cranes", "heading", 2), Block(sentences, loc=("page", 2, 3)),
              Block("Ships", "heading", 2), Block("Ships dock at pier nine.", loc=("page", 4, 4))]
    chunks = chunk_blocks(blocks, size=50, overlap=15)
    headings = [c.heading for c in chunks]
    assert headings[0] == "Port" and headings[-1] == "Port › Ships"
    assert all(c.text.startswith(c.heading + "\n") for c in chunks)
    crane = [c for c in chunks if c.heading == "Port › Cranes"]
    assert len(crane) > 2 and all(len(c.body) <= 50 * 4 + 60 for c in crane)
    # the overlap repeats whole trailing sentences of the previous chunk
    for prev, nxt in zip(crane, crane[1:]):
        assert nxt.overlap_chars > 0 and prev.body.endswith(nxt.body[:nxt.overlap_chars].strip())
    assert crane[0].location.startswith("p") and "Cranes" in crane[0].location
    # joining neighbours gives the section back without the repeated text
    joined = join_chunks([(c.text, c.heading, c.body_start, c.overlap_chars) for c in crane])
    assert joined.count("Fact number 17 concerns") == 1 and "Fact number 29 concerns" in joined


def test_chunk_size_is_configurable():
    text = " ".join(f"Sentence {i} is here." for i in range(200))
    small = chunk_blocks([Block(text)], size=40, overlap=0)
    large = chunk_blocks([Block(text)], size=400, overlap=0)
    assert len(small) > 3 * len(large)
    with pytest.raises(ValueError):
        chunk_blocks([Block(text)], size=4)


# -- nothing is lost, sizes hold, every chunk has a location (acceptance review) ----------------
BOAT_LIST = ("Packing list for the boat trip\n\nLife jackets are in locker 7\n\nSpare fuel can is under the bench\n\n"
             "The skipper expects everyone at the slipway by seven, with the forecast checked, the bilge pump tested "
             "and the tender inflated, because the tide turns at half past eight and will not wait for anyone.\n")


def squeeze(text: str) -> str:
    return "".join(text.split())


def test_short_text_lines_are_body_text_and_headings_are_only_real_ones():
    parsed = parse(BOAT_LIST.encode(), "list.txt")
    assert [b.kind for b in parsed.blocks] == ["text"] * 4
    chunks = chunk_blocks(parsed.blocks)
    for line in ("Packing list for the boat trip", "Life jackets are in locker 7", "Spare fuel can is under the bench"):
        assert any(line in c.text for c in chunks), line
    assert chunks[0].location == "lines 1–7"
    # what plainly is a heading still is one
    book = parse("CHAPTER IV\n\nChapter 5: The Storm\n\nIV. The Return\n\nRations\n=======\n\nSection 3 covers the fuel"
                 " lines\n\nThey rowed on.\n".encode(), "book.txt")
    assert [(b.kind, b.text) for b in book.blocks] == [
        ("heading", "CHAPTER IV"), ("heading", "Chapter 5: The Storm"), ("heading", "IV. The Return"),
        ("heading", "Rations"), ("text", "Section 3 covers the fuel lines"), ("text", "They rowed on.")]


def test_a_heading_without_body_is_still_indexed():
    blocks = [Block("Gear", "heading", 1, ("line", 1, 1)), Block("Ropes", "heading", 2, ("line", 3, 3)),
              Block("Fuel", "heading", 2, ("line", 5, 5)), Block("Two cans of diesel.", loc=("line", 7, 7)),
              Block("Spares", "heading", 2, ("line", 9, 9))]
    chunks = chunk_blocks(blocks)
    assert any("Ropes" in c.text for c in chunks) and any("Spares" in c.text for c in chunks)
    fuel = next(c for c in chunks if "diesel" in c.text)
    assert fuel.heading == "Gear › Fuel" and fuel.location == "lines 3–7 · Gear › Fuel"  # "Ropes" is at line 3
    md = chunk_blocks(parse(b"# Manual\n\n## Ropes\n\n## Knots\n\nTie a bowline.\n\n## Appendix\n", "m.md").blocks)
    assert [c.location for c in md] == ["lines 3–7 · Manual › Knots", "line 9 · Manual"]
    assert "Ropes" in md[0].body and "Appendix" in md[1].body


MARKDOWN_DOC = """# Expedition

## Gear

## Ropes and knots

- 40 m of static rope
- two ice screws

### Knots

Tie a figure eight on a bight. Check it twice.

```
knot = "bowline"
```

## Final words
"""

RST_DOC = """=========
Field Log
=========

Day one
-------
We walked from the hut to the col.
Snow was firm.

Day two
-------

WEATHER

Fog all morning.
"""

GUTENBERG_DOC = """THE VOYAGE

BOOK ONE

CHAPTER I.

The ship left Brest on a grey morning in March, with forty men aboard and
provisions for nine months; the captain had sworn to be back before winter.

Notes

A list
of short
lines

CHAPTER II.
"""


@pytest.mark.parametrize("name,data", [
    ("list.txt", BOAT_LIST), ("guide.md", MARKDOWN_DOC), ("log.rst", RST_DOC), ("voyage.txt", GUTENBERG_DOC),
    ("tool.py", "import os\n\n\ndef main():\n    return os.getcwd()\n\n\nclass Runner:\n    pass\n"),
    ("zh.txt", "船在三月的一个阴天离开了港口。船上有四十个人！\n\n他们带了九个月的补给；船长发誓冬天前回来。\n"),
])
@pytest.mark.parametrize("size", [16, 60, 200])
def test_every_line_of_a_document_is_in_some_chunk(name, data, size):
    chunks = chunk_blocks(parse(data.encode(), name).blocks, size=size, overlap=size // 4)
    whole = squeeze(join_chunks([(c.text, c.heading, c.body_start, c.overlap_chars) for c in chunks]))
    for line in data.split("\n"):
        line = line.strip().lstrip("#").strip()
        if not line or (len(set(line)) == 1 and not line[0].isalnum()):  # blank, or an underline
            continue
        assert squeeze(line) in whole, (line, [c.text for c in chunks])
        if size >= 60 and len(line) < 60:
            assert any(squeeze(line) in squeeze(c.text) for c in chunks), line
    assert all(c.location for c in chunks)


def test_cjk_text_and_long_tokens_are_cut_to_the_chunk_size():
    from pocketpack.rag.chunking import approx_tokens

    sentences = [f"第{i}号仓库存放着{i * 7}箱罐头和一些旧渔网，管理员每周检查一次。" for i in range(120)]
    sentences[77] = "灯塔看守人的猫名叫饼干，它每天晚上都睡在楼梯上。"
    paragraph = "".join(sentences)
    assert len(paragraph) > 3000 and " " not in paragraph
    chunks = chunk_blocks(parse(paragraph.encode(), "zh.txt").blocks, size=200, overlap=30)
    assert len(chunks) >= 10
    assert all(approx_tokens(c.body) <= 210 for c in chunks)
    assert [c for c in chunks if sentences[77] in c.text]  # a sentence is never cut
    assert squeeze(paragraph) in squeeze(join_chunks([(c.text, c.heading, c.body_start, c.overlap_chars)
                                                      for c in chunks]))
    blob = "a" * 300_000
    for name in ("blob.txt", "blob.js"):
        chunks = chunk_blocks(parse(blob.encode(), name).blocks, size=200, overlap=30)
        assert len(chunks) >= 300_000 // 700 and all(len(c.body) <= 200 * 3.5 + 10 for c in chunks)
        assert sum(len(c.body) - c.overlap_chars for c in chunks) == len(blob)



ZH_HEADINGS = ["港口的历史和它在三百年间经历的每一次风暴以及重建的详细记录",
               "灯塔看守人的日记摘录包括他对天气潮汐和过往船只的观察与评论"]


@pytest.mark.parametrize("script", ["zh", "en"])
@pytest.mark.parametrize("depth", [1, 3, 6])
@pytest.mark.parametrize("size", [16, 60, 200, 256])
def test_heading_path_counts_against_the_chunk_size(script, depth, size):
    """Review: three 103-character CJK headings made 507-token chunks at size 200 (311 of
    them heading path), so the embedder truncated the body. Heading + body now fit."""
    from pocketpack.rag.chunking import approx_tokens

    if script == "zh":
        heads = [f"第{d}章" + (ZH_HEADINGS[d % 2] * 4)[:100] for d in range(depth)]
        body = "".join(f"第{i}号仓库存放着{i * 7}箱罐头和一些旧渔网，管理员每周检查一次。" for i in range(60))
    else:
        heads = [f"Part {d}: " + " ".join(["the harbour master's long account of storms"] * 3) for d in range(depth)]
        body = " ".join(f"Fact number {i} concerns the harbour crane {i}." for i in range(150))
    blocks = [Block(t, "heading", d + 1, ("line", 2 * d + 1, 2 * d + 1)) for d, t in enumerate(heads)]
    blocks.append(Block(body, loc=("line", 2 * depth + 1, 2 * depth + 1)))
    chunks = chunk_blocks(blocks, size=size, overlap=size // 4)
    for c in chunks:
        assert approx_tokens(c.text) <= size * 1.03 + 2, (approx_tokens(c.text), c.text)
        assert approx_tokens(c.heading) <= max(2, size // 3), c.heading
        innermost = c.heading.split(" › ")[-1].rstrip("…")  # kept, cut short if need be
        assert innermost and heads[-1].startswith(innermost), c.heading
    # nothing lost: every heading and every sentence of the body is in the chunks
    whole = squeeze(join_chunks([(c.text, c.heading, c.body_start, c.overlap_chars) for c in chunks]))
    for text in heads:
        assert squeeze(text) in whole, text
    assert squeeze(body) in whole


def test_a_short_heading_path_is_shown_whole_and_not_repeated_in_the_body():
    blocks = [Block("Manual", "heading", 1), Block("Knots", "heading", 2), Block("Tie a bowline. " * 40)]
    chunks = chunk_blocks(blocks, size=60, overlap=10)
    assert {c.heading for c in chunks} == {"Manual › Knots"}
    assert not any("Manual" in c.body or "Knots" in c.body for c in chunks)


def make_plain_docx(path: Path, paragraphs: list[str]) -> None:
    import docx

    d = docx.Document()
    for text in paragraphs:
        d.add_paragraph(text)
    d.save(path)


def test_docx_and_html_chunks_say_where_they_are(tmp_path):
    paragraphs = [f"Paragraph about harbour matter number {i}, which is long enough to fill a good part of a small"
                  f" chunk on its own." for i in range(1, 21)]
    paragraphs[11] = "The brass sextant is kept in the third drawer of the chart table."
    make_plain_docx(tmp_path / "plain.docx", paragraphs)
    chunks = chunk_blocks(parse((tmp_path / "plain.docx").read_bytes(), "plain.docx").blocks, size=60, overlap=10)
    assert len(chunks) > 3 and all(c.location.startswith("paragraph") for c in chunks)
    sextant = next(c for c in chunks if "sextant" in c.text)
    a, _, b = sextant.location.split(" ", 1)[1].partition("–")
    assert int(a) <= 12 <= int(b or a)
    make_docx(tmp_path / "m.docx")
    located = {c.location for c in chunk_blocks(parse((tmp_path / "m.docx").read_bytes(), "m.docx").blocks)}
    assert located == {"paragraph 2 · Field Manual", "paragraph 4 · Field Manual › Rations"}  # the table follows 4
    page = ("<html><body><div><p>The ferry to the island leaves from pier two every morning.</p>"
            "<p>Tickets are sold on board and cost four euros.</p><p>Bicycles travel free of charge.</p>"
            "</div></body></html>")
    blocks = parse(page.encode(), "ferry.html").blocks
    assert [b.loc for b in blocks] == [("paragraph", n, n) for n in (1, 2, 3)]
    assert [c.location for c in chunk_blocks(blocks, size=20, overlap=0)] == ["paragraph 1", "paragraph 2",
                                                                             "paragraph 3"]


def test_epub_chapter_locations_and_a_damaged_epub(tmp_path):
    import io
    import zipfile

    small_epub(tmp_path / "b.epub")
    good = (tmp_path / "b.epub").read_bytes()
    chunks = chunk_blocks(parse(good, "b.epub").blocks)
    assert [c.location for c in chunks] == ["ch. 1 · Chapter One", "ch. 2 · Chapter Two"]
    with zipfile.ZipFile(io.BytesIO(good)) as z:
        files = {n: z.read(n) for n in z.namelist()}
    opf = next(n for n in files if n.endswith(".opf"))
    files[opf] = b'<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0"/>'
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for n, content in files.items():
            z.writestr(n, content)
    for damaged in (out.getvalue(), good[: len(good) // 2], b"not an epub at all"):
        with pytest.raises(ParseError) as err:
            parse(damaged, "broken.epub")
        message = str(err.value)
        assert message.startswith("not a readable EPUB: ") and "\n" not in message and "NoneType" not in message


# -- upload names -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../../etc/passwd", "..\\..\\boot.ini", "/abs/path/x.md", "..", ".", "",
                                  "sub/../../x.txt", "a\x00b.txt", ".hidden", "~/.bashrc"])
def test_upload_names_never_leave_the_folder(tmp_path, name):
    safe = safe_upload_name(name)
    target = (tmp_path / safe).resolve()
    assert target.parent == tmp_path.resolve() and safe not in ("", ".", "..") and "/" not in safe


# -- URLs -------------------------------------------------------------------------------------
class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path == "/slow":
            time.sleep(3)
        if self.path in ("/page", "/slow"):
            body = b"<html><body><article><h1>Notice</h1><p>The library opens at nine.</p></article></body></html>"
            try:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:  # the client gave up waiting (the timeout test)
                pass
            return
        self.send_error(404, "Not Found")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_fetch_ok_404_timeout_and_private_addresses(server):
    got = fetch(server + "/page", allow_private=True)
    assert b"opens at nine" in got.data and got.content_type.startswith("text/html")
    with pytest.raises(FetchError, match="answered 404"):
        fetch(server + "/missing", allow_private=True)
    with pytest.raises(FetchError, match=r"no answer within 0.5 s"):
        fetch(server + "/slow", timeout=0.5, allow_private=True)
    with pytest.raises(FetchError, match="local or private address"):
        fetch(server + "/page")
    with pytest.raises(FetchError, match="over the"):
        fetch(server + "/page", allow_private=True, max_bytes=10)
    with pytest.raises(FetchError, match="only http"):
        fetch("file:///etc/passwd")


# -- injection in notebook mode, citations ----------------------------------------------------
def _passages():
    return [Passage("The well was dug in 1802.", "/docs/farm.md", "line 4 · History", 0.9, name="farm.md"),
            Passage("Forty pear trees <b>grow</b> there.", "/docs/farm.md", "line 9", 0.7, name="farm.md")]


def count(text):
    return len(text) // 4 + 1


def test_notebook_injection_point_and_user_input_markers():
    prompt = ("Answer from the excerpts.\n<|begin-user-input|>When was the well dug?<|end-user-input|>\n\n"
              f"{INJECTION_POINT}\n\nAnswer:")
    assert question_of(prompt) == "When was the well dug?"
    text, numbered = inject_prompt(prompt, _passages(), budget=500, count=count)
    assert "<|" not in text and text.endswith("Answer:")
    assert "[1] farm.md, line 4 · History: The well was dug in 1802." in text
    assert text.index("When was the well dug?") < text.index("[1] farm.md") < text.index("Answer:")
    assert [p.location for p in numbered] == ["line 4 · History", "line 9"]
    # no marker: the prompt is left alone (only stray markers removed)
    assert inject_prompt("plain <|end-user-input|>prompt", _passages(), 500, count)[0] == "plain prompt"
    # a budget that holds one passage numbers only that one
    long = Passage("The orchard is old. " * 60, "/docs/farm.md", "line 20", 0.5, name="farm.md")
    text, numbered = inject_prompt(prompt, [_passages()[0], long], budget=100, count=count)
    assert [p.location for p in numbered] == ["line 4 · History"] and "The orchard is old" not in text


def test_citations_link_to_the_exact_passage_and_escape_it():
    from pocketpack.rag.cite import link_citations

    reply = "Dug in 1802 [1]; trees too [2]. Not a source: [7]."
    out = link_citations(reply, _passages())
    assert out.count("<details") == 2 and 'href="#pp-src-' in out
    assert "The well was dug in 1802." in out and "&lt;b&gt;grow&lt;/b&gt;" in out and "<b>grow" not in out
    assert "[7]" in out and "pp-src-" not in out.split("[7]")[0].split("[2]")[-1]
    # nothing cited: the reply as written, its sources still listed under it (none marked cited)
    out = link_citations("No citations here.", _passages())
    assert out.startswith("No citations here.\n\n<div class=\"pp-sources\">") and "pp-cited" not in out


def test_a_tight_budget_keeps_every_hit_and_drops_context_first():
    from pocketpack.rag.inject import fit

    wide = [Passage("Context before. " * 30 + "The well was dug in 1802. " + "Context after. " * 30, "/d/farm.md",
                    "lines 1–9", 0.9, name="farm.md", core_text="The well was dug in 1802.", core_location="line 4"),
            Passage("More context. " * 30 + "Forty pear trees grow there." + " Tail." * 40, "/d/farm.md", "lines 20–30",
                    0.8, name="farm.md", core_text="Forty pear trees grow there.", core_location="line 25")]
    tight = fit(wide, 120, count)
    assert [p.text for p in tight] == ["The well was dug in 1802.", "Forty pear trees grow there."]
    assert [p.location for p in tight] == ["line 4", "line 25"]
    roomy = fit(wide, 5000, count)
    assert [p.text for p in roomy] == [p.text for p in wide]
    middle = fit(wide, 300, count)  # room for one passage's context: the best one gets it
    assert middle[0].text == wide[0].text and middle[1].text == "Forty pear trees grow there."
