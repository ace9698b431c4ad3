"""Long-chat memory recall: plain dense search vs dense+BM25 RRF vs what the memory extension recalls.

The chats of ``bench/longchat_generate.py`` (made on the fly from the split's seed) are stored
the way the extension stores a chat: every user message and every reply, per character, one
TGWUI chat per session, each message indexed (for BM25) with the message it answers. Then each
question is asked of its character with k=10 and three systems rank that character's memories:

- ``dense``: cosine between the question's and every memory's all-MiniLM-L6-v2 vector (the
  pack's embedder and the vectors the store holds), exact, nothing else;
- ``rrf``: dense + BM25 (the pack's ``search``), plain reciprocal-rank fusion, equal weights,
  no feedback, no MMR (``SearchOptions(mmr_lambda=1.0)``);
- ``before``: ``MemoryStore.recall`` with the defaults LoCoMo chose (BM25 weighted 1.5, feedback
  from 2 hits), kept to show what the dev-chosen defaults changed;
- ``memory``: ``MemoryStore.recall`` with no options, i.e. the pack's current defaults, the
  function ``pocketpack memory recall`` calls (``--via-cli`` asks the CLI itself, ``recall
  --queries FILE --json`` in a subprocess).

Every store is linked as storing each message would link it (``pocketpack.memory.links``; made
again when the rule changes): ``memory`` puts a linked newer memory above the older when both
are recalled, ``filtered`` also brings the newer in (``bring_linked``); ``dense`` and ``rrf``
ignore links.

Measured per question kind: R@5 and R@10 (share of the gold messages among the first k; the
newer message for changed facts and corrections, both messages for multi-hop); for changed
facts and corrections, "newer first" (the newer message is in the top 10 and above the older
one, if the older is there) and "newer in top 10"; junk in the top 5 (fillers: acknowledgements,
greetings, small talk, questions without content, generic replies); and for cross-character
probes, leaks (a recalled memory of the other character, or one naming the probed value).

    .venv/bin/python bench/memory_longchat.py --split dev|report [--store DIR] [--via-cli]
        [--details FILE.jsonl]

The store is kept under ``.cache/longchat/<split>-<fingerprint>`` (or ``--store``) and reused
while the generated data is the same: nothing is embedded twice.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from longchat_generate import QUESTION_KINDS, generate, stats  # noqa: E402 - after the sys.path line, to run from a checkout

from pocketpack.memory.links import RULE, LinkRule  # noqa: E402 - after the sys.path line, to run from a checkout
from pocketpack.memory.links import VERSION as LINKS_VERSION  # noqa: E402 - after the sys.path line, to run from a checkout
from pocketpack.memory.store import FILTERED_RECALL, LOCOMO_RECALL, MemoryStore, recall_options  # noqa: E402 - after the sys.path line, to run from a checkout
from pocketpack.retrieval import SearchOptions  # noqa: E402 - after the sys.path line, to run from a checkout

SYSTEMS = {
    "dense": "plain dense (MiniLM cosine)",
    "rrf": "dense + BM25, plain RRF",
    "before": "first defaults (LoCoMo-chosen)",
    "filtered": "pocketpack memory, opt-in FILTERED_RECALL (dev-chosen)",
    "memory": "**pocketpack memory (defaults)**",
}
K = (5, 10)
# --sweep-newer-first (dev only): the settings of "a newer close result moved above the older"
# tried, and the rule fixed before any run: the most dev R@10 + changed-fact newer-first, ties to
# the fewest changes to the ranking (the order below: off, then fewer swaps first)
NEWER_FIRST_SWEEP = [
    ("off", {"newer_first_cosine": None}),
    ("0.65, top 5", {"newer_first_cosine": 0.65, "newer_first_top": 5}),
    ("0.65", {"newer_first_cosine": 0.65}),
    ("0.5, top 5", {"newer_first_cosine": 0.5, "newer_first_top": 5}),
    ("0.5", {"newer_first_cosine": 0.5}),
    ("0.35, top 5", {"newer_first_cosine": 0.35, "newer_first_top": 5}),
    ("0.35", {"newer_first_cosine": 0.35}),
]
MANIFEST = "longchat-ids.json"


def records_of(data: dict) -> list[dict]:
    """The stored form of every message, as ``MemoryStore.record_exchange`` would store it: a
    user message's context is the reply before it in the same chat, a reply's the user message."""
    out = []
    previous_reply: dict[str, str | None] = {}
    user_text: dict[tuple[str, int], str] = {}
    for t in data["turns"]:
        if t["role"] == "user":
            context = previous_reply.get(t["chat"])
            user_text[(t["chat"], t["row"])] = t["text"]
        else:
            context = user_text.get((t["chat"], t["row"]))
            previous_reply[t["chat"]] = t["text"]
        out.append({"character": t["character"], "role": t["role"], "text": t["text"], "time": t["time"],
                    "chat": t["chat"], "row": t["row"], "context": context})
    return out


def open_store(data: dict, directory: Path, rule: LinkRule = RULE) -> tuple[MemoryStore, dict[str, int], float]:
    """The store holding ``data``'s messages (built once, then reused) and turn id -> memory id;
    its changed-fact links are made with ``rule`` (made again when the rule differs)."""
    manifest = directory / MANIFEST
    if manifest.is_file():
        saved = json.loads(manifest.read_text())
        if saved.get("fingerprint") == data["fingerprint"]:
            memory = MemoryStore(directory)
            if saved.get("links") != f"{LINKS_VERSION} {rule!r}":  # stored before links, or with another rule
                start = time.perf_counter()
                for character in data["characters"]:
                    memory.relink(character, rule, reset=True)
                saved["links"] = f"{LINKS_VERSION} {rule!r}"
                manifest.write_text(json.dumps(saved))
                return memory, saved["ids"], time.perf_counter() - start
            return memory, saved["ids"], 0.0
    if directory.exists():
        shutil.rmtree(directory)  # another data version: start again
    directory.mkdir(parents=True)
    start = time.perf_counter()
    memory = MemoryStore(directory)
    ids = memory.add_many(records_of(data), link=False)
    for character in data["characters"]:
        memory.relink(character, rule)  # as storing them one by one would have linked them
    memory.flush()
    mapping = {t["id"]: i for t, i in zip(data["turns"], ids)}
    manifest.write_text(json.dumps({"fingerprint": data["fingerprint"], "ids": mapping, "links": f"{LINKS_VERSION} {rule!r}"}))
    return memory, mapping, time.perf_counter() - start


def dense_rankings(memory: MemoryStore, data: dict, ids: dict[str, int], k: int) -> tuple[list[list[int]], float]:
    """Exact cosine top-k per question over its character's stored vectors."""
    start = time.perf_counter()
    by_character: dict[str, list[int]] = defaultdict(list)
    for t in data["turns"]:
        by_character[t["character"]].append(ids[t["id"]])
    matrices = {}
    for character, mem_ids in by_character.items():
        vectors = memory.collection(character).vectors(mem_ids)
        keep = [i for i in mem_ids if i in vectors]
        matrices[character] = (np.array(keep), np.stack([vectors[i] for i in keep]))
    qv = memory.store.embedder.embed([q["question"] for q in data["questions"]])
    out = []
    for q, v in zip(data["questions"], qv):
        mem_ids, mat = matrices[q["character"]]
        scores = mat @ v
        top = np.argsort(-scores, kind="stable")[:k]
        out.append([int(mem_ids[i]) for i in top])
    return out, time.perf_counter() - start


def recall_rankings(memory: MemoryStore, data: dict, k: int, options: SearchOptions | None,
                    follow_links: bool = True, bring_linked: bool | None = None) -> tuple[list[list[int]], float]:
    start = time.perf_counter()
    out = [[m.id for m in memory.recall(q["character"], q["question"], k, options=options, follow_links=follow_links,
                                        bring_linked=bring_linked)]
           for q in data["questions"]]
    return out, time.perf_counter() - start


def cli_rankings(store: Path, data: dict, k: int) -> tuple[list[list[int]], float]:
    """``pocketpack memory --store DIR recall --queries FILE --json``, one process for all."""
    with tempfile.TemporaryDirectory() as tmp:
        queries = Path(tmp) / "queries.jsonl"
        queries.write_text("".join(json.dumps({"character": q["character"], "query": q["question"], "k": k}) + "\n"
                                   for q in data["questions"]), encoding="utf-8")
        start = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "pocketpack", "memory", "--store", str(store), "recall",
                              "--queries", str(queries), "--json"], capture_output=True, text=True, cwd=ROOT)
        elapsed = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(f"pocketpack memory recall failed ({run.returncode}): {run.stderr.strip()[-500:]}")
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    if len(lines) != len(data["questions"]):
        raise SystemExit(f"pocketpack memory recall printed {len(lines)} lists for {len(data['questions'])} queries")
    return [[r["id"] for r in json.loads(line)] for line in lines], elapsed


def score(data: dict, ids: dict[str, int], rankings: dict[str, list[list[int]]]) -> dict:
    """Per system and question kind: lists of per-question values, plus the per-question details."""
    turn_of = {m: t for t, m in ids.items()}
    turns = {t["id"]: t for t in data["turns"]}
    result = {name: defaultdict(lambda: defaultdict(list)) for name in rankings}
    details = []
    for n, q in enumerate(data["questions"]):
        row = {"id": q["id"], "type": q["type"], "character": q["character"], "question": q["question"],
               "gold": q["gold"], "old": q.get("old", [])}
        for name, ranked_all in rankings.items():
            ranked = [turn_of.get(m) for m in ranked_all[n]]
            r = result[name][q["type"]]
            r["junk5"].append(sum(turns[t]["label"] == "filler" for t in ranked[:5] if t))
            row[name] = ranked
            if q["type"] == "cross-character":
                value = re.compile(r"(?<!\w)" + re.escape(q["value"]) + r"(?!\w)")
                leaked = [t for t in ranked if t and (t in q["leak"] or turns[t]["character"] != q["character"]
                                                      or value.search(turns[t]["text"]))]
                r["leak"].append(1 if leaked else 0)
                continue
            gold = set(q["gold"])
            for k in K:
                r[f"R@{k}"].append(len(gold & set(ranked[:k])) / len(gold))
            if q.get("old"):
                rank_new = next((i for i, t in enumerate(ranked) if t in gold), None)
                rank_old = next((i for i, t in enumerate(ranked) if t in q["old"]), None)
                r["newer_first"].append(1 if rank_new is not None and (rank_old is None or rank_new < rank_old) else 0)
                r["newer_in10"].append(1 if rank_new is not None else 0)
                r["older_only"].append(1 if rank_new is None and rank_old is not None else 0)
        details.append(row)
    return {"by_kind": result, "details": details}


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def tables(data: dict, result: dict, seconds: dict[str, float]) -> str:
    by_kind = result["by_kind"]
    names = list(by_kind)
    n_kind = {kind: sum(q["type"] == kind for q in data["questions"]) for kind in QUESTION_KINDS}
    recall_kinds = [k for k in QUESTION_KINDS if k != "cross-character" and n_kind[k]]
    n_q = len(data["questions"])
    lines = []

    def all_of(name, metric, kinds=recall_kinds):
        return [v for kind in kinds for v in by_kind[name][kind][metric]]

    lines.append("| system | R@5 | R@10 | paraphrase R@10 | changed facts: newer ranked first | newer not in top 10 |")
    lines.append("|---|---|---|---|---|---|")
    for name in names:
        ch = by_kind[name]["changed-fact"]
        lines.append(f"| {SYSTEMS[name]} | {mean(all_of(name, 'R@5')):.2f} | {mean(all_of(name, 'R@10')):.2f} | "
                     f"{mean(by_kind[name]['paraphrase']['R@10']):.2f} | {mean(ch['newer_first']):.2f} | "
                     f"{len(ch['newer_in10']) - sum(ch['newer_in10'])} of {len(ch['newer_in10'])} |")
    lines.append("")
    lines.append("Recall by question kind (R@k: share of the gold messages among the first k):")
    lines.append("")
    head = "| question kind | n | " + " | ".join(f"{name} R@{k}" for name in names for k in K) + " |"
    lines.append(head)
    lines.append("|---|---|" + "---|" * (len(names) * len(K)))
    for kind in recall_kinds:
        cells = " | ".join(f"{mean(by_kind[name][kind][f'R@{k}']):.2f}" for name in names for k in K)
        lines.append(f"| {kind} | {n_kind[kind]} | {cells} |")
    cells = " | ".join(f"{mean(all_of(name, f'R@{k}')):.2f}" for name in names for k in K)
    lines.append(f"| all but cross-character | {sum(n_kind[k] for k in recall_kinds)} | {cells} |")
    lines.append("")
    lines.append("Facts that change: the newer message in the top 10 and above the older (newer first), "
                 "in the top 10 at all, and the older recalled without the newer:")
    lines.append("")
    lines.append("| question kind | n | " + " | ".join(f"{name} {m}" for name in names
                                                     for m in ("newer first", "newer in top 10", "older only")) + " |")
    lines.append("|---|---|" + "---|" * (len(names) * 3))
    for kind in ("changed-fact", "correction"):
        r = {name: by_kind[name][kind] for name in names}
        if not n_kind[kind]:
            continue
        cells = " | ".join(f"{mean(r[name][m]):.2f} ({sum(r[name][m])}/{len(r[name][m])})" for name in names
                           for m in ("newer_first", "newer_in10", "older_only"))
        lines.append(f"| {kind} | {n_kind[kind]} | {cells} |")
    lines.append("")
    lines.append("Junk (fillers) in the top 5, mean per question, and cross-character leaks:")
    lines.append("")
    lines.append("| question kind | n | " + " | ".join(f"{name} junk@5" for name in names) + " |")
    lines.append("|---|---|" + "---|" * len(names))
    for kind in QUESTION_KINDS:
        if n_kind[kind]:
            lines.append(f"| {kind} | {n_kind[kind]} | "
                         + " | ".join(f"{mean(by_kind[name][kind]['junk5']):.2f}" for name in names) + " |")
    junk_all = {name: [v for kind in QUESTION_KINDS for v in by_kind[name][kind]["junk5"]] for name in names}
    lines.append(f"| all | {n_q} | " + " | ".join(f"{mean(junk_all[name]):.2f}" for name in names) + " |")
    lines.append(f"| questions with junk in top 5 | {n_q} | "
                 + " | ".join(f"{sum(v > 0 for v in junk_all[name])}" for name in names) + " |")
    leaks = {name: by_kind[name]["cross-character"]["leak"] for name in names}
    lines.append(f"| cross-character leaks (top 10) | {n_kind['cross-character']} | "
                 + " | ".join(f"{sum(leaks[name])}" for name in names) + " |")
    lines.append(f"| mean ms per question | {n_q} | "
                 + " | ".join(f"{1000 * seconds[name] / max(n_q, 1):.1f}" for name in names) + " |")
    return "\n".join(lines)


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test: how likely a split at least this uneven is if neither system
    is better (ties left out)."""
    n, low = wins + losses, min(wins, losses)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(low + 1)) / 2 ** n) if n else 1.0


def disagreement_table(data: dict, result: dict, a: str = "dense", b: str = "memory") -> str:
    """Per question kind, the questions one system has fully in its first 5 and the other not,
    with a sign test; and what ``b`` ranked above the answer where only ``a`` found it (by the
    generator's label, replies apart): the "why" behind a kind where ``b`` trails ``a``."""
    turns = {t["id"]: t for t in data["turns"]}
    lines = [f"Where {a} and {b} disagree at R@5 (questions one has all gold messages in its first 5 and the "
             "other not; p: two-sided sign test), and what "
             f"{b} ranked above the answer in the questions only {a} found:", "",
             f"| question kind | n | {a} only | {b} only | p | above the answer in {b} |", "|---|---|---|---|---|---|"]
    for kind in QUESTION_KINDS:
        rows = [r for r in result["details"] if r["type"] == kind and kind != "cross-character"]
        if not rows:
            continue
        full = {name: [set(r["gold"]) <= set(r[name][:5]) for r in rows] for name in (a, b)}
        only_a = [r for r, x, y in zip(rows, full[a], full[b]) if x and not y]
        only_b = sum(y and not x for x, y in zip(full[a], full[b]))
        above: dict[str, int] = defaultdict(int)
        for r in only_a:
            for t in r[b]:
                if t in r["gold"]:
                    break
                if t:
                    turn = turns[t]
                    above["reply" if turn["role"] == "assistant" else turn["label"]] += 1
        why = ", ".join(f"{label} {n}" for label, n in sorted(above.items(), key=lambda x: -x[1])) or "-"
        lines.append(f"| {kind} | {len(rows)} | {len(only_a)} | {only_b} | {sign_test(len(only_a), only_b):.2f} | {why} |")
    return "\n".join(lines)


def sweep_newer_first(memory: MemoryStore, data: dict, ids: dict[str, int], kmax: int) -> str:
    """Dev-only selection of the newer-first setting (see NEWER_FIRST_SWEEP)."""
    from pocketpack.memory.store import FILTERED_RECALL, recall_options

    rankings = {name: recall_rankings(memory, data, kmax, recall_options(**{**FILTERED_RECALL, **over}))[0]
                for name, over in NEWER_FIRST_SWEEP}
    by_kind = score(data, ids, rankings)["by_kind"]
    kinds = [k for k in QUESTION_KINDS if k != "cross-character"]
    lines = ["| newer first | R@5 | R@10 | changed facts newer first | R@10 + newer first |", "|---|---|---|---|---|"]
    best, best_value = None, None
    for name, _ in NEWER_FIRST_SWEEP:
        r10 = mean([v for k in kinds for v in by_kind[name][k]["R@10"]])
        r5 = mean([v for k in kinds for v in by_kind[name][k]["R@5"]])
        nf = mean(by_kind[name]["changed-fact"]["newer_first"])
        if best_value is None or r10 + nf > best_value + 1e-12:  # a tie keeps the earlier (fewer changes)
            best, best_value = name, r10 + nf
        lines.append(f"| {name} | {r5:.3f} | {r10:.3f} | {nf:.3f} | {r10 + nf:.3f} |")
    lines.append("")
    lines.append(f"chosen: {best}")
    return "\n".join(lines)


def extension_table(memory: MemoryStore, data: dict, ids: dict[str, int]) -> str:
    """What the memory extension offers the prompt, beside what ``recall`` ranks: the extension
    asks for ``MemorySettings.k`` memories with its ``min_cosine`` cut and recency weighting
    (``pocketpack.memory.turns``), a day after the last message. Per kind R@5; for the
    cross-character probes (nothing of this character answers them) and for 100 of the chats'
    own small-talk messages used as the query (seeded), how many memories are offered at all."""
    import random

    from pocketpack.memory.turns import MemorySettings

    s = MemorySettings()
    cut = recall_options(recency_weight=s.recency_weight, half_life_days=s.half_life_days, min_cosine=s.min_cosine)
    now = max(t["time"] for t in data["turns"]) + 86400.0
    fillers = [t for t in data["turns"] if t["role"] == "user" and t["label"] == "filler"]
    random.Random(0).shuffle(fillers)
    systems = {"recall defaults": None, "extension": cut}
    r5: dict[str, dict[str, list[float]]] = {name: defaultdict(list) for name in systems}
    offered: dict[str, dict[str, list[int]]] = {name: defaultdict(list) for name in systems}
    for name, options in systems.items():
        for q in data["questions"]:
            found = [m.id for m in memory.recall(q["character"], q["question"], s.k, options=options, now=now)]
            offered[name][q["type"]].append(len(found))
            if q["type"] != "cross-character":
                gold = {ids[g] for g in q["gold"]}
                r5[name][q["type"]].append(len(gold & set(found[:5])) / len(gold))
        for t in fillers[:100]:
            offered[name]["small talk"].append(len(memory.recall(t["character"], t["text"], s.k, options=options, now=now)))
    kinds = [k for k in QUESTION_KINDS if k in r5["extension"]]
    lines = [f"What the memory extension offers the prompt (k={s.k}, min_cosine {s.min_cosine:g} unless BM25 "
             f"matched, recency weight {s.recency_weight:g} with a {s.half_life_days:g}-day half-life; before the "
             "token budget), beside the same recall without the cut and recency:", "",
             "| question kind | n | " + " | ".join(f"{name} R@5" for name in systems) + " |",
             "|---|---|" + "---|" * len(systems)]
    for kind in kinds:
        lines.append(f"| {kind} | {len(r5['extension'][kind])} | "
                     + " | ".join(f"{mean(r5[name][kind]):.2f}" for name in systems) + " |")
    every = {name: [v for k in kinds for v in r5[name][k]] for name in systems}
    lines.append(f"| all | {len(every['extension'])} | " + " | ".join(f"{mean(every[name]):.2f}" for name in systems) + " |")
    for kind, label in (("cross-character", "memories offered for a cross-character probe"),
                        ("small talk", "memories offered for a small-talk message")):
        lines.append(f"| {label} | {len(offered['extension'][kind])} | "
                     + " | ".join(f"{mean(offered[name][kind]):.2f}" for name in systems) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=["dev", "report"], default="dev")
    parser.add_argument("--store", default=None, help="store directory to (re)use "
                                                      "(default: .cache/longchat/<split>-<fingerprint>)")
    parser.add_argument("--via-cli", action="store_true",
                        help="ask the pack's defaults through `pocketpack memory recall --queries --json`")
    parser.add_argument("--details", default=None, help="write each question's ranked message ids as JSONL")
    parser.add_argument("--sweep-newer-first", action="store_true",
                        help="dev only: rank with each newer-first setting and name the one the fixed rule picks")
    args = parser.parse_args(argv)
    if args.sweep_newer_first and args.split != "dev":
        parser.error("--sweep-newer-first selects on dev only")

    data = generate(args.split)
    info = stats(data)
    store_dir = Path(args.store) if args.store else ROOT / ".cache" / "longchat" / f"{args.split}-{data['fingerprint']}"
    memory, ids, t_store = open_store(data, store_dir)
    kmax = max(K)
    if args.sweep_newer_first:
        try:
            print(sweep_newer_first(memory, data, ids, kmax))
        finally:
            memory.close()
        return 0
    rankings, seconds = {}, {}
    try:
        rankings["dense"], seconds["dense"] = dense_rankings(memory, data, ids, kmax)
        rankings["rrf"], seconds["rrf"] = recall_rankings(memory, data, kmax, SearchOptions(mmr_lambda=1.0),
                                                              follow_links=False)
        rankings["before"], seconds["before"] = recall_rankings(memory, data, kmax, SearchOptions(**LOCOMO_RECALL),
                                                                bring_linked=False)
        rankings["filtered"], seconds["filtered"] = recall_rankings(memory, data, kmax,
                                                                    recall_options(**FILTERED_RECALL),
                                                                    bring_linked=True)
        if not args.via_cli:
            rankings["memory"], seconds["memory"] = recall_rankings(memory, data, kmax, None)
        offered = extension_table(memory, data, ids)
    finally:
        memory.close()
    if args.via_cli:
        rankings["memory"], seconds["memory"] = cli_rankings(store_dir, data, kmax)
    result = score(data, ids, rankings)

    chars = ", ".join(f"{c} {n:,}" for c, n in info["per_character"].items())
    print(f"## Long-chat memory recall, split `{args.split}` (seed {data['seed']}, data {data['fingerprint']})")
    print()
    print(f"{len(data['characters'])} characters ({chars} messages), {len(data['questions'])} questions, "
          f"{info['fact_kinds']} fact kinds, {info['held_out_questions']} questions and "
          f"{info['held_out_messages']} messages from templates dev never sees; model all-MiniLM-L6-v2. "
          f"Store: {store_dir} ({'built in %.0f s' % t_store if t_store else 'reused'})"
          + ("; memory asked through the CLI (one process, model load included in its time)" if args.via_cli else "")
          + ".")
    print()
    print(tables(data, result, seconds))
    print()
    print("dense: exact cosine over the stored vectors; rrf: the pack's hybrid search (faiss + BM25 over text and "
          "the message answered), reciprocal-rank fusion k=10, equal weights, no feedback, no MMR; memory: "
          "MemoryStore.recall with the pack's defaults (what the extension and `pocketpack memory recall` use).")
    print()
    print(disagreement_table(data, result))
    print()
    print(offered)
    if args.details:
        with open(args.details, "w", encoding="utf-8") as out:
            for row in result["details"]:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
