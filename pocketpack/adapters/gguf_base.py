"""Transformers weights from a GGUF model, for training: dequantised once, cached beside it.

Training needs a Transformers model; the embedded default (and most local models) is a GGUF.
transformers reads GGUF files of some architectures (gemma3, llama, mistral, qwen2/3, phi3 …)
and dequantises them to float32. That takes minutes on a small CPU, so it is done once and the
result is kept next to the model as an ordinary Hugging Face folder::

    models/.pocketpack-hf/<gguf stem>/
        config.json  model.safetensors  tokenizer.json  tokenizer_config.json …
        pocketpack-source.json     {"format": "pocketpack-hf-from-gguf/1", "source": "<file>.gguf",
                                    "size": …, "sha256": …, "architecture": "gemma3", "name": …}

The folder is reused while the manifest's size and sha256 match the GGUF, and rebuilt when
they do not (another file under the same name). Everything is read from disk: no hub.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from functools import lru_cache
from pathlib import Path

from pocketpack.adapters.library import AdapterError

log = logging.getLogger("pocketpack.adapters")

CACHE_DIR = ".pocketpack-hf"
MANIFEST = "pocketpack-source.json"
FORMAT = "pocketpack-hf-from-gguf/1"
_NOT_ARCHES = {"general", "tokenizer"}


def is_gguf(path) -> bool:
    p = Path(str(path))
    return p.suffix.lower() == ".gguf" and p.is_file()


@lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_of(path) -> str:
    """The file's sha256 (computed once per size and modification time in this process)."""
    st = Path(path).stat()
    return _sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def identity(path) -> dict:
    """What names a GGUF model apart from its quantisation: file, ``general.name``,
    architecture and size label, read from the header."""
    from pocketpack.adapters.compat import gguf_model_header

    meta, _ = gguf_model_header(path)
    arch = str(meta.get("general.architecture") or "")
    return {"file": Path(path).name, "name": str(meta.get("general.name") or meta.get("general.basename") or ""),
            "architecture": arch, "size_label": str(meta.get("general.size_label") or ""),
            "type": str(meta.get("general.type") or "model")}


def supported_architectures() -> list[str]:
    """GGUF architectures this transformers can dequantise."""
    try:
        from transformers.integrations.ggml import GGUF_CONFIG_MAPPING
    except ImportError:
        return []
    return sorted(k for k in GGUF_CONFIG_MAPPING if k not in _NOT_ARCHES)


def cache_folder(gguf_path) -> Path:
    p = Path(gguf_path)
    return p.parent / CACHE_DIR / p.stem


def _manifest(folder: Path) -> dict | None:
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def cached_base(gguf_path) -> Path | None:
    """The cache folder of ``gguf_path`` when it holds this very file's weights, else None."""
    folder = cache_folder(gguf_path)
    m = _manifest(folder)
    p = Path(gguf_path)
    if (m is None or m.get("format") != FORMAT or m.get("size") != p.stat().st_size
            or not (folder / "config.json").is_file()):
        return None
    return folder if m.get("sha256") == sha256_of(p) else None


def check_trainable(gguf_path) -> dict:
    """The GGUF's identity, or AdapterError (one line) when it cannot be trained on here."""
    p = Path(gguf_path)
    ident = identity(p)
    if ident["type"] == "adapter":
        raise AdapterError(f"{p}: a GGUF LoRA adapter, not a model; give the model it was made for as --base")
    arch = ident["architecture"] or "unknown"
    supported = supported_architectures()
    if arch not in supported:
        raise AdapterError(f"{p}: a {arch} GGUF; transformers cannot dequantise {arch} for training (it reads "
                           f"{', '.join(supported) or 'no GGUF'}): train on the model's Hugging Face folder "
                           "(config.json + safetensors) instead")
    return ident


def hf_base_from_gguf(gguf_path) -> Path:
    """The Hugging Face folder made from ``gguf_path`` (built now if missing or stale)."""
    p = Path(gguf_path)
    ident = check_trainable(p)
    found = cached_base(p)
    if found is not None:
        return found
    folder = cache_folder(p)
    log.warning("dequantising %s for training (once; kept in %s)", p.name, folder)
    started = time.monotonic()
    tmp = folder.with_name(f"{folder.name}.part-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(p.parent), gguf_file=p.name, local_files_only=True)
    except AdapterError:
        raise
    except Exception as exc:  # noqa: BLE001 - transformers' GGUF reader raises many kinds
        raise AdapterError(f"{p}: transformers could not read this {ident['architecture']} GGUF "
                           f"({str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__}); "
                           "train on the model's Hugging Face folder instead") from None
    _as_llama_cpp_reads_it(model.config, p)
    try:
        # the weights are plain float32 now: nothing of the GGUF quantisation is left to declare
        if getattr(model.config, "quantization_config", None) is not None:
            del model.config.quantization_config
        model.hf_quantizer = None
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        manifest = {"format": FORMAT, "source": p.name, "size": p.stat().st_size, "sha256": sha256_of(p),
                    "architecture": ident["architecture"], "name": ident["name"],
                    "transformers": _version("transformers"), "seconds": round(time.monotonic() - started, 1)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        shutil.rmtree(folder, ignore_errors=True)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp.replace(folder)
    except OSError as exc:
        raise AdapterError(f"{folder}: cannot write the training copy of {p.name} "
                           f"({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.warning("%s ready for training in %.0f s", p.name, time.monotonic() - started)
    return folder


def _as_llama_cpp_reads_it(config, gguf_path: Path) -> None:
    """Settings transformers' GGUF reader leaves at its defaults but llama.cpp derives from the
    header, so that the copy computes what llama.cpp computes (and a LoRA trained on it fits).

    Gemma 3: attention is scaled by 1/sqrt(key_length) (1/sqrt(hidden/heads) for the 62-layer
    27B), where transformers' default query_pre_attn_scalar is 256 whatever the head size."""
    from pocketpack.adapters.compat import gguf_model_header

    meta, _ = gguf_model_header(gguf_path)
    if meta.get("general.architecture") == "gemma3" and hasattr(config, "query_pre_attn_scalar"):
        key_length = meta.get("gemma3.attention.key_length")
        if meta.get("gemma3.block_count") == 62:
            key_length = int(meta["gemma3.embedding_length"]) // int(meta["gemma3.attention.head_count"])
        if key_length:
            config.query_pre_attn_scalar = int(key_length)


def _version(name: str) -> str:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # noqa: BLE001 - a version for the manifest only: unknown is ""
        return ""


def gguf_source_of(folder) -> Path | None:
    """The GGUF a cache folder was made from, when ``folder`` is one and the file is still there."""
    m = _manifest(Path(folder))
    if not m or m.get("format") != FORMAT:
        return None
    src = Path(folder).parent.parent / str(m.get("source") or "")
    return src if src.is_file() else None
