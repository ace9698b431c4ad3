"""A small OpenAI-compatible API, shaped like TGWUI's ``--api`` (``modules/api``).

It builds the same state TGWUI's API builds — instruct mode by default, system messages in
``custom_system_message``, no ``character_menu`` or ``unique_id`` — so an extension tested
through it behaves as it will behind TGWUI's API. Like TGWUI's, chat responses return the
internal (raw) reply; ``output_modifier`` only shows in ``/v1/completions``.
"""

from __future__ import annotations

import time
import uuid

from starlette.requests import Request  # at module level: FastAPI resolves annotations here

from pocketpack.host.chat import api_chat_state, completion_state
from pocketpack.host.runtime import Runtime

SAMPLING_KEYS = ("max_tokens", "temperature", "top_p", "top_k", "seed", "repetition_penalty")


def _sampling(body: dict) -> dict:
    state = {k: body[k] for k in SAMPLING_KEYS if body.get(k) is not None}
    if "max_tokens" in state:
        state["max_new_tokens"] = state.pop("max_tokens")
    if body.get("stop"):
        stops = body["stop"] if isinstance(body["stop"], list) else [body["stop"]]
        state["custom_stopping_strings"] = stops
    return state


def chat_completion(runtime: Runtime, body: dict) -> dict:
    """``/v1/chat/completions`` without streaming."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty list")
    state = api_chat_state(messages, **_sampling(body))
    for key in ("mode", "character", "name1", "name2", "context", "user_bio"):
        if body.get(key) is not None:
            state[key] = body[key]
    history = state["history"]
    for history in runtime.chat(state.pop("user_input"), state, loading_message=False):
        pass
    reply = history["internal"][-1][1]
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
        "model": runtime.backend.model_name if runtime.backend else "None",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": reply}}],
    }


def text_completion(runtime: Runtime, body: dict) -> dict:
    """``/v1/completions`` without streaming."""
    prompt = body.get("prompt")
    if not isinstance(prompt, str):
        raise ValueError("'prompt' must be a string")
    reply = ""
    for reply in runtime.complete(prompt, completion_state(**_sampling(body))):
        pass
    return {
        "id": f"cmpl-{uuid.uuid4().hex[:12]}", "object": "text_completion", "created": int(time.time()),
        "model": runtime.backend.model_name if runtime.backend else "None",
        "choices": [{"index": 0, "finish_reason": "stop", "text": reply}],
    }


def make_app(runtime: Runtime, app=None):
    """Add the API routes to a FastAPI app (a new one when none is given)."""
    from fastapi import FastAPI, HTTPException
    from starlette.concurrency import run_in_threadpool

    app = app or FastAPI(title="Pocket Pack API")

    async def _call(handler, request: Request):
        try:
            body = await request.json()
        except Exception:
            raise HTTPException(status_code=400, detail="the request body is not JSON")
        if not isinstance(body, dict):
            raise HTTPException(status_code=400, detail="the request body must be a JSON object")
        try:
            return await run_in_threadpool(handler, runtime, body)
        except ValueError as exc:
            raise HTTPException(status_code=400, detail=str(exc))

    @app.post("/v1/chat/completions")
    async def chat_route(request: Request):
        return await _call(chat_completion, request)

    @app.post("/v1/completions")
    async def completion_route(request: Request):
        return await _call(text_completion, request)

    @app.get("/v1/models")
    async def models_route():
        name = runtime.backend.model_name if runtime.backend else "None"
        return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "pocketpack"}]}

    return app


def serve_api(runtime: Runtime, host: str, port: int) -> None:
    import uvicorn

    print(f"Pocket Pack API on http://{host}:{port}/v1", flush=True)
    uvicorn.run(make_app(runtime), host=host, port=port, log_level="warning")


def serve_api_in_background(runtime: Runtime, host: str, port: int):
    """The API on its own port beside the web UI, as TGWUI's ``--api`` does."""
    import threading

    thread = threading.Thread(target=serve_api, args=(runtime, host, port), daemon=True, name="pocketpack-api")
    thread.start()
    return thread
