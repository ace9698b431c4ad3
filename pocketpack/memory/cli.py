"""``pocketpack memory``: add, import, recall, export and forget memories from scripts.

Forms (scripts depend on them):
  pocketpack memory --store DIR|postgresql://… add --character C --role user|assistant --text T [--time ISO8601] [--chat ID]
  pocketpack memory --store DIR import FILE.jsonl [--batch 500]
  pocketpack memory --store DIR recall --character C --query Q [--k 10] [--json]
  pocketpack memory --store DIR recall --queries FILE.jsonl --json
  pocketpack memory --store DIR export [--character C] [--out FILE.jsonl]
  pocketpack memory --store DIR forget (--character C [--chat ID] | --id N | --all)
  pocketpack memory --store DIR consolidate --character C [--older-than-days N] [--model PATH] [--batch 8]

``consolidate`` (never automatic) summarises a character's old memories into pinned fact notes
with a GGUF model (default: the embedded Gemma 3 270M); the originals are kept.

``import`` is idempotent: a line already imported (same character, role, text, time, chat
and row) is not stored again, so an import that was interrupted is completed by running it
again. It commits ``--batch`` lines at a time, shows its progress on stderr (a bar on a
terminal, else a line about every 5%) and ends with ``imported N new, M already present``.

``recall --json`` prints a JSON list of ``{id, text, score, time, role, chat}``, best first;
with ``--queries`` (one ``{character, query, k}`` per line) one such list per output line, in
input order, from one process (the model loads once).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from pocketpack.errors import UsageError

DEFAULT_STORE = os.environ.get("POCKETPACK_MEMORY_STORE", "user_data/pocketpack/memory")


def register(subparsers) -> None:
    parser = subparsers.add_parser("memory", help="long-term chat memory: add, import, recall, export, forget",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", default=None,
                        help="memory store directory, or a postgresql://user:password@host:port/db URL"
                             f" (default: $POCKETPACK_STORE_URL, else {DEFAULT_STORE})")
    parser.add_argument("--model", default=None, help="local sentence-transformers model directory "
                                                      "(default: the bundled all-MiniLM-L6-v2)")
    sub = parser.add_subparsers(dest="memory_command", metavar="ACTION")

    add = sub.add_parser("add", help="store one message")
    add.add_argument("--character", required=True)
    add.add_argument("--role", required=True, choices=["user", "assistant"])
    add.add_argument("--text", required=True)
    add.add_argument("--time", default=None, help="ISO 8601 (default: now)")
    add.add_argument("--chat", default=None, help="chat id")
    add.set_defaults(memory_func=_add)

    imp = sub.add_parser("import", help="store every line of a JSONL file (lines already stored are skipped)")
    imp.add_argument("file")
    imp.add_argument("--batch", type=int, default=500, help="lines per committed transaction (default 500)")
    imp.set_defaults(memory_func=_import)

    recall = sub.add_parser("recall", help="the memories most relevant to a query, best first")
    recall.add_argument("--character")
    recall.add_argument("--query")
    recall.add_argument("--queries", help="JSONL file of {character, query, k}: one result list per line")
    recall.add_argument("--k", type=int, default=10)
    recall.add_argument("--scope", choices=["chat", "character", "global"], default="character")
    recall.add_argument("--chat", default=None, help="the chat for --scope chat")
    recall.add_argument("--json", action="store_true")
    recall.set_defaults(memory_func=_recall)

    export = sub.add_parser("export", help="write memories as JSONL (stdout by default)")
    export.add_argument("--character", default=None)
    export.add_argument("--out", default=None)
    export.set_defaults(memory_func=_export)

    forget = sub.add_parser("forget", help="delete memories of a character, a chat, one id, or all")
    forget.add_argument("--character", default=None)
    forget.add_argument("--chat", default=None)
    forget.add_argument("--id", type=int, default=None)
    forget.add_argument("--all", action="store_true")
    forget.set_defaults(memory_func=_forget)

    cons = sub.add_parser("consolidate", help="summarise a character's old memories into facts with a GGUF model")
    cons.add_argument("--character", required=True)
    cons.add_argument("--older-than-days", type=float, default=7.0)
    cons.add_argument("--model", dest="llm", default=None,
                      help="GGUF file to summarise with (default: the embedded Gemma 3 270M in ./models)")
    cons.add_argument("--batch", type=int, default=8, help="memories per model call (default 8)")
    cons.add_argument("--max-tokens", type=int, default=128, help="tokens the model may write per batch")
    cons.set_defaults(memory_func=_consolidate)

    parser.set_defaults(func=run, memory_parser=parser)


def run(args) -> int:
    """The chosen action; its errors (the store's, the embedder's, :class:`UsageError`) are
    PocketPackErrors that ``pocketpack.cli.main`` prints as one line."""
    if not getattr(args, "memory_func", None):
        args.memory_parser.print_help()
        return 2
    return int(args.memory_func(args) or 0)


def _open(args):
    from pocketpack.memory.store import MemoryStore
    from pocketpack.retrieval.backend import looks_like_url

    if args.store is None:  # POCKETPACK_STORE_URL when set, else the default folder
        return MemoryStore(DEFAULT_STORE, model_path=args.model)
    if looks_like_url(args.store):  # the folder keeps only side files (the chat import record)
        return MemoryStore(DEFAULT_STORE, model_path=args.model, store_url=args.store)
    return MemoryStore(args.store, model_path=args.model, store_url="")


def _add(args) -> int:
    memory = _open(args)
    try:
        memory_id = memory.add(args.character, args.role, args.text, time=args.time, chat=args.chat)
    finally:
        memory.close()
    print(memory_id)
    return 0


class _ImportProgress:
    """An import's progress on stderr: a bar on a terminal, else a line about every 5%."""

    def __init__(self, batch: int):
        self.batch, self.bar, self.printed = batch, None, 0

    def __call__(self, result) -> None:
        if sys.stderr.isatty():
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=result.total, unit="line", desc="importing", file=sys.stderr)
            self.bar.update(result.done - self.bar.n)
            return
        step = max(self.batch, result.total // 20)
        if result.done - self.printed >= step or result.done == result.total:
            self.printed = result.done
            print(f"importing: {result.done:,} of {result.total:,} lines ({result.new:,} new)",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _import(args) -> int:
    if args.batch < 1:
        raise UsageError("--batch must be at least 1")
    memory = _open(args)
    progress = _ImportProgress(args.batch)
    try:
        result = memory.import_file(args.file, batch=args.batch, progress=progress)
    finally:
        progress.close()
        memory.close()
    print(f"imported {result.new:,} new, {result.present:,} already present", file=sys.stderr)
    return 0


def _result(mem) -> dict:
    return {"id": mem.id, "text": mem.text, "score": mem.score, "time": mem.iso_time(), "role": mem.role,
            "chat": mem.chat}


def _read_queries(path: str) -> list[dict]:
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"no such file: {path}")
    from pocketpack.jsonl import read_jsonl

    queries = []
    for number, q in read_jsonl(file, error=UsageError, objects=False, not_json="not JSON"):
        if not isinstance(q, dict) or not isinstance(q.get("character"), str) or not isinstance(q.get("query"), str):
            raise UsageError(f"{file.name} line {number}: expected {{\"character\": ..., \"query\": ..., \"k\": ...}}")
        k = q.get("k", 10)
        if not isinstance(k, int) or k < 1:
            raise UsageError(f"{file.name} line {number}: k must be a positive integer")
        queries.append({"character": q["character"], "query": q["query"], "k": k,
                        "scope": q.get("scope", "character"), "chat": q.get("chat")})
    return queries


def _recall(args) -> int:
    if args.queries:
        if args.query or args.character:
            raise UsageError("give either --queries FILE or --character and --query, not both")
        queries = _read_queries(args.queries)
    else:
        if not args.character or not args.query:
            raise UsageError("recall needs --character and --query (or --queries FILE.jsonl)")
        if args.k < 1:
            raise UsageError("--k must be at least 1")
        queries = [{"character": args.character, "query": args.query, "k": args.k, "scope": args.scope,
                    "chat": args.chat}]
    memory = _open(args)
    try:
        for q in queries:
            found = memory.recall(q["character"], q["query"], q["k"], scope=q["scope"], chat=q["chat"])
            if args.json or args.queries:
                print(json.dumps([_result(m) for m in found], ensure_ascii=False), flush=True)
            else:
                for m in found:
                    print(f"{m.score:.3f}  [{m.iso_time()}] {m.role}: {m.text}")
    finally:
        memory.close()
    return 0


def _export(args) -> int:
    memory = _open(args)
    try:
        out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout
        try:
            n = 0
            for record in memory.export(args.character):
                record.pop("score", None)
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                n += 1
        finally:
            if args.out:
                out.close()
    finally:
        memory.close()
    if args.out:
        print(f"exported {n} memories to {args.out}", file=sys.stderr)
    return 0


def _forget(args) -> int:
    chosen = sum(x is not None and x is not False for x in (args.character, args.id, args.all or None))
    if chosen != 1:
        raise UsageError("forget needs exactly one of --character C [--chat ID], --id N, --all")
    if args.chat and not args.character:
        raise UsageError("--chat needs --character")
    memory = _open(args)
    try:
        if args.id is not None:
            memory.delete(args.id)
            n = 1
        else:
            n = memory.forget(args.character, chat=args.chat, everything=args.all)
    finally:
        memory.close()
    print(f"forgot {n} memories", file=sys.stderr)
    return 0


def _load_llm(path: str | None):
    """A llama_cpp.Llama for consolidation; bad paths and load failures become one line."""
    from pocketpack.host.backends.base import ModelLoadError

    try:
        if path is None:
            from pocketpack.host.default_model import ensure_default_model

            model = ensure_default_model(Path("models"))
        else:
            model = Path(path)
            if not model.is_file():
                raise UsageError(f"no such model file: {path}")
        from llama_cpp import Llama
    except ModelLoadError as exc:
        raise UsageError(str(exc)) from None
    except ImportError:
        raise UsageError("llama-cpp-python is not installed (pip install llama-cpp-python)") from None
    try:
        return Llama(model_path=str(model), n_ctx=4096, n_threads=1, verbose=False)
    except (ValueError, RuntimeError) as exc:
        raise UsageError(f"cannot load {model}: {exc}") from None


def _consolidate(args) -> int:
    from pocketpack.memory.consolidate import consolidate, llama_generate

    if args.batch < 1:
        raise UsageError("--batch must be at least 1")
    if args.older_than_days < 0:
        raise UsageError("--older-than-days cannot be negative")
    if args.max_tokens < 1:
        raise UsageError("--max-tokens must be at least 1")
    memory = _open(args)
    bar = None
    try:
        from pocketpack.memory.consolidate import pending

        if not pending(memory, args.character, older_than_days=args.older_than_days):
            print(f"nothing to consolidate for {args.character}", file=sys.stderr)
            return 0
        generate = llama_generate(_load_llm(args.llm), max_tokens=args.max_tokens)

        def progress(done: int, total: int) -> None:
            nonlocal bar
            if bar is None:
                from tqdm import tqdm

                bar = tqdm(total=total, unit="memory", file=sys.stderr, desc="consolidating")
            bar.update(done - bar.n)

        result = consolidate(memory, args.character, generate, older_than_days=args.older_than_days,
                             batch=args.batch, progress=progress)
    finally:
        if bar is not None:
            bar.close()
        memory.close()
    for fact in result.facts:
        print(f"{fact.id}\t{fact.text}")
    print(f"consolidated {result.consolidated} memories into {len(result.facts)} facts "
          f"({result.batches} batches)", file=sys.stderr)
    return 0
