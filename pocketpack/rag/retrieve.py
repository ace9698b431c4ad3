"""Answer a question with passages from the library, on the shared retrieval core.

Hybrid dense + BM25 candidates fused by reciprocal rank (``pocketpack.retrieval.search``),
optionally re-scored by a local cross-encoder, cut at a score threshold, then each hit is
widened by its neighbouring chunks, and passages of one document whose chunk ranges overlap or
touch are merged (keeping the better one's place and score), so the model reads whole passages
rather than fragments and the same text is never quoted twice.

Each passage also carries a packing ladder (``Passage.ladder``): its text sentence by sentence,
in the order a tight budget should take it — the sentences of each hit that share most words
with the question (with the one after), then the rest of its hit chunks, then the neighbouring
context nearest the hits, the text after a hit before the text ahead of it — so that
``inject.fit`` spends the budget's words where answers are, across all passages.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from pocketpack.errors import PocketPackError
from pocketpack.rag.chunking import join_chunk_spans, join_chunks, sentence_spans
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
    hit_span: tuple[int, int] = (0, 0)  # first and last hit chunk (``ordinals`` adds the context)
    hit_scores: dict[int, float] = field(default_factory=dict)  # hit chunk number -> its score
    steps: list[tuple[str, str]] = field(default_factory=list)  # (text, location): best hits, one more each
    ladder: list[tuple[str, str, float]] = field(default_factory=list)  # (text, location, priority), narrowest first
    core_window: str = ""      # the best hit's best sentences, the first step of ``ladder``

    def variants(self) -> list["Passage"]:
        """Narrowest first: the best hit alone, then one more of its hits at a time (best
        first; hits apart are joined with "[…]"), all its hits, then with neighbouring context."""
        return [v for v, _ in self.scored_variants()]

    def scored_variants(self, sentences: bool = True) -> list[tuple["Passage", float]]:
        """``variants()``, each with the score of the hit it adds (the first: the passage's
        score; the neighbouring context: -1, as it adds no hit), so a budget can take hits in
        rank order across passages. ``sentences``: offer the sentence ladder where there is one."""
        from dataclasses import replace

        if self.ladder and sentences:
            return self._ladder_variants()
        ranked = sorted(self.hit_scores.values(), reverse=True) or [self.score]
        offered = [(self.core_text, self.core_location), *self.steps, (self.span_text, self.span_location)]
        out: list[tuple[Passage, float]] = []
        whole = -1.0  # what the full passage adds, when a narrower version is already all of it
        for n, (text, location) in enumerate(offered):
            score = self.score if n == 0 else ranked[min(n, len(ranked) - 1)]
            if not text or any(v.text == text for v, _ in out):
                continue
            if text == self.text:
                whole = max(whole, score)
                continue
            out.append((replace(self, text=text, location=location or self.location), score))
        return out + [(self, self.score if not out else whole)]

    def _ladder_variants(self) -> list[tuple["Passage", float]]:
        """The ladder's steps as passages, each with the priority of the sentences it adds;
        its last step is this passage itself."""
        from dataclasses import replace

        out: list[tuple[Passage, float]] = []
        for text, location, priority in self.ladder:
            if text == self.text:
                break
            # the part marked as the hit (Sources) is the best hit's sentences when its whole chunk is not there
            core = self.core_text if " ".join(self.core_text.split()) in " ".join(text.split()) else self.core_window
            out.append((replace(self, text=text, location=location or self.location, ladder=[], core_text=core),
                        priority))
        last = self.ladder[len(out)][2] if len(out) < len(self.ladder) else self.score
        return out + [(self, last)]

    def narrowed(self) -> "Passage":
        """This passage at its narrowest (for a tight budget)."""
        return self.variants()[0]

    def to_json(self) -> dict:
        return {"text": self.text, "source": self.source, "location": self.location, "score": round(self.score, 4)}

    def label(self) -> str:
        """"name, location" as shown in a citation."""
        return f"{self.name or self.source}, {self.location}" if self.location else (self.name or self.source)


class RerankerError(PocketPackError, RuntimeError):
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
        home = next((p for p in passages if p.doc_id == doc and p.collection == hit.item.collection
                     and _touch(p.hit_span, (ordinal, ordinal), s.neighbours)), None)
        if home is not None:  # its context overlaps or touches an earlier passage: widen that one
            home.hit_span = (min(home.hit_span[0], ordinal), max(home.hit_span[1], ordinal))
            home.hit_ids.append(hit.item.id)
            home.hit_scores.setdefault(ordinal, float(score))
            _merge(passages, s.neighbours, key=lambda p: p.hit_span)  # now it may reach another
            continue
        passages.append(Passage(
            text=hit.item.text, source=m.get("name") if m.get("origin") == "upload" else m.get("source", ""),
            location=m.get("location", ""), score=float(score), doc_id=doc, name=m.get("name", ""),
            collection=hit.item.collection, ordinals=(ordinal, ordinal), hit_ids=[hit.item.id], cosine=hit.cosine,
            reranked=use_reranker, hit_ordinal=ordinal, hit_span=(ordinal, ordinal),
            hit_scores={ordinal: float(score)},
        ))
    for p in passages:
        _expand(owner[p.collection], p, s.neighbours, question)
    # After expansion, the chunk ranges themselves: passages of one document that overlap or
    # touch (adjacent chunks share their overlap sentences) become one, so no text is quoted
    # twice. (The spans above were merged with the same widening, so this is a safeguard.)
    for p in _merge(passages, 0, key=lambda p: p.ordinals):
        _expand(owner[p.collection], p, s.neighbours, question)
    return passages


def _touch(a: tuple[int, int], b: tuple[int, int], widen: int) -> bool:
    """Whether chunk ranges ``a`` and ``b``, each widened by ``widen`` chunks, overlap or are adjacent."""
    return a[0] - widen <= b[1] + widen + 1 and b[0] - widen <= a[1] + widen + 1


def _merge(passages: list[Passage], widen: int, key) -> list[Passage]:
    """Fold together, in place, passages of one document whose ranges (``key``, widened by
    ``widen``) overlap or touch, until none do. The earlier passage absorbs the later: it was
    found first, so it keeps its place (its [n]), its score and its best hit. Returns the
    passages that grew."""
    grew: list[Passage] = []
    i = 0
    while i < len(passages):
        a = passages[i]
        j = i + 1
        while j < len(passages):
            b = passages[j]
            if a.doc_id == b.doc_id and a.collection == b.collection and _touch(key(a), key(b), widen):
                a.hit_span = (min(a.hit_span[0], b.hit_span[0]), max(a.hit_span[1], b.hit_span[1]))
                a.ordinals = (min(a.ordinals[0], b.ordinals[0]), max(a.ordinals[1], b.ordinals[1]))
                a.hit_ids += [x for x in b.hit_ids if x not in a.hit_ids]
                for o, sc in b.hit_scores.items():
                    a.hit_scores[o] = max(sc, a.hit_scores.get(o, sc))
                if b.score > a.score:  # not for hits taken best first; kept so the best score stays
                    a.score, a.cosine, a.hit_ordinal = b.score, b.cosine, b.hit_ordinal
                del passages[j]
                if not any(g is a for g in grew):
                    grew.append(a)
                j = i + 1  # a grew: look again at the ones it did not reach before
            else:
                j += 1
        i += 1
    return grew


def _expand(coll, p: Passage, neighbours: int, question: str = "") -> None:
    """Widen ``p`` to its hits' span plus ``neighbours`` chunks each side, in document order.
    Narrower versions are kept for when the budget cannot hold it all: the best hit's chunk
    alone (``core``), then the best hits one more at a time (``steps``), then every hit
    (``span``) — hit chunks only, so merging two hits never makes the second one cost the
    chunks between them."""
    hit_first, hit_last = p.ordinals = p.hit_span
    first, last = max(0, hit_first - neighbours), hit_last + neighbours
    present = [(i, it) for i in range(first, last + 1) if (it := coll.by_key(f"{p.doc_id}#{i}")) is not None]
    if not present:
        return
    by_ordinal = dict(present)

    def joined(chosen) -> tuple[str, str]:
        parts = [(it.text, it.meta.get("heading", ""), int(it.meta.get("body_start", 0)),
                  int(it.meta.get("overlap_chars", 0))) for _, it in chosen]
        return join_chunks(parts), _span_location([it.meta.get("location", "") for _, it in chosen])

    def hits_only(ordinals) -> tuple[str, str]:
        """These hit chunks in document order; runs of consecutive chunks are joined, runs apart
        are separated by "[…]" (the chunks between them are left out)."""
        chosen = sorted(o for o in set(ordinals) if o in by_ordinal)
        runs: list[list[int]] = []
        for o in chosen:
            if runs and o == runs[-1][-1] + 1:
                runs[-1].append(o)
            else:
                runs.append([o])
        texts, heading = [], None
        for run in runs:
            text = joined([(o, by_ordinal[o]) for o in run])[0]
            head = by_ordinal[run[0]].meta
            if heading and head.get("heading", "") == heading:  # same section: its heading line once
                text = text[int(head.get("body_start", 0)):]
            texts.append(text)
            heading = by_ordinal[run[-1]].meta.get("heading", "")
        locations = [by_ordinal[o].meta.get("location", "") for o in (chosen[0], chosen[-1])]
        return "\n[…]\n".join(texts), _span_location(locations)

    scores = p.hit_scores or {p.hit_ordinal if p.hit_ordinal is not None else hit_first: p.score}
    ranked = [o for o in sorted(scores, key=lambda o: (-scores[o], o)) if o in by_ordinal]
    best = p.hit_ordinal if p.hit_ordinal in by_ordinal else (ranked[0] if ranked else None)
    p.text, p.location = joined(present)
    p.ordinals = (present[0][0], present[-1][0])
    if best is None:  # every hit chunk vanished (deleted meanwhile): only the context is left
        p.core_text, p.core_location, p.steps = p.text, p.location, []
        p.span_text, p.span_location = p.text, p.location
        return
    ranked = [best] + [o for o in ranked if o != best]
    p.core_text, p.core_location = hits_only(ranked[:1])
    p.steps = [hits_only(ranked[:n]) for n in range(2, len(ranked))]
    p.span_text, p.span_location = hits_only(ranked)
    p.ladder = _ladder(p, present, ranked, scores, question) if PACK_SENTENCES else []


# packing: words that say nothing about what is asked, and how far the text ahead of a hit
# counts against the text after it (superbooga widens a hit 250 characters back, 800 on)
_WORD = re.compile(r"[^\W_]+")
_STOP = frozenset("a an and are as at be but by can could did do does for from had has have he her him his how i if in"
                  " into is it its me my no not of on or she should so such than that the their them then there"
                  " these they this to was we were what when where which who whom why will with would you your".split())
BEHIND_COST = 3
WINDOW = (2, 2)  # a hit's best sentence, with this many before and after it, comes first
PACK_SENTENCES = True  # False: widen by whole hit chunks, then all the context at once


def _terms(text: str) -> set[str]:
    """The content words of ``text``, lowercased and cut to six letters (a crude stem)."""
    return {w[:6] for w in (m.group(0).lower() for m in _WORD.finditer(text)) if len(w) > 2 and w not in _STOP}


def _ladder(p: Passage, present: list, ranked: list[int], scores: dict[int, float],
            question: str) -> list[tuple[str, str, float]]:
    """``p.text`` sentence by sentence, most useful first (see the module's docstring): each
    step ``(text, location, priority)``, priority in tiers (a hit's best sentences, then the
    rest of its chunk, both by the hit's score; then context, nearest first), so that a
    budget can take steps across passages in that order. The last step is all of ``p.text``."""
    parts = [(it.text, it.meta.get("heading", ""), int(it.meta.get("body_start", 0)),
              int(it.meta.get("overlap_chars", 0))) for _, it in present]
    text, spans = join_chunk_spans(parts)
    if text != p.text:  # not this passage's chunks (never expected): offered whole
        return [(p.text, p.location, 30 + p.score)]
    ordinals = [o for o, _ in present]
    locations = [it.meta.get("location", "") for _, it in present]
    units: list[tuple[int, int, int]] = []  # (start, end, index into present)
    heads: list[tuple[int, int] | None] = []  # each present chunk's heading line in ``text``
    for n, (start, body, end) in enumerate(spans):
        heads.append((start, body) if body > start else None)
        units += [(a, b, n) for a, b in sentence_spans(text, body, end)]
    if not units:
        return [(p.text, p.location, 30 + p.score)]
    wanted = _terms(question)
    order: list[tuple[float, int]] = []  # (priority, unit)
    taken: set[int] = set()

    def take(priority: float, u: int) -> None:
        if u not in taken:
            taken.add(u)
            order.append((priority, u))

    by_chunk = {n: [u for u, unit in enumerate(units) if unit[2] == n] for n in range(len(present))}
    hit_chunks = [ordinals.index(o) for o in ranked if o in ordinals]
    for n in hit_chunks:  # tier 3: the best sentence of each hit, with WINDOW sentences around it
        mine = by_chunk[n]
        if not mine:
            continue
        overlap = [len(wanted & _terms(text[units[u][0]:units[u][1]])) for u in mine]
        top = max(overlap)
        score = scores.get(ordinals[n], p.score)
        if top == 0:  # nothing to go by (a hit on meaning alone): its whole chunk
            for u in mine:
                take(30 + score, u)
            continue
        at = overlap.index(top)
        for u in mine[max(0, at - WINDOW[0]):at + WINDOW[1] + 1]:
            take(30 + score, u)
    first = sorted(u for _, u in order if units[u][2] == hit_chunks[0]) if hit_chunks else []
    p.core_window = text[units[first[0]][0]:units[first[-1]][1]] if first else ""

    def distance(u: int, near: list[int]) -> int:
        """How far sentence ``u`` is from the nearest of ``near``, text ahead of them counting
        ``BEHIND_COST`` times its distance."""
        after = min((u - h for h in near if h < u), default=None)
        before = min((h - u for h in near if h > u), default=None)
        costs = ([after] if after is not None else []) + ([before * BEHIND_COST] if before is not None else [])
        return min(costs) if costs else len(units)

    best_units = sorted(taken)
    for n in hit_chunks:  # tier 2: the rest of each hit's chunk, nearest its best sentences first
        score = scores.get(ordinals[n], p.score)
        for u in sorted(by_chunk[n], key=lambda u: (distance(u, best_units), u)):
            take(20 + score, u)
    hit_units = sorted(taken)
    rest = [u for u in range(len(units)) if u not in taken]

    for u in sorted(rest, key=lambda u: (distance(u, hit_units), u)):  # tier 1: context, nearest first
        take(10 - min(distance(u, hit_units), 999) / 1000, u)

    def section_head(n: int) -> tuple[int, int] | None:
        return next((heads[m] for m in range(n, -1, -1) if heads[m] is not None), None)

    def render(chosen: set[int]) -> tuple[str, str]:
        """The chosen sentences in document order: runs of consecutive ones as they stand in
        the text, runs apart joined by "[…]", each section's heading line before its first run."""
        runs: list[list[int]] = []  # [start, end, first chunk, last chunk]
        prev = None
        for u in sorted(chosen):
            a, b, n = units[u]
            if prev is not None and u == prev + 1:
                runs[-1][1], runs[-1][3] = b, n
            else:
                runs.append([a, b, n, n])
            prev = u
        out, shown = "", set()
        for k, (a, b, n0, n1) in enumerate(runs):
            piece = text[a:b]
            head = section_head(n0)
            if head is not None and head not in shown:
                piece = text[head[0]:head[1]] + piece
            shown.update(h for m in range(n0, n1 + 1) if (h := section_head(m)) is not None)
            out += piece if k == 0 else "\n[…]\n" + piece
        return out, _span_location([locations[runs[0][2]], locations[runs[-1][3]]])

    ladder: list[tuple[str, str, float]] = []
    chosen: set[int] = set()
    for priority, u in order:
        chosen.add(u)
        if len(chosen) == len(units):
            break
        ladder.append((*render(chosen), priority))
    ladder.append((p.text, p.location, order[-1][0]))
    return ladder


# a chunk's location: "<unit> <n>[–<m>]<rest>", e.g. "lines 12–30 · Intro" or "p. 3"
_LOCATION = re.compile(r"^(p\.|pp\.|line|lines|row|rows|paragraph|paragraphs|ch\.)\s+(\d+)(?:–(\d+))?(.*)$")


def _span_location(locs: list[str]) -> str:
    """"p. 3 · Intro" + "p. 4 · Intro" -> "pp. 3–4 · Intro" (first heading kept)."""

    first, last = locs[0], locs[-1]
    if first == last:
        return first
    a, b = _LOCATION.match(first), _LOCATION.match(last)
    if a and b:
        unit = {"p.": "pp.", "pp.": "pp.", "line": "lines", "lines": "lines", "row": "rows", "rows": "rows",
                "paragraph": "paragraphs", "paragraphs": "paragraphs", "ch.": "ch."}[a.group(1)]
        start, end = int(a.group(2)), int(b.group(3) or b.group(2))
        if start == end:
            single = {"pp.": "p.", "lines": "line", "rows": "row", "paragraphs": "paragraph"}.get(unit, unit)
            return f"{single} {start}{a.group(4)}"
        return f"{unit} {start}–{end}{a.group(4)}"
    return first
