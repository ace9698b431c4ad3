"""rag-enhancer's settings: one dataclass shared by the library, the CLI and the extension.

The extension's ``params`` carry the same names, so a value in TGWUI's settings.yaml
(``rag-enhancer-chunk_size: 300``) reaches here unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass
class RagSettings:
    # ingestion
    chunk_size: int = 200            # tokens (estimated at ~3.5 characters each)
    chunk_overlap: int = 30          # tokens of trailing sentences repeated in the next chunk
    max_file_mb: float = 50.0        # larger files and downloads are refused
    url_timeout: float = 15.0        # seconds
    allow_private_urls: bool = False  # fetch from localhost / the LAN (the CLI allows it)
    # retrieval
    k: int = 5                       # passages returned / injected at most
    mode: str = "hybrid"             # "hybrid" | "dense" | "lexical"
    candidates: int = 50             # per retriever, before fusion
    min_score: float = 0.0           # drop passages below this score (0..1)
    min_cosine: float = 0.25         # drop dense-only candidates this far from the question
    neighbours: int = 1              # chunks added on each side of a hit
    reranker_path: str = ""          # a local sentence-transformers CrossEncoder directory
    # injection
    budget_tokens: int = 900         # the documents' share of the prompt

    @classmethod
    def from_dict(cls, values: dict) -> "RagSettings":
        """Settings from a dict (the extension's params), ignoring unknown keys and
        coercing types so that a string from a settings file still works."""
        out = cls()
        for f in fields(cls):
            if f.name in values and values[f.name] is not None:
                default = getattr(out, f.name)
                value = values[f.name]
                try:
                    if isinstance(default, bool):
                        value = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")
                    elif isinstance(default, int):
                        value = int(float(value))
                    elif isinstance(default, float):
                        value = float(value)
                    else:
                        value = str(value)
                except (TypeError, ValueError):
                    continue
                setattr(out, f.name, value)
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def max_bytes(self) -> int:
        return int(self.max_file_mb * 1024 * 1024)


SETTINGS_FILE = "rag-settings.json"


def load(directory) -> RagSettings:
    """The settings saved beside a library (``rag-settings.json``), else the defaults, so the
    CLI chunks a store the way the UI configured it."""
    import json
    from pathlib import Path

    path = Path(directory).expanduser() / SETTINGS_FILE
    try:
        return RagSettings.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return RagSettings()


def save(directory, settings: RagSettings) -> None:
    import json
    import os
    from pathlib import Path

    path = Path(directory).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / f".{SETTINGS_FILE}.tmp"
    tmp.write_text(json.dumps(settings.to_dict(), indent=1), encoding="utf-8")
    os.replace(tmp, path / SETTINGS_FILE)
