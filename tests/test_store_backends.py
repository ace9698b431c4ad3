"""Issue 16: "A storage backend interface with the current SQLite store as the default and a
PostgreSQL + pgvector implementation … the memory and rag CLIs … work on either", tested
against a real PostgreSQL with pgvector on 127.0.0.1 (tests/helpers/pg.py, one server per
session): "the same behavioural suite on both backends (add/recall/edit/delete/import/export
…, kill -9 during writes loses nothing acknowledged, two writer processes at once)"; "a wrong
URL, a server that is down or lacks pgvector → one line naming what is missing …;
credentials never printed"; "pocketpack store copy SRC DST … idempotent, with progress,
verifying counts"."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pocketpack.cli import main
from tests.helpers.pg import PgCluster, pg_cluster, pg_url  # noqa: F401 - fixtures used by name

REPO = Path(__file__).resolve().parents[1]
SECRET = "Sup3r-s3cret-pw"


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request, tmp_path) -> str:
    """A new, empty store on each backend: a folder, or a fresh database's URL."""
    if request.param == "sqlite":
        return str(tmp_path / "store")
    return request.getfixturevalue("pg_cluster").new_database(password=SECRET)


def _memory(location: str, tmp_path: Path):
    from pocketpack.memory.store import MemoryStore

    if location.startswith("postgresql://"):
        return MemoryStore(tmp_path / "side", store_url=location)
    return MemoryStore(location, store_url="")


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


# -- the same behaviour on both backends --------------------------------------------------------
def test_memory_add_recall_edit_delete(location, tmp_path):
    """Memories written, recalled (hybrid: dense + lexical), edited and deleted behave the same
    on SQLite and PostgreSQL, and one character's memories never answer for another."""
    memory = _memory(location, tmp_path)
    try:
        dog = memory.add("Aria", "user", "My dog Biscuit is a beagle.", chat="c1", row=0)
        memory.add("Aria", "user", "I grow tomatoes on my balcony.", chat="c1", row=1)
        memory.add("Aria", "assistant", "Astronomy is your favourite hobby.", chat="c2", row=0)
        memory.add("Bob", "user", "My dog Rex is a poodle.", chat="b1", row=0)
        hits = memory.recall("Aria", "what breed is my dog?", k=2)
        assert hits[0].id == dog and hits[0].text == "My dog Biscuit is a beagle."
        assert all("Rex" not in h.text for h in memory.recall("Aria", "Rex poodle", k=5))
        # a word only the lexical side can match (a name) is found by it
        assert memory.recall("Aria", "Biscuit", k=1)[0].id == dog

        memory.add("Aria", "user", "My dog Biscuit is a corgi.", chat="c1", row=0)  # same row: replaces
        assert memory.get(dog).text == "My dog Biscuit is a corgi."
        assert memory.counts() == {"Aria": 3, "Bob": 1}
        memory.edit(dog, "My cat Pixel sleeps all day.")
        assert memory.recall("Aria", "which pet sleeps all day", k=1)[0].id == dog
        assert memory.recall("Aria", "Pixel", k=1)[0].text == "My cat Pixel sleeps all day."
        memory.pin(dog)
        assert [m.id for m in memory.pinned("Aria")] == [dog]
        memory.delete(dog)
        assert memory.get(dog) is None
        assert all(h.id != dog for h in memory.recall("Aria", "Pixel cat", k=5))
        assert memory.forget("Aria", chat="c2") == 1
        assert memory.counts() == {"Aria": 1, "Bob": 1}
    finally:
        memory.close()


def test_memory_cli_import_export_on_both(location, tmp_path, capsys):
    """`pocketpack memory --store DIR|postgresql://… import/recall/export`: the same forms, the
    same results; an import run twice adds nothing."""
    jsonl = tmp_path / "in.jsonl"
    records = [{"character": "Aria", "role": "user", "text": "I grow tomatoes on my balcony.", "chat": "c1", "row": 0,
                "time": "2025-01-02T10:00:00Z"},
               {"character": "Aria", "role": "assistant", "text": "You told me you love astronomy.",
                "time": "2025-02-01T00:00:00Z"},
               {"character": "Bob", "role": "user", "text": "My dog Rex is a poodle.", "time": "2025-03-01T00:00:00Z"}]
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
    store = ["--store", location]
    for _ in range(2):
        code, _, err = _cli(capsys, "memory", *store, "import", str(jsonl))
        assert code == 0, err
    assert "3 already present" in err
    code, out, err = _cli(capsys, "memory", *store, "recall", "--character", "Aria", "--query",
                          "what vegetables do I grow", "--k", "1", "--json")
    assert code == 0, err
    assert json.loads(out)[0]["text"] == "I grow tomatoes on my balcony."
    out_file = tmp_path / "out.jsonl"
    code, _, err = _cli(capsys, "memory", *store, "export", "--out", str(out_file))
    assert code == 0, err
    exported = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert sorted((r["character"], r["text"], r["time"]) for r in exported) == sorted(
        (r["character"], r["text"], r["time"].replace("Z", "+00:00")) for r in records)
    assert SECRET not in out + err


def test_rag_library_on_both(location, tmp_path, capsys):
    """The document library (rag CLI) ingests, answers, lists and removes on either backend."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "kettle.md").write_text("# Kettle\n\nDescale the kettle every month with citric acid.\n")
    (docs / "bike.md").write_text("# Bicycle\n\nPump the tyres of the bicycle to 4 bar before a ride.\n")
    store = ["--store", location]
    code, _, err = _cli(capsys, "rag", *store, "ingest", str(docs), "--quiet")
    assert code == 0, err
    code, out, err = _cli(capsys, "rag", *store, "query", "how often should I descale?", "--k", "1", "--json")
    assert code == 0, err
    assert "citric acid" in json.loads(out)[0]["text"]
    code, out, err = _cli(capsys, "rag", *store, "list", "--json")
    assert code == 0, err
    assert len(json.loads(out)) == 2
    code, _, err = _cli(capsys, "rag", *store, "remove", str(docs / "kettle.md"))
    assert code == 0, err
    code, out, err = _cli(capsys, "rag", *store, "query", "descale kettle citric acid", "--k", "3", "--json")
    assert code == 0, err
    assert all("citric" not in p["text"] for p in json.loads(out))
    assert SECRET not in out + err


# -- processes ----------------------------------------------------------------------------------
WRITER = textwrap.dedent("""
    import sys
    from pocketpack.memory.store import MemoryStore
    from tests.helpers.embedders import Precomputed  # the real model's vectors, saved by the test

    def note(name, i):  # as the test's note()
        return f"note {i} from {name}: the {i}th thing {name} said"

    location, side, name, n, vectors = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]

    if location.startswith("postgresql://"):
        memory = MemoryStore(side, store_url=location, embedder=Precomputed(vectors))
    else:
        memory = MemoryStore(location, store_url="", embedder=Precomputed(vectors))
    print("ready", flush=True)
    for i in range(n):
        memory_id = memory.add("Aria", "user", note(name, i), chat=name, row=i)
        print(memory_id, i, flush=True)  # acknowledged: the write returned
    memory.add("Aria", "user", f"the shared row, last written by {name}", chat="shared", row=0)
    print("done", flush=True)
""")


def note(name: str, i: int) -> str:
    return f"note {i} from {name}: the {i}th thing {name} said"


@pytest.fixture(scope="module")
def writer_vectors(tmp_path_factory) -> Path:
    """The real model's vectors of every text the writer processes store, computed once."""
    import numpy as np

    from pocketpack.retrieval.embed import get_embedder

    texts = [note(name, i) for name in ("w", "left", "right") for i in range(KILL_AFTER * 4)]
    texts += [f"the shared row, last written by {name}" for name in ("w", "left", "right")]
    embedder = get_embedder()
    path = tmp_path_factory.mktemp("vectors") / "writer.npz"
    np.savez(path, texts=np.array(texts), vectors=embedder.embed(texts), model=np.array(embedder.name))
    return path


KILL_AFTER = 25


def _writer(location: str, tmp_path: Path, name: str, n: int, vectors: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, location, str(tmp_path / "side"), name, str(n), str(vectors)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)})


def test_kill9_during_writes_loses_nothing_acknowledged(location, tmp_path, writer_vectors):
    """A writer killed with SIGKILL mid-stream: every memory whose add() had returned is there."""
    proc = _writer(location, tmp_path, "w", KILL_AFTER * 4, writer_vectors)
    acknowledged: dict[int, int] = {}
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        while len(acknowledged) < KILL_AFTER:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            memory_id, i = map(int, line.split())
            acknowledged[memory_id] = i
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    memory = _memory(location, tmp_path)
    try:
        for memory_id, i in acknowledged.items():
            got = memory.get(memory_id)
            assert got is not None and got.text == note("w", i)
        assert len(memory.recall("Aria", "the 3th thing w said", k=3)) == 3  # the store still searches
    finally:
        memory.close()


def test_two_writer_processes_at_once(location, tmp_path, writer_vectors):
    """Two processes writing one store at the same time (both opening it new): every write of
    both is kept, and the row both wrote is one memory."""
    n = 30
    procs = [_writer(location, tmp_path, name, n, writer_vectors) for name in ("left", "right")]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert out.splitlines()[-1] == "done"
    memory = _memory(location, tmp_path)
    try:
        texts = [m.text for m in memory.list("Aria")]
        assert len(texts) == 2 * n + 1
        for name in ("left", "right"):
            assert {t for t in texts if t.startswith("note") and f"from {name}:" in t} == {
                note(name, i) for i in range(n)}
        assert sum(t.startswith("the shared row") for t in texts) == 1
    finally:
        memory.close()


# -- bad input: one line, no password -------------------------------------------------------------
def _one_line(capsys, *argv) -> str:
    code, out, err = _cli(capsys, *argv)
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert SECRET not in out + err
    return lines[0]


# -- PostgreSQL: what a chat turn reads, at a cost that does not grow with every row ---------------

HOBBIES = ("pottery", "hiking", "painting", "the violin", "sourdough", "birdwatching", "chess", "surfing",
           "astronomy", "knitting", "salsa", "rock climbing")


def test_postgresql_pinned_memories_are_read_by_an_index_also_on_an_older_store(pg_url, tmp_path):
    """Every chat turn reads its character's pinned memories: on PostgreSQL by an index, not a
    scan of every collection's rows (68 ms a turn at 100k memories); a store made before the
    index existed gains it when opened, and its pinned memories read the same."""
    import psycopg

    memory = _memory(pg_url, tmp_path)
    try:
        ids = [memory.add("Aria", "user", f"I took up {h} in spring.", chat="c1", row=n) for n, h in enumerate(HOBBIES)]
        memory.pin(ids[3])
        memory.pin(ids[7])
    finally:
        memory.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:  # as the store was before migration 2
        conn.execute("DROP INDEX pocketpack.items_pinned")
        conn.execute("DELETE FROM pocketpack.migrations WHERE version = 2")
    memory = _memory(pg_url, tmp_path)
    try:
        assert [m.id for m in memory.pinned("Aria")] == [ids[3], ids[7]]
        coll = memory.collection("Aria", create=False)
        with memory.store.lock:
            conn = memory.store.conn
            with conn.transaction():
                conn.execute("SET LOCAL enable_seqscan = off")  # a seq scan is then chosen only where no index fits
                plan = "\n".join(r[0] for r in conn.execute(
                    "EXPLAIN SELECT id FROM pocketpack.items WHERE collection_id = %s AND pinned ORDER BY time, id",
                    (coll.id,)))
        assert "Seq Scan" not in plan and "items_pinned" in plan, plan
    finally:
        memory.close()


def test_postgresql_dense_search_is_exact_for_a_small_collection_beside_a_large_one(pg_url, tmp_path, monkeypatch):
    """One shared store, a character with many memories (searched by the HNSW index) and one with
    a few (an HNSW search filtered to them would find too few: searched exactly): both get the
    nearest memories exact search gives, each in one statement."""
    import numpy as np

    from pocketpack.retrieval import pgstore
    from pocketpack.retrieval.store import NewItem

    monkeypatch.setattr(pgstore, "EXACT_BELOW", 40)  # "large" at 40 rows instead of 20,000
    memory = _memory(pg_url, tmp_path)
    try:
        big, small = memory.store.collection("memory/Big"), memory.store.collection("memory/Small")
        big.upsert([NewItem(text=f"{name} said {h} is what {name} does every {day}.")
                    for name in ("Ana", "Ben", "Caro", "Dev", "Eli") for h in HOBBIES[:6]
                    for day in ("Monday", "weekend")])
        small.upsert([NewItem(text=f"Mo is learning {h}.") for h in HOBBIES[6:11]])
        query = memory.store.embedder.embed(["Which of them goes climbing or surfing?"])[0]
        statements = []
        real_q = memory.store._q
        monkeypatch.setattr(memory.store, "_q", lambda sql, args=(): statements.append(sql) or real_q(sql, args))
        exact_of = {}
        for coll, k in ((big, 10), (small, 10)):
            ids = [it.id for it in coll.items()]
            vectors = coll.vectors(ids)
            exact = exact_of[coll.name] = sorted(ids, key=lambda i: -float(vectors[i] @ query))[:k]
            statements.clear()
            got = coll.dense(query, k)
            assert [i for i, _ in got] == exact
            assert np.allclose([s for _, s in got], [float(vectors[i] @ query) for i in exact], atol=1e-4)
            # the large one: one HNSW search; the small one: a search that finds it small, then the exact one
            assert len([s for s in statements if "<=>" in s]) == (1 if coll is big else 2), statements
        statements.clear()
        big_again = big.dense(query, 10)
        assert not any("COUNT" in s for s in statements), statements  # known large: not counted again
        assert [i for i, _ in big_again] == exact_of[big.name]
        ids = [it.id for it in big.items()]
        big.delete(ids[:45])  # 15 left: small again, searched exactly
        vectors = big.vectors(ids[45:])
        exact = sorted(ids[45:], key=lambda i: -float(vectors[i] @ query))[:10]
        assert [i for i, _ in big.dense(query, 10)] == exact
    finally:
        memory.close()


def test_server_down_is_one_line_without_the_password(capsys, pg_cluster):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed
    url = f"postgresql://pp:{SECRET}@127.0.0.1:{port}/memories"
    line = _one_line(capsys, "memory", "--store", url, "recall", "--character", "A", "--query", "q")
    assert "cannot reach the PostgreSQL server at 127.0.0.1" in line and "pp:***@" in line


def test_missing_database_and_bad_urls_are_one_line(capsys, pg_cluster):
    line = _one_line(capsys, "memory", "--store", pg_cluster.url("no_such_db", SECRET), "export")
    assert "has no such database" in line
    line = _one_line(capsys, "memory", "--store", f"postgresql://pp:{SECRET}@127.0.0.1:notaport/db", "export")
    assert "not a valid PostgreSQL URL" in line or "cannot" in line
    line = _one_line(capsys, "memory", "--store", f"mysql://pp:{SECRET}@127.0.0.1/db", "export")
    assert "unsupported store URL" in line and "pp:***@" in line
    code, out, err = _cli(capsys, "rag", "--store", pg_cluster.url("no_such_db", SECRET), "list")
    assert code != 0 and len(err.strip().splitlines()) == 1 and SECRET not in out + err
    assert "has no such database" in err


def test_server_without_pgvector_is_one_line(capsys):
    cluster = PgCluster.without_pgvector()
    try:
        line = _one_line(capsys, "memory", "--store", cluster.url("postgres", SECRET), "export")
        assert "lacks the pgvector extension" in line
    finally:
        cluster.remove()


def test_env_url_is_used_and_an_explicit_folder_wins(tmp_path, pg_url, monkeypatch, capsys):
    """POCKETPACK_STORE_URL picks PostgreSQL when --store is not given; --store DIR still wins."""
    monkeypatch.setenv("POCKETPACK_STORE_URL", pg_url)
    monkeypatch.chdir(tmp_path)
    code, out, err = _cli(capsys, "memory", "add", "--character", "Aria", "--role", "user", "--text", "Env note.")
    assert code == 0, err
    code, out, err = _cli(capsys, "memory", "--store", pg_url, "export")
    assert [json.loads(line)["text"] for line in out.splitlines()] == ["Env note."]
    code, out, err = _cli(capsys, "memory", "--store", str(tmp_path / "folder"), "export")
    assert code == 0 and out.strip() == ""


# -- store copy --------------------------------------------------------------------------------------
def test_store_copy_both_ways_idempotent(tmp_path, pg_cluster, capsys):
    """SQLite → PostgreSQL → SQLite: same memories, same recall, import fingerprints kept (a
    re-import adds nothing), a second copy adds nothing, progress lines, verified counts."""
    source = tmp_path / "sqlite"
    jsonl = tmp_path / "in.jsonl"
    records = [{"character": c, "role": "user", "text": f"{c} remembers fact number {i} about the {w}.",
                "time": f"2025-01-{i + 1:02d}T10:00:00Z"}
               for c in ("Aria", "Bob") for i, w in enumerate(["garden", "piano", "lighthouse", "bakery"])]
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert _cli(capsys, "memory", "--store", str(source), "import", str(jsonl))[0] == 0
    assert _cli(capsys, "memory", "--store", str(source), "add", "--character", "Aria", "--role", "user",
                "--text", "A note without an import fingerprint.")[0] == 0
    url = pg_cluster.new_database(password=SECRET)

    code, out, err = _cli(capsys, "store", "copy", str(source), url, "--batch", "3", "--json")
    assert code == 0, err
    assert SECRET not in out + err and "postgres:***@" in err
    assert "memory/Aria: 3/5" in err and "verified: 9 items in 2 collections" in err
    assert json.loads(out)["collections"]["memory/Aria"] == {"source": 5, "destination": 5}
    code, out, err = _cli(capsys, "store", "copy", str(source), url, "--json")  # again: nothing doubles
    assert code == 0, err
    assert json.loads(out)["items"] == 9 and "verified: 9 items" in err

    code, out, err = _cli(capsys, "memory", "--store", url, "import", str(jsonl))
    assert code == 0 and "8 already present" in err, err
    code, pg_recall, err = _cli(capsys, "memory", "--store", url, "recall", "--character", "Bob", "--query",
                                "the lighthouse", "--k", "1", "--json")
    assert json.loads(pg_recall)[0]["text"] == "Bob remembers fact number 2 about the lighthouse."

    back = tmp_path / "back"
    code, out, err = _cli(capsys, "store", "copy", url, str(back))
    assert code == 0, err
    code, out, err = _cli(capsys, "store", "copy", url, str(back))
    assert code == 0 and "verified: 9 items" in err, err
    exports = []
    for where in (str(source), url, str(back)):
        code, out, err = _cli(capsys, "memory", "--store", where, "export")
        exports.append(sorted((r["character"], r["text"], r["time"], r["role"]) for r in map(json.loads, out.splitlines())))
    assert exports[0] == exports[1] == exports[2] and len(exports[0]) == 9


def test_store_copy_bad_input_is_one_line(tmp_path, capsys):
    line = _one_line(capsys, "store", "copy", str(tmp_path / "nothing"), str(tmp_path / "dst"))
    assert "no store at" in line
    line = _one_line(capsys, "store", "copy", str(tmp_path / "nothing"), f"postgresql://u:{SECRET}@127.0.0.1:1/x")
    assert "no store at" in line
