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

Also: the approximate index's recall@10 against exact search, disk size, and process RSS.

    .venv/bin/python bench/memory_latency.py [--sizes 100000 1000000] [--turns 200] [--threads 2] [--defaults new old]
"""

from __future__ import annotations

import argparse
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

from pocketpack.memory import turns as turns_module  # noqa: E402
from pocketpack.memory.store import FILTERED_RECALL, MemoryStore, recall_options  # noqa: E402
from pocketpack.memory.turns import MemorySettings, MemoryTurns  # noqa: E402
from pocketpack.retrieval.embed import DEFAULT_MODEL_NAME  # noqa: E402

WORDS = ("time person year way day thing man world life hand part child eye woman place work week case point "
         "home water room mother area money story fact month lot right study book job word business issue side "
         "kind head house service friend father power hour game line end member law car city community name "
         "team minute idea kid body information back parent face others level office door health art war "
         "history party result change morning reason research girl guy moment air teacher force education "
         "dog cat garden music painting hiking camping beach mountain trip concert movie recipe dinner coffee "
         "birthday wedding school college class exam project meeting trip flight train bike run marathon yoga "
         "guitar piano violin novel poem photo camera pottery sculpture festival museum park lake river forest").split()
VERBS = "love visited painted bought adopted started finished planned cooked watched read wrote joined lost found met".split()


# the recall options measured: the pack's defaults ("default"), and the opt-in FILTERED_RECALL
# ("filtered"); "new"/"old" are the names a 2026-12-06 run used for them (filtered/default)
DEFAULTS = {
    "default": recall_options,
    "filtered": lambda **overrides: recall_options(**{**FILTERED_RECALL, **overrides}),
}
DEFAULTS["dense"] = lambda **overrides: recall_options(**{**overrides, "mode": "dense", "feedback_hits": 0})
DEFAULTS["old"], DEFAULTS["new"] = DEFAULTS["default"], DEFAULTS["filtered"]

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


def fill(directory: Path, size: int, character: str) -> float:
    from pocketpack.retrieval.embed import get_embedder

    base = list(dict.fromkeys(real_turns()))
    print(f"  embedding {len(base)} real turns once...", file=sys.stderr, flush=True)
    vectors = get_embedder().embed(base)
    memory = MemoryStore(directory, embedder=NoisyCopies(base, vectors), approx_threshold=50_000)
    start = time.perf_counter()
    batch = 20_000
    for offset in range(0, size, batch):
        n = min(batch, size - offset)
        memory.add_many([{"character": character, "role": "user" if i % 2 == 0 else "assistant",
                          "text": f"{base[(offset + i) % len(base)]} #{offset + i}", "chat": f"chat-{(offset + i) // 400}",
                          "row": ((offset + i) % 400) // 2, "time": 1.6e9 + offset + i} for i in range(n)],
                        link=False)  # noise copies: no fact changes; a turn's store still links
        print(f"  filled {offset + n}/{size}", file=sys.stderr, flush=True)
    coll = memory.collection(character)
    with memory.store._lock:
        coll._fresh_index()
    coll.save_index()
    memory.close()
    return time.perf_counter() - start


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


def measure(directory: Path, size: int, turns_n: int, character: str, defaults: str = "default") -> dict:
    warm_page_cache(Path(directory))
    gc.collect()
    rss_before = rss_mib()
    memory = MemoryStore(directory, approx_threshold=50_000)
    memory.store.embedder.prepare()  # the model's load and OpenVINO conversion are not a turn's cost
    memory.store.embedder.embed(["warm up"])
    rss_model = rss_mib()
    coll = memory.collection(character)
    start = time.perf_counter()
    with memory.store._lock:
        index = coll._fresh_index()
    t_open = time.perf_counter() - start
    rss_index = rss_mib()

    turns_module.recall_options = DEFAULTS[defaults]  # what chat_input_modifier recalls with
    turns = MemoryTurns(memory, MemorySettings(min_cosine=None))
    rng = random.Random(1)
    questions = real_questions()
    rng.shuffle(questions)
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
    if index.kind == "ivf":
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
        "size": size, "kind": index.kind, "open_s": t_open, "defaults": defaults,
        "recall": percentiles(recall_t), "recall_cpu": percentiles(recall_cpu),
        "store": percentiles(store_t), "sync": percentiles(sync_t),
        "disk_mib": (stats["sqlite_bytes"] + stats["faiss_bytes"] + stats["lexical_bytes"]) / 2**20,
        "sqlite_mib": stats["sqlite_bytes"] / 2**20, "faiss_mib": stats["faiss_bytes"] / 2**20,
        "lexical_mib": stats["lexical_bytes"] / 2**20, "lexical_engine": stats["lexical_engine"],
        "rss_index_mib": rss_index - rss_model, "rss_total_mib": rss_index, "rss_model_mib": rss_model - rss_before,
        "ann_recall": ann_recall,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2, help="torch and faiss threads (the target machine has 2 cores)")
    parser.add_argument("--dir", default=None, help="where to build the stores (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--defaults", nargs="+", choices=sorted(DEFAULTS), default=["default"],
                        help="recall options to time, each on the same store: default = the pack's "
                             "(recall_options: BM25 weighted 1.5 + feedback from 2 hits), filtered = FILTERED_RECALL")
    args = parser.parse_args(argv)

    import faiss
    import torch

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="memlat-"))
    results = []
    for size in args.sizes:
        directory = base / f"n{size}"
        character = "Bench"
        if not (directory / "store.sqlite3").exists():
            print(f"filling {size} memories...", file=sys.stderr)
            took = fill(directory, size, character)
            print(f"  filled in {took:.0f} s", file=sys.stderr)
        for defaults in args.defaults:
            results.append(measure(directory, size, args.turns, character, defaults))
        if not args.keep and not args.dir:
            shutil.rmtree(directory, ignore_errors=True)

    print(f"memory cost per chat turn, {args.turns} turns, {args.threads} threads, model all-MiniLM-L6-v2 (CPU)")
    head = (f"{'memories':>9} {'defaults':>8} {'index':>5} {'recall p50':>10} {'recall p95':>10} {'cpu p50':>8} "
            f"{'cpu p95':>8} {'store p95':>9} {'sync p95':>8} "
            f"{'disk MiB':>8} {'sqlite':>7} {'faiss':>6} {'bm25':>5} {'RSS idx':>7} {'RSS tot':>7} {'ANN R@10':>8} {'open s':>6}")
    print(head)
    print("-" * len(head))
    for r in results:
        ann = f"{r['ann_recall']:.3f}" if r["ann_recall"] is not None else "exact"
        print(f"{r['size']:>9} {r['defaults']:>8} {r['kind']:>5} {r['recall'][0]:>8.1f}ms {r['recall'][1]:>8.1f}ms "
              f"{r['recall_cpu'][0]:>6.1f}ms {r['recall_cpu'][1]:>6.1f}ms "
              f"{r['store'][1]:>7.1f}ms {r['sync'][1]:>6.1f}ms {r['disk_mib']:>8.0f} {r['sqlite_mib']:>7.0f} "
              f"{r['faiss_mib']:>6.0f} {r['lexical_mib']:>5.0f} {r['rss_index_mib']:>7.0f} {r['rss_total_mib']:>7.0f} "
              f"{ann:>8} {r['open_s']:>6.1f}")
    print(f"lexical engine: {results[0]['lexical_engine'] if results else '-'}; "
          "bm25 = its index on disk (tantivy; FTS5's lives inside sqlite)")
    print("each store's files were read once before measuring, as after a few minutes of use")
    print("cpu = process CPU time of the recall (all threads), beside its wall time; defaults: the recall options")
    print("recall = embed query + hybrid search + compose (chat_input_modifier); store = embed + commit the "
          "exchange (output_modifier); sync = state_modifier's row check; RSS idx = memory added by opening the index")
    return 0


if __name__ == "__main__":
    sys.exit(main())
