"""rag-enhancer: ask questions of your own documents, with citations.

A thin adapter: TGWUI hooks and the Documents tab call ``pocketpack.rag`` (all logic lives
there). Documents are stored under ``user_data/pocketpack/documents`` (SQLite + faiss), so
they persist across restarts and are shared with ``pocketpack rag --store ...`` on the CLI.
"""

from pocketpack.rag.config import RagSettings
from pocketpack.rag.extension import EXTENSION_DEFAULTS, RagEngine
from pocketpack.rag.ingest import plural

params = {
    "display_name": "Documents",
    "is_tab": True,
    **EXTENSION_DEFAULTS,
    **RagSettings().to_dict(),
}

_engine = None


def engine() -> RagEngine:
    global _engine
    if _engine is None:
        _engine = RagEngine(params)
    return _engine


def setup():
    engine()  # params already carry settings.yaml overrides here; the model loads on first use


def state_modifier(state):
    return engine().state_modifier(state)


def chat_input_modifier(text, visible_text, state):
    return engine().chat_input_modifier(text, visible_text, state)


def input_modifier(string, state, is_chat=False):
    return engine().input_modifier(string, state, is_chat)


def output_modifier(string, state, is_chat=False):
    return engine().output_modifier(string, state, is_chat)


def custom_css():
    from pocketpack.rag.cite import CSS

    return CSS


def custom_js():
    from pocketpack.rag.cite import JS

    return JS


# -- the Documents tab (gradio APIs common to gradio 4.37 and 6) ------------------------------
_DOC_HEADERS = ["id", "name", "chunks", "collection", "kind", "source"]
_HIT_HEADERS = ["n", "score", "source", "location", "text"]


def _paths(files):
    out = []
    for f in files or []:
        out.append(f if isinstance(f, str) else getattr(f, "name", None) or getattr(f, "path", ""))
    return [p for p in out if p]


# the Settings labels that messages name (so a message and the checkbox it points at agree)
ALLOW_PRIVATE_LABEL = "Allow local/LAN URLs"
MAX_MB_LABEL = "Max file size (MB)"


def add_documents(files, urls, scope, progress=None):
    """The Add button: uploaded files, then the URLs box. The box takes web addresses only: a
    shared UI must not read this machine's files or folders (a path there is refused; files
    come through the file picker). An upload over the size limit is refused from its size on
    disk, before it is read. One line per item; a bad item never stops the rest."""
    import html
    from pathlib import Path

    from pocketpack import safepath
    from pocketpack.rag.fetch import is_url

    eng = engine()
    collection, where = eng.upload_collection(scope)
    lib = eng.library
    settings = lib.settings
    outcomes: list[tuple[str, str]] = []  # (status, line)

    def tick(fraction, message):
        if progress is not None:
            progress(fraction, desc=message)

    paths = _paths(files)
    entries = [u.strip() for u in (urls or "").splitlines() if u.strip()]
    url_list = [u for u in entries if is_url(u)]
    total = len(paths) + (1 if url_list else 0)
    for n, path in enumerate(paths):
        p = Path(path)
        try:  # refused from its size before a byte is read; never more than the limit read; no fifo
            data = safepath.read_within(None, p, settings.max_bytes)
        except safepath.TooLargeError as exc:
            what = f"is {exc.size / 1048576:.1f} MB" if exc.size is not None else "grew while it was read"
            outcomes.append(("error", f"skipped {p.name}: the file {what}, over the"
                                      f" {settings.max_file_mb:g} MB limit ('{MAX_MB_LABEL}' in the settings)"))
            continue
        except (OSError, safepath.NotRegularFileError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            outcomes.append(("error", f"skipped {p.name}: cannot read the upload ({reason})"))
            continue
        # gradio keeps the original name as the temp file's name
        result = lib.add_upload(p.name, data, collection,
                                progress=lambda f, m, n=n: tick((n + f) / max(total, 1), m))
        outcomes.append((result.status, result.line()))
    fetched = iter(lib.ingest(url_list, collection,
                              progress=lambda f, m: tick((len(paths) + f) / max(total, 1), m)).results
                   if url_list else [])
    for entry in entries:  # in the order typed: each URL's result, or why the line was skipped
        if not is_url(entry):
            outcomes.append(("error", f"not a URL: {html.escape(entry)} — add files with the file picker"))
        elif (result := next(fetched, None)) is not None:
            outcomes.append((result.status, result.line()))
    outcomes += [(r.status, r.line()) for r in fetched]
    if not outcomes:
        return "Nothing to add: choose files or enter URLs.", eng.document_rows()
    return _summary(outcomes, where) + "\n\n" + "\n".join(f"- {line}" for _, line in outcomes), eng.document_rows()


def _summary(outcomes, where):
    """The first line of the Add report: what actually happened."""
    new = sum(status in ("added", "updated") for status, _ in outcomes)
    unchanged = sum(status == "unchanged" for status, _ in outcomes)
    skipped = sum(status == "error" for status, _ in outcomes)
    tail = f" ({skipped} skipped)" if skipped else ""
    if new:
        return f"Added to {where}{tail}:"
    if unchanged:
        return f"Nothing new: already in {where}{tail}:"
    return f"Nothing added: {'the item was' if skipped == 1 else f'all {skipped} items were'} skipped:"


def remove_document(doc_id):
    eng = engine()
    if not (doc_id or "").strip():
        return "Enter a document id (first column) or name.", eng.document_rows()
    try:
        doc = eng.library.remove(doc_id.strip())
        return f"Removed {doc.name or doc.source} ({plural(doc.chunks, 'chunk')}).", eng.document_rows()
    except Exception as exc:  # noqa: BLE001 - shown to the user as one line
        return f"Not removed: {exc}", eng.document_rows()


def reindex_documents(doc_id, progress=None):
    eng = engine()
    try:
        report = eng.library.reindex((doc_id or "").strip() or None,
                                     progress=(lambda f, m: progress(f, desc=m)) if progress is not None else None)
    except Exception as exc:  # noqa: BLE001 - a UI action never breaks the tab: the error is shown
        return f"Not re-indexed: {exc}", eng.document_rows()
    lines = "\n".join(f"- {r.line()}" for r in report.results) or "- no documents"
    return f"Re-indexed ({report.summary()}):\n\n{lines}", eng.document_rows()


def try_query(question, k):
    eng = engine()
    if not (question or "").strip():
        return "Type a question.", []
    try:
        rows = eng.try_query(question, int(k or 5))
    except Exception as exc:  # noqa: BLE001 - as above
        return f"Query failed: {exc}", []
    return (f"{len(rows)} passage(s)." if rows else "No passage found (empty library, or nothing relevant)."), rows


_SETTING_KEYS = ["enabled", "citations", "k", "budget_tokens", "min_score", "neighbours", "mode", "chunk_size",
                 "chunk_overlap", "max_file_mb", "url_timeout", "allow_private_urls", "reranker_path",
                 "max_unpacked_mb"]


def save_settings(*values):
    eng = engine()
    try:
        eng.save_settings(dict(zip(_SETTING_KEYS, values)))
    except Exception as exc:  # noqa: BLE001 - as above
        return f"Settings not saved: {exc}"
    return ("Settings saved. Chunk size and overlap apply to documents added or re-indexed from now on"
            " (use Re-index to apply them to existing ones).")


def ui():
    import gradio as gr

    gr.Markdown("Add files or web pages; their relevant passages are added to each reply's context, "
                "numbered, and listed under the reply as Sources (click one to read the exact passage; "
                "a citation like [1] in the reply opens it too). In Notebook/Default "
                "mode put `<|injection-point|>` where passages should go (and optionally the question "
                "between `<|begin-user-input|>` and `<|end-user-input|>`).")
    with gr.Row():
        with gr.Column():
            files = gr.File(label="Files (txt, md, html, pdf, docx, epub, csv, code)", file_count="multiple",
                            type="filepath")
            urls = gr.Textbox(label="URLs (http:// or https://), one per line", lines=2)
            scope = gr.Radio(["global", "character", "chat"], value=params.get("upload_scope", "global"),
                             label="Add to", info="global: every chat; character: the current character's chats; "
                                                  "chat: this chat only")
            add = gr.Button("Add", variant="primary")
        with gr.Column():
            status = gr.Markdown("")
    docs = gr.Dataframe(headers=_DOC_HEADERS, value=engine().document_rows() or None, label="Documents",
                        interactive=False, wrap=True)
    with gr.Row():
        doc_id = gr.Textbox(label="Document id or name", scale=3)
        remove = gr.Button("Remove")
        reindex = gr.Button("Re-index (empty id: all)")
        refresh = gr.Button("Refresh list")
    with gr.Accordion("Try a query", open=False):
        with gr.Row():
            question = gr.Textbox(label="Question", scale=4)
            k = gr.Number(value=params.get("k", 5), precision=0, label="k")
            ask = gr.Button("Search")
        hits_status = gr.Markdown("")
        hits = gr.Dataframe(headers=_HIT_HEADERS, label="Passages, best first", interactive=False, wrap=True)
    with gr.Accordion("Settings", open=False):
        with gr.Row():
            enabled = gr.Checkbox(value=params["enabled"], label="Use documents in replies")
            citations = gr.Checkbox(value=params["citations"], label="Show sources under replies")
            allow_private = gr.Checkbox(value=params["allow_private_urls"], label=ALLOW_PRIVATE_LABEL)
        with gr.Row():
            s_k = gr.Number(value=params["k"], precision=0, label="Passages per reply (k)")
            budget = gr.Number(value=params["budget_tokens"], precision=0, label="Token budget")
            min_score = gr.Slider(0, 1, value=params["min_score"], step=0.01, label="Score threshold")
            neighbours = gr.Number(value=params["neighbours"], precision=0, label="Neighbour chunks")
            mode = gr.Radio(["hybrid", "dense", "lexical"], value=params["mode"], label="Search")
        with gr.Row():
            chunk_size = gr.Number(value=params["chunk_size"], precision=0, label="Chunk size (tokens)")
            chunk_overlap = gr.Number(value=params["chunk_overlap"], precision=0, label="Chunk overlap (tokens)")
            max_mb = gr.Number(value=params["max_file_mb"], label=MAX_MB_LABEL)
            timeout = gr.Number(value=params["url_timeout"], label="URL timeout (s)")
            max_unpacked = gr.Number(value=params["max_unpacked_mb"], label="Max unpacked size (MB)",
                                     info="a DOCX/EPUB/PDF whose compressed parts expand past this is refused")
        reranker = gr.Textbox(value=params["reranker_path"], label="Cross-encoder reranker folder (optional, local)")
        save = gr.Button("Save settings")
        saved = gr.Markdown("")

    def _add(files, urls, scope, progress=gr.Progress()):  # noqa: B008 - gradio's way to ask for a progress bar
        return add_documents(files, urls, scope, progress)

    def _reindex(doc, progress=gr.Progress()):  # noqa: B008 - as above
        return reindex_documents(doc, progress)

    add.click(_add, [files, urls, scope], [status, docs])
    remove.click(remove_document, [doc_id], [status, docs])
    reindex.click(_reindex, [doc_id], [status, docs])
    refresh.click(lambda: engine().document_rows(), None, [docs])
    ask.click(try_query, [question, k], [hits_status, hits])
    save.click(save_settings, [enabled, citations, s_k, budget, min_score, neighbours, mode, chunk_size,
                               chunk_overlap, max_mb, timeout, allow_private, reranker, max_unpacked], [saved])
