"""Do the demo voices really change the embedded model's voice? Held-out perplexity and generations.

For each shipped voice (``pocketpack/adapters/corpora``: pirate, formal, poet) the adapter that
``pocketpack adapters demo`` trained is switched on the embedded Gemma 3 270M Q4_K_M GGUF through
llama.cpp with its GGUF LoRA — the path a user chats on — and measured on every voice's held-out
lines (never trained on): perplexity per token, each line scored from its BOS. Target: at least
15% lower perplexity than the base on its own voice's lines, and no better than the base on the
other voices' lines. Then a few prompts are continued under the base and under each voice, side
by side (same sampling seed for all). Prints Markdown tables.

Run: .venv/bin/python bench/adapters_quality.py [--dir user_data/loras] [--model models/gemma-3-270m-q4_k_m.gguf]
(``--split dev --no-generations --json FILE`` is what ``bench/adapters_select.py`` chooses the
demo's settings with.)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPTS = ("The kettle on the stove", "Tomorrow the train to the coast", "My neighbour's cat",
           "The weather this morning")
TARGET = 0.15


def perplexity(llm, lines: list[str]) -> float:
    """exp(mean negative log-likelihood) over every token after the BOS of each line."""
    import numpy as np

    total, count = 0.0, 0
    for line in lines:
        toks = llm.tokenize(line.encode("utf-8"), add_bos=True, special=False)
        llm.reset()
        llm.eval(toks)
        scores = np.asarray(llm.scores[: len(toks) - 1], dtype=np.float64)
        peak = scores.max(axis=1, keepdims=True)
        logz = (peak[:, 0] + np.log(np.exp(scores - peak).sum(axis=1)))
        total += float((logz - scores[np.arange(len(toks) - 1), toks[1:]]).sum())
        count += len(toks) - 1
    return math.exp(total / count)


def generate(llm, prompt: str, n: int, seed: int) -> str:
    llm.reset()
    out = llm.create_completion(prompt, max_tokens=n, temperature=0.7, top_p=0.9, repeat_penalty=1.15,
                                seed=seed, stop=["\n"])
    return out["choices"][0]["text"].strip()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="user_data/loras", help="the library the demo voices are in")
    ap.add_argument("--model", default="models/gemma-3-270m-q4_k_m.gguf")
    ap.add_argument("--styles", default="pirate,formal,poet")
    ap.add_argument("--tokens", type=int, default=32, help="tokens per generation")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--split", choices=("heldout", "dev"), default="heldout",
                    help="lines to score: heldout (what is reported) or dev (what settings are chosen on)")
    ap.add_argument("--no-generations", action="store_true", help="perplexity tables only")
    ap.add_argument("--base-from", metavar="FILE", help="take the base model's perplexities from an earlier --json "
                    "of the same model, split and voices instead of computing them again (they do not change)")
    ap.add_argument("--json", metavar="FILE", help="also write the perplexities (per adapter, per voice's lines) "
                    "and token counts to FILE")
    args = ap.parse_args()

    import llama_cpp

    from pocketpack.adapters import AdapterManager
    from pocketpack.adapters.demo import lines

    styles = [s.strip() for s in args.styles.split(",") if s.strip()]
    held = {s: lines(s, args.split) for s in styles}
    started = time.perf_counter()
    llm = llama_cpp.Llama(args.model, n_ctx=256, n_threads=args.threads, logits_all=True, verbose=False)
    mgr = AdapterManager(llm, [args.dir])
    missing = [s for s in styles if mgr.fits(s)]
    if missing:
        for s in missing:
            print(f"{s}: {mgr.fits(s)}", file=sys.stderr)
        print("train the voices first: pocketpack adapters demo (or make adapters)", file=sys.stderr)
        return 2

    ppl: dict[str, dict[str, float]] = {}
    if args.base_from:
        earlier = json.loads(Path(args.base_from).read_text(encoding="utf-8"))
        if (earlier["split"], Path(earlier["model"]).name) != (args.split, Path(args.model).name) or \
                not set(styles) <= set(earlier["perplexity"]["base"]):
            print(f"{args.base_from}: another model, split or set of voices", file=sys.stderr)
            return 2
        ppl["base"] = {s: earlier["perplexity"]["base"][s] for s in styles}
    for adapter in ["base"] + styles:
        if adapter in ppl:
            continue
        mgr.switch(None if adapter == "base" else adapter)
        ppl[adapter] = {s: perplexity(llm, held[s]) for s in styles}

    n_tokens = {s: sum(len(llm.tokenize(x.encode(), add_bos=True)) - 1 for x in held[s]) for s in styles}
    if args.json:
        Path(args.json).write_text(json.dumps({"split": args.split, "dir": args.dir, "model": args.model,
                                               "perplexity": ppl, "tokens": n_tokens}, indent=1), encoding="utf-8")
    title = "Held-out" if args.split == "heldout" else "Dev-split"
    print(f"## {title} perplexity ({args.model}, llama.cpp + GGUF LoRA)\n")
    print("| adapter | " + " | ".join(f"{s} lines ({len(held[s])} lines, {n_tokens[s]} tokens)" for s in styles) + " |")
    print("|---|" + "---|" * len(styles))
    for adapter in ["base"] + styles:
        cells = []
        for s in styles:
            v = ppl[adapter][s]
            if adapter == "base":
                cells.append(f"{v:.1f}")
            else:
                change = v / ppl["base"][s] - 1
                cells.append(f"{'**' if s == adapter else ''}{v:.1f} ({change:+.0%}){'**' if s == adapter else ''}")
        print(f"| {adapter} | " + " | ".join(cells) + " |")

    print("\n| voice | own lines vs base | target ≥ 15% lower | other voices' lines vs base | not better there |")
    print("|---|---|---|---|---|")
    ok_all = True
    for s in styles:
        own = 1 - ppl[s][s] / ppl["base"][s]
        others = {o: ppl[s][o] / ppl["base"][o] - 1 for o in styles if o != s}
        own_ok, others_ok = own >= TARGET, all(v >= 0 for v in others.values())
        ok_all &= own_ok and others_ok
        print(f"| {s} | {own:.0%} lower | {'yes' if own_ok else 'NO'} | "
              + ", ".join(f"{o} {v:+.0%}" for o, v in others.items())
              + f" | {'yes' if others_ok else 'NO'} |")

    if args.no_generations:
        mgr.unload()
        llm.close()
        return 0 if ok_all else 1
    print(f"\n## Generations (temperature 0.7, top-p 0.9, seed {args.seed}, {args.tokens} tokens, same for every column)\n")
    print("| prompt | base | " + " | ".join(styles) + " |")
    print("|---|---|" + "---|" * len(styles))
    rows = {p: [] for p in PROMPTS}
    for adapter in ["base"] + styles:
        mgr.switch(None if adapter == "base" else adapter)
        for p in PROMPTS:
            rows[p].append(generate(llm, p, args.tokens, args.seed).replace("|", "\\|"))
    for p, texts in rows.items():
        print(f"| {p} … | " + " | ".join(texts) + " |")
    print(f"\n{time.perf_counter() - started:.0f} s; base-model loads after start: 0 (one llama.cpp model, "
          f"{mgr.stats['switches']} switches)")
    mgr.unload()
    llm.close()
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
