"""The retrieval core: a crash-safe SQLite + faiss store with hybrid search, on the real
all-MiniLM-L6-v2 model."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from pocketpack.retrieval import NewItem, SearchOptions, Store, StoreError, search
from pocketpack.retrieval.embed import Embedder, EmbeddingError, default_model_path, get_embedder
from pocketpack.retrieval.fts import register_functions
from pocketpack.retrieval.store import content_hash
from tests.helpers.embedders import CountingEmbedder

pytestmark = pytest.mark.slow  # every test here loads the real embedding model

REPO = Path(__file__).resolve().parents[1]

FACTS = [
    "I adopted a grey cat called Whiskers last spring.",
    "My sister Marguerite lives in Lisbon and teaches chemistry.",
    "Every Saturday morning I go rock climbing at the gym downtown.",
    "I am allergic to peanuts, so I never eat satay.",
    "My first car was a red 1998 Volvo estate.",
    "The quarterly report for Zentrix Corp is due on the fifteenth.",
]



@pytest.fixture(params=["tantivy", "fts5"])
def store(tmp_path, request):
    """A store on each lexical engine: tantivy, and FTS5, which answers where tantivy cannot."""
    s = Store(tmp_path / "store", embedder=CountingEmbedder(), lexical=request.param)
    yield s
    s.close()


def texts(hits):
    return [h.item.text for h in hits]


def test_default_model_is_the_bundled_minilm_and_offline():
    path = default_model_path()
    assert (path / "model.safetensors").is_file()
    emb = get_embedder()
    assert emb.dim == 384 and os.environ.get("HF_HUB_OFFLINE") == "1"
    vecs = emb.embed(["a cat", "a kitten", "a tax return"])
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2]


def test_a_missing_local_model_path_is_one_clear_error(tmp_path):
    with pytest.raises(EmbeddingError, match="not found"):
        Embedder(tmp_path / "no-such-model")


def test_dense_finds_paraphrases_and_bm25_finds_rare_names(store):
    coll = store.collection("facts")
    coll.upsert([NewItem(t, key=str(i)) for i, t in enumerate(FACTS)])
    assert texts(search([coll], "what pet do I own?", 1)) == [FACTS[0]]
    assert texts(search([coll], "which food makes me sick", 1)) == [FACTS[3]]
    # a made-up company name: a lexical match, whatever the embedding thinks of it
    hits = search([coll], "Zentrix deadline", 2)
    assert hits[0].item.text == FACTS[5] and hits[0].lexical_rank == 1
    dense_only = search([coll], "Zentrix", 6, options=SearchOptions(mode="dense"))
    assert all(h.lexical_rank is None for h in dense_only)


def test_the_same_text_is_embedded_once_and_keys_upsert(store):
    coll = store.collection("facts")
    coll.upsert([NewItem(FACTS[0], key="a"), NewItem(FACTS[1], key="b")])
    assert store.embedder.calls == 2
    other = store.collection("other")
    other.add(FACTS[0])                      # same text, other collection: no new embedding
    coll.upsert([NewItem(FACTS[1], key="b")])  # unchanged keyed item: nothing to do
    assert store.embedder.calls == 2
    first_id = coll.by_key("a").id
    assert coll.upsert([NewItem(FACTS[2], key="a")]) == [first_id]  # replaced in place
    assert coll.count() == 2 and store.embedder.calls == 3
    assert texts(search([coll], "climbing", 1)) == [FACTS[2]]
    assert FACTS[0] not in texts(search([coll], "cat Whiskers", 5))


def test_delete_group_filter_and_collection_isolation(store):
    a, b = store.collection("alice"), store.collection("bob")
    a.upsert([NewItem(FACTS[0], grp="chat1"), NewItem(FACTS[1], grp="chat2"), NewItem(FACTS[2], grp="chat2")])
    b.add(FACTS[3])
    assert texts(search([a], "peanuts", 5)) and FACTS[3] not in texts(search([a], "peanuts allergy", 5))
    assert set(texts(search([a], "family", 5, grp="chat2"))) <= {FACTS[1], FACTS[2]}
    assert a.delete_group("chat2") == 2
    assert texts(search([a], "sister in Lisbon", 5)) == [FACTS[0]]
    ids = [h.item.id for h in search([a], "cat", 5)]
    assert a.delete(ids) == 1 and search([a], "cat", 5) == []


def test_user_text_is_never_fts_syntax(store):
    coll = store.collection("facts")
    coll.add(FACTS[0])
    for query in ['"unbalanced', "NEAR(cat", "cat AND OR NOT", "coll:c1", "*", "-cat", "'); DROP TABLE items; --"]:
        search([coll], query, 3)  # must not raise
    assert coll.count() == 1


def test_faiss_index_is_saved_not_pickled_and_rebuilt_when_missing(tmp_path):
    s = Store(tmp_path, embedder=CountingEmbedder())
    coll = s.collection("facts")
    coll.upsert([NewItem(t) for t in FACTS])
    assert texts(search([coll], "car", 1)) == [FACTS[4]]
    s.close()
    files = sorted(p.name for p in (tmp_path / "index").iterdir())
    assert [f.rsplit(".", 1)[1] for f in files] == ["faiss", "json"]
    faiss_file = next((tmp_path / "index").glob("*.faiss"))
    assert not faiss_file.read_bytes().startswith(b"\x80")  # not a pickle stream

    # reopen: more writes after the save are replayed from the change log
    s = Store(tmp_path, embedder=CountingEmbedder())
    coll = s.collection("facts")
    coll.add("I broke my left wrist skiing in Andorra.")
    coll.delete([coll.items()[0].id])
    assert texts(search([coll], "ski injury", 1)) == ["I broke my left wrist skiing in Andorra."]
    assert FACTS[0] not in texts(search([coll], "cat", 7))
    s.conn.close()  # no flush: the saved index is now stale

    for path in (tmp_path / "index").iterdir():
        if path.suffix == ".faiss":
            path.write_bytes(b"garbage")  # damaged cache file
    s = Store(tmp_path, embedder=CountingEmbedder())
    coll = s.collection("facts")
    assert texts(search([coll], "ski injury", 1)) == ["I broke my left wrist skiing in Andorra."]
    assert s.embedder.calls == 1  # the query only: rebuilt from SQLite's vectors, nothing re-embedded
    s.close()


def test_approximate_index_beyond_the_threshold_supports_edits(tmp_path):
    s = Store(tmp_path, embedder=CountingEmbedder(), approx_threshold=200)
    coll = s.collection("many")
    filler = [f"Note {i}: the meeting about budget line {i} moved to room {i % 17}." for i in range(240)]
    coll.upsert([NewItem(t) for t in filler + FACTS])
    assert texts(search([coll], "my sister the chemistry teacher", 1)) == [FACTS[1]]
    assert s._indexes[coll.id].kind == "ivf"
    target = coll.items(limit=1)[0]
    coll.update(target.id, text="I keep bees on the roof of my flat.")
    assert texts(search([coll], "beekeeping hobby", 1)) == ["I keep bees on the roof of my flat."]
    s.close()
    s = Store(tmp_path, embedder=CountingEmbedder(), approx_threshold=200)
    coll = s.collection("many")
    assert texts(search([coll], "beekeeping hobby", 1)) == ["I keep bees on the roof of my flat."]
    assert s._indexes[coll.id].kind == "ivf"
    s.close()


def test_recency_and_importance_weighting_reorder_near_ties(store):
    coll = store.collection("facts")
    now = time.time()
    old = coll.add("My favourite colour is green.", time=now - 400 * 86400)
    new = coll.add("My favourite colour is blue now.", time=now)
    plain = search([coll], "favourite colour", 2, options=SearchOptions(recency_weight=0.0))
    recent = search([coll], "favourite colour", 2, options=SearchOptions(recency_weight=1.0, half_life_days=30))
    assert recent[0].item.id == new and recent[0].parts["recency"] > 0.9
    coll.update(old, importance=1.0)
    important = search([coll], "favourite colour", 2, options=SearchOptions(importance_weight=2.0))
    assert important[0].item.id == old
    assert {h.item.id for h in plain} == {old, new}


def test_mmr_drops_near_duplicates(store):
    coll = store.collection("facts")
    coll.upsert([NewItem("I love hiking in the Alps."), NewItem("I love hiking in the Alps!"),
                 NewItem("I enjoy mountain walks in the Alps."), NewItem("I collect vinyl records.")])
    hits = search([coll], "hiking", 4, options=SearchOptions(duplicate_cosine=0.95))
    assert sum(t.startswith("I love hiking in the Alps") for t in texts(hits)) == 1


def test_schema_is_migrated_once_and_a_newer_store_is_refused(tmp_path):
    Store(tmp_path, embedder=CountingEmbedder()).close()
    conn = sqlite3.connect(tmp_path / "store.sqlite3")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert [r[0] for r in conn.execute("SELECT number FROM _migrations")] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    conn.execute("INSERT INTO _migrations VALUES (99, 0)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer pocketpack"):
        Store(tmp_path, embedder=CountingEmbedder())


def test_a_store_at_schema_1_is_upgraded_in_place(tmp_path):
    from pocketpack.retrieval import migrations

    conn = sqlite3.connect(tmp_path / "store.sqlite3", isolation_level=None)
    first = migrations.MIGRATIONS[:1]
    original, migrations.MIGRATIONS = migrations.MIGRATIONS, first
    try:
        migrations.apply(conn)
    finally:
        migrations.MIGRATIONS = original
    conn.execute("INSERT INTO collections(id, name, model, dim, created) VALUES (1, 'old', ?, 384, 0)",
                 (get_embedder().name,))
    vec = get_embedder().embed([FACTS[4]])[0]
    from pocketpack.retrieval import content_hash

    conn.execute("INSERT INTO vectors VALUES (?, ?, ?)", (get_embedder().name, content_hash(FACTS[4]), vec.tobytes()))
    conn.execute("INSERT INTO items(collection_id, text, hash, time) VALUES (1, ?, ?, 0)", (FACTS[4], content_hash(FACTS[4])))
    conn.close()
    s = Store(tmp_path, embedder=CountingEmbedder())
    coll = s.collection("old")
    assert texts(search([coll], "Volvo", 1)) == [FACTS[4]]
    coll.add("Yes, that one.", context="Was the Saab your second car?")   # context: found, not shown
    hits = search([coll], "Saab", 1, options=SearchOptions(mode="lexical"))
    assert texts(hits) == ["Yes, that one."] and hits[0].item.context == "Was the Saab your second car?"
    s.close()


def test_store_refuses_a_file_as_directory(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(StoreError, match="not a directory"):
        Store(tmp_path / "f")


WRITER = textwrap.dedent('''
    import sys, time
    from pocketpack.retrieval import Store, NewItem
    store = Store(sys.argv[1], save_every=5)
    coll = store.collection("crash")
    n = 0
    while True:
        ids = coll.upsert([NewItem(f"message number {n} about topic {n % 7} tag{n}", key=f"k{n}")])
        print(f"ack k{n} {ids[0]}", flush=True)   # acknowledged: upsert returned
        if n % 3 == 0:
            from pocketpack.retrieval import search
            search([coll], "topic", 2)            # keeps the faiss cache (and its saves) busy
        n += 1
''')


def test_kill_minus_9_mid_write_loses_nothing_acknowledged(tmp_path):
    directory = tmp_path / "crash-store"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(directory)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=REPO)
    acked: dict[str, int] = {}
    deadline = time.time() + 240
    try:
        while len(acked) < 40 and time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            _, key, item_id = line.split()
            acked[key] = int(item_id)
        os.kill(proc.pid, signal.SIGKILL)  # mid-loop: a write is usually in flight
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL and len(acked) >= 40

    s = Store(directory)
    coll = s.collection("crash")
    for key, item_id in acked.items():
        item = coll.by_key(key)
        assert item is not None and item.id == item_id
    # the faiss cache agrees with SQLite after the crash: every item is findable
    last = max(acked, key=lambda k: int(k[1:]))
    n = int(last[1:])
    hits = search([coll], f"message number {n} about topic {n % 7} tag{n}", 3)
    assert hits[0].item.key == last
    # and so does the tantivy BM25 cache: every acknowledged item is found by its own word
    for key, item_id in acked.items():
        assert [i for i, _ in coll.lexical(key.replace("k", "tag"), 1)] == [item_id]
    assert s.lexical_engine == "tantivy" and s.lexical_index(coll.id).sync()
    assert s.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    s.close()


class _HashEmbedder:
    """A fast stand-in for lexical tests: a fixed unit vector per text."""

    name, dim = "hash-test", 8

    def embed(self, texts):
        out = []
        for t in texts:
            rng = np.random.default_rng(int(content_hash(t)[:8], 16))
            v = rng.normal(size=self.dim).astype(np.float32)
            out.append(v / np.linalg.norm(v))
        return np.stack(out)


def test_lexical_search_ignores_a_term_in_most_rows_but_keeps_the_rarest(tmp_path):
    with Store(tmp_path / "s", embedder=_HashEmbedder(), common_term_min_rows=0, lexical="fts5") as s:
        notes = s.collection("notes")
        notes.upsert([NewItem(text=f"apple note number {i}") for i in range(40)]
                     + [NewItem(text="a zebra crossed the road")])
        found = notes.get([i for i, _ in notes.lexical("apple zebra", 10)])
        assert [it.text for it in found] == ["a zebra crossed the road"]
        assert len(notes.lexical("apples", 10)) == 10  # every term common: the rarest still searches
        s.common_term_ratio = None  # off: every term counts again
        assert len(notes.lexical("apple zebra", 10)) == 10


def test_common_terms_are_counted_per_collection(tmp_path):
    with Store(tmp_path / "s", embedder=_HashEmbedder(), common_term_min_rows=0, lexical="fts5") as s:
        s.collection("a").upsert([NewItem(text=f"apple pie recipe {i}") for i in range(60)])
        b = s.collection("b")
        b.upsert([NewItem(text=f"weather report {i}") for i in range(40)]
                 + [NewItem(text="one apple a day"), NewItem(text="a zebra crossed the road")])
        found = {it.text for it in b.get([i for i, _ in b.lexical("apple zebra", 10)])}
        assert found == {"one apple a day", "a zebra crossed the road"}


def test_prune_vectors_drops_embeddings_no_item_uses(tmp_path):
    with Store(tmp_path / "s", embedder=_HashEmbedder()) as s:
        c = s.collection("c")
        ids = c.upsert([NewItem(text="kept"), NewItem(text="gone")])
        c.delete([ids[1]])
        assert s.prune_vectors() == 1
        assert s.prune_vectors() == 0
        assert s._prune_vectors() == 0  # the earlier private name still works
        assert [it.text for it in c.get(ids)] == ["kept"]


def test_prune_checks_only_what_changed_and_keeps_what_another_item_uses(tmp_path):
    with Store(tmp_path / "s", embedder=_HashEmbedder()) as s:
        a, b = s.collection("a"), s.collection("b")
        ids = a.upsert([NewItem(text="shared line", key="s"), NewItem(text="first draft", key="d")])
        b.upsert([NewItem(text="shared line")])
        a.delete([ids[0]])
        a.upsert([NewItem(text="second draft", key="d")])  # re-texted: the first draft's vector is orphaned
        assert s.prune_vectors() == 1  # "first draft"; "shared line" is still b's
        vectors = {h for (h,) in s.conn.execute("SELECT hash FROM vectors")}
        assert vectors == {content_hash("shared line"), content_hash("second draft")}
        s.drop_collection("b")
        assert {h for (h,) in s.conn.execute("SELECT hash FROM vectors")} == {content_hash("second draft")}


def test_an_older_store_has_its_orphans_pruned_after_the_upgrade(tmp_path):
    with Store(tmp_path / "s", embedder=_HashEmbedder()) as s:
        c = s.collection("c")
        ids = c.upsert([NewItem(text="kept"), NewItem(text="orphan from before")])
    # the store as schema 7 wrote it: no candidate table, an item deleted without a record
    db = sqlite3.connect(tmp_path / "s" / "store.sqlite3")
    register_functions(db)  # the word-count triggers (migration 11) call it on delete
    db.executescript("DROP TRIGGER items_gc_ad; DROP TRIGGER items_gc_au; DROP TRIGGER collections_gc_model;"
                     "DROP TABLE vector_gc; DELETE FROM _migrations WHERE number = 8;")
    db.execute("DELETE FROM items WHERE id = ?", (ids[1],))
    db.commit()
    db.close()
    with Store(tmp_path / "s", embedder=_HashEmbedder()) as s:
        assert s.prune_vectors() == 1
        assert [h for (h,) in s.conn.execute("SELECT hash FROM vectors")] == [content_hash("kept")]


def test_the_row_count_follows_writes_and_an_older_store_gets_it_counted(tmp_path):
    """Word statistics read the store's row count after every write: kept by triggers (a
    COUNT(*) of 100k rows cost ~7 ms a chat turn), counted once for a store that had none."""
    with Store(tmp_path / "s", embedder=_HashEmbedder()) as s:
        a, b = s.collection("a"), s.collection("b")
        ids = a.upsert([NewItem(text=f"line {n}", key=f"k{n}") for n in range(5)])
        b.upsert([NewItem(text="other"), NewItem(text="another")])
        a.upsert([NewItem(text="line 0 again", key="k0")])  # the same key: replaced, not added
        a.delete(ids[3:])
        assert s.row_count() == 5 == s.conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        s.drop_collection("b")
        assert s.row_count() == 3
    db = sqlite3.connect(tmp_path / "s" / "store.sqlite3")  # as schema 9 left it
    db.executescript("DROP TRIGGER items_rows_ai; DROP TRIGGER items_rows_ad; DROP TABLE item_rows;"
                     "DELETE FROM _migrations WHERE number = 10;")
    db.close()
    with Store(tmp_path / "s", embedder=_HashEmbedder()) as s:
        assert s.row_count() == 3
        s.collection("a").upsert([NewItem(text="one more")])
        assert s.row_count() == 4


def _vocabulary_counts(store) -> dict[str, int]:
    """What FTS5's own vocabulary counts (the walk ``term_df`` spares a chat turn)."""
    return dict(store.conn.execute("SELECT term, doc FROM items_fts_vocab"))


def test_word_counts_follow_every_write_and_an_older_store_gets_them_counted(tmp_path):
    """Word statistics read each word's row count from ``term_df`` (kept by triggers; FTS5's
    vocabulary walks a common word's whole posting list, milliseconds a turn at 100k rows): it
    must agree with that vocabulary after inserts, replaced keys, edits of text and context,
    deletes and a dropped collection, and be counted once for a store from before it."""
    def counts(store):
        return dict(store.conn.execute("SELECT term, df FROM term_df WHERE df > 0"))

    with Store(tmp_path / "s", embedder=_HashEmbedder()) as s:
        a, b = s.collection("a"), s.collection("b")
        ids = a.upsert([NewItem(text=f"The heron number {n} stood", key=f"k{n}") for n in range(5)])
        b.upsert([NewItem(text="Herons and egrets", context="Do you watch birds?"), NewItem(text="another")])
        a.upsert([NewItem(text="A kingfisher now", key="k0", context="Which bird?")])  # replaced
        a.upsert([NewItem(text="A kingfisher now", key="k0", context="Which fish-eating bird?")])  # context edit
        a.update(ids[1], text="The heron flew off")
        a.delete(ids[3:])
        assert counts(s) == _vocabulary_counts(s) and counts(s)["heron"] == 3
        assert s.document_frequencies(["heron", "kingfish", "egret", "number", "nowhere"]) == \
            {"heron": 3, "kingfish": 1, "egret": 1, "number": 1}
        s.drop_collection("b")
        assert counts(s) == _vocabulary_counts(s) and "egret" not in s.document_frequencies(["egret"])
    db = sqlite3.connect(tmp_path / "s" / "store.sqlite3")  # as schema 10 left it
    db.executescript("DROP TRIGGER items_df_ai; DROP TRIGGER items_df_ad; DROP TRIGGER items_df_au;"
                     "DROP TABLE term_df; DELETE FROM _migrations WHERE number = 11;")
    db.close()
    with Store(tmp_path / "s", embedder=_HashEmbedder()) as s:
        assert counts(s) == _vocabulary_counts(s) and counts(s)["heron"] == 2
        s.collection("a").upsert([NewItem(text="one more heron")])
        assert counts(s) == _vocabulary_counts(s) and counts(s)["heron"] == 3
    db = sqlite3.connect(tmp_path / "s" / "store.sqlite3")  # a writer that cannot keep the counts
    with pytest.raises(sqlite3.OperationalError, match="pocketpack_fts_terms"):
        db.execute("DELETE FROM items")
    db.close()


def _lexical_texts(coll, query, k=10, grp=None):
    return {it.text for it in coll.get([i for i, _ in coll.lexical(query, k, grp)])}


def test_the_tantivy_index_follows_edits_deletes_and_groups(tmp_path):
    with Store(tmp_path / "s", embedder=_HashEmbedder()) as s:
        notes = s.collection("notes")
        notes.upsert([NewItem("the heron stood in the shallows", key="a", grp="chat-1"),
                      NewItem("a kingfisher dived for a fish", key="b", grp="chat-2")])
        assert _lexical_texts(notes, "heron") == {"the heron stood in the shallows"}
        assert _lexical_texts(notes, "herons") == {"the heron stood in the shallows"}  # stemmed
        notes.upsert([NewItem("the egret stood in the shallows", key="a", grp="chat-1")])  # edited
        assert _lexical_texts(notes, "heron") == set()
        assert _lexical_texts(notes, "egret shallows") == {"the egret stood in the shallows"}
        assert _lexical_texts(notes, "kingfisher egret", grp="chat-2") == {"a kingfisher dived for a fish"}
        notes.upsert([NewItem("a kingfisher dived for a fish", key="b", grp="chat-1")])  # moved chat
        assert _lexical_texts(notes, "kingfisher", grp="chat-2") == set()
        notes.upsert([NewItem("the reply", key="c", context="asked about the otter")])
        assert _lexical_texts(notes, "otter") == {"the reply"}  # context finds, never shows
        notes.delete_keys(["b"])
        assert _lexical_texts(notes, "kingfisher") == set()
        other = s.collection("other")
        other.upsert([NewItem("a heron and an egret")])
        assert _lexical_texts(notes, "egret") == {"the egret stood in the shallows"}
        s.drop_collection("notes")
        assert _lexical_texts(other, "egret") == {"a heron and an egret"}
        assert s.stats()["lexical_engine"] == "tantivy" and s.stats()["lexical_bytes"] > 0


def test_the_tantivy_index_is_rebuilt_when_missing_damaged_or_not_ours(tmp_path):
    import shutil

    directory = tmp_path / "s"
    with Store(directory, embedder=_HashEmbedder()) as s:
        s.collection("notes").upsert([NewItem(f"note {i} about walrus {i}") for i in range(30)])
        assert len(s.collection("notes").lexical("walrus", 50)) == 30
    with Store(directory, embedder=_HashEmbedder()) as s:
        cid = s.collection("notes").id
    for damage in ("delete", "garbage", "foreign"):
        folder = directory / "lexical" / f"c{cid}"
        if damage == "delete":
            shutil.rmtree(folder)
        elif damage == "garbage":
            (folder / "meta.json").write_text("{ not json")
        else:  # another store's index copied in: its generation is not the one SQLite recorded
            (folder / "pocketpack.json").write_text('{"format": 1, "generation": "someone-else"}')
        with Store(directory, embedder=_HashEmbedder()) as s:
            notes = s.collection("notes")
            assert len(notes.lexical("walrus", 50)) == 30, damage
            assert s.lexical_engine == "tantivy"


def test_a_second_writer_never_gets_stale_lexical_results(tmp_path):
    """Two Store objects on one folder (TGWUI and the CLI): only one can write tantivy; the other
    answers from FTS5 while tantivy is behind, and the writer replays what it missed."""
    directory = tmp_path / "s"
    first = Store(directory, embedder=_HashEmbedder())
    second = Store(directory, embedder=_HashEmbedder())
    try:
        a = first.collection("notes")
        a.upsert([NewItem("the lighthouse keeper", key="x")])
        assert _lexical_texts(a, "lighthouse") == {"the lighthouse keeper"}  # first holds the writer now
        b = second.collection("notes")
        b.upsert([NewItem("the ferry timetable", key="y")])
        assert _lexical_texts(b, "ferry") == {"the ferry timetable"}
        b.upsert([NewItem("the harbour master", key="x")])
        assert _lexical_texts(b, "lighthouse") == set() and _lexical_texts(b, "harbour") == {"the harbour master"}
        # the writer catches up from the log
        assert _lexical_texts(a, "ferry") == {"the ferry timetable"}
        assert _lexical_texts(a, "lighthouse") == set() and _lexical_texts(a, "harbour") == {"the harbour master"}
        assert first.conn.execute("SELECT COUNT(*) FROM lexical_log").fetchone()[0] == 0
    finally:
        second.close()
        first.close()


def test_feedback_search_keeps_filters_and_reads_best_first(store):
    coll = store.collection("notes")
    ids = coll.upsert([NewItem(text=t, grp="a" if i % 2 else "b") for i, t in enumerate(FACTS)])
    opts = SearchOptions(feedback_hits=3)
    hits = search([coll], "Which pet did I adopt?", 3, options=opts)
    assert hits[0].item.text == FACTS[0] and len(hits) == 3
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert len({h.item.id for h in hits}) == 3
    in_a = search([coll], "Which pet did I adopt?", 5, options=opts, grp="a")
    assert in_a and all(h.item.grp == "a" for h in in_a)
    assert ids[1] not in {h.item.id for h in search([coll], "sister in Lisbon", 5, options=opts, exclude={ids[1]})}


def test_bf16_embeddings_match_fp32_and_a_bad_precision_is_one_clear_error():
    fp32 = Embedder(precision="fp32")
    bf16 = Embedder(precision="bf16")
    texts = ["I adopted a grey cat called Whiskers.", "The quarterly report is due on the fifteenth."]
    a, b = fp32.embed(texts), bf16.embed(texts)
    assert b.dtype == np.float32 and np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    assert (a * b).sum(axis=1).min() > 0.999   # one model name serves both: vectors agree
    with pytest.raises(EmbeddingError, match="precision"):
        Embedder(precision="fp8")


def test_each_collection_ranks_by_its_own_bm25_statistics(tmp_path):
    """A word common in one character's memories does not lower its weight in another's."""
    with Store(tmp_path / "s", embedder=_HashEmbedder()) as s:
        s.collection("a").upsert([NewItem(f"apple harvest report {i}") for i in range(200)])
        b = s.collection("b")
        b.upsert([NewItem("an apple"), NewItem("a zebra"), NewItem("a kettle")])
        scores = {it.text: score for it, (_, score) in zip(b.get([i for i, _ in b.lexical("apple zebra", 5)]),
                                                           b.lexical("apple zebra", 5))}
        assert set(scores) == {"an apple", "a zebra"}
        assert scores["an apple"] == pytest.approx(scores["a zebra"])
        s.drop_collection("a")
        assert not (tmp_path / "s" / "lexical" / "c1").exists()   # its index went with it
