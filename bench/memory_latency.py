"""What memory costs a chat turn at scale: p50/p95 of each step, store size and RAM.

For each size N (default 100k) a store is filled with N memories of one character: LoCoMo's
5.9k real chat turns (read from ../shared for measuring only), copied with a numeric suffix,
each copy's vector the real MiniLM embedding of its turn plus a little noise, because
embedding 100k texts would take most of an hour on 2 cores. The text keeps a real vocabulary
(BM25 cost depends on it) and the vectors a real shape (the approximate index's recall does).
Then the store is reopened with the real all-MiniLM-L6-v2 model and TGWUI-shaped turns are
timed, with queries drawn from LoCoMo's questions:

- ``recall``: embed the query + hybrid search (faiss + FTS5 BM25, fusion, MMR) + compose, i.e.
  what ``chat_input_modifier`` adds before generation (the number the 50 ms target is about);
- ``store``: embedding and committing the finished exchange (after generation, in output_modifier);
- ``sync``: state_modifier's check of the chat's rows against the store.

Also: the approximate index's recall@10 against exact search, disk size, process RSS, and
writes/s with ``--writers`` (4) processes storing memories at once into the same store (one
chat each, one transaction per memory as a chat turn stores it; their vectors are computed
beforehand, so it times the store, not the model).

``--store sqlite postgresql://user:pw@host:port/db`` measures each backend on the same data:
for PostgreSQL + pgvector a database ``<db>_bench_n<size>`` is made on that server per size
(``--keep`` keeps it), its disk the size of the store's tables and indexes.

    .venv/bin/python bench/memory_latency.py [--sizes 100000 1000000] [--turns 200] [--threads 2] [--defaults new old]
        [--store sqlite postgresql://…] [--writers 4] [--writes 200] [--dir D --keep] [--fill-only]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import html
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pagecache import warm_page_cache  # noqa: E402  (bench/ is the script's folder)

from pocketpack.memory import turns as turns_module  # noqa: E402 - after the sys.path line, to run from a checkout
from pocketpack.memory.store import FILTERED_RECALL, LOCOMO_RECALL, MemoryStore, recall_options  # noqa: E402 - after the sys.path line, to run from a checkout
from pocketpack.memory.turns import MemorySettings, MemoryTurns  # noqa: E402 - after the sys.path line, to run from a checkout
from pocketpack.retrieval import SearchOptions  # noqa: E402 - after the sys.path line, to run from a checkout
from pocketpack.retrieval.embed import DEFAULT_MODEL_NAME  # noqa: E402 - after the sys.path line, to run from a checkout
from pocketpack.retrieval.pgstore import EXACT_BELOW  # noqa: E402 - after the sys.path line, to run from a checkout

WORDS = ("time person year way day thing man world life hand part child eye woman place work week case point "
         "home water room mother area money story fact month lot right study book job word business issue side "
         "kind head house service friend father power hour game line end member law car city community name "
         "team minute idea kid body information back parent face others level office door health art war "
         "history party result change morning reason research girl guy moment air teacher force education "
         "dog cat garden music painting hiking camping beach mountain trip concert movie recipe dinner coffee "
         "birthday wedding school college class exam project meeting trip flight train bike run marathon yoga "
         "guitar piano violin novel poem photo camera pottery sculpture festival museum park lake river forest").split()
VERBS = "love visited painted bought adopted started finished planned cooked watched read wrote joined lost found met".split()


# the recall options measured: the pack's defaults ("default"), the first defaults ("locomo"),
# the opt-in FILTERED_RECALL ("filtered"); "new"/"old" are the names an earlier run used for
# filtered/the first defaults
DEFAULTS = {
    "default": recall_options,
    "filtered": lambda **overrides: recall_options(**{**FILTERED_RECALL, **overrides}),
}
DEFAULTS["dense"] = lambda **overrides: recall_options(**{**overrides, "mode": "dense", "feedback_hits": 0,
                                                            "min_information": None, "lexical_coverage": None})
DEFAULTS["locomo"] = lambda **overrides: SearchOptions(**{**LOCOMO_RECALL, **overrides})  # the first defaults
DEFAULTS["old"], DEFAULTS["new"] = DEFAULTS["locomo"], DEFAULTS["filtered"]

LOCOMO = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "locomo10.json"



def real_turns() -> list[str]:
    """Chat turns with a real vocabulary: LoCoMo's (read for measuring, never shipped), else
    synthetic sentences."""
    if LOCOMO.exists():
        import json

        out = []
        for sample in json.loads(LOCOMO.read_text()):
            conv = sample["conversation"]
            n = 1
            while f"session_{n}" in conv:
                out += [f"{t['speaker']}: {t['text']}" for t in conv[f"session_{n}"]]
                n += 1
        return out
    rng = random.Random(0)
    return [sentence(rng, i) for i in range(5000)]


def real_questions() -> list[str]:
    if LOCOMO.exists():
        import json

        return [q["question"] for sample in json.loads(LOCOMO.read_text()) for q in sample["qa"]]
    rng = random.Random(1)
    return [f"Do you remember when I {rng.choice(VERBS)} the {rng.choice(WORDS)}?" for _ in range(500)]


class NoisyCopies:
    """Stands in for the model while filling the store: copy k of base text i gets the real
    embedding of text i plus noise, so the store has the shape of real chat embeddings
    (clusters, a real vocabulary for BM25) at a size the model could not embed in time."""

    name = DEFAULT_MODEL_NAME
    dim = 384

    def __init__(self, base_texts: list[str], base_vectors: np.ndarray, noise: float = 0.04, seed=0):
        self.index = {t: i for i, t in enumerate(base_texts)}
        self.base = base_vectors
        self.noise = noise
        self.rng = np.random.default_rng(seed)

    def embed(self, texts):
        rows = [self.index[t.rsplit(" #", 1)[0]] for t in texts]
        v = self.base[rows] + self.noise * self.rng.standard_normal((len(texts), self.dim)).astype(np.float32)
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def sentence(rng: random.Random, n: int) -> str:
    name = f"Name{rng.randrange(3000)}"
    words = " ".join(rng.choices(WORDS, k=rng.randint(6, 16)))
    return f"{name} {rng.choice(VERBS)} the {words} ({n})."


def open_memory(directory: Path, url: str | None, **options) -> MemoryStore:
    """The bench's store: the folder's SQLite store, or the PostgreSQL one at ``url``."""
    if url:
        return MemoryStore(directory, store_url=url, **options)
    return MemoryStore(directory, store_url="", approx_threshold=50_000, **options)


_BASE_VECTORS: list = []


def fill(directory: Path, size: int, character: str, url: str | None = None) -> float:
    from pocketpack.retrieval.embed import get_embedder

    base = list(dict.fromkeys(real_turns()))
    if len(_BASE_VECTORS) != len(base):  # once per run, whichever backends and sizes it fills
        print(f"  embedding {len(base)} real turns once...", file=sys.stderr, flush=True)
        _BASE_VECTORS[:] = list(get_embedder().embed(base))
    vectors = np.stack(_BASE_VECTORS)
    memory = open_memory(directory, url, embedder=NoisyCopies(base, vectors))
    start = time.perf_counter()
    batch = 20_000
    memory.collection(character)  # fixes a PostgreSQL store's vector dimension before its bulk load
    bulk = memory.store.bulk_load() if url else contextlib.nullcontext()
    with bulk:
        _fill_rows(memory, size, character, base, batch)
    if url:
        print(f"  {size} rows and their HNSW index in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    coll = memory.collection(character)
    if not url:
        with memory.store.lock:
            coll._fresh_index()
        coll.save_index()
    memory.close()
    return time.perf_counter() - start


def _fill_rows(memory, size: int, character: str, base: list[str], batch: int) -> None:
    for offset in range(0, size, batch):
        n = min(batch, size - offset)
        memory.add_many([{"character": character, "role": "user" if i % 2 == 0 else "assistant",
                          "text": f"{base[(offset + i) % len(base)]} #{offset + i}", "chat": f"chat-{(offset + i) // 400}",
                          "row": ((offset + i) % 400) // 2, "time": 1.6e9 + offset + i} for i in range(n)],
                        link=False)  # noise copies: no fact changes; a turn's store still links
        print(f"  filled {offset + n}/{size}", file=sys.stderr, flush=True)


class RandomUnit:
    """Precomputed unit vectors for the concurrent writers (named as the real model, so the
    collection keeps its model): the writers time the store, not the embedding."""

    name = DEFAULT_MODEL_NAME
    dim = 384

    def embed(self, texts):
        rng = np.random.default_rng(abs(hash(texts[0])) % 2**32 if texts else 0)
        v = rng.standard_normal((len(texts), self.dim)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def _writer(directory: str, url: str | None, character: str, writer: int, writes: int, start_at: float):
    memory = open_memory(Path(directory), url, embedder=RandomUnit())
    texts = [f"writer {writer} stores memory {i}: {' '.join(random.Random(i).choices(WORDS, k=12))}"
             for i in range(writes)]
    while time.time() < start_at:
        time.sleep(0.005)
    t0 = time.time()
    for i, text in enumerate(texts):
        memory.add(character, "user" if i % 2 == 0 else "assistant", text, chat=f"writers-{writer}", row=i // 2)
    t1 = time.time()
    memory.close()
    return t0, t1


def concurrent_writes(directory: Path, url: str | None, character: str, writers: int, writes: int) -> float:
    """Memories stored per second by ``writers`` processes writing the same store at once."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    start_at = time.time() + 15  # every process has opened the store by then
    with ctx.Pool(writers) as pool:
        spans = pool.starmap(_writer, [(str(directory), url, character, w, writes, start_at) for w in range(writers)])
    took = max(t1 for _, t1 in spans) - min(t0 for t0, _ in spans)
    memory = open_memory(directory, url)
    for w in range(writers):
        memory.forget(character, chat=f"writers-{w}")  # the store is measured again as it was
    memory.close()
    return writers * writes / took


def rss_mib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def percentiles(values: list[float]) -> tuple[float, float]:
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]
    return statistics.median(values) * 1000, p95 * 1000


def measure(directory: Path, size: int, turns_n: int, character: str, defaults: str = "default",
            url: str | None = None) -> dict:
    if not url:
        warm_page_cache(Path(directory))
    gc.collect()
    rss_before = rss_mib()
    memory = open_memory(directory, url)
    memory.store.embedder.prepare()  # the model's load and OpenVINO conversion are not a turn's cost
    memory.store.embedder.embed(["warm up"])
    rss_model = rss_mib()
    coll = memory.collection(character)
    start = time.perf_counter()
    if url:
        index = None
        coll.dense(memory.store.embedder.embed(["warm up"])[0], 10)  # PostgreSQL's buffers warm up
    else:
        with memory.store.lock:
            index = coll._fresh_index()
    t_open = time.perf_counter() - start
    rss_index = rss_mib()

    turns_module.recall_options = DEFAULTS[defaults]  # what chat_input_modifier recalls with
    turns = MemoryTurns(memory, MemorySettings(min_cosine=None))
    rng = random.Random(1)
    questions = real_questions()
    rng.shuffle(questions)
    for q in questions[-5:]:  # word-rarity and row caches filled, as after a few turns of use (not timed)
        memory.recall(character, q, 6, options=DEFAULTS[defaults]())
    history = {"internal": [[sentence(rng, -i), sentence(rng, -i - 1)] for i in range(20)], "visible": [], "metadata": {}}
    history["visible"] = [[html.escape(u), html.escape(a)] for u, a in history["internal"]]
    recall_t, recall_cpu, store_t, sync_t = [], [], [], []
    for i in range(turns_n):
        state = {"mode": "chat", "character_menu": character, "name1": "Sam", "name2": character,
                 "unique_id": "bench-chat", "context": "A character.", "custom_system_message": "",
                 "history": history, "truncation_length": 4096}
        query = questions[i % len(questions)]
        t0 = time.perf_counter()
        memory.sync_chat(character, "bench-chat", history["internal"], prune=True)
        sync_t.append(time.perf_counter() - t0)
        state["_pocketpack_memory"] = {"character": character, "new_text": None, "row_keys": {}, "injection": None}
        t0, c0 = time.perf_counter(), time.process_time()
        turns.on_chat_input(query, html.escape(query), state)
        recall_t.append(time.perf_counter() - t0)
        recall_cpu.append(time.process_time() - c0)  # CPU time (all threads): steadier on a shared machine
        t0 = time.perf_counter()
        turns.on_output(html.escape(f"Of course, the {rng.choice(WORDS)}! ({i})"), state, is_chat=True)
        store_t.append(time.perf_counter() - t0)
        history["internal"].append([query, f"Of course ({i})"])
        history["visible"].append([query, f"Of course ({i})"])

    # the approximate index against exact search, on the stored vectors
    ann_recall = None
    kind = index.kind if index is not None else ("hnsw" if size >= EXACT_BELOW else "exact")
    if url and size >= EXACT_BELOW:  # the HNSW search against an exact scan of the same rows
        from pocketpack.retrieval.pgstore import SCHEMA

        hits = 0
        qs = memory.store.embedder.embed(questions[-50:])
        for q in qs:
            approx = {i for i, _ in coll.dense(q, 10)}
            literal = "[" + ",".join(map(repr, q.tolist())) + "]"
            exact = {r[0] for r in memory.store.read(
                f"WITH c AS MATERIALIZED (SELECT id, embedding FROM {SCHEMA}.items WHERE collection_id = %s)"
                " SELECT id FROM c ORDER BY embedding <=> %s::vector LIMIT 10", (coll.id, literal))}
            hits += len(exact & approx)
        ann_recall = hits / (10 * len(qs))
    elif index is not None and index.kind == "ivf":
        rows = memory.store.conn.execute(
            "SELECT items.id, vectors.vector FROM items JOIN vectors ON vectors.model = ? AND vectors.hash = items.hash"
            " WHERE items.collection_id = ?", (coll.model, coll.id)).fetchall()
        index = memory.store._indexes[coll.id]  # as the turns left it
        all_ids = np.array([r[0] for r in rows])
        mat = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(len(rows), -1)
        qs = memory.store.embedder.embed(questions[-100:])
        hits = 0
        for q in qs:
            exact = set(all_ids[np.argsort(-(mat @ q))[:10]].tolist())
            approx = {i for i, _ in index.search(q, 10)}
            hits += len(exact & approx)
        ann_recall = hits / (10 * len(qs))
        del mat, rows

    stats = memory.store.stats()
    memory.close()
    return {
        "size": size, "kind": kind, "open_s": t_open, "defaults": defaults,
        "backend": "postgres" if url else "sqlite", "postgres_mib": stats.get("postgres_bytes", 0) / 2**20,
        "recall": percentiles(recall_t), "recall_cpu": percentiles(recall_cpu),
        "store": percentiles(store_t), "sync": percentiles(sync_t),
        "disk_mib": (stats["sqlite_bytes"] + stats["faiss_bytes"] + stats["lexical_bytes"]
                     + stats.get("postgres_bytes", 0)) / 2**20,
        "sqlite_mib": stats["sqlite_bytes"] / 2**20, "faiss_mib": stats["faiss_bytes"] / 2**20,
        "lexical_mib": stats["lexical_bytes"] / 2**20, "lexical_engine": stats["lexical_engine"],
        "rss_index_mib": rss_index - rss_model, "rss_total_mib": rss_index, "rss_model_mib": rss_model - rss_before,
        "ann_recall": ann_recall,
    }


def backend_name(backend: str) -> str:
    from pocketpack.retrieval.backend import mask_url

    return mask_url(backend) if backend != "sqlite" else "sqlite"


def _admin(url: str, size: int) -> tuple[str, str]:
    """The server's URL with the bench database's name in it, and that name."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    name = f"{(parts.path.strip('/') or 'postgres')}_bench_n{size}"
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment)), name


def bench_database(url: str, size: int) -> str:
    """A database for this size on the server at ``url`` (made if missing): one HNSW index per size."""
    import psycopg

    bench_url, name = _admin(url, size)
    with psycopg.connect(url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    return bench_url


def drop_bench_database(url: str, size: int) -> None:
    import psycopg

    _, name = _admin(url, size)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2, help="torch and faiss threads (the target machine has 2 cores)")
    parser.add_argument("--dir", default=None, help="where to build the stores (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--defaults", nargs="+", choices=sorted(DEFAULTS), default=["default"],
                        help="recall options to time, each on the same store: default = the pack's "
                             "(recall_options), locomo = the first defaults (BM25 weighted 1.5 + feedback from 2 hits), "
                             "filtered = FILTERED_RECALL, dense = dense only")
    parser.add_argument("--store", nargs="+", default=["sqlite"], metavar="sqlite|postgresql://…",
                        help="backends to measure: sqlite (a folder) and/or a PostgreSQL server's URL")
    parser.add_argument("--writers", type=int, default=4, help="processes writing at once (0: skip)")
    parser.add_argument("--writes", type=int, default=200, help="memories each concurrent writer stores")
    parser.add_argument("--fill-only", action="store_true",
                        help="fill the stores and stop (with --dir: a later run measures them, e.g. a fill under"
                             " nice -n 19 and the measurement at normal priority)")
    args = parser.parse_args(argv)

    import faiss
    import torch

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="memlat-"))
    results = []
    for backend in args.store:
        for size in args.sizes:
            directory = base / f"n{size}"
            character = "Bench"
            url = bench_database(backend, size) if backend != "sqlite" else None
            if url:
                directory = base / f"pg-n{size}"  # side files only
                have = open_memory(directory, url)
                filled = have.counts().get(character, 0) >= size
                have.close()
            else:
                filled = (directory / "store.sqlite3").exists()
            if not filled:
                print(f"filling {size} memories ({backend_name(backend)})...", file=sys.stderr)
                took = fill(directory, size, character, url)
                print(f"  filled in {took:.0f} s", file=sys.stderr)
            if args.fill_only:
                continue
            for defaults in args.defaults:
                results.append(measure(directory, size, args.turns, character, defaults, url))
            if args.writers > 0:
                print(f"  {args.writers} writers x {args.writes} memories...", file=sys.stderr)
                results[-1]["writes_s"] = concurrent_writes(directory, url, character, args.writers, args.writes)
            if not args.keep and not args.dir:
                shutil.rmtree(directory, ignore_errors=True)
                if url:
                    drop_bench_database(backend, size)

    if args.fill_only:
        return 0
    print(f"memory cost per chat turn, {args.turns} turns, {args.threads} threads, model all-MiniLM-L6-v2 (CPU)")
    head = (f"{'backend':>8} {'memories':>9} {'defaults':>8} {'index':>5} {'recall p50':>10} {'recall p95':>10} "
            f"{'writes/s':>8} {'cpu p50':>8} "
            f"{'cpu p95':>8} {'store p95':>9} {'sync p95':>8} "
            f"{'disk MiB':>8} {'sqlite':>7} {'faiss':>6} {'bm25':>5} {'RSS idx':>7} {'RSS tot':>7} {'ANN R@10':>8} {'open s':>6}")
    print(head)
    print("-" * len(head))
    for r in results:
        ann = f"{r['ann_recall']:.3f}" if r["ann_recall"] is not None else "exact"
        writes = f"{r['writes_s']:.0f}" if r.get("writes_s") else "-"
        print(f"{r['backend']:>8} {r['size']:>9} {r['defaults']:>8} {r['kind']:>5} {r['recall'][0]:>8.1f}ms "
              f"{r['recall'][1]:>8.1f}ms {writes:>8} {r['recall_cpu'][0]:>6.1f}ms {r['recall_cpu'][1]:>6.1f}ms "
              f"{r['store'][1]:>7.1f}ms {r['sync'][1]:>6.1f}ms {r['disk_mib']:>8.0f} {r['sqlite_mib']:>7.0f} "
              f"{r['faiss_mib']:>6.0f} {r['lexical_mib']:>5.0f} {r['rss_index_mib']:>7.0f} {r['rss_total_mib']:>7.0f} "
              f"{ann:>8} {r['open_s']:>6.1f}")
    print(f"lexical engine: {results[0]['lexical_engine'] if results else '-'}; "
          "bm25 = its index on disk (tantivy; FTS5's lives inside sqlite)")
    print("each store's files were read once before measuring, as after a few minutes of use (SQLite; PostgreSQL's"
          " buffers as the server keeps them); disk MiB for postgres = its tables and indexes")
    print(f"writes/s = memories stored per second by {args.writers} processes writing the same store at once"
          " (one transaction each, vectors precomputed)")
    print("cpu = process CPU time of the recall (all threads), beside its wall time; defaults: the recall options")
    print("recall = embed query + hybrid search + compose (chat_input_modifier); store = embed + commit the "
          "exchange (output_modifier); sync = state_modifier's row check; RSS idx = memory added by opening the index")
    return 0


if __name__ == "__main__":
    sys.exit(main())
