"""``pocketpack store``: the storage backends' own commands.

    pocketpack store copy SRC DST [--batch 1000] [--json]

SRC and DST are each a store folder (SQLite: the memory store, ``user_data/pocketpack/memory``,
or the document library, ``user_data/pocketpack/documents``) or a
``postgresql://user:password@host:port/database`` URL. ``copy`` writes every collection of
SRC into DST (SQLite ⇄ PostgreSQL), embeddings included (nothing is re-embedded); running it
again adds nothing twice; a progress line per batch on stderr; it ends by checking that the
counts match (exit 2 and one line when they do not). ``--json`` prints per collection
``{source, destination}`` counts. Passwords are never printed.
"""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    parser = subparsers.add_parser("store", help="storage backends: copy a store between SQLite and PostgreSQL",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
    sub = parser.add_subparsers(dest="store_command", metavar="ACTION")
    copy = sub.add_parser("copy", help="copy every collection of SRC into DST (folder or postgresql:// URL)")
    copy.add_argument("source", metavar="SRC")
    copy.add_argument("destination", metavar="DST")
    copy.add_argument("--batch", type=int, default=1000, help="items per committed batch (default 1000)")
    copy.add_argument("--json", action="store_true", help="print the verified counts as JSON")
    copy.set_defaults(func=_copy)


def _copy(args) -> int:
    from pocketpack.retrieval.copy import copy_store

    report = copy_store(args.source, args.destination, batch=args.batch)
    if args.json:
        print(json.dumps(report.to_json()))
    return 0
