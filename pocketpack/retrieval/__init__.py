"""The retrieval core shared by memory and rag-enhancer.

- ``embed``: a local sentence-transformers model (default all-MiniLM-L6-v2, offline).
- ``store``: SQLite (WAL) for text, metadata and vectors; a faiss index per collection rebuilt
  from SQLite when missing or stale. Crash-safe, no pickle.
- ``lexical``: BM25 (tantivy, or SQLite's FTS5), its query words, stop words and stems.
- ``search``: dense + BM25 fused by reciprocal rank, recency/importance weighting, MMR.
"""

from pocketpack.retrieval.search import Hit, SearchOptions, search
from pocketpack.retrieval.store import Collection, Item, NewItem, Store, StoreDamaged, StoreError, content_hash

__all__ = ["Collection", "Hit", "Item", "NewItem", "SearchOptions", "Store", "StoreDamaged", "StoreError",
           "content_hash", "search"]
