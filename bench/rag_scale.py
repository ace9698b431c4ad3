"""Query latency and memory of rag-enhancer's retrieval at 10k, 100k (and 1M) chunks.

    .venv/bin/python bench/rag_scale.py [--sizes 10000 100000 1000000] [--queries 200] [--threads 2]
        [--dir DIR (stores kept there and reused: 1M chunks take a while to build)]

Chunks are synthetic: ~120 words drawn (Zipf-like) from the KJV text's vocabulary, stored as
rag-enhancer stores chunks (100 per document, with neighbour metadata), with synthetic
embeddings — clustered unit vectors (1,024 centres), which is how sentence embeddings are
spread and what an approximate (IVF) index is sensitive to — because embedding 100k+ chunks
with the real model would take hours on two cores. Queries are six words from a stored
chunk, embedded with the real all-MiniLM-L6-v2, and run through the whole retrieval path
(hybrid dense + BM25, RRF, MMR, neighbour expansion), k=5.

Recall@10: the store's dense index (exact below its approximate threshold, IVF above) against
brute-force exact inner-product search, for query vectors near stored ones.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pagecache import warm_page_cache  # noqa: E402  (bench/ is the script's folder)

DATA = Path(__file__).resolve().parent / "data"
DIM = 384



def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class SyntheticEmbedder:
    """Clustered unit vectors keyed by the text's hash for documents; the real model for
    queries once ``real_queries`` is set."""

    name = "synthetic-clustered-384"
    dim = DIM

    def __init__(self, n_centres: int = 1024):
        rng = np.random.default_rng(0)
        c = rng.standard_normal((n_centres, DIM)).astype(np.float32)
        self.centres = c / np.linalg.norm(c, axis=1, keepdims=True)
        self.real_queries = False
        self._real = None

    def vector_for(self, text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        rng = np.random.default_rng(seed)
        v = self.centres[seed % len(self.centres)] + 0.06 * rng.standard_normal(DIM).astype(np.float32)
        return v / np.linalg.norm(v)

    def embed(self, texts):
        if self.real_queries and len(texts) == 1:
            if self._real is None:
                from pocketpack.retrieval.embed import get_embedder

                self._real = get_embedder()
                self._real.prepare()  # OpenVINO's conversion is a start-up cost, not a query's
            return self._real.embed(texts)
        return np.stack([self.vector_for(t) for t in texts]).astype(np.float32) if texts else np.zeros((0, DIM), np.float32)


def vocabulary() -> tuple[list[str], np.ndarray]:
    words = re.findall(r"[A-Za-z]+", (DATA / "kjv_narratives.md").read_text().lower())
    counts: dict[str, int] = {}
    for w in words:
        counts[w] = counts.get(w, 0) + 1
    vocab = sorted(counts, key=lambda w: -counts[w])
    freq = np.array([counts[w] for w in vocab], dtype=np.float64)
    return vocab, freq / freq.sum()


def build(store_dir: Path, n: int, embedder: SyntheticEmbedder, rng) -> tuple[float, list[str]]:
    from pocketpack.rag.config import RagSettings
    from pocketpack.rag.ingest import Library, collection_name
    from pocketpack.retrieval import NewItem

    vocab, p = vocabulary()
    lib = Library(store_dir, RagSettings(), embedder=embedder)
    coll = lib.store.collection(collection_name("global"))
    samples: list[str] = []
    t = time.perf_counter()
    batch = []
    per_doc = 100
    for i in range(n):
        doc, ordinal = f"d{i // per_doc:07d}", i % per_doc
        words = rng.choice(len(vocab), size=120, p=p)
        text = f"Document {doc} section {ordinal}\n" + " ".join(vocab[w] for w in words)
        meta = {"doc": doc, "source": f"/synthetic/{doc}.txt", "name": f"{doc}.txt", "ordinal": ordinal,
                "location": f"lines {ordinal * 10 + 1}–{ordinal * 10 + 10}", "heading": "", "body_start": 0,
                "overlap_chars": 0}
        if ordinal == 0:
            meta.update({"head": "1", "doc_hash": doc, "signature": "synthetic", "chunks": per_doc, "origin": "file",
                         "kind": "text", "title": doc, "size": 0, "pages": None, "added": 0})
        batch.append(NewItem(text, key=f"{doc}#{ordinal}", grp=doc, time=0, meta=meta))
        if len(samples) < 5000 and rng.random() < 0.05:
            samples.append(text)
        if len(batch) == 5000:
            coll.upsert(batch)
            batch = []
    if batch:
        coll.upsert(batch)
    coll.dense(embedder.vector_for("warm"), 1)  # build (and save) the faiss index now
    lib.store.flush()
    build_s = time.perf_counter() - t
    lib.close()
    return build_s, samples


def measure(store_dir: Path, n: int, samples: list[str], embedder: SyntheticEmbedder, queries: int, rng) -> dict:
    from pocketpack.rag.config import RagSettings
    from pocketpack.rag.ingest import Library, collection_name
    from pocketpack.rag.retrieve import retrieve

    warm_page_cache(Path(store_dir))
    before = rss_mb()
    t = time.perf_counter()
    lib = Library(store_dir, RagSettings(min_cosine=0.0), embedder=embedder)
    coll = lib.store.collection(collection_name("global"))
    coll.dense(embedder.vector_for("warm"), 1)  # load the saved index
    open_s = time.perf_counter() - t
    embedder.real_queries = True
    questions = []
    for _ in range(queries):
        words = rng.choice(samples).split("\n", 1)[1].split()
        start = int(rng.integers(0, len(words) - 6))
        questions.append(" ".join(words[start:start + 6]))
    retrieve(lib, questions[0], 5)  # warm-up (model load)
    total, embed_only = [], []
    for q in questions:
        t = time.perf_counter()
        embedder.embed([q])
        embed_only.append(time.perf_counter() - t)
        t = time.perf_counter()
        retrieve(lib, q, 5)
        total.append(time.perf_counter() - t)
    after = rss_mb()
    # dense recall@10 of the store's index against exact search
    ids = np.array(sorted(coll.keys().values())[: n], dtype=object)
    all_ids = [i for i, _ in coll.keys().values()]
    vec_map = coll.vectors(all_ids)
    id_arr = np.fromiter(vec_map.keys(), dtype=np.int64)
    mat = np.stack([vec_map[i] for i in id_arr])
    recalls = []
    for _ in range(100):
        base = mat[int(rng.integers(0, len(mat)))]
        qv = base + 0.05 * rng.standard_normal(DIM).astype(np.float32)
        qv /= np.linalg.norm(qv)
        exact = set(id_arr[np.argsort(-(mat @ qv))[:10]].tolist())
        got = {i for i, _ in coll.dense(qv.astype(np.float32), 10)}
        recalls.append(len(exact & got) / 10)
    del ids
    index = lib.store._indexes.get(coll.id)
    kind = index.kind if index is not None else "?"
    stats = lib.store.stats()
    lib.close()
    total.sort()
    embed_only.sort()

    def pct(xs, q):
        return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000

    return {"n": n, "open_s": open_s, "p50": pct(total, 0.5), "p95": pct(total, 0.95), "embed_p95": pct(embed_only, 0.95),
            "recall": statistics.mean(recalls), "kind": kind, "rss_delta": after - before, "rss": after,
            "sqlite_mb": stats["sqlite_bytes"] / 1e6, "faiss_mb": stats["faiss_bytes"] / 1e6,
            "bm25_mb": stats["lexical_bytes"] / 1e6, "engine": stats["lexical_engine"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dir", default=None, help="keep the stores here and reuse them (default: temporary)")
    parser.add_argument("--faiss-threads", type=int, default=None,
                        help="faiss OpenMP threads (default: faiss's own, one per core)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.faiss_threads:
        import faiss

        faiss.omp_set_num_threads(args.faiss_threads)
    rng = np.random.default_rng(1)
    rows = []
    import json

    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(args.dir) if args.dir else Path(tmp)
            store_dir, saved = base / f"n{n}" / "store", base / f"n{n}" / "samples.json"
            embedder = SyntheticEmbedder()
            if saved.exists():  # built by an earlier run
                build_s, samples = json.loads(saved.read_text())
            else:
                build_s, samples = build(store_dir, n, embedder, rng)
                saved.write_text(json.dumps([build_s, samples]))
            row = measure(store_dir, n, samples, embedder, args.queries, rng)
            row["build_s"] = build_s
            rows.append(row)
            print(f"{n} chunks done ({build_s:.0f} s to build)", file=sys.stderr, flush=True)
    print(f"\nretrieval on synthetic chunks, k=5 hybrid, torch threads {args.threads}, "
          f"faiss threads {args.faiss_threads or 'default'}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs, {args.queries} queries\n")
    head = (f"{'chunks':>9}{'index':>7}{'build s':>9}{'open s':>8}{'p50 ms':>8}{'p95 ms':>8}{'embed p95':>10}"
            f"{'search p95*':>12}{'recall@10':>10}{'RSS MB':>8}{'+RSS':>7}{'sqlite MB':>10}{'faiss MB':>9}{'bm25 MB':>8}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['n']:>9}{r['kind']:>7}{r['build_s']:>9.0f}{r['open_s']:>8.1f}{r['p50']:>8.1f}{r['p95']:>8.1f}"
              f"{r['embed_p95']:>10.1f}{max(0.0, r['p95'] - r['embed_p95']):>12.1f}{r['recall']:>10.3f}"
              f"{r['rss']:>8.0f}{r['rss_delta']:>7.0f}{r['sqlite_mb']:>10.0f}{r['faiss_mb']:>9.0f}{r['bm25_mb']:>8.0f}")
    print("\np50/p95: the whole query (real query embedding + hybrid search + neighbour expansion);"
          " embed p95: the query embedding alone; search p95*: p95 minus embed p95 (approximate);"
          " +RSS: memory added by opening the store and querying it (its files were read once first, as"
          " after a few minutes of use); bm25 MB: the lexical index"
          f" ({rows[0]['engine'] if rows else '-'}; FTS5's lives inside sqlite).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
