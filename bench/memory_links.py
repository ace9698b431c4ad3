"""Changed-fact links on the long-chat benchmark: how many links the store-time rule makes and
how many are right (precision) and how many of the true (older, newer) pairs it finds (recall).

The true pairs are the generator's: each changed fact's update and each correction, with the
statement it replaces. Choose a rule on ``dev`` only; report it on ``report``:

    .venv/bin/python bench/memory_links.py --split dev|report [--min-cosine 0.4] [--near-rows 2]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from longchat_generate import generate  # noqa: E402 - after the sys.path line, to run from a checkout
from memory_longchat import open_store  # noqa: E402 - after the sys.path line, to run from a checkout

from pocketpack.memory.links import RULE, links_of  # noqa: E402 - after the sys.path line, to run from a checkout


def truth(data: dict) -> set[tuple[str, str]]:
    """(newer turn id, older turn id) of every fact that changes."""
    return {(g, o) for q in data["questions"] if q["type"] in ("changed-fact", "correction")
            for g in q["gold"] for o in q["old"]}


def measure(memory, data: dict, ids: dict[str, int]) -> dict:
    turn_of = {m: t for t, m in ids.items()}
    pairs = truth(data)
    made = set()
    for character in data["characters"]:
        for newer, older in links_of(memory.collection(character)):
            made.add((turn_of.get(newer.id), turn_of.get(older.id)))
    right = made & pairs
    return {"links": len(made), "right": len(right), "true": len(pairs),
            "precision": len(right) / len(made) if made else float("nan"),
            "recall": len(right) / len(pairs) if pairs else float("nan")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=["dev", "report"], default="dev")
    parser.add_argument("--min-cosine", type=float, default=RULE.min_cosine)
    parser.add_argument("--near-rows", type=int, default=RULE.near_rows)
    args = parser.parse_args(argv)
    rule = replace(RULE, min_cosine=args.min_cosine, near_rows=args.near_rows)
    data = generate(args.split)
    memory, ids, _ = open_store(data, ROOT / ".cache" / "longchat" / f"{args.split}-{data['fingerprint']}", rule)
    try:
        m = measure(memory, data, ids)
    finally:
        memory.close()
    print(f"split {args.split}, rule {rule}")
    print(f"links made {m['links']}, right {m['right']} (precision {m['precision']:.2f}); "
          f"true pairs {m['true']}, found {m['right']} (recall {m['recall']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
