"""What reading a word's row count costs a store: FTS5's vocabulary against the term table.

The memory defaults read how rare the words of a query and of its candidates are after every
chat turn's write (``search.TermStats``). FTS5's ``fts5vocab`` table answers by walking the
term's whole posting list, so a common word costs milliseconds at 100k rows; the store keeps
the same counts in ``term_df`` (migration 11), kept by triggers. This times both reads on an
existing store, for the most common words and for rare ones, ten words a read as a recall asks,
and checks that the two agree on every term.

    .venv/bin/python bench/word_counts.py DIR        # DIR: a store folder, e.g. one that
                                                     # bench/memory_latency.py --dir D --keep made
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import time
from pathlib import Path

READS = 30        # reads of each kind of word
PER_READ = 10     # words a read


def _time_reads(conn: sqlite3.Connection, sql: str, words: list[str]) -> float:
    """Median ms of a read of PER_READ words by ``sql`` (its ``{marks}`` the words' placeholders)."""
    took = []
    for start in range(0, len(words), PER_READ):
        chunk = words[start:start + PER_READ]
        t0 = time.perf_counter()
        conn.execute(sql.format(marks=",".join("?" * len(chunk))), chunk).fetchall()
        took.append((time.perf_counter() - t0) * 1000)
    return statistics.median(took)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store", type=Path, help="a Pocket Pack store folder (holding store.sqlite3)")
    args = parser.parse_args(argv)
    db = args.store / "store.sqlite3"
    if not db.is_file():
        print(f"{args.store}: no store.sqlite3 there", file=sys.stderr)
        return 2
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]
    words = READS * PER_READ
    kinds = {
        "common": [t for (t,) in conn.execute("SELECT term FROM term_df WHERE df > 0 ORDER BY df DESC LIMIT ?", (words,))],
        "rare": [t for (t,) in conn.execute("SELECT term FROM term_df WHERE df BETWEEN 2 AND 50 LIMIT ?", (words,))],
    }
    print(f"word row counts, {rows} rows, median ms per read of {PER_READ} words ({READS} reads each)")
    print(f"{'words':>8} {'fts5 vocabulary':>16} {'term table':>11}")
    for kind, chosen in kinds.items():
        walk = _time_reads(conn, "SELECT term, doc FROM items_fts_vocab WHERE term IN ({marks})", chosen)
        table = _time_reads(conn, "SELECT term, df FROM term_df WHERE term IN ({marks}) AND df > 0", chosen)
        print(f"{kind:>8} {walk:>16.2f} {table:>11.2f}")
    vocabulary = dict(conn.execute("SELECT term, doc FROM items_fts_vocab"))
    table = dict(conn.execute("SELECT term, df FROM term_df WHERE df > 0"))
    print(f"the two agree on all {len(vocabulary)} terms" if vocabulary == table else
          f"DISAGREE on {len(set(vocabulary.items()) ^ set(table.items()))} (term, count) pairs")
    return 0 if vocabulary == table else 1


if __name__ == "__main__":
    sys.exit(main())
