"""Lexical search behind its own public interface (issue 17: "Lexical search (both engines, stop
words, stemming) behind a small public interface in its own module; one batching helper")."""

from __future__ import annotations

import numpy as np
import pytest

from pocketpack.retrieval import lexical
from pocketpack.retrieval.store import IN_BATCH, NewItem, Store


class _Embedder:
    """A fixed unit vector per text: lexical tests need no model."""

    name, dim = "hash-embedder", 8

    def embed(self, texts):
        out = []
        for t in texts:
            v = np.random.default_rng(abs(hash(t)) % 2**32).standard_normal(self.dim).astype(np.float32)
            out.append(v / np.linalg.norm(v))
        return np.stack(out) if out else np.zeros((0, self.dim), np.float32)


@pytest.fixture(params=["tantivy", "fts5"])
def store(tmp_path, request):
    with Store(tmp_path / "s", embedder=_Embedder(), lexical=request.param) as s:
        yield s


def test_one_interface_searches_on_either_engine(store):
    """``store.lexical.search`` answers the same on tantivy and FTS5: stemmed, per collection
    and group, and user text is never syntax."""
    notes = store.collection("notes")
    notes.upsert([NewItem("the heron stood in the shallows", grp="a"),
                  NewItem("a kingfisher dived for a fish", grp="b")])
    other = store.collection("other")
    other.add("a heron and an egret")
    assert store.lexical.engine == store.lexical_engine
    found = store.lexical.search(notes.id, 'herons" OR kingfisher:*', 10)
    assert {t.text for t in notes.get([i for i, _ in found])} == {"the heron stood in the shallows",
                                                                  "a kingfisher dived for a fish"}
    assert [i for i, _ in store.lexical.search(notes.id, "kingfisher heron", 10, grp="b")] == \
        [i for i, _ in notes.lexical("kingfisher", 10)]
    assert store.lexical.search(notes.id, "egret", 10) == []
    assert store.lexical.search(notes.id, "AND OR NOT ( ) *", 10) == []


def test_query_words_are_plain_words_without_stopwords():
    assert lexical.query_terms("What is read_file_async? The ANSWER!") == ["read", "file", "async", "answer"]
    assert "the" in lexical.stopwords() and "heron" not in lexical.stopwords()
    assert lexical.fts_query('say "hi" OR NOT') == '"say" OR "hi"'
    assert lexical.stem_terms(["herons", "running"]) == {"herons": "heron", "running": "run"}


def test_an_unknown_engine_is_one_line(tmp_path):
    with pytest.raises(ValueError, match="lexical must be auto, tantivy or fts5, not 'bm42'"):
        lexical.choose_engine("bm42")


def test_read_in_reads_more_values_than_one_statement_may_hold(store):
    """The one batching helper: an ``IN (...)`` over more values than SQLite allows at once."""
    notes = store.collection("notes")
    ids = notes.upsert([NewItem(f"note number {n}") for n in range(IN_BATCH * 2 + 7)])
    rows = store.read_in("SELECT id FROM items WHERE collection_id = ? AND id IN ({marks})", ids, before=(notes.id,))
    assert sorted(r[0] for r in rows) == sorted(ids)
    assert [it.id for it in notes.get(ids[::-1])] == ids[::-1]
    assert notes.delete_keys([]) == 0
