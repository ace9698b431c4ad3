"""Both extensions on a PostgreSQL store named in their settings (issue 16: "Chosen by
`store_url: postgresql://…` in settings.yaml … both extensions work on either"), on a real
server (tests/helpers/pg.py). The model is scripted; the embeddings are real."""

from __future__ import annotations

from pathlib import Path

import pytest

from pocketpack.host import shared
from pocketpack.host.chat import default_state
from pocketpack.host.runtime import Runtime
from tests.helpers.pg import pg_cluster, pg_url  # noqa: F401 - fixtures used by name
from tests.helpers.scripted_backend import ScriptedBackend

REPO = Path(__file__).resolve().parents[1]
SECRET = "s3cr3t-pw"


def make_runtime(tmp_path: Path, settings: str, reply: str, extensions: list[str]) -> Runtime:
    user_data = tmp_path / "user_data"
    user_data.mkdir(parents=True, exist_ok=True)
    (user_data / "settings.yaml").write_text(settings)
    runtime = Runtime(root=REPO, user_data_dir=user_data, extensions=extensions)
    runtime.backend = ScriptedBackend(reply)
    shared.tokenizer = None
    return runtime


def chat(runtime: Runtime, text: str, state: dict) -> str:
    *_, history = runtime.chat(text, state)
    state["history"] = history
    return history["visible"][-1][1]


def ui_state(character: str, chat_id: str) -> dict:
    return default_state(character_menu=character, name2=character, name1="Sam", unique_id=chat_id,
                         context=f"{character} is a sailing instructor.")


def test_memory_store_url_in_settings_stores_and_recalls_on_postgresql(tmp_path, pg_url, monkeypatch):
    """settings.yaml's memory-store_url wins over POCKETPACK_STORE_URL and the folder: a chat
    turn is stored in that database (not in user_data) and recalled in another chat."""
    monkeypatch.setenv("POCKETPACK_STORE_URL", "postgresql://nobody@127.0.0.1:1/elsewhere")
    runtime = make_runtime(tmp_path, f"memory-store_url: {pg_url}\n", "Then we should sail the Tagus.", ["memory"])
    try:
        chat(runtime, "I keep my boat, the Gaivota, in Lisbon.", ui_state("Aria", "chat-1"))
        memory = runtime.host.loaded["memory"].turns().memory
        assert getattr(memory.store, "url", None) == pg_url
        assert memory.counts()["Aria"] == 2
        chat(runtime, "What is my boat called?", ui_state("Aria", "chat-2"))
        assert "I keep my boat, the Gaivota, in Lisbon." in runtime.backend.prompts[-1]
        assert not list((tmp_path / "user_data").rglob("store.sqlite3"))
        assert runtime.host.take_failures() == []
    finally:
        runtime.host.loaded["memory"].params["store_url"] = ""  # the module outlives this host, as in TGWUI
        runtime.host.loaded["memory"].reset()


def test_rag_store_url_lists_and_injects_postgresql_documents(tmp_path, pg_url, monkeypatch):
    """rag-enhancer's store_url: an upload lands in PostgreSQL, the Documents list shows it
    (the tab used to look for store.sqlite3 and showed nothing), a query and a chat turn find it."""
    from pocketpack.rag.extension import EXTENSION_DEFAULTS, RagEngine
    from pocketpack.rag.ingest import Library

    monkeypatch.delenv("POCKETPACK_STORE_URL", raising=False)
    doc = tmp_path / "harbour.txt"
    doc.write_text("The harbour master of Porto Velho is Marta Ilves. She opens the lock at six every morning.")
    engine = RagEngine({**EXTENSION_DEFAULTS, "store_url": pg_url}, user_data_dir=tmp_path / "user_data")
    try:
        message, rows = engine.add_documents([str(doc)], "", "global")
        assert "Added" in message, message
        assert [r[1] for r in rows] == ["harbour.txt"]
        assert not list(tmp_path.rglob("store.sqlite3"))
        fresh = RagEngine({**EXTENSION_DEFAULTS, "store_url": pg_url}, user_data_dir=tmp_path / "other")
        try:  # another instance sharing the database sees the document before it adds anything
            assert [r[1] for r in fresh.document_rows()] == ["harbour.txt"]
            assert "Marta Ilves" in fresh.try_query("Who is the harbour master?", 3)[0][4]
        finally:
            fresh.close()
        state = ui_state("Aria", "chat-1")
        engine.chat_input_modifier("Who is the harbour master of Porto Velho?", "", state)
        assert any("Marta Ilves" in p.text for p in state["_pocketpack_rag"])
    finally:
        engine.close()
    with Library(tmp_path / "side", store_url=pg_url) as lib:
        assert [d.name for d in lib.documents()] == ["harbour.txt"]


@pytest.fixture
def down_url() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed
    return f"postgresql://pp:{SECRET}@127.0.0.1:{port}/memories"


def test_memory_server_down_chat_goes_on_with_one_masked_line(tmp_path, down_url, caplog):
    """Issue 16, bad input: "a server that is down … the chat goes on without memory …
    credentials never printed in logs": each turn is answered with nothing injected, the reply
    says memory is unavailable, the log has one line for both turns, the password never."""
    import logging

    runtime = make_runtime(tmp_path, f"memory-store_url: {down_url}\n", "Noted.", ["memory"])
    script = runtime.host.loaded["memory"]
    try:
        caplog.set_level(logging.INFO)
        replies = [chat(runtime, text, ui_state("Aria", "chat-1"))
                   for text in ("I keep my boat in Lisbon.", "Where is my boat?")]
        for reply in replies:
            assert reply.startswith("Noted.")
            assert "memory is unavailable for this reply" in reply and "cannot reach the PostgreSQL server" in reply
            assert SECRET not in reply and "pp:***@" in reply
        assert "Memories from earlier conversations" not in runtime.backend.prompts[-1]
        lines = [r.getMessage() for r in caplog.records if "PostgreSQL" in r.getMessage()]
        assert len(lines) == 1 and "pp:***@" in lines[0], lines
        assert SECRET not in caplog.text
        assert runtime.host.take_failures() == []
        counts = script.tab_counts()
        assert counts.startswith("**Memory is unavailable.**") and SECRET not in counts
    finally:
        script.params["store_url"] = ""  # the module outlives this host, as in TGWUI
        script.reset()


def test_memory_write_that_fails_is_reported_and_stored_with_the_next_turn(tmp_path, pg_cluster):
    """A server that goes down between recall and store: the reply says the exchange was not
    stored (never dropped silently); once the server is back the next turn stores it."""
    url = pg_cluster.new_database(password=SECRET)
    runtime = make_runtime(tmp_path, f"memory-store_url: {url}\n", "Noted.", ["memory"])
    script = runtime.host.loaded["memory"]
    try:
        state = ui_state("Aria", "chat-1")
        chat(runtime, "Warm-up.", state)
        memory = script.turns().memory
        record = memory.record_exchange

        def server_down(*args, **kwargs):
            memory.store.conn.close()  # the connection drops as the reply is stored
            return record(*args, **kwargs)

        memory.record_exchange = server_down
        reply = chat(runtime, "My boat is the Gaivota.", state)
        assert "this exchange is stored with the next turn" in reply and SECRET not in reply
        memory.record_exchange = record
        script.reset()  # reconnects on the next turn
        chat(runtime, "And my sister is Lena.", state)
        texts = {m.text for m in script.turns().memory.list("Aria")}
        assert "My boat is the Gaivota." in texts and "And my sister is Lena." in texts
    finally:
        script.params["store_url"] = ""  # the module outlives this host, as in TGWUI
        script.reset()


def test_rag_server_down_turn_goes_on_with_one_masked_line(tmp_path, down_url, caplog):
    """The same for documents: the turn's state is unchanged apart from the notice (nothing
    injected, nothing citable), the reply says why, one log line for two turns, no password."""
    import logging

    from pocketpack.rag.extension import EXTENSION_DEFAULTS, NOTICE_KEY, STATE_KEY, RagEngine

    caplog.set_level(logging.INFO)
    engine = RagEngine({**EXTENSION_DEFAULTS, "store_url": down_url}, user_data_dir=tmp_path / "user_data")
    try:
        for question in ("Who is the harbour master?", "When does the lock open?"):
            state = ui_state("Aria", "chat-1")
            before = dict(state)
            assert engine.chat_input_modifier(question, question, state) == (question, question)
            assert state.pop(STATE_KEY) == [] and NOTICE_KEY in state
            reply = engine.output_modifier("I do not know.", state, is_chat=True)
            assert state == before
            assert reply.startswith("I do not know.") and "documents were not used for this reply" in reply
            assert "cannot reach the PostgreSQL server" in reply and SECRET not in reply
        lines = [r.getMessage() for r in caplog.records if "PostgreSQL" in r.getMessage()]
        assert len(lines) == 1 and "pp:***@" in lines[0], lines
        assert SECRET not in caplog.text
    finally:
        engine.close()


def test_multi_user_memories_on_one_postgresql_store_never_reach_another(tmp_path, pg_url, monkeypatch):
    """Issue 16: "two users on one --multi-user server … pass the isolation … tests … against a
    real server": with memory-store_url every user's memories live in one database under their
    own collection names, and no recall, list or id of alice's reaches bob or the shared store."""
    from pocketpack.retrieval.backend import open_store
    from tests.test_multi_user import FACT, KEYS, QUESTION, _api, _ask

    monkeypatch.setattr(shared.args, "multi_user", True)
    monkeypatch.setattr(shared, "settings", {})
    http, runtime = _api(tmp_path, ["memory"], **{"memory-store_url": pg_url})
    script = runtime.host.loaded["memory"]
    try:
        assert _ask(http, FACT, KEYS["alice"]).status_code == 200
        assert _ask(http, QUESTION, KEYS["bob"]).status_code == 200
        assert "4417" not in runtime.backend.prompts[-1]
        alice, bob, shared_store = (script.turns(u).memory for u in ("alice", "bob", None))
        assert all("4417" not in m.text for m in bob.list("Skipper") + shared_store.list("Skipper"))
        fact_id = next(m.id for m in alice.list("Skipper") if "4417" in m.text)
        assert bob.get(fact_id) is None and shared_store.get(fact_id) is None
        assert alice.get(fact_id).text == FACT
        assert _ask(http, QUESTION, KEYS["alice"]).status_code == 200
        assert "4417" in runtime.backend.prompts[-1]
        assert runtime.host.take_failures() == []
        raw = open_store(pg_url, directory=tmp_path / "raw")
        try:
            names = raw.collection_names()
        finally:
            raw.close()
        assert {"user/alice/memory/Skipper", "user/bob/memory/Skipper"} <= set(names), names
        assert not list((tmp_path / "user_data").rglob("store.sqlite3"))
    finally:
        script.params["store_url"] = ""  # the module outlives this host, as in TGWUI
        script.reset()


def test_rag_documents_list_loads_empty_when_the_server_is_down(tmp_path, down_url, caplog):
    """The Documents tab fills its list when the page loads; with the store's server down that
    must not raise inside gradio: the list is empty and the one masked line is logged once."""
    import logging

    from pocketpack.rag.extension import EXTENSION_DEFAULTS, RagEngine

    caplog.set_level(logging.INFO)
    engine = RagEngine({**EXTENSION_DEFAULTS, "store_url": down_url}, user_data_dir=tmp_path / "user_data")
    try:
        assert engine.document_rows() == [] and engine.document_rows() == []
        lines = [r.getMessage() for r in caplog.records if "PostgreSQL" in r.getMessage()]
        assert len(lines) == 1 and "pp:***@" in lines[0], lines
        assert SECRET not in caplog.text
    finally:
        engine.close()
