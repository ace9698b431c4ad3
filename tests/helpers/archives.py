"""Hostile archives for the hardening and fuzz tests, built small and fast: a DOCX or EPUB
whose one member inflates to gigabytes of zeros, written without ever holding them.

A deflate stream of zeros is the same block over and over once its window is all zeros: one
megabyte is compressed once and its block repeated, so a 2 GB member costs a few MB and about
a second (the CRC of the zeros is the only pass over them).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

MB = 1024 * 1024


def deflate_zeros(total: int, *, zlib_wrapper: bool = False, chunk: int = MB) -> bytes:
    """The deflate stream (raw, as in a ZIP; or zlib-wrapped, as in a PDF) of ``total`` zero
    bytes, ``total`` a multiple of ``chunk`` and at least three chunks."""
    assert total % chunk == 0 and total // chunk >= 3
    compressor = zlib.compressobj(9, zlib.DEFLATED, 15 if zlib_wrapper else -15)
    zeros = bytes(chunk)
    first, second, third = (compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH) for _ in range(3))
    assert second == third  # from here on every chunk compresses to the same bytes
    body = first + second * (total // chunk - 1) + b"\x03\x00"  # an empty final block ends the stream
    if zlib_wrapper:
        adler = 1
        for _ in range(total // chunk):
            adler = zlib.adler32(zeros, adler)
        body += struct.pack(">I", adler)
    return body


def zeros_crc(total: int, chunk: int = MB) -> int:
    crc, zeros = 0, bytes(chunk)
    for _ in range(total // chunk):
        crc = zlib.crc32(zeros, crc)
    return crc


def write_zip(path: Path, members: list[tuple[str, bytes]], bomb: tuple[str, int] | None = None) -> None:
    """A ZIP of ``members`` (the first stored, as EPUB wants its mimetype; the rest deflated),
    plus, when ``bomb`` is ``(name, size)``, a member of ``size`` zero bytes written from
    :func:`deflate_zeros` (``size`` under 4 GiB: no ZIP64 needed)."""
    entries = []  # (name, method, crc, packed, size, offset)
    with open(path, "wb") as out:
        def add(name: str, method: int, crc: int, packed: bytes, size: int) -> None:
            raw = name.encode()
            offset = out.tell()
            out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0x21, crc, len(packed), size,
                                  len(raw), 0))
            out.write(raw)
            out.write(packed)
            entries.append((raw, method, crc, len(packed), size, offset))

        for n, (name, data) in enumerate(members):
            if n == 0:
                add(name, 0, zlib.crc32(data), data, len(data))
            else:
                c = zlib.compressobj(6, zlib.DEFLATED, -15)
                add(name, 8, zlib.crc32(data), c.compress(data) + c.flush(), len(data))
        if bomb:
            name, size = bomb
            add(name, 8, zeros_crc(size), deflate_zeros(size), size)
        start = out.tell()
        for raw, method, crc, packed, size, offset in entries:
            out.write(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 0x21, crc, packed, size,
                                  len(raw), 0, 0, 0, 0, 0, offset))
            out.write(raw)
        end = out.tell()
        out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), end - start, start, 0))


def read_members(path: Path) -> list[tuple[str, bytes]]:
    """A small valid archive's members, in order."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        return [(info.filename, z.read(info)) for info in z.infolist()]


def small_docx(path: Path, paragraphs: list[str] | None = None) -> Path:
    """A real DOCX made by python-docx."""
    import docx

    d = docx.Document()
    d.add_heading("Harbour Manual", level=1)
    for text in paragraphs or ["High tide at Port Avel is at 06:12 on Mondays."]:
        d.add_paragraph(text)
    d.save(path)
    return path


def small_epub(path: Path) -> Path:
    """A real two-chapter EPUB made by ebooklib."""
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("id-1")
    book.set_title("Two Chapters")
    book.set_language("en")
    c1 = epub.EpubHtml(title="One", file_name="c1.xhtml", lang="en")
    c1.content = "<html><body><h1>Chapter One</h1><p>The orchard had forty pear trees.</p></body></html>"
    c2 = epub.EpubHtml(title="Two", file_name="c2.xhtml", lang="en")
    c2.content = "<html><body><h1>Chapter Two</h1><p>The well was dug in the spring of 1802.</p></body></html>"
    for c in (c1, c2):
        book.add_item(c)
    book.toc = (c1, c2)
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["nav", c1, c2]
    epub.write_epub(str(path), book)
    return path


def docx_bomb(path: Path, size: int, workdir: Path) -> Path:
    """A valid DOCX whose word/document.xml is ``size`` zero bytes once inflated."""
    members = [m for m in read_members(small_docx(workdir / "seed.docx")) if m[0] != "word/document.xml"]
    write_zip(path, members, bomb=("word/document.xml", size))
    return path


def epub_bomb(path: Path, size: int, workdir: Path) -> Path:
    """A valid EPUB whose first chapter is ``size`` zero bytes once inflated."""
    members = read_members(small_epub(workdir / "seed.epub"))
    chapter = next(name for name, _ in members if name.endswith("c1.xhtml"))
    write_zip(path, [m for m in members if m[0] != chapter], bomb=(chapter, size))
    return path
