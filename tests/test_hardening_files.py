"""Hostile and odd files on the document-ingestion side (issue 11): links leading out of an
ingested folder, ZIP and PDF bombs, hidden files skipped in silence, legacy encodings turned
into mojibake. Each test drives the public interface (the ``pocketpack rag`` CLI, ``Library``,
``parse``, ``pocketpack.safepath``) and fails on the code before its fix."""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from pocketpack import safepath
from pocketpack.archive import Limits
from pocketpack.rag.config import RagSettings, SettingsError
from pocketpack.rag.ingest import Library
from pocketpack.rag.parsers import ParseError, RefusedError, parse
from pocketpack.rag.retrieve import retrieve
from tests.helpers.archives import MB, deflate_zeros, docx_bomb, epub_bomb, small_docx
from tests.helpers.embedders import CountingEmbedder
from tests.helpers.rag import HARBOUR

REPO = Path(__file__).resolve().parents[1]
SECRET = "root:x:0:0:the secret outside the folder is the word marmalade"


@pytest.fixture()
def lib(tmp_path):
    library = Library(tmp_path / "store", RagSettings(chunk_size=60, chunk_overlap=10), embedder=CountingEmbedder())
    yield library
    library.close()


# -- links inside an ingested folder ------------------------------------------------------------
def _folder_with_links(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    (outside / "private").mkdir(parents=True)
    (outside / "passwd.txt").write_text(SECRET + "\n")
    (outside / "private" / "diary.md").write_text("My diary: the safe code is 9911.\n")
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "harbour.md").write_text(HARBOUR)
    (docs / "notes.txt").symlink_to(outside / "passwd.txt")                  # a file outside
    (docs / "sub" / "private").symlink_to(outside / "private", target_is_directory=True)  # a folder outside
    (docs / "sub" / "again.md").symlink_to(docs / "harbour.md")              # a file inside: read once
    (docs / "up").symlink_to(docs, target_is_directory=True)                 # a loop
    os.mkfifo(docs / "pipe.txt")                                             # reading it would wait forever
    return docs


def test_links_in_an_ingested_folder_never_lead_outside_it(tmp_path, lib):
    """'A symlink inside an ingested folder is followed to a file outside it: a folder holding
    notes.txt -> /etc/passwd gets /etc/passwd indexed, quotable in chat.'"""
    docs = _folder_with_links(tmp_path)
    report = lib.ingest([str(docs)])
    lines = {Path(r.source).name: (r.status, r.line()) for r in report.results}
    assert lines["harbour.md"][0] == "added"
    outside = tmp_path / "outside" / "passwd.txt"
    line = f"skipped {docs / 'notes.txt'}: a link to {outside}, outside the folder; not followed"
    assert lines["notes.txt"] == ("error", line)
    assert lines["private"][0] == "error" and "outside the folder; not followed" in lines["private"][1]
    assert lines["pipe.txt"] == ("error", f"skipped {docs / 'pipe.txt'}: not a regular file (a fifo, device or socket)")
    assert lines["up"][0] == "skipped" and "a link to a folder; not followed" in lines["up"][1]
    assert [d.name for d in lib.documents()] == ["harbour.md"]  # the inside link is the same file, once
    assert all(str(tmp_path / "outside") not in d.source for d in lib.documents())
    found = " ".join(p.text for p in retrieve(lib, "what is the secret word marmalade, the safe code", 5))
    assert "marmalade" not in found and "9911" not in found


def test_a_file_swapped_for_a_link_after_the_walk_is_refused_when_read(tmp_path):
    """The walk saw a plain file; by the time it is read it is a link to a file outside. The
    check is made on the file as opened, so the swap is refused, not followed."""
    root = tmp_path / "docs"
    root.mkdir()
    (tmp_path / "passwd").write_text(SECRET)
    entries = list(safepath.walk(root / ".." / "docs"))
    assert entries == []
    target = root / "a.txt"
    target.write_text("harmless")
    assert [e.real for e in safepath.walk(root)] == [target.resolve()]
    target.unlink()
    target.symlink_to(tmp_path / "passwd")
    with pytest.raises(safepath.PathOutsideError):
        safepath.read_within(root, target)
    # a folder on the way swapped for a link is caught after the open too
    (root / "sub").mkdir()
    (root / "sub" / "b.txt").write_text("fine")
    real_b = root / "sub" / "b.txt"
    assert safepath.read_within(root, real_b) == b"fine"
    (root / "sub" / "b.txt").unlink()
    (root / "sub").rmdir()
    (root / "sub").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "b.txt").write_text(SECRET)
    with pytest.raises(safepath.PathOutsideError):
        safepath.read_within(root, real_b)
    with pytest.raises(safepath.PathOutsideError):
        safepath.resolve_within(root, "sub/b.txt")
    assert safepath.resolve_within(root, "a/../x.txt") == root.resolve() / "x.txt"


def test_hidden_files_and_folders_get_a_skipped_line_but_no_error(tmp_path, lib):
    """'dotfiles are skipped without a "skipped" line': each hidden file or folder (one line
    for a folder, not one per file in it) is named with why, and is not an error."""
    docs = tmp_path / "docs"
    (docs / ".git").mkdir(parents=True)
    (docs / ".git" / "HEAD.md").write_text("ref: refs/heads/main")
    (docs / ".env").write_text("TOKEN=do-not-index")
    (docs / ".notes.md").write_text("A hidden note about the harbour.")
    (docs / "harbour.md").write_text(HARBOUR)
    report = lib.ingest([str(docs)])
    assert [r.line() for r in report.results if r.status == "skipped"] == [
        f"skipped {docs / '.env'}: hidden file (its name starts with a dot)",
        f"skipped {docs / '.git'}: hidden folder (its name starts with a dot)",
        f"skipped {docs / '.notes.md'}: hidden file (its name starts with a dot)",
    ]
    assert report.errors == [] and report.summary() == "1 added, 3 skipped"


# -- encodings -------------------------------------------------------------------------------------
def test_legacy_encodings_are_detected_and_undecodable_text_is_refused():
    """'invalid UTF-8 is decoded as mojibake instead of being detected (try charset detection,
    else refuse with a line)'."""
    german = "Grüße aus München! Die Straße am Hafen ist schön, und das Wetter ist heiß.\n" * 3
    assert parse(german.encode("latin-1"), "brief.txt").blocks[0].text == german.strip().replace("\n", " ")
    english = ("The captain said “we sail at dawn” — and nobody argued. It was the third voyage that year, "
               "and the crew’s patience was thin… The harbour master’s log records every departure.\n") * 3
    assert "“we sail at dawn” —" in parse(english.encode("cp1252"), "log.md").blocks[0].text
    # too little text to tell cp1252 from cp1250 or cp1251: refused, never "pręt" or "Ïðèâåò"
    for short in ("Le café est prêt.\n".encode("cp1252"), "Привет, мир\n".encode("cp1251")):
        with pytest.raises(ParseError) as err:
            parse(short, "notes.txt")
        assert str(err.value) == "not valid UTF-8 and its encoding could not be detected; save it as UTF-8"
    rng = random.Random(7)
    noise = bytes(rng.randrange(0x80, 0x100) for _ in range(4000))
    with pytest.raises(ParseError, match="^not valid UTF-8 and its encoding could not be detected; save it as UTF-8$"):
        parse(noise, "random.txt")
    # UTF-8 with one damaged byte stays UTF-8 (not "naÃ¯ve" in Latin-1), and says what was replaced
    damaged = ("Une naïve crème brûlée, déjà prête.\n" * 5).encode() + b"\xff and the rest.\n"
    parsed = parse(damaged, "menu.txt")
    assert "naïve crème brûlée" in parsed.blocks[0].text and "\ufffd" in parsed.blocks[0].text
    assert parsed.notes == ["1 byte that is not valid UTF-8 replaced with \ufffd"]


def test_an_html_page_is_read_in_the_charset_it_declares():
    page = ('<html><head><meta charset="windows-1251"><title>Погода</title></head><body>'
            "<p>Привет, мир</p></body></html>").encode("cp1251")
    assert "Привет, мир" in [b.text for b in parse(page, "p.html").blocks]
    utf8_mislabelled = '<html><head><meta charset="iso-8859-1"></head><body><p>Grüße</p></body></html>'.encode()
    assert "Grüße" in [b.text for b in parse(utf8_mislabelled, "q.html").blocks]


def test_a_docx_with_a_part_of_the_wrong_shape_is_one_line(tmp_path):
    """Found by the fuzz test: python-docx reads parts lazily, so a styles.xml or core.xml that
    is well-formed XML of the wrong shape failed later, outside the guarded open, with an
    AttributeError (a traceback in the CLI)."""
    import zipfile

    seed = small_docx(tmp_path / "s.docx").read_bytes()
    for part in ("word/styles.xml", "docProps/core.xml"):
        out = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(seed)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
            for info in src.infolist():
                dst.writestr(info.filename, b'<?xml version="1.0"?><a/>' if info.filename == part else src.read(info))
        with pytest.raises(ParseError) as err:
            parse(out.getvalue(), "odd.docx")
        assert str(err.value).startswith("the DOCX file is damaged: a part of it is malformed (")
        assert "\n" not in str(err.value)


# -- ZIP and PDF bombs -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["docx", "epub"])
def test_a_zip_bomb_is_refused_without_inflating_it(tmp_path, kind):
    """'Zip bombs are bounded only by their compressed size: a 2 MB DOCX held 4.9 GB of RAM.'
    A member of 150 MB of zeros (under the size cap, so only the ratio and the stream catch
    it) is refused after a few MB: Python's allocations stay far below the member's size."""
    bomb = (docx_bomb if kind == "docx" else epub_bomb)(tmp_path / f"b.{kind}", 150 * MB, tmp_path)
    data = bomb.read_bytes()
    tracemalloc.start()
    try:
        with pytest.raises(RefusedError) as err:
            parse(data, bomb.name)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    member = "word/document.xml" if kind == "docx" else "EPUB/c1.xhtml"
    assert str(err.value) == (f"refused: member {member} expands more than 100 times its packed size (a ZIP bomb?)"
                              " (limit: rag max_unpack_ratio)")
    assert peak < 30 * MB, peak


def test_the_unpacked_size_limit_is_a_setting(tmp_path):
    """A real document, not a bomb, over a lowered ``max_unpacked_mb`` is refused with a line
    naming the setting; at the default it reads. A bad value is refused like any setting."""
    words = random.Random(3)
    text = " ".join("".join(words.choice("abcdefghij") for _ in range(7)) for _ in range(250_000))
    doc = small_docx(tmp_path / "big.docx", [text[i:i + 2000] for i in range(0, len(text), 2000)])
    data = doc.read_bytes()
    assert len(parse(data, "big.docx").blocks) > 900
    with pytest.raises(RefusedError) as err:
        parse(data, "big.docx", limits=RagSettings(max_unpacked_mb=1).archive_limits)
    assert str(err.value) == ("refused: member word/document.xml would expand past 1 MB"
                              " (limit: rag max_unpacked_mb)")
    with pytest.raises(SettingsError, match="max_unpacked_mb must be a number of MB above 0"):
        RagSettings.from_dict({"max_unpacked_mb": 0}, strict=True)
    with pytest.raises(SettingsError, match="max_unpack_ratio must be a number, 1 or more"):
        RagSettings.from_dict({"max_unpack_ratio": 0.5}, strict=True)


def test_a_pdf_whose_font_inflates_to_a_quarter_gigabyte_is_refused(tmp_path):
    """MuPDF reads a font program whole: a 256 MB stream of zeros held 256 MB (1 GB, 1 GB).
    Content streams it reads as a stream; images are not decoded for text."""
    import pymupdf

    font = next(iter(Path("/usr/share/fonts").rglob("DejaVuSans.ttf")), None)
    if font is None:
        pytest.skip("no TrueType font on this machine to embed")
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_font(fontname="F0", fontfile=str(font))
    page.insert_text((72, 72), "High tide at Port Avel is at 06:12.", fontname="F0")
    fonts = [x for x in range(1, doc.xref_length()) if doc.xref_is_stream(x) and doc.xref_get_key(x, "Length1")[0] != "null"]
    assert fonts
    good = doc.tobytes()
    doc.update_stream(fonts[0], deflate_zeros(256 * MB, zlib_wrapper=True), compress=False)
    doc.xref_set_key(fonts[0], "Filter", "/FlateDecode")
    bomb = doc.tobytes()
    assert "06:12" in parse(good, "good.pdf").blocks[0].text
    tracemalloc.start()
    try:
        with pytest.raises(RefusedError) as err:
            parse(bomb, "bomb.pdf")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(err.value) == (f"refused: stream {fonts[0]} of the PDF (a font) expands more than 100 times its packed"
                              " size (a compression bomb?) (limit: rag max_unpack_ratio)")
    assert peak < 30 * MB, peak


def test_an_archive_with_too_many_entries_is_refused_before_it_is_listed(tmp_path):
    from tests.helpers.archives import write_zip

    write_zip(tmp_path / "many.docx", [(f"p{n}", b"") for n in range(20_000)])
    with pytest.raises(RefusedError, match=r"^refused: the DOCX file holds about 20000 entries, more than 10000"):
        parse((tmp_path / "many.docx").read_bytes(), "many.docx", limits=Limits())


def test_an_archive_is_capped_in_all_and_its_headers_are_not_trusted(tmp_path):
    """Many honest members can add up past the cap; a header that understates a member's size
    gets no more than it declared (and the member is damaged), one that overstates it is
    refused before anything is inflated."""
    import zipfile

    from pocketpack.archive import ArchiveError, ArchiveLimitError, SafeZip

    rng = random.Random(5)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for n in range(3):
            z.writestr(f"part{n}.xml", rng.randbytes(900_000))
    limits = Limits(max_member=1 * MB, max_total=2 * MB)
    with pytest.raises(ArchiveLimitError) as err, SafeZip(out.getvalue(), limits, what="the DOCX file") as archive:
        archive.check()
    assert str(err.value) == ("refused: the DOCX file would expand past 2 MB in all (at member part2.xml)"
                              " (limit: rag max_unpacked_mb)")
    # the same member with its size in both headers rewritten: 1 KB declared, then 1 GB declared
    from tests.helpers.archives import write_zip

    write_zip(tmp_path / "z.zip", [("mimetype", b"x"), ("a.xml", b"<a>" + b"b" * 100_000 + b"</a>")])
    honest = (tmp_path / "z.zip").read_bytes()
    size = (100_007).to_bytes(4, "little")
    for declared, expect in ((1024, ArchiveError), (1 << 30, ArchiveLimitError)):
        forged = honest.replace(size, declared.to_bytes(4, "little"))
        assert forged.count(declared.to_bytes(4, "little")) >= 2
        with pytest.raises(expect) as err, SafeZip(forged, Limits(), what="the archive") as archive:
            archive.read("a.xml")
        assert type(err.value) is expect and "\n" not in str(err.value)
        if expect is ArchiveLimitError:
            assert str(err.value) == "refused: member a.xml would expand past 200 MB (limit: rag max_unpacked_mb)"


# Runs the CLI and, on exit, writes its own peak resident memory (VmHWM: the high-water mark of
# this program's memory since exec). Not wait4's ru_maxrss: Linux carries the forking parent's
# peak into it at exec, so a test process that has grown to 2 GB would be counted as the child's.
_MEASURED_CLI = """
import atexit, os, runpy, sys
def _peak():
    with open('/proc/self/status') as status:
        kb = next(line for line in status if line.startswith('VmHWM')).split()[1]
    with open(os.environ['PP_PEAK_FILE'], 'w') as out:
        out.write(kb)
atexit.register(_peak)
sys.argv = ['pocketpack', *sys.argv[1:]]
runpy.run_module('pocketpack', run_name='__main__')
"""


def _peak_rss_mb(argv: list[str], cwd: Path) -> tuple[int, str, str, int]:
    """Run ``pocketpack ARGV``; its exit status, stdout, stderr and peak resident memory (MB),
    measured by the child itself so that nothing else run by the tests counts."""
    peak_file = cwd / "peak.txt"
    proc = subprocess.run([sys.executable, "-c", _MEASURED_CLI, *argv], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PP_PEAK_FILE": str(peak_file)}, timeout=600)
    return proc.returncode, proc.stdout, proc.stderr, int(peak_file.read_text()) // 1024


def test_a_2_gb_zip_bomb_is_refused_by_the_cli_with_one_line_under_1_5_gb(tmp_path):
    """Done when: 'a 2 GB zip bomb is refused with peak memory under 1.5 GB'. The CLI opens
    the store and the embedding model (several hundred MB) before reading the files; the
    bombs themselves add next to nothing. (Before the fix: 4.7 GB for the DOCX, 4.5 GB for
    the EPUB, which was indexed.)"""
    work = tmp_path / "work"
    work.mkdir()
    docx = docx_bomb(tmp_path / "report.docx", 2048 * MB, work)
    epub = epub_bomb(tmp_path / "novel.epub", 2048 * MB, work)
    assert docx.stat().st_size < 3 * MB and epub.stat().st_size < 3 * MB
    code, out, err, peak = _peak_rss_mb(["rag", "--store", str(tmp_path / "store"), "ingest", str(docx), str(epub)],
                                        tmp_path)
    assert code == 1
    assert err.splitlines() == [
        f"skipped {docx}: refused: member word/document.xml would expand past 200 MB (limit: rag max_unpacked_mb)",
        f"skipped {epub}: refused: member EPUB/c1.xhtml would expand past 200 MB (limit: rag max_unpacked_mb)",
    ]
    assert out.splitlines() == ["2 skipped"]
    assert peak < 1536, f"peak RSS {peak} MB"
