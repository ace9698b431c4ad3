"""Which storage backend holds a store, and the interface the memory and rag layers use.

Two backends implement :class:`StoreBackend` / :class:`CollectionBackend`:

- SQLite (the default): ``pocketpack.retrieval.store.Store`` on a folder (WAL, faiss and
  tantivy caches beside it). Right for one machine and one process family.
- PostgreSQL + pgvector: ``pocketpack.retrieval.pgstore.PgStore`` on a ``postgresql://``
  URL. Right when several TGWUI instances or machines share one store.

A store is chosen by a *location*: a folder, or a ``postgresql://`` (``postgres://``) URL.
``store_location`` resolves it the way every entry point does: an explicit URL (``--store
postgresql://…``, ``store_url`` in settings.yaml) wins, then ``POCKETPACK_STORE_URL``, then the
folder. Credentials never appear in a message or a log line: ``mask_url`` replaces a URL's
password with ``***`` and ``scrub`` removes it from any text (a driver's error).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit, urlunsplit

import numpy as np

ENV_URL = "POCKETPACK_STORE_URL"
URL_SCHEMES = ("postgresql", "postgres")


@runtime_checkable
class CollectionBackend(Protocol):
    """What memory and rag call on a collection (``Store.collection(name)``)."""

    store: "StoreBackend"
    id: int
    name: str
    model: str
    dim: int

    def upsert(self, items: Iterable) -> list[int]: ...
    def add(self, text: str, **fields) -> int: ...
    def update(self, item_id: int, *, text: str | None = None, pinned: bool | None = None,
               importance: float | None = None, meta: dict | None = None, time_: float | None = None) -> bool: ...
    def delete(self, ids: Iterable[int]) -> int: ...
    def delete_keys(self, keys: Iterable[str]) -> int: ...
    def delete_group(self, grp: str) -> int: ...
    def get(self, ids: Iterable[int]) -> list: ...
    def by_key(self, key: str): ...
    def items(self, *, grp: str | None = None, pinned: bool | None = None, limit: int | None = None,
              offset: int = 0, newest_first: bool = False, where_meta: tuple[str, str] | None = None) -> list: ...
    def keys(self, grp: str | None = None) -> dict[str, tuple[int, str]]: ...
    def key_states(self, grp: str | None = None) -> dict[str, tuple[int, str, str | None]]: ...
    def ids_with_texts(self, texts: Iterable[str]) -> set[int]: ...
    def ids_with_fingerprints(self, fingerprints: Iterable[str]) -> dict[str, int]: ...
    def add_fingerprints(self, fingerprints: dict[str, int]) -> None: ...
    def count(self, grp: str | None = None) -> int: ...
    def ids_in_group(self, grp: str) -> np.ndarray: ...
    def vectors(self, ids: list[int]) -> dict[int, np.ndarray]: ...
    def dense(self, query_vector: np.ndarray, k: int, grp: str | None = None) -> list[tuple[int, float]]: ...
    def lexical(self, query: str, k: int, grp: str | None = None) -> list[tuple[int, float]]: ...
    def save_index(self, force: bool = True) -> None: ...


@runtime_checkable
class StoreBackend(Protocol):
    """What memory, rag and search call on a store. ``directory`` is a local folder for side
    files (chat import records, uploads); for PostgreSQL it holds no store data."""

    directory: Path
    lexical_engine: str

    @property
    def embedder(self): ...
    def collection(self, name: str, *, create: bool = True) -> CollectionBackend: ...
    def collection_names(self, prefix: str = "") -> list[str]: ...
    def has_collection(self, name: str) -> bool: ...
    def locate(self, item_id: int) -> CollectionBackend | None: ...
    def drop_collection(self, name: str) -> int: ...
    def prune_vectors(self, *, full: bool = False) -> int: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...
    def stats(self) -> dict: ...

    # Word statistics (``search.TermStats``: how rare a word is, for the memory defaults' junk
    # rule, query coverage and fact links). They count the rows that would share one SQLite
    # store: on SQLite the store's folder, every row of it; on PostgreSQL, where one database
    # holds everything, the collections of the same kind as ``collection`` (its name's leading
    # word: ``memory/…`` and ``memory-global``, or ``rag/…``) among those named ``prefix…``
    # (a user's ``ScopedStore``), so no other user's rows move a user's rankings.
    def word_statistics_version(self, collection: str | None = None, *, prefix: str = "") -> tuple:
        """``(what is counted, writes)``, cheap: ``writes`` grows by at least 1 for each row
        added, removed or re-texted among those counted (a document frequency moves by at most
        1 a write); what is counted changes when the set of rows counted does otherwise."""
        ...
    def row_count(self, collection: str | None = None, *, prefix: str = "") -> int: ...
    def document_frequencies(self, stems: Iterable[str], collection: str | None = None, *,
                             prefix: str = "") -> dict[str, int]:
        """stem (FTS5's porter stem, ``terms.stem_terms``) -> the rows counted that hold it;
        stems in none are left out."""
        ...


def is_store_url(location) -> bool:
    """Whether ``location`` names a PostgreSQL server rather than a folder."""
    return isinstance(location, str) and location.strip().lower().startswith(tuple(s + "://" for s in URL_SCHEMES))


def looks_like_url(location) -> bool:
    """Any ``scheme://`` string: a URL, supported or not (a folder never looks like one)."""
    return isinstance(location, str) and re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", location.strip()) is not None


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def mask_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``; safe to print and log."""
    if not isinstance(url, str):
        return str(url)
    try:
        parts = urlsplit(url.strip())
        netloc = parts.netloc
    except ValueError:
        return re.sub(r"//([^/@:]*):[^/@]*@", r"//\1:***@", url)
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = f"{userinfo}@{host}"
    query = re.sub(r"(?i)(password=)[^&]*", r"\1***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def scrub(text: str, url: str | None) -> str:
    """``text`` with the password of ``url`` (raw and percent-decoded) and the raw URL removed."""
    text = str(text)
    if not url:
        return text
    if url in text:
        text = text.replace(url, mask_url(url))
    secret = _password(url)
    query_secret = re.search(r"(?i)password=([^&]*)", url)
    for value in filter(None, (secret, secret and unquote(secret), query_secret and query_secret.group(1),
                               query_secret and unquote(query_secret.group(1)))):
        if len(value) >= 1:
            text = text.replace(value, "***")
    return text


def store_location(directory: str | os.PathLike | None, store_url: str | None = None) -> str | Path:
    """Where a store lives: ``store_url`` when given (non-empty), else ``POCKETPACK_STORE_URL``
    when set, else ``directory``. ``store_url=""`` means "the folder, whatever the environment
    says" (a CLI user who named a folder)."""
    if store_url:
        return store_url.strip()
    if store_url is None:
        env = os.environ.get(ENV_URL, "").strip()
        if env:
            return env
    return Path(directory).expanduser() if directory is not None else Path(".")


def store_exists(location) -> bool:
    """Whether a store is there to read without making one: a ``postgresql://`` store always
    answers (opening it makes its tables, and a server that is down says so in one line); a
    folder only once it holds ``store.sqlite3`` (a tab listing documents must not create it)."""
    if looks_like_url(location):
        return True
    return (Path(location).expanduser() / "store.sqlite3").is_file()


def open_store(location, *, directory: str | os.PathLike | None = None, **options):
    """A store at ``location`` (a folder or a ``postgresql://`` URL). ``directory`` is the local
    folder for side files when ``location`` is a URL. Options a backend does not take (the
    SQLite caches' tuning, for PostgreSQL) are ignored by it."""
    from pocketpack.retrieval.store import StoreError

    if looks_like_url(location):
        if not is_store_url(location):
            raise StoreError(f"unsupported store URL {mask_url(location)}: a store is a folder or a"
                             " postgresql://user:password@host:port/database URL")
        from pocketpack.retrieval.pgstore import PgStore

        keep = {k: v for k, v in options.items() if k in ("embedder", "model_path")}
        return PgStore(location, directory=directory, **keep)
    from pocketpack.retrieval.store import Store

    return Store(location, **options)


def describe(store) -> str:
    """A store's location for messages: its folder, or its masked URL."""
    url = getattr(store, "url", None)
    return mask_url(url) if url else str(getattr(store, "directory", store))


class ScopedStore:
    """One user's view of a store shared by several (a ``postgresql://`` store under
    ``--multi-user``): every collection name is ``prefix`` + the name the caller uses, so
    collections, lists and ids outside ``prefix`` are never seen (``locate`` of another user's
    id is None). Everything else is the shared store's."""

    def __init__(self, store, prefix: str):
        self._store = store
        self.prefix = prefix

    def __getattr__(self, name):
        return getattr(self._store, name)

    def collection(self, name: str, *, create: bool = True):
        return _ScopedCollection(self._store.collection(self.prefix + name, create=create), name, self)

    def collection_names(self, prefix: str = "") -> list[str]:
        return [n[len(self.prefix):] for n in self._store.collection_names(self.prefix + prefix)]

    def has_collection(self, name: str) -> bool:
        return self._store.has_collection(self.prefix + name)

    def locate(self, item_id: int):
        coll = self._store.locate(item_id)
        if coll is None or not coll.name.startswith(self.prefix):
            return None
        return _ScopedCollection(coll, coll.name[len(self.prefix):], self)

    def drop_collection(self, name: str) -> int:
        return self._store.drop_collection(self.prefix + name)

    # word statistics count only this user's rows (see StoreBackend.word_statistics_version)
    def word_statistics_version(self, collection: str | None = None, *, prefix: str = "") -> tuple:
        return self._store.word_statistics_version(collection, prefix=self.prefix + prefix)

    def row_count(self, collection: str | None = None, *, prefix: str = "") -> int:
        return self._store.row_count(collection, prefix=self.prefix + prefix)

    def document_frequencies(self, stems: Iterable[str], collection: str | None = None, *,
                             prefix: str = "") -> dict[str, int]:
        return self._store.document_frequencies(stems, collection, prefix=self.prefix + prefix)


class _ScopedCollection:
    """A collection of a :class:`ScopedStore`, named as its user calls it; its ``store`` is
    that user's view (so word statistics read through it count only the user's rows)."""

    def __init__(self, coll, name: str, store: ScopedStore):
        self._coll = coll
        self.name = name
        self.store = store

    def __getattr__(self, attr):
        return getattr(self._coll, attr)
