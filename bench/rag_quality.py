"""Retrieval quality of rag-enhancer on a public-domain document: hit rate at k and within a
token budget, dense vs hybrid (dense + BM25) vs lexical, on the real all-MiniLM-L6-v2.

    .venv/bin/python bench/rag_quality.py [--chunk-size 200] [--overlap 30]

Data: bench/data/kjv_narratives.md (KJV narratives, 390 KB) and kjv_questions.jsonl (44
questions in modern wording with an answer substring). A question is a hit when a returned
passage contains its answer (case-insensitive). "budget" rows count a hit only if the answer
is inside what the shared composer actually puts in the prompt within that many tokens.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pocketpack import compose  # noqa: E402 - after the sys.path line, to run from a checkout
from pocketpack.rag.config import RagSettings  # noqa: E402 - after the sys.path line, to run from a checkout
from pocketpack.rag.ingest import Library  # noqa: E402 - after the sys.path line, to run from a checkout
from pocketpack.rag.inject import fit, make_block  # noqa: E402 - after the sys.path line, to run from a checkout
from pocketpack.rag.retrieve import retrieve  # noqa: E402 - after the sys.path line, to run from a checkout

DATA = Path(__file__).resolve().parent / "data"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunk-size", type=int, default=200)
    parser.add_argument("--overlap", type=int, default=30)
    args = parser.parse_args()

    questions = [json.loads(line) for line in (DATA / "kjv_questions.jsonl").read_text().splitlines() if line.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        settings = RagSettings(chunk_size=args.chunk_size, chunk_overlap=args.overlap, min_cosine=0.0)
        lib = Library(Path(tmp) / "store", settings)
        t0 = time.perf_counter()
        report = lib.ingest([str(DATA / "kjv_narratives.md")])
        ingest_s = time.perf_counter() - t0
        chunks = report.results[0].chunks
        print(f"document: kjv_narratives.md, {chunks} chunks of <= {args.chunk_size} tokens "
              f"(overlap {args.overlap}), ingested in {ingest_s:.1f} s; {len(questions)} questions\n")

        ks = [1, 3, 5, 10]
        budgets = [300, 600, 1200]
        rows = []
        for mode in ("dense", "lexical", "hybrid"):
            hits = {k: 0 for k in ks}
            in_budget = {b: 0 for b in budgets}
            latencies = []
            for q in questions:
                answer = q["answer"].lower()
                s = RagSettings(**{**settings.to_dict(), "mode": mode, "neighbours": 0})
                t = time.perf_counter()
                found = retrieve(lib, q["question"], max(ks), settings=s)
                latencies.append(time.perf_counter() - t)
                first = next((i for i, p in enumerate(found) if answer in p.text.lower()), None)
                for k in ks:
                    hits[k] += first is not None and first < k
                # what the composer injects, neighbours widened (the extension's default)
                s1 = RagSettings(**{**settings.to_dict(), "mode": mode, "neighbours": 1})
                passages = retrieve(lib, q["question"], 5, settings=s1)
                for b in budgets:
                    offered = fit(passages, b, compose.estimate_tokens)
                    text = compose.compose_text("", [make_block(offered, b)], budget=b,
                                                count=compose.estimate_tokens).text
                    in_budget[b] += answer in " ".join(text.split()).lower()
            latencies.sort()
            rows.append((mode, hits, in_budget, latencies[int(0.95 * (len(latencies) - 1))] * 1000))
        n = len(questions)
        header = f"{'mode':<8}" + "".join(f"{'hit@' + str(k):>8}" for k in ks) + \
                 "".join(f"{'in ' + str(b) + ' tok':>12}" for b in budgets) + f"{'p95 ms':>9}"
        print(header)
        print("-" * len(header))
        for mode, hits, in_budget, p95 in rows:
            print(f"{mode:<8}" + "".join(f"{hits[k] / n:>8.2f}" for k in ks) +
                  "".join(f"{in_budget[b] / n:>12.2f}" for b in budgets) + f"{p95:>9.1f}")
        print("\nhit@k: answer in one of the top-k chunks (no neighbour expansion);"
              " 'in N tok': answer inside the documents block the composer injects with a budget of N tokens"
              " (k=5, one neighbour chunk each side when it fits, ~3.5 chars/token estimate).")
        lib.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
