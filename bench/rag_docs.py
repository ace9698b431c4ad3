"""How much answer rag-enhancer packs into the words it injects, on two documents of two kinds.

    .venv/bin/python bench/rag_docs.py [--sets dev report] [--budgets 900 1600] [--fresh]

Sets (bench/data/README.md): ``dev`` is the project's own document set (KJV narratives, 44
questions), on which every setting was chosen; ``report`` is the Bash 5.2 manual page (a
manual, ~51,600 words), whose 70 questions were written and committed before any retrieval
ran over it (bench/data/bash_manual/). The manual is not committed (313 KB): it is rendered on
first run from Debian's ``bash`` package (the installed /usr/share/man/man1/bash.1.gz, else
``apt-get download bash``) into ``.cache/bench/`` at the repository root, with groff.

Methods, all on the same chunks (200 tokens, overlap 30) and the same all-MiniLM-L6-v2:
plain dense chunks (top 5 as stored); superbooga-style windows (the dense top 5, each widened
to 250 characters before and 800 after it in the document, as superbooga v2 does); plain
hybrid chunks (dense + BM25, top 5); rag-enhancer's injected block (hybrid top 5 passages with
one neighbouring chunk each side, packed into a token budget by the shared composer), packed
by whole chunks (before) and sentence by sentence (now). The stores are kept in
``.cache/bench/store-*`` so a re-run costs a hash check.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = Path(__file__).resolve().parent / "data"
CACHE = ROOT / ".cache" / "bench"
BASH_MAN = Path("/usr/share/man/man1/bash.1.gz")
BASH_MAN_SHA256 = "3ca7a67df55bd2f80a2de111f8d44df359f7a795573aaaadce09a52a22bcedeb"  # bash 5.2.15-2+b8


def _bash_man_gz() -> bytes:
    """bash.1.gz from the installed package, else from ``apt-get download bash``."""
    if BASH_MAN.is_file():
        return BASH_MAN.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["apt-get", "download", "bash"], cwd=tmp, check=True, capture_output=True)
        deb = next(Path(tmp).glob("bash_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(Path(tmp) / "x")], check=True)
        return (Path(tmp) / "x" / "usr/share/man/man1/bash.1.gz").read_bytes()


def render_bash_manual(out: Path) -> Path:
    """The Bash manual page as Markdown: groff renders it to plain text (ASCII, one line a
    paragraph, no hyphenation), sections (column 0) become ``##`` and subsections (indent 3)
    ``###`` headings, every other line a paragraph."""
    raw = _bash_man_gz()
    if hashlib.sha256(raw).hexdigest() != BASH_MAN_SHA256:
        print("warning: bash.1.gz differs from the one the questions were written on "
              "(bash 5.2.15-2+b8); some answers may be missing", file=sys.stderr)
    if not shutil.which("groff"):
        raise SystemExit("rag_docs: groff is needed once to render the Bash manual (apt-get install groff-base)")
    text = subprocess.run(["groff", "-man", "-Tascii", "-rLL=3000n", "-rHY=0", "-dAD=l", "-P-cbou"],
                          input=gzip.decompress(raw), capture_output=True, check=True).stdout.decode("ascii", "replace")
    lines = text.splitlines()[1:-1]  # page header and footer
    md = ["# Bash 5.2 manual page: bash(1), GNU Bourne-Again SHell", ""]
    for line in lines:
        body = " ".join(line.split())
        if not body:
            continue
        indent = len(line) - len(line.lstrip(" "))
        if indent == 0:
            md += [f"## {body}", ""]
        elif indent == 3:
            md += [f"### {body}", ""]
        else:
            md += [body, ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(md), encoding="utf-8")
    return out


def bash_manual() -> Path:
    """The rendered manual, made once into the cache."""
    path = CACHE / "bash_manual.md"
    if not path.is_file():
        render_bash_manual(path)
    return path


def _flat(text: str) -> str:
    return " ".join(text.split())


def load_set(name: str) -> tuple[Path, list[dict]]:
    if name == "dev":
        doc, qfile = DATA / "kjv_narratives.md", DATA / "kjv_questions.jsonl"
    else:
        doc, qfile = bash_manual(), DATA / "bash_manual" / "questions.jsonl"
    return doc, [json.loads(line) for line in qfile.read_text().splitlines() if line.strip()]


class Windows:
    """superbooga's expanded windows over the source text: each hit chunk's body found in the
    (whitespace-collapsed) document, then 250 characters before and 800 after it."""

    def __init__(self, coll, doc_id: str, n: int, source: str, before: int = 250, after: int = 800):
        self.src = _flat(source)
        self.before, self.after = before, after
        self.spans: dict[int, tuple[int, int]] = {}
        pos = 0
        for i in range(n):
            item = coll.by_key(f"{doc_id}#{i}")
            body = _flat(item.text[int(item.meta.get("body_start", 0)):])
            at = self.src.find(body, max(0, pos - 2000))
            if at < 0:
                at = self.src.find(body[:80], max(0, pos - 2000))
            if at >= 0:
                self.spans[i] = (at, at + len(body))
                pos = at
        self.found = len(self.spans)

    def window(self, ordinal: int, fallback: str) -> str:
        if ordinal not in self.spans:
            return fallback
        a, b = self.spans[ordinal]
        return self.src[max(0, a - self.before):b + self.after]


def _words(text: str) -> int:
    return len(text.split())


def run_set(name: str, budgets: list[int], chunk_size: int, overlap: int, fresh: bool) -> None:
    from pocketpack import compose
    from pocketpack.rag import retrieve as retrieve_module
    from pocketpack.rag.config import RagSettings
    from pocketpack.rag.ingest import Library
    from pocketpack.rag.inject import fit, make_block
    from pocketpack.rag.retrieve import existing_collections, retrieve
    from pocketpack.retrieval import SearchOptions, search

    doc, questions = load_set(name)
    # the store is kept in the cache (a re-run costs a hash check); --fresh starts it anew
    folder = CACHE / f"store-{name}-{chunk_size}-{overlap}"
    if fresh and folder.exists():
        shutil.rmtree(folder)
    settings = RagSettings(chunk_size=chunk_size, chunk_overlap=overlap)
    with Library(folder, settings) as lib:
        t0 = time.perf_counter()
        lib.ingest([str(doc)])
        ingest_s = time.perf_counter() - t0
        coll = existing_collections(lib, None)[0]
        info = lib.documents()[0]
        doc_id, n = info.id, info.chunks
        windows = Windows(coll, doc_id, n, doc.read_text(encoding="utf-8"))
        chunk_text = " ".join(_flat(coll.by_key(f"{doc_id}#{i}").text) for i in range(n)).lower()
        present = sum(_flat(q["answer"]).lower() in chunk_text for q in questions)
        print(f"== {name}: {doc.name}, {_words(doc.read_text(encoding='utf-8')):,} words, {n} chunks of <= "
              f"{chunk_size} tokens (overlap {overlap}), ingest {ingest_s:.0f} s; {len(questions)} questions, "
              f"answer inside the ingested chunks for {present}; superbooga windows located for {windows.found} "
              f"of {n} chunks\n")

        def plain(mode: str, expand: bool):
            def run(question: str) -> str:
                hits = search([coll], question, 5, options=SearchOptions(mode=mode, candidates=50))
                texts = [windows.window(int(h.item.meta.get("ordinal", 0)), h.item.text) if expand else h.item.text
                         for h in hits]
                return "\n\n".join(texts)
            return run

        def packed(budget: int, sentences: bool = True):
            def run(question: str) -> str:
                retrieve_module.PACK_SENTENCES = sentences
                try:
                    passages = retrieve(lib, question, 5, settings=settings)
                finally:
                    retrieve_module.PACK_SENTENCES = True
                offered = fit(passages, budget, compose.estimate_tokens, sentences=sentences)
                text = compose.compose_text("", [make_block(offered, budget)], budget=budget,
                                            count=compose.estimate_tokens).text
                overhead[0] += _words(text) - sum(_words(p.text) for p in offered)
                return text
            return run

        methods = [("dense chunks (top 5)", plain("dense", False)),
                   ("superbooga windows (dense top 5, +250/+800 chars)", plain("dense", True)),
                   ("hybrid chunks (top 5)", plain("hybrid", False))]
        for b in budgets:
            methods += [(f"rag-enhancer, whole chunks, {b} tokens", packed(b, False)),
                        (f"rag-enhancer, sentence packing, {b} tokens", packed(b))]
        rows = []
        overhead = [0]  # words of the [n] labels (source, location) and the block's frame
        for label, run in methods:
            hits, words, lat = 0, 0, []
            overhead[0] = 0
            for q in questions:
                t = time.perf_counter()
                text = run(q["question"])
                lat.append((time.perf_counter() - t) * 1000)
                hits += _flat(q["answer"]).lower() in _flat(text).lower()
                words += _words(text)
            lat.sort()
            rows.append((label, hits / len(questions), words / len(questions), overhead[0] / len(questions),
                         lat[len(lat) // 2], lat[int(0.95 * (len(lat) - 1))]))
        header = f"{'method':<52}{'hit@5':>7}{'words/query':>13}{'of labels':>11}{'p50 ms':>8}{'p95 ms':>8}"
        print(header)
        print("-" * len(header))
        for label, hit, words, labels, p50, p95 in rows:
            print(f"{label:<52}{hit:>7.2f}{words:>13.0f}{labels:>11.0f}{p50:>8.1f}{p95:>8.1f}")
        print()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=["dev", "report"], choices=["dev", "report"])
    parser.add_argument("--budgets", nargs="+", type=int, default=[900, 1600])
    parser.add_argument("--chunk-size", type=int, default=200)
    parser.add_argument("--overlap", type=int, default=30)
    parser.add_argument("--fresh", action="store_true", help="ingest again into a new store")
    args = parser.parse_args()
    for name in args.sets:
        run_set(name, args.budgets, args.chunk_size, args.overlap, args.fresh)
    print("hit@5: the answer span (case-insensitive, whitespace collapsed) inside what is injected for the top 5 "
          "hits; words/query: whitespace-separated words of that text (rag-enhancer's includes its [n] labels, "
          "sources and frame); of labels: those [n] labels and the frame; latency: retrieval and packing per "
          "query, embedding included (shared 2-core machine).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
