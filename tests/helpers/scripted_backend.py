"""A backend whose replies are scripted, for testing the hook contract without a model.

Everything about prompt building and hook order is exercised for real; only the text the
"model" produces is fixed, so a test can say exactly what the history must hold.
"""

from __future__ import annotations

from pocketpack.host.backends.base import Backend, GenerationParams


class ScriptedBackend(Backend):
    loader = "Scripted"
    model_name = "scripted"

    def __init__(self, reply: str = "Hello there, friend."):
        self.reply = reply
        self.prompts: list[str] = []
        self.hook_calls: list[str] = []

    def encode(self, text):
        return [ord(c) for c in text]

    def decode(self, ids):
        return "".join(chr(i) for i in ids)

    def render_chat(self, messages):
        body = "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages)
        return body + "<assistant>"

    def stream(self, prompt, params: GenerationParams, *, tokenizer_hook=None, logits_hook=None):
        self.prompts.append(prompt)
        if tokenizer_hook is not None:
            prompt, _, _ = tokenizer_hook(prompt, self.encode(prompt), None)
            self.hook_calls.append("tokenizer")
        if logits_hook is not None:
            processors: list = []
            logits_hook(processors, self.encode(prompt))
            self.hook_calls.append(f"logits:{len(processors)}")
        words = self.reply.split(" ")
        for i in range(len(words)):
            yield " ".join(words[: i + 1])
