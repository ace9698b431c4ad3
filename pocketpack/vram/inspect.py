"""Read what a model folder says about its size, without loading a single weight.

Sources, best first: GGUF metadata and tensor infos (:mod:`pocketpack.fileformats` reads the header
only, never tensor data), safetensors headers (the 8-byte length and the JSON after it, for every
shard named by ``model.safetensors.index.json``), and config.json alone. GPTQ/AWQ/EXL2/bnb
checkpoints are recognised from ``quantize_config.json`` or ``quantization_config``; PEFT
adapter folders from ``adapter_config.json``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pocketpack.fileformats import (
    FormatError,
    dict_field,
    float_field,
    int_field,
    read_json_object,
    str_list_field,
)
from pocketpack.fileformats import read_safetensors_header as _read_safetensors_header
from pocketpack.vram.arch import Arch, Tensor, from_gguf_metadata, from_hf_config
from pocketpack.vram.errors import VramError
from pocketpack.vram.ggml import FTYPE_NAMES, type_bytes
from pocketpack.vram.gguf_header import read_gguf_header


@dataclass
class AdapterInfo:
    """A PEFT LoRA adapter folder."""

    path: Path
    rank: int
    alpha: float
    target_modules: list[str]
    base_model: str
    file_bytes: int


@dataclass
class ModelInfo:
    """Everything the estimator knows about a model before loading it."""

    path: Path
    name: str
    source: str                 # "config", "safetensors" or "gguf"
    arch: Arch
    tensors: list[Tensor]
    exact_tensors: bool         # tensors read from headers (else synthesised from the config)
    file_bytes: int | None      # bytes of the weight files present
    native: str | None = None   # format of a pre-quantised checkpoint, e.g. "gguf-Q4_K_M"
    quant_config: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def n_params(self) -> int:
        if self.native and self.native.startswith(("gptq", "awq", "exl2")):
            return self.arch.n_params()  # packed tensors do not count parameters
        return sum(t.n_params for t in self.tensors)


# --------------------------------------------------------------------------- names

_LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks|layer|blk|decoder\.layers)\.(\d+)\.")
_HF_CATEGORIES = (
    (re.compile(r"(embed_tokens|wte|word_embeddings|embed_in|tok_embeddings|token_embd)\."), "token_embd"),
    (re.compile(r"(^|\.)(lm_head|embed_out|output)\.(weight|qweight)"), "output"),
    (re.compile(r"(qkv_proj|query_key_value|c_attn|Wqkv|W_pack|attn_qkv)\."), "attn_qkv"),
    (re.compile(r"(q_proj|\.query|attn_q)\."), "attn_q"),
    (re.compile(r"(k_proj|\.key|attn_k)\."), "attn_k"),
    (re.compile(r"(v_proj|\.value|attn_v)\."), "attn_v"),
    (re.compile(r"(o_proj|out_proj|attention\.dense|attn\.c_proj|self_attn\.dense|attn_output)\."), "attn_output"),
    (re.compile(r"(gate_proj|\.w1\.|ffn_gate)"), "ffn_gate"),
    (re.compile(r"(up_proj|gate_up_proj|\.w3\.|fc1|c_fc|dense_h_to_4h|ffn_up)"), "ffn_up"),
    (re.compile(r"(down_proj|\.w2\.|fc2|mlp\.c_proj|dense_4h_to_h|ffn_down)"), "ffn_down"),
    (re.compile(r"(norm|ln_|\.ln\d|layernorm)"), "norm"),
)


def categorise(name: str) -> tuple[str, int | None]:
    """(category, layer) of a tensor from its checkpoint or GGUF name."""
    m = _LAYER.search(name)
    layer = int(m.group(1)) if m else None
    for pattern, category in _HF_CATEGORIES:
        if pattern.search(name):
            if category in ("attn_k", "attn_v") and "_norm" in name:
                return "norm", layer
            return category, layer
    return "other", layer


# --------------------------------------------------------------------------- safetensors

def read_safetensors_header(path: Path) -> dict:
    """Tensor entries of a .safetensors header, checked against the file's size."""
    try:
        return _read_safetensors_header(path)[0]
    except FormatError as exc:
        raise VramError(f"{exc.path.name}: {exc.problem}") from None


MAX_SHARDS = 4096  # real checkpoints have a few hundred at most


def _safetensors_files(folder: Path) -> tuple[list[Path], list[str]]:
    index = folder / "model.safetensors.index.json"
    missing: list[str] = []
    if index.is_file():
        weight_map = _field(dict_field, _load_json(index), "weight_map", index)
        if not all(isinstance(v, str) for v in weight_map.values()):
            raise VramError(f"{index}: weight_map must map tensor names to file names")
        names = sorted(set(weight_map.values()))
        if len(names) > MAX_SHARDS:
            raise VramError(f"{index}: names {len(names)} shard files; at most {MAX_SHARDS} are read")
        files = []
        for name in names:
            p = (folder / name)
            if "\x00" in name or name in ("", ".", "..") or p.resolve().parent != folder.resolve():
                raise VramError(f"{index.name}: shard {name[:80]!r} lies outside the model folder")
            (files if p.is_file() else missing).append(p if p.is_file() else name)
        return files, missing
    files = sorted(p for p in folder.glob("*.safetensors") if not p.name.startswith("adapter_model"))
    return files, missing


def _tensors_from_safetensors(files: list[Path]) -> tuple[list[Tensor], int]:
    tensors: list[Tensor] = []
    total = 0
    for path in files:
        total += path.stat().st_size
        for name, entry in read_safetensors_header(path).items():
            shape = tuple(int(x) for x in reversed(entry["shape"])) or (1,)
            start, end = entry["data_offsets"]
            category, layer = categorise(name)
            if len(shape) < 2 and category != "token_embd":
                category = "norm" if category != "other" or "norm" in name else "other"
            tensors.append(Tensor(name, shape, entry["dtype"], end - start, category, layer))
    return tensors, total


# --------------------------------------------------------------------------- quantised checkpoints

def _field(reader, data: dict, key: str, where, **bounds):
    """A checked field of a JSON object (see :func:`pocketpack.fileformats.int_field`), as a VramError."""
    try:
        return reader(data, key, str(where), **bounds)
    except FormatError as exc:
        raise VramError(str(exc)) from None


def _native_from_quant(cfg: dict, folder: Path | None, where: str = "config.json") -> tuple[str | None, dict]:
    qc = dict(_field(dict_field, cfg, "quantization_config", where))
    if folder is not None:
        for name in ("quantize_config.json", "quant_config.json"):
            p = folder / name
            if p.is_file() and not qc:
                qc, where = _load_json(p), f"{folder.name}/{name}"
                qc.setdefault("quant_method", "awq" if "w_bit" in qc else "gptq")
    if not qc:
        return None, {}
    method = qc.get("quant_method") or ""
    method = method.lower() if isinstance(method, str) else ""
    bits = lambda *keys, default=4: next((b for b in (_field(int_field, qc, k, where, lo=1, hi=16) for k in keys)
                                          if b), default)
    group = lambda *keys: next((g for g in (_field(int_field, qc, k, where, lo=-1, hi=1 << 20) for k in keys)
                                if g is not None), 128)
    if method in ("gptq", "") and ("bits" in qc or "group_size" in qc):
        return f"gptq-{bits('bits')}bit-g{group('group_size')}", qc
    if method == "awq":
        return f"awq-{bits('bits', 'w_bit')}bit-g{group('group_size', 'q_group_size')}", qc
    if method == "exl2":
        return f"exl2-{_field(float_field, qc, 'bits', where, default=4.0, lo=1.0, hi=16.0):g}bpw", qc
    if method == "bitsandbytes":
        if qc.get("load_in_4bit") or qc.get("_load_in_4bit"):
            kind = qc.get("bnb_4bit_quant_type") or "nf4"
            if kind not in ("nf4", "fp4"):
                raise VramError(f"{where}: bnb_4bit_quant_type must be nf4 or fp4 (got {str(kind)[:40]!r})")
            return kind + ("-dq" if qc.get("bnb_4bit_use_double_quant") else ""), qc
        return "int8", qc
    return None, qc


def inspect_adapter(folder: Path) -> AdapterInfo:
    """Rank, targets and size of a PEFT adapter folder."""
    p = Path(folder) / "adapter_config.json"
    cfg = _load_json(p)
    size = sum(f.stat().st_size for f in Path(folder).glob("adapter_model.*") if f.is_file())
    base = cfg.get("base_model_name_or_path") or ""
    return AdapterInfo(Path(folder), _field(int_field, cfg, "r", p, default=8, hi=1 << 16),
                       _field(float_field, cfg, "lora_alpha", p, default=16.0, hi=1e6),
                       _field(str_list_field, cfg, "target_modules", p),
                       base if isinstance(base, str) else "", size)


# --------------------------------------------------------------------------- GGUF

def _gguf_parts(path: Path) -> list[Path]:
    m = re.match(r"(.+)-(\d+)-of-(\d+)\.gguf$", path.name)
    if not m:
        return [path]
    parts = sorted(path.parent.glob(f"{m.group(1)}-*-of-{m.group(3)}.gguf"))
    expected = int(m.group(3))
    if len(parts) != expected:
        raise VramError(f"{path.name}: split GGUF has {len(parts)} of {expected} parts in {path.parent}")
    return parts


def inspect_gguf(path: Path) -> ModelInfo:
    """Metadata and per-tensor types of a (possibly split) GGUF, from its header only."""
    parts = _gguf_parts(Path(path))
    meta: dict = {}
    tensors: list[Tensor] = []
    total = 0
    for part in parts:
        header = read_gguf_header(part)
        total += header.file_size
        end = 0
        for t in header.tensors:
            category, layer = categorise(t.name)
            if len(t.shape) < 2:
                category = "norm"
            try:
                nbytes = type_bytes(t.type_name, _prod(t.shape))
            except KeyError:
                raise VramError(f"{part.name}: tensor {t.name} has unknown ggml type {t.type_name}") from None
            end = max(end, header.data_offset + t.offset + nbytes)
            tensors.append(Tensor(t.name, t.shape, t.type_name, nbytes, category, layer))
        if end > header.file_size:
            raise VramError(f"{part.name}: truncated GGUF ({header.file_size} bytes, its tensors need {end})")
        if not meta:
            meta = header.metadata
    embd = next((t for t in tensors if t.category == "token_embd"), None)
    where = parts[0].name
    arch = from_gguf_metadata(meta, embd.shape[1] if embd is not None and len(embd.shape) > 1 else None, where)
    arch.tie_embeddings = not any(t.category == "output" for t in tensors)
    ftype = meta.get("general.file_type")
    ftype_name = FTYPE_NAMES.get(int(ftype)) if isinstance(ftype, int) else None
    if ftype_name is None:  # guess from the most common type of the big tensors
        counts: dict[str, int] = {}
        for t in tensors:
            if t.category.startswith(("ffn", "attn")) and len(t.shape) > 1:
                counts[t.dtype] = counts.get(t.dtype, 0) + t.n_params
        ftype_name = max(counts, key=counts.get) if counts else "F16"
    name = str(meta.get("general.name") or parts[0].stem)
    info = ModelInfo(parts[0], name, "gguf", arch, tensors, True, total, native=f"gguf-{ftype_name}")
    info.quant_config = {"file_type": ftype_name}
    return info


def _prod(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


# --------------------------------------------------------------------------- entry point

def _load_json(path: Path) -> dict:
    try:
        return read_json_object(path)
    except FormatError as exc:
        raise VramError(str(exc)) from None


def inspect_model(path: str | Path) -> ModelInfo:
    """Inspect a model folder, a config.json or a .gguf; raise VramError with one clear line."""
    p = Path(path).expanduser()
    if not p.exists():
        raise VramError(f"{p}: no such file or folder")
    if p.is_file():
        if p.suffix.lower() == ".gguf":
            return inspect_gguf(p)
        if p.suffix.lower() == ".json":
            cfg = _load_json(p)
            arch = from_hf_config(cfg, p.name)
            native, qc = _native_from_quant(cfg, None, p.name)
            name = p.parent.name if p.stem == "config" else p.stem
            return ModelInfo(p, name, "config", arch, arch.tensors(), False,
                             None, native, qc)
        raise VramError(f"{p.name}: expected a model folder, a config.json or a .gguf file")
    config = p / "config.json"
    if config.is_file():
        cfg = _load_json(config)
        arch = from_hf_config(cfg, f"{p.name}/config.json")
        native, qc = _native_from_quant(cfg, p, f"{p.name}/config.json")
        files, missing = _safetensors_files(p)
        info = ModelInfo(p, p.name, "config", arch, arch.tensors(), False, None, native, qc)
        if files:
            tensors, size = _tensors_from_safetensors(files)
            info.file_bytes = size
            if missing:
                info.notes.append(f"{len(missing)} safetensors shard(s) missing: sizes from config.json")
            else:
                info.tensors, info.exact_tensors, info.source = tensors, True, "safetensors"
                dtypes = {t.dtype for t in tensors if t.category not in ("norm", "other")}
                if not native and dtypes == {"BF16"}:
                    arch.torch_dtype = "bfloat16"
        elif any(p.glob("*.bin")) or any(p.glob("*.pt")):
            info.notes.append("pickle checkpoints (.bin/.pt) are not opened: sizes from config.json")
        return info
    ggufs = sorted(f for f in p.glob("*.gguf") if "mmproj" not in f.name.lower())
    if ggufs:
        firsts = [f for f in ggufs if not re.search(r"-\d+-of-\d+\.gguf$", f.name)
                  or re.search(r"-0*1-of-\d+\.gguf$", f.name)]
        if len(firsts) > 1:
            names = ", ".join(f.name for f in firsts[:4])
            raise VramError(f"{p}: several GGUF models ({names}): name one file")
        return inspect_gguf(firsts[0])
    if (p / "adapter_config.json").is_file():
        ad = inspect_adapter(p)
        raise VramError(f"{p.name}: a LoRA adapter (rank {ad.rank}); estimate its base model "
                        f"{ad.base_model or '(base_model_name_or_path not set)'} instead")
    raise VramError(f"{p}: neither config.json nor a .gguf file here: not a model folder")
