"""Transformers backend (+ bitsandbytes 8/4-bit), mirroring TGWUI's Transformers loader.

Loading follows TGWUI's ``load_model_HF``: ``--bf16`` -> bfloat16, else the checkpoint's
float16/bfloat16 dtype (float16 if it says float32) on a GPU; ``--load-in-8bit`` /
``--load-in-4bit`` build a ``BitsAndBytesConfig`` (``--quant_type``, ``--use_double_quant``,
``--compute_dtype``). Two deliberate differences: on a CPU (``--cpu`` or no GPU) TGWUI
drops bitsandbytes silently, whereas bitsandbytes >= 0.45 has a CPU backend, so we quantise
there too (float32 weights/compute unless ``--bf16``/``--compute_dtype`` say otherwise);
and only local ``.safetensors`` are loaded (``local_files_only``, ``use_safetensors``).

Generation follows TGWUI's ``generate_reply_HF``: the prompt is encoded with one BOS, then
``tokenizer_hook`` runs where TGWUI calls ``tokenizer_modifier`` (it may replace prompt,
input_ids and input_embeds), then ``logits_hook`` gets the processor list where TGWUI calls
``logits_processor_modifier`` (it appends in place; its return value is ignored). Text is
streamed with ``TextIteratorStreamer`` from a generation thread.
"""

from __future__ import annotations

import gc
import logging
import threading
from pathlib import Path
from typing import Any, Iterator

from pocketpack.host.backends.base import Backend, GenerationParams, ModelLoadError
from pocketpack.host.flags import LoadSettings


class _DropCastNotice(logging.Filter):
    """bitsandbytes logs on every 8-bit matmul that fp32 inputs are cast to fp16 (as intended)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("MatMul8bitLt: inputs will be cast")


logging.getLogger("bitsandbytes.autograd._functions").addFilter(_DropCastNotice())


def _one_line(exc: BaseException) -> str:
    from pocketpack.host.backends import one_line

    return one_line(exc)


def fallback_chat(messages: list[dict]) -> str:
    """A plain prompt for tokenizers without a chat template."""
    lines = []
    for m in messages:
        role, content = m.get("role", "user"), m.get("content") or ""
        if role == "system":
            lines.append(f"{content}\n")
        elif role == "assistant":
            lines.append(f"Assistant: {content}")
        else:
            lines.append(f"User: {content}")
    lines.append("Assistant:")
    return "\n".join(lines)


def visible_text(text: str, stops: list[str]) -> tuple[str, bool]:
    """``text`` cut at the first stop string (True), or without a trailing partial stop string.

    As TGWUI does, a reply never shows the start of a stop string that may yet complete.
    """
    hits = [text.find(s) for s in stops if s and s in text]
    if hits:
        return text[: min(hits)], True
    hold = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                hold = max(hold, k)
                break
    return text[: len(text) - hold], False


class TransformersBackend(Backend):
    """A Hugging Face causal LM. ``.model`` is the (possibly quantised) PreTrainedModel."""

    loader = "Transformers"

    def __init__(self, path: str | Path, settings: LoadSettings | None = None):
        self.path = Path(path)
        self.settings = settings or LoadSettings()
        self.model_name = self.path.name
        try:
            import torch
            import transformers  # noqa: F401 - imported only to see whether it is installed
        except ImportError:
            raise ModelLoadError(f"the {self.loader} loader needs torch and transformers: "
                                 "pip install 'pocketpack[host]'") from None
        if self.settings.threads:
            torch.set_num_threads(self.settings.threads)  # process-wide, as llama.cpp's own
        self.tokenizer = self._load_tokenizer()
        self.model = self._load_model()
        self.model.eval()

    # -- loading ------------------------------------------------------------------------
    @property
    def on_cpu(self) -> bool:
        import torch

        return self.settings.cpu or not torch.cuda.is_available()

    def _load_tokenizer(self):
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(
                self.path, local_files_only=True, trust_remote_code=self.settings.trust_remote_code)
        except Exception as exc:  # noqa: BLE001 - transformers raises many types here
            raise ModelLoadError(f"cannot load the tokenizer in {self.path}: {_one_line(exc)}") from None

    def _dtype(self, config: Any):
        import torch

        if self.settings.bf16:
            return torch.bfloat16
        if self.on_cpu:
            return torch.float32
        dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
        return dtype if dtype in (torch.float16, torch.bfloat16) else torch.float16

    def _quantization_config(self):
        s = self.settings
        if not (s.load_in_8bit or s.load_in_4bit):
            return None
        try:
            import bitsandbytes  # noqa: F401 - imported only to see whether it is installed
            from transformers import BitsAndBytesConfig
        except ImportError:
            flag = "--load-in-4bit" if s.load_in_4bit else "--load-in-8bit"
            raise ModelLoadError(f"{flag} needs bitsandbytes: pip install bitsandbytes") from None
        import torch

        if s.load_in_4bit:
            compute = s.compute_dtype or ("bfloat16" if s.bf16 else "float32" if self.on_cpu else "float16")
            return BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_compute_dtype=getattr(torch, compute),
                bnb_4bit_quant_type=s.quant_type or "nf4",
                bnb_4bit_use_double_quant=s.use_double_quant,
            )
        return BitsAndBytesConfig(load_in_8bit=True)

    def _load_model(self):
        from transformers import AutoConfig, AutoModelForCausalLM

        trust = self.settings.trust_remote_code
        try:
            config = AutoConfig.from_pretrained(self.path, local_files_only=True, trust_remote_code=trust)
        except Exception as exc:  # noqa: BLE001 - transformers raises many types for a bad config; each becomes one line
            raise ModelLoadError(f"cannot read {self.path / 'config.json'}: {_one_line(exc)}") from None
        params: dict[str, Any] = dict(
            local_files_only=True, use_safetensors=True, trust_remote_code=trust,
            dtype=self._dtype(config), device_map="cpu" if self.on_cpu else "auto",
        )
        quant = self._quantization_config()
        if quant is not None:
            params["quantization_config"] = quant
        try:
            return AutoModelForCausalLM.from_pretrained(self.path, **params)
        except Exception as exc:  # noqa: BLE001 - corrupt safetensors, shape mismatch, ...
            raise ModelLoadError(f"cannot load {self.path.name} with {self.loader}: {_one_line(exc)}") from None

    # -- tokens -------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    @property
    def chat_template(self) -> str | None:
        template = getattr(self.tokenizer, "chat_template", None)
        return template if isinstance(template, str) else None

    def render_chat(self, messages: list[dict]) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True)
        return fallback_chat(messages)

    def encode_prompt(self, prompt: str, max_new_tokens: int):
        """input_ids for ``prompt`` as TGWUI's ``encode``: one BOS, cut from the left to leave
        room for the reply (at most half of ``--ctx-size`` is reserved for it)."""
        import torch

        tok = self.tokenizer
        ids = tok.encode(prompt, return_tensors="pt", add_special_tokens=True)
        bos = tok.bos_token_id
        if bos is not None:
            if ids.shape[1] == 0 or ids[0, 0] != bos:
                ids = torch.cat([torch.tensor([[bos]]), ids], dim=1)
            while ids.shape[1] > 1 and ids[0, 0] == bos and ids[0, 1] == bos:
                ids = ids[:, 1:]
        ctx = self.settings.ctx_size
        if ctx and ids.shape[1] > ctx - min(max(1, max_new_tokens), ctx // 2):
            budget = ctx - min(max(1, max_new_tokens), ctx // 2)
            head = ids[:, :1] if bos is not None and ids[0, 0] == bos else ids[:, :0]
            ids = torch.cat([head, ids[:, ids.shape[1] - (budget - head.shape[1]):]], dim=1)
        return ids

    # -- generation ---------------------------------------------------------------------
    def stream(self, prompt: str, params: GenerationParams, *, tokenizer_hook=None,
               logits_hook=None) -> Iterator[str]:
        import torch
        from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        if params.seed is not None and params.seed >= 0:
            torch.manual_seed(params.seed)
        input_ids = self.encode_prompt(prompt, params.max_new_tokens)
        inputs_embeds = None
        if tokenizer_hook is not None:
            prompt, input_ids, inputs_embeds = tokenizer_hook(prompt, input_ids, None)
        processors = LogitsProcessorList()
        if logits_hook is not None:
            logits_hook(processors, input_ids)  # appends in place; return value ignored

        stop_event = threading.Event()

        class _StopOnEvent(StoppingCriteria):
            def __call__(self, ids, scores, **kwargs):
                return torch.full((ids.shape[0],), stop_event.is_set(), dtype=torch.bool,
                                  device=ids.device)

        device = self.model.device
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        eos = self.tokenizer.eos_token_id
        gen: dict[str, Any] = dict(
            inputs=input_ids.to(device),
            attention_mask=torch.ones_like(input_ids).to(device),
            max_new_tokens=params.max_new_tokens,
            logits_processor=processors,
            stopping_criteria=StoppingCriteriaList([_StopOnEvent()]),
            streamer=streamer,
            eos_token_id=[eos] if eos is not None else None,
            pad_token_id=self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos,
            repetition_penalty=params.repetition_penalty,
        )
        if inputs_embeds is not None:
            gen["inputs_embeds"] = inputs_embeds.to(device)
        if params.temperature and params.temperature > 0:
            gen.update(do_sample=True, temperature=params.temperature, top_p=params.top_p,
                       top_k=params.top_k)
        else:
            gen.update(do_sample=False, temperature=None, top_p=None, top_k=None)

        failure: list[BaseException] = []

        def run():
            try:
                with torch.no_grad():
                    self.model.generate(**gen)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                failure.append(exc)
                streamer.end()

        thread = threading.Thread(target=run, name="pocketpack-generate", daemon=True)
        thread.start()
        raw, shown, ended = "", "", False
        try:
            for piece in streamer:
                raw += piece
                text, stopped = visible_text(raw, params.stop)
                if len(text) > len(shown):
                    shown = text
                    yield shown
                if stopped:
                    break
            else:
                ended = True
                if len(raw) > len(shown):
                    yield raw  # the stream ended: a held-back partial stop string was just text
        finally:
            stop_event.set()  # generate() stops at its next token and ends the streamer
            if not ended:
                for _ in streamer:
                    pass
            thread.join()
        if failure:
            raise RuntimeError(f"generation failed: {_one_line(failure[0])}") from failure[0]

    def close(self) -> None:
        self.model = None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass
