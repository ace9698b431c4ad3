"""memory: long-term memory across chats, per character, persistent and editable.

Thin TGWUI adapter over ``pocketpack.memory`` (see docs/extensions.md): hooks forward to
``MemoryTurns``, the memory engine (recall and injection through the shared context composer,
storage of each completed exchange), and the tab wires gradio components to
``pocketpack.memory.panel``. Works through the API too (no UI,
no ``character_menu``/``unique_id`` in the state). A failure here is logged and the turn goes on
without memories. Memories of a chat deleted in TGWUI are forgotten (``pocketpack.memory.chats``);
consolidation runs only from the tab's button, on the loaded model.
"""

import atexit
import logging
import threading
from pathlib import Path

from pocketpack import tgwui
from pocketpack.errors import PocketPackError
from pocketpack.hooks import never_break

params = {
    "display_name": "Memory",
    "is_tab": True,
    "enabled": True,
    "scope": "character",          # chat | character | global
    "k": 6,                        # memories recalled per turn
    "max_tokens": 400,             # prompt budget for the memory block
    "min_cosine": 0.3,             # relevance floor for recalled memories
    "exclude_recent_rows": 12,     # rows of the current chat already in the prompt
    "max_message_chars": 8000,     # of each message, what is stored, embedded and searched (0 = all)
    "store_dir": "",               # default: <user_data>/pocketpack/memory
    "store_url": "",               # postgresql://user:password@host:port/db; default: $POCKETPACK_STORE_URL, else store_dir
    "embedding_model": "",         # a local sentence-transformers folder; default: all-MiniLM-L6-v2
    "approx_threshold": 50000,     # memories per character beyond which faiss search is approximate (IVF)
    "preload": "auto",             # load the embedding model at start-up: "auto" (inside TGWUI), true, false
}

log = logging.getLogger("pocketpack.memory")
_lock = threading.Lock()
_turns: dict = {}  # (store folder, store_url) -> MemoryTurns (one per user under --multi-user)


def _store_dir(user: str | None = None) -> Path:
    """The store's folder; under ``--multi-user`` each signed-in user has their own below it."""
    if params.get("store_dir"):
        base = Path(params["store_dir"]).expanduser()
    else:
        base = Path(getattr(tgwui.shared(), "user_data_dir", "user_data")) / "pocketpack" / "memory"
    if user is None:
        return base
    from pocketpack.turnstate import user_folder

    return base / "users" / user_folder(user)


def _store_url() -> str | None:
    """``store_url`` (settings.yaml ``memory-store_url``) when set; else None: then
    ``POCKETPACK_STORE_URL`` when set, else the folder."""
    return str(params.get("store_url") or "").strip() or None


def _settings():
    from pocketpack.memory.settings import MemoryParams

    return MemoryParams.from_params(params).turn_settings()


def turns(user: str | None = None):
    """The MemoryTurns of ``user`` (None: the one store of a single-user host), opened on first
    use with the current params; one per store folder, so users never share one."""
    directory = _store_dir(user)
    url = _store_url()
    with _lock:
        current = _turns.get((directory, url))
        if current is None:
            from pocketpack.memory.chats import ChatFiles
            from pocketpack.memory.settings import MemoryParams
            from pocketpack.memory.store import MemoryStore
            from pocketpack.memory.turns import MemoryTurns, scope_to_user

            memory = MemoryStore(directory, model_path=params.get("embedding_model") or None, store_url=url,
                                 approx_threshold=MemoryParams.from_params(params).approx_threshold)
            if user is not None:  # a PostgreSQL store shared by everyone: this user's own collection names
                scope_to_user(memory, user)
            host = tgwui.shared()
            chat_files = ChatFiles(memory, Path(getattr(host, "user_data_dir", "user_data")) / "logs",
                                   enabled=not tgwui.multi_user())
            current = _turns[(directory, url)] = MemoryTurns(memory, _settings(), chat_files=chat_files,
                                                      count=tgwui.counter(), generate=_generate)
            atexit.register(_flush, memory)
        else:
            current.settings = _settings()
        return current


def _for(turn, state, first: bool = False):
    """The memory engine of this turn's user; None under --multi-user with nobody signed in, or
    when the store cannot be opened (a PostgreSQL server that is down: logged once, said under
    the reply; tried again next turn)."""
    from pocketpack.memory.turns import TURN_KEY, mark_unavailable, owner, unavailable

    if first:  # the turn's first hook: a state dict handed in again carries no earlier turn's mark
        state.pop(TURN_KEY, None)
    if turn.anonymous or unavailable(state):
        return None
    try:
        return turns(owner(turn))
    except PocketPackError as exc:
        if turn.is_chat and _settings().enabled:
            mark_unavailable(state, exc)
        else:
            from pocketpack.memory.turns import report_failure

            report_failure("open", exc)
        return None


def _flush(memory):
    try:
        memory.flush()  # save faiss indexes so the next start need not replay the log
    except Exception:  # noqa: BLE001 - at exit, SQLite already holds everything
        pass


def reset():
    """Close the store (tests, or after changing store_dir)."""
    with _lock:
        for current in _turns.values():
            current.memory.close()
        _turns.clear()


def setup():
    import pocketpack.memory  # noqa: F401  (fails early with a clear ModuleNotFoundError if not installed)
    from pocketpack.memory.settings import MemoryParams

    MemoryParams.warn_unknown_settings(getattr(tgwui.shared(), "settings", None), "memory")

    preload = params.get("preload", "auto")
    if preload == "auto":
        preload = tgwui.in_tgwui()  # TGWUI itself, not a test host
    if not preload or preload == "false":
        return

    def warm():
        try:
            embedder = turns().memory.store.embedder  # load the embedding model before the first turn
            getattr(embedder, "prepare", lambda: None)()  # and convert it for OpenVINO
        except Exception:  # noqa: BLE001 - a warm-up failure is logged; the first turn loads the model again
            log.exception("memory: could not load the embedding model")

    threading.Thread(target=warm, name="memory-warmup", daemon=True).start()


@never_break("memory")
def state_modifier(state):
    turn = tgwui.turn(state)
    engine = _for(turn, state, first=True)
    if engine is None:
        from pocketpack.memory.turns import mark_off

        if turn.anonymous and turn.is_chat and _settings().enabled:
            mark_off(state)
        return state
    return engine.on_state(state, turn)


@never_break("memory")
def chat_input_modifier(text, visible_text, state):
    turn = tgwui.turn(state)
    engine = _for(turn, state)
    return (text, visible_text) if engine is None else engine.on_chat_input(text, visible_text, state, turn)


@never_break("memory")
def output_modifier(string, state, is_chat=False):
    turn = tgwui.turn(state)
    engine = _for(turn, state)
    if engine is None:
        from pocketpack.memory.turns import NO_IDENTITY, off_notice, unavailable

        why = NO_IDENTITY if turn.anonymous else unavailable(state)
        return off_notice(string, why) if why and is_chat and turn.is_chat and _settings().enabled else string
    return engine.on_output(string, state, is_chat=is_chat, turn=turn)


def _generate():
    """The loaded model's generate(prompt) -> str, from TGWUI or Pocket Pack's host."""
    from pocketpack.memory.generate import loaded_model_generate

    host = tgwui.shared()
    generate_reply = None
    if tgwui.in_tgwui():  # inside text-generation-webui
        from modules.text_generation import generate_reply
    return loaded_model_generate(host, generate_reply)


# -- the tab ------------------------------------------------------------------------------
def _current_character():
    component = (getattr(tgwui.shared(), "gradio", None) or {}).get("character_menu")
    return getattr(component, "value", None) or ""


def tab_counts(user: str | None = None) -> str:
    """The tab's counts line for ``user``; where the store cannot be opened (a PostgreSQL server
    that is down), that line says memory is unavailable and why, instead of breaking the tab."""
    from pocketpack.memory import panel

    try:
        return panel.counts_markdown(turns(user).memory)
    except PocketPackError as exc:
        return f"**Memory is unavailable.** {exc.one_line()}"


def _tab_characters(user: str | None = None) -> list[str]:
    from pocketpack.memory import panel

    try:
        return panel.characters(turns(user).memory)
    except PocketPackError:  # the counts line says why
        return []


def ui():
    import gradio as gr

    from pocketpack.memory import panel
    from pocketpack.memory.turns import NO_IDENTITY

    def tab():
        """The memory engine of the page's signed-in user (gradio's request, in every event and
        page load); under --multi-user with nobody signed in, gradio shows why there is none."""
        user = tgwui.request_user()
        if tgwui.multi_user() and not user:
            raise gr.Error(NO_IDENTITY)
        return turns(user if tgwui.multi_user() else None)

    def memory():
        return tab().memory

    def anonymous():
        return tgwui.multi_user() and not tgwui.request_user()

    def page_user():
        return tgwui.request_user() if tgwui.multi_user() else None

    def counts_text():
        return f"**Memory is off.** {NO_IDENTITY[0].upper()}{NO_IDENTITY[1:]}." if anonymous() else \
            tab_counts(page_user())

    def refresh_counts():
        chars = [] if anonymous() else _tab_characters(page_user())
        return counts_text(), gr.Dropdown(choices=chars)

    # callables are evaluated at every page load, so the tab never opens on a stale count
    with gr.Row():
        counts = gr.Markdown(counts_text)
        refresh = gr.Button("Refresh counts")
    with gr.Row():
        # built once for every page: under --multi-user, no one's characters are listed until a page asks
        character = gr.Dropdown(label="Character", choices=[] if tgwui.multi_user() else _tab_characters(),
                                value=lambda: _current_character() or None, allow_custom_value=True)
        scope = gr.Radio(["chat", "character", "global"], value="character", label="Scope")
    query = gr.Textbox(label="Search memories (empty: newest)", lines=1)
    search = gr.Button("Search")
    def newest_rows():
        try:
            return [] if anonymous() else panel.search_rows(memory(), _current_character() or "", "")
        except PocketPackError:  # the store cannot be opened: the counts line says why
            return []

    results = gr.Dataframe(newest_rows,
                           headers=panel.SEARCH_HEADERS, interactive=False, wrap=True,
                           label="Memories (click a row to pin, edit or delete it)")

    gr.Markdown("### Last injection")
    last_button = gr.Button("Show what was injected for the last reply")
    last_info = gr.Markdown("")
    last_table = gr.Dataframe(headers=panel.INJECTION_HEADERS, interactive=False, wrap=True)

    gr.Markdown("### Pin / edit / delete")
    with gr.Row():
        memory_id = gr.Number(label="Memory id", precision=0)
        new_text = gr.Textbox(label="New text (for Save edit)", lines=2)
    with gr.Row():
        pin = gr.Button("Pin")
        unpin = gr.Button("Unpin")
        save = gr.Button("Save edit")
        delete = gr.Button("Delete", variant="stop")
        undo = gr.Button("Undo delete")
        unlink = gr.Button("Unlink changed fact")
        why = gr.Button("Why not recalled?")
    status = gr.Markdown("")
    removed = gr.State(None)

    gr.Markdown("### Manual memories")
    with gr.Row():
        note_character = gr.Textbox(label="Character (empty: every character)")
        trigger = gr.Radio(["always", "keyword"], value="always", label="Injected")
        keywords = gr.Textbox(label="Keywords (comma-separated)")
    note_text = gr.Textbox(label="Note", lines=2)
    add_note = gr.Button("Add note")
    notes = gr.Dataframe(headers=panel.MANUAL_HEADERS, interactive=False, wrap=True)

    gr.Markdown("### Consolidate (summarise old memories into pinned facts with the loaded model)")
    with gr.Row():
        older_than = gr.Number(label="Older than (days)", value=7, minimum=0)
        consolidate_button = gr.Button("Consolidate")
    consolidate_status = gr.Markdown("")

    gr.Markdown("### Deleted chats")
    forget_deleted = gr.Button("Forget memories of deleted chats")
    forget_status = gr.Markdown("")

    gr.Markdown("### Export / import (JSONL)")
    with gr.Row():
        export_button = gr.Button("Export the chosen character (and notes for everyone)")
        export_all = gr.Button("Export everything")
        exported = gr.File(label="Exported file", interactive=False)
    export_status = gr.Markdown("")
    with gr.Row():
        upload = gr.File(label="JSONL to import", file_types=[".jsonl"], type="filepath")
        import_button = gr.Button("Import")

    refresh.click(refresh_counts, [], [counts, character])
    character.focus(lambda: gr.Dropdown(choices=[] if anonymous() else panel.characters(memory())), [], [character])
    def search_and_count(c, q, s):  # the counts change as the chat goes on: refresh them with every search
        return panel.search_rows(memory(), c, q, s), panel.counts_markdown(memory())

    search.click(search_and_count, [character, query, scope], [results, counts])
    query.submit(search_and_count, [character, query, scope], [results, counts])
    def show_last():
        rows, info = panel.injection_rows(tab().last_injection)
        return info, rows

    last_button.click(show_last, [], [last_info, last_table])
    why.click(lambda i: panel.why_not(memory(), tab().last_injection, i), [memory_id], [status])
    for button, action in ((pin, "pin"), (unpin, "unpin"), (save, "edit"), (delete, "delete"), (unlink, "unlink")):
        button.click(lambda i, t, c, q, s, a=action: (*panel.act_and_show(memory(), a, i, t, c, q, s),
                                                       panel.counts_markdown(memory())),
                     [memory_id, new_text, character, query, scope], [status, results, removed, counts])
    undo.click(lambda r, c, q, s: (*panel.undo_delete(memory(), r, c, q, s), panel.counts_markdown(memory())),
               [removed, character, query, scope], [status, results, removed, counts])

    def pick_row(rows, evt: gr.SelectData):
        memory_id_value, text = panel.selected_row(rows, evt.index[0])
        return memory_id_value, text

    results.select(pick_row, [results], [memory_id, new_text])
    add_note.click(lambda c, t, tr, k: (panel.add_manual(memory(), c, t, tr, k), panel.manual_rows(memory())),
                   [note_character, note_text, trigger, keywords], [status, notes])
    def export(c):
        if not (c or "").strip():
            return None, "Choose a character first, or use **Export everything**."
        path, line = panel.export_with_summary(memory(), Path(memory().store.directory) / "exports", c)
        return str(path), line

    def export_everything():
        path, line = panel.export_with_summary(memory(), Path(memory().store.directory) / "exports", None)
        return str(path), line

    export_button.click(export, [character], [exported, export_status])
    export_all.click(export_everything, [], [exported, export_status])
    import_button.click(lambda f: panel.import_from(memory(), f), [upload], [status])

    def consolidate(c, days, progress=gr.Progress()):  # noqa: B008 - gradio's way to ask for a progress bar
        def report(done, total):
            progress((done, total), desc=f"Consolidating {c}", unit="memories")

        return panel.consolidate_character(memory(), c, days, tab().generate, progress=report)

    consolidate_button.click(consolidate, [character, older_than], [consolidate_status])

    def forget_deleted_chats():
        message = panel.forget_deleted_chats(tab().chat_files)
        return message, panel.counts_markdown(memory())

    forget_deleted.click(forget_deleted_chats, [], [forget_status, counts])

    def on_open(c, q, s):
        """A person opens the tab after chatting: today's counts, the newest memories (a search
        they typed is left alone) and what the last reply was given, without a button."""
        if anonymous():
            return counts_text(), gr.update(), "", []
        rows, info = panel.injection_rows(tab().last_injection)
        newest = gr.update() if (q or "").strip() else panel.search_rows(memory(), c or _current_character() or "", "", s)
        return panel.counts_markdown(memory()), newest, info, rows

    opened = tgwui.enclosing_tab()
    if opened is not None:  # in TGWUI and in `pocketpack serve` the tab is the block ui() is built in
        opened.select(on_open, [character, query, scope], [counts, results, last_info, last_table])
