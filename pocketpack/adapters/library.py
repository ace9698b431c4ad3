"""The adapter library: what LoRA adapters are on disk, read from their headers only.

A PEFT adapter is a folder with ``adapter_config.json`` and ``adapter_model.safetensors``;
a llama.cpp LoRA is one ``.gguf`` file whose ``general.type`` is ``adapter``. Rank, alpha,
targets and size come from the JSON config, the safetensors header (8-byte little-endian
length + JSON) and the GGUF header, so listing a folder of fifty adapters reads a few KB of
each. Pickle files (``adapter_model.bin``, ``.pt``) are refused unless the caller opts in,
since loading one runs code from the file.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pocketpack import fileformats
from pocketpack.errors import PocketPackError
from pocketpack.safepath import PathOutsideError, resolve_within

log = logging.getLogger("pocketpack.adapters")

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
SAFETENSORS_NAME = "adapter_model.safetensors"
CONFIG_NAME = "adapter_config.json"
METADATA_NAME = "training_metadata.json"


class AdapterError(PocketPackError, ValueError):
    """Bad adapter input; ``str(error)`` is one line naming the file and the problem."""


class AdapterNotFound(AdapterError):
    """No adapter of that name in the library folders (binding one ahead of training is fine)."""


@dataclass
class AdapterInfo:
    """One adapter as the library sees it. ``tensors`` maps a tensor name to its shape
    (PEFT: torch order, e.g. lora_A ``[r, in]``; GGUF: ggml order, e.g. lora_a ``[in, r]``)."""

    name: str
    path: Path
    format: str                      # "peft" | "gguf" | "pickle"
    rank: int | None = None          # the config's r (GGUF: the largest rank found)
    ranks: list[int] = field(default_factory=list)
    alpha: float | None = None
    target_modules: list[str] = field(default_factory=list)
    base_model: str = ""
    architecture: str = ""           # model_type / general.architecture when known
    size_bytes: int = 0
    n_params: int = 0
    n_layers: int = 0                # distinct layer indices the adapter touches
    use_rslora: bool = False
    use_dora: bool = False
    rank_pattern: dict = field(default_factory=dict)
    alpha_pattern: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    tensors: dict = field(default_factory=dict)
    problem: str | None = None       # set by scan() for entries that cannot be used

    @property
    def status(self) -> str:
        """"ok", or "invalid" when the adapter cannot be used (``problem`` says why)."""
        return "invalid" if self.problem else "ok"

    def to_json(self, tensors: bool = False) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        d["status"] = self.status
        if not tensors:
            d.pop("tensors")
        return d

    @property
    def scale(self) -> float | None:
        """LoRA's alpha / r (alpha / sqrt(r) with rsLoRA)."""
        if not self.rank or self.alpha is None:
            return None
        return self.alpha / (math.sqrt(self.rank) if self.use_rslora else self.rank)


# --------------------------------------------------------------------------- safetensors

def read_safetensors_header(path: Path) -> tuple[dict, dict]:
    """``(tensors, metadata)`` of a safetensors file, checked against the file's size.

    ``tensors`` maps names to ``{"dtype", "shape", "data_offsets"}``. Raises AdapterError
    for anything that would make loading fail: short file, bad JSON, offsets past the end.
    """
    try:
        return fileformats.read_safetensors_header(path)
    except fileformats.FormatError as exc:
        raise AdapterError(str(exc)) from None


# --------------------------------------------------------------------------- PEFT

_LAYER_RE = re.compile(r"\.(?:layers|h|blocks|block|layer)\.(\d+)\.")
_PEFT_KEY_RE = re.compile(r"^(?:base_model\.model\.)?(.+?)\.(lora_A|lora_B|lora_embedding_A|lora_embedding_B|"
                          r"lora_magnitude_vector)(?:\.weight)?$")


def peft_module_of(key: str) -> tuple[str, str] | None:
    """``("model.layers.0.self_attn.q_proj", "lora_A")`` for a saved PEFT tensor name."""
    m = _PEFT_KEY_RE.match(key)
    return (m.group(1), m.group(2)) if m else None


def _read_json(path: Path) -> dict:
    try:
        return fileformats.read_json_object(path)
    except fileformats.FormatError as exc:
        raise AdapterError(str(exc)) from None


MAX_RANK = 1 << 16
MAX_ALPHA = 1e6


def _field(reader, data: dict, key: str, where, **bounds):
    """A checked field of adapter_config.json (see :mod:`pocketpack.fileformats`), as an AdapterError."""
    try:
        return reader(data, key, where, **bounds)
    except fileformats.FormatError as exc:
        raise AdapterError(str(exc)) from None


def _pattern(cfg: dict, key: str, where, reader, **bounds) -> dict:
    """``rank_pattern`` / ``alpha_pattern``: module name -> a checked number."""
    pattern = _field(fileformats.dict_field, cfg, key, where)
    return {k: _field(reader, pattern, k, f"{where}: {key}", **bounds) for k in pattern}


def _inspect_peft(folder: Path, allow_pickle: bool) -> AdapterInfo:
    where = folder / CONFIG_NAME
    cfg = _read_json(where)
    peft_type = cfg.get("peft_type") or "LORA"
    if not isinstance(peft_type, str):
        raise AdapterError(f"{where}: peft_type must be a string")
    if peft_type.upper() != "LORA":
        raise AdapterError(f"{folder}: a {peft_type.upper()[:40]} adapter, not a LoRA (only LoRA adapters can be switched)")
    info = AdapterInfo(name=folder.name, path=folder, format="peft")
    info.rank = _field(fileformats.int_field, cfg, "r", where, default=8, hi=MAX_RANK)
    info.alpha = _field(fileformats.float_field, cfg, "lora_alpha", where, default=float(info.rank), hi=MAX_ALPHA)
    info.target_modules = sorted(_field(fileformats.str_list_field, cfg, "target_modules", where))
    base = cfg.get("base_model_name_or_path") or ""
    if not isinstance(base, str):
        raise AdapterError(f"{where}: base_model_name_or_path must be a string")
    info.base_model = base
    info.use_rslora = bool(cfg.get("use_rslora"))
    info.use_dora = bool(cfg.get("use_dora"))
    info.rank_pattern = _pattern(cfg, "rank_pattern", where, fileformats.int_field, hi=MAX_RANK)
    info.alpha_pattern = _pattern(cfg, "alpha_pattern", where, fileformats.float_field, hi=MAX_ALPHA)
    weights = folder / SAFETENSORS_NAME
    if weights.is_file():
        tensors, meta = read_safetensors_header(weights)
        info.size_bytes = weights.stat().st_size
        info.tensors = {k: list(v["shape"]) for k, v in tensors.items()}
        info.n_params = sum(math.prod(s) for s in info.tensors.values())
        if meta:
            info.training.update({k: v for k, v in meta.items() if k != "format"})
    else:
        pickles = [p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES and p.stem.startswith("adapter_model")]
        if not pickles:
            raise AdapterError(f"{folder}: missing {SAFETENSORS_NAME}")
        if not allow_pickle:
            raise AdapterError(f"{folder}: weights are a pickle file ({pickles[0].name}), which can run code when "
                               "loaded; refused (convert it to safetensors, or opt in with allow_pickle)")
        log.warning("%s: loading pickle weights %s because allow_pickle is on", folder, pickles[0].name)
        info.format = "pickle"
        info.size_bytes = pickles[0].stat().st_size
    ranks = set()
    layers = set()
    for key, shape in info.tensors.items():
        mod = peft_module_of(key)
        if mod and mod[1] in ("lora_A", "lora_embedding_A") and shape:
            ranks.add(int(shape[0]))
        m = _LAYER_RE.search(key)
        if m:
            layers.add(int(m.group(1)))
    info.ranks = sorted(ranks) or [info.rank]
    info.n_layers = len(layers)
    meta_file = folder / METADATA_NAME
    if meta_file.is_file():
        try:
            info.training.update(_read_json(meta_file))
        except AdapterError as exc:
            log.warning("%s", exc)
    info.architecture = str(info.training.get("model_type") or info.training.get("architecture") or "")
    return info


# --------------------------------------------------------------------------- GGUF

def read_gguf(path: Path) -> tuple[dict, dict]:
    """``(metadata, tensors)`` of a GGUF file; tensors map names to ggml-order shapes.

    Long arrays (a model's vocabulary) come back as ``{"__array_len__": n}``, so a model
    file dropped into the library is refused in a fraction of a second.
    """
    try:
        header = fileformats.read_gguf_header(path)
    except fileformats.FormatError as exc:
        raise AdapterError(f"{path}: not a readable GGUF file ({exc.problem})") from None
    return header.metadata, {t.name: list(t.shape) for t in header.tensors}


_GGUF_LORA_RE = re.compile(r"^(.+)\.weight\.lora_(a|b)$")


def _inspect_gguf(path: Path) -> AdapterInfo:
    meta, tensors = read_gguf(path)
    gtype = meta.get("general.type")
    if gtype != "adapter":
        kind = fileformats.clip(gtype, 40) if isinstance(gtype, str) and gtype else "model"
        raise AdapterError(f"{path}: a GGUF {kind}, not a LoRA adapter "
                           f"(general.type is {fileformats.clip(repr(gtype), 40)})")
    atype = meta.get("adapter.type")
    if atype not in (None, "lora"):
        raise AdapterError(f"{path}: a GGUF adapter of type {fileformats.clip(repr(atype), 40)}, not a LoRA")
    info = AdapterInfo(name=path.stem, path=path, format="gguf", tensors=tensors)
    info.architecture = str(meta.get("general.architecture") or "")
    alpha = meta.get("adapter.lora.alpha")
    if alpha is not None and not (isinstance(alpha, (int, float)) and not isinstance(alpha, bool)
                                  and 0 <= alpha <= MAX_ALPHA):
        raise AdapterError(f"{path}: adapter.lora.alpha must be a number from 0 to {MAX_ALPHA:g}")
    info.alpha = float(alpha) if alpha is not None else None
    info.base_model = str(meta.get("general.base_model.0.name") or meta.get("general.basename") or "")
    info.size_bytes = path.stat().st_size
    ranks, targets, layers = set(), set(), set()
    for name, shape in tensors.items():
        m = _GGUF_LORA_RE.match(name)
        if not m:
            continue
        if m.group(2) == "a" and len(shape) >= 2:
            ranks.add(int(shape[1]))
        parts = m.group(1).split(".")
        if parts[0] == "blk" and len(parts) > 2 and parts[1].isdigit():
            layers.add(int(parts[1]))
            targets.add(".".join(parts[2:]))
        else:
            targets.add(m.group(1))
    if not ranks:
        raise AdapterError(f"{path}: GGUF adapter has no LoRA tensors (*.weight.lora_a / lora_b)")
    info.ranks = sorted(ranks)
    info.rank = max(ranks)
    info.target_modules = sorted(targets)
    info.n_layers = len(layers)
    info.n_params = sum(math.prod(s) for s in tensors.values())
    raw = meta.get("pocketpack.training")
    if isinstance(raw, str):
        try:
            training = fileformats.parse_json(raw, path, "pocketpack.training")
        except fileformats.FormatError as exc:  # informative only: the adapter still works
            log.warning("%s", exc.one_line())
        else:
            info.training = training if isinstance(training, dict) else {}
    return info


# --------------------------------------------------------------------------- public

def inspect_adapter(path: str | Path, *, allow_pickle: bool = False) -> AdapterInfo:
    """Read one adapter (a PEFT folder, its config file, or a GGUF file) without loading weights.

    Whatever the files hold, the only error is an AdapterError whose message is one line."""
    try:
        return _inspect(Path(path), allow_pickle)
    except OSError as exc:  # a folder or file that cannot be listed or read (permissions, I/O)
        raise AdapterError(f"{exc.filename or path}: cannot read ({exc.strerror or exc})") from None


def _inspect(path: Path, allow_pickle: bool) -> AdapterInfo:
    if not path.exists():
        raise AdapterError(f"{path}: no such file or folder")
    if path.is_file() and path.name == CONFIG_NAME:
        path = path.parent
    if path.is_dir():
        if not (path / CONFIG_NAME).is_file():
            raise AdapterError(f"{path}: not a PEFT adapter folder (missing {CONFIG_NAME})")
        return _inspect_peft(path, allow_pickle)
    if path.suffix.lower() == ".gguf":
        return _inspect_gguf(path)
    if path.suffix.lower() == ".safetensors":
        if (path.parent / CONFIG_NAME).is_file():
            return _inspect_peft(path.parent, allow_pickle)
        raise AdapterError(f"{path}: a bare safetensors file; an adapter needs {CONFIG_NAME} beside it")
    if path.suffix.lower() in PICKLE_SUFFIXES:
        if (path.parent / CONFIG_NAME).is_file():
            return _inspect_peft(path.parent, allow_pickle)
        raise AdapterError(f"{path}: a pickle file, refused (it can run code when loaded); use safetensors")
    raise AdapterError(f"{path}: not an adapter (expected a PEFT folder or a .gguf LoRA)")


def _in_library(folder: Path, entry: Path) -> None:
    """AdapterError when ``entry`` (or the files an adapter folder is read from) leads, through a
    link, outside the library ``folder``: a library lists what the user put in it, nothing else."""
    entry = entry.absolute()  # resolve_within takes a relative path as relative to the folder
    try:
        resolve_within(folder, entry)
        if entry.is_dir():
            for name in (CONFIG_NAME, SAFETENSORS_NAME, METADATA_NAME):
                if os.path.lexists(entry / name):
                    resolve_within(folder, entry / name)
    except PathOutsideError as exc:
        raise AdapterError(f"{entry}: links outside the adapter folder {folder} ({exc.one_line()})") from None


def _is_candidate(p: Path) -> bool:
    if p.name.startswith("."):
        return False
    if p.is_dir():
        return (p / CONFIG_NAME).is_file()
    return p.suffix.lower() == ".gguf"


def scan(dirs, *, allow_pickle: bool = False) -> list[AdapterInfo]:
    """Every adapter directly inside ``dirs`` (a path or a list), sorted by name.

    Unusable entries are kept with ``problem`` set so a listing can say why; GGUF files that
    are whole models (not adapters) are skipped silently. A PEFT folder and a GGUF file may
    share a name (``x/`` and its conversion ``x.gguf``, beside it or inside it as ``x/x.gguf``);
    otherwise a name found twice keeps the first folder's.
    """
    if isinstance(dirs, (str, Path)):
        dirs = [dirs]
    found: dict[tuple[str, bool], AdapterInfo] = {}
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            continue
        try:
            entries = sorted(d.iterdir())
        except OSError as exc:
            raise AdapterError(f"{d}: cannot list the adapter folder ({exc.strerror or exc})") from None
        for p in entries:
            if not _is_candidate(p):
                continue
            try:
                _in_library(d, p)
                info = inspect_adapter(p, allow_pickle=allow_pickle)
            except AdapterError as exc:  # listed, flagged with its reason: one bad adapter hides nothing else
                if p.suffix.lower() == ".gguf" and "not a LoRA adapter" in str(exc):
                    continue
                folder = p.is_dir()
                info = AdapterInfo(name=p.name if folder else p.stem, path=p,
                                   format="peft" if folder else "gguf", problem=exc.one_line())
            found.setdefault((info.name, info.format == "gguf"), info)
            inner = p / f"{p.name}.gguf"  # what `adapters train` writes: NAME/ holds NAME.gguf too
            if p.is_dir() and (p.name, True) not in found and inner.is_file():
                try:
                    _in_library(d, inner)
                    found[(p.name, True)] = inspect_adapter(inner)
                except AdapterError as exc:
                    found[(p.name, True)] = AdapterInfo(name=p.name, path=inner, format="gguf",
                                                        problem=exc.one_line())
    return sorted(found.values(), key=lambda i: (i.name.lower(), i.format))


def prefer(infos: list[AdapterInfo], kind: str) -> list[AdapterInfo]:
    """One entry per name: the GGUF for a llama.cpp model, the PEFT folder otherwise."""
    best: dict[str, AdapterInfo] = {}
    for info in infos:
        other = best.get(info.name)
        if other is None or ((info.format == "gguf") == (kind == "llama.cpp") and other.format != info.format):
            best[info.name] = info
    return sorted(best.values(), key=lambda i: i.name.lower())


def find(dirs, name: str, *, allow_pickle: bool = False, kind: str = "") -> AdapterInfo:
    """The adapter called ``name`` directly inside one of ``dirs``; AdapterError if none.

    With a PEFT folder and a GGUF file of the same name, ``kind`` ('llama.cpp' or
    'transformers') picks the one that model can use. Names never reach outside those
    folders; callers with a path use ``inspect_adapter``.
    """
    if "/" in name or "\\" in name or "\x00" in name or name in ("", ".", ".."):
        raise AdapterError(f"{name[:80]!r}: adapter names cannot contain path separators")
    dirs = [dirs] if isinstance(dirs, (str, Path)) else list(dirs)
    order = ("{}.gguf", "{0}/{0}.gguf", "{}") if kind == "llama.cpp" else ("{}", "{}.gguf", "{0}/{0}.gguf")
    for d in dirs:
        for pattern in order:
            candidate = Path(d) / pattern.format(name)
            if candidate.exists() or candidate.is_symlink():
                _in_library(Path(d), candidate)
                return inspect_adapter(candidate, allow_pickle=allow_pickle)
    where = ", ".join(str(d) for d in dirs) or "no folders"
    raise AdapterNotFound(f"no adapter named {name!r} in {where}")


def check_bindable(dirs, names, *, allow_pickle: bool = False) -> None:
    """AdapterError (one line) when one of ``names`` is in the library but cannot be used, so a
    binding never points at a broken adapter; a name not there yet may be bound (train it later)."""
    for name in names:
        try:
            find(dirs, name, allow_pickle=allow_pickle)
        except AdapterNotFound:
            continue
        except AdapterError as exc:
            raise AdapterError(f"cannot bind {name[:80]!r}: {exc.one_line()}") from None


def human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
