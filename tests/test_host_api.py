"""API-only mode (`serve --nowebui --api`): TGWUI's OpenAI-compatible state, no ui() calls."""

from __future__ import annotations

import textwrap

import pytest

from pocketpack.host.api import make_app
from pocketpack.host.runtime import Runtime
from tests.helpers.scripted_backend import ScriptedBackend

RECORDER = '''
SEEN = []
params = {"is_tab": True}

def state_modifier(state):
    SEEN.append({k: state.get(k) for k in ("mode", "custom_system_message", "character_menu", "unique_id", "name2")}
                | {"has_character_menu": "character_menu" in state, "has_unique_id": "unique_id" in state})
    return state

def output_modifier(string, state, is_chat=False):
    return string + " [modified]"

def ui():
    raise AssertionError("ui() must not be called in API-only mode")
'''


@pytest.fixture
def client(tmp_path):
    from fastapi.testclient import TestClient

    (tmp_path / "extensions" / "recorder").mkdir(parents=True)
    (tmp_path / "extensions" / "recorder" / "script.py").write_text(textwrap.dedent(RECORDER))
    runtime = Runtime(root=tmp_path, extensions=["recorder"], nowebui=True)
    runtime.backend = ScriptedBackend("Fine, thanks.")
    return TestClient(make_app(runtime)), runtime


def test_chat_completions_use_tgwui_api_state(client):
    http, runtime = client
    response = http.post("/v1/chat/completions", json={"messages": [
        {"role": "system", "content": "You are terse."}, {"role": "user", "content": "How are you?"}]})
    assert response.status_code == 200
    # like TGWUI's API: the internal reply, untouched by output_modifier
    assert response.json()["choices"][0]["message"]["content"] == "Fine, thanks."
    seen = runtime.host.loaded["recorder"].SEEN[-1]
    assert seen["mode"] == "instruct" and seen["custom_system_message"] == "You are terse."
    assert not seen["has_character_menu"] and not seen["has_unique_id"]
    assert "You are terse." in runtime.backend.prompts[-1]


def test_completions_apply_output_modifier(client):
    http, _ = client
    response = http.post("/v1/completions", json={"prompt": "Once", "max_tokens": 5})
    assert response.status_code == 200
    assert response.json()["choices"][0]["text"] == "Fine, thanks. [modified]"


def test_bad_request_is_a_400_with_a_reason(client):
    http, _ = client
    response = http.post("/v1/chat/completions", json={"messages": []})
    assert response.status_code == 400 and response.json()["error"]["param"] == "messages"
    response = http.post("/v1/chat/completions", content=b"not json", headers={"content-type": "application/json"})
    assert response.status_code == 400


@pytest.mark.slow  # the real embedding model
def test_chat_completions_carry_the_sources_of_that_request_only(tmp_path):
    """Issue 14: the API gives the sources used for a reply as data, beside the message: the
    passages rag-enhancer put in that request's prompt, numbered as the model saw them."""
    from fastapi.testclient import TestClient

    from pocketpack.rag.ingest import Library
    from tests.helpers.rag import HARBOUR

    repo = __import__("pathlib").Path(__file__).resolve().parents[1]
    with Library(tmp_path / "user_data" / "pocketpack" / "documents") as lib:
        (tmp_path / "harbour.md").write_text(HARBOUR)
        lib.ingest([str(tmp_path / "harbour.md")])
    runtime = Runtime(root=repo, user_data_dir=tmp_path / "user_data", extensions=["rag-enhancer"], nowebui=True)
    runtime.backend = ScriptedBackend("High tide is at 06:12 [1].")
    http = TestClient(make_app(runtime))

    choice = http.post("/v1/chat/completions", json={"messages": [
        {"role": "user", "content": "When is high tide at Port Avel?"}]}).json()["choices"][0]
    assert choice["message"]["content"] == "High tide is at 06:12 [1]."   # the raw reply, no HTML
    sources = choice["sources"]
    assert sources and [s["n"] for s in sources] == list(range(1, len(sources) + 1))
    first = sources[0]
    assert first["name"] == "harbour.md" and "Tides" in first["location"] and 0 < first["score"] <= 1
    assert "06:12 on Mondays" in first["text"] and first["cited"] is True
    assert f"[1] harbour.md, {first['location']}" in runtime.backend.prompts[-1]  # the text the model saw
    assert all(s["cited"] is False for s in sources[1:])

    # the next request retrieved nothing: no sources, not the previous request's
    choice = http.post("/v1/chat/completions", json={"messages": [
        {"role": "user", "content": "What colour is the vault door of the mountain bank?"}]}).json()["choices"][0]
    assert choice["sources"] == []
