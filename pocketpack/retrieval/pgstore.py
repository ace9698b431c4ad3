"""The store on PostgreSQL + pgvector: for several TGWUI instances or machines sharing one store.

Same collections, items, keys, groups and fingerprints as the SQLite store (``store.py``), and
the same search interface (``dense``, ``lexical``), so ``search.search`` fuses them the same
way. Everything lives in schema ``pocketpack`` of the URL's database:

- ``collections``, ``items`` (text, metadata, the embedding in a ``vector(dim)`` column with
  an HNSW cosine index), ``fingerprints`` (an imported record's identity, as in SQLite), made
  by the numbered migrations below (recorded in ``migrations``; never edit a shipped one).
- lexical search is PostgreSQL's full-text search: ``items.tsv`` (a generated ``tsvector`` of
  the text and its context, English stemming, GIN index) matched by ``websearch_to_tsquery``
  of the words ``terms.query_terms`` keeps, joined by ``or``: user text is never query
  syntax. Ranked by ``ts_rank`` (fusion uses the ranks).
- word statistics (``search.TermStats``, which the memory defaults' junk rule and query
  coverage read): each item's terms as SQLite's FTS5 indexes them, counted per collection by
  triggers (migration 3), read for the rows one SQLite store would hold (``_counted``).
- dense search: the HNSW index over the collection's rows (``hnsw.ef_search`` raised to the
  number asked); where a filter leaves fewer than asked (a small collection in a big table,
  or one group) an exact scan of the collection's rows answers instead.

A write returns once PostgreSQL committed it (durable with the server's default
``synchronous_commit``). Writers to one collection take a transaction-scoped advisory lock,
so an upsert by key from two processes at once is one item, as in SQLite. The embedding
dimension is fixed by the first collection made (the column's type); a model with another
dimension is refused by name. The URL's password is never printed or logged.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterable

import numpy as np

from pocketpack.retrieval.backend import mask_url, scrub
from pocketpack.retrieval.fts import indexed_terms
from pocketpack.retrieval.store import Item, NewItem, StoreError, content_hash
from pocketpack.retrieval.terms import query_terms, searchable_text

log = logging.getLogger("pocketpack.retrieval")

SCHEMA = "pocketpack"
LOCK_SPACE = 7207                # advisory lock class: (LOCK_SPACE, collection id)
EXACT_BELOW = 20_000             # collections smaller than this are searched exactly
CONNECT_TIMEOUT = 10

MIGRATIONS: list[tuple[int, str]] = [
    (1, f"""
        CREATE TABLE {SCHEMA}.collections (
            id BIGSERIAL PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            model TEXT NOT NULL,
            dim INTEGER NOT NULL,
            created DOUBLE PRECISION NOT NULL,
            meta TEXT NOT NULL DEFAULT '{{}}'
        );
        CREATE TABLE {SCHEMA}.items (
            id BIGSERIAL PRIMARY KEY,
            collection_id BIGINT NOT NULL REFERENCES {SCHEMA}.collections(id) ON DELETE CASCADE,
            key TEXT,
            grp TEXT,
            text TEXT NOT NULL,
            hash TEXT NOT NULL,
            time DOUBLE PRECISION NOT NULL,
            importance DOUBLE PRECISION NOT NULL DEFAULT 0,
            pinned BOOLEAN NOT NULL DEFAULT FALSE,
            meta TEXT NOT NULL DEFAULT '{{}}',
            context TEXT,
            embedding vector,
            tsv tsvector GENERATED ALWAYS AS
                (to_tsvector('english', text || COALESCE(E'\\n' || context, ''))) STORED
        );
        CREATE UNIQUE INDEX items_key ON {SCHEMA}.items(collection_id, key) WHERE key IS NOT NULL;
        CREATE INDEX items_grp ON {SCHEMA}.items(collection_id, grp);
        CREATE INDEX items_hash ON {SCHEMA}.items(hash);
        CREATE INDEX items_tsv ON {SCHEMA}.items USING gin(tsv);
        CREATE TABLE {SCHEMA}.fingerprints (
            collection_id BIGINT NOT NULL REFERENCES {SCHEMA}.collections(id) ON DELETE CASCADE,
            fingerprint TEXT NOT NULL,
            item_id BIGINT NOT NULL REFERENCES {SCHEMA}.items(id) ON DELETE CASCADE,
            PRIMARY KEY (collection_id, fingerprint)
        );
        CREATE INDEX fingerprints_item ON {SCHEMA}.fingerprints(item_id);
        CREATE TABLE {SCHEMA}.settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
    """),
    # a chat turn reads its character's pinned memories: without this a sequential scan of every
    # collection's rows (68 ms a turn at 100k memories; SQLite's migrations have the same index)
    (2, f"CREATE INDEX items_pinned ON {SCHEMA}.items(collection_id, time, id) WHERE pinned;"),
    # word statistics (search.TermStats: the memory defaults' junk rule, query coverage and fact
    # links weigh a word by its rarity): each item's terms as SQLite's FTS5 indexes them (porter
    # stems, written by Pocket Pack with the item: ``fts.indexed_terms``), and per collection
    # each term's document frequency, its rows and a writes counter, kept by the triggers below
    # in the writing transaction (a term with no row left keeps a df of 0). Writers to one
    # collection hold its advisory lock, and every row these triggers touch is that
    # collection's, so two writers never wait on each other's terms; sorted upserts besides.
    # Existing items' terms are filled in when the migration runs (``_backfill_terms``).
    (3, f"""
        CREATE TABLE {SCHEMA}.item_terms (
            item_id BIGINT PRIMARY KEY,
            collection_id BIGINT NOT NULL,
            terms TEXT[] NOT NULL
        );
        CREATE TABLE {SCHEMA}.term_df (
            collection_id BIGINT NOT NULL REFERENCES {SCHEMA}.collections(id) ON DELETE CASCADE,
            term TEXT NOT NULL,
            df BIGINT NOT NULL,
            PRIMARY KEY (collection_id, term)
        );
        CREATE TABLE {SCHEMA}.term_rows (
            collection_id BIGINT PRIMARY KEY REFERENCES {SCHEMA}.collections(id) ON DELETE CASCADE,
            rows BIGINT NOT NULL,
            writes BIGINT NOT NULL
        );
        CREATE FUNCTION {SCHEMA}.terms_added() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO {SCHEMA}.term_df(collection_id, term, df)
                SELECT a.collection_id, t.term, COUNT(*) FROM added a, unnest(a.terms) AS t(term)
                GROUP BY 1, 2 ORDER BY 1, 2
                ON CONFLICT (collection_id, term) DO UPDATE SET df = {SCHEMA}.term_df.df + EXCLUDED.df;
            INSERT INTO {SCHEMA}.term_rows(collection_id, rows, writes)
                SELECT collection_id, COUNT(*), COUNT(*) FROM added GROUP BY 1 ORDER BY 1
                ON CONFLICT (collection_id) DO UPDATE SET rows = {SCHEMA}.term_rows.rows + EXCLUDED.rows,
                                                         writes = {SCHEMA}.term_rows.writes + EXCLUDED.writes;
            RETURN NULL;
        END $$;
        CREATE FUNCTION {SCHEMA}.terms_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO {SCHEMA}.term_df(collection_id, term, df)
                SELECT collection_id, term, SUM(n) FROM (
                    SELECT b.collection_id, t.term, -1 AS n FROM old_t b, unnest(b.terms) AS t(term)
                    UNION ALL
                    SELECT a.collection_id, t.term, 1 FROM new_t a, unnest(a.terms) AS t(term)) x
                GROUP BY 1, 2 HAVING SUM(n) <> 0 ORDER BY 1, 2
                ON CONFLICT (collection_id, term) DO UPDATE SET df = {SCHEMA}.term_df.df + EXCLUDED.df;
            UPDATE {SCHEMA}.term_rows r SET writes = r.writes + c.n
                FROM (SELECT collection_id, COUNT(*) AS n FROM new_t GROUP BY 1) c
                WHERE r.collection_id = c.collection_id;
            RETURN NULL;
        END $$;
        CREATE FUNCTION {SCHEMA}.terms_removed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            WITH g AS (
                DELETE FROM {SCHEMA}.item_terms it USING gone WHERE it.item_id = gone.id
                RETURNING it.collection_id, it.terms
            ), r AS (
                UPDATE {SCHEMA}.term_rows r SET rows = r.rows - c.n, writes = r.writes + c.n
                FROM (SELECT collection_id, COUNT(*) AS n FROM g GROUP BY 1) c
                WHERE r.collection_id = c.collection_id
            )
            UPDATE {SCHEMA}.term_df f SET df = f.df - d.n
                FROM (SELECT g.collection_id, t.term, COUNT(*) AS n FROM g, unnest(g.terms) AS t(term)
                      GROUP BY 1, 2) d
                WHERE f.collection_id = d.collection_id AND f.term = d.term;
            RETURN NULL;
        END $$;
        CREATE TRIGGER item_terms_ai AFTER INSERT ON {SCHEMA}.item_terms REFERENCING NEW TABLE AS added
            FOR EACH STATEMENT EXECUTE FUNCTION {SCHEMA}.terms_added();
        CREATE TRIGGER item_terms_au AFTER UPDATE ON {SCHEMA}.item_terms
            REFERENCING OLD TABLE AS old_t NEW TABLE AS new_t
            FOR EACH STATEMENT EXECUTE FUNCTION {SCHEMA}.terms_changed();
        CREATE TRIGGER items_terms_ad AFTER DELETE ON {SCHEMA}.items REFERENCING OLD TABLE AS gone
            FOR EACH STATEMENT EXECUTE FUNCTION {SCHEMA}.terms_removed();
    """),
]


TERMS_BATCH = 5000               # items a statement when their terms are written in bulk


def _write_terms(conn, ids: list[int], collection_ids: list[int], texts: list[str]) -> None:
    """Write the terms FTS5 would index for each item's searchable ``texts`` (its text and
    context), in one statement; the triggers of migration 3 count them. A row whose terms did
    not change is left alone (no write counted)."""
    for start in range(0, len(ids), TERMS_BATCH):
        part = slice(start, start + TERMS_BATCH)
        terms = [" ".join(t) for t in indexed_terms(texts[part])]  # FTS5's terms never hold a space
        conn.execute(
            f"INSERT INTO {SCHEMA}.item_terms(item_id, collection_id, terms)"
            " SELECT i, c, string_to_array(t, ' ') FROM unnest(%s::bigint[], %s::bigint[], %s::text[]) AS x(i, c, t)"
            f" ON CONFLICT (item_id) DO UPDATE SET terms = EXCLUDED.terms"
            f" WHERE {SCHEMA}.item_terms.terms IS DISTINCT FROM EXCLUDED.terms",
            (ids[part], collection_ids[part], terms))


def _backfill_terms(conn) -> None:
    """Migration 3 on a store that already holds items: their terms, read and written in
    batches by id (about a minute per 100k items on 2 cores)."""
    last = 0
    while True:
        rows = conn.execute(f"SELECT id, collection_id, text, context FROM {SCHEMA}.items WHERE id > %s"
                            " ORDER BY id LIMIT %s", (last, TERMS_BATCH)).fetchall()
        if not rows:
            return
        _write_terms(conn, [r[0] for r in rows], [r[1] for r in rows], [searchable_text(r[2], r[3]) for r in rows])
        last = rows[-1][0]


_AFTER = {3: _backfill_terms}  # a migration's step in Python, run in its transaction after its SQL


class StoreUnavailable(StoreError):
    """The PostgreSQL store cannot be used (bad URL, server down, no pgvector, no access); one
    line naming what is missing, the password masked."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return "; ".join(lines[:2])


def _vec_text(v) -> str:
    return "[" + ",".join(map(repr, np.asarray(v, dtype=np.float32).tolist())) + "]"


def _parse_vec(raw: bytes) -> np.ndarray:
    """A vector as pgvector's ``vector_send`` gives it: int16 dim, int16 unused, then big-endian
    float32s. Five times faster than parsing ``embedding::text`` (a recall reads ~200 vectors)."""
    return np.frombuffer(bytes(raw), dtype=">f4", offset=4).astype(np.float32)


def _without_nul(it: NewItem) -> NewItem:
    """PostgreSQL's text cannot hold NUL (SQLite's can): it becomes U+FFFD, the rest is kept."""
    if "\x00" not in it.text and "\x00" not in (it.context or ""):
        return it
    return replace(it, text=it.text.replace("\x00", "\ufffd"),
                   context=it.context.replace("\x00", "\ufffd") if it.context else it.context)


def _row_to_item(row, collection: str) -> Item:
    return Item(id=int(row[0]), text=row[1], key=row[2], grp=row[3], time=float(row[4]),
                importance=float(row[5]), pinned=bool(row[6]), meta=json.loads(row[7] or "{}"),
                collection=collection, context=row[8])


_COLUMNS = "id, text, key, grp, time, importance, pinned, meta, context"


class PgStore:
    """Collections in a PostgreSQL database (``postgresql://user:password@host:port/db``)."""

    lexical_engine = "postgres-fts"

    def __init__(self, url: str, *, embedder=None, model_path: str | None = None,
                 directory: str | Path | None = None):
        try:
            import psycopg
        except ImportError:
            raise StoreUnavailable("a postgresql:// store needs psycopg: pip install 'pocketpack[postgres]'") from None
        self._psycopg = psycopg
        self.url = url.strip()
        self.masked = mask_url(self.url)
        self.directory = Path(directory).expanduser() if directory is not None else Path(".")
        self._embedder = embedder
        self._model_path = model_path
        self._lock = threading.RLock()
        self._collections: dict[str, PgCollection] = {}
        self._dim: int | None = None
        self._ef: tuple[int, int] | None = None  # (connection, hnsw.ef_search) set on it
        self.conn = self._connect()
        try:
            self._migrate()
        except BaseException:
            self.conn.close()
            raise

    # -- connection and schema ---------------------------------------------------------------
    def _where(self) -> str:
        try:
            info = self._psycopg.conninfo.conninfo_to_dict(self.url)
        except Exception:  # noqa: BLE001 - an unparsable URL is reported by connect itself
            return self.masked
        host = info.get("host") or "localhost"
        port = info.get("port") or "5432"
        return f"{host}:{port}" if not str(host).startswith("/") else str(host)

    def _fail(self, what: str, exc: BaseException | None = None) -> StoreUnavailable:
        detail = f": {scrub(_first_line(exc), self.url)}" if exc is not None else ""
        return StoreUnavailable(scrub(f"{what} ({self.masked}){detail}", self.url))

    def _connect(self):
        psycopg = self._psycopg
        try:
            psycopg.conninfo.conninfo_to_dict(self.url)
        except psycopg.ProgrammingError as exc:
            raise self._fail("the store URL is not a valid PostgreSQL URL", exc) from None
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                                   application_name="pocketpack", options=f"-c search_path={SCHEMA},public")
        except psycopg.OperationalError as exc:
            message = _first_line(exc)
            lowered = message.lower()
            if "does not exist" in lowered and "database" in lowered:
                what = f"the PostgreSQL server at {self._where()} has no such database"
            elif "password authentication failed" in lowered or "authentication" in lowered:
                what = f"the PostgreSQL server at {self._where()} refused the user name or password"
            else:
                what = f"cannot reach the PostgreSQL server at {self._where()} (is it running?)"
            raise self._fail(what, exc) from None
        except Exception as exc:  # noqa: BLE001 - any other driver failure is one line too
            raise self._fail("cannot connect to the PostgreSQL store", exc) from None
        return conn

    def _migrate(self) -> None:
        psycopg = self._psycopg
        conn = self.conn
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (LOCK_SPACE,))  # one migrator at a time
                has_vector = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone()
                if not has_vector:
                    available = conn.execute(
                        "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone()
                    if not available:
                        raise self._fail(f"the PostgreSQL server at {self._where()} lacks the pgvector extension"
                                         " (install pgvector there, or use a store folder)")
                    try:
                        with conn.transaction():
                            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                    except psycopg.Error as exc:
                        raise self._fail(f"pgvector is installed on {self._where()} but not enabled in this database"
                                         " and this user may not enable it (run CREATE EXTENSION vector as an"
                                         " administrator)", exc) from None
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
                conn.execute(f"CREATE TABLE IF NOT EXISTS {SCHEMA}.migrations"
                             " (version INTEGER PRIMARY KEY, applied DOUBLE PRECISION NOT NULL)")
                done = {r[0] for r in conn.execute(f"SELECT version FROM {SCHEMA}.migrations")}
                newest = max(v for v, _ in MIGRATIONS)
                if done and max(done) > newest:
                    raise StoreUnavailable(f"the PostgreSQL store ({self.masked}) was written by a newer Pocket Pack"
                                           f" (schema {max(done)}, this one knows {newest}); upgrade pocketpack")
                for version, sql in MIGRATIONS:
                    if version not in done:
                        conn.execute(sql)
                        if version in _AFTER:
                            _AFTER[version](conn)
                        conn.execute(f"INSERT INTO {SCHEMA}.migrations(version, applied) VALUES (%s, %s)",
                                     (version, time.time()))
                row = conn.execute(f"SELECT value FROM {SCHEMA}.settings WHERE name = 'dim'").fetchone()
                self._dim = int(row[0]) if row else None
        except StoreUnavailable:
            raise
        except psycopg.Error as exc:
            raise self._fail("cannot prepare the PostgreSQL store", exc) from None

    def _set_dim(self, dim: int) -> None:
        """Fix the embedding column's dimension (and make its HNSW index) on first use."""
        if self._dim == dim:
            return
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (LOCK_SPACE,))
            row = self.conn.execute(f"SELECT value FROM {SCHEMA}.settings WHERE name = 'dim'").fetchone()
            if row is None:
                self.conn.execute(f"ALTER TABLE {SCHEMA}.items ALTER COLUMN embedding TYPE vector({int(dim)})")
                self.conn.execute(f"CREATE INDEX IF NOT EXISTS items_embedding ON {SCHEMA}.items"
                                  " USING hnsw (embedding vector_cosine_ops)")
                self.conn.execute(f"INSERT INTO {SCHEMA}.settings(name, value) VALUES ('dim', %s)", (str(int(dim)),))
                self._dim = int(dim)
            else:
                self._dim = int(row[0])
        if self._dim != dim:
            raise StoreError(f"the PostgreSQL store ({self.masked}) holds {self._dim}-dimensional embeddings;"
                             f" the model {self.embedder.name} makes {dim}: use the store's model or another store")

    @property
    def embedder(self):
        if self._embedder is None:
            from pocketpack.retrieval.embed import get_embedder

            self._embedder = get_embedder(self._model_path)
        return self._embedder

    def _q(self, sql: str, args=()) -> list:
        with self._lock:
            try:
                return self.conn.execute(sql, args).fetchall()
            except self._psycopg.OperationalError as exc:
                raise self._fail("lost the connection to the PostgreSQL store", exc) from None

    def _q1(self, sql: str, args=()):
        rows = self._q(sql, args)
        return rows[0] if rows else None

    read, read_one = _q, _q1  # the SQLite store's public names for a read

    def _ef_search(self, ef: int) -> None:
        """The HNSW search's candidate list, set for the session once (not per search: ``SET
        LOCAL`` needs a transaction, three more round trips a search). Set inside a transaction
        it may roll back with it, so it is remembered only when set outside one."""
        with self._lock:
            if self._ef != (id(self.conn), ef):
                try:
                    self.conn.execute(f"SET hnsw.ef_search = {int(ef)}")
                except self._psycopg.OperationalError as exc:
                    raise self._fail("lost the connection to the PostgreSQL store", exc) from None
                idle = self.conn.info.transaction_status == self._psycopg.pq.TransactionStatus.IDLE
                self._ef = (id(self.conn), ef) if idle else None

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    def _tx(self, collection_id: int | None = None):
        return _Transaction(self, collection_id)

    @contextlib.contextmanager
    def bulk_load(self):
        """``with store.bulk_load():`` many writes at once (a fill, a ``store copy``): the HNSW
        index is dropped and built once at the end, because inserting into it costs milliseconds
        a row. Searches meanwhile stay correct (an exact scan)."""
        with self._lock:
            self.conn.execute(f"DROP INDEX IF EXISTS {SCHEMA}.items_embedding")
        try:
            yield self
        finally:
            if self._dim is not None:
                with self._lock:
                    self.conn.execute(f"CREATE INDEX IF NOT EXISTS items_embedding ON {SCHEMA}.items"
                                      " USING hnsw (embedding vector_cosine_ops)")

    # -- collections ---------------------------------------------------------------------------
    def collection(self, name: str, *, create: bool = True) -> "PgCollection":
        if not name or len(name) > 512:
            raise StoreError("a collection name must be 1 to 512 characters")
        with self._lock:
            if name in self._collections:
                return self._collections[name]
            row = self._q1(f"SELECT id, model, dim FROM {SCHEMA}.collections WHERE name = %s", (name,))
            if row is None:
                if not create:
                    raise StoreError(f"no collection named {name!r} in {self.masked}")
                embedder = self.embedder
                self._set_dim(int(embedder.dim))
                with self._tx():
                    self.conn.execute(f"INSERT INTO {SCHEMA}.collections(name, model, dim, created)"
                                      " VALUES (%s, %s, %s, %s) ON CONFLICT (name) DO NOTHING",
                                      (name, embedder.name, int(embedder.dim), time.time()))
                row = self._q1(f"SELECT id, model, dim FROM {SCHEMA}.collections WHERE name = %s", (name,))
            coll = PgCollection(self, int(row[0]), name, row[1], int(row[2]))
            self._collections[name] = coll
            return coll

    def collection_names(self, prefix: str = "") -> list[str]:
        rows = self._q(f"SELECT name FROM {SCHEMA}.collections WHERE left(name, %s) = %s ORDER BY name",
                       (len(prefix), prefix))
        return [r[0] for r in rows]

    def has_collection(self, name: str) -> bool:
        return self._q1(f"SELECT 1 FROM {SCHEMA}.collections WHERE name = %s", (name,)) is not None

    def locate(self, item_id: int) -> "PgCollection | None":
        row = self._q1(f"SELECT c.name FROM {SCHEMA}.items i JOIN {SCHEMA}.collections c ON c.id = i.collection_id"
                       " WHERE i.id = %s", (int(item_id),))
        return self.collection(row[0]) if row else None

    def drop_collection(self, name: str) -> int:
        with self._lock:
            row = self._q1(f"SELECT id FROM {SCHEMA}.collections WHERE name = %s", (name,))
            if row is None:
                return 0
            with self._tx(row[0]) as conn:
                # its items first, by one statement: their terms go with them (a cascade from
                # the collection's row would also delete them, but one statement per item)
                n = conn.execute(f"DELETE FROM {SCHEMA}.items WHERE collection_id = %s", (row[0],)).rowcount
                conn.execute(f"DELETE FROM {SCHEMA}.collections WHERE id = %s", (row[0],))
            self._collections.pop(name, None)
            return int(n)

    def prune_vectors(self, *, full: bool = False) -> int:
        """Embeddings live on their items here: nothing is left over to prune."""
        return 0

    _prune_vectors = prune_vectors

    # -- embeddings ------------------------------------------------------------------------
    def vectors_for(self, model: str, hashes: list[str]) -> dict[str, np.ndarray]:
        """Stored embeddings by text hash (any collection of ``model``): a text is embedded once."""
        unique = list(dict.fromkeys(hashes))
        out: dict[str, np.ndarray] = {}
        for start in range(0, len(unique), 1000):
            chunk = unique[start:start + 1000]
            for h, vec in self._q(
                    f"SELECT DISTINCT ON (i.hash) i.hash, vector_send(i.embedding) FROM {SCHEMA}.items i"
                    f" JOIN {SCHEMA}.collections c ON c.id = i.collection_id"
                    " WHERE i.hash = ANY(%s) AND c.model = %s AND i.embedding IS NOT NULL", (chunk, model)):
                out[h] = _parse_vec(vec)
        return out

    def ensure_vectors(self, texts_by_hash: dict[str, str]) -> tuple[dict[str, np.ndarray], list]:
        embedder = self.embedder
        have = self.vectors_for(embedder.name, list(texts_by_hash))
        missing = [h for h in texts_by_hash if h not in have]
        if missing:
            vecs = embedder.embed([texts_by_hash[h] for h in missing])
            have.update(zip(missing, (np.asarray(v, dtype=np.float32) for v in vecs)))
        return have, []

    def flush(self) -> None:
        """Nothing to save: PostgreSQL holds every committed write and its indexes."""

    def close(self) -> None:
        with self._lock:
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001 - closing a dead connection is not an error
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def stats(self) -> dict:
        items = self._q1(f"SELECT COUNT(*) FROM {SCHEMA}.items")[0]
        size = self._q1(
            "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN ('r', 'm')",
            (SCHEMA,))[0]
        return {"items": int(items), "postgres_bytes": int(size), "sqlite_bytes": 0, "faiss_bytes": 0,
                "lexical_bytes": 0, "lexical_engine": self.lexical_engine, "path": self.masked}


    # -- word statistics (search.TermStats) ---------------------------------------------------
    # What is counted: SQLite keeps memory and documents in separate folders (and, under
    # --multi-user, each user's memory in its own), and its word statistics count every row of
    # one folder. Here one database holds them all, so the rows counted for ``collection`` are
    # those of the collections named ``prefix`` + a name of the same kind: the same leading word
    # (``memory/Aria``, ``memory/Bob`` and ``memory-global`` are "memory"; ``rag/…`` "rag").
    # ``prefix`` is a user's (``ScopedStore``: ``user/<name>/``): another user's rows never
    # weigh a user's words; rag's collections, shared by everyone, count as in SQLite's one
    # documents folder. Without ``collection`` every collection under ``prefix`` counts.
    @staticmethod
    def _counted(collection: str | None, prefix: str) -> tuple[str, list]:
        where, args = "left(c.name, %s) = %s", [len(prefix), prefix]
        if collection is not None:
            kind = re.match(r"[A-Za-z]*", collection).group()
            where += " AND substr(c.name, %s) ~ %s"
            args += [len(prefix) + 1, f"^{kind}([^A-Za-z]|$)"]
        return where, args

    def word_statistics_version(self, collection: str | None = None, *, prefix: str = "") -> tuple:
        """``((prefix, kind, the collections counted), writes)``: writes is the sum of their
        ``term_rows.writes``, which the triggers advance by one for each row added, removed or
        re-texted, in the writing transaction (so a version is never ahead of what it counts)."""
        where, args = self._counted(collection, prefix)
        rows = self._q(f"SELECT c.id, COALESCE(r.writes, 0) FROM {SCHEMA}.collections c"
                       f" LEFT JOIN {SCHEMA}.term_rows r ON r.collection_id = c.id WHERE {where} ORDER BY c.id", args)
        return (prefix, tuple(args[2:]), tuple(int(r[0]) for r in rows)), sum(int(r[1]) for r in rows)

    def row_count(self, collection: str | None = None, *, prefix: str = "") -> int:
        where, args = self._counted(collection, prefix)
        row = self._q1(f"SELECT COALESCE(SUM(r.rows), 0) FROM {SCHEMA}.term_rows r"
                       f" JOIN {SCHEMA}.collections c ON c.id = r.collection_id WHERE {where}", args)
        return int(row[0])

    def document_frequencies(self, stems: Iterable[str], collection: str | None = None, *,
                             prefix: str = "") -> dict[str, int]:
        """stem -> the rows counted that hold it (FTS5's porter stems, as ``fts.indexed_terms``
        wrote them: PostgreSQL's own 'english' lexemes differ, e.g. "generously" is "gener" in
        FTS5 and "generous" there); stems in none are left out."""
        stems = sorted(set(stems))
        if not stems:
            return {}
        where, args = self._counted(collection, prefix)
        return {t: int(n) for t, n in self._q(
            f"SELECT f.term, SUM(f.df) FROM {SCHEMA}.term_df f JOIN {SCHEMA}.collections c ON c.id = f.collection_id"
            f" WHERE {where} AND f.term = ANY(%s) GROUP BY f.term HAVING SUM(f.df) > 0", [*args, stems])}


class _Transaction:
    """A transaction under the store's lock; with a collection, its writers' advisory lock."""

    def __init__(self, store: PgStore, collection_id: int | None):
        self.store, self.collection_id = store, collection_id

    def __enter__(self):
        store = self.store
        store._lock.acquire()
        try:
            self._tx = store.conn.transaction()
            self._tx.__enter__()
            if self.collection_id is not None:
                store.conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_SPACE, int(self.collection_id)))
        except store._psycopg.OperationalError as exc:
            store._lock.release()
            raise store._fail("lost the connection to the PostgreSQL store", exc) from None
        except BaseException:
            store._lock.release()
            raise
        return store.conn

    def __exit__(self, exc_type, exc, tb):
        try:
            self._tx.__exit__(exc_type, exc, tb)
        except self.store._psycopg.OperationalError as err:
            raise self.store._fail("the PostgreSQL store did not confirm a write", err) from None
        finally:
            self.store._lock.release()
        if isinstance(exc, self.store._psycopg.OperationalError):
            raise self.store._fail("lost the connection to the PostgreSQL store", exc) from None
        return False


class PgCollection:
    """A named set of items in a ``PgStore``; the same methods as ``store.Collection``."""

    def __init__(self, store: PgStore, cid: int, name: str, model: str, dim: int):
        self.store, self.id, self.name, self.model, self.dim = store, cid, name, model, dim
        self._large = False  # held EXACT_BELOW rows when last counted (dense search by HNSW)

    def _check_model(self) -> None:
        """Vectors of another model cannot be compared: re-embed this collection's texts."""
        store = self.store
        embedder = store.embedder
        if embedder.name == self.model:
            return
        store._set_dim(int(embedder.dim))
        rows = store._q(f"SELECT DISTINCT hash, text FROM {SCHEMA}.items WHERE collection_id = %s", (self.id,))
        for start in range(0, len(rows), 256):
            part = rows[start:start + 256]
            vecs = embedder.embed([t for _, t in part])
            with store._tx(self.id) as conn:
                with conn.cursor() as cur:
                    cur.executemany(f"UPDATE {SCHEMA}.items SET embedding = %s::vector WHERE collection_id = %s"
                                    " AND hash = %s", [(_vec_text(v), self.id, h) for (h, _), v in zip(part, vecs)])
        with store._tx(self.id) as conn:
            conn.execute(f"UPDATE {SCHEMA}.collections SET model = %s, dim = %s WHERE id = %s",
                         (embedder.name, int(embedder.dim), self.id))
        self.model, self.dim = embedder.name, int(embedder.dim)

    # -- writes -------------------------------------------------------------------------------
    def upsert(self, items: Iterable[NewItem]) -> list[int]:
        """Write items in one transaction; their ids, in order, once committed (see
        ``store.Collection.upsert``: a key replaces, a held fingerprint is left out)."""
        items = list(items)
        if not items:
            return []
        for it in items:
            if not isinstance(it.text, str) or not it.text.strip():
                raise StoreError("cannot store an empty text")
        items = [_without_nul(it) for it in items]
        store = self.store
        self._check_model()
        now = time.time()
        hashes = [content_hash(it.text) for it in items]
        vectors, _ = store.ensure_vectors(dict(zip(hashes, (it.text for it in items))))
        ids: list[int] = []
        with store._tx(self.id) as conn:
            # runs in which no key or fingerprint repeats, each looked up and written in bulk
            run: list[int] = []
            seen: set = set()
            for n, it in enumerate(items):
                marks = {("k", it.key) if it.key is not None else None,
                         ("f", it.fingerprint) if it.fingerprint is not None else None} - {None}
                if marks & seen:
                    ids += self._write_run(conn, [items[i] for i in run], [hashes[i] for i in run], vectors, now)
                    run, seen = [], set()
                run.append(n)
                seen |= marks
            ids += self._write_run(conn, [items[i] for i in run], [hashes[i] for i in run], vectors, now)
        return ids

    def _write_run(self, conn, items: list[NewItem], hashes: list[str], vectors, now: float) -> list[int]:
        if not items:
            return []
        fps = [it.fingerprint for it in items if it.fingerprint is not None]
        held = dict(conn.execute(f"SELECT fingerprint, item_id FROM {SCHEMA}.fingerprints WHERE collection_id = %s"
                                 " AND fingerprint = ANY(%s)", (self.id, fps)).fetchall()) if fps else {}
        keys = [it.key for it in items if it.key is not None]
        old = {k: (i, h, c) for k, i, h, c in conn.execute(
            f"SELECT key, id, hash, context FROM {SCHEMA}.items WHERE collection_id = %s AND key = ANY(%s)",
            (self.id, keys)).fetchall()} if keys else {}
        out: list[int | None] = [None] * len(items)
        inserts, updates, new_fps, retexted = [], [], [], []
        for n, (it, h) in enumerate(zip(items, hashes)):
            if it.fingerprint is not None and it.fingerprint in held:
                out[n] = int(held[it.fingerprint])
                continue
            meta = json.dumps(it.meta, ensure_ascii=False) if it.meta is not None else None
            prev = old.get(it.key) if it.key is not None else None
            if prev is None:
                inserts.append((n, (self.id, it.key, it.grp, it.text, h, float(it.time) if it.time is not None else now,
                                    float(it.importance or 0.0), bool(it.pinned), meta or "{}", it.context or None,
                                    _vec_text(vectors[h]))))
            else:
                out[n] = int(prev[0])
                changed = prev[1] != h
                if changed or prev[2] != (it.context or None):
                    retexted.append(n)
                updates.append((it.grp, it.time, it.importance, it.pinned, meta, changed, it.text, h,
                                _vec_text(vectors[h]) if changed else None, it.context or None, int(prev[0])))
        with conn.cursor() as cur:
            if inserts:
                cur.executemany(
                    f"INSERT INTO {SCHEMA}.items(collection_id, key, grp, text, hash, time, importance, pinned, meta,"
                    " context, embedding) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::vector) RETURNING id",
                    [row for _, row in inserts], returning=True)
                n_result = 0
                while True:
                    out[inserts[n_result][0]] = int(cur.fetchone()[0])
                    n_result += 1
                    if not cur.nextset():
                        break
            if updates:
                cur.executemany(
                    f"UPDATE {SCHEMA}.items SET grp = %s, time = COALESCE(%s, time),"
                    " importance = COALESCE(%s, importance), pinned = COALESCE(%s, pinned), meta = COALESCE(%s, meta),"
                    " text = CASE WHEN %s THEN %s ELSE text END, hash = CASE WHEN %s THEN %s ELSE hash END,"
                    " embedding = COALESCE(%s::vector, embedding), context = %s WHERE id = %s",
                    [(g, t, imp, p, m, ch, tx, ch, h, v, ctx, i) for g, t, imp, p, m, ch, tx, h, v, ctx, i in updates])
            searchable = [n for n, _ in inserts] + retexted
            _write_terms(conn, [out[n] for n in searchable], [self.id] * len(searchable),
                         [searchable_text(items[n].text, items[n].context or None) for n in searchable])
            for n, it in enumerate(items):
                if it.fingerprint is not None and it.fingerprint not in held:
                    new_fps.append((self.id, it.fingerprint, out[n]))
            if new_fps:
                cur.executemany(f"INSERT INTO {SCHEMA}.fingerprints(collection_id, fingerprint, item_id)"
                                " VALUES (%s, %s, %s) ON CONFLICT (collection_id, fingerprint)"
                                " DO UPDATE SET item_id = EXCLUDED.item_id", new_fps)
        return [int(i) for i in out]

    def add(self, text: str, **fields) -> int:
        return self.upsert([NewItem(text=text, **fields)])[0]

    def update(self, item_id: int, *, text: str | None = None, pinned: bool | None = None,
               importance: float | None = None, meta: dict | None = None, time_: float | None = None) -> bool:
        """Change one item in place; False when it does not exist in this collection."""
        current = self.get([item_id])
        if not current:
            return False
        vec = None
        if text is not None and text != current[0].text:
            if not text.strip():
                raise StoreError("cannot store an empty text")
            self._check_model()
            h = content_hash(text)
            vec = _vec_text(self.store.ensure_vectors({h: text})[0][h])
        else:
            text, h = None, None
        with self.store._tx(self.id) as conn:
            row = conn.execute(
                f"UPDATE {SCHEMA}.items SET text = COALESCE(%s, text), hash = COALESCE(%s, hash),"
                " embedding = COALESCE(%s::vector, embedding), pinned = COALESCE(%s, pinned),"
                " importance = COALESCE(%s, importance), meta = COALESCE(%s, meta), time = COALESCE(%s, time)"
                " WHERE id = %s AND collection_id = %s RETURNING text, context",
                (text, h, vec, pinned, None if importance is None else float(importance),
                 None if meta is None else json.dumps(meta, ensure_ascii=False),
                 None if time_ is None else float(time_), int(item_id), self.id)).fetchone()
            if row is None:
                return False  # deleted meanwhile
            if text is not None:
                _write_terms(conn, [int(item_id)], [self.id], [searchable_text(row[0], row[1])])
        return True

    def delete(self, ids: Iterable[int]) -> int:
        ids = [int(i) for i in ids]
        if not ids:
            return 0
        with self.store._tx(self.id) as conn:
            cur = conn.execute(f"DELETE FROM {SCHEMA}.items WHERE collection_id = %s AND id = ANY(%s)", (self.id, ids))
            self._large = False
            return int(cur.rowcount)

    def delete_keys(self, keys: Iterable[str]) -> int:
        keys = list(keys)
        if not keys:
            return 0
        with self.store._tx(self.id) as conn:
            cur = conn.execute(f"DELETE FROM {SCHEMA}.items WHERE collection_id = %s AND key = ANY(%s)", (self.id, keys))
            self._large = False
            return int(cur.rowcount)

    def delete_group(self, grp: str) -> int:
        with self.store._tx(self.id) as conn:
            cur = conn.execute(f"DELETE FROM {SCHEMA}.items WHERE collection_id = %s AND grp = %s", (self.id, grp))
            self._large = False
            return int(cur.rowcount)

    # -- reads ------------------------------------------------------------------------------
    def get(self, ids: Iterable[int]) -> list[Item]:
        ids = [int(i) for i in ids]
        if not ids:
            return []
        found = {int(r[0]): _row_to_item(r, self.name) for r in self.store._q(
            f"SELECT {_COLUMNS} FROM {SCHEMA}.items WHERE collection_id = %s AND id = ANY(%s)", (self.id, ids))}
        return [found[i] for i in ids if i in found]

    def by_key(self, key: str) -> Item | None:
        row = self.store._q1(f"SELECT {_COLUMNS} FROM {SCHEMA}.items WHERE collection_id = %s AND key = %s",
                             (self.id, key))
        return _row_to_item(row, self.name) if row else None

    def items(self, *, grp: str | None = None, pinned: bool | None = None, limit: int | None = None,
              offset: int = 0, newest_first: bool = False, where_meta: tuple[str, str] | None = None) -> list[Item]:
        sql = f"SELECT {_COLUMNS} FROM {SCHEMA}.items WHERE collection_id = %s"
        args: list = [self.id]
        if grp is not None:
            sql += " AND grp = %s"
            args.append(grp)
        if pinned is not None:
            sql += " AND pinned" if pinned else " AND NOT pinned"
        if where_meta is not None:
            sql += " AND (meta::jsonb ->> %s) = %s"
            args += [where_meta[0], str(where_meta[1])]
        sql += " ORDER BY time DESC, id DESC" if newest_first else " ORDER BY time, id"
        if limit is not None:
            sql += " LIMIT %s OFFSET %s"
            args += [int(limit), int(offset)]
        return [_row_to_item(r, self.name) for r in self.store._q(sql, args)]

    def keys(self, grp: str | None = None) -> dict[str, tuple[int, str]]:
        return {k: (i, h) for k, (i, h, _) in self.key_states(grp).items()}

    def key_states(self, grp: str | None = None) -> dict[str, tuple[int, str, str | None]]:
        sql = f"SELECT key, id, hash, context FROM {SCHEMA}.items WHERE collection_id = %s AND key IS NOT NULL"
        args: list = [self.id]
        if grp is not None:
            sql += " AND grp = %s"
            args.append(grp)
        return {k: (int(i), h, c) for k, i, h, c in self.store._q(sql, args)}

    def ids_with_texts(self, texts: Iterable[str]) -> set[int]:
        hashes = list({content_hash(t) for t in texts if t})
        if not hashes:
            return set()
        return {int(r[0]) for r in self.store._q(
            f"SELECT id FROM {SCHEMA}.items WHERE collection_id = %s AND hash = ANY(%s)", (self.id, hashes))}

    def ids_with_fingerprints(self, fingerprints: Iterable[str]) -> dict[str, int]:
        wanted = list(dict.fromkeys(f for f in fingerprints if f))
        if not wanted:
            return {}
        return {f: int(i) for f, i in self.store._q(
            f"SELECT fingerprint, item_id FROM {SCHEMA}.fingerprints WHERE collection_id = %s"
            " AND fingerprint = ANY(%s)", (self.id, wanted))}

    def fingerprints(self) -> dict[str, int]:
        """Every fingerprint of this collection -> its item (for ``store copy``)."""
        return {f: int(i) for f, i in self.store._q(
            f"SELECT fingerprint, item_id FROM {SCHEMA}.fingerprints WHERE collection_id = %s", (self.id,))}

    def add_fingerprints(self, fingerprints: dict[str, int]) -> None:
        if not fingerprints:
            return
        with self.store._tx(self.id) as conn:
            with conn.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO {SCHEMA}.fingerprints(collection_id, fingerprint, item_id)"
                    f" SELECT collection_id, %s, id FROM {SCHEMA}.items WHERE id = %s AND collection_id = %s"
                    " ON CONFLICT DO NOTHING", [(f, int(i), self.id) for f, i in fingerprints.items()])

    def count(self, grp: str | None = None) -> int:
        if grp is None:
            return int(self.store._q1(f"SELECT COUNT(*) FROM {SCHEMA}.items WHERE collection_id = %s", (self.id,))[0])
        return int(self.store._q1(f"SELECT COUNT(*) FROM {SCHEMA}.items WHERE collection_id = %s AND grp = %s",
                                  (self.id, grp))[0])

    def ids_in_group(self, grp: str) -> np.ndarray:
        rows = self.store._q(f"SELECT id FROM {SCHEMA}.items WHERE collection_id = %s AND grp = %s", (self.id, grp))
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def vectors(self, ids: list[int]) -> dict[int, np.ndarray]:
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        return {int(i): _parse_vec(v) for i, v in self.store._q(
            f"SELECT id, vector_send(embedding) FROM {SCHEMA}.items WHERE collection_id = %s AND id = ANY(%s)"
            " AND embedding IS NOT NULL", (self.id, ids))}

    # -- search --------------------------------------------------------------------------------
    def dense(self, query_vector: np.ndarray, k: int, grp: str | None = None) -> list[tuple[int, float]]:
        """Top ``k`` (id, cosine): by the HNSW index, or exactly where a filter would starve it."""
        k = int(k)
        if k <= 0:
            return []
        self._check_model()
        store = self.store
        q = _vec_text(query_vector)
        exact = (f"WITH c AS MATERIALIZED (SELECT id, embedding FROM {SCHEMA}.items WHERE collection_id = %s"
                 + (" AND grp = %s" if grp is not None else "") +
                 ") SELECT id, 1 - (embedding <=> %s::vector) FROM c ORDER BY embedding <=> %s::vector LIMIT %s")
        exact_args = [self.id] + ([grp] if grp is not None else []) + [q, q, k]
        with store._lock:
            if grp is None:
                # one round trip: the HNSW search, run only where the collection has EXACT_BELOW
                # rows (an uncorrelated subquery: PostgreSQL evaluates it once, before the scan);
                # once it had, not counted again (4 ms) until this process deletes from it: if
                # another one shrank it, the filtered search finds fewer than k and the exact one runs
                store._ef_search(min(1000, max(40, 2 * k)))
                sql = f"SELECT id, 1 - (embedding <=> %s::vector) FROM {SCHEMA}.items WHERE collection_id = %s"
                args = [q, self.id]
                if not self._large:
                    sql += (f" AND (SELECT COUNT(*) FROM (SELECT 1 FROM {SCHEMA}.items WHERE collection_id = %s"
                            " LIMIT %s) x) >= %s")
                    args += [self.id, EXACT_BELOW, EXACT_BELOW]
                rows = store._q(sql + " ORDER BY embedding <=> %s::vector LIMIT %s", [*args, q, k])
                self._large = len(rows) >= k
                if self._large:
                    return [(int(i), float(s)) for i, s in rows]
            rows = store._q(exact, exact_args)
        return [(int(i), float(s)) for i, s in rows]

    def lexical(self, query: str, k: int, grp: str | None = None) -> list[tuple[int, float]]:
        """Top ``k`` (id, ts_rank) by PostgreSQL's full-text search over the query's plain words."""
        words = [w for w in query_terms(query) if w != "or"]
        if not words or int(k) <= 0:
            return []
        sql = (f"SELECT id, ts_rank(tsv, q) AS s FROM {SCHEMA}.items, websearch_to_tsquery('english', %s) q"
               " WHERE collection_id = %s AND tsv @@ q")
        args: list = [" or ".join(words), self.id]
        if grp is not None:
            sql += " AND grp = %s"
            args.append(grp)
        sql += " ORDER BY s DESC, id LIMIT %s"
        args.append(int(k))
        return [(int(i), float(s)) for i, s in self.store._q(sql, args)]

    def save_index(self, force: bool = True) -> None:
        """Nothing to save: the HNSW and GIN indexes are PostgreSQL's."""
