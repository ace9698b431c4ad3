"""BM25 over a collection's items with tantivy: a cache of SQLite, like the faiss indexes.

Why tantivy: SQLite's FTS5 scores every row that holds any query term before it can sort,
so a six-word question over 100k chat turns took 15-35 ms, and grows with the store; tantivy
(block-max WAND over an on-disk inverted index) answers the same query in about 1 ms and adds
documents incrementally, which bm25s cannot.

One index per collection (``lexical/c<id>/``), so a collection's BM25 statistics (document
frequencies, lengths) are its own: one character's memories never change how another's rank.

Consistency: SQLite stays the truth. Triggers append every change of an item's searchable
fields to ``lexical_log`` in the same transaction as the change (migration 7); ``sync`` applies
the log to tantivy (delete the item's document, add its current version: replaying twice is
harmless), commits, then records the position in ``lexical_state`` and prunes the log. A
crash anywhere in between leaves entries that the next ``sync`` replays. A missing, damaged
or foreign index folder (its ``pocketpack.json`` generation differs from the one SQLite
recorded) is rebuilt from the items table.

Only one process can write a tantivy index. A process that cannot get the writer (another
one holds it) searches with FTS5 whenever the tantivy index is behind the log, so its
results are never stale; the writer's process replays the log on its next search.

Queries are built, never parsed: a term query per token of ``query_terms``'s words, made
with the index's own analyzer (``analyzed_terms``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import uuid
from pathlib import Path

from pocketpack.fsutil import atomic_write
from pocketpack.retrieval.terms import searchable_text

log = logging.getLogger("pocketpack.retrieval")

FORMAT = 2
DIR_NAME = "lexical"
SIDECAR = "pocketpack.json"
WRITER_HEAP = 32_000_000       # bytes; tantivy needs >= 15 MB per thread
MAX_OPEN_WRITERS = 4           # per store: each holds a lock, a thread and its arena
_REBUILD_BATCH = 5000


def available() -> bool:
    """Whether the tantivy package is installed."""
    try:
        import tantivy  # noqa: F401 - imported only to see whether it is installed
    except ImportError:
        return False
    return True


def _schema():
    import tantivy

    builder = tantivy.SchemaBuilder()
    builder.add_unsigned_field("id", stored=False, indexed=True, fast=True)
    builder.add_text_field("grp", stored=False, tokenizer_name="raw", index_option="basic")
    # english stemming like FTS5's porter tokenizer; term frequencies for BM25, no positions
    builder.add_text_field("text", stored=False, tokenizer_name="en_stem", index_option="freq")
    return builder.build()


_ANALYZER = None
_ANALYZER_LOCK = threading.Lock()


def analyzed_terms(words: list[str]) -> list[str]:
    """The tokens tantivy indexed for these words: the ``en_stem`` analyzer of the schema
    (simple tokenizer, tokens over 40 bytes dropped, lowercase, English stemmer), rebuilt
    here because term queries are not tokenized."""
    global _ANALYZER
    if not words:
        return []
    if _ANALYZER is None:
        import tantivy

        with _ANALYZER_LOCK:
            if _ANALYZER is None:
                _ANALYZER = (tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
                             .filter(tantivy.Filter.remove_long(40)).filter(tantivy.Filter.lowercase())
                             .filter(tantivy.Filter.stemmer("english")).build())
    return list(dict.fromkeys(_ANALYZER.analyze(" ".join(words))))


class TantivyIndex:
    """The tantivy index of one collection (``grp`` filters within it)."""

    def __init__(self, engine: "TantivyEngine", collection_id: int):
        import tantivy

        self._tantivy = tantivy
        self.engine = engine
        self.store = store = engine.store
        self.collection_id = int(collection_id)
        self.path: Path = store.directory / DIR_NAME / f"c{self.collection_id}"
        self.schema = _schema()
        self.index = None
        self.generation: str | None = None
        self.seq = -1                  # the log position this process's searcher reflects
        self._writer = None
        self._writer_failed = False    # another process holds the writer: do not retry every call
        self._searcher = None

    # -- opening and rebuilding -----------------------------------------------------------
    def _state(self) -> tuple[int, str, int] | None:
        row = self.store.read_one("SELECT seq, generation, format FROM lexical_state WHERE collection_id = ?",
                             (self.collection_id,))
        return (int(row[0]), row[1], int(row[2])) if row else None

    def _sidecar_generation(self) -> str | None:
        try:
            meta = json.loads((self.path / SIDECAR).read_text())
        except (OSError, ValueError):
            return None
        return meta.get("generation") if meta.get("format") == FORMAT else None

    def _open(self) -> bool:
        """Open the index folder if SQLite says it is whole and ours; False otherwise."""
        state = self._state()
        if state is None or state[2] != FORMAT or self._sidecar_generation() != state[1]:
            return False
        try:
            self.index = self._tantivy.Index(self.schema, path=str(self.path), reuse=True)
            self.index.reload()
            self._searcher = self.index.searcher()
        except Exception as exc:  # noqa: BLE001 - a damaged cache is rebuilt, not fatal
            log.warning("lexical index at %s unreadable (%s); rebuilding it", self.path, exc)
            self.index = None
            return False
        self.generation, self.seq = state[1], -1
        return True

    def _get_writer(self):
        if self._writer is None and not self._writer_failed:
            self.engine.writer_opened(self)
            try:
                self._writer = self.index.writer(heap_size=WRITER_HEAP, num_threads=1)
            except Exception as exc:  # noqa: BLE001 - typically: another process holds the lock
                self._writer_failed = True
                log.info("lexical index %s is written by another process (%s); using FTS5 while it is behind",
                         self.path, exc)
        return self._writer

    def rebuild(self) -> bool:
        """A new index over every item of the store; False when another process writes it."""
        store = self.store
        self.close()
        tmp_generation = uuid.uuid4().hex
        if self.path.exists():
            # never follow a link out of the store; the folder is ours alone
            if self.path.is_symlink() or not self.path.is_dir():
                self.path.unlink()
            else:
                lock = self.path / ".tantivy-writer.lock"
                if lock.exists() and _locked_elsewhere(lock):
                    self._writer_failed = True
                    return False
                shutil.rmtree(self.path)
        self.path.mkdir(parents=True)
        self.engine.writer_opened(self)
        index = self._tantivy.Index(self.schema, path=str(self.path), reuse=False)
        writer = index.writer(heap_size=WRITER_HEAP, num_threads=1)
        with store.snapshot() as conn:  # one snapshot: the rows and the log head agree
            head = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM lexical_log").fetchone()[0]
            n = 0
            cursor = conn.execute("SELECT id, grp, text, context FROM items WHERE collection_id = ?",
                                  (self.collection_id,))
            while True:
                rows = cursor.fetchmany(_REBUILD_BATCH)
                if not rows:
                    break
                for row in rows:
                    writer.add_document(self._document(*row))
                n += len(rows)
        writer.commit()
        writer.wait_merging_threads()
        del writer
        atomic_write(self.path / SIDECAR, json.dumps({"format": FORMAT, "generation": tmp_generation}).encode())
        with store.transaction() as conn:
            conn.execute("INSERT INTO lexical_state(collection_id, seq, generation, format) VALUES (?, ?, ?, ?)"
                          " ON CONFLICT(collection_id) DO UPDATE SET seq = excluded.seq,"
                          " generation = excluded.generation, format = excluded.format",
                          (self.collection_id, head, tmp_generation, FORMAT))
            conn.execute("DELETE FROM lexical_log WHERE collection_id = ? AND seq <= ?", (self.collection_id, head))
        if n >= 10_000:
            log.info("lexical index of %s rebuilt: %d items", store.directory, n)
        self.index = index
        self.index.reload()
        self._searcher = self.index.searcher()
        self.generation, self.seq = tmp_generation, head
        self._writer_failed = False
        return True

    def _document(self, item_id, grp, text, context):
        doc = self._tantivy.Document()
        doc.add_unsigned("id", int(item_id))
        if grp is not None:
            doc.add_text("grp", str(grp))
        doc.add_text("text", searchable_text(text, context))
        return doc

    # -- keeping up with SQLite -----------------------------------------------------------
    def sync(self) -> bool:
        """Bring the index up to the log's head; True when searches may use it now."""
        store = self.store
        with store.lock:
            if self.index is None and not self._open() and not self.rebuild():
                return False
            state = self._state()
            if state is None or state[1] != self.generation:
                # another process rebuilt it (or the state row is gone): start over
                self.close()
                return self.sync() if self._open() or self.rebuild() else False
            pending = store.read("SELECT seq, item_id FROM lexical_log WHERE collection_id = ? AND seq > ? ORDER BY seq",
                               (self.collection_id, state[0]))
            if not pending:
                if self.seq != state[0]:
                    self.index.reload()  # another process committed: see its documents
                    self._searcher = self.index.searcher()
                    self.seq = state[0]
                return True
            writer = self._get_writer()
            if writer is None:
                return False
            head = pending[-1][0]
            ids = sorted({item_id for _, item_id in pending})
            # (delete_documents_by_term misses unsigned fields in tantivy-py: delete by query)
            for start in range(0, len(ids), 10_000):
                writer.delete_documents_by_query(
                    self._tantivy.Query.term_set_query(self.schema, "id", ids[start:start + 10_000]))
            for row in store.read_in("SELECT id, grp, text, context FROM items WHERE id IN ({marks})"
                                     " AND collection_id = ?", ids, after=(self.collection_id,)):
                writer.add_document(self._document(*row))
            writer.commit()
            with store.transaction() as conn:
                conn.execute("UPDATE lexical_state SET seq = MAX(seq, ?) WHERE collection_id = ?",
                             (head, self.collection_id))
                conn.execute("DELETE FROM lexical_log WHERE collection_id = ? AND seq <= ?", (self.collection_id, head))
            self.index.reload()
            self._searcher = self.index.searcher()
            self.seq = head
            return True

    # -- search ---------------------------------------------------------------------------
    def search(self, words: list[str], k: int, grp: str | None = None):
        """Top ``k`` (item id, BM25 score) for any of ``words`` (from ``query_terms``) in this
        collection, or None when the index cannot be brought up to date here (the caller
        falls back to FTS5)."""
        tokens = analyzed_terms(words)
        if not tokens or k <= 0:
            return []
        if not self.sync():
            return None
        tantivy = self._tantivy
        # built, never parsed: a term query per indexed token, any of them may match
        text_query = tantivy.Query.boolean_query(
            [(tantivy.Occur.Should, tantivy.Query.term_query(self.schema, "text", t)) for t in tokens])
        clauses = [(tantivy.Occur.Must, text_query)]
        if grp is not None:
            clauses.append((tantivy.Occur.Must, tantivy.Query.const_score_query(
                tantivy.Query.term_query(self.schema, "grp", str(grp)), 0.0)))
        searcher = self._searcher
        hits = searcher.search(tantivy.Query.boolean_query(clauses), int(k), count=False).hits
        if not hits:
            return []
        ids = searcher.fast_field_values("id", [address for _, address in hits])
        return [(int(i), float(score)) for (score, _), i in zip(hits, ids) if i is not None]

    def release_writer(self) -> None:
        """Let go of the writer (its lock, thread and memory); the next sync opens it again."""
        if self._writer is not None:
            try:
                self._writer.wait_merging_threads()
            except Exception:  # noqa: BLE001 - merges are an optimisation
                pass
            self._writer = None

    def drop(self) -> None:
        """Delete this collection's index folder (the collection is gone)."""
        self.close()
        if self.path.is_dir() and not self.path.is_symlink():
            shutil.rmtree(self.path, ignore_errors=True)

    def close(self) -> None:
        """Release the writer (and its lock) so another process can write the index."""
        self.release_writer()
        self.index = None
        self._searcher = None


class TantivyEngine:
    """The tantivy side of a store's lexical search: one ``TantivyIndex`` per collection,
    opened on first use, and at most ``MAX_OPEN_WRITERS`` writers open at a time."""

    name = "tantivy"

    def __init__(self, store):
        self.store = store
        self._indexes: dict[int, TantivyIndex] = {}
        self._writers: list[TantivyIndex] = []  # least recently used first

    def index(self, collection_id: int) -> TantivyIndex:
        """A collection's index, opened on first use."""
        with self.store.lock:
            if collection_id not in self._indexes:
                self._indexes[collection_id] = TantivyIndex(self, collection_id)
            return self._indexes[collection_id]

    def search(self, collection_id: int, words: list[str], k: int, grp: str | None = None):
        """Top ``k`` (item id, BM25 score), or None where this index cannot answer now."""
        return self.index(collection_id).search(words, k, grp)

    def writer_opened(self, index: TantivyIndex) -> None:
        """Keep at most MAX_OPEN_WRITERS tantivy writers open (a character each, in memory)."""
        with self.store.lock:
            if index in self._writers:
                self._writers.remove(index)
            self._writers.append(index)
            while len(self._writers) > MAX_OPEN_WRITERS:
                self._writers.pop(0).release_writer()

    def after_write(self, collection_id: int) -> None:
        """Apply a committed write to an open index now, so a search need not."""
        index = self._indexes.get(collection_id)
        if index is not None:
            try:
                index.sync()
            except Exception:  # noqa: BLE001 - the write is committed; the next search retries
                log.exception("lexical index update failed; it will be replayed")

    def drop(self, collection_id: int) -> None:
        """Delete a dropped collection's index folder."""
        with self.store.lock:
            index = self._indexes.pop(collection_id, None) or TantivyIndex(self, collection_id)
            if index in self._writers:
                self._writers.remove(index)
            index.drop()

    def close(self) -> None:
        for index in self._indexes.values():
            index.close()


def folder_bytes(store_directory: Path) -> int:
    """Size on disk of a store's tantivy indexes (0 when it has none)."""
    path = Path(store_directory) / DIR_NAME
    if not path.is_dir():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def remove_store_wide_layout(store_directory: Path) -> None:
    """Delete the files of the one-index-per-store layout (migration 6) left directly in
    ``lexical/``; the per-collection folders beside them stay."""
    path = Path(store_directory) / DIR_NAME
    if path.is_dir() and not path.is_symlink() and (path / "meta.json").is_file():
        for child in path.iterdir():
            if child.is_file() and not child.is_symlink():
                child.unlink(missing_ok=True)


def _locked_elsewhere(lock: Path) -> bool:
    """True when another process holds tantivy's writer lock on this folder."""
    import fcntl

    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
