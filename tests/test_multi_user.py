"""Issue 16, point 1: "under TGWUI's `--multi-user` with `--gradio-auth`, the user name (from the
gradio request) scopes memories, uploads, document collections marked private and adapter
bindings; through the API, the API key (or a configured header) maps to a user. With no
identity available under `--multi-user`, memory is off for that request and the tab says why."

Two users on one server, through the API (in-process, the real host app and extensions, a
scripted model, real embeddings) and through the web UI (a real `pocketpack serve --multi-user
--gradio-auth` subprocess and headless Chromium): nothing one tells reaches the other's prompt.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from pocketpack.host import shared
from pocketpack.host.api import make_app, request_user
from pocketpack.host.runtime import Runtime
from pocketpack.turnstate import TurnState, user_folder
from tests.helpers.scripted_backend import ScriptedBackend

REPO = Path(__file__).resolve().parents[1]
KEYS = {"alice": "sk-alice-7f3a", "bob": "sk-bob-91c2"}
FACT = "My locker code at the harbour gym is 4417."
QUESTION = "What is my locker code at the harbour gym?"


def _settings(user_data: Path, **extra) -> None:
    user_data.mkdir(parents=True, exist_ok=True)
    users = {name: {"api_key": key} for name, key in KEYS.items()}
    (user_data / "settings.yaml").write_text(yaml.safe_dump({"users": users, **extra}))


@pytest.fixture
def multi_user(monkeypatch):
    monkeypatch.setattr(shared.args, "multi_user", True)
    monkeypatch.setattr(shared, "settings", {})


def _api(tmp_path: Path, extensions: list[str], **settings):
    from fastapi.testclient import TestClient

    user_data = tmp_path / "user_data"
    _settings(user_data, **settings)
    runtime = Runtime(root=REPO, user_data_dir=user_data, extensions=extensions, nowebui=True)
    runtime.backend = ScriptedBackend("Noted.")
    shared.tokenizer = None
    return TestClient(make_app(runtime)), runtime


def _ask(http, text: str, key: str | None = None, headers: dict | None = None):
    headers = dict(headers or {})
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return http.post("/v1/chat/completions", headers=headers, json={
        "mode": "chat", "character": "Skipper", "messages": [{"role": "user", "content": text}]})


def test_a_user_name_never_leaves_its_own_folder():
    """A login is a folder name only where it is a plain one; '../bob' cannot reach bob's."""
    assert user_folder("alice") == "alice"
    assert len({user_folder(n) for n in ("bob", "../bob", "bob/", "bob ", "u-bob")}) == 5
    assert all("/" not in user_folder(n) and user_folder(n) not in (".", "..") for n in ("../bob", "..", "/"))


def test_api_user_is_the_key_owner_and_a_header_only_when_named(multi_user):
    """A client could send any header: only the one the admin named in settings.yaml counts."""
    from pocketpack.host.api import UnknownKey

    shared.settings = {"users": {n: {"api_key": k} for n, k in KEYS.items()}}
    assert request_user({"authorization": f"Bearer {KEYS['bob']}"}) == "bob"
    assert request_user({"x-pocketpack-user": "alice"}) is None       # not configured: ignored
    assert request_user({}) is None
    with pytest.raises(UnknownKey):
        request_user({"authorization": "Bearer sk-guess"})
    shared.settings = {**shared.settings, "user_header": "X-Pocketpack-User"}
    assert request_user({"x-pocketpack-user": "alice"}) == "alice"
    assert request_user({"authorization": f"Bearer {KEYS['bob']}", "x-pocketpack-user": "alice"}) == "bob"


def test_one_api_key_for_two_users_is_refused_in_one_line(tmp_path, capsys, multi_user):
    from pocketpack.cli import main

    user_data = tmp_path / "user_data"
    user_data.mkdir()
    (user_data / "settings.yaml").write_text(yaml.safe_dump({"users": {"alice": {"api_key": "same"},
                                                                       "bob": {"api_key": "same"}}}))
    assert main(["serve", "--nowebui", "--api", "--multi-user", "--user-data-dir", str(user_data),
                 "--extensions", "memory"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["pocketpack: settings 'users': 'alice' and 'bob' have the same api_key"]


@pytest.mark.slow  # the real embedding model
def test_api_memories_of_one_key_never_reach_another(tmp_path, multi_user, caplog):
    http, runtime = _api(tmp_path, ["memory"])
    script = runtime.host.loaded["memory"]
    assert _ask(http, FACT, KEYS["alice"]).status_code == 200

    # bob asks with his key: alice's fact is not in his prompt, and he has no memories at all
    assert _ask(http, QUESTION, KEYS["bob"]).status_code == 200
    assert "4417" not in runtime.backend.prompts[-1]
    assert all("4417" not in m.text for m in script.turns("bob").memory.list("Skipper"))
    assert not any("4417" in m.text for m in script.turns(None).memory.list("Skipper"))  # nor the shared store

    # alice, in a new conversation, is reminded: recall itself works
    assert _ask(http, QUESTION, KEYS["alice"]).status_code == 200
    assert "4417" in runtime.backend.prompts[-1]

    # a wrong key is refused; no key under --multi-user: memory off for the request, and said
    assert _ask(http, QUESTION, "sk-guess").status_code == 401
    with caplog.at_level(logging.WARNING, logger="pocketpack.memory"):
        assert _ask(http, f"Remember this: {FACT}", None).status_code == 200
    assert "4417" in runtime.backend.prompts[-1] and "Memories from earlier" not in runtime.backend.prompts[-1]
    assert "--multi-user and nobody is signed in" in caplog.text
    stored = [m.text for user in (None, "alice", "bob") for m in script.turns(user).memory.list("Skipper")]
    assert sum("Remember this" in t for t in stored) == 0
    assert runtime.host.take_failures() == []


@pytest.mark.slow  # the real embedding model
def test_a_configured_header_is_a_user_through_the_api(tmp_path, multi_user):
    """Behind a proxy that signs people in, the admin names the header that carries the user."""
    http, runtime = _api(tmp_path, ["memory"], user_header="X-Pocketpack-User")
    script = runtime.host.loaded["memory"]
    _ask(http, FACT, headers={"X-Pocketpack-User": "carol"})
    assert any("4417" in m.text for m in script.turns("carol").memory.list("Skipper"))
    _ask(http, QUESTION, headers={"X-Pocketpack-User": "dave"})
    assert "4417" not in runtime.backend.prompts[-1]


def test_the_single_user_store_keeps_its_name(tmp_path):
    """Without --multi-user nothing moves: the one store stays where existing installs have it,
    even when a login is known."""
    turn = TurnState.of({"history": {"internal": []}, "mode": "chat"}, user="alice", multi_user=False)
    from pocketpack.memory.turns import owner

    assert owner(turn) is None and not turn.anonymous
    assert TurnState.of({}, multi_user=True).anonymous



@pytest.mark.slow  # the real embedding model
def test_api_private_documents_are_their_owners_alone(tmp_path, multi_user):
    """Shared documents reach everyone; one added as private reaches its owner's prompts, list
    and queries only - never another key's, nor a request with no key."""
    from tests.helpers.rag import HARBOUR

    http, runtime = _api(tmp_path, ["rag-enhancer"])
    rag = runtime.host.loaded["rag-enhancer"].engine()
    alice, bob = (TurnState(user=u, multi_user=True) for u in ("alice", "bob"))
    (tmp_path / "harbour.md").write_text(HARBOUR)
    secret = tmp_path / "diary.md"
    secret.write_text("# Diary\n\nThe spare key to the boathouse hangs behind the blue tide clock.\n")

    message, _ = rag.add_documents([str(tmp_path / "harbour.md")], None, "global", who=alice)
    assert message.startswith("Added to global")
    message, rows = rag.add_documents([str(secret)], None, "private", who=alice)
    assert message.startswith("Added to your private documents") and any(r[1] == "diary.md" for r in rows)
    question = "Where is the spare key to the boathouse?"

    choice = _ask(http, question, KEYS["alice"]).json()["choices"][0]
    assert any(s["name"] == "diary.md" for s in choice["sources"])
    assert "blue tide clock" in runtime.backend.prompts[-1]
    for key in (KEYS["bob"], None):
        choice = _ask(http, question, key).json()["choices"][0]
        assert all(s["name"] != "diary.md" for s in choice["sources"])
        assert "blue tide clock" not in runtime.backend.prompts[-1]
    choice = _ask(http, "When is high tide at Port Avel?", KEYS["bob"]).json()["choices"][0]
    assert any(s["name"] == "harbour.md" for s in choice["sources"])    # shared ones still are

    # bob's tab: alice's private document is not listed, found, removable, nor can he add "private" unsigned
    assert [r[1] for r in rag.document_rows(bob)] == ["harbour.md"]
    assert all(r[3] != "diary.md" for r in rag.ask(question, 5, who=bob)[1])
    diary_id = next(r[0] for r in rag.document_rows(alice) if r[1] == "diary.md")
    assert rag.remove_document(diary_id, who=bob)[0].startswith("Not removed")
    assert rag.remove_document("diary.md", who=bob)[0].startswith("Not removed")
    nobody = TurnState(multi_user=True)
    assert rag.add_documents([str(secret)], None, "private", who=nobody)[0].startswith("Nothing added: private")
    # the same file name uploaded privately by bob is his own copy, not alice's overwritten
    (tmp_path / "bob").mkdir()
    (tmp_path / "bob" / "diary.md").write_text("# Diary\n\nBob's bicycle lock code is 2208.\n")
    rag.add_documents([str(tmp_path / "bob" / "diary.md")], None, "private", who=bob)
    assert "blue tide clock" in _ask(http, question, KEYS["alice"]).json()["choices"][0]["sources"][0]["text"]
    assert rag.remove_document(diary_id, who=alice)[0].startswith("Removed diary.md")
    assert [r[1] for r in rag.document_rows(bob)] == ["harbour.md", "diary.md"]


def test_adapter_bindings_are_per_user_under_multi_user(tmp_path):
    """A binding one user makes applies to that user's turns only, and only they see it; the
    single-user tables and file stay as they were."""
    from pocketpack.adapters.binding import Bindings
    from pocketpack.adapters.library import AdapterError

    path = tmp_path / "adapter_bindings.yaml"
    shared_table = Bindings(path)
    shared_table.bind("Captain Flint", {"terse": 1.0})
    single = path.read_text()
    assert "users" not in single

    alice, bob = (TurnState(character="Captain Flint", user=u, multi_user=True) for u in ("alice", "bob"))
    Bindings(path).scoped(alice).bind("Captain Flint", {"pirate": 0.8})
    again = Bindings(path)                                    # as read back from the file
    assert again.adapters_for(alice).adapters == {"pirate": 0.8}
    assert again.adapters_for(bob) is None                    # neither alice's nor the single-user one
    assert again.adapters_for(TurnState(character="Captain Flint", multi_user=True)) is None
    assert again.scoped(bob).characters == {}
    assert again.adapters_for(TurnState(character="Captain Flint")).adapters == {"terse": 1.0}
    with pytest.raises(AdapterError, match="sign in"):
        again.scoped(TurnState(multi_user=True)).bind("Captain Flint", "pirate")
    again.scoped(alice).unbind("Captain Flint")
    assert path.read_text() == single                         # her table gone, the rest untouched

# -- the web UI: two people signed in to one `pocketpack serve --multi-user --gradio-auth` -------
REPLY_TIMEOUT_MS = 240_000
IDLE = "() => [...document.querySelectorAll('[data-testid=status-tracker]')].every(t => t.classList.contains('hide'))"


def _sign_in(browser, url: str, user: str, password: str):
    """A person opening the page in their own browser (a separate context: own cookies)."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.goto(url, wait_until="load")
    page.get_by_label("username").fill(user)
    page.get_by_label("password").fill(password)
    page.get_by_role("button", name="Login").click()
    page.get_by_placeholder("Send a message").wait_for(state="visible", timeout=60_000)
    page.get_by_text("Parameters", exact=True).click()
    box = page.get_by_label("number input for max_new_tokens", exact=True)
    box.fill("8")
    box.press("Enter")
    page.get_by_text("Parameters", exact=True).click()
    return context, page


def _send(page, text: str) -> None:
    page.get_by_role("tab", name="Chat", exact=True).first.click()
    before = page.locator(".message.bot, [data-testid='bot']").count()
    page.get_by_placeholder("Send a message").fill(text)
    page.get_by_role("button", name="Send", exact=True).click()
    page.wait_for_function(f"() => document.querySelectorAll('.message.bot, [data-testid=bot]').length > {before}",
                           timeout=REPLY_TIMEOUT_MS)
    page.wait_for_function(IDLE, timeout=REPLY_TIMEOUT_MS)


def _memory_tab(page):
    tab = page.get_by_role("tab", name="Memory", exact=True).first
    tab.click()
    page.wait_for_function("t => t.getAttribute('aria-selected') === 'true'", arg=tab.element_handle())
    panel = page.get_by_role("tabpanel").first
    panel.wait_for(state="visible")
    return panel


def _listed(panel, page) -> str:
    """The memory table's text after an empty search (the newest memories)."""
    panel.get_by_role("button", name="Search", exact=True).click()
    page.wait_for_function(IDLE, timeout=60_000)
    return panel.get_by_label("Memories (click a row to pin, edit or delete it)").inner_text()


@pytest.mark.browser
@pytest.mark.slow
def test_web_ui_two_signed_in_users_never_see_each_others_memories(tmp_path, default_model):
    """alice tells a fact and sees it in her Memory tab; bob, signed in at the same time, asks
    for it: nothing of alice's is injected for him or listed in his tab."""
    from tests.helpers.browser import ARTIFACTS, chromium, serve

    user_data = tmp_path / "user_data"
    user_data.mkdir()
    with serve(user_data, default_model, "--model-dir", str(Path(default_model).parent), "--extensions", "memory",
               "--multi-user", "--gradio-auth", "alice:pw-alice,bob:pw-bob") as url, chromium() as browser:
        alice_context, alice = _sign_in(browser, url, "alice", "pw-alice")
        bob_context, bob = _sign_in(browser, url, "bob", "pw-bob")
        try:
            _send(alice, FACT)
            panel = _memory_tab(alice)
            assert "4417" in _listed(panel, alice)

            _send(bob, QUESTION)
            panel = _memory_tab(bob)
            panel.get_by_role("button", name="Show what was injected for the last reply").click()
            panel.get_by_text(f"query: {QUESTION}").wait_for(timeout=30_000)
            assert "4417" not in panel.inner_text()                        # not in bob's injected block
            listed = _listed(panel, bob)
            assert "locker code at the harbour gym?" in listed and "4417" not in listed
        except Exception:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            for name, page in (("alice", alice), ("bob", bob)):
                page.screenshot(path=str(ARTIFACTS / f"multi-user-failed-{name}.png"), full_page=True)
            raise
        finally:
            alice_context.close()
            bob_context.close()
    # on disk too: one folder per user below the memory store, nothing in the shared one
    users = user_data / "pocketpack" / "memory" / "users"
    assert sorted(p.name for p in users.iterdir()) == ["alice", "bob"]


@pytest.mark.browser
@pytest.mark.slow
def test_web_ui_with_nobody_signed_in_says_memory_is_off(tmp_path, default_model):
    """--multi-user without --gradio-auth: no one to keep memories for. The Memory tab and the
    reply say so, and nothing is stored."""
    from tests.helpers.browser import chromium, serve

    user_data = tmp_path / "user_data"
    user_data.mkdir()
    with serve(user_data, default_model, "--model-dir", str(Path(default_model).parent), "--extensions", "memory",
               "--multi-user") as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url, wait_until="load")
        page.get_by_placeholder("Send a message").wait_for(state="visible", timeout=60_000)
        _send(page, FACT)
        reply = page.locator(".message.bot, [data-testid='bot']").last
        assert "--multi-user and nobody is signed in" in reply.inner_text()
        panel = _memory_tab(page)
        panel.get_by_text("Memory is off.").wait_for(timeout=30_000)
        assert "nobody is signed in" in panel.inner_text()
    assert not (user_data / "pocketpack" / "memory" / "users").exists()


def test_a_documents_failure_is_noticed_under_its_own_reply_only(tmp_path):
    """rag-enhancer says under a reply when documents failed for it; with several people chatting
    at once, that notice (which may name a document) goes under the failed turn's reply only."""
    from pocketpack.rag.extension import RagEngine

    (tmp_path / "not-a-folder").write_text("a file where the library's folder should be")
    rag = RagEngine({"store_dir": str(tmp_path / "not-a-folder")})
    alice_state = {"history": {"internal": [], "visible": []}, "mode": "chat"}
    bob_state = {"history": {"internal": [], "visible": []}, "mode": "chat"}
    rag.chat_input_modifier("Where is the spare key?", "Where is the spare key?", alice_state,
                            TurnState.of(alice_state, user="alice", multi_user=True))
    assert "documents were not used" not in rag.output_modifier("Hello, Bob.", bob_state, is_chat=True)
    assert "documents were not used" in rag.output_modifier("Hello, Alice.", alice_state, is_chat=True)


def test_a_chat_upload_goes_to_the_uploaders_own_chat(tmp_path):
    """Two people may have chats with the same id (TGWUI names chats by the time they began):
    a document added to "this chat" is the uploader's, in the chat they last used, and only
    their turns in that chat search it."""
    from pocketpack.rag.extension import RagEngine

    rag = RagEngine({"store_dir": str(tmp_path / "documents")})
    alice = TurnState(character="Flint", chat_id="20260101-10-00-00", user="alice", multi_user=True)
    bob = TurnState(character="Mira", chat_id="20260101-10-00-00", user="bob", multi_user=True)
    rag.collections_for(alice)
    rag.collections_for(bob)                                     # bob's turn came last
    assert rag.upload_collection("chat", who=alice)[0] == "user/alice/chat/20260101-10-00-00"
    assert rag.upload_collection("character", who=alice)[0] == "character/Flint"
    assert "user/alice/chat/20260101-10-00-00" not in rag.collections_for(bob)
    assert "chat/20260101-10-00-00" not in rag.collections_for(bob)
    assert "user/alice/chat/20260101-10-00-00" in rag.collections_for(alice)
