"""An on-disk store of text collections: SQLite (WAL) is the truth, faiss and FTS5 index it.

``Store(directory)`` holds ``store.sqlite3`` and ``index/`` (faiss files). A write returns
only after its SQLite transaction has committed, with ``synchronous=FULL``: a write that
returned survives a killed process (and a power cut). faiss indexes are caches, caught up
from the change log before each search and saved now and then; a missing, damaged or stale
file is rebuilt from the vectors in SQLite, never from re-embedding. Nothing is pickled.

Lexical search (BM25) is ``lexical.Lexical`` (tantivy, kept in step through a change log like
the faiss indexes, or SQLite's FTS5, updated in the same transaction as the item); it reads
the store through the public methods below (``read``, ``read_in``, ``transaction``,
``snapshot``, ``lock``), which a collection's ``lexical`` calls.

A damaged store is never written to or replaced: ``store.sqlite3`` that is not an SQLite
file, is empty (0 bytes) or missing while the store's other files (``pocketpack-store.json``,
``index/``, ``lexical/``) say it existed, or that SQLite finds malformed at any read, raises
``StoreDamaged``: one line with the store's path and what to do (move the folder aside, the
exact ``mv`` command given, or restore a backup). A brand-new directory is created silently.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import shlex
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from pocketpack.errors import PocketPackError
from pocketpack.fsutil import atomic_write
from pocketpack.retrieval import migrations
from pocketpack.retrieval.fts import document_frequencies, register_functions
from pocketpack.retrieval.lexical import DIR_NAME as LEXICAL_DIR
from pocketpack.retrieval.lexical import Lexical, choose_engine, folder_bytes
from pocketpack.retrieval.vector import VectorIndex

DB_NAME = "store.sqlite3"
MARKER = "pocketpack-store.json"   # written once a store has opened: its database existed
_SQLITE_MAGIC = b"SQLite format 3\x00"
_DAMAGE_CODES = (11, 26)           # SQLITE_CORRUPT, SQLITE_NOTADB (primary result codes)
IN_BATCH = 500                     # values per ``IN (...)``: under SQLite's variable limit


def content_hash(text: str) -> str:
    """sha256 of the text: the key of its embedding, so it is computed once."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class Item:
    """One stored text and its metadata, as returned by reads and searches."""

    id: int
    text: str
    key: str | None = None
    grp: str | None = None
    time: float = 0.0
    importance: float = 0.0
    pinned: bool = False
    meta: dict = field(default_factory=dict)
    collection: str = ""
    context: str | None = None


@dataclass
class NewItem:
    """An item to write. With a ``key``, writing it again replaces the earlier one.

    Fields left as None keep the earlier item's value on a replace (so re-syncing an edited
    message keeps its original time and its pin) and take the default on an insert.
    """

    text: str
    key: str | None = None
    grp: str | None = None
    time: float | None = None
    importance: float | None = None
    pinned: bool | None = None
    meta: dict | None = None
    context: str | None = None   # searchable by BM25 with the text, never shown or embedded
    fingerprint: str | None = None  # an imported record's identity: written once per collection


class StoreError(PocketPackError, RuntimeError):
    """Bad input or an unusable store; the message is one line meant for the user."""


class StoreDamaged(PocketPackError, RuntimeError):
    """The store's database is damaged, unreadable or missing; nothing was changed. Not a
    ``StoreError`` on purpose: callers that skip a bad input and go on must stop here.
    ``directory`` and ``what`` say which store and what is wrong with it."""

    def __init__(self, message: str, directory: Path | None = None, what: str = ""):
        super().__init__(message)
        self.directory, self.what = directory, what


def _move_aside(directory: Path) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"mv {shlex.quote(str(directory))} {shlex.quote(f'{directory}.damaged-{stamp}')}"


def store_damaged(directory: Path, what: str) -> StoreDamaged:
    """The one line for a damaged or unreadable store."""
    return StoreDamaged(
        f"the store at {directory} is damaged ({what}) and was left as it is; move it aside to start an empty"
        f" store ({_move_aside(directory)}) or restore it from a backup", directory, what)


def store_missing(directory: Path) -> StoreDamaged:
    """The one line for a store whose database is gone while its other files remain."""
    return StoreDamaged(
        f"the store at {directory} has lost its database ({DB_NAME} is missing; the store's other files are"
        f" still there) and was left as it is; restore {DB_NAME} from a backup, or move the folder aside to start"
        f" an empty store ({_move_aside(directory)})", directory, f"{DB_NAME} is missing")


def _has_been_a_store(directory: Path) -> bool:
    """Whether ``directory`` held a store before: its marker, index files or a WAL with data."""
    if (directory / MARKER).exists():
        return True
    for sub in ("index", LEXICAL_DIR):
        folder = directory / sub
        if folder.is_dir() and not folder.is_symlink() and any(folder.iterdir()):
            return True
    wal = directory / (DB_NAME + "-wal")
    return wal.is_file() and wal.stat().st_size > 0


def check_store(directory: str | Path) -> None:
    """Raise ``StoreDamaged`` unless ``directory`` holds a readable-looking store or none at all
    (a new one). Reads at most 16 bytes; never creates or changes anything."""
    directory = Path(directory).expanduser()
    db = directory / DB_NAME
    if not db.exists():
        if directory.is_dir() and _has_been_a_store(directory):
            raise store_missing(directory)
        return
    if not db.is_file():
        raise store_damaged(directory, f"{DB_NAME} is not a file")
    try:
        with open(db, "rb") as handle:
            head = handle.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise store_damaged(directory, f"{DB_NAME} cannot be read: {exc.strerror or exc}") from None
    if not head:
        if _has_been_a_store(directory):  # truncated: SQLite would take it for a new database
            raise store_damaged(directory, f"{DB_NAME} is empty, 0 bytes")
        return
    if head != _SQLITE_MAGIC:
        zeros = not head.strip(b"\x00")
        raise store_damaged(directory, f"{DB_NAME} is not an SQLite database"
                                       + (": it begins with zero bytes" if zeros else ""))


def _is_damage(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and (code & 0xFF) in _DAMAGE_CODES


def _checked(method):
    """``method`` of a cursor, its corruption errors turned into ``StoreDamaged``."""

    @functools.wraps(method)
    def run(self, *args):
        try:
            return method(self, *args)
        except sqlite3.DatabaseError as exc:
            if _is_damage(exc):
                raise self._damage(exc) from exc
            raise

    return run


class _Cursor(sqlite3.Cursor):
    """A cursor whose corruption errors ("database disk image is malformed") become
    ``StoreDamaged`` with the store's path, wherever in a read or write SQLite notices them."""

    def _damage(self, exc):
        return store_damaged(getattr(self.connection, "store_directory", Path(".")), f"{DB_NAME}: {exc}")

    execute = _checked(sqlite3.Cursor.execute)
    executemany = _checked(sqlite3.Cursor.executemany)
    fetchone = _checked(sqlite3.Cursor.fetchone)
    fetchmany = _checked(sqlite3.Cursor.fetchmany)
    fetchall = _checked(sqlite3.Cursor.fetchall)
    __next__ = _checked(sqlite3.Cursor.__next__)


class _Connection(sqlite3.Connection):
    """The store's connection: every statement runs on a ``_Cursor``."""

    store_directory: Path

    def cursor(self, factory=None):
        return super().cursor(factory or _Cursor)

    def execute(self, sql, parameters=()):
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql, parameters):
        return self.cursor().executemany(sql, parameters)


_COLUMNS = ("items.id, items.text, items.key, items.grp, items.time, items.importance, items.pinned, items.meta,"
            " items.context")


def _row_to_item(row, collection: str = "") -> Item:
    return Item(
        id=row[0], text=row[1], key=row[2], grp=row[3], time=row[4], importance=row[5],
        pinned=bool(row[6]), meta=json.loads(row[7] or "{}"), collection=collection, context=row[8],
    )


def _journal_wal(conn, wait: float = 30.0) -> None:
    """Switch the database to WAL, waiting while another process holds it (two processes opening
    one new store at once: SQLite answers the switch with "database is locked" at once, without
    its busy timeout)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Store:
    """A directory of collections sharing one SQLite database and one embedding model.

    ``embedder`` is anything with ``name``, ``dim`` and ``embed(list[str]) -> ndarray``; by
    default the process-wide sentence-transformers model, loaded on first use.
    """

    def __init__(self, directory: str | Path, *, embedder=None, model_path: str | None = None,
                 approx_threshold: int = 50_000, nprobe: int | None = None, save_every: int = 2000,
                 common_term_ratio: float | None = 0.05, common_term_min_rows: int = 2000,
                 lexical: str = "auto"):
        self.directory = Path(directory).expanduser()
        if self.directory.exists() and not self.directory.is_dir():
            raise StoreError(f"store path is not a directory: {self.directory}")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.index_dir = self.directory / "index"
        self._embedder = embedder
        self._model_path = model_path
        self.approx_threshold = approx_threshold
        self.nprobe = nprobe
        self.save_every = save_every
        # lexical search drops query terms in more than this share of a collection's rows,
        # once it has common_term_min_rows rows (below that FTS5 is fast anyway)
        self.common_term_ratio = common_term_ratio
        self.common_term_min_rows = common_term_min_rows
        try:
            self.lexical_engine = choose_engine(lexical)
        except ValueError as exc:
            raise StoreError(str(exc)) from None
        self.lock = threading.RLock()  # one connection serves every thread: reads and writes hold it
        check_store(self.directory)  # a damaged or vanished database is reported, never replaced
        self.conn = None
        try:
            self.conn = sqlite3.connect(self.directory / DB_NAME, timeout=30, isolation_level=None,
                                        check_same_thread=False, factory=_Connection)
            self.conn.store_directory = self.directory
            register_functions(self.conn)
            if (self.directory / MARKER).exists() and self.conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE name = '_migrations'").fetchone() is None:
                raise store_missing(self.directory)  # another, empty database in its place
            _journal_wal(self.conn)
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self.conn.execute("PRAGMA busy_timeout=30000")
            migrations.apply(self.conn)
        except BaseException as exc:
            if self.conn is not None:
                self.conn.close()
            if isinstance(exc, migrations.SchemaTooNew):
                raise StoreError(str(exc)) from exc
            if isinstance(exc, sqlite3.DatabaseError):
                raise StoreError(f"cannot open the store at {self.directory}: {exc}") from exc
            raise
        if not (self.directory / MARKER).exists():
            try:
                atomic_write(self.directory / MARKER, json.dumps(
                    {"format": 1, "database": DB_NAME,
                     "about": "a Pocket Pack store: SQLite is the truth; index/ and lexical/ are caches of it"}).encode())
            except OSError:
                pass  # a read-only folder: the store works, only a lost database goes unnoticed
        self._indexes: dict[int, VectorIndex] = {}
        self._collections: dict[str, Collection] = {}
        self.lexical = Lexical(self, self.lexical_engine)

    # -- plumbing -------------------------------------------------------------------------
    @property
    def embedder(self):
        if self._embedder is None:
            from pocketpack.retrieval.embed import get_embedder

            self._embedder = get_embedder(self._model_path)
        return self._embedder

    @property
    def _lock(self) -> threading.RLock:
        return self.lock  # the earlier private name (bench/memory_latency.py holds it)

    def read(self, sql: str, args=()) -> list:
        """The rows of one read, under the store's lock (one connection serves every thread)."""
        with self.lock:
            return self.conn.execute(sql, args).fetchall()

    def read_one(self, sql: str, args=()):
        """The first row of a read, or None."""
        rows = self.read(sql, args)
        return rows[0] if rows else None

    def read_in(self, sql: str, values: Iterable, *, before=(), after=()) -> list:
        """The rows of ``sql`` whose ``IN ({marks})`` takes ``values``, read ``IN_BATCH`` at a
        time (SQLite limits a statement's variables); its other arguments go ``before`` and
        ``after`` the values."""
        values = list(values)
        rows: list = []
        for start in range(0, len(values), IN_BATCH):
            chunk = values[start:start + IN_BATCH]
            rows += self.read(sql.format(marks=",".join("?" * len(chunk))), (*before, *chunk, *after))
        return rows

    # -- word statistics (search.TermStats: how rare a word is in this store) ----------------
    # A folder is one store, and every row of it counts: memory's and documents' stores are
    # separate folders, and a user's memory under --multi-user is its own folder, so
    # ``collection`` and ``prefix`` (which say what a PostgreSQL store's shared database counts,
    # see ``PgStore.word_statistics_version``) change nothing here.
    def word_statistics_version(self, collection: str | None = None, *, prefix: str = "") -> tuple:
        """``(what is counted, writes)``: writes is the ``lexical_log`` sequence, which a trigger
        advances on every insert, delete and text/context change, from any process (a document
        frequency moves by at most 1 a write)."""
        row = self.read_one("SELECT seq FROM sqlite_sequence WHERE name = 'lexical_log'")
        return (id(self.conn),), int(row[0]) if row else 0

    def row_count(self, collection: str | None = None, *, prefix: str = "") -> int:
        """The rows the word statistics count: every row of the store (kept by triggers)."""
        return int(self.read_one("SELECT n FROM item_rows WHERE id = 1")[0])

    def document_frequencies(self, stems: Iterable[str], collection: str | None = None, *,
                             prefix: str = "") -> dict[str, int]:
        """stem (as FTS5 indexes it) -> the rows holding it, from the trigger-kept counts of
        FTS5's terms (``term_df``); stems in no row are left out."""
        return document_frequencies(self, stems)

    def transaction(self) -> "_Transaction":
        """``with store.transaction() as conn:`` a write (``BEGIN IMMEDIATE`` ... ``COMMIT``,
        rolled back on error) under the store's lock."""
        return _Transaction(self.conn, self.lock)

    @contextlib.contextmanager
    def snapshot(self):
        """``with store.snapshot() as conn:`` reads that see one state of the database (a
        rebuild reads its rows and the change log's head in one)."""
        with self.lock:
            self.conn.execute("BEGIN")
            try:
                yield self.conn
            finally:
                self.conn.execute("COMMIT")

    def lexical_index(self, collection_id: int):
        """A collection's tantivy BM25 cache, opened on first use; None when FTS5 does the
        lexical search."""
        return self.lexical.index(collection_id)

    def _after_write(self, collection_id: int) -> None:
        """Apply a committed write to the collection's lexical cache now, so a search need not."""
        self.lexical.after_write(collection_id)

    def collection(self, name: str, *, create: bool = True) -> "Collection":
        """The collection called ``name``; created (empty) when missing unless ``create=False``."""
        if not name or len(name) > 512:
            raise StoreError("a collection name must be 1 to 512 characters")
        with self.lock:
            if name in self._collections:
                return self._collections[name]
            row = self.read_one("SELECT id, model, dim FROM collections WHERE name = ?", (name,))
            if row is None:
                if not create:
                    raise StoreError(f"no collection named {name!r} in {self.directory}")
                embedder = self.embedder
                with self.transaction() as conn:
                    conn.execute(
                        "INSERT OR IGNORE INTO collections(name, model, dim, created) VALUES (?, ?, ?, ?)",
                        (name, embedder.name, embedder.dim, time.time()),
                    )
                row = self.read_one("SELECT id, model, dim FROM collections WHERE name = ?", (name,))
            coll = Collection(self, row[0], name, row[1], row[2])
            self._collections[name] = coll
            return coll

    def collection_names(self, prefix: str = "") -> list[str]:
        rows = self.read(
            "SELECT name FROM collections WHERE substr(name, 1, ?) = ? ORDER BY name", (len(prefix), prefix)
        )
        return [r[0] for r in rows]

    def locate(self, item_id: int) -> "Collection | None":
        """The collection holding an item id, or None."""
        row = self.read_one("SELECT collections.name FROM items JOIN collections ON collections.id = items.collection_id"
                       " WHERE items.id = ?", (int(item_id),))
        return self.collection(row[0]) if row else None

    def has_collection(self, name: str) -> bool:
        return self.read_one("SELECT 1 FROM collections WHERE name = ?", (name,)) is not None

    def drop_collection(self, name: str) -> int:
        """Delete a collection, its items and its saved index; returns the items removed."""
        with self.lock:
            row = self.read_one("SELECT id FROM collections WHERE name = ?", (name,))
            if row is None:
                return 0
            cid = row[0]
            with self.transaction() as conn:
                n = conn.execute("SELECT COUNT(*) FROM items WHERE collection_id = ?", (cid,)).fetchone()[0]
                conn.execute("DELETE FROM items WHERE collection_id = ?", (cid,))
                conn.execute("DELETE FROM changes WHERE collection_id = ?", (cid,))
                conn.execute("DELETE FROM collections WHERE id = ?", (cid,))
                conn.execute("DELETE FROM lexical_log WHERE collection_id = ?", (cid,))
                conn.execute("DELETE FROM lexical_state WHERE collection_id = ?", (cid,))
            self._collections.pop(name, None)
            self._indexes.pop(cid, None)
            for path in self.index_dir.glob(f"c{cid}.s*.*") if self.index_dir.is_dir() else []:
                path.unlink(missing_ok=True)
            self.prune_vectors()
            self.lexical.drop(cid)
            return n

    def prune_vectors(self, *, full: bool = False) -> int:
        """Delete embeddings no item uses any more (after deletions); returns how many.

        Only the texts deleted, replaced or moved since the last prune are checked (triggers
        record them in ``vector_gc`` with the write), so a prune after removing one document
        costs milliseconds at a million items instead of a scan of every vector. ``full``
        scans everything, for stores whose candidates were lost some other way.
        """
        with self.transaction() as conn:
            if full:
                n = conn.execute("DELETE FROM vectors WHERE hash NOT IN (SELECT hash FROM items)").rowcount
            else:
                n = conn.execute(
                    "DELETE FROM vectors WHERE (model, hash) IN (SELECT g.model, g.hash FROM vector_gc g"
                    " WHERE NOT EXISTS (SELECT 1 FROM items i WHERE i.hash = g.hash))"
                ).rowcount
            conn.execute("DELETE FROM vector_gc")
            return n

    _prune_vectors = prune_vectors  # the earlier private name, still called by older code

    def vectors_for(self, model: str, hashes: list[str]) -> dict[str, np.ndarray]:
        return {h: np.frombuffer(blob, dtype="<f4") for h, blob in self.read_in(
            "SELECT hash, vector FROM vectors WHERE model = ? AND hash IN ({marks})", dict.fromkeys(hashes),
            before=(model,))}

    def ensure_vectors(self, texts_by_hash: dict[str, str]) -> tuple[dict[str, np.ndarray], list[tuple]]:
        """Vectors for these texts, embedding (outside any transaction) only the unseen ones.

        Returns the vectors by hash and the rows ``(model, hash, bytes)`` still to be written.
        """
        embedder = self.embedder
        have = self.vectors_for(embedder.name, list(texts_by_hash))
        missing = [h for h in texts_by_hash if h not in have]
        new_rows = []
        if missing:
            vecs = embedder.embed([texts_by_hash[h] for h in missing])
            have.update(zip(missing, vecs))
            new_rows = [(embedder.name, h, np.asarray(have[h], dtype="<f4").tobytes()) for h in missing]
        return have, new_rows

    @staticmethod
    def _write_vectors(conn, rows: list[tuple]) -> None:
        if rows:
            conn.executemany("INSERT OR IGNORE INTO vectors(model, hash, vector) VALUES (?, ?, ?)", rows)

    def flush(self) -> None:
        """Save every faiss index that has changes not yet on disk."""
        with self.lock:
            for coll in list(self._collections.values()):
                coll.save_index(force=False)

    def close(self) -> None:
        with self.lock:
            try:
                self.flush()
            finally:
                self.lexical.close()
                self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def stats(self) -> dict:
        db = self.directory / DB_NAME
        size = sum(p.stat().st_size for p in self.directory.glob(DB_NAME + "*"))
        index_size = sum(p.stat().st_size for p in self.index_dir.glob("*.faiss")) if self.index_dir.is_dir() else 0
        items = self.read_one("SELECT COUNT(*) FROM items")[0]
        lexical = folder_bytes(self.directory)
        return {"items": items, "sqlite_bytes": size, "faiss_bytes": index_size, "lexical_bytes": lexical,
                "lexical_engine": self.lexical_engine, "path": str(db)}


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` under the store's lock (rollback on error)."""

    def __init__(self, conn, lock):
        self.conn, self.lock = conn, lock

    def __enter__(self):
        self.lock.acquire()
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        try:
            self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.lock.release()


class Collection:
    """Named set of items in a store, with its own faiss index and lexical index."""

    def __init__(self, store: Store, cid: int, name: str, model: str, dim: int):
        self.store, self.id, self.name, self.model, self.dim = store, cid, name, model, dim

    # -- writes ---------------------------------------------------------------------------
    def upsert(self, items: Iterable[NewItem]) -> list[int]:
        """Write items in one transaction; returns their ids, in order, once committed.

        An item whose ``key`` exists replaces that item (same id); when its text is unchanged
        nothing is re-embedded or re-indexed. An item whose ``fingerprint`` the collection
        already holds is left out: the id returned is the one that holds it.
        """
        items = list(items)
        if not items:
            return []
        for it in items:
            if not isinstance(it.text, str) or not it.text.strip():
                raise StoreError("cannot store an empty text")
        store = self.store
        now = time.time()
        hashes = [content_hash(it.text) for it in items]
        _, new_rows = store.ensure_vectors(dict(zip(hashes, (it.text for it in items))))
        model = store.embedder.name
        ids: list[int] = []
        with store.transaction() as conn:
            self._check_model(conn, model)
            store._write_vectors(conn, new_rows)
            for it, h in zip(items, hashes):
                if it.fingerprint is not None:
                    same = conn.execute("SELECT item_id FROM item_fingerprints WHERE collection_id = ?"
                                        " AND fingerprint = ?", (self.id, it.fingerprint)).fetchone()
                    if same is not None:
                        ids.append(same[0])
                        continue
                meta = json.dumps(it.meta, ensure_ascii=False) if it.meta is not None else None
                old = None
                if it.key is not None:
                    old = conn.execute(
                        "SELECT id, hash, context FROM items WHERE collection_id = ? AND key = ?", (self.id, it.key)
                    ).fetchone()
                if old is None:
                    cur = conn.execute(
                        "INSERT INTO items(collection_id, key, grp, text, hash, time, importance, pinned, meta, context)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (self.id, it.key, it.grp, it.text, h, float(it.time) if it.time is not None else now,
                         float(it.importance or 0.0), int(bool(it.pinned)), meta or "{}", it.context or None),
                    )
                    item_id = cur.lastrowid
                    conn.execute("INSERT INTO changes(collection_id, item_id, op) VALUES (?, ?, 'add')", (self.id, item_id))
                else:
                    item_id = old[0]
                    conn.execute(
                        "UPDATE items SET grp = ?, time = COALESCE(?, time), importance = COALESCE(?, importance),"
                        " pinned = COALESCE(?, pinned), meta = COALESCE(?, meta) WHERE id = ?",
                        (it.grp, it.time, it.importance, None if it.pinned is None else int(it.pinned), meta, item_id),
                    )
                    if old[1] != h:
                        conn.execute("UPDATE items SET text = ?, hash = ? WHERE id = ?", (it.text, h, item_id))
                        conn.execute("INSERT INTO changes(collection_id, item_id, op) VALUES (?, ?, 'mod')", (self.id, item_id))
                    if (it.context or None) != old[2]:
                        conn.execute("UPDATE items SET context = ? WHERE id = ?", (it.context or None, item_id))
                if it.fingerprint is not None:
                    conn.execute("INSERT OR REPLACE INTO item_fingerprints(collection_id, fingerprint, item_id)"
                                 " VALUES (?, ?, ?)", (self.id, it.fingerprint, item_id))
                ids.append(item_id)
        store._after_write(self.id)
        return ids

    def add(self, text: str, **fields) -> int:
        return self.upsert([NewItem(text=text, **fields)])[0]

    def update(self, item_id: int, *, text: str | None = None, pinned: bool | None = None,
               importance: float | None = None, meta: dict | None = None, time_: float | None = None) -> bool:
        """Change one item in place; False when it does not exist in this collection."""
        current = self.get([item_id])
        if not current:
            return False
        it = current[0]
        if text is not None and text != it.text:
            if not text.strip():
                raise StoreError("cannot store an empty text")
            h = content_hash(text)
            _, new_rows = self.store.ensure_vectors({h: text})
        else:
            text, h, new_rows = None, None, []
        with self.store.transaction() as conn:
            self.store._write_vectors(conn, new_rows)
            if text is not None:
                conn.execute("UPDATE items SET text = ?, hash = ? WHERE id = ?", (text, h, item_id))
                conn.execute("INSERT INTO changes(collection_id, item_id, op) VALUES (?, ?, 'mod')", (self.id, item_id))
            if pinned is not None:
                conn.execute("UPDATE items SET pinned = ? WHERE id = ?", (int(pinned), item_id))
            if importance is not None:
                conn.execute("UPDATE items SET importance = ? WHERE id = ?", (float(importance), item_id))
            if meta is not None:
                conn.execute("UPDATE items SET meta = ? WHERE id = ?", (json.dumps(meta, ensure_ascii=False), item_id))
            if time_ is not None:
                conn.execute("UPDATE items SET time = ? WHERE id = ?", (float(time_), item_id))
        self.store._after_write(self.id)
        return True

    def delete(self, ids: Iterable[int]) -> int:
        """Delete items by id; returns how many existed."""
        ids = [int(i) for i in ids]
        n = 0
        with self.store.transaction() as conn:
            for item_id in ids:
                cur = conn.execute("DELETE FROM items WHERE id = ? AND collection_id = ?", (item_id, self.id))
                if cur.rowcount:
                    n += 1
                    conn.execute("INSERT INTO changes(collection_id, item_id, op) VALUES (?, ?, 'del')", (self.id, item_id))
        self.store._after_write(self.id)
        return n

    def delete_keys(self, keys: Iterable[str]) -> int:
        return self.delete([r[0] for r in self.store.read_in(
            "SELECT id FROM items WHERE collection_id = ? AND key IN ({marks})", keys, before=(self.id,))])

    def delete_group(self, grp: str) -> int:
        ids = [r[0] for r in self.store.read(
            "SELECT id FROM items WHERE collection_id = ? AND grp = ?", (self.id, grp))]
        return self.delete(ids)

    # -- reads ----------------------------------------------------------------------------
    def get(self, ids: Iterable[int]) -> list[Item]:
        """Items by id, in the order asked (missing ones left out)."""
        ids = [int(i) for i in ids]
        found = {row[0]: _row_to_item(row, self.name) for row in self.store.read_in(
            f"SELECT {_COLUMNS} FROM items WHERE +collection_id = ? AND id IN ({{marks}})", ids, before=(self.id,))}
        return [found[i] for i in ids if i in found]

    def by_key(self, key: str) -> Item | None:
        row = self.store.read_one(
            f"SELECT {_COLUMNS} FROM items WHERE collection_id = ? AND key = ?", (self.id, key))
        return _row_to_item(row, self.name) if row else None

    def items(self, *, grp: str | None = None, pinned: bool | None = None, limit: int | None = None,
              offset: int = 0, newest_first: bool = False, where_meta: tuple[str, str] | None = None) -> list[Item]:
        sql = f"SELECT {_COLUMNS} FROM items WHERE collection_id = ?"
        args: list = [self.id]
        if grp is not None:
            sql += " AND grp = ?"
            args.append(grp)
        if pinned is not None:  # a literal, so the partial index on pinned items applies
            sql += " AND pinned = 1" if pinned else " AND pinned = 0"
        if where_meta is not None:
            sql += " AND json_extract(meta, ?) = ?"
            args += [f"$.{where_meta[0]}", where_meta[1]]
        sql += " ORDER BY time DESC, id DESC" if newest_first else " ORDER BY time, id"
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            args += [int(limit), int(offset)]
        return [_row_to_item(r, self.name) for r in self.store.read(sql, args)]

    def keys(self, grp: str | None = None) -> dict[str, tuple[int, str]]:
        """key -> (id, content hash) for keyed items, optionally of one group."""
        return {k: (i, h) for k, (i, h, _) in self.key_states(grp).items()}

    def key_states(self, grp: str | None = None) -> dict[str, tuple[int, str, str | None]]:
        """key -> (id, content hash, context): what an incremental sync compares."""
        sql = "SELECT key, id, hash, context FROM items WHERE collection_id = ? AND key IS NOT NULL"
        args: list = [self.id]
        if grp is not None:
            # a chat's rows by the group index: SQLite's planner, without statistics, may pick the
            # key index instead (a scan of every keyed row: 5 ms -> 100 ms a turn at 100k memories)
            sql = "SELECT key, id, hash, context FROM items WHERE collection_id = ? AND +key IS NOT NULL AND grp = ?"
            args.append(grp)
        return {k: (i, h, c) for k, i, h, c in self.store.read(sql, args)}

    def ids_with_texts(self, texts: Iterable[str]) -> set[int]:
        """Ids of the items whose text is exactly one of ``texts`` (by content hash). The ``+``
        keeps SQLite on the hash index: by collection it scanned 100k rows (39 ms a turn)."""
        hashes = list({content_hash(t) for t in texts if t})
        return {r[0] for r in self.store.read_in(
            "SELECT id FROM items WHERE hash IN ({marks}) AND +collection_id = ?", hashes, after=(self.id,))}

    def ids_with_fingerprints(self, fingerprints: Iterable[str]) -> dict[str, int]:
        """fingerprint -> id of the items of this collection that hold one of ``fingerprints``."""
        wanted = dict.fromkeys(f for f in fingerprints if f)
        return dict(self.store.read_in("SELECT fingerprint, item_id FROM item_fingerprints WHERE collection_id = ?"
                                       " AND fingerprint IN ({marks})", wanted, before=(self.id,)))

    def add_fingerprints(self, fingerprints: dict[str, int]) -> None:
        """Record that these items (of this collection) hold these fingerprints: items written
        before they had one, found to be the same record by the importer."""
        with self.store.transaction() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO item_fingerprints(collection_id, fingerprint, item_id)"
                " SELECT collection_id, ?, id FROM items WHERE id = ? AND collection_id = ?",
                [(f, int(i), self.id) for f, i in fingerprints.items()])

    def count(self, grp: str | None = None) -> int:
        if grp is None:
            return self.store.read_one("SELECT COUNT(*) FROM items WHERE collection_id = ?", (self.id,))[0]
        return self.store.read_one(
            "SELECT COUNT(*) FROM items WHERE collection_id = ? AND grp = ?", (self.id, grp))[0]

    def ids_in_group(self, grp: str) -> np.ndarray:
        rows = self.store.read("SELECT id FROM items WHERE collection_id = ? AND grp = ?", (self.id, grp))
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def vectors(self, ids: list[int]) -> dict[int, np.ndarray]:
        """The stored vectors of these items (for MMR and re-ranking): from the loaded faiss
        index when it holds them (a random SQLite read per item cost 4-10 ms per search at
        100k items), else from SQLite."""
        out: dict[int, np.ndarray] = {}
        with self.store.lock:  # a write replaying into the same faiss index must not interleave
            index = self.store._indexes.get(self.id)
            if index is not None and index.model == self.model:
                out.update(index.reconstruct(list(ids)))
                ids = [i for i in ids if i not in out]
        for item_id, blob in self.store.read_in(
                "SELECT items.id, vectors.vector FROM items CROSS JOIN vectors ON vectors.model = ?"
                " AND vectors.hash = items.hash WHERE +items.collection_id = ? AND items.id IN ({marks})",
                ids, before=(self.model, self.id)):
            out[item_id] = np.frombuffer(blob, dtype="<f4")
        return out

    # -- dense and lexical candidates -----------------------------------------------------
    def dense(self, query_vector: np.ndarray, k: int, grp: str | None = None) -> list[tuple[int, float]]:
        """Top ``k`` (id, cosine) by the faiss index, optionally within one group."""
        with self.store.lock:
            index = self._fresh_index()
            allowed = self.ids_in_group(grp) if grp is not None else None
            return index.search(query_vector, k, allowed)

    def lexical(self, query: str, k: int, grp: str | None = None) -> list[tuple[int, float]]:
        """Top ``k`` (id, BM25 score, higher is better), optionally within one group: by tantivy,
        or by FTS5 where tantivy cannot answer (``pocketpack.retrieval.lexical``)."""
        return self.store.lexical.search(self.id, query, k, grp)

    # -- the faiss cache ------------------------------------------------------------------
    def _check_model(self, conn, model: str) -> None:
        if model != self.model:
            # vectors of another model cannot share an index: re-point the collection and
            # let the next index refresh re-embed what is missing.
            conn.execute("UPDATE collections SET model = ?, dim = ? WHERE id = ?", (model, self.store.embedder.dim, self.id))
            self.model, self.dim = model, self.store.embedder.dim
            self.store._indexes.pop(self.id, None)

    def _log_position(self) -> tuple[int, int]:
        row = self.store.read_one(
            "SELECT (SELECT COALESCE(MAX(seq), 0) FROM changes), pruned_seq FROM collections WHERE id = ?", (self.id,)
        )
        return int(row[0]), int(row[1])

    def _fresh_index(self) -> VectorIndex:
        """The in-memory faiss index, loaded or rebuilt if needed, with the log replayed."""
        store = self.store
        if store.embedder.name != self.model:
            with store.transaction() as conn:
                self._check_model(conn, store.embedder.name)
        index = store._indexes.get(self.id)
        head, pruned = self._log_position()
        if index is not None and index.seq < pruned:
            index = None  # another process pruned the log past us: reload
        if index is None:
            index = VectorIndex.load(store.index_dir, self.id, self.model, self.dim,
                                     approx_threshold=store.approx_threshold, nprobe=store.nprobe)
            if index is not None and index.seq < pruned:
                index = None
        if index is None:
            index = self._rebuild()
        elif index.seq < head:
            self._replay(index)
        if index.needs_rebuild():
            index = self._rebuild()
        store._indexes[self.id] = index
        if index.unsaved >= store.save_every:
            self.save_index(force=True)
        return index

    def _rebuild(self) -> VectorIndex:
        """A new index over every item, from the vectors in SQLite (embedding only what a
        model change left without a vector), read in one snapshot with the log position."""
        store = self.store
        missing = dict(store.read(
            "SELECT items.hash, items.text FROM items LEFT JOIN vectors ON vectors.model = ? AND vectors.hash = items.hash"
            " WHERE items.collection_id = ? AND vectors.hash IS NULL", (self.model, self.id)))
        if missing:
            _, new_rows = store.ensure_vectors(missing)
            with store.transaction() as conn:
                store._write_vectors(conn, new_rows)
        with store.snapshot() as conn:  # the log head and the rows agree
            head = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()[0]
            n = conn.execute("SELECT COUNT(*) FROM items WHERE collection_id = ?", (self.id,)).fetchone()[0]
            ids = np.empty(n, dtype=np.int64)
            vecs = np.empty((n, self.dim), dtype=np.float32)
            got = 0
            cursor = conn.execute(
                "SELECT items.id, vectors.vector FROM items JOIN vectors ON vectors.model = ? AND vectors.hash = items.hash"
                " WHERE items.collection_id = ? ORDER BY items.id", (self.model, self.id))
            while rows := cursor.fetchmany(5000):  # in batches: a checked __next__ per row costs ~1 us
                for item_id, blob in rows:
                    ids[got] = item_id
                    vecs[got] = np.frombuffer(blob, dtype="<f4")
                    got += 1
        index = VectorIndex(self.id, self.model, self.dim, approx_threshold=store.approx_threshold, nprobe=store.nprobe)
        index.build(ids[:got], vecs[:got], head)
        return index

    def _replay(self, index: VectorIndex) -> None:
        rows = self.store.read(
            "SELECT seq, item_id, op FROM changes WHERE collection_id = ? AND seq > ? ORDER BY seq",
            (self.id, index.seq),
        )
        if not rows:
            head, _ = self._log_position()
            index.seq = max(index.seq, head)
            return
        first_op: dict[int, str] = {}
        touched: set[int] = set()
        for _, item_id, op in rows:
            first_op.setdefault(item_id, op)
            touched.add(item_id)
        # an item whose first change after the index's position is an 'add' was never in it
        to_remove = [i for i in touched if first_op[i] != "add"]
        index.remove(to_remove)
        present = self.vectors(sorted(touched))
        ids = sorted(present)
        if ids:
            index.add(ids, np.stack([present[i] for i in ids]))
        index.seq = rows[-1][0]
        index.unsaved += len(touched)

    def save_index(self, force: bool = True) -> None:
        """Write the faiss index to disk and drop the change-log entries it now contains."""
        store = self.store
        with store.lock:
            index = store._indexes.get(self.id)
            if index is None or (not force and index.unsaved == 0):
                return
            index.save(store.index_dir)
            with store.transaction() as conn:
                conn.execute("DELETE FROM changes WHERE collection_id = ? AND seq <= ?", (self.id, index.seq))
                conn.execute("UPDATE collections SET pruned_seq = MAX(pruned_seq, ?) WHERE id = ?", (index.seq, self.id))
