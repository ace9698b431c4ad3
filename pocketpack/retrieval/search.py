"""Hybrid retrieval: dense (faiss) + lexical (FTS5 BM25), fused by reciprocal rank, then
weighted by recency and importance, then de-duplicated by maximal marginal relevance.

Each stage is a small function over plain lists so it can be read and tested alone; ``search``
chains them over one or several collections (a memory recall may span characters when its
scope is global).
"""

from __future__ import annotations

import math
import threading
import time as _time
import weakref
from dataclasses import dataclass, field, replace

import numpy as np

from pocketpack.retrieval.lexical import query_terms, searchable_text, stem_terms, stopwords
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
    lexical_gate: bool = False       # scale each BM25 hit's fused share by the rarity of the query terms
                                     # it matches (see ``TermStats.matched``): no fixed trust in BM25
    lexical_coverage: float | None = None  # the BM25 list's weight times (the share of the query's
                                     # information its best hits hold) ** this (``query_coverage``)
    min_information: float | None = None  # drop hits whose own text carries less information than
                                     # this (``TermStats.information``: IDF mass in "unique words")
    newer_first_cosine: float | None = None  # among the results, one at least this close to an older
                                     # one is moved right above it (a fact that changed: see ``newer_first``)
    newer_first_top: int | None = None  # only results among the first this many are moved (and only
                                     # above one of them); None: all ``k``
    newer_first_values: str = "disjoint"  # MemoryStore.recall with newer_first_top set: when two close
                                     # statements are two versions of one fact ("disjoint": no rare word
                                     # shared; "each_new": each holds one the other lacks; see
                                     # memory.store._newer_first); search's own reorder ignores it


@dataclass
class Hit:
    """A search result: the item, its final score and how each retriever ranked it."""

    item: Item
    score: float
    dense_rank: int | None = None
    lexical_rank: int | None = None
    cosine: float | None = None
    parts: dict = field(default_factory=dict)


class TermStats:
    """How rare words are in a store, in "unique words": a term's IDF, log(N / df), divided by
    log N, so a word found in one row counts 1 and one found in every row 0, whatever the
    store's size (N: the rows counted; df: those whose searchable text holds the term), read
    through the backend's ``row_count`` and ``document_frequencies``: a table of the terms
    SQLite's full-text index holds, or PostgreSQL's, both kept in step with every write.

    ``where``: a collection (the rows its store counts with it: on SQLite every row of the
    store's folder; on PostgreSQL the collections of the same kind in the same user's view, see
    ``backend.StoreBackend.word_statistics_version``) or a store (every row it counts).

    Cheap per search (a chat turn's recall runs it): N and the document frequencies are
    cached per store and kept until what they count changes (``word_statistics_version``,
    which every insert, delete and text/context change advances, from any process); a text's
    words are tokenised and stemmed once (cached by text); and only the words a search reads
    are looked up: the query's and each candidate's own text's."""

    def __init__(self, where, texts: list[str] = ()):
        store = getattr(where, "store", None)
        if store is None:  # a store: everything it counts
            store, collection = where, None
        else:
            collection = where.name
        self._vocab = _vocabulary(store, collection)
        self._store = store
        self._collection = collection
        self.n = self._vocab.n
        if texts:
            self.prepare(texts)

    def prepare(self, texts) -> None:
        """Look up, in one vocabulary read, the words of ``texts`` not yet cached."""
        wanted = set()
        for t in texts:
            wanted |= self.stems_of(t)
        self._vocab.lookup(self._store, self._collection, wanted)

    @staticmethod
    def stems_of(text: str) -> set[str]:
        return _stems_of(text)

    def unit(self, stem: str) -> float:
        return self._vocab.unit(self._store, self._collection, stem)

    def settle(self, texts: list[str], threshold: float) -> None:
        """Read, in one vocabulary read, the words never read (or read too many writes ago) of
        those ``texts`` whose bounds cannot settle ``information_below(text, threshold)``; it
        reads a text's other words only where the bounds still cannot settle it then."""
        _stems_of_many(texts)
        wanted: set[str] = set()
        for t in texts:
            if self._bounded(t, threshold) is None:  # only its words with no bounds yet: those read a few
                wanted |= {s for s in self.stems_of(t) if self._vocab.unit_bounds(s) is None}  # writes ago keep theirs
        self._vocab.lookup(self._store, self._collection, wanted)

    def _bounded(self, text: str, threshold: float) -> bool | None:
        lo = hi = 0.0
        for s in self.stems_of(text):
            b = self._vocab.unit_bounds(s)
            if b is None:
                return None
            lo, hi = lo + b[0], hi + b[1]
        if lo >= threshold + 1e-9:
            return False
        if hi < threshold - 1e-9:
            return True
        return None

    def information_below(self, text: str, threshold: float) -> bool:
        """``information(text) < threshold``, decided from bounds where the words' frequencies
        were read a few writes ago and the bounds settle it, else exactly (read afresh)."""
        settled = self._bounded(text, threshold)
        if settled is not None:
            return settled
        self._vocab.lookup(self._store, self._collection, self.stems_of(text))
        return self.information(text) < threshold

    def rare_stems(self, texts: list[str], threshold: float) -> list[set[str]]:
        """For each of ``texts``, its stems at least ``threshold`` rare (``unit``), settled from
        the bounds of words read a few writes ago where they can be, the rest read in one
        vocabulary read (a recall asks this of its first results after every chat turn's write)."""
        _stems_of_many(texts)
        stems = [self.stems_of(t) for t in texts]

        def decided(stem) -> bool | None:
            bounds = self._vocab.unit_bounds(stem)
            if bounds is None:
                return None
            if bounds[0] >= threshold:
                return True
            return False if bounds[1] < threshold else None

        self._vocab.lookup(self._store, self._collection, {s for ss in stems for s in ss if decided(s) is None})
        out = []
        for ss in stems:
            rare = set()
            for stem in ss:
                got = decided(stem)
                if got is None:
                    got = self.unit(stem) >= threshold
                if got:
                    rare.add(stem)
            out.append(rare)
        return out

    def information(self, text: str) -> float:
        """The information a text carries: the sum of its distinct words' rarity. "And you?" and
        "ok" carry about 0 (stopwords, or words in many rows); "I live in Brno" about 1.5."""
        return sum(self.unit(s) for s in self.stems_of(text))

    def matched(self, query: str, text: str) -> float:
        """How much lexical evidence ``text`` gives for ``query``: the rarity of the rarest
        query word it holds (1: a word found nowhere else; near 0: only common words)."""
        shared = self.stems_of(query) & self.stems_of(text)
        return max((self.unit(s) for s in shared), default=0.0)


def _rarity(n: int, df: int, log_n: float) -> float:
    """A word's rarity in [0, 1]: its smoothed idf over the largest possible. With no row count
    (an empty store, or the count could not be read) every word counts as rare, as it does when
    there is no vocabulary to read."""
    if log_n <= 0.0:
        return 1.0
    return min(1.0, max(0.0, math.log((n + 1) / max(df, 1)) / log_n))


class _Vocabulary:
    """The row count and the document frequencies read so far of what one store counts for a
    scope (``word_statistics_version``'s first part), valid at ``version``."""

    def __init__(self):
        self.version = None
        self.n = 0
        self.log_n = 0.0
        self.units: dict[str, float] = {}
        self.seq: int | None = None   # the writes counter of ``version`` (None: unversioned)
        self.seen: dict[str, tuple[int, int]] = {}  # stem -> (df, seq when read): bounds after writes
        self.bounds: dict[str, tuple[float, float]] = {}  # unit_bounds at ``version`` (a recall asks thousands)
        self.lock = threading.Lock()

    def refresh(self, store, collection, key, seq: int | None) -> None:
        version = (key, seq) if seq is not None else object()  # no version: read afresh every search
        with self.lock:
            if version == self.version:
                return
        try:
            n = int(store.row_count(collection))
        except Exception:  # noqa: BLE001 - the row count only weighs words: an unreadable count reads as empty
            n = 0
        with self.lock:
            if seq is None or not isinstance(self.version, tuple) or self.version[0] != version[0] \
                    or self.seq is None or seq < self.seq:
                self.seen = {}
            self.version, self.n, self.units, self.seq, self.bounds = version, n, {}, seq, {}
            self.log_n = math.log(n + 1)  # smoothed: a word in one row of one still counts 1

    def lookup(self, store, collection, stems) -> None:
        with self.lock:
            todo = sorted(s for s in stems if s not in self.units)
            version, log_n, n, seq = self.version, self.log_n, self.n, self.seq
        if not todo:
            return
        try:
            df, complete = store.document_frequencies(todo, collection), True
        except Exception:  # noqa: BLE001 - no vocabulary (an old store): every word counts as rare
            df, complete = {}, False
        units = {s: _rarity(n, df.get(s, 1), log_n) for s in todo}
        with self.lock:
            if self.version == version:
                self.units.update(units)
                if complete and seq is not None:
                    if len(self.seen) > 200_000:
                        self.seen = {}
                    self.seen.update({s: (df.get(s, 0), seq) for s in todo})

    def unit_bounds(self, stem: str) -> tuple[float, float] | None:
        """The least and most this stem's unit can be now, from its df read ``d`` writes ago
        (each write moves a df by at most 1); None where it was never read or too long ago."""
        got = self.units.get(stem)
        if got is not None:
            return got, got
        got = self.bounds.get(stem)
        if got is not None:
            return got
        seen = self.seen.get(stem)
        if seen is None or self.seq is None or self.seq - seen[1] > BOUNDS_MAX_WRITES:
            return None
        d = self.seq - seen[1]
        n, log_n = self.n, self.log_n
        got = self.bounds[stem] = (_rarity(n, seen[0] + d, log_n), _rarity(n, seen[0] - d, log_n))
        return got

    def unit(self, store, collection, stem: str) -> float:
        got = self.units.get(stem)
        if got is None:
            self.lookup(store, collection, [stem])
            got = self.units.get(stem, 1.0)
        return got


BOUNDS_MAX_WRITES = 64  # a df read more writes ago than this is read again
_VOCABULARIES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_VOCABULARIES_LOCK = threading.Lock()
_STEMS: dict[str, set[str]] = {}  # text -> its indexed, non-stopword terms (FTS5's stems)
_STEMS_MAX = 20_000


def _vocabulary(store, collection: str | None = None) -> _Vocabulary:
    """The vocabulary of what ``store`` counts for ``collection``, refreshed to its version."""
    try:
        key, seq = store.word_statistics_version(collection)
        seq = int(seq)
    except Exception:  # noqa: BLE001 - nothing to version by (no statistics): read afresh every search
        key, seq = None, None
    with _VOCABULARIES_LOCK:
        per_scope = _VOCABULARIES.get(store)
        if per_scope is None:
            per_scope = _VOCABULARIES[store] = {}
        vocab = per_scope.get(key)
        if vocab is None:
            if len(per_scope) >= 32:  # scopes whose collections came and went
                per_scope.clear()
            vocab = per_scope[key] = _Vocabulary()
    vocab.refresh(store, collection, key, seq)
    return vocab


def _stems_of_many(texts) -> None:
    """Fill the stems cache for ``texts`` with one call of the stemmer (it asks SQLite)."""
    stop = stopwords()
    todo = {t: [w for w in query_terms(t) if w not in stop] for t in dict.fromkeys(texts) if t not in _STEMS}
    all_words = sorted({w for ws in todo.values() for w in ws})
    if all_words:
        stem_terms(all_words)  # cached per word by the stemmer: _stems_of below finds them there
    for t in todo:
        _stems_of(t, todo[t])


def _stems_of(text: str, words: list[str] | None = None) -> set[str]:
    """The distinct stems of ``text``'s searchable words (``query_terms`` less stopwords), as
    FTS5 indexes them: computed once per text."""
    got = _STEMS.get(text)
    if got is None:
        if words is None:
            stop = stopwords()
            words = [w for w in query_terms(text) if w not in stop]
        stem = stem_terms(words) if words else {}
        got = {stem[w] for w in words if w in stem}
        if len(_STEMS) >= _STEMS_MAX:
            _STEMS.clear()
        _STEMS[text] = got
    return got


INFORMATION_MIN_ROWS = 200  # ``min_information`` judges rarity in stores at least this big


INFORMATION_POOL_PER_K = 2  # min_information: the best ``2 * k`` informative candidates are kept


def _informative(fused: dict[int, float], items: dict[int, Item], stats: TermStats, threshold: float,
                 pool: int) -> dict[int, float]:
    """The best ``pool`` of ``fused`` (by fused score) whose text carries at least ``threshold``
    information (below ``INFORMATION_MIN_ROWS`` rows rarity means little: only content-free texts
    go). Judged best first, in chunks, so that a chat turn reads the word frequencies of the
    candidates that can still make the results, not of every candidate of both runs (at 100k
    memories, with a write every turn, that read was most of the recall's time)."""
    order = sorted((i for i in fused if i in items), key=lambda i: -fused[i])
    kept: dict[int, float] = {}
    start = 0
    while start < len(order) and len(kept) < pool:
        chunk = order[start:start + (pool - len(kept)) + 8]  # most pass: a few more than still needed
        start += len(chunk)
        stats.settle([items[i].text for i in chunk], threshold)
        for i in chunk:
            text = items[i].text
            if stats.information_below(text, threshold) and (stats.n >= INFORMATION_MIN_ROWS or not stats.stems_of(text)):
                continue
            kept[i] = fused[i]
            if len(kept) >= pool:
                break
    return kept


COVERAGE_HITS = 3  # how many of BM25's first hits ``query_coverage`` reads


def _searchable(item: Item) -> str:
    return searchable_text(item.text, item.context)


def query_coverage(stats: TermStats, query: str, hits: list[Item]) -> float:
    """How much of the question BM25's best ``hits`` hold: the largest share of the query's
    information (its words' rarity, ``TermStats.unit``) found in one hit's text and context, in
    [0, 1]. Near 1 when a hit holds the question's telling words ("What did Caroline research?"
    and a turn about her research); low when each hit shares only some word of it ("What is my
    dog called?" and "My boss is called Bastian." or "My neighbour's dog barks all night."),
    where BM25's list is noise that would push out what dense search found."""
    q_stems = stats.stems_of(query)
    total = sum(stats.unit(t) for t in q_stems)
    if total <= 0:
        return 0.0
    best = 0.0
    for it in hits:
        shared = q_stems & stats.stems_of(_searchable(it))
        best = max(best, sum(stats.unit(t) for t in shared) / total)
    return min(1.0, best)


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


def newer_first(chosen: list[int], items: dict[int, Item], vectors: dict[int, np.ndarray],
                threshold: float, differ=None) -> tuple[list[int], dict[int, int]]:
    """``chosen`` with every result moved right above the first older result it is at least
    ``threshold`` cosine close to (the newest such first): when "I live in Brno" and, later, "I
    moved to Freiburg" both answer a question, the later one leads. Only statements take part
    (not a reply, which restates the user's words, nor a question, which states nothing).
    ``differ(older, newer)``, where given, must hold too (two versions of a fact, not two facts
    about one thing). Returns the new order and newer id -> the older id it was moved above."""
    vectors = {i: v for i, v in vectors.items() if i in items and _states_something(items[i])}
    order = list(chosen)
    above: dict[int, int] = {}
    i = 0
    while i < len(order):
        a = order[i]
        va = vectors.get(a)
        newer = [b for b in order[i + 1:] if va is not None and b in vectors and items[b].time > items[a].time
                 and float(va @ vectors[b]) >= threshold and (differ is None or differ(a, b))]
        if newer:
            b = max(newer, key=lambda j: items[j].time)
            order.remove(b)
            order.insert(i, b)
            above.setdefault(b, a)
            continue  # b itself may have a newer one further down
        i += 1
    return order, above


def _states_something(item: Item) -> bool:
    """A user's (or a document's) statement: no reply and no question."""
    return (item.meta or {}).get("role", "user") == "user" and not item.text.rstrip().endswith("?")


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
    plain = replace(opts, feedback_hits=0, newer_first_cosine=None)  # the merge below re-sorts: order after it
    depth = max(k, 20)
    qv = query_vector if query_vector is not None else collections[0].store.embedder.embed([query])[0]
    cache: dict[int, Item] = {}
    lexical_runs: dict = {}  # BM25 does not see the moved vector: the second run reuses the first's list
    first = _search(collections, query, depth, plain, grp, exclude, now, qv, cache, lexical_runs)
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
    second = _search(collections, query, depth, plain, grp, exclude, now, moved, cache, lexical_runs)
    # each run's score is already 1.0 for "first in every list"; their mean keeps that meaning
    total: dict[int, float] = {}
    for run in (first, second):
        for h in run:
            total[h.item.id] = total.get(h.item.id, 0.0) + h.score / 2
    hits = {h.item.id: h for h in second}
    hits.update({h.item.id: h for h in first})  # the first run's view of a hit (its true cosine)
    order = sorted(total, key=lambda i: -total[i])[:k]
    merged = [replace(hits[i], score=round(total[i], 6), parts={**hits[i].parts, "run_score": hits[i].score})
              for i in order]
    return _newer_first_hits(merged, collections, opts) if opts.newer_first_cosine is not None else merged


def _newer_first_hits(hits: list[Hit], collections, opts: SearchOptions) -> list[Hit]:
    """``hits`` in ``newer_first`` order (its first ``newer_first_top``), for a ranking made
    after ``_search`` ordered its own (the feedback runs' merge); reads the ``k`` vectors."""
    ids = [h.item.id for h in hits]
    top = len(ids) if opts.newer_first_top is None else max(0, opts.newer_first_top)
    vectors: dict[int, np.ndarray] = {}
    for coll in collections:
        vectors.update(coll.vectors([i for i in ids[:top] if i not in vectors]))
    by_id = {h.item.id: h for h in hits}
    head, above = newer_first(ids[:top], {i: h.item for i, h in by_id.items()}, vectors, opts.newer_first_cosine)
    return [replace(by_id[i], parts={**by_id[i].parts, "newer_than": above[i]}) if i in above else by_id[i]
            for i in head + ids[top:]]


def _search(collections: list[Collection], query: str, k: int, opts: SearchOptions, grp: str | None,
            exclude: set[int] | None, now: float | None, query_vector: np.ndarray | None,
            cache: dict[int, Item] | None = None, lexical_runs: dict | None = None) -> list[Hit]:
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
            key = (id(coll), n_cand + len(exclude))
            if lexical_runs is None or key not in lexical_runs:  # a feedback run asks the same words again
                found = coll.lexical(query, n_cand + len(exclude), grp)
                if lexical_runs is not None:
                    lexical_runs[key] = found
            lexical += [(coll, i, s) for i, s in (found if lexical_runs is None else lexical_runs[key])]
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
    stats = None
    if opts.lexical_gate or opts.min_information is not None or opts.lexical_coverage is not None:
        # the words read now: the query's (the gate's shared words are among them); a
        # candidate's own words only where their frequencies read a few writes ago cannot settle
        # ``min_information`` (after a chat turn's write, most can); a context's other words never
        stats = TermStats(collections[0], [query])
    if opts.lexical_gate and stats is not None and opts.fusion == "rrf":
        lexical_rank0 = {i: r for r, i in enumerate(lexical_ids, start=1)}
        _stems_of_many([_searchable(items[i])
                        for i in fused if i in lexical_rank0 and i in items])  # one stemmer call
        for i in list(fused):
            if i in lexical_rank0 and i in items:
                it = items[i]
                gate = stats.matched(query, _searchable(it))
                fused[i] -= opts.lexical_weight * (1.0 - gate) / (opts.rrf_k + lexical_rank0[i])
    if opts.lexical_coverage is not None and stats is not None and opts.fusion == "rrf" and lexical_ids:
        top = [items[i] for i in lexical_ids[:COVERAGE_HITS] if i in items]
        cut = 1.0 - query_coverage(stats, query, top) ** opts.lexical_coverage
        for r, i in enumerate(lexical_ids, start=1):
            if i in fused:
                fused[i] -= opts.lexical_weight * cut / (opts.rrf_k + r)
    if opts.min_information is not None and stats is not None:
        fused = _informative(fused, items, stats, opts.min_information, max(INFORMATION_POOL_PER_K * k, 20))
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
    if opts.newer_first_cosine is not None:
        top = len(chosen) if opts.newer_first_top is None else max(0, opts.newer_first_top)
        head, above = newer_first(chosen[:top], items, vectors, opts.newer_first_cosine)
        chosen = head + chosen[top:]
        for newer, older in above.items():
            parts[newer] = {**parts[newer], "newer_than": older}

    dense_rank = {i: r for r, i in enumerate(dense_ids, start=1)}
    lexical_rank = {i: r for r, i in enumerate(lexical_ids, start=1)}
    return [
        Hit(item=items[i], score=round(final[i], 6), dense_rank=dense_rank.get(i), lexical_rank=lexical_rank.get(i),
            cosine=cosine.get(i), parts=parts[i])
        for i in chosen
    ]
