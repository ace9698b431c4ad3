"""A small OpenAI-compatible API, shaped like TGWUI's ``--api`` (``modules/api``).

It builds the same state TGWUI's API builds — instruct mode by default, system messages in
``custom_system_message``, no ``character_menu`` or ``unique_id`` — so an extension tested
through it behaves as it will behind TGWUI's API. Like TGWUI's, chat responses return the
internal (raw) reply; ``output_modifier`` only shows in ``/v1/completions``.

Every request goes through one schema (``ChatRequest`` / ``CompletionRequest``): a field of the
wrong type or range is a 400 with OpenAI's error object, ``{"error": {"message", "type":
"invalid_request_error", "param": "messages[0].content"}}``, never a 500. ``content`` is a string
or a list of parts whose ``text`` parts are joined with newlines (image, audio and file parts
are refused: this API reads text only); ``null`` content is accepted only for an assistant
message (as in OpenAI's schema, it is then an empty reply); ``developer`` messages are system
messages. ``character`` must be a plain name (``check_character_name``). Unknown fields are
ignored, as OpenAI clients send many.

Beside the message, each chat choice has ``sources``: the document passages rag-enhancer put
in that request's prompt (``n`` as the model saw it, name, location, score, the exact text,
and whether the reply cites ``[n]``) — ``[]`` when none were, or rag-enhancer is off. They
come from that request's own state only, never from another request.

Users (``--multi-user``): settings.yaml's ``users: {name: {api_key: …}}`` maps each request's
``Authorization: Bearer <key>`` to its user, and ``user_header`` (off unless named) trusts a
header a proxy sets; the request's hooks then see that user (``TurnState.user``). A key that
is given but unknown is a 401; a request with no key has no user (under ``--multi-user``,
memory is off for it).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError
from starlette.requests import Request  # at module level: FastAPI resolves annotations here

from pocketpack.host.characters import CharacterNameError, check_character_name
from pocketpack.host.chat import api_chat_state, completion_state
from pocketpack.host.runtime import Runtime
from pocketpack.turnstate import REQUEST_USER

log = logging.getLogger("pocketpack.host")

SAMPLING_KEYS = ("max_tokens", "temperature", "top_p", "top_k", "seed", "repetition_penalty")
STATE_KEYS = ("mode", "character", "name1", "name2", "context", "user_bio")


class InvalidRequest(ValueError):
    """A request the API answers with 400 and an OpenAI-style error naming the field."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param

    def body(self) -> dict:
        return {"error": {"message": str(self), "type": "invalid_request_error", "param": self.param, "code": None}}


# -- the request schema: every field the API reads, with its type; other fields are ignored ----

def _content(value: Any) -> Any:
    """A message's content: a string, or a list of parts whose text parts are joined (what the
    official OpenAI clients send); null is checked per role in ``_check_chat``."""
    if value is None or isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise PydanticCustomError("content_type", "must be a string or a list of content parts")
    texts = []
    for i, part in enumerate(value):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "text":
            raise PydanticCustomError("content_part", "a text part needs a string 'text'", {"at": f"[{i}].text"})
        elif isinstance(kind, str) and kind.split("_")[-1] in ("image", "url", "audio", "file"):
            raise PydanticCustomError("content_part", "{kind} parts are not supported: this API reads text only "
                                      "(send the text as a 'text' part)", {"at": f"[{i}]", "kind": kind})
        else:
            raise PydanticCustomError("content_part", "must be a part like {\"type\": \"text\", \"text\": \"...\"}",
                                      {"at": f"[{i}]"})
    return "\n".join(texts)


def _stop(value: Any) -> Any:
    """``stop``: a string or a list of strings (empty ones dropped)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PydanticCustomError("stop_type", "must be a string or a list of strings")
    return [v for v in value if v]


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, allow_inf_nan=False)
    role: Literal["system", "developer", "user", "assistant"]
    content: Annotated[Optional[str], BeforeValidator(_content)] = None


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, allow_inf_nan=False)
    max_tokens: Optional[Annotated[int, Field(ge=1)]] = None
    max_completion_tokens: Optional[Annotated[int, Field(ge=1)]] = None   # newer clients' name for it
    temperature: Optional[Annotated[float, Field(ge=0)]] = None
    top_p: Optional[Annotated[float, Field(ge=0, le=1)]] = None
    top_k: Optional[Annotated[int, Field(ge=0)]] = None
    seed: Optional[Annotated[int, Field(ge=-1, le=2**32 - 1)]] = None
    repetition_penalty: Optional[Annotated[float, Field(gt=0)]] = None
    stop: Annotated[Optional[list[str]], BeforeValidator(_stop)] = None
    stream: Optional[bool] = None


class ChatRequest(_Sampling):
    messages: Annotated[list[_Message], Field(min_length=1)]
    mode: Optional[Literal["chat", "chat-instruct", "instruct"]] = None
    character: Optional[str] = None
    name1: Optional[str] = None
    name2: Optional[str] = None
    context: Optional[str] = None
    user_bio: Optional[str] = None


class CompletionRequest(_Sampling):
    prompt: str


def _param(error: dict) -> str | None:
    """``('messages', 0, 'content')`` -> ``messages[0].content`` (+ the part a validator named)."""
    out = ""
    for part in error["loc"]:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    out += (error.get("ctx") or {}).get("at", "")
    return out or None


def _shown(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "a list"
    text = json.dumps(value) if value is None or isinstance(value, (bool, int, float)) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


_PLAIN = {"a valid integer": "an integer", "a valid number": "a number", "a valid string": "a string",
          "a valid boolean": "true or false", "a valid list": "a list", "a valid array": "a list",
          "a finite number": "a finite number"}


def _message(error: dict, param: str | None) -> str:
    """One line saying which field is wrong, what it must be and what it was."""
    kind, msg = error["type"], error["msg"]
    if kind == "json_invalid":
        return f"the request body is not valid JSON ({(error.get('ctx') or {}).get('error', msg)})"
    if kind == "model_type" and param is None:
        return "the request body must be a JSON object"
    if kind == "missing":
        return f"'{param}' is required"
    if kind == "too_short":
        return f"'{param}' must not be empty"
    if kind in ("content_part",):  # our own message, about one part
        return f"'{param}': {msg}"
    if kind == "model_type":
        msg = "must be an object like {\"role\": \"user\", \"content\": \"...\"}"
    elif msg.startswith("Input should be "):
        wanted = msg[len("Input should be "):]
        msg = "must be " + _PLAIN.get(wanted, wanted)
    return f"'{param}' {msg}, got {_shown(error.get('input'))}"


def validate(model: type[BaseModel], body: Any) -> BaseModel:
    """The request as ``model``, or InvalidRequest naming the first field that is wrong."""
    try:
        if isinstance(body, (bytes, str)):
            return model.model_validate_json(body)
        return model.model_validate(body)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        param = _param(error)
        raise InvalidRequest(_message(error, param), param) from None


def _check_chat(request: ChatRequest) -> None:
    """What the types cannot say: null content only for assistant messages, a user message
    last, and a character name that is only a name."""
    for i, message in enumerate(request.messages):
        if message.content is None and message.role != "assistant":
            raise InvalidRequest(f"'messages[{i}].content' is required for a {message.role} message "
                                 "(null is allowed only for assistant messages)", f"messages[{i}].content")
    turns = [m for m in request.messages if m.role in ("user", "assistant")]
    if not turns or turns[-1].role != "user":
        raise InvalidRequest("the last user or assistant message must be a user message", "messages")
    if request.character:
        try:
            check_character_name(request.character)
        except CharacterNameError as exc:
            raise InvalidRequest(f"'character': {exc}", "character") from None


def _sampling(request: _Sampling) -> dict:
    state = {k: getattr(request, k) for k in SAMPLING_KEYS if getattr(request, k) is not None}
    if request.max_completion_tokens is not None and "max_tokens" not in state:
        state["max_tokens"] = request.max_completion_tokens
    if "max_tokens" in state:
        state["max_new_tokens"] = state.pop("max_tokens")
    if request.stop:
        state["custom_stopping_strings"] = list(request.stop)
    return state


RAG_STATE_KEY = "_pocketpack_rag"  # pocketpack.rag.extension.STATE_KEY: the turn's numbered passages


def _sources(state: dict, reply: str) -> list[dict]:
    """The passages this request's prompt held, as the ``sources`` field."""
    passages = state.get(RAG_STATE_KEY)
    if not passages:
        return []
    from pocketpack.rag.cite import source_records

    return source_records(passages, reply)


def _model_name(runtime: Runtime) -> str:
    return runtime.backend.model_name if runtime.backend else "None"


def chat_completion(runtime: Runtime, body: dict | bytes | str) -> dict:
    """``/v1/chat/completions`` without streaming. ``body`` is the request (a dict or its JSON)."""
    request = validate(ChatRequest, body)
    _check_chat(request)
    # developer messages are system messages under their newer name; a null assistant reply is empty
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.content or ""}
                for m in request.messages]
    state = api_chat_state(messages, **_sampling(request))
    for key in STATE_KEYS:
        if getattr(request, key):
            state[key] = getattr(request, key)
    history = state["history"]
    for history in runtime.chat(state.pop("user_input"), state, loading_message=False):  # noqa: B007 - the last yield is the finished turn
        pass
    reply = history["internal"][-1][1]
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
        "model": _model_name(runtime),
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": reply},
                     "sources": _sources(state, reply)}],
    }


def text_completion(runtime: Runtime, body: dict | bytes | str) -> dict:
    """``/v1/completions`` without streaming."""
    request = validate(CompletionRequest, body)
    reply = ""
    for reply in runtime.complete(request.prompt, completion_state(**_sampling(request))):  # noqa: B007 - cumulative: the last is the reply
        pass
    return {
        "id": f"cmpl-{uuid.uuid4().hex[:12]}", "object": "text_completion", "created": int(time.time()),
        "model": _model_name(runtime),
        "choices": [{"index": 0, "finish_reason": "stop", "text": reply}],
    }


class UnknownKey(ValueError):
    """An API key was sent that no configured user has."""


def request_user(headers) -> str | None:
    """The user a request comes from: its Bearer key's user in settings.yaml's ``users``, else
    the ``user_header`` the admin named (never a header that was not named), else None."""
    from pocketpack.host import shared
    from pocketpack.host.settings import api_users

    keys, header = api_users(shared.settings or {})
    auth = headers.get("authorization") or ""
    if keys and auth.lower().startswith("bearer "):
        key = auth[7:].strip()
        if key not in keys:
            raise UnknownKey("unknown API key (settings.yaml 'users' has none like it)")
        return keys[key]
    if header:
        return (headers.get(header.lower()) or "").strip() or None
    return None


def as_user(user: str | None, handler, *args):
    """Run ``handler`` with ``user`` as the request's user (:data:`REQUEST_USER`), for this
    worker thread's call only."""
    token = REQUEST_USER.set(user)
    try:
        return handler(*args)
    finally:
        REQUEST_USER.reset(token)


def make_app(runtime: Runtime, app=None):
    """Add the API routes to a FastAPI app (a new one when none is given)."""
    from fastapi import FastAPI
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse

    app = app or FastAPI(title="Pocket Pack API")

    async def _call(handler, request: Request):
        """Validation and generation run in a worker thread, so the server keeps answering."""
        try:
            user = request_user(request.headers)
        except UnknownKey as exc:
            return JSONResponse({"error": {"message": str(exc), "type": "invalid_request_error", "param": None,
                                           "code": "invalid_api_key"}}, status_code=401)
        body = await request.body()
        try:
            return await run_in_threadpool(as_user, user, handler, runtime, body)
        except InvalidRequest as exc:
            return JSONResponse(exc.body(), status_code=400)
        except RuntimeError as exc:
            if runtime.backend is None:  # "no model is loaded": load one, then retry
                return JSONResponse({"error": {"message": str(exc), "type": "server_error", "param": None,
                                               "code": "model_not_loaded"}}, status_code=503)
            raise

    @app.post("/v1/chat/completions")
    async def chat_route(request: Request):
        return await _call(chat_completion, request)

    @app.post("/v1/completions")
    async def completion_route(request: Request):
        return await _call(text_completion, request)

    @app.get("/v1/models")
    async def models_route():
        name = _model_name(runtime)
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
