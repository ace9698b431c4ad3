"""The real embedding model, wrapped to count what it is asked to embed, or its vectors saved
for a writer process."""

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


class Precomputed:
    """The real model's vectors of known texts, saved by a test (``np.savez(path, texts=…,
    vectors=…, model=…)``): a writer process embeds with them instead of loading the model."""

    def __init__(self, path):
        import numpy as np

        saved = np.load(path)
        self.table = dict(zip(saved["texts"].tolist(), saved["vectors"]))
        self.name, self.dim = str(saved["model"]), saved["vectors"].shape[1]

    def embed(self, texts):
        import numpy as np

        return np.stack([self.table[t] for t in texts])
