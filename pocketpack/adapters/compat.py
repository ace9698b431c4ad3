"""Does an adapter fit the loaded model? Checked from headers before anything is loaded.

Loading a mismatched LoRA fails half-way through PEFT's injection (or crashes llama.cpp's
graph), so every load goes through :func:`check` first: the adapter's module names must
exist in the model and its LoRA shapes must match them — lora_A of a linear layer is
``[r, in_features]`` and lora_B ``[out_features, r]``; in a GGUF LoRA, lora_a is
``[n_in, r]`` and lora_b ``[r, n_out]`` in ggml order, against the base tensor's ``[n_in, n_out]``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pocketpack.adapters.library import AdapterError, AdapterInfo, peft_module_of
from pocketpack.fileformats import FormatError, read_gguf_header


def model_kind(model) -> str:
    """'llama.cpp' for a ``llama_cpp.Llama`` or a llama-server, 'transformers' for a torch model, else ''."""
    if model is None:
        return ""
    from pocketpack.adapters.llamaserver_driver import LlamaServerModel

    if isinstance(model, LlamaServerModel):  # a llama-server process: a GGUF model all the same
        return "llama.cpp"
    cls = type(model)
    if cls.__module__.startswith("llama_cpp") or (hasattr(model, "ctx") and hasattr(model, "model_path")):
        return "llama.cpp"
    try:
        import torch

        if isinstance(model, torch.nn.Module):
            return "transformers"
    except ImportError:
        pass
    return ""


def base_model_of(model):
    """The transformers model under a PeftModel wrapper (the model itself otherwise)."""
    get = getattr(model, "get_base_model", None)
    return get() if callable(get) else model


def model_type_of(model) -> str:
    if model_kind(model) == "llama.cpp":
        meta = getattr(model, "metadata", None) or {}
        return str(meta.get("general.architecture") or "")
    config = getattr(base_model_of(model), "config", None)
    return str(getattr(config, "model_type", "") or "")


def _features(module) -> tuple[str, int, int] | None:
    """``(kind, in, out)`` of a layer a LoRA can target, seen through PEFT's wrappers."""
    get_base = getattr(module, "get_base_layer", None)
    if callable(get_base):
        module = get_base()
    if hasattr(module, "num_embeddings") and hasattr(module, "embedding_dim"):
        return "embedding", int(module.num_embeddings), int(module.embedding_dim)
    if hasattr(module, "in_features") and hasattr(module, "out_features"):
        return "linear", int(module.in_features), int(module.out_features)
    if type(module).__name__ == "Conv1D" and hasattr(module, "weight"):  # GPT-2 style, weight is [in, out]
        return "linear", int(module.weight.shape[0]), int(module.weight.shape[1])
    return None


def _check_torch(info: AdapterInfo, model) -> str | None:
    if info.format == "gguf":
        return (f"{info.name}: a GGUF LoRA works with llama.cpp models only; this model is loaded with "
                "Transformers (use the PEFT folder it was converted from)")
    base = base_model_of(model)
    mtype = model_type_of(model)
    if info.architecture and mtype and info.architecture != mtype:
        return f"{info.name}: made for a {info.architecture} model; the loaded model is {mtype}"
    modules = dict(base.named_modules())
    if not info.tensors:  # pickle weights: only the target names can be checked
        leaves = {n.rsplit(".", 1)[-1] for n in modules}
        missing = [t for t in info.target_modules if t not in leaves and t not in modules]
        if missing:
            return (f"{info.name}: targets {', '.join(missing)}, which this {mtype or 'model'} does not have "
                    "(made for another architecture?)")
        return None
    for key, shape in sorted(info.tensors.items()):
        parsed = peft_module_of(key)
        if parsed is None:
            continue
        name, part = parsed
        if part == "lora_magnitude_vector":
            continue
        module = modules.get(name)
        if module is None:
            return (f"{info.name}: targets {name}, which this {mtype or 'model'} does not have "
                    "(made for another architecture or model size)")
        feats = _features(module)
        if feats is None:
            return f"{info.name}: targets {name}, a {type(module).__name__} that LoRA cannot adapt"
        kind, n_in, n_out = feats
        if len(shape) != 2:
            return f"{info.name}: {key} has shape {shape}, expected a matrix"
        if part in ("lora_A", "lora_embedding_A"):
            ok, want = shape[1] == n_in, f"[r, {n_in}]"
        else:
            ok, want = shape[0] == n_out, f"[{n_out}, r]"
        if not ok:
            return (f"{info.name}: {part} of {name} is {list(shape)} but this model needs {want} "
                    f"(adapter made for a different model)")
    return None


@lru_cache(maxsize=8)
def _gguf_model_tensors(path: str, mtime: float) -> tuple[dict, dict]:
    """Metadata and ggml-order tensor shapes of a GGUF model, from its header only
    (the vocabulary arrays are skipped, so a 262k-token model reads in well under a second)."""
    try:
        header = read_gguf_header(path)
    except FormatError as exc:
        raise AdapterError(f"{path}: cannot read the model's GGUF header ({exc.problem})") from None
    return header.metadata, {t.name: list(t.shape) for t in header.tensors}


def gguf_model_header(path) -> tuple[dict, dict]:
    p = Path(path)
    return _gguf_model_tensors(str(p), p.stat().st_mtime)


def _check_llama_cpp(info: AdapterInfo, model) -> str | None:
    if info.format != "gguf":
        return (f"{info.name}: a PEFT adapter; llama.cpp needs a GGUF LoRA "
                f"(convert it: pocketpack adapters to-gguf {info.path} OUT.gguf --base MODEL.gguf)")
    path = getattr(model, "model_path", None)
    meta, tensors = gguf_model_header(path) if path and Path(path).is_file() else ({}, {})
    arch = str(meta.get("general.architecture") or model_type_of(model) or "")
    if info.architecture and arch and info.architecture != arch:
        return f"{info.name}: made for a {info.architecture} model; the loaded model is {arch}"
    made_for = info.training.get("gguf_base") if isinstance(info.training, dict) else None
    loaded = str(meta.get("general.name") or meta.get("general.basename") or "")
    if isinstance(made_for, dict) and made_for.get("name") and loaded and (
            made_for["name"] != loaded or (made_for.get("size_label") or "") != str(meta.get("general.size_label") or
                                                                                  made_for.get("size_label") or "")):
        return (f"{info.name}: made for {made_for.get('file') or 'another model'} ({made_for['name']}); the loaded "
                f"model is {Path(path).name if path else 'another model'} ({loaded}): train or convert it for this model")
    return check_gguf_shapes(info, tensors, arch)


def check_gguf_shapes(info: AdapterInfo, model_tensors: dict, arch: str = "") -> str | None:
    """GGUF LoRA pairs against a GGUF model's tensors (ggml order); None when they fit."""
    if not model_tensors:
        return None
    for name, a in sorted(info.tensors.items()):
        if not name.endswith(".lora_a"):
            continue
        target = name[: -len(".lora_a")]
        b = info.tensors.get(target + ".lora_b")
        if b is None:
            return f"{info.name}: {name} has no matching lora_b"
        base = model_tensors.get(target)
        if base is None:
            return f"{info.name}: targets {target}, which this {arch or 'model'} does not have (made for another model)"
        if len(a) < 2 or len(b) < 2 or a[0] != base[0] or b[1] != base[1] or a[1] != b[0]:
            return (f"{info.name}: {target} is {base[:2]} in the model but the LoRA pair is {a[:2]} x {b[:2]} "
                    "(adapter made for a different model)")
    return None


def check(info: AdapterInfo, model) -> str | None:
    """The reason ``info`` cannot be applied to ``model``, or None when it fits."""
    if info.problem:
        return info.problem
    kind = model_kind(model)
    if kind == "llama.cpp":
        return _check_llama_cpp(info, model)
    if kind == "transformers":
        return _check_torch(info, model)
    return "no model is loaded" if model is None else f"adapters cannot be applied to a {type(model).__name__}"


def ensure_compatible(info: AdapterInfo, model) -> None:
    reason = check(info, model)
    if reason:
        raise AdapterError(reason)
