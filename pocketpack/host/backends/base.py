"""The one interface every model backend offers the host.

The host builds prompts and runs extension hooks; a backend only tokenizes, renders a
chat into a prompt string and streams text. Keeping it this small is what lets the
same chat pipeline drive llama.cpp, Transformers (+bitsandbytes) and GPTQ models.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from pocketpack.errors import PocketPackError


class ModelLoadError(PocketPackError, RuntimeError):
    """A model could not be loaded; the message is one line a user can act on."""


@dataclass
class GenerationParams:
    """Sampling settings, named as in TGWUI's state dict."""

    max_new_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 40
    repetition_penalty: float = 1.0
    seed: int = -1
    stop: list[str] = field(default_factory=list)

    @classmethod
    def from_state(cls, state: dict, stop: list[str] | None = None) -> "GenerationParams":
        """Read the TGWUI state keys a backend needs (missing keys keep defaults)."""
        kwargs = {}
        for name in ("max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "seed"):
            if name in state and state[name] is not None:
                kwargs[name] = type(getattr(cls(), name))(state[name])
        return cls(**kwargs, stop=list(stop or []))


# tokenizer_hook(prompt, input_ids, input_embeds) -> (prompt, input_ids, input_embeds)
TokenizerHook = Callable[[str, Any, Any], tuple]
# logits_hook(processor_list, input_ids) -> None (appends in place)
LogitsHook = Callable[[list, Any], Any]


class Backend(ABC):
    """A loaded model. ``loader`` uses TGWUI's loader names ('llama.cpp', 'Transformers')."""

    loader: str = ""
    model_name: str = ""
    model: Any = None
    tokenizer: Any = None  # a Hugging Face tokenizer where the loader has one
    # the Jinja chat template render_chat uses, where it is one (TGWUI's instruction_template_str)
    chat_template: str | None = None

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens."""

    @abstractmethod
    def decode(self, ids: list[int]) -> str:
        """Text of ``ids``."""

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes in this model's vocabulary."""
        return len(self.encode(text))

    @abstractmethod
    def render_chat(self, messages: list[dict]) -> str:
        """Prompt string for role/content ``messages``, ending with the assistant's turn open."""

    @abstractmethod
    def stream(
        self,
        prompt: str,
        params: GenerationParams,
        *,
        tokenizer_hook: TokenizerHook | None = None,
        logits_hook: LogitsHook | None = None,
    ) -> Iterator[str]:
        """Yield the cumulative reply text as it grows, stopping at ``params.stop``.

        Transformers-family backends call ``tokenizer_hook`` and ``logits_hook`` as TGWUI
        calls ``tokenizer_modifier`` and ``logits_processor_modifier``; others ignore them.
        """

    def close(self) -> None:
        """Release the model's memory."""
        self.model = None
