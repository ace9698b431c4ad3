"""Answer a question with passages from the library, on the shared retrieval core.

Hybrid dense + BM25 candidates fused by reciprocal rank (``pocketpack.retrieval.search``),
optionally re-scored by a local cross-encoder, cut at a score threshold, then each hit is
widened by its neighbouring chunks and hits that touch are merged, so the model reads whole
passages rather than fragments and the same text is never quoted twice.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from pathlib import Path

from pocketpack.rag.chunking import join_chunks
from pocketpack.rag.config import RagSettings
from pocketpack.rag.ingest import COLLECTION_PREFIX, Library, collection_name
from pocketpack.retrieval import SearchOptions, search


@dataclass
class Passage:
    """One retrieved passage: the text that is injected and shown behind a citation."""

    text: str
    source: str
    location: str
    score: float
    doc_id: str = ""
    name: str = ""
    collection: str = ""
    ordinals: tuple[int, int] = (0, 0)
    hit_ids: list[int] = field(default_factory=list)
    cosine: float | None = None
    reranked: bool = False
    core_text: str = ""        # the best hit chunk alone, without neighbouring context
    core_location: str = ""
    hit_ordinal: int | None = None  # the best hit's chunk number

    span_text: str = ""        # every hit of the passage, without neighbouring context
    span_location: str = ""

    def variants(self) -> list["Passage"]:
        """Narrowest first: the best hit alone, all its hits, then with neighbouring context."""
        from dataclasses import replace

        out: list[Passage] = []
        for text, location in ((self.core_text, self.core_location), (self.span_text, self.span_location)):
            if text and text != self.text and all(v.text != text for v in out):
                out.append(replace(self, text=text, location=location or self.location))
        return out + [self]

    def narrowed(self) -> "Passage":
        """This passage at its narrowest (for a tight budget)."""
        return self.variants()[0]

    def to_json(self) -> dict:
        return {"text": self.text, "source": self.source, "location": self.location, "score": round(self.score, 4)}

    def label(self) -> str:
        """"name, location" as shown in a citation."""
        return f"{self.name or self.source}, {self.location}" if self.location else (self.name or self.source)


class RerankerError(RuntimeError):
    """The configured cross-encoder could not be loaded."""


_rerankers: dict[str, object] = {}
_rerank_lock = threading.Lock()


def get_reranker(path: str):
    """A sentence-transformers CrossEncoder from a local directory (never the network)."""
    key = str(Path(path).expanduser().resolve())
    with _rerank_lock:
        if key not in _rerankers:
            if not Path(key).is_dir():
                raise RerankerError(f"reranker model directory not found: {path}")
            try:
                from sentence_transformers import CrossEncoder

                _rerankers[key] = CrossEncoder(key, device="cpu", local_files_only=True)
            except Exception as exc:  # noqa: BLE001 - any loader failure becomes one line
                raise RerankerError(f"could not load the reranker at {path}: {exc}") from exc
        return _rerankers[key]


def rerank(path: str, question: str, texts: list[str]) -> list[float]:
    """Cross-encoder relevance of each text to the question, squashed to 0..1."""
    model = get_reranker(path)
    raw = model.predict([(question, t) for t in texts], show_progress_bar=False, convert_to_numpy=True)
    out = []
    for value in list(raw):
        v = float(value if getattr(value, "shape", ()) == () else value.reshape(-1)[-1])
        out.append(v if 0.0 <= v <= 1.0 else 1.0 / (1.0 + math.exp(-v)))
    return out


def existing_collections(library: Library, names: list[str] | None) -> list:
    """Store collections for these library names, skipping ones never created."""
    store = library.store
    if names is None:
        full = store.collection_names(COLLECTION_PREFIX)
    else:
        full = [collection_name(n) for n in names]
    return [store.collection(n) for n in dict.fromkeys(full) if store.has_collection(n)]


def retrieve(library: Library, question: str, k: int | None = None, collections: list[str] | None = None,
             settings: RagSettings | None = None) -> list[Passage]:
    """The best passages for ``question`` from ``collections`` (all when None), best first."""
    s = settings or library.settings
    k = s.k if k is None else k
    if not question or not question.strip() or k <= 0:
        return []
    colls = existing_collections(library, collections)
    if not colls:
        return []
    opts = SearchOptions(mode=s.mode, candidates=max(s.candidates, 3 * k), min_cosine=s.min_cosine or None)
    use_reranker = bool(s.reranker_path)
    hits = search(colls, question, 3 * k if use_reranker else k + 2, options=opts)
    if not hits:
        return []
    scores = [h.score for h in hits]
    if use_reranker:
        scores = rerank(s.reranker_path, question, [h.item.text for h in hits])
        order = sorted(range(len(hits)), key=lambda i: -scores[i])
        hits, scores = [hits[i] for i in order], [scores[i] for i in order]
    kept = [(h, sc) for h, sc in zip(hits, scores) if sc >= s.min_score]
    owner = {c.name: c for c in colls}
    passages: list[Passage] = []
    for hit, score in kept:
        if len(passages) >= k:
            break
        m = hit.item.meta
        doc, ordinal = m.get("doc"), int(m.get("ordinal", 0))
        merged = False
        for p in passages:  # a hit inside or next to an earlier passage widens it instead
            if p.doc_id == doc and p.collection == hit.item.collection and \
                    p.ordinals[0] - 1 - s.neighbours <= ordinal <= p.ordinals[1] + 1 + s.neighbours:
                p.ordinals = (min(p.ordinals[0], ordinal), max(p.ordinals[1], ordinal))
                p.hit_ids.append(hit.item.id)
                merged = True
                break
        if merged:
            continue
        passages.append(Passage(
            text=hit.item.text, source=m.get("name") if m.get("origin") == "upload" else m.get("source", ""),
            location=m.get("location", ""), score=float(score), doc_id=doc, name=m.get("name", ""),
            collection=hit.item.collection, ordinals=(ordinal, ordinal), hit_ids=[hit.item.id], cosine=hit.cosine,
            reranked=use_reranker, hit_ordinal=ordinal,
        ))
    for p in passages:
        _expand(owner[p.collection], p, s.neighbours)
    return passages


def _expand(coll, p: Passage, neighbours: int) -> None:
    """Widen ``p`` to its hits' span plus ``neighbours`` chunks each side, in document order;
    the best hit's chunk alone is kept as ``core`` for when the budget cannot hold more."""
    hit_first, hit_last = p.ordinals
    first, last = max(0, hit_first - neighbours), hit_last + neighbours
    present = [(i, it) for i in range(first, last + 1) if (it := coll.by_key(f"{p.doc_id}#{i}")) is not None]
    if not present:
        return

    def joined(chosen) -> tuple[str, str]:
        parts = [(it.text, it.meta.get("heading", ""), int(it.meta.get("body_start", 0)),
                  int(it.meta.get("overlap_chars", 0))) for _, it in chosen]
        return join_chunks(parts), _span_location([it.meta.get("location", "") for _, it in chosen])

    best = p.hit_ordinal if p.hit_ordinal is not None else hit_first
    core = [(i, it) for i, it in present if i == best]  # the best hit alone, for a tight budget
    span = [(i, it) for i, it in present if hit_first <= i <= hit_last]  # every hit, no context
    p.text, p.location = joined(present)
    p.ordinals = (present[0][0], present[-1][0])
    p.core_text, p.core_location = joined(core) if core else (p.text, p.location)
    p.span_text, p.span_location = joined(span) if span else (p.text, p.location)


def _span_location(locs: list[str]) -> str:
    """"p. 3 · Intro" + "p. 4 · Intro" -> "pp. 3–4 · Intro" (first heading kept)."""
    import re

    first, last = locs[0], locs[-1]
    if first == last:
        return first
    a = re.match(r"^(p\.|pp\.|line|lines|row|rows|ch\.)\s+(\d+)(?:–(\d+))?(.*)$", first)
    b = re.match(r"^(p\.|pp\.|line|lines|row|rows|ch\.)\s+(\d+)(?:–(\d+))?(.*)$", last)
    if a and b:
        unit = {"p.": "pp.", "pp.": "pp.", "line": "lines", "lines": "lines", "row": "rows", "rows": "rows",
                "ch.": "ch."}[a.group(1)]
        start, end = int(a.group(2)), int(b.group(3) or b.group(2))
        if start == end:
            single = {"pp.": "p.", "lines": "line", "rows": "row"}.get(unit, unit)
            return f"{single} {start}{a.group(4)}"
        return f"{unit} {start}–{end}{a.group(4)}"
    return first
