"""The faiss index of one collection: a cache of the vectors in SQLite, never the truth.

Exact inner-product search (``IndexIDMap2(IndexFlatIP)``) while a collection is small; an
inverted-file index (``IndexIVFFlat``, which keeps ids and supports ``remove_ids``) once it
holds ``approx_threshold`` vectors. Ids are the ``items.id`` of SQLite.

On disk: ``c<id>.s<seq>.faiss`` written with ``faiss.write_index`` (no pickle) and its
``c<id>.s<seq>.json`` metadata (model, dim, kind, count, seq). ``seq`` is the last change-log
entry the file contains. A file is renamed into place only after it is complete, and the
loader picks the highest ``seq`` whose pair is whole and matches the model, so a crash during
a save leaves the previous pair usable; anything after ``seq`` is replayed from the log.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pocketpack.fsutil import atomic_path, atomic_write

FORMAT = 1
_FILE = re.compile(r"^c(\d+)\.s(\d+)\.faiss$")


def _faiss():
    import faiss

    return faiss


@dataclass
class IndexMeta:
    collection_id: int
    model: str
    dim: int
    kind: str          # "flat" | "ivf"
    count: int
    seq: int
    trained_on: int = 0  # vectors the IVF centroids were trained on
    format: int = FORMAT


class VectorIndex:
    """A faiss index plus the change-log position it reflects."""

    def __init__(self, collection_id: int, model: str, dim: int, *, approx_threshold: int, nprobe: int | None = None):
        self.collection_id = collection_id
        self.model = model
        self.dim = dim
        self.approx_threshold = approx_threshold
        self.nprobe = nprobe
        self.index = None
        self.kind = "flat"
        self.seq = 0
        self.trained_on = 0
        self.unsaved = 0  # changes applied since the last save

    # -- building -------------------------------------------------------------------------
    def build(self, ids: np.ndarray, vectors: np.ndarray, seq: int) -> None:
        """Replace the index by one over exactly these vectors (a full rebuild)."""
        faiss = _faiss()
        n = len(ids)
        if n >= self.approx_threshold:
            nlist = int(min(65536, max(16, 4 * math.sqrt(n))))
            quantizer = faiss.IndexFlatIP(self.dim)
            index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(0)
            sample = vectors if n <= nlist * 64 else vectors[rng.choice(n, nlist * 64, replace=False)]
            index.train(np.ascontiguousarray(sample))
            # a tenth of the lists: recall@10 against exact search 0.988 at 100k memories and 0.995
            # at 1M (a sixteenth gave 0.967 / 0.978) for +0.2 / +0.7 ms a query
            index.nprobe = self.nprobe or max(8, nlist // 10)
            # a hash-table direct map makes remove_ids/reconstruct cheap on edits
            index.set_direct_map_type(faiss.DirectMap.Hashtable)
            self.kind, self.trained_on = "ivf", n
        else:
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
            self.kind, self.trained_on = "flat", 0
        if n:
            index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids.astype(np.int64))
        self.index = index
        self.seq = seq
        self.unsaved = n or 1  # a rebuilt index is worth saving

    def needs_rebuild(self) -> bool:
        """True when the index kind no longer suits the size (flat grown large, IVF outgrown)."""
        n = self.count
        if self.kind == "flat":
            return n >= self.approx_threshold
        return n < self.approx_threshold // 2 or n > 4 * max(self.trained_on, 1)

    @property
    def count(self) -> int:
        return int(self.index.ntotal) if self.index is not None else 0

    # -- incremental ----------------------------------------------------------------------
    def remove(self, ids: list[int]) -> None:
        if ids and self.count:
            self.index.remove_ids(np.asarray(ids, dtype=np.int64))

    def add(self, ids: list[int], vectors: np.ndarray) -> None:
        if ids:
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))

    def reconstruct(self, ids: list[int]) -> dict[int, np.ndarray]:
        """The stored vectors of those ids the index holds (flat and IVF-flat keep them whole),
        without a database read; ids it does not hold are left out."""
        if not ids or not self.count:
            return {}
        try:
            mat = self.index.reconstruct_batch(np.asarray(ids, dtype=np.int64))
            return {int(i): mat[n] for n, i in enumerate(ids)}
        except RuntimeError:  # an id it lacks (deleted, or newer than the index): one by one
            out = {}
            for i in ids:
                try:
                    out[int(i)] = self.index.reconstruct(int(i))
                except RuntimeError:
                    pass
            return out

    # -- search ---------------------------------------------------------------------------
    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """Top ``k`` (id, inner product) for one query vector; ``allowed`` restricts ids."""
        if not self.count or k <= 0:
            return []
        faiss = _faiss()
        q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        params = None
        if allowed is not None:
            if not len(allowed):
                return []
            selector = faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64))
            if self.kind == "ivf":
                params = faiss.SearchParametersIVF(sel=selector, nprobe=self.index.nprobe)
            else:
                params = faiss.SearchParameters(sel=selector)
            self._selector = selector  # keep alive while faiss uses it
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)  # one query: threads only contend (see embed.py)
        try:
            scores, ids = self.index.search(q, min(k, self.count), params=params)
        finally:
            faiss.omp_set_num_threads(threads)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]

    # -- persistence ----------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """Write ``c<id>.s<seq>`` atomically, then drop older pairs of this collection."""
        faiss = _faiss()
        directory.mkdir(parents=True, exist_ok=True)
        stem = f"c{self.collection_id}.s{self.seq}"
        meta = IndexMeta(self.collection_id, self.model, self.dim, self.kind, self.count, self.seq, self.trained_on)
        atomic_write(directory / f"{stem}.json", json.dumps(meta.__dict__, indent=1).encode())
        with atomic_path(directory / f"{stem}.faiss") as tmp:
            faiss.write_index(self.index, str(tmp))
        for path in directory.glob(f"c{self.collection_id}.s*.*"):
            match = re.match(rf"^c{self.collection_id}\.s(\d+)\.(faiss|json)$", path.name)
            if match and int(match.group(1)) != self.seq:
                path.unlink(missing_ok=True)
        self.unsaved = 0

    @classmethod
    def load(cls, directory: Path, collection_id: int, model: str, dim: int, *, approx_threshold: int,
             nprobe: int | None = None) -> "VectorIndex | None":
        """The newest whole, matching saved index of a collection, or None."""
        faiss = _faiss()
        candidates = []
        for path in directory.glob(f"c{collection_id}.s*.faiss") if directory.is_dir() else []:
            match = _FILE.match(path.name)
            if match and int(match.group(1)) == collection_id:
                candidates.append((int(match.group(2)), path))
        for seq, path in sorted(candidates, reverse=True):
            try:
                meta = json.loads(path.with_suffix(".json").read_text())
                if (meta.get("format"), meta.get("model"), meta.get("dim"), meta.get("seq")) != (FORMAT, model, dim, seq):
                    continue
                index = faiss.read_index(str(path))
                if index.ntotal != meta["count"] or index.d != dim:
                    continue
            except Exception:  # noqa: BLE001 - a damaged cache file is simply not used
                continue
            self = cls(collection_id, model, dim, approx_threshold=approx_threshold, nprobe=nprobe)
            self.index, self.kind, self.seq = index, meta["kind"], seq
            self.trained_on = int(meta.get("trained_on", 0))
            if self.kind == "ivf":
                index.nprobe = nprobe or max(8, index.nlist // 10)
            return self
        return None
