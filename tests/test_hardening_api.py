"""The OpenAI-compatible API under wrong, odd and huge requests (issue 11).

"The OpenAI-compatible API answers 500 to valid or merely wrong requests: content given as a
list of parts ... must work; `content: 123`, `null`, `messages: [1]`, `stop: 5` must be 400 with
a message saying which field is wrong. `character` must be a string (a name with `/` or `..` is
refused or made safe). A 1 MB message must not block every other request for minutes: cap what
is stored and embedded per message (configurable) and say so."
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pocketpack.host import shared
from pocketpack.host.api import make_app
from pocketpack.host.characters import CharacterNameError, load_character
from pocketpack.host.chat import default_state, generate_chat_prompt
from pocketpack.host.runtime import Runtime
from tests.helpers.scripted_backend import ScriptedBackend

REPO = Path(__file__).resolve().parents[1]
USER = {"role": "user", "content": "How are you?"}


@pytest.fixture
def api(tmp_path):
    from fastapi.testclient import TestClient

    runtime = Runtime(root=tmp_path, extensions=[], nowebui=True)
    runtime.backend = ScriptedBackend("Fine, thanks.")
    return TestClient(make_app(runtime)), runtime


def chat(http, body):
    return http.post("/v1/chat/completions", json=body)


@pytest.mark.parametrize("body, param, says", [
    ({"messages": [{"role": "user", "content": 123}]}, "messages[0].content", "must be a string or a list"),
    ({"messages": [{"role": "user", "content": None}]}, "messages[0].content", "null is allowed only for assistant"),
    ({"messages": [{"role": "system", "content": None}, USER]}, "messages[0].content", "required for a system"),
    ({"messages": [1]}, "messages[0]", "must be an object"),
    ({"messages": ["hi"]}, "messages[0]", "must be an object"),
    ({}, "messages", "'messages' is required"),
    ({"messages": []}, "messages", "must not be empty"),
    ({"messages": "How are you?"}, "messages", "must be a list"),
    ({"messages": {"role": "user"}}, "messages", "must be a list"),
    ({"messages": [{"content": "hi"}]}, "messages[0].role", "is required"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role", "'user'"),
    ({"messages": [{"role": "tool", "content": "hi"}]}, "messages[0].role", "'assistant'"),
    ({"messages": [USER, {"role": "assistant", "content": "Good."}]}, "messages", "must be a user message"),
    ({"messages": [{"role": "system", "content": "Be terse."}]}, "messages", "must be a user message"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}]},
     "messages[0].content[0]", "image_url parts are not supported"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
     "messages[0].content[0].text", "needs a string 'text'"),
    ({"messages": [{"role": "user", "content": [7]}]}, "messages[0].content[0]", "must be a part like"),
    ({"messages": [USER], "stop": 5}, "stop", "must be a string or a list of strings"),
    ({"messages": [USER], "stop": ["\n", 5]}, "stop", "must be a string or a list of strings"),
    ({"messages": [USER], "max_tokens": -1}, "max_tokens", "greater than or equal to 1"),
    ({"messages": [USER], "max_tokens": 0}, "max_tokens", "greater than or equal to 1"),
    ({"messages": [USER], "max_tokens": "abc"}, "max_tokens", "must be an integer, got 'abc'"),
    ({"messages": [USER], "max_tokens": 2.5}, "max_tokens", "must be an integer"),
    ({"messages": [USER], "max_tokens": True}, "max_tokens", "must be an integer"),
    ({"messages": [USER], "temperature": "hot"}, "temperature", "must be a number, got 'hot'"),
    ({"messages": [USER], "temperature": -1}, "temperature", "greater than or equal to 0"),
    ({"messages": [USER], "top_p": 3}, "top_p", "less than or equal to 1"),
    ({"messages": [USER], "seed": 2 ** 40}, "seed", "less than or equal to"),
    ({"messages": [USER], "mode": "poetry"}, "mode", "'instruct'"),
    ({"messages": [USER], "character": 5}, "character", "must be a string"),
    ({"messages": [USER], "character": ["Aria"]}, "character", "must be a string"),
    ({"messages": [USER], "character": "../../etc/passwd"}, "character", "not a character name"),
    ({"messages": [USER], "character": "a/b"}, "character", "not a character name"),
    ({"messages": [USER], "character": "a\\b"}, "character", "not a character name"),
    ({"messages": [USER], "character": "/etc"}, "character", "not a character name"),
    ({"messages": [USER], "character": "Aria\x00"}, "character", "control characters"),
    ({"messages": [USER], "character": "A" * 101}, "character", "at most 100"),
])
def test_a_wrong_field_is_a_400_naming_it(api, body, param, says):
    http, runtime = api
    response = chat(http, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert says in error["message"] and "\n" not in error["message"]
    assert runtime.backend.prompts == []  # refused before anything ran


@pytest.mark.parametrize("raw, says", [
    (b"not json", "not valid JSON"),
    (b"", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b'"hello"', "must be a JSON object"),
    (b"null", "must be a JSON object"),
])
def test_a_body_that_is_no_json_object_is_a_400(api, raw, says):
    http, _ = api
    for route in ("/v1/chat/completions", "/v1/completions"):
        response = http.post(route, content=raw, headers={"content-type": "application/json"})
        assert response.status_code == 400
        assert says in response.json()["error"]["message"] and response.json()["error"]["param"] is None


def test_completions_validate_the_same_way(api):
    http, _ = api
    for body, param in (({"prompt": 5}, "prompt"), ({}, "prompt"), ({"prompt": "Once", "stop": 5}, "stop"),
                        ({"prompt": "Once", "max_tokens": "ten"}, "max_tokens")):
        response = http.post("/v1/completions", json=body)
        assert response.status_code == 400 and response.json()["error"]["param"] == param


def test_content_as_a_list_of_text_parts_works(api):
    """What the official OpenAI clients and many front ends send."""
    http, runtime = api
    response = chat(http, {"messages": [
        {"role": "system", "content": [{"type": "text", "text": "You are terse."}]},
        {"role": "user", "content": [{"type": "text", "text": "Hello."}, {"type": "text", "text": "How are you?"}]}]})
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "Fine, thanks."
    assert "You are terse." in runtime.backend.prompts[-1]
    assert "<user>Hello.\nHow are you?</user>" in runtime.backend.prompts[-1]


def test_valid_odd_requests_are_answered(api):
    """OpenAI's schema allows these: a null assistant content (an empty turn), developer
    messages (system messages' newer name), stop as one string, extra fields it does not know."""
    http, runtime = api
    response = chat(http, {
        "model": "anything", "n": 1, "presence_penalty": 0, "user": "u-1", "stream": False,
        "messages": [{"role": "developer", "content": "Answer in French."}, {"role": "user", "content": "Hi"},
                     {"role": "assistant", "content": None}, {"role": "user", "content": "Again"}],
        "stop": "\n\n", "max_completion_tokens": 5, "temperature": 1, "seed": -1, "character": "Aria"})
    assert response.status_code == 200, response.text
    assert "Answer in French." in runtime.backend.prompts[-1]


def test_a_character_name_never_reaches_outside_the_characters_folder(tmp_path):
    (tmp_path / "characters").mkdir()
    (tmp_path / "secret.yaml").write_text("name: Secret\ncontext: do not read\n")
    for name in ("../secret", "..", "a/b", "/etc/passwd", "C:\\x", "a\x00b"):
        with pytest.raises(CharacterNameError):
            load_character(tmp_path / "characters", name)


def test_history_is_cut_to_the_context_with_few_tokenizations():
    """A 1 MB last message and 64 rows of history: the prompt keeps the newest rows that fit
    (here none) after a handful of tokenizations, not one per row (each costs seconds on 1 MB)."""

    class Counting(ScriptedBackend):
        calls = 0

        def count_tokens(self, text):
            Counting.calls += 1
            return len(text) // 4

    rows = [[f"question {i} " + "word " * 40, f"answer {i} " + "word " * 40] for i in range(64)]
    state = default_state(mode="instruct", truncation_length=2048, max_new_tokens=200)
    state["history"]["internal"] = rows
    backend = Counting()
    prompt = generate_chat_prompt(backend, "x" * 1_000_000, state)
    assert "question" not in prompt and Counting.calls <= 2
    # a short message keeps exactly the newest rows that fit, as dropping one row at a time did
    Counting.calls = 0
    prompt = generate_chat_prompt(backend, "And now?", state)
    assert Counting.calls <= 8
    kept = [i for i in range(64) if f"question {i} " in prompt]
    assert kept == list(range(kept[0], 64)) and kept[0] > 0
    assert len(prompt) // 4 <= 2048 - 200
    before = rows[kept[0] - 1]  # the row before the first kept one would not have fitted
    assert (len(prompt) + len(before[0]) + len(before[1])) // 4 > 2048 - 200


# -- a pasted megabyte: memory keeps a bounded part, and the server keeps answering ----------------

def big_message() -> str:
    words = ("kettle cupboard Gaivota Lisbon sailing mainsail harbour tide anchor rope ").split()
    return " ".join(f"{words[i % len(words)]}{i}" for i in range(120_000))[:1_000_000]


def memory_runtime(tmp_path: Path, settings: str = "") -> Runtime:
    user_data = tmp_path / "user_data"
    user_data.mkdir()
    (user_data / "settings.yaml").write_text(settings)
    runtime = Runtime(root=REPO, user_data_dir=user_data, extensions=["memory"], nowebui=True)
    runtime.backend = ScriptedBackend("Noted.")
    shared.tokenizer = None
    return runtime


@pytest.mark.slow  # the real embedding model
def test_memory_stores_a_bounded_part_of_a_huge_message_and_says_so(tmp_path, caplog):
    from pocketpack.host.api import chat_completion

    runtime = memory_runtime(tmp_path, "memory-max_message_chars: 2000\n")
    big = big_message()
    with caplog.at_level(logging.WARNING, logger="pocketpack.memory"):
        chat_completion(runtime, {"character": "Aria", "messages": [{"role": "user", "content": big}]})
    assert big in runtime.backend.prompts[-1]  # the model is given all of it; only memory keeps a part
    stored = {m.role: m.text for m in runtime.host.loaded["memory"].turns().memory.list("Aria")}
    assert stored["user"].startswith(big[:2000]) and len(stored["user"]) < 2100
    assert "cut by memory: 1,000,000 characters, the first 2,000 kept" in stored["user"]
    assert any("1000000 characters" in r.getMessage() and "max_message_chars" in r.getMessage()
               for r in caplog.records)
    # the same conversation resent (as API clients do): the cut row is recognised, not re-stored
    chat_completion(runtime, {"character": "Aria", "messages": [{"role": "user", "content": big},
                                                                {"role": "assistant", "content": "Noted."},
                                                                {"role": "user", "content": "Thanks."}]})
    assert len(runtime.host.loaded["memory"].turns().memory.list("Aria")) == 4
    assert runtime.host.take_failures() == []


@pytest.mark.slow  # the real embedding model, behind a real server on 127.0.0.1
def test_a_huge_message_does_not_stop_the_server_answering(tmp_path):
    import socket

    import uvicorn

    runtime = memory_runtime(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(make_app(runtime), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()

    def post(body: dict, timeout: float = 60) -> dict:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", method="POST",
                                         data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)

    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5).close()
                break
            except OSError:
                threading.Event().wait(0.1)
        post({"messages": [{"role": "user", "content": "warm up"}]})  # the embedding model loads once
        done: dict = {}
        big = threading.Thread(target=lambda: done.update(
            big=post({"character": "Aria", "messages": [{"role": "user", "content": big_message()}]})))
        big.start()
        small = post({"character": "Bob", "messages": [{"role": "user", "content": "Still there?"}]})
        big.join(timeout=60)
        assert not big.is_alive() and done["big"]["choices"][0]["message"]["content"] == "Noted."
        assert small["choices"][0]["message"]["content"] == "Noted."
        assert [p.count("Still there?") for p in runtime.backend.prompts[-2:]] in ([0, 1], [1, 0])
    finally:
        server.should_exit = True
        thread.join(timeout=30)
