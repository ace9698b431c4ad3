"""``pocketpack store copy SRC DST``: move a store between backends (SQLite folder ⇄ PostgreSQL).

Every collection of SRC is written to DST with its items' text, metadata, keys, groups, times,
pins, contexts, import fingerprints and embeddings (never re-embedded: the vectors travel with
the text). Idempotent: a keyed item is upserted by its key, an item without one by a
fingerprint (its first import fingerprint, else ``copy:`` + a hash of what it holds), so a
copy run again, or after it was interrupted, adds nothing twice. It prints a progress line
per batch and ends by checking that every collection holds as many items in DST as in SRC.
Item ids are DST's own (a memory's ``sources`` are import-file ids, not store ids).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from pocketpack.retrieval.backend import describe, is_store_url, looks_like_url, open_store
from pocketpack.retrieval.store import DB_NAME, NewItem, StoreError, check_store, content_hash


class CopyError(StoreError):
    """A copy that cannot start or whose counts do not match at the end; one line."""


class _Carried:
    """An "embedder" that hands back the vectors read from SRC, by text hash: nothing is embedded."""

    def __init__(self):
        self.name, self.dim = "", 0
        self.vectors: dict[str, np.ndarray] = {}

    def embed(self, texts):
        out = []
        for text in texts:
            vec = self.vectors.get(content_hash(text))
            if vec is None:
                raise CopyError(f"no stored embedding (model {self.name}) for a text being copied;"
                                " open SRC with its model once to re-embed it, then copy again")
            out.append(vec)
        return np.stack(out) if out else np.zeros((0, self.dim), np.float32)

    def prepare(self):
        return None


@dataclass
class CopyReport:
    collections: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (in SRC, in DST)
    written: int = 0

    def to_json(self) -> dict:
        return {"collections": {n: {"source": s, "destination": d} for n, (s, d) in self.collections.items()},
                "items": sum(s for s, _ in self.collections.values()), "written": self.written}


def _open(location: str, *, must_exist: bool, embedder=None):
    if looks_like_url(location):
        return open_store(location, embedder=embedder)
    folder = Path(location).expanduser()
    if must_exist:
        if not (folder / DB_NAME).is_file():
            check_store(folder)  # a store that lost its database says so
            raise CopyError(f"no store at {folder} (a store folder holds {DB_NAME})")
    return open_store(folder, embedder=embedder)


def _fingerprints(coll) -> dict[int, list[str]]:
    """item id -> its import fingerprints, from either backend."""
    if hasattr(coll, "fingerprints"):
        pairs = coll.fingerprints().items()
    else:
        pairs = coll.store.read("SELECT fingerprint, item_id FROM item_fingerprints WHERE collection_id = ?", (coll.id,))
    out: dict[int, list[str]] = {}
    for fp, item_id in pairs:
        out.setdefault(int(item_id), []).append(fp)
    return out


def _identity(item) -> str:
    body = json.dumps([item.text, item.grp, item.time, item.meta, item.context], ensure_ascii=False, sort_keys=True)
    return "copy:" + hashlib.sha256(body.encode("utf-8")).hexdigest()


def _same(a: str, b: str) -> bool:
    if is_store_url(a) or is_store_url(b):
        return a.strip() == b.strip()
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def _copy_collections(src, dst, names, carried, batch, say, report) -> None:
    for name in names:
        coll = src.collection(name, create=False)
        total = coll.count()
        carried.name, carried.dim = coll.model, coll.dim
        carried.vectors = {}
        target = dst.collection(name)
        prints = _fingerprints(coll)
        done = 0
        while done < total:
            rows = coll.items(limit=batch, offset=done)
            if not rows:
                break
            vecs = coll.vectors([it.id for it in rows])
            carried.vectors = {}
            for it in rows:
                if it.id in vecs:
                    vec = np.asarray(vecs[it.id], dtype=np.float32)
                    carried.vectors[content_hash(it.text)] = vec
                    carried.vectors[content_hash(it.text.replace("\x00", "\ufffd"))] = vec
            new = []
            for it in rows:
                fps = prints.get(it.id, [])
                new.append(NewItem(text=it.text, key=it.key, grp=it.grp, time=it.time, importance=it.importance,
                                   pinned=it.pinned, meta=it.meta, context=it.context,
                                   fingerprint=None if it.key is not None else (fps[0] if fps else _identity(it))))
            ids = target.upsert(new)
            extra = {fp: new_id for it, new_id in zip(rows, ids) for fp in prints.get(it.id, [])}
            if extra:
                target.add_fingerprints(extra)
            done += len(rows)
            report.written += len(rows)
            say(f"  {name}: {done}/{total}")
        dst.flush()


def copy_store(source: str, destination: str, *, batch: int = 1000,
               progress: Callable[[str], None] | None = None) -> CopyReport:
    """Copy every collection of ``source`` into ``destination`` (folders or postgresql:// URLs)."""
    if batch < 1:
        raise CopyError("--batch must be 1 or more")
    if _same(source, destination):
        raise CopyError("SRC and DST are the same store")
    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    carried = _Carried()
    src = _open(source, must_exist=True)
    try:
        dst = _open(destination, must_exist=False, embedder=carried)
    except BaseException:
        src.close()
        raise
    report = CopyReport()
    try:
        names = src.collection_names("")
        say(f"copying {len(names)} collections from {describe(src)} to {describe(dst)}")
        empty = hasattr(dst, "bulk_load") and dst.stats()["items"] == 0
        with dst.bulk_load() if empty else contextlib.nullcontext():  # a new PostgreSQL store: HNSW built once
            _copy_collections(src, dst, names, carried, batch, say, report)
        bad = []
        for name in names:
            n_src = src.collection(name, create=False).count()
            n_dst = dst.collection(name, create=False).count()
            report.collections[name] = (n_src, n_dst)
            if n_src != n_dst:
                bad.append(f"{name} has {n_src} in SRC but {n_dst} in DST")
        if bad:
            raise CopyError("counts differ after the copy: " + "; ".join(bad[:3])
                            + (f" (and {len(bad) - 3} more)" if len(bad) > 3 else "")
                            + " (DST held other items in those collections before)")
        items = sum(s for s, _ in report.collections.values())
        say(f"verified: {items} items in {len(names)} collections, the same counts in both stores")
        return report
    finally:
        dst.close()
        src.close()
