"""Models by name: a local file first, else the shipped catalogue of public config.json values.

``resolve_model("Mistral 7B")`` answers "will it fit?" before anything is downloaded: the
catalogue (``catalogue.yaml`` beside this file) holds the config.json values of the models
people run, each with the Hugging Face repo they come from. A name matches whatever its case,
spaces and punctuation ("Qwen2.5 7B", "qwen2.5-7b-instruct" and "Qwen/Qwen2.5-7B-Instruct" are
one model); a repo id resolves only from the catalogue, never over the network.

A pasted config.json goes through the same readers as one on disk
(:func:`pocketpack.fileformats.parse_json`, :func:`pocketpack.vram.arch.from_hf_config`).
"""

from __future__ import annotations

import copy
import difflib
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from pocketpack.vram.errors import VramError
from pocketpack.vram.inspect import ModelInfo

CATALOGUE_FILE = Path(__file__).with_name("catalogue.yaml")
# words that name a release of the same shape, not another shape ("gemma-3-1b-it", "…-Instruct")
_RELEASE_WORDS = {"instruct", "chat", "it", "hf", "pt", "base", "lora"}
MAX_PASTED_BYTES = 1 << 20  # a config.json is a few KB


@dataclass(frozen=True)
class Entry:
    """One catalogue model: its config.json values and where they come from."""

    name: str
    repo: str
    config: dict
    aliases: tuple[str, ...] = ()
    variants: dict = field(default_factory=dict)   # repo id -> config.json fields it changes
    card: str = ""
    paper: str = ""
    base: str = ""
    verified: tuple[str, ...] = ()

    def config_for(self, repo: str | None = None) -> dict:
        """The config.json of ``repo`` (this entry's repo or one of its variants)."""
        cfg = copy.deepcopy(self.config)
        text = cfg.get("text_config") if isinstance(cfg.get("text_config"), dict) else {}
        for key, value in (self.variants.get(repo) or {}).items():
            # a field of the nested language model changes there (Gemma 3's text_config)
            (text if key in text and key not in cfg else cfg)[key] = copy.deepcopy(value)
        return cfg

    @property
    def repos(self) -> list[str]:
        return [self.repo, *self.variants]


@dataclass(frozen=True)
class Match:
    """A resolved catalogue name: the entry and the repo the name pointed at."""

    entry: Entry
    repo: str


def normalise(text: str) -> str:
    """Lower case, letters and digits only: "Qwen/Qwen2.5-7B" -> "qwenqwen257b"."""
    return re.sub(r"[^0-9a-z]+", "", str(text).casefold())


def _words_key(text: str) -> str:
    """The normalised name without release words ("Mistral 7B Instruct" -> "mistral7b")."""
    words = [w for w in re.split(r"[^0-9a-z.]+", str(text).casefold()) if w]
    return normalise(" ".join(w for w in words if w not in _RELEASE_WORDS))


@lru_cache(maxsize=4)
def _load(path: str) -> tuple[Entry, ...]:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("kind") != "pocketpack-model-catalogue":
        raise VramError(f"{path}: not a Pocket Pack model catalogue")
    entries = []
    for item in data.get("models") or []:
        entries.append(Entry(
            name=str(item["name"]), repo=str(item["repo"]), config=dict(item["config"]),
            aliases=tuple(str(a) for a in item.get("aliases") or ()),
            variants={str(k): dict(v or {}) for k, v in (item.get("variants") or {}).items()},
            card=str(item.get("card") or ""), paper=str(item.get("paper") or ""),
            base=str(item.get("base") or ""), verified=tuple(str(v) for v in item.get("verified") or ())))
    return tuple(entries)


def entries(path: str | Path = CATALOGUE_FILE) -> tuple[Entry, ...]:
    """Every catalogue entry, in the file's order."""
    return _load(str(path))


def names(path: str | Path = CATALOGUE_FILE) -> list[str]:
    """The display names, for a menu."""
    return [e.name for e in entries(path)]


@lru_cache(maxsize=4)
def _index(path: str) -> tuple[dict[str, Match], dict[str, list[Match]]]:
    """Exact keys (names, aliases, repo ids and their last part) and looser keys without
    release words; a looser key shared by two models matches neither."""
    exact: dict[str, Match] = {}
    loose: dict[str, list[Match]] = {}
    for entry in _load(path):
        for repo in entry.repos:
            keys = [repo, repo.split("/")[-1]] + ([entry.name, *entry.aliases] if repo == entry.repo else [])
            for key in keys:
                exact.setdefault(normalise(key), Match(entry, repo))
                bucket = loose.setdefault(_words_key(key), [])
                if all(m.entry is not entry for m in bucket):
                    bucket.append(Match(entry, entry.repo))
    return exact, loose


def lookup(name: str, path: str | Path = CATALOGUE_FILE) -> Match | None:
    """The catalogue entry ``name`` means (display name, alias or repo id), or None."""
    exact, loose = _index(str(path))
    key = normalise(name)
    if not key:
        return None
    if key in exact:
        return exact[key]
    found = loose.get(_words_key(name)) or []
    return found[0] if len(found) == 1 else None


def close_matches(name: str, limit: int = 5, path: str | Path = CATALOGUE_FILE) -> list[str]:
    """Display names that look like ``name`` (difflib over names, aliases and repo ids)."""
    keyed: dict[str, str] = {}
    for entry in entries(path):
        for text in (entry.name, *entry.aliases, *entry.repos, *(r.split("/")[-1] for r in entry.repos)):
            keyed.setdefault(normalise(text), entry.name)
    out: list[str] = []
    for key in difflib.get_close_matches(normalise(name), list(keyed), n=limit * 4, cutoff=0.5):
        if keyed[key] not in out:
            out.append(keyed[key])
    return out[:limit]


def info_from_config(cfg: dict, name: str, where: str, path: Path | None = None) -> ModelInfo:
    """A config-only ModelInfo, built exactly as :func:`inspect_model` builds one for a config.json."""
    from pocketpack.vram.arch import from_hf_config
    from pocketpack.vram.inspect import _native_from_quant

    arch = from_hf_config(cfg, where)
    native, qc = _native_from_quant(cfg, None, where)
    return ModelInfo(path or Path(where), name, "config", arch, arch.tensors(), False, None, native, qc)


def info_for(match: Match) -> ModelInfo:
    """The ModelInfo of a catalogue entry (the repo's config.json values, no weights)."""
    entry = match.entry
    info = info_from_config(entry.config_for(match.repo), entry.name, f"catalogue: {match.repo}",
                            Path(match.repo))
    info.source = "catalogue"
    info.notes.append(f"sizes: the config.json values of {match.repo} in Pocket Pack's catalogue (nothing downloaded)")
    if entry.base:
        info.notes.append(f"{match.repo} is a LoRA adapter or fine-tune: sizes are those of its base "
                          f"{entry.base}")
    return info


def info_from_text(text: str | bytes, where: str = "pasted config.json") -> ModelInfo:
    """A pasted config.json, held to the same JSON bounds as a file on disk."""
    from pocketpack.fileformats import FormatError, parse_json

    raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    if not raw.strip():
        raise VramError(f"{where}: empty: paste the model's config.json")
    if len(raw) > MAX_PASTED_BYTES:
        raise VramError(f"{where}: too large for a config.json (over {MAX_PASTED_BYTES // 1024} KiB)")
    try:
        cfg = parse_json(raw, where)
    except FormatError as exc:
        raise VramError(str(exc)) from None
    if not isinstance(cfg, dict):
        raise VramError(f"{where}: expected a JSON object (a config.json), found {type(cfg).__name__}")
    named = cfg.get("_name_or_path")
    name = named.rstrip("/").split("/")[-1] if isinstance(named, str) and named.strip() else where
    return info_from_config(cfg, name[:80], where)


def info_from_config_file(path: str | Path) -> ModelInfo:
    """A config.json given by path (``--config-json FILE``): :func:`inspect_model`'s reader."""
    from pocketpack.vram.inspect import inspect_model

    p = Path(path).expanduser()
    if not p.is_file():
        raise VramError(f"{p}: no such config.json")
    if p.suffix.lower() != ".json":
        raise VramError(f"{p.name}: --config-json takes a config.json file (or - for stdin)")
    return inspect_model(p)


def resolve_model(name: str, search_dirs=()) -> ModelInfo:
    """A model by name: a local file or folder first (as given, then in each of ``search_dirs``),
    else the catalogue; else one line naming close matches."""
    from pocketpack.vram.inspect import inspect_model

    text = str(name or "").strip()
    if not text:
        raise VramError("no model named: give a model file or folder, or a catalogue name such as 'Mistral 7B'")
    candidates = [Path(text).expanduser()] + [Path(d) / text for d in search_dirs if d]
    for path in candidates:
        try:
            exists = path.exists()
        except (OSError, ValueError):
            exists = False
        if exists:
            return inspect_model(path)
    match = lookup(text)
    if match is not None:
        return info_for(match)
    near = close_matches(text)
    hint = f"close matches: {', '.join(near)}" if near else "`pocketpack vram models` lists the catalogue"
    raise VramError(f"no local file or catalogue entry named {text[:80]!r}; {hint}")
