"""The words of a lexical query, for every engine: the one sanitiser, stop words and stemming.

User text is never query syntax: ``query_terms`` reduces any text to plain words, the runs of
letters and digits that the engines' tokenizers index as one word (so ``read_file_async`` is
``read file async``, as in the indexed text). Quotes, colons, ``+ - ^ * ( ) [ ] { } ~ ! \\ /``,
``AND``/``OR``/``NOT``, NUL bytes and emoji are separators or dropped; a query with no word
left matches nothing. FTS5 gets each word as a quoted string (``fts5_match``).
"""

from __future__ import annotations

import functools
import re
import sqlite3
import threading

_WORD = re.compile(r"[^\W_]+")   # letters and digits: underscores and everything else separate words
MAX_QUERY_TERMS = 32
MAX_QUERY_CHARS = 20_000         # a pasted page is searched by its beginning


@functools.cache
def stopwords() -> frozenset[str]:
    """Words too frequent to search for: they cost time and rank nothing."""
    try:  # bm25s's longer English list (NLTK's)
        from bm25s.stopwords import STOPWORDS_EN_PLUS

        return frozenset(STOPWORDS_EN_PLUS)
    except Exception:  # noqa: BLE001 - bm25s is optional: a short list of our own
        return frozenset("a an and are as at be but by for if in into is it no not of on or such that the their"
                         " then there these they this to was will with i you he she we me my your".split())


def query_terms(text: str, max_terms: int = MAX_QUERY_TERMS) -> list[str]:
    """The distinct words of ``text`` worth searching for, lowercased, stopwords and single
    ASCII characters left out (unless nothing else is left): plain words, never syntax.

    A word is a run of letters and digits, as both engines' tokenizers cut the indexed text
    (tantivy's simple tokenizer, FTS5's unicode61), so ``read_file_async`` gives ``read``,
    ``file``, ``async`` and finds the text that holds it. Reads at most ``MAX_QUERY_CHARS``
    characters and stops at ``max_terms`` words: its cost is bounded whatever the input.
    """
    if not isinstance(text, str):
        return []
    stop = stopwords()
    kept: dict[str, None] = {}
    weak: dict[str, None] = {}
    for match in _WORD.finditer(text, 0, MAX_QUERY_CHARS):
        word = match.group().lower()
        if word in stop or (len(word) < 2 and word.isascii()):
            if len(weak) < max_terms:
                weak[word] = None
            continue
        kept[word] = None
        if len(kept) >= max_terms:
            break
    return list(kept or weak)


def fts5_quote(word: str) -> str:
    """``word`` as an FTS5 string literal."""
    return '"' + word.replace('"', '""') + '"'


def fts5_match(words: list[str]) -> str:
    """An FTS5 expression matching any of ``words``, each a quoted string: never FTS syntax."""
    return " OR ".join(fts5_quote(w) for w in words)


def fts_query(text: str, max_terms: int = MAX_QUERY_TERMS) -> str:
    """An FTS5 OR-query of the words of ``text``, each quoted: user text is never FTS syntax."""
    return fts5_match(query_terms(text, max_terms))


def searchable_text(text: str, context: str | None) -> str:
    """What BM25 sees of an item: its text and the context that helps find it."""
    return text + ("\n" + context if context else "")


class _Stemmer:
    """Words to the terms FTS5 stores for them, by FTS5's own tokenizer (an in-memory table
    with ``items_fts``'s tokenize option), so the vocabulary lookup agrees with the index."""

    def __init__(self):
        self._lock = threading.Lock()
        self._conn = None
        self._cache: dict[str, str] = {}

    def __call__(self, words: list[str]) -> dict[str, str]:
        todo = [w for w in words if w not in self._cache]
        if todo:
            with self._lock:
                if self._conn is None:
                    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
                    conn.execute("CREATE VIRTUAL TABLE tok USING fts5(t, tokenize = 'porter unicode61 remove_diacritics 2')")
                    conn.execute("CREATE VIRTUAL TABLE tok_v USING fts5vocab(tok, 'instance')")
                    self._conn = conn
                conn = self._conn
                conn.execute("BEGIN")
                try:
                    conn.executemany("INSERT INTO tok(rowid, t) VALUES (?, ?)", list(enumerate(todo)))
                    found = {doc: term for term, doc, offset in conn.execute("SELECT term, doc, offset FROM tok_v")
                             if offset == 0}
                    conn.execute("DELETE FROM tok")
                finally:
                    conn.execute("COMMIT")
                if len(self._cache) > 50_000:
                    self._cache.clear()
                for i, w in enumerate(todo):
                    self._cache[w] = found.get(i, w)
        return {w: self._cache[w] for w in words}


stem_terms = _Stemmer()
"""``stem_terms(words)``: word -> the stem FTS5 indexes for it (porter), cached per word."""
