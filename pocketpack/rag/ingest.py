"""The document library: ingest files, folders, uploads and URLs into the shared store,
incrementally, and list, remove and re-index them.

Layout of a library directory: the retrieval core's store (``store.sqlite3``, ``index/``)
plus ``uploads/<collection folder>/`` (copies of files added through the UI, so they can be
re-indexed; one folder per collection, so the same name in two collections is two files).

Each document lives in collection ``rag/<name>`` ("rag/global", "rag/character/Alice",
"rag/chat/<id>") as chunks keyed ``<doc id>#<ordinal>`` and grouped by the doc id. Chunk 0
also carries the document's record (content hash, chunking signature, chunk count), so the
whole document — record and chunks — is written in one transaction: a document is either
fully the old version or fully the new one. Re-ingesting:

- unchanged bytes and chunking settings: a hash check, nothing else;
- changed: the new chunks replace the old under the same keys (unchanged chunk texts are not
  re-embedded: the core keys embeddings by text hash) and surplus old chunks are deleted;
- a file that fails to parse: an error line, and its previously indexed version stays;
- a folder: files deleted from it since are removed from the collection.

Doc ids hash the collection with the source, so one file in two collections is two
documents.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pocketpack import safepath
from pocketpack.errors import PocketPackError
from pocketpack.fsutil import atomic_write
from pocketpack.rag.chunking import chunk_blocks
from pocketpack.rag.config import RagSettings, SettingsError  # noqa: F401 - SettingsError re-exported
from pocketpack.rag.fetch import FetchError, fetch, is_url
from pocketpack.rag.parsers import SUPPORTED, ParseError, kind_of, parse
from pocketpack.retrieval import NewItem, Store, StoreError
from pocketpack.retrieval.backend import open_store, store_location

COLLECTION_PREFIX = "rag/"
CHUNKER_VERSION = 3
Progress = Callable[[float, str], None]


class IngestError(PocketPackError, RuntimeError):
    """A source that cannot be ingested; one line for the user."""


@dataclass
class DocResult:
    """The outcome for one source: added, updated, unchanged, removed, error (could not be
    read or was refused: exit status 1), or skipped (left out by a rule, such as a hidden file
    in a folder; not an error), the last two with ``message`` saying why."""

    source: str
    status: str
    chunks: int = 0
    doc_id: str = ""
    message: str = ""
    pages: int | None = None
    stored: str = ""  # the source as stored (an upload's copy in uploads/)

    def line(self) -> str:
        if self.status in ("error", "skipped"):
            return f"skipped {self.source}: {self.message}"
        if self.status == "removed":
            return f"removed {self.source}: {self.message}"
        note = f"; {self.message}" if self.message else ""
        if self.status == "unchanged":
            return f"unchanged {self.source} ({plural(self.chunks, 'chunk')}{note})"
        return f"{self.status} {self.source}: {plural(self.chunks, 'chunk')}" + (f" ({self.message})" if note else "")


def plural(n: int, word: str) -> str:
    """"1 chunk", "2 chunks"."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@dataclass
class IngestReport:
    results: list[DocResult] = field(default_factory=list)

    @property
    def errors(self) -> list[DocResult]:
        return [r for r in self.results if r.status == "error"]

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for r in self.results:
            counts[r.status] = counts.get(r.status, 0) + 1
        counts["skipped"] = counts.get("skipped", 0) + counts.pop("error", 0)  # refused or left out: both skipped
        order = ["added", "updated", "unchanged", "removed", "skipped"]
        return ", ".join(f"{counts[s]} {s}" for s in order if counts.get(s)) or "nothing to do"


@dataclass
class DocInfo:
    """A document in the library, as ``list`` shows it."""

    id: str
    name: str
    source: str
    origin: str        # "file" | "url" | "upload"
    kind: str
    title: str
    chunks: int
    collection: str    # without the "rag/" prefix
    added: float
    size: int
    pages: int | None = None


def collection_name(name: str | None) -> str:
    """The store collection for a library collection name ("global" by default)."""
    name = (name or "global").strip().strip("/") or "global"
    return name if name.startswith(COLLECTION_PREFIX) else COLLECTION_PREFIX + name


def scope_collections(scope: str, character: str | None = None, chat: str | None = None) -> list[str]:
    """The collections a chat turn searches: always global, plus its character's and its
    chat's (uploads in the UI go to the collection of the scope chosen there)."""
    names = ["global"]
    if character:
        names.append(f"character/{character}")
    if chat:
        names.append(f"chat/{chat}")
    return names


_SAFE = re.compile(r"[^\w.\- ()+,@=]")


def safe_upload_name(name: str) -> str:
    """A file name that stays inside ``uploads/``: no folders, no leading dots, no odd bytes.
    A name that is only an extension (".md") keeps it ("upload.md"), so it parses as its kind."""
    base = str(name).replace("\\", "/").split("/")[-1]
    base = "".join(ch for ch in base if ch.isprintable())
    base = _SAFE.sub("_", base).strip(" ")
    if base.startswith("."):
        rest = base.lstrip(". ")
        base = f"upload.{rest}" if rest else ""
    base = base.rstrip(" .")
    if len(base) > 150:
        stem, dot, ext = base.rpartition(".")
        base = (stem[:140] + dot + ext[:9]) if dot else base[:150]
    return base if base and base not in (".", "..") else "upload"


def chunker_signature(settings: RagSettings) -> str:
    """What a document's chunks depend on besides its bytes: a change re-chunks it on re-ingest."""
    return f"v{CHUNKER_VERSION}/size{settings.chunk_size}/overlap{settings.chunk_overlap}"


def document_items(doc_id: str, source: str, name: str, origin: str, digest: str, size: int, parsed, chunks,
                   signature: str) -> list[NewItem]:
    """A document's store items: one per chunk, the first also carrying the document's record
    (hash, chunker signature, counts) that re-ingest, ``list`` and re-index read."""
    now = time.time()
    record = {
        "head": "1", "doc_hash": digest, "signature": signature, "chunks": len(chunks), "origin": origin,
        "kind": parsed.kind, "title": parsed.title[:300], "size": size, "pages": parsed.pages, "added": now,
    }
    items = []
    for c in chunks:
        meta = {"doc": doc_id, "source": source, "name": name, "ordinal": c.ordinal, "location": c.location,
                "heading": c.heading, "body_start": c.body_start, "overlap_chars": c.overlap_chars}
        if c.ordinal == 0:
            meta.update(record)
        items.append(NewItem(c.text, key=f"{doc_id}#{c.ordinal}", grp=doc_id, time=now, meta=meta))
    return items


def _doc_id(source_key: str) -> str:
    return hashlib.sha1(source_key.encode("utf-8")).hexdigest()[:12]


def doc_id_for(collection: str | None, origin: str, source: str) -> str:
    """A document's id: distinct per collection, so the same file or upload name in two
    collections is two documents that never share an id."""
    return _doc_id(f"{collection_name(collection)}\n{origin}:{source}")


def upload_folder_name(collection: str | None) -> str:
    """The folder under ``uploads/`` for a collection's uploads: a readable slug plus a hash
    of the full name, so two collections never share a folder even when their slugs match."""
    full = collection_name(collection)
    slug = safe_upload_name(full[len(COLLECTION_PREFIX):].replace("/", "_"))[:60].rstrip(" .") or "collection"
    return f"{slug}-{hashlib.sha1(full.encode('utf-8')).hexdigest()[:8]}"


class _ReportingEmbedder:
    """The shared embedding model, embedding in batches and reporting each one done, so a
    large document's progress moves while it is embedded."""

    def __init__(self, model_path: str | None = None, embedder=None, batch: int = 64):
        self._inner = embedder
        self._model_path = model_path
        self.batch = batch
        self.on_batch: Callable[[int, int], None] | None = None

    @property
    def inner(self):
        if self._inner is None:
            from pocketpack.retrieval.embed import get_embedder

            self._inner = get_embedder(self._model_path)
        return self._inner

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dim(self) -> int:
        return self.inner.dim

    def embed(self, texts):
        import numpy as np

        texts = list(texts)
        if len(texts) <= self.batch:
            out = self.inner.embed(texts)
            if self.on_batch and texts:
                self.on_batch(len(texts), len(texts))
            return out
        parts = []
        for start in range(0, len(texts), self.batch):
            parts.append(self.inner.embed(texts[start:start + self.batch]))
            if self.on_batch:
                self.on_batch(min(start + self.batch, len(texts)), len(texts))
        return np.concatenate(parts)


class Library:
    """Documents in collections, on the shared retrieval store at ``directory``."""

    def __init__(self, directory: str | os.PathLike, settings: RagSettings | None = None, *,
                 embedder=None, model_path: str | None = None, store: Store | None = None,
                 store_url: str | None = None):
        self.directory = Path(directory).expanduser()
        self.settings = settings or RagSettings()
        self.embedder = _ReportingEmbedder(model_path, embedder)
        # ``store_url`` (or POCKETPACK_STORE_URL): a postgresql:// store; ``directory`` keeps uploads
        self.store = store or open_store(store_location(self.directory, store_url), directory=self.directory,
                                         embedder=self.embedder)
        self.uploads = self.directory / "uploads"
        self._stale_vectors = False  # an update replaced chunk texts: embeddings may be orphaned

    def close(self) -> None:
        self.store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- ingestion ------------------------------------------------------------------------
    def ingest(self, sources: Iterable[str], collection: str | None = None, *, progress: Progress | None = None,
               force: bool = False) -> IngestReport:
        """Ingest files, folders (recursively) and URLs; one bad source never stops the batch.
        For a folder, documents of this collection whose file under it has since been deleted
        are removed. Settings out of range raise :class:`SettingsError` before anything is read."""
        self.settings.validate()
        report = IngestReport()
        # (origin, path or URL, error or skip reason, the folder a walk found it in), in the order given
        jobs: list[tuple[str, str, str, Path | None]] = []
        folders: dict[Path, None] = {}
        for src in sources:
            src = str(src).strip()
            if not src:
                continue
            if is_url(src):
                jobs.append(("url", src, "", None))
                continue
            path = Path(src).expanduser()
            if path.is_dir():
                root = safepath.real_root(path)  # a link named as the folder is the user's choice
                found = []
                for entry in self._walk(path):
                    if entry.skipped:
                        jobs.append(("error" if entry.refused else "skipped", str(entry.path), entry.skipped, None))
                    else:
                        found.append(("file", str(entry.path), "", root))
                if found:
                    folders[root] = None
                    jobs += found
                else:  # perhaps an unmounted drive or an unsynced folder: never read as "all deleted"
                    jobs.append(("error", src, self._empty_folder_note(root, collection), None))
            elif path.is_file():
                jobs.append(("file", str(path), "", None))
            elif re.match(r"^[a-z][a-z0-9+.-]*://", src, re.IGNORECASE):
                jobs.append(("error", src, "only http:// and https:// URLs can be fetched", None))
            else:
                jobs.append(("error", src, "no such file or folder", None))
        for n, (origin, target, error, root) in enumerate(jobs):
            self._tick(progress, n, len(jobs), target)
            if origin in ("error", "skipped"):
                report.results.append(DocResult(target, origin, message=error))
            else:
                report.results.append(self._ingest_one(origin, target, collection, force, progress, n, len(jobs),
                                                       root=root))
        for folder in folders:
            report.results += self._prune_folder(folder, collection)
        self._tick(progress, len(jobs), len(jobs), "done")
        self._finish()
        return report

    def add_upload(self, name: str, data: bytes, collection: str | None = None, *, force: bool = False,
                   progress: Progress | None = None) -> DocResult:
        """Ingest an uploaded file; its copy is kept in the collection's folder under
        ``uploads/`` (only once it parsed). The same name uploaded again to the same
        collection replaces the earlier upload; in another collection it is another document."""
        self.settings.validate()
        result = self._add_upload(name, data, collection, force, progress)
        if result.status == "updated" and not force:
            result.message = "replaced the earlier upload of this name in this collection"
        self._finish()
        return result

    def _add_upload(self, name: str, data: bytes, collection: str | None, force: bool,
                    progress: Progress | None) -> DocResult:
        safe = safe_upload_name(name)
        folder = self.uploads / upload_folder_name(collection)
        dest = folder / safe
        try:  # the copy's real path: <uploads>/<collection folder>/<name>, whatever links lie there
            real = safepath.resolve_within(self.uploads, dest)
        except safepath.PathOutsideError:
            real = None
        if real is None or real.parent.parent != safepath.real_root(self.uploads) or real.name != safe:
            return DocResult(name, "error", message="refusing an upload name that points outside the store")
        result = self._ingest_bytes(data, "upload", str(dest.resolve()), safe, collection, force,
                                    lambda f, m: progress(f, m) if progress else None)
        if result.status in ("added", "updated", "unchanged"):
            self._write_copy(dest, data)
        return result

    @staticmethod
    def _write_copy(dest: Path, data: bytes) -> None:
        """Write an upload's copy atomically. Another upload may remove the collection's folder
        once it looks empty, between our mkdir and our write: the folder is then made again and
        the write tried once more."""
        for attempt in range(2):
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(dest, data)
                return
            except FileNotFoundError:
                if attempt:
                    raise

    def _walk(self, folder: Path) -> Iterable[safepath.WalkEntry]:
        """The folder's files of a supported kind, through the one safe walk (never a file
        whose real path is outside the folder); hidden files and folders, generated folders and
        this library's own store come as skipped entries, each with its reason."""
        store_dir = self.directory.resolve()

        def prune(path: Path) -> str | None:
            if path.name in ("__pycache__", "node_modules"):
                return f"a {path.name} folder (generated files)"
            real = path.resolve()
            if real == store_dir or store_dir in real.parents:
                return "this document store's own folder"
            return None

        return safepath.walk(folder, want=lambda p: kind_of(p.name) is not None, prune=prune)

    def _empty_folder_note(self, folder: Path, collection: str | None) -> str:
        """The line for a folder with no supported files: its documents are kept, since an
        unmounted drive or a cloud folder not yet synced looks just like one emptied."""
        kept = [d for d in self.documents(collection_name(collection)[len(COLLECTION_PREFIX):])
                if d.origin == "file" and folder in Path(d.source).parents]
        if not kept:
            return "no supported files in this folder"
        return (f"no supported files in this folder: kept its {plural(len(kept), 'document')};"
                f" remove {'it' if len(kept) == 1 else 'them'} with remove")

    def _prune_folder(self, folder: Path, collection: str | None) -> list[DocResult]:
        """Remove this collection's documents from files under ``folder`` that no longer
        exist (only files: never uploads or URLs, never outside the folder)."""
        full = collection_name(collection)
        if not folder.is_dir() or not self.store.has_collection(full):
            return []
        coll = self.store.collection(full)
        out = []
        for doc in self.documents(full[len(COLLECTION_PREFIX):]):
            src = Path(doc.source)
            if doc.origin != "file" or folder not in src.parents:
                continue
            try:
                if src.is_file():
                    continue
            except OSError:  # unreadable, not proven gone: keep it
                continue
            coll.delete_group(doc.id)
            self._stale_vectors = True
            out.append(DocResult(doc.source, "removed", doc.chunks, doc.id, "deleted from the folder"))
        return out

    def _finish(self) -> None:
        if self._stale_vectors:  # once per batch: the prune scans every item's hash
            self.store.prune_vectors()
            self._stale_vectors = False
        self.store.flush()

    @staticmethod
    def _tick(progress: Progress | None, done: float, total: int, message: str) -> None:
        if progress is not None:
            progress(min(1.0, done / total) if total else 1.0, message)

    def _read_limited(self, path: Path, root: Path | None = None) -> bytes:
        """A file's bytes, refused from its size on disk before reading when over the limit
        (and never more than the limit read, should it grow meanwhile). With ``root`` (the
        folder a walk found it in), a file whose real path is outside ``root`` once opened is
        refused; a fifo or device is refused always (reading one could wait forever)."""
        try:
            return safepath.read_within(root, path, self.settings.max_bytes)
        except safepath.TooLargeError as exc:
            if exc.size is None:
                raise IngestError(f"the file grew past the {self.settings.max_file_mb:g} MB limit (max_file_mb)"
                                  " while it was read") from exc
            raise IngestError(f"the file is {exc.size / 1048576:.1f} MB, over the {self.settings.max_file_mb:g} MB"
                              " limit (max_file_mb)") from exc
        except (safepath.PathOutsideError, safepath.NotRegularFileError) as exc:
            raise IngestError(f"refused: {exc}") from exc

    def _ingest_one(self, origin: str, target: str, collection: str | None, force: bool,
                    progress: Progress | None, n: int, total: int, root: Path | None = None) -> DocResult:
        limit = self.settings.max_bytes

        def sub(fraction: float, message: str) -> None:
            self._tick(progress, n + fraction, total, message)

        try:
            if origin == "url":
                got = fetch(target, timeout=self.settings.url_timeout, max_bytes=limit,
                            allow_private=self.settings.allow_private_urls)
                name = target.rstrip("/").rsplit("/", 1)[-1] or target
                return self._ingest_bytes(got.data, "url", target, name, collection, force, sub, got.content_type)
            path = Path(target)
            real = Path(os.path.realpath(path))
            data = self._read_limited(real, root)
            return self._ingest_bytes(data, "file", str(real), path.name, collection, force, sub)
        except (IngestError, FetchError, ParseError, StoreError) as exc:
            return DocResult(target, "error", message=str(exc))
        except OSError as exc:
            return DocResult(target, "error", message=f"cannot read it ({exc.strerror or exc})")

    def _ingest_bytes(self, data: bytes, origin: str, source: str, name: str, collection: str | None,
                      force: bool, progress: Progress | None, content_type: str | None = None) -> DocResult:
        display = name if origin == "upload" else source
        try:
            if len(data) > self.settings.max_bytes:
                raise IngestError(f"the file is {len(data) / 1048576:.1f} MB, over the"
                                  f" {self.settings.max_file_mb:g} MB limit (max_file_mb)")
            s = self.settings
            digest = hashlib.sha256(data).hexdigest()
            signature = chunker_signature(s)
            doc_id = doc_id_for(collection, origin, source)
            coll = self.store.collection(collection_name(collection))
            head = coll.by_key(f"{doc_id}#0")
            if head is not None and not force:
                m = head.meta
                if m.get("doc_hash") == digest and m.get("signature") == signature:
                    if coll.count(grp=doc_id) != m.get("chunks"):
                        if self._drop_surplus(coll, doc_id, int(m.get("chunks", 0))):  # an interrupted update
                            self._stale_vectors = True  # their embeddings go too
                    return DocResult(display, "unchanged", m.get("chunks", 0), doc_id, pages=m.get("pages"),
                                     stored=source)
            kind = None if origin == "url" else kind_of(name)  # a URL's content type decides
            parsed = parse(data, name, kind=kind, content_type=content_type, limits=s.archive_limits)
            chunks = chunk_blocks(parsed.blocks, s.chunk_size, s.chunk_overlap)
            if not chunks:
                raise ParseError("no text found")
            items = document_items(doc_id, source, name, origin, digest, len(data), parsed, chunks, signature)

            def on_batch(done: int, total: int) -> None:
                if progress:
                    progress(0.1 + 0.9 * done / max(total, 1), f"embedding {name}: {done}/{total} chunks")

            self.embedder.on_batch = on_batch
            try:
                if progress:
                    progress(0.1, f"embedding {name}")
                coll.upsert(items)
            finally:
                self.embedder.on_batch = None
            self._drop_surplus(coll, doc_id, len(chunks))
            if head is not None:  # replaced chunk texts may leave embeddings nothing uses
                self._stale_vectors = True
            return DocResult(display, "added" if head is None else "updated", len(chunks), doc_id,
                             message="; ".join(parsed.notes), pages=parsed.pages, stored=source)
        except (IngestError, ParseError, StoreError) as exc:
            return DocResult(display, "error", message=str(exc))

    @staticmethod
    def _drop_surplus(coll, doc_id: str, n: int) -> int:
        """Delete a document's chunks from ordinal ``n`` on; how many went."""
        stale = [k for k in coll.keys(grp=doc_id) if int(k.rsplit("#", 1)[1]) >= n]
        if stale:
            coll.delete_keys(stale)
        return len(stale)

    # -- the catalogue --------------------------------------------------------------------
    def collections(self) -> list[str]:
        """Library collection names (without the "rag/" prefix)."""
        return [n[len(COLLECTION_PREFIX):] for n in self.store.collection_names(COLLECTION_PREFIX)]

    def documents(self, collection: str | None = None) -> list[DocInfo]:
        names = [collection] if collection else self.collections()
        out: list[DocInfo] = []
        for name in names:
            full = collection_name(name)
            if not self.store.has_collection(full):
                continue
            coll = self.store.collection(full)
            for it in coll.items(where_meta=("head", "1")):
                m = it.meta
                out.append(DocInfo(
                    id=m["doc"], name=m.get("name", ""), source=m.get("source", ""), origin=m.get("origin", "file"),
                    kind=m.get("kind", ""), title=m.get("title", ""), chunks=coll.count(grp=m["doc"]),
                    collection=full[len(COLLECTION_PREFIX):], added=float(m.get("added", it.time)),
                    size=int(m.get("size", 0)), pages=m.get("pages"),
                ))
        return out

    def find(self, ref: str, collection: str | None = None) -> list[DocInfo]:
        """Documents matching ``ref``: an id, a source path or URL, or a file name."""
        ref = ref.strip()
        docs = self.documents(collection)
        for test in (lambda d: d.id == ref, lambda d: d.source == ref,
                     lambda d: d.origin == "file" and d.source == str(Path(ref).expanduser().resolve()),
                     lambda d: d.name == ref):
            found = [d for d in docs if test(d)]
            if found:
                return found
        return []

    def _resolve_one(self, ref: str, collection: str | None) -> DocInfo:
        found = self.find(ref, collection)
        if not found:
            raise IngestError(f"no document matches {ref!r} (see `list` for ids and names)")
        if len(found) > 1:
            ids = ", ".join(f"{d.id} ({d.collection})" for d in found)
            raise IngestError(f"{ref!r} matches {len(found)} documents: {ids}; give the id of the one you mean")
        return found[0]

    def _drop_upload_copy(self, path: str | os.PathLike) -> None:
        """Delete an upload's copy unless it lies outside ``uploads/`` or a document still uses it."""
        uploads = safepath.real_root(self.uploads)
        try:
            p = safepath.resolve_within(uploads, path)
        except safepath.PathOutsideError:
            return
        if p == uploads or not p.is_file():
            return
        if any(d.origin == "upload" and Path(d.source).resolve() == p for d in self.documents()):
            return
        p.unlink(missing_ok=True)
        if p.parent != uploads:
            try:
                p.parent.rmdir()  # the collection's folder, once empty
            except OSError:
                pass

    def remove(self, ref: str, collection: str | None = None) -> DocInfo:
        """Remove one document: its chunks, their vectors and its uploaded copy."""
        doc = self._resolve_one(ref, collection)
        coll = self.store.collection(collection_name(doc.collection))
        coll.delete_group(doc.id)
        self.store.prune_vectors()  # embeddings no other item uses go too
        if doc.origin == "upload":
            self._drop_upload_copy(doc.source)
        self.store.flush()
        return doc

    def reindex(self, ref: str | None = None, collection: str | None = None, *,
                progress: Progress | None = None) -> IngestReport:
        """Parse and embed documents again from their source (after a settings change, or to
        pick up edits); ``ref`` None means every document (of ``collection`` if given)."""
        self.settings.validate()
        docs = [self._resolve_one(ref, collection)] if ref else self.documents(collection)
        report = IngestReport()
        for n, doc in enumerate(docs):
            self._tick(progress, n, len(docs), doc.name)
            if doc.origin in ("file", "upload") and not Path(doc.source).is_file():
                report.results.append(DocResult(doc.source, "error", doc.chunks, doc.id,
                                                "the source file no longer exists; its chunks were kept"))
                continue
            if doc.origin == "upload":
                try:
                    data = self._read_limited(Path(doc.source), self.uploads)
                except IngestError as exc:
                    result = DocResult(doc.name, "error", message=str(exc))
                except OSError as exc:
                    result = DocResult(doc.name, "error", message=f"cannot read it ({exc.strerror or exc})")
                else:
                    result = self._add_upload(doc.name, data, doc.collection, True, None)
            else:
                origin = "url" if doc.origin == "url" else "file"
                # a file's source is its real path when it was added: re-read only that file, not
                # whatever a link put there since
                result = self._ingest_one(origin, doc.source, doc.collection, True, None, 0, 1,
                                          root=Path(doc.source).parent if origin == "file" else None)
            report.results.append(result)
        self._tick(progress, len(docs), len(docs), "done")
        self._finish()
        return report


def supported_extensions() -> list[str]:
    return list(SUPPORTED)
