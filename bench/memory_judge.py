"""Can the embedded chat model judge "the second statement replaces the first"? (dev split only)

The store-time rule (``pocketpack.memory.links``) links a newer user statement to the older one
it replaces from MiniLM cosine and rare words; it finds a third of the long-chat benchmark's
true pairs, and misses changes said in new words. This bench asks the model the user already
has loaded, the embedded Gemma 3 270M GGUF through llama-cpp-python, instead.

For every eligible user statement (``links.eligible``: a user's message, not a question, that
carries information) of each dev character, its candidates are the earlier eligible statements
of the same character that are among its ``TOP_COSINE`` nearest by MiniLM cosine or its
``PREVIOUS`` latest. Each (older, newer) candidate pair is scored by the model: a prompt of
hand-written generic examples (none from the benchmark) then the pair, scored by
log P(" Yes") - log P(" No") for the next token. The true pairs are the generator's
(``bench/memory_links.py``'s ``truth``).

The model costs one to two seconds a pair on one shared thread, so the judge scores a sample: every newer
statement that truly replaces an older one, and ``OTHERS`` of the rest drawn with a fixed seed,
each of those weighted by (all of them / drawn) in the AUC and in the links counted (precision);
cosine is shown on the same sample and on every pair.

Reported per scorer (each prompt form, and cosine alone):

- ROC AUC over all candidate pairs (a true pair against every other candidate pair);
- the true older's rank among its newer's candidates (and how many true olders are not a
  candidate at all: the ceiling);
- link precision / recall / F1 when each newer is linked to its best-scored candidate if that
  score reaches a threshold, at the threshold with the best dev F1 (optimistic: chosen on the
  data it is measured on) and leave-one-character-out (the threshold chosen on the two other
  characters, applied to the third, counts summed): the honest estimate;
- the cost: ms per pair and prompt tokens (all, and those evaluated after the cached examples).

Selection rule, fixed before the first run: the prompt form with the best leave-one-character-out
F1 is the judge's form (ties: the higher AUC). Added after the first run showed the scores follow
the newer statement whatever the older (dev AUC 0.52): each form also minus the score of the
newer after a neutral statement (``NEUTRAL``), ``<form> - newer alone``; and, as the few-shot
form then ranked whole newer statements well but not their olders, ``cosine picks, <form>
decides``: the nearest candidate by cosine, linked when the judge's score of that pair is high. The
current rule's dev link precision/recall (0.44/0.33) come from ``bench/memory_links.py --split dev``.

    nice -n 10 .venv/bin/python bench/memory_judge.py [--model models/gemma-3-270m-q4_k_m.gguf]
        [--forms few-shot,question] [--limit N]

Dev only: the report split is never read. Scores are cached under ``.cache/memory_judge/``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from longchat_generate import generate  # noqa: E402 - after the sys.path line, to run from a checkout
from memory_links import truth  # noqa: E402 - after the sys.path line, to run from a checkout
from memory_longchat import open_store  # noqa: E402 - after the sys.path line, to run from a checkout

from pocketpack.memory.links import RULE, eligible  # noqa: E402 - after the sys.path line, to run from a checkout
from pocketpack.retrieval.search import TermStats  # noqa: E402 - after the sys.path line, to run from a checkout

SPLIT = "dev"
TOP_COSINE = 5
PREVIOUS = 3
OTHERS = 120           # newer statements that replace nothing, drawn (seed SEED) for the judge
SEED = 12
RULE_DEV = {"precision": 0.44, "recall": 0.33}  # bench/memory_links.py --split dev

# The judge's score after a statement that nothing replaces, subtracted from each pair's: how much
# of the score is the newer statement alone ("Correction: ..." scores high after anything).
NEUTRAL = "I had a sandwich for lunch."

# Hand-written, generic: none of these people, places or sentences is in the benchmark.
EXAMPLES = [
    ("I work as a teacher at the primary school.", "I quit teaching last month, I'm a software developer now.", True),
    ("My brother lives in Toronto.", "I had pasta for lunch today.", False),
    ("I drive a red Honda.", "Oops, I meant blue, not red.", True),
    ("I love hiking in the mountains.", "Hiking in the mountains is my favourite thing to do on weekends.", False),
    ("My cat is called Whiskers.", "My neighbour's cat is called Luna.", False),
    ("We usually eat at Mario's on Fridays.", "These days our regular spot is a sushi bar downtown.", True),
    ("I'm allergic to peanuts.", "I started learning the guitar.", False),
]

FORMS = {
    # few-shot, numbered statements, a yes/no question after each pair
    "few-shot": {
        "head": "Decide whether the second statement updates or replaces the first one "
                "(the same thing about the speaker, now with a different value).\n\n",
        "pair": "Statement 1: {older}\nStatement 2: {newer}\nDoes statement 2 replace statement 1? Answer:",
        "sep": "\n\n",
    },
    # few-shot, the earlier and later message of one chat user, asked whether the earlier is out of date
    "question": {
        "head": "A user said one thing earlier in a chat and another thing later. "
                "Is the earlier message now out of date because of the later one?\n\n",
        "pair": "Earlier: {older}\nLater: {newer}\nOut of date: ",
        "sep": "\n\n",
    },
}


class GemmaJudge:
    """log P(" Yes") - log P(" No") after a prompt form's examples and the pair; the examples
    are evaluated once and kept in the model's cache, each pair evaluates only its own tokens."""

    def __init__(self, llm, form: dict):
        self.llm = llm
        self.form = form
        shots = "".join(form["pair"].format(older=o, newer=n) + (" Yes" if yes else " No") + form["sep"]
                        for o, n, yes in EXAMPLES)
        self.prefix = llm.tokenize((form["head"] + shots).encode("utf-8"), add_bos=True)
        yes, no = llm.tokenize(b" Yes", add_bos=False), llm.tokenize(b" No", add_bos=False)
        if len(yes) != 1 or len(no) != 1:
            raise SystemExit(f"' Yes'/' No' are not single tokens: {yes} {no}")
        self.yes, self.no = yes[0], no[0]
        llm.reset()
        llm.eval(self.prefix)
        self.tokens_seen = 0

    def __call__(self, older: str, newer: str) -> float:
        llm = self.llm
        tail = llm.tokenize(self.form["pair"].format(older=older, newer=newer).encode("utf-8"), add_bos=False)
        llm.n_tokens = len(self.prefix)  # eval drops the cached positions from here on
        llm.eval(tail)
        self.tokens_seen += len(tail)
        # the last token's logits (only the last position of a batch has them)
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).astype(np.float64)
        top = logits.max()
        log_z = top + math.log(np.exp(logits - top).sum())
        return float((logits[self.yes] - log_z) - (logits[self.no] - log_z))


def candidates(memory, data: dict, ids: dict[str, int]) -> list[dict]:
    """Every (newer, older candidate) pair of every character, with cosine and truth."""
    true_pairs = {(ids[n], ids[o]) for n, o in truth(data)}
    out = []
    for character in data["characters"]:
        coll = memory.collection(character)
        users = sorted(coll.items(where_meta=("role", "user")), key=lambda it: (it.time, it.id))
        stats = TermStats(coll, [it.text for it in users])
        users = [it for it in users if eligible(stats, it, RULE)]
        vecs = coll.vectors([it.id for it in users])
        users = [it for it in users if it.id in vecs]
        mat = np.stack([vecs[it.id] for it in users])
        for j in range(1, len(users)):
            cos = mat[:j] @ mat[j]
            near = set(np.argsort(-cos, kind="stable")[:TOP_COSINE].tolist())
            near |= set(range(max(0, j - PREVIOUS), j))
            for i in sorted(near):
                out.append({"character": character, "newer": users[j].id, "older": users[i].id,
                            "newer_text": users[j].text, "older_text": users[i].text, "cosine": float(cos[i]),
                            "true": (users[j].id, users[i].id) in true_pairs})
    return out


def auc(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> float:
    """ROC AUC, each negative counted with its weight (ties half)."""
    pos, neg, w = scores[labels], scores[~labels], weights[~labels]
    if not len(pos) or not len(neg):
        return float("nan")
    wins = ((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])) @ w
    return float(wins.sum() / (len(pos) * w.sum()))


def best_per_newer(pairs: list[dict], key: str) -> dict[int, dict]:
    best: dict[int, dict] = {}
    for p in pairs:
        if p["newer"] not in best or p[key] > best[p["newer"]][key]:
            best[p["newer"]] = p
    return best


def link_counts(best: dict[int, dict], key: str, threshold: float, characters=None) -> tuple[float, int]:
    """(links made, weighted; right) when each newer links to its best candidate scoring >= threshold."""
    made = [p for p in best.values() if p[key] >= threshold and (characters is None or p["character"] in characters)]
    return sum(p["weight"] for p in made), sum(p["true"] for p in made)


def prf(made: float, right: int, true: int) -> tuple[float, float, float]:
    p = right / made if made else 0.0
    r = right / true if true else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def best_threshold(best: dict[int, dict], key: str, true: int, characters=None) -> tuple[float, float]:
    """The threshold with the most link F1 (ties: the higher threshold, fewer links), and that F1."""
    values = sorted({p[key] for p in best.values() if p[key] > -math.inf}, reverse=True)
    top, top_f1 = math.inf, -1.0
    for t in values:
        f1 = prf(*link_counts(best, key, t, characters), true)[2]
        if f1 > top_f1 + 1e-12:
            top, top_f1 = t, f1
    return top, top_f1


def evaluate(pairs: list[dict], key: str, true_by_character: dict[str, int]) -> dict:
    scores = np.array([p[key] for p in pairs])
    labels = np.array([p["true"] for p in pairs])
    weights = np.array([p["weight"] for p in pairs])
    true = sum(true_by_character.values())
    best = best_per_newer(pairs, key)
    t, _ = best_threshold(best, key, true)
    p, r, f1 = prf(*link_counts(best, key, t), true)
    made_all = right_all = 0
    for held in true_by_character:
        others = [c for c in true_by_character if c != held]
        t_other, _ = best_threshold(best, key, sum(true_by_character[c] for c in others), set(others))
        made, right = link_counts(best, key, t_other, {held})
        made_all, right_all = made_all + made, right_all + right
    lp, lr, lf1 = prf(made_all, right_all, true)
    by_newer = defaultdict(list)
    for q in pairs:
        by_newer[q["newer"]].append(q)
    ranks = []
    for group in by_newer.values():
        truth_here = [q for q in group if q["true"]]
        for q in truth_here:
            ranks.append(1 + sum(o[key] > q[key] for o in group))
    return {"auc": auc(scores, labels, weights), "threshold": t, "precision": p, "recall": r, "f1": f1,
            "loco_precision": lp, "loco_recall": lr, "loco_f1": lf1,
            "rank1": sum(x == 1 for x in ranks), "ranked": len(ranks),
            "mean_rank": float(np.mean(ranks)) if ranks else float("nan")}


def score_pairs(pairs: list[dict], model: Path, form_name: str, cache: Path) -> dict:
    """Each pair's judge score under ``form_name`` (cached by pair), and the cost; also each
    newer statement's score after :data:`NEUTRAL`, subtracted as ``<form> - newer alone``."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"{form_name}.json"
    saved = json.loads(path.read_text()) if path.is_file() else {}
    asks = {f"{p['newer']}-{p['older']}": (p["older_text"], p["newer_text"]) for p in pairs}
    asks.update({f"{p['newer']}-neutral": (NEUTRAL, p["newer_text"]) for p in pairs})
    todo = [(key, pair) for key, pair in asks.items() if key not in saved]
    cost = saved.pop("_cost", None)
    if todo:
        from llama_cpp import Llama

        llm = Llama(model_path=str(model), n_ctx=1024, n_threads=1, n_batch=256, verbose=False)
        judge = GemmaJudge(llm, FORMS[form_name])
        start = time.perf_counter()
        for n, (key, (older, newer)) in enumerate(todo, 1):
            saved[key] = judge(older, newer)
            if n % 200 == 0 or n == len(todo):
                seconds = time.perf_counter() - start
                if cost is None or n >= 200:  # the cost of the longest run
                    cost = {"pairs": n, "seconds": seconds, "tail_tokens": judge.tokens_seen,
                            "prefix_tokens": len(judge.prefix)}
                path.write_text(json.dumps({**saved, "_cost": cost}))
                print(f"  {form_name}: {n}/{len(todo)} pairs, {1000 * seconds / n:.0f} ms a pair", file=sys.stderr)
    for p in pairs:
        p[form_name] = saved[f"{p['newer']}-{p['older']}"]
        p[f"{form_name} - newer alone"] = p[form_name] - saved[f"{p['newer']}-neutral"]
    return cost or {}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "models" / "gemma-3-270m-q4_k_m.gguf"))
    parser.add_argument("--forms", default=",".join(FORMS))
    parser.add_argument("--limit", type=int, default=None, help="score only the first N pairs (a cost check)")
    args = parser.parse_args(argv)
    forms = [f for f in args.forms.split(",") if f]
    if any(f not in FORMS for f in forms):
        parser.error(f"forms: {', '.join(FORMS)}")

    data = generate(SPLIT)
    memory, ids, _ = open_store(data, ROOT / ".cache" / "longchat" / f"{SPLIT}-{data['fingerprint']}")
    try:
        pairs = candidates(memory, data, ids)
    finally:
        memory.close()
    true_by_character = defaultdict(int)
    for n, _ in truth(data):
        true_by_character[n.split(":")[0]] += 1
    changing = {ids[n] for n, _ in truth(data)}
    for p in pairs:
        p["weight"] = 1.0
    others = sorted({p["newer"] for p in pairs} - changing)
    drawn = set(random.Random(SEED).sample(others, min(OTHERS, len(others))))
    every = pairs
    pairs = [dict(p, weight=1.0 if p["newer"] in changing else len(others) / len(drawn)) for p in every
             if p["newer"] in changing or p["newer"] in drawn]
    if args.limit:
        pairs = pairs[:args.limit]
    covered = sum(p["true"] for p in pairs)
    newers = len({p["newer"] for p in pairs})
    print(f"## Changed-fact judge, split {SPLIT} (data {data['fingerprint']})")
    print()
    print(f"{newers} eligible newer statements, {len(every)} candidate pairs (top {TOP_COSINE} by cosine + "
          f"previous {PREVIOUS}); true pairs {sum(true_by_character.values())}, of which {covered} are candidates; "
          f"judged: {len(pairs)} pairs of the {len(changing)} newer statements that replace one and "
          f"{len(drawn)} of the {len(others)} others (weight {len(others) / len(drawn):.2f})")
    print()
    costs = {f: score_pairs(pairs, Path(args.model), f, ROOT / ".cache" / "memory_judge" / data["fingerprint"])
             for f in forms}
    print("| scorer | AUC | true older ranked 1st | mean rank | threshold | P | R | F1 (best on dev) "
          "| P | R | F1 (leave one character out) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    picked = {p["newer"]: p for p in best_per_newer(pairs, "cosine").values()}
    for f in forms:  # the cosine-nearest candidate linked when the judge's score for it is high enough
        for p in pairs:
            p[f"cosine picks, {f} decides"] = p[f] if picked[p["newer"]] is p else -math.inf
    scorers = [("cosine, every pair", every), ("cosine", pairs),
               *[(f + alone, pairs) for f in forms for alone in ("", " - newer alone")],
               *[(f"cosine picks, {f} decides", pairs) for f in forms]]
    for key, on in scorers:
        m = evaluate(on, key.removesuffix(", every pair"), true_by_character)
        ranking = (f"{m['auc']:.3f} | {m['rank1']}/{m['ranked']} | {m['mean_rank']:.2f}"
                   if "picks" not in key else "- | (cosine's) | -")  # one candidate a newer: no ranking
        print(f"| {key} | {ranking} | {m['threshold']:.2f} "
              f"| {m['precision']:.2f} | {m['recall']:.2f} | {m['f1']:.2f} | {m['loco_precision']:.2f} "
              f"| {m['loco_recall']:.2f} | {m['loco_f1']:.2f} |")
    rp, rr = RULE_DEV["precision"], RULE_DEV["recall"]
    print(f"| current RULE (memory_links.py) | | | | | {rp:.2f} | {rr:.2f} | {2 * rp * rr / (rp + rr):.2f} | | | |")
    print()
    for f, c in costs.items():
        if c:
            print(f"cost {f}: {1000 * c['seconds'] / c['pairs']:.0f} ms a pair (n_threads=1), "
                  f"{c['prefix_tokens']} example tokens evaluated once + {c['tail_tokens'] / c['pairs']:.0f} "
                  f"tokens a pair ({c['prefix_tokens'] + c['tail_tokens'] / c['pairs']:.0f} a prompt)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
