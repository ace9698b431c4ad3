"""LongMemEval evidence recall for pocketpack memory: a public set the memory defaults never saw.

LongMemEval (Wu et al., ICLR 2025, arXiv 2410.10813) gives each question its own chat history
(``haystack_sessions``: ~50 user/assistant sessions in the S variant, dated by ``haystack_dates``)
and marks the evidence: ``answer_session_ids`` (session level) and ``has_answer`` on the turns
that hold it (turn level). Each question's history is stored the way the memory extension stores
a chat: every user message and every reply, one character per question (``lme-<question_id>``),
one chat per session at its date, each message indexed with the message it answers, linked as
storing them one by one would link them. The question is then recalled with k=10 by:

- ``dense``: ``SearchOptions(mode="dense", mmr_lambda=1.0)``, MiniLM cosine only, no links;
- ``before``: the first defaults (``LOCOMO_RECALL``: BM25 weighted 1.5, feedback from 2 hits),
  ``bring_linked=False``;
- ``memory``: ``MemoryStore.recall`` with no options, the pack's defaults.

Session R@k: the share of a question's evidence sessions with at least one message among the
first k recalled; turn R@k: the share of its ``has_answer`` messages among the first k (LongMemEval's
own retrieval metrics are recall_any/recall_all over sessions or rounds; these are the fractional
forms, as bench/memory_locomo.py reports). Abstention questions (``_abs``) are left out, as
LongMemEval's retrieval evaluation leaves them out.

This is a report set: no recall setting is ever chosen on it. Embedding every message of all 470
non-abstention questions (~230k messages) takes hours on two CPU cores, so a subset fixed here,
before any run, is measured: per question type, the questions ranked by the SHA-1 of their
``question_id`` (independent of file order), the first ``--per-type`` (default 4) of each.

Knowledge updates are also scored as changed facts (``newer_first``): the later-dated evidence
session's message among the first 10, and above the earlier one's. ``--updates dev|report`` takes
one half of all 72 of them (``update_half``: settings may be chosen on the dev half only, by
bench/memory_select.py --step lme); ``--types`` limits the question types.

    .venv/bin/python bench/memory_longmemeval.py --data .cache/longmemeval/memoria-959167b/s
        [--per-type N] [--types TYPE ...] [--updates all|dev|report] [--store DIR] [--build-only]

``--data`` is a LongMemEval JSON file (the list of instances, e.g. ``longmemeval_s_cleaned.json``)
or a directory of one-instance JSON files. The copy measured here: github.com/hussainzs/Memoria,
commit 959167b875ddc992661da1cf1a3263821e6831ed, ``evaluations/data/lme_jsons/<sessions>_<question_id>.json``,
the files with 38-62 sessions (the S variant: 498 of its 500 questions; gpt4_7a0daae1 and 7e00a6cb
are missing), fields unchanged from the authors' release (question_id, question_type, question,
answer, question_date, haystack_dates, haystack_session_ids, haystack_sessions with has_answer,
answer_session_ids); the authors' data itself is on a model hub this machine cannot reach
(huggingface.co/datasets/xiaowu0162/longmemeval-cleaned). Licence: MIT, "Copyright (c) 2024 Di Wu",
stated in LICENSE of github.com/xiaowu0162/LongMemEval and copied as evaluations/LICENSE beside
the files in Memoria. The data stays under .cache (git-ignored), never in the repository.

The store is kept under ``.cache/longmemeval/store`` (or ``--store``): a question already stored
with the same content is never embedded again, so a rerun only queries.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pocketpack.memory.store import LOCOMO_RECALL, MemoryStore  # noqa: E402 - after the sys.path line, to run from a checkout
from pocketpack.retrieval import SearchOptions  # noqa: E402 - after the sys.path line, to run from a checkout

TYPES = ("single-session-user", "single-session-assistant", "single-session-preference", "multi-session",
         "knowledge-update", "temporal-reasoning")
REQUIRED = ("question_id", "question_type", "question", "haystack_dates", "haystack_session_ids",
            "haystack_sessions", "answer_session_ids")
K = (5, 10)
PER_TYPE = 4  # fixed before the first run (embedding time on two shared cores), never tuned on results
MANIFEST = "longmemeval-ids.json"
VARIANTS = ("dense", "before", "memory")


def load(path: str | Path) -> list[dict]:
    """The instances of a LongMemEval file (a list, or one instance) or of a directory of
    one-instance ``*.json`` files; SystemExit naming what is wrong otherwise."""
    path = Path(path)
    if path.is_dir():
        items = [json.loads(f.read_text(encoding="utf-8")) for f in sorted(path.glob("*.json"))]
    elif path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
        items = [data] if isinstance(data, dict) else data
    else:
        raise SystemExit(f"no LongMemEval data at {path}")
    seen = set()
    for item in items:
        missing = [f for f in REQUIRED if f not in item] if isinstance(item, dict) else list(REQUIRED)
        if missing:
            raise SystemExit(f"{path}: an instance lacks {', '.join(missing)} (not LongMemEval's format)")
        if not (len(item["haystack_sessions"]) == len(item["haystack_dates"]) == len(item["haystack_session_ids"])):
            raise SystemExit(f"{path}: {item['question_id']}: haystack sessions, dates and ids differ in number")
        if item["question_id"] in seen:
            raise SystemExit(f"{path}: question {item['question_id']} twice (point --data at one variant)")
        seen.add(item["question_id"])
    if not items:
        raise SystemExit(f"{path}: no instances")
    return items


def select(items: list[dict], per_type: int, types: tuple[str, ...] = TYPES) -> list[dict]:
    """The fixed subset: per type of ``types``, non-abstention questions by SHA-1 of question_id, first
    ``per_type`` (in the order one of each type, then the second of each, ...)."""
    pools = []
    for qtype in types:
        pool = [q for q in items if q["question_type"] == qtype and not q["question_id"].endswith("_abs")]
        pool.sort(key=lambda q: hashlib.sha1(q["question_id"].encode()).hexdigest())
        pools.append(pool[:per_type])
    return [pool[n] for n in range(per_type) for pool in pools if n < len(pool)]  # types interleaved


def update_half(updates: list[dict], half: str) -> list[dict]:
    """One half of the knowledge-update questions ``updates`` (all of them, as ``select`` orders
    them: by SHA-1 of question_id): "dev", the first half, where ``bench/memory_select.py --step
    lme`` may choose the newer-first setting, or "report", the rest. Fixed in session 10 after the
    figures of all 72 had been seen once, before any setting was tried on either half."""
    if half not in ("dev", "report"):
        raise ValueError(f"half must be 'dev' or 'report', not {half!r}")
    return updates[:len(updates) // 2] if half == "dev" else updates[len(updates) // 2:]


def session_time(text: str) -> float:
    """'2023/05/20 (Sat) 02:21' -> epoch seconds (read as UTC: the data has no zone)."""
    text = re.sub(r"\s*\([^)]*\)\s*", " ", str(text)).strip()
    return datetime.strptime(text, "%Y/%m/%d %H:%M").replace(tzinfo=timezone.utc).timestamp()


def records_of(q: dict) -> tuple[list[dict], list[tuple[str, bool]]]:
    """Every non-empty message of ``q``'s history as the extension stores it (a user message's
    context is the reply before it in the session, a reply's the user message it answers; one
    TGWUI row per exchange), and for each its (session id, has_answer)."""
    character = f"lme-{q['question_id']}"
    records, where = [], []
    for sid, date, session in zip(q["haystack_session_ids"], q["haystack_dates"], q["haystack_sessions"]):
        start = session_time(date)
        row, roles_in_row = -1, set()
        previous_reply = user_text = None
        for j, turn in enumerate(session):
            role, text = turn.get("role"), turn.get("content")
            if role not in ("user", "assistant") or not isinstance(text, str) or not text.strip():
                continue
            if role == "user" or role in roles_in_row:
                row, roles_in_row = row + 1, set()
            roles_in_row.add(role)
            if role == "user":
                context, user_text = previous_reply, text
            else:
                context, previous_reply = user_text, text
            records.append({"character": character, "role": role, "text": text, "time": start + j,
                            "chat": str(sid), "row": row, "context": context})
            where.append((str(sid), bool(turn.get("has_answer"))))
    return records, where


def fingerprint(q: dict) -> str:
    return hashlib.sha1(json.dumps(q, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def open_store(directory: Path, questions: list[dict], log=print) -> tuple[MemoryStore, dict, float, int]:
    """The store holding every selected question's history (added only where missing or changed)
    and question_id -> {memory id: (session id, has_answer)}; seconds spent and messages stored."""
    directory.mkdir(parents=True, exist_ok=True)
    manifest_path = directory / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    memory = MemoryStore(directory)
    spent, stored = 0.0, 0
    for n, q in enumerate(questions):
        fp = fingerprint(q)
        entry = manifest.get(q["question_id"])
        if entry and entry.get("fingerprint") == fp:
            continue
        character = f"lme-{q['question_id']}"
        start = time.perf_counter()
        memory.forget(character)  # a half-stored or changed question starts again
        records, where = records_of(q)
        ids = memory.add_many(records, link=False)
        memory.relink(character)  # as storing the messages one by one would have linked them
        memory.flush()
        manifest[q["question_id"]] = {"fingerprint": fp, "ids": {str(i): w for i, w in zip(ids, where)}}
        manifest_path.write_text(json.dumps(manifest))
        spent += time.perf_counter() - start
        stored += len(records)
        log(f"stored {q['question_id']} ({q['question_type']}, {len(records)} messages) "
            f"[{n + 1}/{len(questions)}, {spent:.0f} s so far]", file=sys.stderr, flush=True)
    ids = {qid: {int(i): (w[0], bool(w[1])) for i, w in e["ids"].items()} for qid, e in manifest.items()}
    return memory, ids, spent, stored


def recall_ids(memory: MemoryStore, q: dict, variant: str, k: int) -> list[int]:
    character = f"lme-{q['question_id']}"
    if variant == "dense":
        found = memory.recall(character, q["question"], k, options=SearchOptions(mode="dense", mmr_lambda=1.0),
                              follow_links=False)
    elif variant == "before":
        found = memory.recall(character, q["question"], k, options=SearchOptions(**LOCOMO_RECALL), bring_linked=False)
    else:
        found = memory.recall(character, q["question"], k)
    return [m.id for m in found]


def scores(q: dict, where: dict[int, tuple[str, bool]], ranked: list[int]) -> dict[str, float]:
    """Session and turn R@k of one ranking; for a knowledge-update question also whether the
    newer version is recalled and read first (see ``newer_first``)."""
    evidence = {str(s) for s in q["answer_session_ids"]}
    gold_turns = {i for i, (_, has) in where.items() if has}
    out = {}
    for k in K:
        top = ranked[:k]
        sessions = {where[i][0] for i in top if i in where}
        out[f"sess R@{k}"] = len(evidence & sessions) / len(evidence) if evidence else float("nan")
        out[f"turn R@{k}"] = len(gold_turns & set(top)) / len(gold_turns) if gold_turns else float("nan")
    if q["question_type"] == "knowledge-update":
        out.update(newer_first(q, where, ranked[:max(K)]))
    return out


def newer_first(q: dict, where: dict[int, tuple[str, bool]], top: list[int]) -> dict[str, float]:
    """A knowledge update has two evidence sessions, the older stating the old value and the newer
    the new one (one has_answer user message each, almost always). "newer in 10": a has_answer
    message of the later-dated evidence session is among ``top``; "newer first": one is, above
    every has_answer message of the earlier one (as bench/memory_longchat.py counts changed facts)."""
    when = {str(sid): session_time(d) for sid, d in zip(q["haystack_session_ids"], q["haystack_dates"])}
    evidence = sorted({str(s) for s in q["answer_session_ids"]}, key=lambda s: when.get(s, 0.0))
    if len(evidence) < 2:
        return {}
    older, newer = set(evidence[:-1]), evidence[-1]
    rank_new = next((r for r, i in enumerate(top) if where.get(i, ("", False)) == (newer, True)), None)
    rank_old = next((r for r, i in enumerate(top) if i in where and where[i][1] and where[i][0] in older), None)
    return {"newer in 10": float(rank_new is not None),
            "newer first": float(rank_new is not None and (rank_old is None or rank_new < rank_old))}


def table(results: dict[str, dict[str, list[dict]]], n_by_type: dict[str, int]) -> str:
    metrics = [f"{level} R@{k}" for level in ("sess", "turn") for k in K]
    cols = [(v, m) for v in VARIANTS for m in metrics]
    lines = ["| question type | n | " + " | ".join(f"{v} {m}" for v, m in cols) + " |",
             "|---|---|" + "---|" * len(cols)]

    def mean(values):
        values = [x for x in values if x == x]
        return sum(values) / len(values) if values else float("nan")

    for qtype in [*TYPES, "all"]:
        n = sum(n_by_type.values()) if qtype == "all" else n_by_type.get(qtype, 0)
        if not n:
            continue
        cells = []
        for v, m in cols:
            rows = [r for t in TYPES for r in results[v][t]] if qtype == "all" else results[v][qtype]
            cells.append(f"{mean([r[m] for r in rows]):.3f}")
        lines.append(f"| {qtype} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a LongMemEval JSON file or a directory of instance files")
    parser.add_argument("--per-type", type=int, default=PER_TYPE, help=f"questions per type (default {PER_TYPE})")
    parser.add_argument("--types", nargs="+", choices=TYPES, default=list(TYPES), metavar="TYPE",
                        help="question types to measure (default all six)")
    parser.add_argument("--updates", choices=("all", "dev", "report"), default="all",
                        help="which half of the knowledge-update questions (see update_half; the others all)")
    parser.add_argument("--store", default=None, help="store directory (default .cache/longmemeval/store)")
    parser.add_argument("--build-only", action="store_true", help="store the subset's histories and stop")
    args = parser.parse_args(argv)

    items = load(args.data)
    questions = select(items, args.per_type, tuple(args.types))
    store_dir = Path(args.store) if args.store else ROOT / ".cache" / "longmemeval" / "store"
    if args.updates != "all" and "knowledge-update" in args.types:  # that half of all knowledge updates
        questions = [q for q in questions if q["question_type"] != "knowledge-update"] + update_half(
            select(items, len(items), ("knowledge-update",)), args.updates)
    memory, ids, spent, stored = open_store(store_dir, questions)
    if args.build_only:
        memory.close()
        print(f"stored {stored} messages in {spent:.0f} s; {len(questions)} questions in {store_dir}")
        return 0
    results = {v: defaultdict(list) for v in VARIANTS}
    seconds = defaultdict(float)
    try:
        for q in questions:
            where = ids[q["question_id"]]
            for v in VARIANTS:
                start = time.perf_counter()
                ranked = recall_ids(memory, q, v, max(K))
                seconds[v] += time.perf_counter() - start
                results[v][q["question_type"]].append(scores(q, where, ranked))
    finally:
        memory.close()
    n_by_type = {t: len(results["dense"][t]) for t in TYPES}
    n_messages = sum(len(ids[q["question_id"]]) for q in questions)
    print(f"## LongMemEval evidence recall ({Path(args.data).name}: {len(items)} instances; {len(questions)} "
          f"questions, {args.per_type} per type by SHA-1 of question_id"
          f"{'' if args.updates == 'all' else f' (knowledge updates: the {args.updates} half of all of them)'}"
          f", abstention left out; {n_messages} "
          f"messages stored, one character per question; model all-MiniLM-L6-v2; store "
          f"{'built in %.0f s' % spent if stored else 'reused'})")
    print()
    print(table(results, n_by_type))
    print()
    updates = {v: [r for r in results[v]["knowledge-update"] if "newer first" in r] for v in VARIANTS}
    if updates["dense"]:
        print(f"Knowledge updates ({len(updates['dense'])} questions; the later-dated evidence session's "
              "has_answer message vs the earlier one's):")
        print()
        print("| system | newer first | newer in top 10 |")
        print("|---|---|---|")
        for v in VARIANTS:
            rows = updates[v]
            print(f"| {v} | {sum(r['newer first'] for r in rows) / len(rows):.3f} | "
                  f"{sum(r['newer in 10'] for r in rows) / len(rows):.3f} |")
        print()
    print("sess R@k: share of the evidence sessions (answer_session_ids) with a message in the first k recalled; "
          "turn R@k: share of the has_answer messages in the first k. dense: MiniLM cosine only; before: the first "
          "defaults (LOCOMO_RECALL: BM25 weighted 1.5, feedback from 2 hits), bring_linked=False; memory: "
          "MemoryStore.recall with no options (the pack's defaults). Mean recall latency: "
          + ", ".join(f"{v} {1000 * seconds[v] / max(len(questions), 1):.0f} ms" for v in VARIANTS) + ".")
    return 0


if __name__ == "__main__":
    sys.exit(main())
