"""rag-enhancer: ask questions of your own documents, with citations.

A thin adapter: TGWUI hooks and the Documents tab call ``pocketpack.rag.extension.RagEngine``
(all logic lives there; see docs/extensions.md). Documents are stored under
``user_data/pocketpack/documents`` (SQLite + faiss), so they persist across restarts and are
shared with ``pocketpack rag --store ...`` on the CLI.
"""

from pathlib import Path

from pocketpack import tgwui
from pocketpack.hooks import never_break
from pocketpack.rag.config import RagSettings
from pocketpack.rag.extension import ALLOW_PRIVATE_LABEL, EXTENSION_DEFAULTS, MAX_MB_LABEL, SETTING_KEYS, RagEngine

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
        _engine = RagEngine(params, user_data_dir=lambda: Path(tgwui.shared().user_data_dir), count=tgwui.counter())
    return _engine


def setup():
    engine()  # params already carry settings.yaml overrides here; the model loads on first use
    RagSettings.warn_unknown_settings(getattr(tgwui.shared(), "settings", None), "rag-enhancer")


@never_break("rag-enhancer", without="documents", logger="pocketpack.rag")
def state_modifier(state):
    return engine().state_modifier(state, tgwui.turn(state))


@never_break("rag-enhancer", without="documents", logger="pocketpack.rag")
def chat_input_modifier(text, visible_text, state):
    return engine().chat_input_modifier(text, visible_text, state, tgwui.turn(state))


@never_break("rag-enhancer", without="documents", logger="pocketpack.rag")
def input_modifier(string, state, is_chat=False):
    return engine().input_modifier(string, state, is_chat, turn=tgwui.turn(state))


@never_break("rag-enhancer", without="documents", logger="pocketpack.rag")
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
    """gradio's uploads (paths, or file objects in older gradio) as paths."""
    out = []
    for f in files or []:
        out.append(f if isinstance(f, str) else getattr(f, "name", None) or getattr(f, "path", ""))
    return [p for p in out if p]


def _progress(progress):
    """gradio's progress bar as the engine's ``progress(fraction, message)``."""
    return (lambda f, m: progress(f, desc=m)) if progress is not None else None


def add_documents(files, urls, scope, progress=None):
    return engine().add_documents(_paths(files), urls, scope, _progress(progress), who=tgwui.viewer())


def remove_document(doc_id):
    return engine().remove_document(doc_id, who=tgwui.viewer())


def reindex_documents(doc_id, progress=None):
    return engine().reindex_documents(doc_id, _progress(progress), who=tgwui.viewer())


def try_query(question, k):
    return engine().ask(question, k, who=tgwui.viewer())


def save_settings(*values):
    return engine().apply_settings(dict(zip(SETTING_KEYS, values)))


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
            multi = tgwui.multi_user()  # --multi-user: a signed-in user's own documents too
            scope = gr.Radio(["global", "character", "chat"] + (["private"] if multi else []),
                             value=params.get("upload_scope", "global"),
                             label="Add to", info="global: every chat; character: the current character's chats; "
                                                  "chat: this chat only" + ("; private: yours only" if multi else ""))
            add = gr.Button("Add", variant="primary")
        with gr.Column():
            status = gr.Markdown("")
    # a callable: asked at each page load, for that page's user
    docs = gr.Dataframe(headers=_DOC_HEADERS, value=lambda: engine().document_rows(tgwui.viewer()) or None,
                        label="Documents",
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
    refresh.click(lambda: engine().document_rows(tgwui.viewer()), None, [docs])
    ask.click(try_query, [question, k], [hits_status, hits])
    save.click(save_settings, [enabled, citations, s_k, budget, min_score, neighbours, mode, chunk_size,
                               chunk_overlap, max_mb, timeout, allow_private, reranker, max_unpacked], [saved])
