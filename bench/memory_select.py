"""How the memory defaults were chosen: a fixed grid, two development sets, a fixed rule.

The development sets are the long-chat benchmark's ``dev`` split (``bench/longchat_generate.py``,
seed 1201) and LoCoMo's conversations 1-5 (``bench/memory_locomo.py --split dev``). Neither
report set (long-chat ``report``, LoCoMo conversations 6-10) is read here.

Every candidate starts from the settings LoCoMo chose in the first version (BM25's list weighted
1.5, one round of pseudo-relevance feedback from the top two hits) plus the junk rule chosen on
the long-chat dev split (``min_information=1.5``: a message whose words carry less information
than that is never recalled), and varies what the issue asked for: how much the BM25 list
counts for a query (``lexical_coverage``: its weight times the share of the query's information
its best hits hold, to this power) and whether a changed fact's newer side is brought in
(``bring_linked``). The old defaults are listed for comparison.

The rule, fixed before the first run: keep the candidates whose R@5 and R@10 are at least plain
dense search's on every question kind of both sets; of those, the highest mean of the two sets'
overall R@5, then R@10; a tie keeps the earlier (fewer options) one.

Then the order inside the first five (added after the first choice, for the issue's "newer
ranked first"; dev only): the chosen candidate with each setting of "a newer statement at least
this close to an older result among the first five, sharing no rare word with it, goes right
above it" (``newer_first_cosine``, ``newer_first_top=5``; the thresholds of
``memory_longchat.NEWER_FIRST_SWEEP``). A reorder
inside the first five moves nothing into or out of the first 5 or 10, so R@5 and R@10 stay
(checked and printed on both sets). Rule, fixed before its first run: the highest mean "newer
first" over the long-chat dev split's changed-fact and correction questions; a tie keeps the
earlier (fewer moves: off, then the higher threshold) one.

A third step (session 10, for "newer ranked first" on changed facts whose two versions sit
lower than fifth or share the word that names what changed: "seventh floor" / "eighth floor";
dev only; ``--step values``) starts from the pack's defaults as they are and varies the same
reorder: how far down it looks (``newer_first_top`` 5 or 10), how close two statements must be
(``newer_first_cosine`` 0.35 or 0.25) and what makes them two versions of one fact
(``newer_first_values``: "disjoint", no rare word shared, or "each_new", each holds a rare
word the other lacks). Looking down to 10 can move a statement into the first five, so R@5 can
change. Rule, fixed before its first run: keep the candidates whose R@5 and R@10 are at least
plain dense search's on every question kind of both development sets (the first step's rule)
and whose overall R@5 on each set is at most 0.01 below the defaults'; of those, the highest
mean "newer first" over the long-chat dev split's changed-fact and correction questions; a tie
keeps the earlier one (the defaults first, then the list's order: ``VALUES_GRID``).

A fourth step (``--step names``, dev only, after the third step's choice was found to move "Pixel
hates the vacuum cleaner." above "My dog is called Pixel, a grumpy old dachshund.": two facts
about one dog, not two versions of one) starts from the defaults as they are (top 5, cosine
0.25, "each_new") and tries "each_new_unnamed": as "each_new", but two statements that share a
rare word written as a name in either (capitalised, not at a sentence's start) stay in place.
Rule, fixed before its first run: the third step's filters (not below plain dense on any kind of
either set; overall R@5 at most 0.01 below the defaults'), then the highest mean dev "newer
first" over changed facts and corrections, and on a tie (within 0.5 of one question) the one that
moves fewer statements (``each_new_unnamed`` moves a subset of what ``each_new`` moves).

A fifth step (``--step lme``, session 10): the third step's choice was reported on LongMemEval's
72 knowledge-update questions (long real messages, one a session) and read the newer first less
often there than the second step's setting (0.514 vs 0.583; dense 0.444), while the long-chat
report read it more often (0.63 vs 0.50). So a development half of those questions joins the
choice: ``bench/memory_longmemeval.py``'s ``update_half`` (the first 36 by SHA-1 of question_id;
fixed after the all-72 figures above were seen, before any setting was tried on a half). Grid:
the defaults, then the third step's first-five rows and the fourth step's row (looking down to 10
failed the R@5 filter). Rule, fixed before its first run: the third step's filters on the two
first development sets, then the highest mean of two "newer first" figures — the long-chat dev
split's (changed facts and corrections) and the LongMemEval dev half's — and a tie keeps the
earlier row. ``--longmemeval DIR`` names the data (see bench/memory_longmemeval.py; its store
under .cache/longmemeval/store is reused, missing questions embedded first).

    .venv/bin/python bench/memory_select.py [--locomo ../shared/benchmarks/locomo10.json] [--step values|names|lme]
        [--longmemeval .cache/longmemeval/memoria-959167b/s]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import memory_locomo as locomo  # noqa: E402 - after the sys.path line, to run from a checkout
import memory_longchat as longchat  # noqa: E402 - after the sys.path line, to run from a checkout
from longchat_generate import generate  # noqa: E402 - after the sys.path line, to run from a checkout

from pocketpack.memory.store import BRING_LINKED, LOCOMO_RECALL, MemoryStore, recall_options  # noqa: E402 - after the sys.path line, to run from a checkout
from pocketpack.retrieval import SearchOptions  # noqa: E402 - after the sys.path line, to run from a checkout

JUNK_RULE = {"min_information": 1.5}
GRID = [("before: LoCoMo-chosen", dict(LOCOMO_RECALL), False)]
ORDER = [("off", {})] + [(name, settings) for name, settings in longchat.NEWER_FIRST_SWEEP
                         if settings.get("newer_first_top") == 5]
for _bring in (False, True):
    for _power in (None, 1.0, 2.0, 3.0, 4.0):
        _name = "junk rule" + (f", coverage^{_power:g}" if _power else "") + (", bring linked" if _bring else "")
        GRID.append((_name, {**LOCOMO_RECALL, **JUNK_RULE, "lexical_coverage": _power}, _bring))
DENSE = SearchOptions(mode="dense", mmr_lambda=1.0)
VALUES_GRID = [(f"top {top}, cosine {cos:g}, {values}",
                {"newer_first_top": top, "newer_first_cosine": cos, "newer_first_values": values})
               for top in (5, 10) for cos in (0.35, 0.25) for values in ("disjoint", "each_new")]
NAMES_GRID = [("top 5, cosine 0.25, each_new_unnamed",
               {"newer_first_top": 5, "newer_first_cosine": 0.25, "newer_first_values": "each_new_unnamed"})]
R5_SLACK = 0.01  # the third step: overall R@5 on each set at most this far below the defaults'


def locomo_dev(path: Path, store_dir: Path):
    """LoCoMo conversations 1-5 stored as the extension stores them (built once, then reused)."""
    data = json.loads(path.read_text())
    memory = MemoryStore(store_dir)
    plan = []
    for c in locomo.SPLITS["dev"]:
        sample = data[c]
        turns = locomo.turns_of(sample["conversation"])
        character = f"locomo-{sample.get('sample_id', c)}"
        ids_file = store_dir / f"ids-{c}.json"
        if not ids_file.is_file():
            ids = memory.add_many(locomo.records_of(turns, character))
            ids_file.write_text(json.dumps(ids))
        ids = json.loads(ids_file.read_text())
        questions = [q for q in sample["qa"] if q.get("category") in locomo.CATEGORIES and locomo.evidence_of(q)]
        plan.append((character, {i: t["dia_id"] for i, t in zip(ids, turns)}, questions))
    return memory, plan


def locomo_scores(memory: MemoryStore, plan, options: SearchOptions, bring: bool) -> dict[str, dict[int, float]]:
    """Per category (and "all"): mean R@5 and R@10 of the evidence turns."""
    values: dict[str, dict[int, list[float]]] = {}
    for character, id_to_dia, questions in plan:
        for q in questions:
            gold = locomo.evidence_of(q)
            found = memory.recall(character, q["question"], 10, options=options, follow_links=options.mode != "dense",
                                  bring_linked=bring)
            ranked = [id_to_dia.get(m.id) for m in found]
            for kind in (locomo.CATEGORIES[q["category"]], "all"):
                for k in (5, 10):
                    values.setdefault(kind, {}).setdefault(k, []).append(len(gold & set(ranked[:k])) / len(gold))
    return {kind: {k: sum(v) / len(v) for k, v in ks.items()} for kind, ks in values.items()}


def longchat_scores(memory: MemoryStore, data: dict, ids: dict, rankings: list[list[int]]) -> dict[str, dict[int, float]]:
    by_kind = longchat.score(data, ids, {"x": rankings})["by_kind"]["x"]
    out: dict[str, dict[int, float]] = {}
    everything: dict[int, list[float]] = {5: [], 10: []}
    for kind, metrics in by_kind.items():
        if kind == "cross-character":
            continue
        out[kind] = {k: longchat.mean(metrics[f"R@{k}"]) for k in (5, 10)}
        for k in (5, 10):
            everything[k] += metrics[f"R@{k}"]
    out["all"] = {k: longchat.mean(v) for k, v in everything.items()}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--locomo", default=str(locomo.DEFAULT_DATA))
    parser.add_argument("--locomo-store", default=str(ROOT / ".cache" / "locomo-dev"),
                        help="where LoCoMo's dev conversations are stored (reused)")
    parser.add_argument("--step", choices=("grid", "values", "names", "lme"), default="grid",
                        help="grid: the first two steps; values, names, lme: the third to fifth (see above)")
    parser.add_argument("--longmemeval", default=str(ROOT / ".cache" / "longmemeval" / "memoria-959167b" / "s"),
                        help="LongMemEval data for --step lme")
    args = parser.parse_args(argv)

    data = generate("dev")
    lc_memory, lc_ids, _ = longchat.open_store(data, ROOT / ".cache" / "longchat" / f"dev-{data['fingerprint']}")
    Path(args.locomo_store).mkdir(parents=True, exist_ok=True)
    lo_memory, plan = locomo_dev(Path(args.locomo), Path(args.locomo_store))

    start = time.perf_counter()
    dense_lc = longchat_scores(lc_memory, data, lc_ids, longchat.dense_rankings(lc_memory, data, lc_ids, 10)[0])
    dense_lo = locomo_scores(lo_memory, plan, DENSE, False)
    if args.step == "lme":
        try:
            choose_with_updates(data, lc_memory, lc_ids, lo_memory, plan, dense_lc, dense_lo, Path(args.longmemeval))
        finally:
            lc_memory.close()
            lo_memory.close()
        return 0
    if args.step in ("values", "names"):
        try:
            choose_values(data, lc_memory, lc_ids, lo_memory, plan, dense_lc, dense_lo,
                          VALUES_GRID if args.step == "values" else NAMES_GRID, prefer_fewer=args.step == "names")
        finally:
            lc_memory.close()
            lo_memory.close()
        return 0
    rows = []
    for name, settings, bring in GRID:
        options = SearchOptions(**settings)
        lc = longchat_scores(lc_memory, data, lc_ids,
                             longchat.recall_rankings(lc_memory, data, 10, options, bring_linked=bring)[0])
        lo = locomo_scores(lo_memory, plan, options, bring)
        losses = below_dense(lc, lo, dense_lc, dense_lo)
        rows.append((name, settings, bring, lc, lo, losses))
        print(f"  {name}: long-chat {lc['all'][5]:.3f}/{lc['all'][10]:.3f}, LoCoMo {lo['all'][5]:.3f}/{lo['all'][10]:.3f}"
              f"{'' if not losses else ', below dense: ' + '; '.join(losses)}", file=sys.stderr, flush=True)
    print(f"## Choosing the memory defaults on the development sets ({time.perf_counter() - start:.0f} s)")
    print()
    kinds_lc = [k for k in dense_lc if k != "all"]
    kinds_lo = [k for k in dense_lo if k != "all"]
    print("| candidate | long-chat dev R@5 / R@10 | LoCoMo 1-5 R@5 / R@10 | mean R@5 | below dense on |")
    print("|---|---|---|---|---|")
    print(f"| plain dense (MiniLM cosine) | {dense_lc['all'][5]:.3f} / {dense_lc['all'][10]:.3f} | "
          f"{dense_lo['all'][5]:.3f} / {dense_lo['all'][10]:.3f} | {(dense_lc['all'][5] + dense_lo['all'][5]) / 2:.3f} | |")
    best = None
    for name, settings, bring, lc, lo, losses in rows:
        value = ((lc["all"][5] + lo["all"][5]) / 2, (lc["all"][10] + lo["all"][10]) / 2)
        if not losses and (best is None or value > best[1]):
            best = (name, value, settings, bring)
        print(f"| {name} | {lc['all'][5]:.3f} / {lc['all'][10]:.3f} | {lo['all'][5]:.3f} / {lo['all'][10]:.3f} | "
              f"{value[0]:.3f} | {', '.join(losses) or 'nothing'} |")
    print()
    print("Per question kind, R@5 / R@10 (long-chat dev: " + ", ".join(kinds_lc) + "; LoCoMo: " + ", ".join(kinds_lo) + "):")
    print()
    print("| candidate | " + " | ".join(kinds_lc + [f"LoCoMo {k}" for k in kinds_lo]) + " |")
    print("|---|" + "---|" * (len(kinds_lc) + len(kinds_lo)))
    print("| plain dense | " + " | ".join(f"{dense_lc[k][5]:.2f} / {dense_lc[k][10]:.2f}" for k in kinds_lc) + " | "
          + " | ".join(f"{dense_lo[k][5]:.2f} / {dense_lo[k][10]:.2f}" for k in kinds_lo) + " |")
    for name, _, _, lc, lo, _ in rows:
        print(f"| {name} | " + " | ".join(f"{lc[k][5]:.2f} / {lc[k][10]:.2f}" for k in kinds_lc) + " | "
              + " | ".join(f"{lo[k][5]:.2f} / {lo[k][10]:.2f}" for k in kinds_lo) + " |")
    print()
    if best is None:
        print("chosen: none: every candidate is below plain dense somewhere")
        lc_memory.close()
        lo_memory.close()
        return 0
    print(f"chosen: {best[0]}")
    print()
    try:
        order = choose_order(best, data, lc_memory, lc_ids, lo_memory, plan)
    finally:
        lc_memory.close()
        lo_memory.close()
    same = SearchOptions(**{**best[2], **order}) == recall_options() and best[3] == BRING_LINKED
    print(f"chosen: {best[0]}, newer first {order or 'off'} "
          f"({'the pack defaults to it' if same else 'NOT the pack default: see DEFAULT_RECALL'})")
    return 0


def choose_order(best, data, lc_memory, lc_ids, lo_memory, plan) -> dict:
    """The second step (see the module docstring): the order inside the first five."""
    name, _, settings, bring = best
    rows = []
    for label, over in ORDER:
        options = SearchOptions(**{**settings, **over})
        rankings = longchat.recall_rankings(lc_memory, data, 10, options, bring_linked=bring)[0]
        by_kind = longchat.score(data, lc_ids, {"x": rankings})["by_kind"]["x"]
        newer = [v for kind in ("changed-fact", "correction") for v in by_kind[kind]["newer_first"]]
        lc = longchat_scores(lc_memory, data, lc_ids, rankings)
        lo = locomo_scores(lo_memory, plan, options, bring)
        rows.append((label, over, longchat.mean(newer), lc, lo))
    print(f"Order inside the first five, on {name} (long-chat dev: changed facts and corrections):")
    print()
    print("| newer first | long-chat dev newer first | long-chat dev R@5 / R@10 | LoCoMo 1-5 R@5 / R@10 |")
    print("|---|---|---|---|")
    pick = None
    for label, over, newer, lc, lo in rows:
        if pick is None or newer > pick[2] + 1e-12:
            pick = (label, over, newer)
        print(f"| {label} | {newer:.3f} | {lc['all'][5]:.3f} / {lc['all'][10]:.3f} | "
              f"{lo['all'][5]:.3f} / {lo['all'][10]:.3f} |")
    moved = [label for label, _, _, lc, lo in rows if (lc, lo) != (rows[0][3], rows[0][4])]
    print()
    print("R@5 and R@10 per kind the same as without: " + ("yes, on both sets" if not moved
                                                          else "NO for " + ", ".join(moved)))
    return dict(pick[1])


def below_dense(lc, lo, dense_lc, dense_lo) -> list[str]:
    """The (set, kind, R@k) where a candidate's recall is under plain dense search's."""
    return [f"{set_name} {kind} R@{k}" for set_name, mine, base in (("long-chat", lc, dense_lc), ("LoCoMo", lo, dense_lo))
            for kind in base for k in (5, 10) if mine[kind][k] < base[kind][k] - 1e-9]


def why_not_kept(lc, lo, losses: list[str], base_lc, base_lo) -> str:
    """The third to fifth steps' filters: not below dense anywhere, overall R@5 on each set at most
    ``R5_SLACK`` under the defaults'; '' when a row passes both."""
    slack = [name for name, mine, base in (("long-chat", lc, base_lc), ("LoCoMo", lo, base_lo))
             if mine["all"][5] < base["all"][5] - R5_SLACK - 1e-9]
    return "; ".join([*(f"below dense: {x}" for x in losses),
                      *(f"{x} R@5 more than {R5_SLACK} below the defaults" for x in slack)])


def choose_values(data, lc_memory, lc_ids, lo_memory, plan, dense_lc, dense_lo, grid, prefer_fewer=False) -> dict:
    """The third and fourth steps (see the module docstring): how far down and on what the reorder
    works. ``prefer_fewer``: a later row within half a question of the best wins (it moves less)."""
    defaults = recall_options()
    rows = []
    for label, over in [("defaults: " + f"top {defaults.newer_first_top}, cosine {defaults.newer_first_cosine:g}, "
                         f"{defaults.newer_first_values}", {})] + grid:
        options = replace(defaults, **over)
        rankings = longchat.recall_rankings(lc_memory, data, 10, options, bring_linked=BRING_LINKED)[0]
        by_kind = longchat.score(data, lc_ids, {"x": rankings})["by_kind"]["x"]
        newer = {kind: longchat.mean(by_kind[kind]["newer_first"]) for kind in ("changed-fact", "correction")}
        both = longchat.mean([v for kind in newer for v in by_kind[kind]["newer_first"]])
        n_questions = sum(len(by_kind[kind]["newer_first"]) for kind in newer)
        lc = longchat_scores(lc_memory, data, lc_ids, rankings)
        lo = locomo_scores(lo_memory, plan, options, BRING_LINKED)
        rows.append((label, over, both, newer, lc, lo, below_dense(lc, lo, dense_lc, dense_lo)))
        print(f"  {label}: newer first {both:.3f}", file=sys.stderr, flush=True)
    base_lc, base_lo = rows[0][4], rows[0][5]
    print(f"{'Fourth' if prefer_fewer else 'Third'} step: how far down and on what the newer-first reorder works "
          "(long-chat dev newer first: changed facts and corrections)")
    print()
    print("| reorder | newer first (changed / corrections) | long-chat dev R@5 / R@10 | LoCoMo 1-5 R@5 / R@10 | kept? |")
    print("|---|---|---|---|---|")
    pick = None
    for label, over, both, newer, lc, lo, losses in rows:
        why = why_not_kept(lc, lo, losses, base_lc, base_lo)
        tie = 0.5 / n_questions if prefer_fewer else 1e-12
        if not why and (pick is None or (both > pick[2] - tie if prefer_fewer else both > pick[2] + tie)):
            pick = (label, over, both)
        print(f"| {label} | {both:.3f} ({newer['changed-fact']:.3f} / {newer['correction']:.3f}) | "
              f"{lc['all'][5]:.3f} / {lc['all'][10]:.3f} | {lo['all'][5]:.3f} / {lo['all'][10]:.3f} | {why or 'yes'} |")
    print()
    print(f"chosen: {pick[0] if pick else 'none'}")
    return dict(pick[1]) if pick else {}


def choose_with_updates(data, lc_memory, lc_ids, lo_memory, plan, dense_lc, dense_lo, lme_data: Path) -> dict:
    """The fifth step (see the module docstring): the newer-first setting on two kinds of chat."""
    import memory_longmemeval as lme

    if not lme_data.exists():
        raise SystemExit(f"no LongMemEval data at {lme_data} (see bench/memory_longmemeval.py's docstring)")
    updates = lme.update_half(lme.select(lme.load(lme_data), 10 ** 6, ("knowledge-update",)), "dev")
    lme_memory, lme_ids, _, _ = lme.open_store(ROOT / ".cache" / "longmemeval" / "store", updates)
    defaults = recall_options()
    grid = [("defaults: " + f"top 5, cosine {defaults.newer_first_cosine:g}, {defaults.newer_first_values}", {})]
    grid += [(label, over) for label, over in VALUES_GRID + NAMES_GRID if over["newer_first_top"] == 5
             and replace(defaults, **over) != defaults]
    rows = []
    try:
        for label, over in grid:
            options = replace(defaults, **over)
            rankings = longchat.recall_rankings(lc_memory, data, 10, options, bring_linked=BRING_LINKED)[0]
            by_kind = longchat.score(data, lc_ids, {"x": rankings})["by_kind"]["x"]
            lc_newer = longchat.mean([v for kind in ("changed-fact", "correction") for v in by_kind[kind]["newer_first"]])
            got = []
            for q in updates:
                found = lme_memory.recall(f"lme-{q['question_id']}", q["question"], 10, options=options)
                got.append(lme.newer_first(q, lme_ids[q["question_id"]], [m.id for m in found])["newer first"])
            lme_newer = sum(got) / len(got)
            lc = longchat_scores(lc_memory, data, lc_ids, rankings)
            lo = locomo_scores(lo_memory, plan, options, BRING_LINKED)
            rows.append((label, over, lc_newer, lme_newer, lc, lo, below_dense(lc, lo, dense_lc, dense_lo)))
            print(f"  {label}: long-chat {lc_newer:.3f}, LongMemEval dev {lme_newer:.3f}", file=sys.stderr, flush=True)
    finally:
        lme_memory.close()
    base_lc, base_lo = rows[0][4], rows[0][5]
    print(f"Fifth step: newer first on long-chat dev (changed facts and corrections) and on LongMemEval's "
          f"knowledge-update dev half ({len(updates)} questions)")
    print()
    print("| reorder (first five) | long-chat dev newer first | LongMemEval dev newer first | mean | long-chat dev R@5 / R@10 "
          "| LoCoMo 1-5 R@5 / R@10 | kept? |")
    print("|---|---|---|---|---|---|---|")
    pick = None
    for label, over, lc_newer, lme_newer, lc, lo, losses in rows:
        why = why_not_kept(lc, lo, losses, base_lc, base_lo)
        value = (lc_newer + lme_newer) / 2
        if not why and (pick is None or value > pick[2] + 1e-12):
            pick = (label, over, value)
        print(f"| {label} | {lc_newer:.3f} | {lme_newer:.3f} | {value:.3f} | {lc['all'][5]:.3f} / {lc['all'][10]:.3f} | "
              f"{lo['all'][5]:.3f} / {lo['all'][10]:.3f} | {why or 'yes'} |")
    print()
    print(f"chosen: {pick[0] if pick else 'none'}")
    return dict(pick[1]) if pick else {}


if __name__ == "__main__":
    sys.exit(main())
