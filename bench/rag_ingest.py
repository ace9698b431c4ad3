"""Ingestion throughput of rag-enhancer: pages per second of a text PDF, end to end (parse +
chunk + embed with all-MiniLM-L6-v2 + store), and the parse-only rate beside it.

    .venv/bin/python bench/rag_ingest.py [--pages 100] [--threads 2]

The PDF is generated here with pymupdf from the public-domain KJV text in bench/data (about
2,800 characters, ~450 words, per A4 page at 10 pt). ``--threads`` sets torch's CPU threads
(the issue's target is measured on 2 cores). The 1-minute load average is printed because
other processes on a shared machine slow the embedding down.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = Path(__file__).resolve().parent / "data"


def make_pdf(path: Path, pages: int, chars_per_page: int = 2800) -> None:
    import pymupdf

    words = " ".join(line for line in (DATA / "kjv_narratives.md").read_text().splitlines()
                     if line and not line.startswith("#")).split()
    doc = pymupdf.open()
    pos = 0
    for n in range(pages):
        text, size = [], 0
        while size < chars_per_page:
            w = words[pos % len(words)]
            text.append(w)
            size += len(w) + 1
            pos += 1
        page = doc.new_page()
        page.insert_textbox(pymupdf.Rect(50, 50, 545, 800), f"Section {n + 1}\n\n" + " ".join(text), fontsize=10)
    doc.save(path)
    doc.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from pocketpack.rag.chunking import chunk_blocks
    from pocketpack.rag.config import RagSettings
    from pocketpack.rag.ingest import Library
    from pocketpack.rag.parsers import parse
    from pocketpack.retrieval.embed import get_embedder

    with tempfile.TemporaryDirectory() as tmp:
        pdf = Path(tmp) / "book.pdf"
        make_pdf(pdf, args.pages)
        data = pdf.read_bytes()
        t, c = time.perf_counter(), time.process_time()
        parsed = parse(data, "book.pdf")
        chunks = chunk_blocks(parsed.blocks)
        parse_s, parse_cpu = time.perf_counter() - t, time.process_time() - c
        embedder = get_embedder()
        engine = embedder.prepare()  # model load and OpenVINO conversion are not ingestion
        embedder.embed(["warm-up"] * 32)
        load = os.getloadavg()[0]
        lib = Library(Path(tmp) / "store", RagSettings())
        t, c = time.perf_counter(), time.process_time()
        report = lib.ingest([str(pdf)])
        total_s, total_cpu = time.perf_counter() - t, time.process_time() - c
        t, c = time.perf_counter(), time.process_time()
        again = lib.ingest([str(pdf)])
        unchanged_s, unchanged_cpu = time.perf_counter() - t, time.process_time() - c
        lib.close()
    r = report.results[0]
    assert r.status == "added" and again.results[0].status == "unchanged", (r, again.results)
    chars = sum(len(c.text) for c in chunks)
    print(f"text PDF: {args.pages} pages, {len(data) / 1e6:.2f} MB, {len(chunks)} chunks of <= 200 tokens, "
          f"{chars / args.pages:.0f} chars/page; embedding on {engine}, torch threads {torch.get_num_threads()}, "
          f"load average {load:.1f} on {os.cpu_count()} CPUs\n")
    rows = [("parse + chunk (pymupdf)", parse_s, parse_cpu), ("ingest end to end (+ embed + store)", total_s, total_cpu),
            ("re-ingest unchanged (hash check)", unchanged_s, unchanged_cpu)]
    n = torch.get_num_threads()
    print(f"{'stage':<38}{'wall s':>8}{'pages/s':>9}{'chunks/s':>9}{'CPU s':>8}{'pages/s if ' + str(n) + ' cores free':>26}")
    print("-" * 98)
    for name, secs, cpu in rows:
        secs, cpu = max(secs, 1e-6), max(cpu, 1e-6)
        print(f"{name:<38}{secs:>8.2f}{args.pages / secs:>9.1f}{len(chunks) / secs:>9.1f}{cpu:>8.2f}"
              f"{args.pages * n / cpu:>26.1f}")
    print("\nThe last column divides by CPU time, not wall time: what the rate would be with the"
          " threads' cores to ourselves (an upper bound; the wall-clock columns are what was seen).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
