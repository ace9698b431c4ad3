"""llama.cpp backend through llama-cpp-python (TGWUI itself now runs llama-server).

Flags map as TGWUI maps them onto llama-server: ``--gpu-layers`` -> ``n_gpu_layers``
(unset = all, ``--cpu`` = 0), ``--ctx-size`` -> ``n_ctx`` (unset = the model's, at most
8192), ``--cache-type`` -> ``type_k``/``type_v`` (a quantised V cache needs flash
attention, so it is switched on), ``--threads``, ``--batch-size``, ``--no-mmap``, ``--mlock``.

Prompts are rendered with llama-cpp-python's registered chat formatters
(``llama_cpp.llama_chat_format``), or with the GGUF's own Jinja template when no format is
named, so no template is hand-written here. TGWUI calls tokenizer/logits hooks only for
Transformers-family loaders; this backend ignores them in the same way.
"""

from __future__ import annotations

import atexit
import random
import weakref
from pathlib import Path
from typing import Iterator

from pocketpack.fileformats import FormatError, read_gguf_header
from pocketpack.host.backends.base import Backend, GenerationParams, ModelLoadError
from pocketpack.host.default_model import DEFAULT_CHAT_FORMAT, DEFAULT_MODEL_FILENAME
from pocketpack.host.flags import LoadSettings

DEFAULT_CTX = 8192  # TGWUI's context when it is not auto-fitted
_GGUF_MAGIC = b"GGUF"


# Models still open at exit are closed while llama_cpp is intact: left to the garbage
# collector at interpreter teardown, Llama.__del__ prints a TypeError traceback.
_OPEN: "weakref.WeakSet[LlamaCppBackend]" = weakref.WeakSet()


@atexit.register
def _close_open_models() -> None:
    for backend in list(_OPEN):
        backend.close()


def _one_line(exc: BaseException) -> str:
    from pocketpack.host.backends import one_line

    return one_line(exc)


def _gguf_context_length(path: Path) -> int | None:
    """``<arch>.context_length`` from the GGUF header (None if it cannot be read)."""
    try:
        meta = read_gguf_header(path, stop_key_suffix=".context_length").metadata
    except FormatError:
        return None
    found = [v for k, v in meta.items() if k.endswith(".context_length")]
    return int(found[0]) if found and isinstance(found[0], int) else None


def _explain_failure(path: Path, exc: BaseException) -> str:
    """Why llama.cpp refused ``path``, in one line (its own error says only 'failed')."""
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != _GGUF_MAGIC:
        return f"{path.name} is not a GGUF file (it does not start with the GGUF magic bytes)"
    try:
        header = read_gguf_header(path)
    except FormatError:
        header = None
    if header is None or header.tensor_data_end >= header.file_size:
        return f"{path.name} is corrupt or truncated (its GGUF header does not match the file)"
    arch = header.metadata.get("general.architecture", "unknown")
    return (f"{path.name} could not be loaded by llama.cpp ({_one_line(exc)}); architecture "
            f"'{arch}' may need a newer llama-cpp-python")


def _formatter_from_handler(handler):
    """The ChatFormatter a registered chat handler wraps (it is captured in its closure)."""
    cells = dict(zip(handler.__code__.co_freevars, handler.__closure__ or ()))
    cell = cells.get("chat_formatter")
    return cell.cell_contents if cell is not None else None


class LlamaCppBackend(Backend):
    """A GGUF model in-process. ``.model`` is the ``llama_cpp.Llama`` object."""

    loader = "llama.cpp"

    def __init__(self, path: str | Path, settings: LoadSettings | None = None):
        settings = settings or LoadSettings()
        self.path = Path(path)
        self.model_name = self.path.name
        try:
            import llama_cpp
        except ImportError:
            raise ModelLoadError(
                "the llama.cpp loader needs llama-cpp-python: pip install llama-cpp-python"
            ) from None

        gpu_layers = 0 if settings.cpu else settings.gpu_layers
        n_ctx = settings.ctx_size or min(DEFAULT_CTX, _gguf_context_length(self.path) or DEFAULT_CTX)
        chat_format = settings.chat_format
        if chat_format is None and self.path.name == DEFAULT_MODEL_FILENAME:
            chat_format = DEFAULT_CHAT_FORMAT
        kwargs = dict(
            model_path=str(self.path),
            n_gpu_layers=-1 if gpu_layers is None else gpu_layers,
            n_ctx=n_ctx,
            n_batch=settings.batch_size or 512,
            use_mmap=not settings.no_mmap,
            use_mlock=settings.mlock,
            chat_format=chat_format,
            verbose=False,
        )
        if settings.threads:
            kwargs.update(n_threads=settings.threads, n_threads_batch=settings.threads)
        cache_type = settings.cache_type or "fp16"
        if cache_type != "fp16":
            ggml_type = {"q8_0": llama_cpp.GGML_TYPE_Q8_0, "q4_0": llama_cpp.GGML_TYPE_Q4_0}[cache_type]
            kwargs.update(type_k=ggml_type, type_v=ggml_type, flash_attn=True)
        self.cache_type = cache_type

        if chat_format is not None:
            from llama_cpp import llama_chat_format

            try:
                llama_chat_format.get_chat_completion_handler(chat_format)
            except Exception:  # noqa: BLE001 - the registry's own exception type
                names = ", ".join(sorted(llama_chat_format.LlamaChatCompletionHandlerRegistry()
                                         ._chat_handlers))
                raise ModelLoadError(f"unknown chat format '{chat_format}'; known: {names}") from None
        try:
            self.model = llama_cpp.Llama(**kwargs)
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(_explain_failure(self.path, exc)) from None
        _OPEN.add(self)
        self.n_ctx = self.model.n_ctx()
        self.chat_format = self.model.chat_format
        self._formatter = self._find_formatter()
        # the format's end-of-turn strings (e.g. Gemma's "<end_of_turn>\n") end every reply
        try:
            stop = self._formatter(messages=[{"role": "user", "content": "hi"}]).stop or []
        except Exception:  # noqa: BLE001 - a template that needs more than one user turn
            stop = []
        self._chat_stop: list[str] = [stop] if isinstance(stop, str) else list(stop)

    # -- tokens -------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return self.model.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def decode(self, ids: list[int]) -> str:
        return self.model.detokenize(list(ids)).decode("utf-8", errors="ignore")

    # -- chat ---------------------------------------------------------------------------
    def _find_formatter(self):
        from llama_cpp import llama_chat_format

        name = self.chat_format
        template = self.model.metadata.get("tokenizer.chat_template")
        if name == "chat_template.default" and template:
            self.chat_template = template
            tokens = self.model._model
            return llama_chat_format.Jinja2ChatFormatter(
                template=template,
                eos_token=tokens.token_get_text(self.model.token_eos()),
                bos_token=tokens.token_get_text(self.model.token_bos()),
            )
        handler = llama_chat_format.get_chat_completion_handler(name)
        formatter = _formatter_from_handler(handler)
        if formatter is None:
            raise ModelLoadError(f"chat format '{name}' is a handler without a prompt "
                                 "formatter; pick another (e.g. chatml)")
        return formatter

    def render_chat(self, messages: list[dict]) -> str:
        msgs = [dict(m) for m in messages]
        if self.chat_format == "gemma":
            # llama-cpp-python's gemma format drops system messages; Gemma's own template
            # puts the system text at the top of the first user turn, and so do we.
            system = "\n\n".join(m["content"] for m in msgs if m["role"] == "system" and m["content"])
            msgs = [m for m in msgs if m["role"] != "system"]
            if system:
                first_user = next((m for m in msgs if m["role"] == "user"), None)
                if first_user is None:
                    msgs.insert(0, {"role": "user", "content": system})
                else:
                    first_user["content"] = f"{system}\n\n{first_user['content']}"
        prompt = self._formatter(messages=msgs).prompt
        bos = self.model._model.token_get_text(self.model.token_bos())
        if bos and prompt.startswith(bos):
            prompt = prompt[len(bos):]  # the BOS token is added when the prompt is tokenized
        return prompt

    # -- generation ---------------------------------------------------------------------
    def _prompt_ids(self, prompt: str, max_new_tokens: int) -> list[int]:
        """Tokens of ``prompt`` with one BOS, cut from the left to leave room for the reply
        (at most half the context is reserved for it, so a prompt always keeps the rest)."""
        ids = self.model.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        bos = self.model.token_bos()
        while len(ids) > 1 and ids[0] == bos and ids[1] == bos:
            ids = ids[1:]
        budget = self.n_ctx - min(max(1, max_new_tokens), self.n_ctx // 2)
        if len(ids) > budget:
            head = ids[:1] if ids[0] == bos else []
            ids = head + ids[len(ids) - (budget - len(head)):]
        return ids

    def stream(self, prompt: str, params: GenerationParams, *, tokenizer_hook=None,
               logits_hook=None) -> Iterator[str]:
        ids = self._prompt_ids(prompt, params.max_new_tokens)
        stop = [s for s in dict.fromkeys(list(params.stop) + self._chat_stop) if s]
        seed = params.seed if params.seed is not None and params.seed >= 0 else random.randrange(2**31)
        text = ""
        for chunk in self.model.create_completion(
            ids,
            max_tokens=max(1, min(params.max_new_tokens, self.n_ctx - len(ids))),
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
            min_p=0.0,  # TGWUI's neutral value; GenerationParams has no min_p
            repeat_penalty=params.repetition_penalty,
            seed=seed,
            stop=stop,
            stream=True,
        ):
            piece = chunk["choices"][0]["text"]
            if piece:
                text += piece
                yield text

    def close(self) -> None:
        if self.model is not None:
            self.model.close()
        self.model = None
