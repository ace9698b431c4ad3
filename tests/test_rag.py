"""rag-enhancer end to end on the real all-MiniLM-L6-v2 model: ingestion of real files,
incremental re-ingest, removal, bad input in a batch, scoped collections, injection through
the shared composer, citations, the notebook marker, the reranker path, the CLI, the UI."""

from __future__ import annotations

import http.server
import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from pocketpack.rag.config import RagSettings
from pocketpack.rag.ingest import Library
from pocketpack.rag.retrieve import retrieve
from tests.helpers.archives import small_epub
from tests.helpers.cli import run_main
from tests.helpers.rag import HARBOUR, embedder, lib, script  # noqa: F401  (fixtures)
from tests.test_rag_parsing import make_docx, make_pdf

pytestmark = pytest.mark.slow  # the real embedding model

REPO = Path(__file__).resolve().parents[1]



def sources(passages):
    return [Path(p.source).name for p in passages]


def test_every_format_is_ingested_and_answerable(tmp_path, lib):
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "harbour.md").write_text(HARBOUR)
    (docs / "manual.pdf").write_bytes(make_pdf(["Chapter one is about the history of knots. " * 8,
                                                "The bowline knot forms a fixed loop at the end of a rope."]))
    make_docx(docs / "sub" / "field.docx")
    small_epub(docs / "sub" / "farm.epub")
    (docs / "sub" / "page.html").write_text(
        "<html><body><article><h1>Museum</h1><p>The maritime museum displays a brass sextant from 1790."
        "</p></article></body></html>")
    (docs / "crew.csv").write_text("name,role\nMaela,navigator\nIwan,cook\n")
    (docs / "tool.py").write_text("def compute_draught(hull):\n    return hull.depth * 0.87\n")
    (docs / "notes.txt").write_text("The lighthouse keeper's cat is named Biscuit.\n")
    (docs / "ignored.bin").write_bytes(b"\x00\x01")  # unknown extension in a folder: not picked up
    seen = []
    report = lib.ingest([str(docs)], progress=lambda f, m: seen.append(f))
    assert [r.status for r in report.results] == ["added"] * 8, report.results
    assert seen == sorted(seen) and seen[-1] == 1.0
    kinds = {d.name: (d.kind, d.chunks) for d in lib.documents()}
    assert set(kinds) == {"harbour.md", "manual.pdf", "field.docx", "farm.epub", "page.html", "crew.csv",
                          "tool.py", "notes.txt"}
    questions = {  # question: (file, location contains, text contains)
        "when is high tide at Port Avel": ("harbour.md", "Tides", "06:12"),
        "which knot makes a fixed loop": ("manual.pdf", "p", "bowline"),
        "how many tins of sardines does each member carry": ("field.docx", "Rations", "four tins"),
        "when was the well dug": ("farm.epub", "ch.", "1802"),
        "how old is the sextant in the museum": ("page.html", "Museum", "1790"),
        "who is the cook": ("crew.csv", "row", "Iwan"),
        "function that computes the draught of a hull": ("tool.py", "line", "def compute_draught"),
        "what is the name of the lighthouse keeper's cat": ("notes.txt", "line 1", "Biscuit"),
    }
    lib.settings.neighbours = 0  # locations of the hits themselves, not widened passages
    for question, (name, where, answer) in questions.items():
        best = retrieve(lib, question, 3)[0]
        assert Path(best.source).name == name and where in best.location and answer in best.text, (question, best)
        assert best.to_json().keys() == {"text", "source", "location", "score"}


def test_reingest_is_a_hash_check_then_changes_replace_and_removal_deletes(tmp_path, lib, embedder):
    doc = tmp_path / "harbour.md"
    doc.write_text(HARBOUR)
    assert lib.ingest([str(doc)]).results[0].status == "added"
    first_calls = embedder.calls
    again = lib.ingest([str(doc)]).results[0]
    assert again.status == "unchanged" and embedder.calls == first_calls  # nothing embedded
    # a changed file replaces its chunks; unchanged chunk texts are not embedded again
    doc.write_text(HARBOUR.replace("06:12", "07:45"))
    before = embedder.calls
    assert lib.ingest([str(doc)]).results[0].status == "updated"
    assert 0 < embedder.calls - before < first_calls
    top = retrieve(lib, "when is high tide at Port Avel", 1)[0].text
    assert "07:45" in top and "06:12" not in top
    # shorter document: surplus chunks go
    doc.write_text("# Harbour Guide\n\nClosed for the winter.\n")
    lib.ingest([str(doc)])
    assert lib.documents()[0].chunks == 1
    assert all("sardines" not in p.text for p in retrieve(lib, "where to buy tinned sardines", 5))
    # removal: chunks, vectors and search results go
    removed = lib.remove("harbour.md")
    assert removed.name == "harbour.md" and lib.documents() == []
    assert retrieve(lib, "harbour closed for the winter", 5) == []
    db = sqlite3.connect(tmp_path / "store" / "store.sqlite3")
    assert db.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 0
    assert db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0] == 0


class _Server(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's method name
        if self.path == "/slow":
            time.sleep(3)
            return
        if self.path == "/notice":
            body = (b"<html><body><article><h1>Ferry notice</h1><p>The winter ferry to the island leaves at "
                    b"08:40 from pier two.</p></article></body></html>")
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_error(404, "Not Found")

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_bad_inputs_are_skipped_with_one_line_and_nothing_is_lost(tmp_path, lib, server):
    good = tmp_path / "harbour.md"
    good.write_text(HARBOUR)
    lib.ingest([str(good)])
    locked = tmp_path / "locked.pdf"
    locked.write_bytes(make_pdf(["secret"], encrypt=True))
    corrupt = tmp_path / "corrupt.pdf"
    corrupt.write_bytes(b"%PDF-1.4 garbage")
    binary = tmp_path / "photo.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00" + bytes(range(256)) * 4)
    undecodable = tmp_path / "odd.txt"
    undecodable.write_bytes(bytes(range(128, 256)) * 40)
    big = tmp_path / "big.txt"
    big.write_text("word " * 300_000)
    lib.settings.max_file_mb = 1
    lib.settings.url_timeout = 0.5
    lib.settings.allow_private_urls = True
    report = lib.ingest([str(locked), str(corrupt), str(binary), str(undecodable), str(big),
                         server + "/missing", server + "/slow", server + "/notice", str(tmp_path / "nope.md")])
    messages = [(Path(r.source).name, r.status, r.message) for r in report.results]
    expected = ["encrypted", "damaged or not a PDF", "binary", "encoding could not be detected", "over the 1 MB limit",
                "answered 404", "no answer within 0.5 s", "", "no such file"]
    for (name, status, message), want in zip(messages, expected):
        assert (status == "added") if not want else (status == "error" and want in message), (name, message)
        assert "\n" not in message and "Traceback" not in message
    # the good document is still there and the URL that worked was added
    assert {d.name for d in lib.documents()} == {"harbour.md", "notice"}
    assert "08:40" in retrieve(lib, "when does the winter ferry leave", 1)[0].text
    # a previously indexed file that becomes corrupt keeps its old chunks
    good.write_bytes(b"\x00\x01binary now")
    assert lib.ingest([str(good)]).results[0].status == "error"
    assert "06:12" in retrieve(lib, "when is high tide at Port Avel", 1)[0].text


def test_uploads_stay_inside_the_store_whatever_their_name(tmp_path, lib):
    data = HARBOUR.encode()
    for name in ["../../escape.md", "..\\..\\win.md", "/etc/cron.d/evil.md", "../uploads/../../x.md", ".."]:
        result = lib.add_upload(name, data)
        assert result.status in ("added", "unchanged"), result
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and "store" not in p.relative_to(tmp_path).parts]
    assert outside == []
    uploads = tmp_path / "store" / "uploads"
    copies = [p for p in uploads.rglob("*") if p.is_file()]
    # one folder for the collection, directly under uploads/, holding every copy
    assert {p.parent.parent for p in copies} == {uploads} and len({p.parent for p in copies}) == 1
    assert sorted(p.name for p in copies) == ["escape.md", "evil.md", "upload", "win.md", "x.md"]
    # a failed upload writes nothing and an uploaded doc can be removed with its copy
    assert lib.add_upload("broken.pdf", b"not a pdf").status == "error"
    assert not [p for p in uploads.rglob("broken.pdf")]
    lib.remove("win.md")
    assert not [p for p in uploads.rglob("win.md")]


def test_collections_are_scoped_and_persistent(tmp_path, embedder):
    store = tmp_path / "store"
    with Library(store, embedder=embedder) as lib:
        (tmp_path / "a.md").write_text("Alice's diary: my locker code is 4471.")
        (tmp_path / "b.md").write_text("Bob's notes: the spare key is under the blue flowerpot.")
        lib.ingest([str(tmp_path / "a.md")], "character/Alice")
        lib.ingest([str(tmp_path / "b.md")], "character/Bob")
    with Library(store, embedder=embedder) as lib:  # reopened: persistent
        assert sources(retrieve(lib, "what is the locker code", 3, ["global", "character/Bob"])) == []
        assert sources(retrieve(lib, "what is the locker code", 3, ["global", "character/Alice"])) == ["a.md"]
        assert {d.collection for d in lib.documents()} == {"character/Alice", "character/Bob"}


def test_reranker_is_skipped_without_one_and_used_when_configured(tmp_path, lib):
    (tmp_path / "h.md").write_text(HARBOUR)
    lib.ingest([str(tmp_path / "h.md")])
    plain = retrieve(lib, "when is high tide", 3)
    assert plain and not any(p.reranked for p in plain)
    # the score threshold drops what scores below it
    assert retrieve(lib, "when is high tide", 3, settings=RagSettings(min_score=1.01)) == []
    assert all(p.score >= 0.5 for p in retrieve(lib, "when is high tide", 3, settings=RagSettings(min_score=0.5)))
    # a tiny cross-encoder built here from the bundled MiniLM (untrained head): the code path only
    import torch
    from sentence_transformers import CrossEncoder

    from pocketpack.retrieval.embed import default_model_path

    torch.manual_seed(0)
    CrossEncoder(str(default_model_path()), num_labels=1, device="cpu").save_pretrained(str(tmp_path / "ce"))
    settings = RagSettings(reranker_path=str(tmp_path / "ce"), neighbours=0)
    ranked = retrieve(lib, "when is high tide", 3, settings=settings)
    assert ranked and all(p.reranked and 0.0 <= p.score <= 1.0 for p in ranked)
    assert [p.score for p in ranked] == sorted((p.score for p in ranked), reverse=True)
    from pocketpack.rag.retrieve import RerankerError

    with pytest.raises(RerankerError, match="not found"):
        retrieve(lib, "tide", 3, settings=RagSettings(reranker_path=str(tmp_path / "missing")))


# -- the extension: hooks through the shared composer, citations, notebook --------------------



def _chat_state(mode="chat", character="Skipper", history=None):
    return {"mode": mode, "context": "You are Skipper, a harbour pilot.", "custom_system_message": "Be brief.",
            "name1": "You", "name2": character, "character_menu": character, "unique_id": "20250101-000000",
            "history": history or {"internal": [], "visible": [], "metadata": {}}}


def test_chat_turn_injects_labelled_passages_and_links_citations(tmp_path, script):
    lib = script.engine().library
    (tmp_path / "harbour.md").write_text(HARBOUR)
    lib.ingest([str(tmp_path / "harbour.md")])
    state = script.state_modifier(_chat_state())
    text, visible = script.chat_input_modifier("When is high tide at Port Avel?", "When is high tide?", state)
    assert text == "When is high tide at Port Avel?"
    context = state["context"]
    assert context.startswith("You are Skipper") and "[1] harbour.md, " in context and "06:12" in context
    assert "Tides" in context.split("[1] harbour.md, ", 1)[1].split(":")[0]  # the location names the section
    reply = script.output_modifier("High tide is at 06:12 [1].", state, is_chat=True)
    assert '<a href="#pp-src-' in reply and "<details" in reply and "06:12 on Mondays" in reply.split("<details")[1]
    # output_modifier in notebook/API-completion mode leaves text alone
    assert script.output_modifier("At 06:12 [1].", state, is_chat=False) == "At 06:12 [1]."
    # instruct mode (the API default) writes to custom_system_message instead
    state = script.state_modifier(_chat_state(mode="instruct"))
    script.chat_input_modifier("When is high tide at Port Avel?", "", state)
    assert "[1] harbour.md" in state["custom_system_message"] and "[1]" not in state["context"]


def test_regenerate_uses_the_last_user_message_and_composes_with_other_blocks(tmp_path, script):
    from pocketpack import compose

    lib = script.engine().library
    (tmp_path / "harbour.md").write_text(HARBOUR)
    lib.ingest([str(tmp_path / "harbour.md")])
    history = {"internal": [["Where can I buy diesel?", "At the chandlery."]], "visible": [["", ""]], "metadata": {}}
    state = _chat_state(history=history)
    # another pack extension (memory) registers its block first: both end up in the prompt
    compose.contribute(state, compose.Block(name="memory", items=["You like sailing at dawn."], title="Memories"))
    script.state_modifier(state)  # regenerate: no chat_input_modifier call
    context = state["context"]
    assert "You like sailing at dawn." in context and "Quay Street" in context and "[1] harbour.md" in context
    assert context.count("[Documents") == 1


def test_nothing_relevant_injects_nothing_and_other_characters_docs_stay_out(tmp_path, script):
    lib = script.engine().library
    (tmp_path / "secret.md").write_text("The vault combination is 31-17-42.")
    lib.ingest([str(tmp_path / "secret.md")], "character/Other")
    state = script.state_modifier(_chat_state())
    script.chat_input_modifier("What is the vault combination?", "", state)
    assert state["context"] == "You are Skipper, a harbour pilot."
    assert script.output_modifier("I do not know [1].", state, is_chat=True) == "I do not know [1]."
    # a document added for this character is used from the next turn on
    (tmp_path / "skipper.md").write_text("Skipper's vault combination is 88-12-07.")
    lib.ingest([str(tmp_path / "skipper.md")], "character/Skipper")
    state = script.state_modifier(_chat_state())
    script.chat_input_modifier("What is the vault combination?", "", state)
    assert "88-12-07" in state["context"] and "31-17-42" not in state["context"]


def test_notebook_mode_fills_the_injection_point(tmp_path, script):
    lib = script.engine().library
    (tmp_path / "harbour.md").write_text(HARBOUR)
    lib.ingest([str(tmp_path / "harbour.md")])
    prompt = ("Use the excerpts.\n\nQuestion: <|begin-user-input|>When does the chandlery close on Saturdays?"
              "<|end-user-input|>\n\n<|injection-point|>\n\nAnswer:")
    out = script.input_modifier(prompt, {}, is_chat=False)
    assert "<|" not in out and "closes at noon" in out and "[1] harbour.md" in out
    assert out.index("Question: When does") < out.index("[1] harbour.md") < out.index("Answer:")
    assert script.input_modifier("Plain prompt.", {}, is_chat=False) == "Plain prompt."
    assert script.input_modifier("chat text", {}, is_chat=True) == "chat text"


def test_a_failing_store_never_breaks_the_turn(tmp_path, script):
    script.params["reranker_path"] = str(tmp_path / "no-such-reranker")
    try:
        (tmp_path / "harbour.md").write_text(HARBOUR)
        script.engine().library.ingest([str(tmp_path / "harbour.md")])
        state = script.state_modifier(_chat_state())
        text, _ = script.chat_input_modifier("When is high tide?", "", state)
        assert text == "When is high tide?" and state["context"] == "You are Skipper, a harbour pilot."
        reply = script.output_modifier("No idea.", state, is_chat=True)
        assert reply.startswith("No idea.") and "rag-enhancer" in reply and "reranker" in reply
    finally:
        script.params["reranker_path"] = ""


def test_ui_builds_on_an_empty_store_and_its_actions_work(tmp_path, script):
    import gradio as gr

    with gr.Blocks():
        with gr.Tab("Documents"):
            script.ui()
    assert script.params["display_name"] == "Documents" and script.params["is_tab"] is True
    upload = tmp_path / "upload" / "harbour.md"
    upload.parent.mkdir()
    upload.write_text(HARBOUR)
    message, rows = script.add_documents([str(upload)], "", "global")
    assert "added harbour.md" in message and rows[0][1] == "harbour.md" and rows[0][2] >= 1
    message, hits = script.try_query("when is high tide", 3)
    assert hits and hits[0][2] == "harbour.md" and "06:12" in hits[0][4]
    message, rows = script.reindex_documents("")
    assert "unchanged" in message or "updated" in message
    message, rows = script.remove_document(rows[0][0])
    assert message.startswith("Removed") and rows == []
    assert "saved" in script.save_settings(True, True, 4, 700, 0.0, 1, "hybrid", 120, 20, 10, 5, False, "")
    assert json.loads((tmp_path / "docs" / "rag-settings.json").read_text())["chunk_size"] == 120


# -- the CLI, as scripts call it --------------------------------------------------------------
def test_cli_forms(tmp_path, capsys):
    """Every form through ``pocketpack.cli.main`` in this process (one model load, not nine);
    tests/test_rag_library.py and tests/test_no_network.py run the console command itself."""
    def run_cli(*args):
        return run_main(capsys, "rag", *args)

    store = str(tmp_path / "store")
    (tmp_path / "harbour.md").write_text(HARBOUR)
    (tmp_path / "bad.pdf").write_bytes(b"%PDF-1.4 nonsense")
    (tmp_path / "notes.txt").write_text("The lighthouse keeper's cat is named Biscuit.\n")
    done = run_cli("--store", store, "ingest", str(tmp_path / "harbour.md"), str(tmp_path / "bad.pdf"),
                   str(tmp_path / "notes.txt"))
    assert done.returncode == 1  # one source was skipped; the others went in
    assert "added" in done.stdout and "2 added, 1 skipped" in done.stdout
    assert "skipped" in done.stderr and "bad.pdf" in done.stderr and "Traceback" not in done.stderr

    out = run_cli("--store", store, "query", "when is high tide at Port Avel", "--k", "2", "--json")
    assert out.returncode == 0, out.stderr
    hits = json.loads(out.stdout)
    assert 1 <= len(hits) <= 2 and set(hits[0]) == {"text", "source", "location", "score"}
    assert hits[0]["source"].endswith("harbour.md") and "06:12" in hits[0]["text"]
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)

    queries = tmp_path / "q.jsonl"
    queries.write_text("\n".join(json.dumps(q) for q in [
        {"query": "name of the lighthouse keeper's cat", "k": 1, "collection": "global"},
        {"query": "when is high tide at Port Avel", "k": 1, "collection": "global"},
        {"query": "anything", "k": 3, "collection": "no-such-collection"},
    ]) + "\n")
    out = run_cli("--store", store, "query", "--queries", str(queries), "--json")
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(lines) == 3 and lines[2] == []
    assert "Biscuit" in lines[0][0]["text"] and "06:12" in lines[1][0]["text"]

    listing = run_cli("--store", store, "list")
    assert "harbour.md" in listing.stdout and "notes.txt" in listing.stdout and "bad.pdf" not in listing.stdout
    removed = run_cli("--store", store, "remove", "notes.txt")
    assert removed.returncode == 0 and "removed" in removed.stdout
    listing = json.loads(run_cli("--store", store, "list", "--json").stdout)
    assert [d["name"] for d in listing] == ["harbour.md"] and listing[0]["chunks"] >= 1
    missing = run_cli("--store", store, "remove", "nope.md")
    assert missing.returncode == 1 and "no document matches" in missing.stderr
    nostore = run_cli("--store", str(tmp_path / "empty"), "query", "x", "--json")
    assert nostore.returncode == 1 and "no document store" in nostore.stderr


@pytest.mark.parametrize("order", [["memory", "rag-enhancer"], ["rag-enhancer", "memory"]])
def test_in_the_host_with_memory_in_either_order(tmp_path, order):
    """A whole chat turn through the host: the documents reach the prompt beside memory's
    block, and the visible reply's [1] opens the passage while the internal one stays raw."""
    from pocketpack.host.chat import default_state
    from pocketpack.host.runtime import Runtime
    from tests.helpers.scripted_backend import ScriptedBackend

    runtime = Runtime(root=REPO, user_data_dir=tmp_path / "user_data", extensions=order)
    with Library(tmp_path / "user_data" / "pocketpack" / "documents") as lib:
        (tmp_path / "harbour.md").write_text(HARBOUR)
        lib.ingest([str(tmp_path / "harbour.md")])
    runtime.backend = ScriptedBackend(reply="High tide is at 06:12 [1].")
    state = default_state(mode="chat", name2="Skipper", context="You are Skipper.")
    history = list(runtime.chat("When is high tide at Port Avel?", state))[-1]
    prompt = runtime.backend.prompts[-1]
    assert "[1] harbour.md" in prompt and "06:12 on Mondays" in prompt
    assert history["internal"][-1][1] == "High tide is at 06:12 [1]."
    visible = history["visible"][-1][1]
    assert "<details" in visible and "06:12 on Mondays" in visible.split("<details", 1)[1]
    assert not [f for f in runtime.host.take_failures() if f.extension == "rag-enhancer"]
