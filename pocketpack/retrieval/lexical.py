"""Lexical search (BM25) of a store: the small public interface over its two engines.

- ``Lexical(store, engine)``: a store's BM25 search. ``search(collection_id, query, k, grp)``
  returns (item id, score, higher is better); tantivy answers where it is installed and
  chosen, SQLite's FTS5 wherever tantivy cannot (not installed, ``engine="fts5"``, or its
  index behind and written by another process). ``after_write``, ``drop`` and ``close`` keep
  the tantivy caches in step with the store's writes.
- The words of a query, shared by both engines, ``search.TermStats`` and other backends:
  ``query_terms`` (the one sanitiser: user text is never query syntax), ``stopwords``,
  ``stem_terms`` (FTS5's porter stems), ``fts_query`` / ``fts5_match`` / ``fts5_quote``.

The engines: ``fts.py`` (FTS5, always there, in the item's own transaction) and
``tantivy_index.py`` (a per-collection cache of SQLite, about 1 ms a query at any size).
They read the store only through its public methods (``read``, ``read_one``, ``read_in``,
``transaction``, ``snapshot``, ``lock``).
"""

from __future__ import annotations

from pathlib import Path

from pocketpack.retrieval.fts import Fts5Engine, document_frequencies
from pocketpack.retrieval.tantivy_index import (
    DIR_NAME,
    MAX_OPEN_WRITERS,
    TantivyEngine,
    TantivyIndex,
    available,
    folder_bytes,
    remove_store_wide_layout,
)
from pocketpack.retrieval.terms import (
    MAX_QUERY_CHARS,
    MAX_QUERY_TERMS,
    fts5_match,
    fts5_quote,
    fts_query,
    query_terms,
    searchable_text,
    stem_terms,
    stopwords,
)

ENGINES = ("auto", "tantivy", "fts5")

__all__ = ["DIR_NAME", "ENGINES", "MAX_OPEN_WRITERS", "MAX_QUERY_CHARS", "MAX_QUERY_TERMS", "Lexical",
           "TantivyIndex", "available", "choose_engine", "document_frequencies", "folder_bytes", "fts5_match",
           "fts5_quote", "fts_query", "query_terms", "searchable_text", "stem_terms", "stopwords"]


def choose_engine(engine: str) -> str:
    """The engine a store uses for ``engine`` (auto, tantivy or fts5): ``"tantivy"`` or
    ``"fts5"``. Raises ``ValueError`` (one line) for an unknown name or tantivy missing."""
    if engine not in ENGINES:
        raise ValueError(f"lexical must be auto, tantivy or fts5, not {engine!r}")
    if engine == "tantivy" and not available():
        raise ValueError("lexical='tantivy' needs the tantivy package: pip install tantivy")
    return "fts5" if engine == "fts5" or not available() else "tantivy"


class Lexical:
    """A store's BM25 search: tantivy where it can answer, else FTS5 (see the module's docstring)."""

    def __init__(self, store, engine: str = "auto"):
        self.engine = choose_engine(engine)
        self._fts5 = Fts5Engine(store)
        self._tantivy = TantivyEngine(store) if self.engine == "tantivy" else None
        remove_store_wide_layout(Path(store.directory))

    def search(self, collection_id: int, query: str, k: int, grp: str | None = None) -> list[tuple[int, float]]:
        """Top ``k`` (item id, BM25 score, higher is better) of one collection for the words of
        ``query`` (never syntax), optionally within one group."""
        words = query_terms(query)
        if self._tantivy is not None:
            hits = self._tantivy.search(collection_id, words, k, grp)
            if hits is not None:
                return hits
        return self._fts5.search(collection_id, words, k, grp)

    def index(self, collection_id: int) -> TantivyIndex | None:
        """A collection's tantivy index, opened on first use; None when FTS5 does the search."""
        return self._tantivy.index(collection_id) if self._tantivy is not None else None

    def after_write(self, collection_id: int) -> None:
        """A write to the collection committed: bring its open tantivy index up to date."""
        if self._tantivy is not None:
            self._tantivy.after_write(collection_id)

    def drop(self, collection_id: int) -> None:
        """The collection was deleted: delete its tantivy index."""
        if self._tantivy is not None:
            self._tantivy.drop(collection_id)

    def close(self) -> None:
        """Release the tantivy writers (and their locks) so another process can write."""
        if self._tantivy is not None:
            self._tantivy.close()
