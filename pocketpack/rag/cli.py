"""``pocketpack rag``: the document library from the command line.

    pocketpack rag --store DIR|postgresql://… ingest PATH_OR_URL... [--collection NAME] [--force]
    pocketpack rag --store DIR query "QUESTION" [--k 5] [--collection NAME] [--json]
    pocketpack rag --store DIR query --queries FILE.jsonl --json
    pocketpack rag --store DIR list [--collection NAME] [--json]
    pocketpack rag --store DIR remove DOC [--collection NAME]
    pocketpack rag --store DIR reindex [DOC] [--collection NAME]

``query --json`` prints a JSON list of ``{text, source, location, score}``, best first;
with ``--queries`` one such list per input line (``{query, k, collection}``), in input order,
from one process; ``k`` must be a positive integer (a line with a bad one gets ``[]`` and an
error line). Exit status: 0 done, 1 some source/query failed (the rest went on), 2 usage or
settings out of range (then nothing is saved or ingested).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pocketpack.errors import PocketPackError, UsageError

DEFAULT_STORE = "user_data/pocketpack/documents"


def _positive_int(text: str) -> int:
    """argparse type for --k: a whole number, 1 or more (0 would silently return nothing)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {value}")
    return value


def register(subparsers) -> None:
    rag = subparsers.add_parser("rag", help="ask questions of your documents (ingest, query, list, remove)",
                                description="Index documents (txt, md, html, pdf, docx, epub, csv, code, URLs, "
                                            "folders) and retrieve passages from them.")
    rag.add_argument("--store", default=None,
                     help=f"library folder, or a postgresql://user:password@host:port/db URL (then the settings and"
                          f" uploads stay in {DEFAULT_STORE}); default: $POCKETPACK_STORE_URL, else {DEFAULT_STORE}")
    rag.add_argument("--model", default=None, help="local sentence-transformers model folder "
                                                  "(default: the bundled all-MiniLM-L6-v2)")
    rag.set_defaults(func=lambda args: (rag.print_help(), 2)[1])
    sub = rag.add_subparsers(dest="rag_command", metavar="ACTION")

    ingest = sub.add_parser("ingest", help="add or update files, folders (recursively) and URLs")
    ingest.add_argument("sources", nargs="+", metavar="PATH_OR_URL")
    ingest.add_argument("--collection", default="global", help="collection name (default: global)")
    ingest.add_argument("--force", action="store_true", help="re-parse and re-embed even unchanged documents")
    ingest.add_argument("--chunk-size", type=int, default=None, help="tokens per chunk (default: the store's, 200)")
    ingest.add_argument("--chunk-overlap", type=int, default=None, help="tokens shared by neighbouring chunks")
    ingest.add_argument("--max-file-mb", type=float, default=None, help="skip larger files (default: 50)")
    ingest.add_argument("--max-unpacked-mb", type=float, default=None,
                        help="refuse a DOCX/EPUB/PDF whose compressed parts expand past this (default: 200)")
    ingest.add_argument("--timeout", type=float, default=None, help="seconds to wait for a URL (default: 15)")
    ingest.add_argument("--quiet", action="store_true", help="no progress bar")
    ingest.set_defaults(func=cmd_ingest)

    query = sub.add_parser("query", help="retrieve the passages that answer a question")
    query.add_argument("question", nargs="?")
    query.add_argument("--queries", metavar="FILE.jsonl", help="many queries, one {query, k, collection} per line")
    query.add_argument("--k", type=_positive_int, default=5, help="passages to return (default: 5)")
    query.add_argument("--collection", default=None, action="append",
                       help="search this collection (repeatable; default: every collection)")
    query.add_argument("--mode", choices=["hybrid", "dense", "lexical"], default=None)
    query.add_argument("--min-score", type=float, default=None, help="drop passages scoring below this (0..1)")
    query.add_argument("--reranker", default=None, help="local cross-encoder folder to re-rank with")
    query.add_argument("--json", action="store_true", help="print JSON")
    query.set_defaults(func=cmd_query)

    listing = sub.add_parser("list", help="list documents with their chunk counts")
    listing.add_argument("--collection", default=None)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_list)

    remove = sub.add_parser("remove", help="remove a document (by id, path, URL or name) with its chunks")
    remove.add_argument("doc", metavar="DOC")
    remove.add_argument("--collection", default=None)
    remove.set_defaults(func=cmd_remove)

    reindex = sub.add_parser("reindex", help="parse and embed documents again from their sources")
    reindex.add_argument("doc", metavar="DOC", nargs="?")
    reindex.add_argument("--collection", default=None)
    reindex.set_defaults(func=cmd_reindex)


def _err(message: str) -> None:
    print(f"pocketpack rag: {message}", file=sys.stderr)


def _settings(store: Path):
    """The store's saved settings; a bad settings file is one warning line and the defaults."""
    from pocketpack.rag import config

    settings = config.load(store, warn=lambda message: _err(f"warning: {message}"))
    settings.allow_private_urls = True  # the machine's owner runs the CLI
    return settings


def _where(args) -> tuple[Path, str]:
    """The library's local folder and its store URL ("" for the folder's own SQLite store)."""
    from pocketpack.retrieval.backend import looks_like_url, store_location

    if args.store is None:
        location = store_location(DEFAULT_STORE)
    else:
        location = args.store if looks_like_url(args.store) else Path(args.store)
    if isinstance(location, str):
        return Path(DEFAULT_STORE).expanduser(), location
    return Path(location).expanduser(), ""


def _library(args, *, must_exist: bool = True, settings=None):
    from pocketpack.rag.ingest import Library
    from pocketpack.retrieval.store import DB_NAME, check_store

    store, url = _where(args)
    if must_exist and not url and not (store / DB_NAME).is_file():
        check_store(store)  # a store that lost its database says so (one line, exit 2)
        raise RagFailed(f"no document store at {store} (add documents with `ingest` first)")
    return Library(store, settings or _settings(store), model_path=args.model, store_url=url)


class RagFailed(PocketPackError, RuntimeError):
    """A rag command that could not run on its data (a bad store, a missing model, a file it
    cannot read): one line from ``pocketpack.cli.main`` and exit status 1, which rag's commands
    keep for this, as for a source that failed; 2 stays usage and settings out of range."""

    exit_code = 1


def _guard(fn):
    """Known failures (bad store, missing model) leave as :class:`RagFailed` (exit status 1);
    settings out of range as their own SettingsError (exit status 2)."""
    def run(args) -> int:
        from pocketpack.rag.ingest import IngestError
        from pocketpack.rag.retrieve import RerankerError
        from pocketpack.retrieval import StoreError
        from pocketpack.retrieval.embed import EmbeddingError

        try:
            return fn(args)
        except (IngestError, RerankerError, StoreError, EmbeddingError, OSError) as exc:
            one_line = exc.one_line() if isinstance(exc, PocketPackError) else str(exc)
            raise RagFailed(one_line) from exc
    return run


@_guard
def cmd_ingest(args) -> int:
    from pocketpack.rag import config

    store, _ = _where(args)
    s = _settings(store)
    for name, value in (("chunk_size", args.chunk_size), ("chunk_overlap", args.chunk_overlap),
                        ("max_file_mb", args.max_file_mb), ("max_unpacked_mb", args.max_unpacked_mb),
                        ("url_timeout", args.timeout)):
        if value is not None:
            setattr(s, name, value)
    s.validate()  # before anything is saved or created: a bad value is one line, exit 2
    if args.chunk_size is not None or args.chunk_overlap is not None:
        saved = config.load(store, warn=lambda message: None)  # already warned above
        saved.chunk_size, saved.chunk_overlap = s.chunk_size, s.chunk_overlap
        config.save(store, saved)
    lib = _library(args, must_exist=False, settings=s)
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=1000, unit="‰", file=sys.stderr, bar_format="{l_bar}{bar}| {desc}", leave=False,
                   disable=not sys.stderr.isatty())

    def progress(fraction: float, message: str) -> None:
        bar.n = int(fraction * 1000)
        bar.set_description_str(message[-60:], refresh=True)

    with lib:
        report = lib.ingest(args.sources, args.collection, progress=progress if bar else None, force=args.force)
    if bar:
        bar.close()
    for r in report.results:
        print(r.line(), file=sys.stderr if r.status in ("error", "skipped") else sys.stdout)
    print(report.summary())
    return 1 if report.errors else 0


def _settings_for(lib, args):
    s = lib.settings
    if args.mode:
        s.mode = args.mode
    if args.min_score is not None:
        s.min_score = args.min_score
    if args.reranker:
        s.reranker_path = args.reranker
    return s


@_guard
def cmd_query(args) -> int:
    from pocketpack.rag.retrieve import retrieve

    if bool(args.question) == bool(args.queries):
        raise UsageError("give a QUESTION or --queries FILE.jsonl (one of them)")
    with _library(args) as lib:
        settings = _settings_for(lib, args)
        if args.question:
            passages = retrieve(lib, args.question, args.k, args.collection, settings)
            if args.json:
                print(json.dumps([p.to_json() for p in passages], ensure_ascii=False))
            else:
                _print_passages(passages)
            return 0
        status = 0
        try:
            lines = Path(args.queries).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise RagFailed(f"cannot read {args.queries}: {exc.strerror or exc}") from None
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                spec = json.loads(line)
                if not isinstance(spec, dict) or not isinstance(spec.get("query"), str):
                    raise ValueError("expected an object with a \"query\" string")
                k = spec.get("k")
                if k is None:
                    k = args.k
                elif isinstance(k, bool) or not isinstance(k, int) or k < 1:
                    raise ValueError(f"\"k\" must be a positive integer, not {json.dumps(k)}")
                coll = spec.get("collection")
                colls = [coll] if isinstance(coll, str) and coll else (coll if isinstance(coll, list) else args.collection)
                passages = retrieve(lib, spec["query"], k, colls, settings)
                out = [p.to_json() for p in passages]
            except (ValueError, TypeError) as exc:
                _err(f"{args.queries}:{number}: {exc}")
                out, status = [], 1
            if args.json:
                print(json.dumps(out, ensure_ascii=False), flush=True)
            else:
                print(f"# {line.strip()}")
                _print_passages([_P(**o) for o in out])
        return status


class _P:
    def __init__(self, text, source, location, score):
        self.text, self.source, self.location, self.score = text, source, location, score


def _print_passages(passages) -> None:
    if not passages:
        print("(no passage found)")
    for n, p in enumerate(passages, start=1):
        where = f"{p.source} · {p.location}" if p.location else p.source
        text = " ".join(p.text.split())
        print(f"[{n}] {p.score:.3f}  {where}\n    {text[:400]}{'…' if len(text) > 400 else ''}")


@_guard
def cmd_list(args) -> int:
    with _library(args) as lib:
        docs = lib.documents(args.collection)
    if args.json:
        print(json.dumps([d.__dict__ for d in docs], ensure_ascii=False))
        return 0
    if not docs:
        print("(no documents)")
        return 0
    print(f"{'id':<12}  {'chunks':>6}  {'collection':<16}  {'kind':<8}  source")
    for d in docs:
        print(f"{d.id:<12}  {d.chunks:>6}  {d.collection:<16}  {d.kind:<8}  {d.source}")
    return 0


@_guard
def cmd_remove(args) -> int:
    with _library(args) as lib:
        doc = lib.remove(args.doc, args.collection)
    from pocketpack.rag.ingest import plural

    print(f"removed {doc.source} ({plural(doc.chunks, 'chunk')}, id {doc.id}, collection {doc.collection})")
    return 0


@_guard
def cmd_reindex(args) -> int:
    with _library(args) as lib:
        report = lib.reindex(args.doc, args.collection)
    for r in report.results:
        print(r.line(), file=sys.stderr if r.status in ("error", "skipped") else sys.stdout)
    print(report.summary())
    return 1 if report.errors else 0


def main(argv=None) -> int:  # pragma: no cover - `python -m pocketpack rag` is the entry point
    parser = argparse.ArgumentParser(prog="pocketpack")
    register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)
