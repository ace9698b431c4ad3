"""Hybrid retrieval: dense (faiss) + lexical (FTS5 BM25), fused by reciprocal rank, then
weighted by recency and importance, then de-duplicated by maximal marginal relevance.

Each stage is a small function over plain lists so it can be read and tested alone; ``search``
chains them over one or several collections (a memory recall may span characters when its
scope is global).
"""

from __future__ import annotations

import math
import time as _time
from dataclasses import dataclass, field, replace

import numpy as np

from pocketpack.retrieval.store import Collection, Item


@dataclass
class SearchOptions:
    """How a search ranks. The defaults suit chat memory and document chunks alike."""

    mode: str = "hybrid"             # "hybrid" | "dense" | "lexical"
    candidates: int = 50             # per retriever, before fusion
    fusion: str = "rrf"              # "rrf" (reciprocal rank) | "weighted" (normalised scores)
    rrf_k: int = 10                  # reciprocal-rank constant (10 beat the usual 60 on LoCoMo)
    dense_weight: float = 1.0        # weight of the dense list in the fusion
    lexical_weight: float = 1.0
    recency_weight: float = 0.0      # 0: off; adds w * 0.5 ** (age / half_life) to the score
    half_life_days: float = 30.0
    importance_weight: float = 0.0   # adds w * importance (importance in [0, 1])
    mmr_lambda: float = 0.8          # 1: pure relevance; lower trades relevance for diversity
    duplicate_cosine: float = 0.97   # candidates this close to a chosen one are dropped
    min_score: float | None = None   # drop results whose fused score is below this
    min_cosine: float | None = None  # drop results this far from the query unless BM25 matched them
    feedback_hits: int = 0           # >0: pseudo-relevance feedback: search again with the query
    feedback_weight: float = 0.6     # vector moved towards the first run's top hits; fuse both runs


@dataclass
class Hit:
    """A search result: the item, its final score and how each retriever ranked it."""

    item: Item
    score: float
    dense_rank: int | None = None
    lexical_rank: int | None = None
    cosine: float | None = None
    parts: dict = field(default_factory=dict)


def rrf(rankings: list[list[int]], weights: list[float], k: int = 60) -> dict[int, float]:
    """Reciprocal-rank fusion: sum over lists of weight / (k + rank), rank from 1."""
    scores: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights):
        for rank, item_id in enumerate(ranking, start=1):
            scores[item_id] = scores.get(item_id, 0.0) + weight / (k + rank)
    return scores


def mmr(candidates: list[int], relevance: dict[int, float], vectors: dict[int, np.ndarray], k: int,
        lam: float, duplicate_cosine: float) -> list[int]:
    """Pick ``k`` ids greedily by lam * relevance - (1 - lam) * max similarity to those picked.

    Relevance is rescaled to [0, 1] so the trade-off does not depend on the score's scale;
    near-duplicates (cosine >= ``duplicate_cosine`` to a picked one) are skipped outright.
    """
    if not candidates:
        return []
    top = max(relevance[c] for c in candidates) or 1.0
    rel = np.array([relevance[c] / top for c in candidates], dtype=np.float64)
    dim = next((v.shape[0] for v in vectors.values()), 0)
    mat = np.stack([vectors[c] if c in vectors else np.zeros(dim, np.float32) for c in candidates]) if dim else None
    max_sim = np.zeros(len(candidates))      # similarity to the closest picked item so far
    open_ = np.ones(len(candidates), dtype=bool)
    picked: list[int] = []
    while open_.any() and len(picked) < k:
        value = np.where(open_, lam * rel - (1 - lam) * max_sim, -np.inf)
        best = int(np.argmax(value))
        open_[best] = False
        if picked and max_sim[best] >= duplicate_cosine:
            continue  # a near-duplicate of something already picked
        picked.append(candidates[best])
        if mat is not None:
            max_sim = np.maximum(max_sim, mat @ mat[best])
    return picked


def search(collections: list[Collection], query: str, k: int = 10, *, options: SearchOptions | None = None,
           grp: str | None = None, exclude: set[int] | None = None, now: float | None = None,
           query_vector: np.ndarray | None = None) -> list[Hit]:
    """The ``k`` best items of ``collections`` for ``query``, best first.

    ``grp`` restricts to one group (e.g. a chat); ``exclude`` drops ids (e.g. rows already in
    the prompt). All collections must share the store, hence the embedding model.
    """
    opts = options or SearchOptions()
    if opts.feedback_hits > 0 and opts.mode != "lexical" and query and query.strip() and k > 0:
        return _search_with_feedback(collections, query, k, opts, grp, exclude, now, query_vector)
    return _search(collections, query, k, opts, grp, exclude, now, query_vector)


def _search_with_feedback(collections, query, k, opts, grp, exclude, now, query_vector) -> list[Hit]:
    """Rocchio-style pseudo-relevance feedback on the dense side: the first run's best hits
    say what the question is about (for "what does Melanie do for fun?" a turn about her
    pottery class), so a second run with the query vector moved towards them finds the other
    turns about the same things; a hit's score is the mean of its two runs' scores (0 where a run
    missed it). It costs one more index search, no embedding. Memory recalls with it (see
    ``pocketpack.memory.store.recall_options`` for what it gains on LoCoMo)."""
    collections = [c for c in collections if c is not None]
    if not collections:
        return []
    plain = replace(opts, feedback_hits=0)
    depth = max(k, 20)
    qv = query_vector if query_vector is not None else collections[0].store.embedder.embed([query])[0]
    cache: dict[int, Item] = {}
    first = _search(collections, query, depth, plain, grp, exclude, now, qv, cache)
    if not first:
        return []
    top = [h.item.id for h in first[:opts.feedback_hits]]
    vectors: dict[int, np.ndarray] = {}
    for coll in collections:
        vectors.update(coll.vectors([i for i in top if i not in vectors]))
    if not vectors:
        return first[:k]
    moved = qv + opts.feedback_weight * np.mean([vectors[i] for i in top if i in vectors], axis=0)
    moved = (moved / (np.linalg.norm(moved) or 1.0)).astype(np.float32)
    second = _search(collections, query, depth, plain, grp, exclude, now, moved, cache)
    # each run's score is already 1.0 for "first in every list"; their mean keeps that meaning
    total: dict[int, float] = {}
    for run in (first, second):
        for h in run:
            total[h.item.id] = total.get(h.item.id, 0.0) + h.score / 2
    hits = {h.item.id: h for h in second}
    hits.update({h.item.id: h for h in first})  # the first run's view of a hit (its true cosine)
    order = sorted(total, key=lambda i: -total[i])[:k]
    return [replace(hits[i], score=round(total[i], 6), parts={**hits[i].parts, "run_score": hits[i].score})
            for i in order]


def _search(collections: list[Collection], query: str, k: int, opts: SearchOptions, grp: str | None,
            exclude: set[int] | None, now: float | None, query_vector: np.ndarray | None,
            cache: dict[int, Item] | None = None) -> list[Hit]:
    collections = [c for c in collections if c is not None]
    if not collections or not query or not query.strip() or k <= 0:
        return []
    exclude = exclude or set()
    now = _time.time() if now is None else now
    store = collections[0].store
    n_cand = max(opts.candidates, k * 3)

    dense: list[tuple[Collection, int, float]] = []
    qv = None
    if opts.mode in ("hybrid", "dense"):
        qv = query_vector if query_vector is not None else store.embedder.embed([query])[0]
        for coll in collections:
            dense += [(coll, i, s) for i, s in coll.dense(qv, n_cand + len(exclude), grp)]
        dense.sort(key=lambda t: -t[2])
    lexical: list[tuple[Collection, int, float]] = []
    if opts.mode in ("hybrid", "lexical"):
        for coll in collections:
            lexical += [(coll, i, s) for i, s in coll.lexical(query, n_cand + len(exclude), grp)]
        lexical.sort(key=lambda t: -t[2])

    # ids are unique across collections of one store (one items table)
    owner = {i: c for c, i, _ in dense + lexical}
    dense_ids = [i for _, i, _ in dense if i not in exclude][:n_cand]
    lexical_ids = [i for _, i, _ in lexical if i not in exclude][:n_cand]
    cosine = {i: s for _, i, s in dense}
    bm25 = {i: s for _, i, s in lexical}
    fused = rrf([dense_ids, lexical_ids], [opts.dense_weight, opts.lexical_weight], opts.rrf_k)
    if not fused:
        return []

    # fetch the candidates' rows and vectors, per collection
    items: dict[int, Item] = {}
    vectors: dict[int, np.ndarray] = {}
    by_coll: dict[int, list[int]] = {}
    for i in fused:
        by_coll.setdefault(id(owner[i]), []).append(i)
    cache = {} if cache is None else cache  # rows already read by an earlier run of this search
    for coll in collections:
        ids = by_coll.get(id(coll))
        if ids:
            cache.update({it.id: it for it in coll.get([i for i in ids if i not in cache])})
            items.update({i: cache[i] for i in ids if i in cache})
            vectors.update(coll.vectors(ids))

    # normalise the fused score so that 1.0 means "first in every list"
    best_possible = sum(w / (opts.rrf_k + 1) for w, ids in
                        ((opts.dense_weight, dense_ids), (opts.lexical_weight, lexical_ids)) if ids) or 1.0
    if qv is not None:  # the true cosine of every candidate, lexical-only ones included
        cosine = {i: float(v @ qv) for i, v in vectors.items()}
    lexical_set = set(lexical_ids)
    if opts.fusion == "weighted" and qv is not None:
        cos = [cosine.get(i, 0.0) for i in fused]
        lo, hi = min(cos), max(cos)
        top_bm25 = max((bm25.get(i, 0.0) for i in fused), default=0.0) or 1.0
        total_w = (opts.dense_weight + opts.lexical_weight) or 1.0
        fused = {i: (opts.dense_weight * (cosine.get(i, lo) - lo) / ((hi - lo) or 1.0)
                     + opts.lexical_weight * max(bm25.get(i, 0.0), 0.0) / top_bm25) / total_w for i in fused}
        best_possible = 1.0
    final: dict[int, float] = {}
    parts: dict[int, dict] = {}
    for i, f in fused.items():
        it = items.get(i)
        if it is None:
            continue  # deleted since the index was read
        if opts.min_cosine is not None and i not in lexical_set and cosine.get(i, 1.0) < opts.min_cosine:
            continue
        rel = f / best_possible
        recency = 0.0
        if opts.recency_weight:
            age_days = max(0.0, now - it.time) / 86400.0
            recency = opts.recency_weight * 0.5 ** (age_days / max(opts.half_life_days, 1e-6))
        importance = opts.importance_weight * float(it.importance or 0.0)
        final[i] = rel + recency + importance
        parts[i] = {"fused": rel, "recency": recency, "importance": importance}
    ranked = sorted(final, key=lambda i: -final[i])
    if opts.min_score is not None:
        ranked = [i for i in ranked if parts[i]["fused"] >= opts.min_score]
    chosen = mmr(ranked, final, vectors, k, opts.mmr_lambda, opts.duplicate_cosine)
    chosen.sort(key=lambda i: -final[i])  # MMR decides what is kept; results read best first

    dense_rank = {i: r for r, i in enumerate(dense_ids, start=1)}
    lexical_rank = {i: r for r, i in enumerate(lexical_ids, start=1)}
    return [
        Hit(item=items[i], score=round(final[i], 6), dense_rank=dense_rank.get(i), lexical_rank=lexical_rank.get(i),
            cosine=cosine.get(i), parts=parts[i])
        for i in chosen
    ]
