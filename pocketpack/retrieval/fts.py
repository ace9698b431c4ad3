"""BM25 by SQLite's FTS5: the ``items_fts`` table, updated in the same transaction as the item
(triggers, migration 2), so it is never behind. It answers whenever tantivy is not installed,
not chosen (``Store(lexical="fts5")``) or behind and written by another process.

FTS5 scores every row that holds any query term before it can sort, so a term found in a
large share of a collection's rows is dropped from the query first (``rare_terms``).
"""

from __future__ import annotations

import json
import sqlite3
import threading

from pocketpack.retrieval.terms import fts5_match, fts5_quote, stem_terms

TOKENIZE = "porter unicode61 remove_diacritics 2"  # items_fts's (migrations 1 and 2)


def document_frequencies(store, terms) -> dict[str, int]:
    """term (as FTS5 indexes it: a stem, or ``c<id>`` for a collection) -> the rows of the
    store holding it, every collection counted; terms in none are left out. Read from
    ``term_df`` (migration 11), which holds what FTS5's vocabulary would count without walking
    each term's posting list. Raises ``sqlite3.OperationalError`` where the store has neither."""
    return dict(store.read_in("SELECT term, df FROM term_df WHERE term IN ({marks}) AND df > 0", sorted(set(terms))))


class _Terms:
    """Texts to the distinct terms ``items_fts`` indexes for them, by FTS5's own tokenizer (an
    in-memory table with the same tokenize option): what another backend stores so that its
    word statistics count the very terms SQLite's vocabulary counts (``PgStore``)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._conn = None

    def __call__(self, texts: list[str]) -> list[list[str]]:
        if not texts:
            return []
        with self._lock:
            if self._conn is None:
                conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
                conn.execute(f"CREATE VIRTUAL TABLE tok USING fts5(t, tokenize = '{TOKENIZE}')")
                conn.execute("CREATE VIRTUAL TABLE tok_v USING fts5vocab(tok, 'instance')")
                self._conn = conn
            conn = self._conn
            found: list[set[str]] = [set() for _ in texts]
            conn.execute("BEGIN")
            try:
                conn.executemany("INSERT INTO tok(rowid, t) VALUES (?, ?)", list(enumerate(texts)))
                for term, doc in conn.execute("SELECT DISTINCT term, doc FROM tok_v"):
                    found[doc].add(term)
                conn.execute("DELETE FROM tok")
            finally:
                conn.execute("COMMIT")
        return [sorted(f) for f in found]


indexed_terms = _Terms()
"""``indexed_terms(texts)``: for each text, the sorted distinct terms FTS5 indexes for it."""


def row_terms_json(text: str, coll: str) -> str:
    """The SQL function ``pocketpack_fts_terms(text, coll)`` that keeps ``term_df`` (migration
    11): the distinct terms ``items_fts`` indexes for one row, as a JSON array."""
    return json.dumps(indexed_terms([f"{text}\n{coll}"])[0])


def register_functions(conn: sqlite3.Connection) -> None:
    """Give a store connection the functions its triggers call (before it migrates or writes)."""
    conn.create_function("pocketpack_fts_terms", 2, row_terms_json, deterministic=True)


class Fts5Engine:
    """The FTS5 side of a store's lexical search; stateless, every call reads SQLite."""

    name = "fts5"

    def __init__(self, store):
        self.store = store

    def search(self, collection_id: int, words: list[str], k: int, grp: str | None = None) -> list[tuple[int, float]]:
        """Top ``k`` (item id, BM25 score, higher is better) for any of ``words`` (from
        ``query_terms``) in one collection, optionally within one group."""
        words = self.rare_terms(collection_id, words)
        if not words:
            return []
        sql = ("SELECT items_fts.rowid, bm25(items_fts, 1.0, 0.0) AS s FROM items_fts"
               " WHERE items_fts MATCH ?")
        args: list = [f"coll:c{collection_id} AND ({fts5_match(words)})"]
        if grp is not None:
            sql += " AND items_fts.rowid IN (SELECT id FROM items WHERE collection_id = ? AND grp = ?)"
            args += [collection_id, grp]
        sql += " ORDER BY s LIMIT ?"
        args.append(int(k))
        try:
            rows = self.store.read(sql, args)
        except sqlite3.OperationalError:
            return []
        return [(int(i), -float(s)) for i, s in rows]

    def rare_terms(self, collection_id: int, words: list[str]) -> list[str]:
        """``words`` less those in more than ``Store.common_term_ratio`` of this collection's rows.

        A term in a tenth of 100k rows makes FTS5 score 10k rows and adds almost nothing to
        BM25 (its idf is near zero), so it is dropped; the rarest term always stays. Document
        frequency comes from ``items_fts_vocab`` and counts every collection: when the store
        holds others, a term common there is re-counted in this collection (capped) first.
        """
        store = self.store
        ratio = store.common_term_ratio
        if len(words) < 2 or not ratio:
            return words
        stems = stem_terms(words)
        try:
            df = document_frequencies(store, {f"c{collection_id}", *stems.values()})
        except sqlite3.OperationalError:
            return words
        rows = df.get(f"c{collection_id}", 0)
        if rows < store.common_term_min_rows:
            return words
        limit = ratio * rows
        freq = {w: df.get(stems.get(w, w), 0) for w in words}
        common = [w for w in words if freq[w] > limit]
        if common and store.read_one("SELECT COUNT(*) > 1 FROM collections")[0]:
            cap = int(limit) + 1
            for w in common:  # global count overstates: count within this collection, capped
                sub = ("SELECT COUNT(*) FROM (SELECT rowid FROM items_fts WHERE items_fts MATCH ? LIMIT ?)")
                try:
                    freq[w] = store.read_one(sub, (f"coll:c{collection_id} AND {fts5_quote(w)}", cap))[0]
                except sqlite3.OperationalError:
                    pass
            common = [w for w in common if freq[w] > limit]
        if not common:
            return words
        kept = [w for w in words if w not in common]
        return kept or [min(words, key=lambda w: freq[w])]

    def after_write(self, collection_id: int) -> None:
        """Nothing to do: FTS5 changed in the write's own transaction."""

    def drop(self, collection_id: int) -> None:
        """Nothing to do: deleting the items deleted their FTS5 rows."""

    def close(self) -> None:
        """Nothing held open."""
