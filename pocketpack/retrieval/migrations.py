"""The store's SQLite schema, as numbered migrations applied in order and recorded.

Never edit a migration that has shipped: add the next number. ``apply`` runs the missing ones
inside one transaction each, so a store opened by a newer pocketpack upgrades in place and an
interrupted upgrade leaves the previous schema intact.

Tables
- ``collections``: one per named collection (``memory/<character>``, ``rag/<scope>``...); the
  embedding model its vectors come from; ``pruned_seq``: changes up to it have been dropped
  from the log because a saved faiss index already holds them.
- ``vectors``: one embedding per (model, sha256 of the text): the same text is never embedded
  twice, whichever collection or item it belongs to. float32 little-endian bytes. (4: moved
  to a rowid table, less than half the size on disk.)
- ``items``: the text and metadata; ``id`` is also the faiss id. ``key`` is the caller's
  stable name for an item (unique in its collection) so writes are idempotent upserts;
  ``grp`` groups items for filtering and bulk deletion (a chat, a document).
- ``changes``: an append-only log of vector-affecting writes, so an index saved at sequence
  number S is brought up to date by replaying the log after S rather than rebuilt.
- ``items.context`` (2): words that find an item without being part of it, indexed for BM25.
- ``items_fts``: FTS5 full-text index (BM25 ranking) kept in step by triggers; column ``coll``
  holds the collection as a token (weight 0 in ranking) so a query only matches its own
  collection; triggers keep it consistent with every write to ``items``.
- ``items_fts_vocab`` (5): FTS5's ``fts5vocab`` view of ``items_fts`` ('row': a term's number
  of rows), so lexical search can drop query terms too common to rank anything, and the
  ``c<id>`` token's count is its collection's size. A view: nothing stored, nothing to sync.
- ``lexical_log``, ``lexical_state`` (6; per collection since 7): the change log of the tantivy
  BM25 caches and the position (and generation) each has reached; see
  ``pocketpack.retrieval.lexical``.
- ``vector_gc`` (8): embeddings that may have lost their last item (filled by triggers), so
  ``Store.prune_vectors`` checks only those.
- ``item_fingerprints`` (9): the identity of an imported record (a hash of what it says, made
  by the importer) -> its item, unique within a collection: importing the same record again,
  or re-running an import that was killed part-way, never adds it twice. Items written any
  other way have none (keys make those idempotent). A table of its own, not a column of
  ``items``: a wider ``items`` row made SQLite's planner pick the key index over the group
  index for a chat's rows, 5 ms -> 100 ms per chat turn at 100k memories.
- ``item_rows`` (10): the number of items, kept by triggers, which word statistics read after
  every write (``Store.row_count``): a ``COUNT(*)`` of 100k rows cost a chat turn ~7 ms of CPU.
- ``term_df`` (11): each term ``items_fts`` indexes -> the rows holding it, what
  ``items_fts_vocab`` answers but without walking the term's whole posting list (a common word's
  count read that way cost a chat turn milliseconds at 100k rows). Kept by triggers that call
  ``pocketpack_fts_terms`` (a function each store connection registers: FTS5's own tokenizer,
  ``fts.indexed_terms``), so a write by a connection without it (an older Pocket Pack, the sqlite3
  shell) fails rather than leaving the counts wrong; counted once from the vocabulary for an
  older store.
"""

from __future__ import annotations

import sqlite3
import time

from pocketpack.errors import PocketPackError

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE collections (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            model TEXT NOT NULL,
            dim INTEGER NOT NULL,
            created REAL NOT NULL,
            pruned_seq INTEGER NOT NULL DEFAULT 0,
            meta TEXT NOT NULL DEFAULT '{}'
        );
        CREATE TABLE vectors (
            model TEXT NOT NULL,
            hash TEXT NOT NULL,
            vector BLOB NOT NULL,
            PRIMARY KEY (model, hash)
        ) WITHOUT ROWID;
        CREATE TABLE items (
            id INTEGER PRIMARY KEY,
            collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
            key TEXT,
            grp TEXT,
            text TEXT NOT NULL,
            hash TEXT NOT NULL,
            time REAL NOT NULL,
            importance REAL NOT NULL DEFAULT 0,
            pinned INTEGER NOT NULL DEFAULT 0,
            meta TEXT NOT NULL DEFAULT '{}'
        );
        CREATE UNIQUE INDEX items_key ON items(collection_id, key) WHERE key IS NOT NULL;
        CREATE INDEX items_grp ON items(collection_id, grp);
        CREATE INDEX items_hash ON items(hash);
        CREATE TABLE changes (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            collection_id INTEGER NOT NULL,
            item_id INTEGER NOT NULL,
            op TEXT NOT NULL CHECK (op IN ('add', 'mod', 'del'))
        );
        CREATE INDEX changes_collection ON changes(collection_id, seq);
        CREATE VIRTUAL TABLE items_fts USING fts5(
            text, coll, tokenize = 'porter unicode61 remove_diacritics 2'
        );
        CREATE TRIGGER items_ai AFTER INSERT ON items BEGIN
            INSERT INTO items_fts(rowid, text, coll) VALUES (new.id, new.text, 'c' || new.collection_id);
        END;
        CREATE TRIGGER items_ad AFTER DELETE ON items BEGIN
            DELETE FROM items_fts WHERE rowid = old.id;
        END;
        CREATE TRIGGER items_au AFTER UPDATE OF text ON items BEGIN
            UPDATE items_fts SET text = new.text WHERE rowid = old.id;
        END;
        """,
    ),
    (
        2,
        # ``context``: text that helps find an item without being part of it (for a chat
        # message, the message it answers). Lexical search indexes it with the text; the
        # embedding stays the item's own text, which ranks better on LoCoMo.
        """
        ALTER TABLE items ADD COLUMN context TEXT;
        DROP TRIGGER items_ai;
        DROP TRIGGER items_au;
        CREATE TRIGGER items_ai AFTER INSERT ON items BEGIN
            INSERT INTO items_fts(rowid, text, coll)
            VALUES (new.id, new.text || COALESCE(char(10) || new.context, ''), 'c' || new.collection_id);
        END;
        CREATE TRIGGER items_au AFTER UPDATE OF text, context ON items BEGIN
            UPDATE items_fts SET text = new.text || COALESCE(char(10) || new.context, '') WHERE rowid = old.id;
        END;
        """,
    ),
    (
        3,
        # pinned items are read every chat turn: without this a turn scans the collection
        "CREATE INDEX items_pinned ON items(collection_id) WHERE pinned = 1;",
    ),
    (
        4,
        # vectors as an ordinary rowid table: WITHOUT ROWID suits small rows only, and with
        # 1.5 KB vectors it took 4.6 KB a vector on disk instead of about 2 KB
        """
        CREATE TABLE vectors_rowid (
            id INTEGER PRIMARY KEY,
            model TEXT NOT NULL,
            hash TEXT NOT NULL,
            vector BLOB NOT NULL,
            UNIQUE (model, hash)
        );
        INSERT INTO vectors_rowid(model, hash, vector) SELECT model, hash, vector FROM vectors;
        DROP TABLE vectors;
        ALTER TABLE vectors_rowid RENAME TO vectors;
        """,
    ),
    (
        5,
        # document frequency per term, read before a lexical search (see Collection.lexical)
        "CREATE VIRTUAL TABLE items_fts_vocab USING fts5vocab(items_fts, 'row');",
    ),
    (
        6,
        # the tantivy BM25 index (retrieval/lexical.py) is a cache: every change of what it
        # indexes is logged here in the writing transaction, and replayed into it
        """
        CREATE TABLE lexical_log (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            item_id INTEGER NOT NULL
        );
        CREATE TABLE lexical_state (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            seq INTEGER NOT NULL,
            generation TEXT NOT NULL,
            format INTEGER NOT NULL
        );
        CREATE TRIGGER items_lex_ai AFTER INSERT ON items BEGIN
            INSERT INTO lexical_log(item_id) VALUES (new.id);
        END;
        CREATE TRIGGER items_lex_ad AFTER DELETE ON items BEGIN
            INSERT INTO lexical_log(item_id) VALUES (old.id);
        END;
        CREATE TRIGGER items_lex_au AFTER UPDATE OF text, context, grp, collection_id ON items
        WHEN old.text IS NOT new.text OR old.context IS NOT new.context OR old.grp IS NOT new.grp
             OR old.collection_id IS NOT new.collection_id
        BEGIN
            INSERT INTO lexical_log(item_id) VALUES (new.id);
        END;
        """,
    ),
    (
        7,
        # one tantivy index per collection (its own BM25 statistics): the log and the state
        # say which collection; the caches are rebuilt from the items table
        """
        DROP TRIGGER items_lex_ai;
        DROP TRIGGER items_lex_ad;
        DROP TRIGGER items_lex_au;
        DROP TABLE lexical_log;
        DROP TABLE lexical_state;
        CREATE TABLE lexical_log (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            collection_id INTEGER NOT NULL,
            item_id INTEGER NOT NULL
        );
        CREATE INDEX lexical_log_collection ON lexical_log(collection_id, seq);
        CREATE TABLE lexical_state (
            collection_id INTEGER PRIMARY KEY,
            seq INTEGER NOT NULL,
            generation TEXT NOT NULL,
            format INTEGER NOT NULL
        );
        CREATE TRIGGER items_lex_ai AFTER INSERT ON items BEGIN
            INSERT INTO lexical_log(collection_id, item_id) VALUES (new.collection_id, new.id);
        END;
        CREATE TRIGGER items_lex_ad AFTER DELETE ON items BEGIN
            INSERT INTO lexical_log(collection_id, item_id) VALUES (old.collection_id, old.id);
        END;
        CREATE TRIGGER items_lex_au AFTER UPDATE OF text, context, grp, collection_id ON items
        WHEN old.text IS NOT new.text OR old.context IS NOT new.context OR old.grp IS NOT new.grp
             OR old.collection_id IS NOT new.collection_id
        BEGIN
            INSERT INTO lexical_log(collection_id, item_id) VALUES (old.collection_id, old.id);
            INSERT INTO lexical_log(collection_id, item_id)
            SELECT new.collection_id, new.id WHERE new.collection_id IS NOT old.collection_id;
        END;
        """,
    ),
    (
        8,
        # candidates for the vector prune: the (model, text hash) of every item deleted,
        # re-texted or moved, written in the same transaction; a prune then checks these
        # instead of scanning every vector (10 s at 1M items). Seeded with today's orphans.
        """
        CREATE TABLE vector_gc (
            model TEXT NOT NULL,
            hash TEXT NOT NULL,
            PRIMARY KEY (model, hash)
        ) WITHOUT ROWID;
        INSERT OR IGNORE INTO vector_gc(model, hash)
            SELECT model, hash FROM vectors WHERE hash NOT IN (SELECT hash FROM items);
        CREATE TRIGGER items_gc_ad AFTER DELETE ON items BEGIN
            INSERT OR IGNORE INTO vector_gc(model, hash)
            SELECT model, old.hash FROM collections WHERE id = old.collection_id;
        END;
        CREATE TRIGGER items_gc_au AFTER UPDATE OF hash, collection_id ON items
        WHEN old.hash IS NOT new.hash OR old.collection_id IS NOT new.collection_id
        BEGIN
            INSERT OR IGNORE INTO vector_gc(model, hash)
            SELECT model, old.hash FROM collections WHERE id = old.collection_id;
        END;
        CREATE TRIGGER collections_gc_model AFTER UPDATE OF model ON collections
        WHEN old.model IS NOT new.model
        BEGIN
            INSERT OR IGNORE INTO vector_gc(model, hash)
            SELECT old.model, hash FROM items WHERE collection_id = old.id;
        END;
        """,
    ),
    (
        9,
        # an imported record's identity: the same line imported twice is one item
        """
        CREATE TABLE item_fingerprints (
            collection_id INTEGER NOT NULL,
            fingerprint TEXT NOT NULL,
            item_id INTEGER NOT NULL,
            PRIMARY KEY (collection_id, fingerprint)
        ) WITHOUT ROWID;
        CREATE INDEX item_fingerprints_item ON item_fingerprints(item_id);
        CREATE TRIGGER items_fp_ad AFTER DELETE ON items BEGIN
            DELETE FROM item_fingerprints WHERE item_id = old.id;
        END;
        """,
    ),
    (
        10,
        # the row count word statistics read after every write, without counting 100k rows
        """
        CREATE TABLE item_rows (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL);
        INSERT INTO item_rows(id, n) SELECT 1, COUNT(*) FROM items;
        CREATE TRIGGER items_rows_ai AFTER INSERT ON items BEGIN
            UPDATE item_rows SET n = n + 1 WHERE id = 1;
        END;
        CREATE TRIGGER items_rows_ad AFTER DELETE ON items BEGIN
            UPDATE item_rows SET n = n - 1 WHERE id = 1;
        END;
        """,
    ),
    (
        11,
        # document frequencies without walking FTS5's posting lists; the terms of a row are
        # what items_fts indexes for it (its text and context, and its collection's token).
        # A term whose last row went keeps its entry at 0 (readers skip it): a delete then
        # touches only its own terms
        """
        CREATE TABLE term_df (term TEXT PRIMARY KEY, df INTEGER NOT NULL) WITHOUT ROWID;
        INSERT INTO term_df(term, df) SELECT term, doc FROM items_fts_vocab;
        CREATE TRIGGER items_df_ai AFTER INSERT ON items BEGIN
            INSERT INTO term_df(term, df)
            SELECT value, 1 FROM json_each(pocketpack_fts_terms(
                new.text || COALESCE(char(10) || new.context, ''), 'c' || new.collection_id)) WHERE true
            ON CONFLICT(term) DO UPDATE SET df = df + 1;
        END;
        CREATE TRIGGER items_df_ad AFTER DELETE ON items BEGIN
            UPDATE term_df SET df = df - 1 WHERE term IN (SELECT value FROM json_each(pocketpack_fts_terms(
                old.text || COALESCE(char(10) || old.context, ''), 'c' || old.collection_id)));
        END;
        CREATE TRIGGER items_df_au AFTER UPDATE OF text, context ON items
        WHEN old.text IS NOT new.text OR old.context IS NOT new.context BEGIN
            UPDATE term_df SET df = df - 1 WHERE term IN (SELECT value FROM json_each(pocketpack_fts_terms(
                old.text || COALESCE(char(10) || old.context, ''), 'c' || old.collection_id)));
            INSERT INTO term_df(term, df)
            SELECT value, 1 FROM json_each(pocketpack_fts_terms(
                new.text || COALESCE(char(10) || new.context, ''), 'c' || new.collection_id)) WHERE true
            ON CONFLICT(term) DO UPDATE SET df = df + 1;
        END;
        """,
    ),
]

LATEST = MIGRATIONS[-1][0]


class SchemaTooNew(PocketPackError, RuntimeError):
    """The store was written by a newer pocketpack; refusing beats corrupting it."""


def apply(conn: sqlite3.Connection) -> int:
    """Bring the schema up to date; returns the schema version now in force."""
    conn.execute("CREATE TABLE IF NOT EXISTS _migrations (number INTEGER PRIMARY KEY, applied REAL NOT NULL)")
    done = {row[0] for row in conn.execute("SELECT number FROM _migrations")}
    if done and max(done) > LATEST:
        raise SchemaTooNew(
            f"this store was written by a newer pocketpack (schema {max(done)}, this one knows {LATEST})"
        )
    for number, sql in MIGRATIONS:
        if number in done:
            continue
        # executescript would COMMIT on its own; run statement by statement in one transaction
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("SELECT 1 FROM _migrations WHERE number = ?", (number,)).fetchone():
                conn.execute("COMMIT")  # another process opening the same new store applied it first
                continue
            for statement in _statements(sql):
                conn.execute(statement)
            conn.execute("INSERT INTO _migrations(number, applied) VALUES (?, ?)", (number, time.time()))
            conn.execute("COMMIT")
        except Exception:
            conn.execute("ROLLBACK")
            raise
    return LATEST


def _statements(sql: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies (BEGIN ... END;) whole."""
    out, buf = [], []
    for line in sql.strip().splitlines():
        buf.append(line)
        candidate = "\n".join(buf).strip()
        if candidate.endswith(";") and sqlite3.complete_statement(candidate):
            out.append(candidate)
            buf = []
    if "\n".join(buf).strip():
        out.append("\n".join(buf).strip())
    return out
