"""Word statistics on both backends: the memory defaults (issue 12's junk rule, "small talk …
never crowd[s] out a fact", and query coverage) weigh each word by how rare it is among the
rows of the store; on PostgreSQL (issue 16: "the same behavioural suite on both backends",
"one user's data never another's") they must read the same numbers as on SQLite, count only
the rows the user's own store holds, and stay right through edits, deletes and two writer
processes at once. Against a real PostgreSQL with pgvector (tests/helpers/pg.py)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from pocketpack.memory.store import MemoryStore
from pocketpack.memory.turns import scope_to_user
from pocketpack.retrieval.fts import indexed_terms
from pocketpack.retrieval.search import TermStats
from pocketpack.retrieval.terms import searchable_text
from tests.helpers.pg import pg_cluster, pg_url  # noqa: F401 - fixtures used by name

pytestmark = pytest.mark.slow  # the real embedding model and a real PostgreSQL

REPO = Path(__file__).resolve().parents[1]


class Memoised:
    """The real model (all-MiniLM-L6-v2), each text embedded once for the whole module: the
    two backends get the very same vectors, so only their word statistics can differ."""

    def __init__(self):
        from pocketpack.retrieval.embed import get_embedder

        self.inner = get_embedder()
        self.name, self.dim = self.inner.name, self.inner.dim
        self.known: dict[str, np.ndarray] = {}

    def embed(self, texts):
        todo = list(dict.fromkeys(t for t in texts if t not in self.known))
        if todo:
            self.known.update(zip(todo, self.inner.embed(todo)))
        return np.stack([self.known[t] for t in texts])


@pytest.fixture(scope="module")
def embedder() -> Memoised:
    return Memoised()


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "store")
    return request.getfixturevalue("pg_cluster").new_database()


def _memory(location: str, tmp_path: Path, embedder, user: str | None = None) -> MemoryStore:
    if location.startswith("postgresql://"):
        memory = MemoryStore(tmp_path / "side", store_url=location, embedder=embedder)
        return scope_to_user(memory, user) if user else memory
    return MemoryStore(location, store_url="", embedder=embedder)


# A chat as a new user has it: mostly acknowledgements and small talk, a few facts.
HEADS = ["Ok,", "Sure,", "Right,", "Yes,", "Haha,", "Oh,", "Hm,", "Well,"]
TAILS = ["good to know.", "thanks!", "I know.", "sounds good.", "really?", "nice one.", "tell me more.",
         "what about you?", "do you like it?", "I see.", "that is good.", "you know what I mean?"]
FACTS = ["My dog Biscuit is a beagle.", "I moved to Brno last spring.", "My sister Lena is a marine biologist in Kiel.",
         "I work night shifts as a nurse at the children's hospital.", "My favourite food is mushroom risotto."]
SMALL_TALK = ["And you?", "ok", "Good to know!", "Do you like this?", "You know what I mean?"]
QUESTIONS = ["Do you know what my dog is called?", "What do you know about my sister?", "Do you like my job?",
             "What food do I love?", "Where do I live now?"]


def chat_rows() -> list[str]:
    fillers = [f"{h} {t}" for h in HEADS for t in TAILS] * 3  # 288: the junk rule judges stores of 200+ rows
    random.Random(7).shuffle(fillers)
    return fillers[:150] + FACTS + SMALL_TALK + fillers[150:]


def _fill(memory: MemoryStore, rows: list[str], character: str = "Aria") -> None:
    for i, text in enumerate(rows):
        memory.add(character, "user", text, chat="c1", row=i)


def _recalled(memory: MemoryStore, character: str = "Aria") -> dict[str, list[str]]:
    return {q: [h.text for h in memory.recall(character, q, k=5)] for q in QUESTIONS}


def _information(memory: MemoryStore, texts: list[str], character: str = "Aria") -> tuple[int, dict[str, float]]:
    stats = TermStats(memory.collection(character), texts)
    return stats.n, {t: round(stats.information(t), 9) for t in texts}


def test_the_defaults_rank_the_same_on_both_backends_and_keep_small_talk_out(pg_url, tmp_path, embedder):
    """The same memories, recalled with the defaults, rank the same on SQLite and PostgreSQL,
    and on both the junk rule keeps "And you?", "ok", "Good to know!", "Do you like this?" out
    of a fact question's results ("small talk … never crowd[s] out a fact"). On PostgreSQL
    every word used to count as rare, so "Do you like this?" and "You know what I mean?" were
    recalled above facts."""
    rows = chat_rows()
    sqlite, postgres = _memory(str(tmp_path / "store"), tmp_path, embedder), _memory(pg_url, tmp_path, embedder)
    try:
        for memory in (sqlite, postgres):
            _fill(memory, rows)
        texts = sorted(set(rows))
        n, information = _information(postgres, texts)
        assert (n, information) == _information(sqlite, texts)  # the very same numbers
        assert n == len(rows) and information["Do you like this?"] < 1.5 <= information[FACTS[0]]
        on_sqlite, on_postgres = _recalled(sqlite), _recalled(postgres)
        assert on_postgres == on_sqlite
        for question, hits in on_postgres.items():
            assert hits and hits[0] in FACTS, (question, hits)
            assert not set(hits) & (set(SMALL_TALK) | {f"{h} {t}" for h in HEADS for t in TAILS}), (question, hits)
    finally:
        sqlite.close()
        postgres.close()


def test_another_users_rows_do_not_move_a_users_word_statistics(pg_cluster, tmp_path, embedder):
    """Two users (and a shared document collection) in one PostgreSQL database: a user's word
    statistics and recall are those of a store holding only that user's memories (what SQLite
    gives them: their own folder), however often another user says the same words."""
    url = pg_cluster.new_database()
    rows = chat_rows()
    own = _memory(str(tmp_path / "alone"), tmp_path, embedder)
    alice = _memory(url, tmp_path / "a", embedder, user="alice")
    bob = _memory(url, tmp_path / "b", embedder, user="bob")
    single = _memory(url, tmp_path / "s", embedder)  # the database's unscoped memory (no --multi-user)
    try:
        _fill(own, rows)
        _fill(alice, rows)
        texts = sorted(set(rows))
        expected_stats, expected_hits = _information(own, texts), _recalled(own)
        assert expected_stats[0] == len(rows) and expected_stats[1]["Good to know!"] < 1.5
        assert _information(alice, texts) == expected_stats
        # bob repeats alice's facts (their words become common among *his* rows), in two characters
        bob_rows = [f"{fact} Yes, really: {fact.lower()}" for fact in FACTS] * 30
        _fill(bob, bob_rows, "Aria")
        _fill(bob, bob_rows[:40], "Max")
        # documents, shared by everyone, in their own collections (SQLite: their own folder)
        docs = single.store.collection("rag/notes")
        for i, fact in enumerate(FACTS * 20):
            docs.add(f"Chunk {i}: {fact}", key=f"chunk-{i}")
        assert _information(alice, texts) == expected_stats
        assert _recalled(alice) == expected_hits
        # bob's statistics count bob's rows: his facts' words are common there
        assert _information(bob, [FACTS[0]])[1][FACTS[0]] < expected_stats[1][FACTS[0]]
        # the unscoped memory counts neither user's rows nor the documents: alone, it is empty
        _fill(single, rows)
        assert _information(single, texts) == expected_stats
    finally:
        for memory in (own, alice, bob, single):
            memory.close()


def _recount(memory: MemoryStore) -> tuple[int, Counter]:
    """Rows and document frequencies counted afresh from the stored texts (every memory
    collection: what both backends count for a character's recall)."""
    store = memory.store
    names = store.collection_names("memory")
    items = [it for n in names for it in store.collection(n).items()]
    df: Counter = Counter()
    for terms in indexed_terms([searchable_text(it.text, it.context) for it in items]):
        df.update(terms)
    return len(items), df


def _check_counts(memory: MemoryStore, every_term: set[str]) -> None:
    rows, df = _recount(memory)
    assert memory.store.row_count("memory/Aria") == rows
    got = memory.store.document_frequencies(every_term, "memory/Aria")
    assert got == {t: n for t, n in df.items() if t in every_term}


def test_deletes_and_edits_keep_document_frequencies_right(location, tmp_path, embedder):
    """After edits, deletes, a replaced row, a forgotten chat and a forgotten character, the
    document frequencies and row count the recall reads equal a recount of what is stored, and
    every change moves the statistics' version (so no cached rarity outlives it)."""
    memory = _memory(location, tmp_path, embedder)
    try:
        texts = FACTS + SMALL_TALK + ["Biscuit chewed my favourite shoes.", "Lena visits from Kiel in June."]
        every_term = {t for terms in indexed_terms(texts + ["My cat Pixel sleeps all day.", "Biscuit is a corgi now."])
                      for t in terms}
        versions = [memory.store.word_statistics_version("memory/Aria")]

        def changed():
            versions.append(memory.store.word_statistics_version("memory/Aria"))
            assert versions[-1] != versions[-2]
            _check_counts(memory, every_term)

        ids = [memory.add("Aria", "user", t, chat="c1", row=i) for i, t in enumerate(texts)]
        memory.add("Bob", "user", "Biscuit is a corgi now.", chat="b1", row=0)
        changed()
        memory.edit(ids[0], "My cat Pixel sleeps all day.")
        changed()
        memory.delete(ids[2])
        changed()
        memory.add("Aria", "user", "Biscuit is a corgi now.", chat="c1", row=1)  # the same row: replaced
        changed()
        memory.add("Aria", "user", "Kiel is far.", chat="c2", row=0)
        assert memory.forget("Aria", chat="c2") == 1
        changed()
        memory.forget("Bob")
        changed()
        memory.pin(ids[3])  # no word changed: no new version needed, counts still right
        _check_counts(memory, every_term)
    finally:
        memory.close()


WRITER = textwrap.dedent("""
    import sys
    from pocketpack.memory.store import MemoryStore
    from tests.helpers.embedders import Precomputed  # the real model's vectors, saved by the test

    url, side, name, n, vectors = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]

    memory = MemoryStore(side, store_url=url, embedder=Precomputed(vectors))
    ids = []
    for i in range(n):
        ids.append(memory.add("Aria", "user", f"{name} says {i}: shared words and {name} words", chat=name, row=i))
        memory.add(name, "user", f"{name} notes {i} for itself", chat=name, row=i)
        if i % 3 == 2:
            memory.edit(ids[i - 1], f"{name} edited {i}: other shared words")
        if i % 4 == 3:
            memory.delete(ids[i - 3])
    print("done", flush=True)
""")


def test_two_writer_processes_leave_document_frequencies_equal_to_a_recount(pg_url, tmp_path, embedder):
    """Two processes adding, editing and deleting in one collection (and each in its own) at
    the same time: the document frequencies and row count equal a recount afterwards."""
    n = 24
    names = ("left", "right")
    texts = [t for name in names for i in range(n) for t in (
        f"{name} says {i}: shared words and {name} words", f"{name} notes {i} for itself",
        f"{name} edited {i}: other shared words")]
    vectors = tmp_path / "vectors.npz"
    np.savez(vectors, texts=np.array(texts), vectors=embedder.embed(texts), model=np.array(embedder.name))
    MemoryStore(tmp_path / "side", store_url=pg_url, embedder=embedder).close()  # the schema, made once
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, pg_url, str(tmp_path / "side"), name, str(n), str(vectors)],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)})
             for name in names]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert out.splitlines()[-1] == "done"
    memory = _memory(pg_url, tmp_path, embedder)
    try:
        rows, df = _recount(memory)
        assert rows == 2 * (n + n - n // 4)
        _check_counts(memory, set(df) | {"absent"})
    finally:
        memory.close()


def test_an_older_postgresql_store_gets_its_word_statistics_when_opened(pg_url, tmp_path, embedder):
    """A store made before the word statistics existed gains them when opened (its items'
    terms filled in by the migration): the same numbers and rankings as SQLite's."""
    import psycopg

    rows = chat_rows()
    memory = _memory(pg_url, tmp_path, embedder)
    try:
        _fill(memory, rows)
    finally:
        memory.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:  # as the store was before migration 3
        conn.execute("DROP TABLE pocketpack.item_terms, pocketpack.term_df, pocketpack.term_rows")
        conn.execute("DROP TRIGGER items_terms_ad ON pocketpack.items")
        conn.execute("DROP FUNCTION pocketpack.terms_added, pocketpack.terms_changed, pocketpack.terms_removed")
        conn.execute("DELETE FROM pocketpack.migrations WHERE version = 3")
    sqlite, postgres = _memory(str(tmp_path / "store"), tmp_path, embedder), _memory(pg_url, tmp_path, embedder)
    try:
        _fill(sqlite, rows)
        texts = sorted(set(rows))
        assert _information(postgres, texts) == _information(sqlite, texts)
        assert _recalled(postgres) == _recalled(sqlite)
        _check_counts(postgres, {t for terms in indexed_terms(texts) for t in terms})
    finally:
        sqlite.close()
        postgres.close()
