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
