"""The real embedding model, wrapped to count what it is asked to embed."""

from __future__ import annotations


class CountingEmbedder:
    """The real model (all-MiniLM-L6-v2), counting the texts it embeds: proves what is not re-embedded."""

    def __init__(self):
        from pocketpack.retrieval.embed import get_embedder

        self.inner = get_embedder()
        self.name, self.dim, self.calls = self.inner.name, self.inner.dim, 0

    def embed(self, texts):
        self.calls += len(texts)
        return self.inner.embed(texts)
