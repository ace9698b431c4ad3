"""LoCoMo evidence-turn recall for pocketpack memory: dense-only baseline vs hybrid.

Each conversation's turns are stored as memories of one "character" (``Speaker: text``, plus
the image caption when a turn shares a photo, at the session's date) through the same
``MemoryStore`` the extension uses; each question (categories 1-4, those with evidence) is
recalled with k=10 and R@k is the share of its evidence turns among the first k, averaged.

    .venv/bin/python bench/memory_locomo.py [--data ../shared/benchmarks/locomo10.json]
        [--store DIR (reused: nothing is embedded twice)] [--conversations N] [--split all|dev|report]

``--split dev`` is conversations 1-5 and ``--split report`` conversations 6-10, a split fixed
before any setting was chosen on it: the memory defaults are chosen on ``dev`` (with the long-chat
set's dev split, ``bench/memory_select.py``) and reported on ``report``.

The data set is CC BY-NC 4.0: it is read from ../shared, never copied into the product.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pocketpack.memory.store import FILTERED_RECALL, LOCOMO_RECALL, MemoryStore, recall_options  # noqa: E402 - after the sys.path line, to run from a checkout
from pocketpack.retrieval import SearchOptions  # noqa: E402 - after the sys.path line, to run from a checkout

CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
SPLITS = {"all": range(0, 10), "dev": range(0, 5), "report": range(5, 10)}  # conversation indexes
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "locomo10.json"


def session_time(text: str) -> float:
    """'1:56 pm on 8 May, 2023' -> epoch seconds (naive, as the data has no zone)."""
    text = re.sub(r"\s+", " ", text.strip())
    for fmt in ("%I:%M %p on %d %B, %Y", "%I:%M %p on %d %b, %Y"):
        try:
            return datetime.strptime(text, fmt).timestamp()
        except ValueError:
            pass
    return time.time()


def turns_of(conversation: dict) -> list[dict]:
    """Turns in order; ``context`` is the turn answered (the previous one in the session), as
    the memory extension indexes a message with the message it answers."""
    out = []
    n = 1
    while f"session_{n}" in conversation:
        t = session_time(conversation.get(f"session_{n}_date_time", ""))
        previous = None
        for i, turn in enumerate(conversation[f"session_{n}"]):
            text = f"{turn['speaker']}: {turn['text']}"
            if turn.get("blip_caption"):
                text += f" [shares a photo: {turn['blip_caption']}]"
            out.append({"dia_id": turn["dia_id"], "text": text, "time": t + i, "chat": f"session_{n}", "row": i,
                        "context": previous})
            previous = text
        n += 1
    return out


def records_of(turns: list[dict], character: str, with_context: bool = True) -> list[dict]:
    """The turns as the extension stores them: each a user message of ``character`` (both
    speakers), with the turn it answers indexed beside it unless ``with_context`` is false."""
    return [{"character": character, "role": "user", "text": t["text"], "time": t["time"], "chat": t["chat"],
             "row": t["row"], "context": t["context"] if with_context else None} for t in turns]


def evidence_of(qa: dict) -> set[str]:
    ids = set()
    for entry in qa.get("evidence") or []:
        for part in str(entry).split(";"):
            if part.strip():
                ids.add(part.strip())
    return ids


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--store", default=None, help="store directory to (re)use (default: a temporary one)")
    parser.add_argument("--conversations", type=int, default=None, help="only the first N conversations")
    parser.add_argument("--k", type=int, nargs="+", default=[5, 10])
    parser.add_argument("--split", choices=list(SPLITS), default="all",
                        help="dev: conversations 1-5 (settings are chosen there), report: 6-10")
    args = parser.parse_args(argv)

    data = [c for n, c in enumerate(json.loads(Path(args.data).read_text())) if n in SPLITS[args.split]]
    data = data[: args.conversations]
    store_dir = Path(args.store) if args.store else Path(tempfile.mkdtemp(prefix="locomo-"))
    memory = MemoryStore(store_dir)
    kmax = max(args.k)

    t0 = time.perf_counter()
    plan = []  # (character, id -> dia_id, questions) for stores with and without context
    n_turns = 0
    for c, sample in enumerate(data):
        turns = turns_of(sample["conversation"])
        n_turns += len(turns)
        questions = [q for q in sample["qa"] if q.get("category") in CATEGORIES and evidence_of(q)]
        entry = {}
        for suffix, with_context in (("", True), ("-nocontext", False)):  # same texts: embedded once
            character = f"locomo-{sample.get('sample_id', c)}{suffix}"
            ids = memory.add_many(records_of(turns, character, with_context))  # links made again: storing a
            # row again replaces its meta
            entry[with_context] = (character, {i: t["dia_id"] for i, t in zip(ids, turns)})
        plan.append((entry, questions))
    t_store = time.perf_counter() - t0

    # name -> (store with context?, options); "dense" is the baseline (the context is not embedded)
    variants = {
        "dense": (False, SearchOptions(mode="dense", mmr_lambda=1.0)),
        "hybrid-noctx": (False, SearchOptions()),
        "hybrid": (True, SearchOptions()),
        "before": (True, SearchOptions(**LOCOMO_RECALL)),  # the first defaults, chosen on all ten
        "memory": (True, recall_options()),
        "filtered": (True, recall_options(**FILTERED_RECALL)),  # the opt-in set, its links brought in
    }
    recall: dict[str, dict[int, dict[int, list[float]]]] = {v: defaultdict(lambda: defaultdict(list)) for v in variants}
    t_query = defaultdict(float)
    n_questions = 0
    for entry, questions in plan:
        for q in questions:
            n_questions += 1
            gold = evidence_of(q)
            for name, (with_context, options) in variants.items():
                character, id_to_dia = entry[with_context]
                start = time.perf_counter()
                found = memory.recall(character, q["question"], kmax, options=options,
                                      follow_links=name in ("before", "memory", "filtered"),
                                      bring_linked={"before": False, "filtered": True}.get(name))
                t_query[name] += time.perf_counter() - start
                ranked = [id_to_dia.get(m.id) for m in found]
                for k in args.k:
                    recall[name][q["category"]][k].append(len(gold & set(ranked[:k])) / len(gold))
    memory.close()

    cols = [(name, k) for name in variants for k in args.k]
    header = f"{'category':<14} {'n':>5} " + " ".join(f"{name + ' R@' + str(k):>17}" for name, k in cols)
    print(f"LoCoMo evidence-turn recall, {len(plan)} conversations, {n_turns} turns, {n_questions} questions "
          f"(categories 1-4), model all-MiniLM-L6-v2")
    print(header)
    print("-" * len(header))
    for cat, label in CATEGORIES.items():
        n = len(recall["dense"][cat][args.k[0]])
        if not n:
            continue
        cells = " ".join(f"{sum(recall[name][cat][k]) / n:>17.3f}" for name, k in cols)
        print(f"{str(cat) + ' ' + label:<14} {n:>5} {cells}")
    cells = []
    for name, k in cols:
        values = [v for cat in CATEGORIES for v in recall[name][cat][k]]
        cells.append(f"{sum(values) / max(len(values), 1):>17.3f}")
    print(f"{'all 1-4':<14} {n_questions:>5} " + " ".join(cells))
    print("dense: MiniLM cosine only; hybrid-noctx: dense + BM25 (tantivy), reciprocal-rank fusion (k=10), MMR;"
          " hybrid: the same with each turn's BM25 text including the turn it answers (what memory stores);"
          " before: the first defaults (BM25 weighted 1.5, one round of pseudo-relevance feedback), chosen on all"
          " ten conversations; memory: what the extension recalls with (before + the junk rule, the BM25 list"
          " weighted by the query's coverage, changed facts' newer side brought in, of two versions among the first"
          " five the newer first; chosen by bench/memory_select.py"
          " on conversations 1-5 and the long-chat dev split)")
    print(f"\nstore: {n_turns} turns (x2: with and without context, embedded once) in {t_store:.1f} s; mean recall latency: "
          + ", ".join(f"{name} {1000 * t_query[name] / max(n_questions, 1):.1f} ms" for name in variants))
    return 0


if __name__ == "__main__":
    sys.exit(main())
