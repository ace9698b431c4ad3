"""Fuzzing the document parsers (issue 11: "a fuzz test … over … the document parsers,
asserting one line, non-zero exit, bounded memory for every generated input, run for a
bounded time in CI").

For every format the ingest path reads (text, Markdown, HTML, CSV, code, PDF, DOCX, EPUB),
hypothesis generates inputs — random bytes under the format's name, and valid small files
made by the real libraries with bytes flipped, cut or inserted, or (for the ZIP formats) one
member's content mutated and the archive rebuilt — and ``parse`` must either return blocks or
raise ``ParseError`` with a one-line message: never another exception type (which would end
an ingest in a traceback), never more than a bounded amount of memory.

Derandomized (the same examples on every run) and bounded by ``max_examples``, so the whole
file runs in well under a minute on two cores; ``FUZZ_EXAMPLES=N`` raises the count for a
longer local run.
"""

from __future__ import annotations

import functools
import io
import os
import tracemalloc
import zipfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pocketpack.archive import Limits
from pocketpack.rag.parsers import Parsed, ParseError, parse
from tests.helpers.archives import MB, small_docx, small_epub

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0")) or None
# a small cap makes any decompression blow-up show at once, and keeps each example cheap
LIMITS = Limits.of_mb(8, 100)
# what one example may allocate (Python-level, which is where a ZIP member or a decoded text
# lands): inputs are a few KB, so anything near this is an amplification bug
PEAK = 64 * MB


def fuzz(examples: int):
    return settings(max_examples=EXAMPLES or examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def check(data: bytes, name: str) -> None:
    """Parse; a result or a one-line ``ParseError``, within ``PEAK``."""
    tracemalloc.start()
    try:
        try:
            parsed = parse(data, name, limits=LIMITS)
        except ParseError as exc:
            message = str(exc)
            assert message and "\n" not in message and "Traceback" not in message, message
        else:
            assert isinstance(parsed, Parsed) and parsed.blocks
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < PEAK, f"{name}: {peak / MB:.0f} MB allocated for {len(data)} bytes of input"


@st.composite
def mutated(draw, seed: bytes, max_ops: int = 6) -> bytes:
    """``seed`` with a few bytes flipped, runs cut, zeroed or duplicated, or bytes inserted."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, max_ops))):
        if not data:
            data += draw(st.binary(min_size=1, max_size=32))
            continue
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "cut", "insert", "zero", "repeat"]))
        if op == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[at:at + draw(st.integers(1, 256))]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif op == "zero":
            n = draw(st.integers(1, 64))
            data[at:at + n] = bytes(len(data[at:at + n]))
        else:
            data[at:at] = data[at:at + draw(st.integers(1, 64))] * draw(st.integers(1, 8))
    return bytes(data)


# -- seeds: small valid files made by the real libraries ------------------------------------------
@functools.cache
def seeds() -> dict[str, bytes]:
    """Made once per run (not a fixture: hypothesis would print them with every failure)."""
    import tempfile

    import pymupdf

    doc = pymupdf.open()
    for text in ("High tide at Port Avel is at 06:12.", "The chandlery closes at noon on Saturdays."):
        page = doc.new_page()
        page.insert_textbox(pymupdf.Rect(72, 72, 540, 770), text, fontsize=11)
    pdf = doc.tobytes()
    doc.close()
    with tempfile.TemporaryDirectory(prefix="fuzz-seeds-") as tmp:
        base = Path(tmp)
        return {
            "pdf": pdf,
            "docx": small_docx(base / "s.docx", ["Intro about the harbour.", "Boats wait for the tide."]).read_bytes(),
            "epub": small_epub(base / "s.epub").read_bytes(),
        }


def rezip(archive: bytes, member: str, content: bytes | None) -> bytes:
    """The archive rebuilt with ``member``'s content replaced (None: left out)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(archive)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename == member:
                if content is not None:
                    dst.writestr(info.filename, content)
            else:
                dst.writestr(info, src.read(info))
    return out.getvalue()


# -- text-like formats ----------------------------------------------------------------------------
TEXT_NAMES = ["notes.txt", "readme.md", "page.html", "table.csv", "table.tsv", "main.py", "conf.json", "Makefile"]
MARKUP = st.sampled_from(["# ", "## ", "```", "~~~", "===", "---", "<p>", "</p>", "<h1>", "<meta charset=koi8-r>",
                          "<?xml version='1.0' encoding='utf-16'?>", "<script>", "&amp;", "&#0;", "<!DOCTYPE html>",
                          ",", ";", "\t", '"', "\r\n", "\n\n", "def f():\n", "CHAPTER IV\n", "\ufeff", "\x00", "é",
                          "—", "\U0001F600", "\u202e", "\x1b[31m"])


@fuzz(150)
@given(data=st.binary(max_size=4096), name=st.sampled_from(TEXT_NAMES))
def test_random_bytes_as_text_formats(data, name):
    check(data, name)


@fuzz(150)
@given(parts=st.lists(st.one_of(MARKUP, st.text(max_size=40)), max_size=60),
       encoding=st.sampled_from(["utf-8", "utf-16", "cp1252", "latin-1", "cp1251", "shift_jis", "utf-8-sig"]),
       name=st.sampled_from(TEXT_NAMES))
def test_structured_text_in_any_encoding(parts, encoding, name):
    check("".join(parts).encode(encoding, errors="replace"), name)


# -- PDF ------------------------------------------------------------------------------------------
@fuzz(80)
@given(data=st.data())
def test_mutated_and_random_pdfs(data):
    pdf = data.draw(st.one_of(mutated(seeds()["pdf"]), st.binary(max_size=2048).map(lambda b: b"%PDF-1.7\n" + b)))
    check(pdf, "doc.pdf")


# -- DOCX and EPUB --------------------------------------------------------------------------------
@fuzz(60)
@given(data=st.data(), kind=st.sampled_from(["docx", "epub"]))
def test_mutated_archive_bytes_and_random_bytes(data, kind):
    archive = data.draw(st.one_of(mutated(seeds()[kind]), st.binary(max_size=2048),
                                  st.binary(max_size=2048).map(lambda b: b"PK\x03\x04" + b)))
    check(archive, f"doc.{kind}")


@fuzz(80)
@given(data=st.data(), kind=st.sampled_from(["docx", "epub"]))
def test_archives_with_one_member_mutated_dropped_or_replaced(data, kind):
    """A well-formed ZIP whose content is wrong: the XML the libraries parse is where
    they fail in ways of their own."""
    seed = seeds()[kind]
    with zipfile.ZipFile(io.BytesIO(seed)) as z:
        members = {info.filename: z.read(info) for info in z.infolist()}
    member = data.draw(st.sampled_from(sorted(members)))
    content = data.draw(st.one_of(mutated(members[member], max_ops=4), st.none(), st.binary(max_size=512),
                                  st.just(b""), st.just(b"<x>" * 5000), st.just(b'<?xml version="1.0"?><a/>')))
    check(rezip(seed, member, content), f"doc.{kind}")
