"""rag-enhancer's settings: one model shared by the library, the CLI and the extension.

The extension's ``params`` carry the same names, so a value in TGWUI's settings.yaml
(``rag-enhancer-chunk_size: 300``) reaches here unchanged.

``RagSettings`` is the extension's model on the shared base (``pocketpack.settings``): values
are coerced and checked where they enter (``from_dict(strict=True)``, ``validate``, ``save``),
so a bad chunk size is one clear :class:`SettingsError` line instead of a traceback deep in the
chunker, and it is never written to ``rag-settings.json``. A bad value in a saved file falls
back to its default alone, with a one-line warning (``load``), instead of breaking every later
command or discarding the good values saved beside it. An unknown key in the extension's
params is warned about once.
"""

from __future__ import annotations

import math
from typing import Callable, ClassVar

from pocketpack import settings as _settings
from pocketpack.fsutil import atomic_write
from pocketpack.settings import Bool, ExtensionSettings, Float, Int, Str

MIN_CHUNK_SIZE = 16     # the chunker's floor: smaller chunks carry no usable context
MAX_CHUNK_SIZE = 4096   # far past the embedding model's window; larger is a typo
MODES = ("hybrid", "dense", "lexical")


class SettingsError(_settings.SettingsError):
    """A setting out of range or of the wrong type; the message is one line for the user
    (the UI shows it as is, the CLI prints it and exits with status 2)."""


class RagSettings(ExtensionSettings):
    extension: ClassVar[str] = "rag-enhancer"
    # the extension's own keys in its params (pocketpack.rag.extension.EXTENSION_DEFAULTS); store_url is
    # one of them, not a field, so that a URL's password is never written to rag-settings.json
    also_known: ClassVar[frozenset[str]] = frozenset({"enabled", "citations", "upload_scope", "store_dir",
                                                               "store_url"})

    # ingestion
    chunk_size: Int = 200            # tokens (estimated at ~3.5 characters each)
    chunk_overlap: Int = 30          # tokens of trailing sentences repeated in the next chunk
    max_file_mb: Float = 50.0        # larger files and downloads are refused
    max_unpacked_mb: Float = 200.0   # what a DOCX/EPUB (ZIP) or a PDF's streams may expand to
    max_unpack_ratio: Float = 100.0  # and how many times their packed size a part may expand
    url_timeout: Float = 15.0        # seconds
    allow_private_urls: Bool = False  # fetch from localhost / the LAN (the CLI allows it)
    # retrieval
    k: Int = 5                       # passages returned / injected at most
    mode: Str = "hybrid"             # "hybrid" | "dense" | "lexical"
    candidates: Int = 50             # per retriever, before fusion
    min_score: Float = 0.0           # drop passages below this score (0..1)
    min_cosine: Float = 0.25         # drop dense-only candidates this far from the question
    neighbours: Int = 1              # chunks added on each side of a hit
    reranker_path: Str = ""          # a local sentence-transformers CrossEncoder directory
    # injection
    budget_tokens: Int = 1200        # the documents' share of the prompt (chosen on bench/rag_docs.py's dev set)

    @classmethod
    def error_class(cls) -> type[Exception]:
        return SettingsError

    @classmethod
    def from_dict(cls, values: dict, *, strict: bool = False) -> "RagSettings":
        """Settings from a dict (the extension's params), coercing types so that a string from
        a settings file still works; an unknown key is warned about once.

        ``strict``: a value that cannot be coerced or is out of range raises
        :class:`SettingsError` (for input a person just typed: the UI's Save, the CLI).
        Otherwise such values fall back to their defaults, so settings built on every chat
        turn from TGWUI's params can never break the turn."""
        return cls.from_params(values, strict=strict)

    def settle(self, bad: list[tuple[str, str]]) -> tuple["RagSettings", list[tuple[str, str]]]:
        """Lenient: each bad value goes back to its default; an overlap too large for the chunk
        size is made to fit it instead."""
        out = self
        defaults = type(self)()
        for _ in range(3):
            found = out.problems()
            if not found:
                return out, bad
            bad += found
            for name, _ in found:
                if name == "chunk_overlap" and isinstance(out.chunk_overlap, int) and out.chunk_overlap >= 0:
                    out.chunk_overlap = min(defaults.chunk_overlap, out.chunk_size // 2)  # fit the size
                else:
                    setattr(out, name, getattr(defaults, name))
        return defaults, bad + [(name, f"{name} could not be made valid") for name in type(self).model_fields]

    def problems(self) -> list[tuple[str, str]]:
        """(field, one-line reason) for every value out of range."""
        out: list[tuple[str, str]] = []

        def need(name: str, ok: bool, reason: str) -> None:
            if not ok:
                out.append((name, f"{name} {reason}, not {getattr(self, name)!r}"))

        def number(name: str) -> bool:
            v = getattr(self, name)
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        def integer(name: str) -> bool:
            v = getattr(self, name)
            return isinstance(v, int) and not isinstance(v, bool)

        need("chunk_size", integer("chunk_size") and MIN_CHUNK_SIZE <= self.chunk_size <= MAX_CHUNK_SIZE,
             f"must be a whole number of tokens from {MIN_CHUNK_SIZE} to {MAX_CHUNK_SIZE}")
        if not (integer("chunk_overlap") and self.chunk_overlap >= 0):
            need("chunk_overlap", False, "must be a whole number of tokens, 0 or more")
        elif not out:  # compared with a valid chunk size only: one problem reported once
            need("chunk_overlap", self.chunk_overlap < self.chunk_size,
                 f"must be smaller than chunk_size ({self.chunk_size})")
        need("max_file_mb", number("max_file_mb") and self.max_file_mb > 0, "must be a number of MB above 0")
        need("max_unpacked_mb", number("max_unpacked_mb") and self.max_unpacked_mb > 0,
             "must be a number of MB above 0")
        need("max_unpack_ratio", number("max_unpack_ratio") and self.max_unpack_ratio >= 1,
             "must be a number, 1 or more")
        need("url_timeout", number("url_timeout") and self.url_timeout > 0, "must be a number of seconds above 0")
        need("k", integer("k") and self.k >= 1, "must be a whole number, 1 or more")
        need("mode", self.mode in MODES, "must be one of " + ", ".join(MODES))
        need("candidates", integer("candidates") and self.candidates >= 1, "must be a whole number, 1 or more")
        need("min_score", number("min_score") and self.min_score >= 0, "must be a number, 0 or more")
        need("min_cosine", number("min_cosine") and -1 <= self.min_cosine <= 1, "must be a number from -1 to 1")
        need("neighbours", integer("neighbours") and self.neighbours >= 0, "must be a whole number, 0 or more")
        need("budget_tokens", integer("budget_tokens") and self.budget_tokens >= 0,
             "must be a whole number of tokens, 0 or more")
        return out

    @property
    def max_bytes(self) -> int:
        return int(self.max_file_mb * 1024 * 1024)

    @property
    def archive_limits(self):
        """What a document's archive or compressed streams may expand to (``pocketpack.archive``)."""
        from pocketpack.archive import Limits

        return Limits.of_mb(self.max_unpacked_mb, self.max_unpack_ratio)


SETTINGS_FILE = "rag-settings.json"


def load(directory, warn: Callable[[str], None] | None = None) -> RagSettings:
    """The settings saved beside a library (``rag-settings.json``), else the defaults, so the
    CLI chunks a store the way the UI configured it. A bad value saved once (by hand, or by an
    older version) goes back to its default alone, with one ``warn`` line naming it (default:
    this module's logger): every other saved setting is kept, so a command that saves the
    settings again never writes the defaults over them. A file that cannot be read as JSON
    settings gives the defaults and one warning."""
    import json
    import logging
    from pathlib import Path

    path = Path(directory).expanduser() / SETTINGS_FILE
    say = warn or logging.getLogger(__name__).warning
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return RagSettings()
    except OSError as exc:
        problem = f"cannot read it ({exc.strerror or exc})"
    else:
        try:
            values = json.loads(text)
        except ValueError as exc:
            problem = f"not valid JSON ({exc})"
        else:
            if isinstance(values, dict):
                settings, bad = RagSettings.build(values, strict=False)
                if bad:
                    order = list(RagSettings.model_fields)  # named in the file's usual order
                    bad.sort(key=lambda item: order.index(item[0]) if item[0] in order else len(order))
                    names = list(dict.fromkeys(name for name, _ in bad))
                    reasons = "; ".join(dict.fromkeys(reason for _, reason in bad))
                    say(f"ignoring {', '.join(names)} in {path} ({reasons}); using the default for"
                        f" {'it' if len(names) == 1 else 'them'} and the saved values of the other settings")
                return settings
            problem = "expected a JSON object"
    say(f"ignoring {path}: {problem}; using the default settings")
    return RagSettings()


def save(directory, settings: RagSettings) -> None:
    """Write the settings beside the library; invalid ones raise :class:`SettingsError` and
    nothing is written."""
    import json
    from pathlib import Path

    settings.validate()
    path = Path(directory).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    atomic_write(path / SETTINGS_FILE, json.dumps(settings.to_dict(), indent=1))
