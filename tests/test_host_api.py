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
