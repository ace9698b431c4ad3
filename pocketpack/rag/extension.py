"""What rag-enhancer does at each TGWUI hook and tab button, without TGWUI: the rag engine.
``extensions/rag-enhancer`` translates hooks and gradio events into calls on one ``RagEngine``
and hands it what it needs from the host: the user data folder and a token counter.

- chat modes: ``chat_input_modifier`` (new messages) and ``state_modifier`` (regenerate and
  continue, where the question is the last user message already in the history) retrieve
  passages and register them with the shared composer;
- notebook/default: ``input_modifier(is_chat=False)`` fills ``<|injection-point|>``;
- ``output_modifier`` (chat only: in notebook mode the output is plain text, and through the
  API it is the completion itself) shows under the visible reply the sources the model saw in
  this turn's prompt, and links ``[n]`` to them — only those: a turn that injected nothing
  (documents off, nothing relevant, a greeting) shows no sources, rather than an earlier
  turn's. ``STATE_KEY`` holds them on the turn's state (the host's API reads it for its
  ``sources`` field).

Under ``--multi-user`` (``TurnState.multi_user``) documents are shared as before, except those
added as ``private``: they go to the signed-in user's own collection (``user/<name>``, its
uploads in its own folder), and chat uploads to ``user/<name>/chat/<id>`` (chat ids are not
unique across people). A turn, the Documents list, a query, Remove and Re-index see only the
shared collections and their own user's; a turn with nobody signed in, only the shared ones.

A failure never costs the user a turn: it is logged under the extension's name, the turn goes
on without documents, and the reply ends with a one-line notice.
"""

from __future__ import annotations

import html
import logging
import threading
from pathlib import Path
from typing import Callable

from pocketpack import safepath
from pocketpack.compose import Counter
from pocketpack.errors import PocketPackError
from pocketpack.hooks import report_failure
from pocketpack.rag import config
from pocketpack.rag.cite import link_citations
from pocketpack.rag.config import RagSettings
from pocketpack.rag.fetch import is_url
from pocketpack.rag.ingest import Library, plural, scope_collections
from pocketpack.rag.inject import INJECTION_POINT, inject_chat, inject_prompt, question_of, strip_markers
from pocketpack.rag.retrieve import Passage, retrieve
from pocketpack.retrieval.backend import store_exists, store_location
from pocketpack.turnstate import TurnState, user_folder

log = logging.getLogger("pocketpack.rag")
NAME = "rag-enhancer"
STATE_KEY = "_pocketpack_rag"
NOTICE_KEY = "_pocketpack_rag_notice"  # a failure's notice, on the turn's own state (never another user's reply)

# params the extension adds to RagSettings' own
EXTENSION_DEFAULTS = {
    "enabled": True,
    "citations": True,          # sources under each reply, [n] in it linked to them
    "upload_scope": "global",   # where the UI adds documents: global | character | chat
    "store_dir": "",            # default: <user_data>/pocketpack/documents
    "store_url": "",            # postgresql://user:password@host:port/db; default: $POCKETPACK_STORE_URL, else store_dir
}

# the Settings labels that messages name (so a message and the checkbox it points at agree)
ALLOW_PRIVATE_LABEL = "Allow local/LAN URLs"
MAX_MB_LABEL = "Max file size (MB)"

# the Settings form's fields, in the order the tab passes them to ``apply_settings``
SETTING_KEYS = ["enabled", "citations", "k", "budget_tokens", "min_score", "neighbours", "mode", "chunk_size",
                "chunk_overlap", "max_file_mb", "url_timeout", "allow_private_urls", "reranker_path",
                "max_unpacked_mb"]

Progress = Callable[[float, str], None]  # (fraction done, what is happening)
PRIVATE = "private"  # the upload scope of a signed-in user's own documents (--multi-user)


def own_prefix(who: TurnState | None) -> str | None:
    """The collection of ``who``'s private documents: under --multi-user with a user only."""
    if who is None or not who.multi_user or not who.user:
        return None
    return f"user/{user_folder(who.user)}"


def visible(collection: str, who: TurnState | None) -> bool:
    """Whether ``who`` may read ``collection``: on a single-user host everything; under
    --multi-user the shared collections and the user's own, never another user's."""
    if who is None or not who.multi_user or not collection.startswith("user/"):
        return True
    own = own_prefix(who)
    return own is not None and (collection == own or collection.startswith(own + "/"))


class RagEngine:
    """One library; what a turn injected is kept on that turn's state (for its citations).

    ``user_data_dir``: the host's user data folder (documents go in
    ``<it>/pocketpack/documents`` unless ``params["store_dir"]`` says otherwise) — a path, or a
    callable asked each time, as a host may change it. ``count``: tokens with the loaded
    model's tokenizer (the script passes ``tgwui.counter()``); None estimates.
    """

    def __init__(self, params: dict, *, user_data_dir: Path | str | Callable[[], Path] = "user_data",
                 count: Counter | None = None):
        self.params = params
        self._user_data_dir = user_data_dir
        self.count = count
        self._library: Library | None = None
        self._library_key: tuple | None = None  # (folder, store_url) the library was opened on
        self._lock = threading.RLock()
        self.last_context: tuple[str | None, str | None] = (None, None)  # (character, chat id) last seen
        self._contexts: dict[str, tuple[str | None, str | None]] = {}   # the same per user (--multi-user)
        self._cache: tuple | None = None  # (turn key, passages, time)
        self.notice: str | None = None

    # -- configuration --------------------------------------------------------------------
    @property
    def settings(self) -> RagSettings:
        return RagSettings.from_dict(self.params)

    def store_dir(self) -> Path:
        configured = str(self.params.get("store_dir") or "").strip()
        if configured:
            return Path(configured).expanduser()
        user_data = self._user_data_dir() if callable(self._user_data_dir) else self._user_data_dir
        return Path(user_data) / "pocketpack" / "documents"

    def store_url(self) -> str | None:
        """``params["store_url"]`` (a ``postgresql://`` store) when set; else None, which
        means ``POCKETPACK_STORE_URL`` when that is set, else the folder."""
        return str(self.params.get("store_url") or "").strip() or None

    def has_store(self) -> bool:
        """Whether there is a store to read (asked of the backend: a PostgreSQL store always
        answers; a folder once it holds one), so that listing documents never creates one."""
        return store_exists(store_location(self.store_dir(), self.store_url()))

    @property
    def library(self) -> Library:
        with self._lock:
            key = (self.store_dir(), self.store_url())
            if self._library is None or self._library_key != key:
                if self._library is not None:
                    self._library.close()
                    self._library = None
                self._library = Library(key[0], self.settings, store_url=key[1])
                self._library_key = key
            self._library.settings = self.settings
            return self._library

    def save_settings(self, values: dict) -> None:
        """Apply settings from the UI and write them beside the library (the CLI reads them).
        Bad values raise ``SettingsError`` (one line for the UI) and change nothing."""
        RagSettings.from_dict({**self.params, **values}, strict=True)
        self.params.update(values)
        config.save(self.store_dir(), self.settings)
        self._cache = None

    def close(self) -> None:
        with self._lock:
            if self._library is not None:
                self._library.close()
                self._library = None

    # -- retrieval ------------------------------------------------------------------------
    def collections_for(self, turn: TurnState) -> list[str]:
        character, chat = turn.character, turn.chat_id
        self.last_context = (character, chat)
        if turn.user:
            self._contexts[turn.user] = (character, chat)
        if not turn.multi_user:
            return scope_collections("all", character, chat)
        own = own_prefix(turn)  # chat ids are no one's own under --multi-user: chats are per user
        names = scope_collections("all", character, None)
        return names + ([own] + ([f"{own}/chat/{chat}"] if chat else []) if own else [])

    def searchable(self, who: TurnState | None) -> list[str] | None:
        """The collections ``who`` may search in the tab or notebook mode (None: all of them)."""
        if who is None or not who.multi_user:
            return None
        return [c for c in self.library.collections() if visible(c, who)]

    def passages(self, question: str, collections: list[str] | None, turn: object = None) -> list[Passage]:
        """Retrieve; within one turn (same state dict, a few seconds) the same question is
        answered from the previous call (state_modifier then chat_input_modifier)."""
        import time

        s = self.settings
        key = (id(turn) if turn is not None else None, question, tuple(collections or ()), repr(s))
        if turn is not None and self._cache and self._cache[0] == key and time.monotonic() - self._cache[2] < 10:
            return self._cache[1]
        found = retrieve(self.library, question, s.k, collections, s)
        self._cache = (key, found, time.monotonic())
        return found

    def _fail(self, hook: str, exc: Exception, state: dict | None = None) -> None:
        if isinstance(exc, PocketPackError):  # a store that cannot be used (server down): its one line, once
            report_failure(NAME, hook, exc, without="documents", logger="pocketpack.rag")
        else:
            log.warning("%s: %s failed: %s", NAME, hook, exc, exc_info=True)
        notice = f"{NAME}: documents were not used for this reply ({type(exc).__name__}: {exc})"
        if state is not None:  # shown under this turn's reply only
            state[NOTICE_KEY] = notice
        else:
            self.notice = notice

    # -- hooks ----------------------------------------------------------------------------
    def _inject(self, question: str, state: dict, turn: TurnState | None) -> None:
        state[STATE_KEY] = []  # until this turn's passages are in the prompt, nothing is citable
        passages = self.passages(question, self.collections_for(turn or TurnState.of(state)), turn=state)
        numbered = inject_chat(state, passages, self.settings.budget_tokens, self.count)
        state[STATE_KEY] = numbered

    def state_modifier(self, state: dict, turn: TurnState | None = None) -> dict:
        """Regenerate/continue: the question is the history's last user message. (For a new
        message chat_input_modifier runs next and replaces this with the new question.)"""
        if not self.params.get("enabled", True):
            state.pop(STATE_KEY, None)
            return state
        if "history" not in state:
            return state
        try:
            rows = (state.get("history") or {}).get("internal") or []
            question = rows[-1][0] if rows and rows[-1] and isinstance(rows[-1][0], str) else ""
            if question.strip() and not state.get("textbox"):
                self._inject(question, state, turn)
        except Exception as exc:  # noqa: BLE001 - never break a turn
            self._fail("state_modifier", exc, state)
        return state

    def chat_input_modifier(self, text: str, visible_text: str, state: dict,
                            turn: TurnState | None = None) -> tuple[str, str]:
        if not self.params.get("enabled", True):
            state.pop(STATE_KEY, None)
        else:
            try:
                self._inject(text, state, turn)
            except Exception as exc:  # noqa: BLE001 - never break a chat: the failure is logged and shown, the turn goes on
                self._fail("chat_input_modifier", exc, state)
        return text, visible_text

    def input_modifier(self, string: str, state: dict, is_chat: bool = False, turn: TurnState | None = None) -> str:
        """Notebook/default: fill ``<|injection-point|>``; the markers never reach the model."""
        if is_chat:
            return string
        state.pop(STATE_KEY, None)
        if INJECTION_POINT not in string or not self.params.get("enabled", True):
            return strip_markers(string)
        try:
            passages = self.passages(question_of(string), self.searchable(turn))
            text, numbered = inject_prompt(string, passages, self.settings.budget_tokens, self.count)
            state[STATE_KEY] = numbered
            return text
        except Exception as exc:  # noqa: BLE001 - never break a chat (as above)
            self._fail("input_modifier", exc, state)
            return strip_markers(string)

    def output_modifier(self, string: str, state: dict, is_chat: bool = False) -> str:
        if not is_chat:
            return string
        try:
            notice = state.pop(NOTICE_KEY, None)
            if notice is None and self.notice:
                notice, self.notice = self.notice, None
            if notice:
                return string + f"\n\n<small>⚠ {notice.replace('<', '&lt;')}</small>"
            if not self.params.get("enabled", True) or not self.params.get("citations", True):
                return string
            # only what this turn put in the prompt; no fallback to an earlier turn's passages
            return link_citations(string, state.get(STATE_KEY) or [])
        except Exception as exc:  # noqa: BLE001 - never break a chat (as above)
            log.warning("%s: output_modifier failed: %s", NAME, exc, exc_info=True)
            return string

    # -- UI actions (plain data in, plain data out) ---------------------------------------
    def upload_collection(self, scope: str | None = None, who: TurnState | None = None) -> tuple[str, str]:
        """The collection UI uploads go to, and a phrase saying which. ``private`` is the
        signed-in user's own (refused with a reason where there is none)."""
        scope = scope or self.params.get("upload_scope", "global")
        own = own_prefix(who)
        # the character and chat of this user's last turn (not another person's) under --multi-user
        character, chat = self._contexts.get(who.user, (None, None)) if own else self.last_context
        if scope == PRIVATE:
            if own is None:
                raise PermissionError("private documents need a signed-in user (--multi-user with --gradio-auth)")
            return own, "your private documents"
        if scope == "chat" and who is not None and who.multi_user:  # another person's chat may have the same id
            if own is None or not chat:
                return "global", "global (no chat of yours has run yet)"
            return f"{own}/chat/{chat}", f"this chat ({chat}), yours only"
        if scope == "character" and character:
            return f"character/{character}", f"character {character}"
        if scope == "chat" and chat:
            return f"chat/{chat}", f"this chat ({chat})"
        if scope in ("character", "chat"):
            return "global", "global (no chat has run yet to tell the current character/chat)"
        return "global", "global"

    def document_rows(self, who: TurnState | None = None) -> list[list]:
        """The Documents list; empty (the store's one line logged once) when the store cannot be
        reached, so the tab still loads and its buttons say why."""
        if not self.has_store():
            return []
        try:
            documents = self.library.documents()
        except PocketPackError as exc:  # a store_url server that is down: the page must still load
            report_failure(NAME, "the Documents list", exc, without="documents", logger="pocketpack.rag")
            return []  # no reply notice: listing is not a turn
        return [[d.id, d.name or d.source, d.chunks, d.collection, d.kind, d.source] for d in documents
                if visible(d.collection, who)]

    def _own_document(self, ref: str, who: TurnState | None):
        """``ref`` (an id or a name) among the documents ``who`` may see, as ``(id, collection)``."""
        if who is None or not who.multi_user:
            return ref, None
        for d in self.library.documents():
            if visible(d.collection, who) and ref in (d.id, d.name, d.source):
                return d.id, d.collection
        raise LookupError(f"no document {ref!r} among yours and the shared ones")

    def try_query(self, question: str, k: int, who: TurnState | None = None) -> list[list]:
        if not self.has_store():
            return []
        found = retrieve(self.library, question, int(k), self.searchable(who), self.settings)
        return [[n, round(p.score, 3), p.name or p.source, p.location, p.text] for n, p in enumerate(found, start=1)]

    # -- the Documents tab's buttons (plain data in: paths and text; out: a message and rows) --
    def add_documents(self, paths: list[str], urls: str | None, scope: str | None,
                      progress: Progress | None = None, who: TurnState | None = None) -> tuple[str, list[list]]:
        """The Add button: uploaded files, then the URLs box. The box takes web addresses only: a
        shared UI must not read this machine's files or folders (a path there is refused; files
        come through the file picker). An upload over the size limit is refused from its size on
        disk, before it is read. One line per item; a bad item never stops the rest."""
        try:
            collection, where = self.upload_collection(scope, who)
        except PermissionError as exc:
            return f"Nothing added: {exc}.", self.document_rows(who)
        lib = self.library
        settings = lib.settings
        outcomes: list[tuple[str, str]] = []  # (status, line)

        def tick(fraction, message):
            if progress is not None:
                progress(fraction, message)

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
            return "Nothing to add: choose files or enter URLs.", self.document_rows(who)
        lines = "\n".join(f"- {line}" for _, line in outcomes)
        return _summary(outcomes, where) + "\n\n" + lines, self.document_rows(who)

    def remove_document(self, doc_id: str | None, who: TurnState | None = None) -> tuple[str, list[list]]:
        if not (doc_id or "").strip():
            return "Enter a document id (first column) or name.", self.document_rows(who)
        try:
            ref, collection = self._own_document(doc_id.strip(), who)
            doc = self.library.remove(ref, collection)
            return f"Removed {doc.name or doc.source} ({plural(doc.chunks, 'chunk')}).", self.document_rows(who)
        except Exception as exc:  # noqa: BLE001 - shown to the user as one line
            return f"Not removed: {exc}", self.document_rows(who)

    def reindex_documents(self, doc_id: str | None, progress: Progress | None = None,
                          who: TurnState | None = None) -> tuple[str, list[list]]:
        try:
            ref = (doc_id or "").strip() or None
            if ref is None and who is not None and who.multi_user:  # all of what this user may see
                reports = [self.library.reindex(None, c, progress=progress) for c in self.searchable(who)]
                results = [r for report in reports for r in report.results]
                summary = f"{plural(len(results), 'document')}"
            else:
                ref, collection = self._own_document(ref, who) if ref else (None, None)
                report = self.library.reindex(ref, collection, progress=progress)
                results, summary = report.results, report.summary()
        except Exception as exc:  # noqa: BLE001 - a UI action never breaks the tab: the error is shown
            return f"Not re-indexed: {exc}", self.document_rows(who)
        lines = "\n".join(f"- {r.line()}" for r in results) or "- no documents"
        return f"Re-indexed ({summary}):\n\n{lines}", self.document_rows(who)

    def ask(self, question: str | None, k, who: TurnState | None = None) -> tuple[str, list[list]]:
        """The "Try a query" button: a line saying what was found, and the passages."""
        if not (question or "").strip():
            return "Type a question.", []
        try:
            rows = self.try_query(question, int(k or 5), who)
        except Exception as exc:  # noqa: BLE001 - as above
            return f"Query failed: {exc}", []
        return (f"{len(rows)} passage(s)." if rows else "No passage found (empty library, or nothing relevant)."), rows

    def apply_settings(self, values: dict) -> str:
        """The "Save settings" button: a line saying whether they were saved."""
        try:
            self.save_settings(values)
        except Exception as exc:  # noqa: BLE001 - as above
            return f"Settings not saved: {exc}"
        return ("Settings saved. Chunk size and overlap apply to documents added or re-indexed from now on"
                " (use Re-index to apply them to existing ones).")


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
