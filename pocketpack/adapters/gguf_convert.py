"""PEFT LoRA -> GGUF LoRA for llama.cpp, written with the ``gguf`` package's GGUFWriter.

llama.cpp reads a LoRA as pairs ``<base tensor>.lora_a`` / ``.lora_b`` (PEFT's lora_A ``[r, in]``
and lora_B ``[out, r]``, same layout) plus ``adapter.lora.alpha``; it scales each pair by
alpha / r with r read from the pair, so per-module ranks work as they are. Three things
must match how the *base* GGUF was converted from Hugging Face weights:

- tensor names: HF module names map to GGUF names through ``gguf``'s TensorNameMap;
- Llama/Mistral q_proj and k_proj rows are permuted for llama.cpp's rope layout — the same
  permutation applies to lora_B (delta = B @ A; permuting rows of delta permutes rows of B);
- PEFT's per-module alpha (``alpha_pattern``) and rsLoRA's alpha / sqrt(r) have no GGUF field:
  they are folded into lora_B so that llama.cpp's alpha / r gives PEFT's scale.

Architectures whose GGUF conversion fuses or reshapes attention weights (Phi-3's fused
qkv, GPT-2's c_attn...) are refused with a clear message rather than converted wrongly.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from pocketpack.adapters.library import METADATA_NAME, AdapterError, inspect_adapter, peft_module_of, read_safetensors_header
from pocketpack.fsutil import atomic_path

# HF architecture -> (GGUF architecture, q/k rows permuted like convert_hf_to_gguf's LlamaModel)
ARCHITECTURES = {
    "LlamaForCausalLM": ("llama", True),
    "MistralForCausalLM": ("llama", True),
    "Qwen2ForCausalLM": ("qwen2", False),
    "Qwen3ForCausalLM": ("qwen3", False),
    "GemmaForCausalLM": ("gemma", False),
    "Gemma2ForCausalLM": ("gemma2", False),
    "Gemma3ForCausalLM": ("gemma3", False),
    "Gemma3ForConditionalGeneration": ("gemma3", False),
}
_GGUF_PERMUTED = {"llama"}  # GGUF architectures whose attn_q/attn_k rows were permuted
_PREFIXES = (("model.language_model.", "model."), ("language_model.model.", "model."))


def _permute(w, n_head: int, n_head_kv: int | None):
    """convert_hf_to_gguf's LlamaModel.permute, on the rows of ``w`` (numpy)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def base_params(base) -> dict:
    """``{arch, permute, n_head, n_head_kv, n_layers, tensors}`` from a base model given as a
    GGUF file, an HF folder / config.json, or a dict of those keys."""
    if isinstance(base, dict):
        return base
    p = Path(base)
    if p.suffix == ".gguf":
        from pocketpack.adapters.compat import gguf_model_header

        meta, tensors = gguf_model_header(p)
        arch = str(meta.get("general.architecture") or "")
        n_head = meta.get(f"{arch}.attention.head_count")
        n_head_kv = meta.get(f"{arch}.attention.head_count_kv", n_head)
        from pocketpack.adapters.gguf_base import identity

        ident = {k: v for k, v in identity(p).items() if k != "type"}
        return {"arch": arch, "permute": arch in _GGUF_PERMUTED, "n_head": n_head, "n_head_kv": n_head_kv,
                "n_layers": meta.get(f"{arch}.block_count"), "tensors": tensors, "source": p.name,
                "identity": ident}
    cfg_path = p / "config.json" if p.is_dir() else p
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AdapterError(f"{cfg_path}: cannot read the base model's config ({exc})") from None
    hf_arch = (cfg.get("architectures") or [""])[0]
    if hf_arch not in ARCHITECTURES:
        raise AdapterError(f"cannot convert adapters for {hf_arch or 'an unknown architecture'} to GGUF "
                           f"(supported: {', '.join(sorted(ARCHITECTURES))})")
    text = cfg.get("text_config") or cfg
    arch, permute = ARCHITECTURES[hf_arch]
    n_head = text.get("num_attention_heads")
    return {"arch": arch, "permute": permute, "n_head": n_head,
            "n_head_kv": text.get("num_key_value_heads") or n_head,
            "n_layers": text.get("num_hidden_layers"), "tensors": {}, "source": hf_arch}


def _pattern_value(patterns: dict, module: str, default):
    for key, value in patterns.items():  # PEFT matches the key against the module name's tail
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def peft_to_gguf(peft_dir, out_path, base=None, *, outtype: str = "f32") -> Path:
    """Write the GGUF LoRA of the PEFT adapter in ``peft_dir``; returns ``out_path``.

    ``base``: the base model (GGUF file, HF folder or config.json); defaults to the GGUF the
    adapter was trained from (``training_metadata.json``'s ``base_gguf``) when that file is still
    there, else the adapter's ``base_model_name_or_path`` when that is a local folder. Converted
    for a GGUF, the file records that model's identity (``pocketpack.training``'s ``gguf_base``).
    """
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    info = inspect_adapter(peft_dir)
    if info.format != "peft":
        raise AdapterError(f"{peft_dir}: only PEFT adapters with safetensors weights can be converted")
    if info.use_dora:
        raise AdapterError(f"{info.name}: a DoRA adapter; llama.cpp has no DoRA, it cannot be converted")
    cfg = json.loads((Path(peft_dir) / "adapter_config.json").read_text(encoding="utf-8"))
    if (cfg.get("bias") or "none") != "none":
        raise AdapterError(f"{info.name}: trains biases (bias={cfg['bias']!r}); llama.cpp LoRAs cannot carry them")
    if cfg.get("modules_to_save"):
        raise AdapterError(f"{info.name}: saves whole modules ({', '.join(cfg['modules_to_save'])}); "
                           "llama.cpp LoRAs cannot carry them")
    trained_on = (info.training.get("base_gguf") or {}).get("path") if isinstance(info.training, dict) else None
    if base is None and trained_on and Path(str(trained_on)).is_file():
        base = Path(str(trained_on))
    if base is None:
        guess = Path(info.base_model) if info.base_model else None
        if guess is None or not (guess / "config.json").is_file():
            raise AdapterError(f"{info.name}: say which base model it is for (--base MODEL.gguf or an HF folder); "
                               f"{info.base_model or 'no base model'} is not a local folder")
        base = guess
    params = base_params(base)
    arch = params["arch"]
    names = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}
    if arch not in names:
        raise AdapterError(f"cannot convert adapters for the GGUF architecture {arch!r}")
    n_layers = int(params.get("n_layers") or max(info.n_layers, 1))
    tmap = gguf.get_tensor_name_map(names[arch], n_layers)
    header, _ = read_safetensors_header(Path(peft_dir) / "adapter_model.safetensors")
    weights = load_file(str(Path(peft_dir) / "adapter_model.safetensors"))
    alpha = float(info.alpha)

    pairs: dict[str, dict] = {}
    for key in header:
        parsed = peft_module_of(key)
        if parsed is None or parsed[1] not in ("lora_A", "lora_B"):
            raise AdapterError(f"{info.name}: tensor {key} has no llama.cpp equivalent (only linear LoRA "
                               "layers can be converted)")
        module, part = parsed
        pairs.setdefault(module, {})[part] = weights[key].astype(np.float32)
    tensors: dict[str, np.ndarray] = {}
    for module, pair in sorted(pairs.items()):
        if set(pair) != {"lora_A", "lora_B"}:
            raise AdapterError(f"{info.name}: {module} lacks its lora_A or lora_B")
        hf_name = module
        for old, new in _PREFIXES:
            if hf_name.startswith(old):
                hf_name = new + hf_name[len(old):]
        gname = tmap.get_name(hf_name)
        if gname is None:
            raise AdapterError(f"{info.name}: no GGUF name for {module} in {arch} "
                               "(this architecture or module cannot be converted)")
        a, b = pair["lora_A"], pair["lora_B"]
        r = a.shape[0]
        peft_alpha = float(_pattern_value(info.alpha_pattern, module, alpha))
        peft_scale = peft_alpha / (math.sqrt(r) if info.use_rslora else r)
        factor = peft_scale / (alpha / r)
        if abs(factor - 1.0) > 1e-7:
            b = b * factor
        if params.get("permute") and gname.endswith(("attn_q", "attn_k")):
            n_head = params.get("n_head")
            if not n_head:
                raise AdapterError(f"{info.name}: the base model's head count is needed to convert {arch} q/k")
            b = _permute(b, int(n_head), int(n_head) if gname.endswith("attn_q") else int(params["n_head_kv"]))
        tensors[f"{gname}.weight.lora_a"] = np.ascontiguousarray(a)
        tensors[f"{gname}.weight.lora_b"] = np.ascontiguousarray(b)

    if params.get("tensors"):  # a GGUF base: check every pair against it before writing
        from pocketpack.adapters.compat import check_gguf_shapes
        from pocketpack.adapters.library import AdapterInfo

        probe = AdapterInfo(info.name, Path(out_path), "gguf",
                            tensors={k: list(reversed(v.shape)) for k, v in tensors.items()})
        reason = check_gguf_shapes(probe, params["tensors"], arch)
        if reason:
            raise AdapterError(reason)

    out_path = Path(out_path)
    dtype = {"f32": np.float32, "f16": np.float16}.get(outtype)
    if dtype is None:
        raise AdapterError(f"unknown --outtype {outtype!r} (f32 or f16)")
    with atomic_path(out_path) as tmp:  # a failed conversion leaves no half-written file
        writer = gguf.GGUFWriter(str(tmp), arch)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        writer.add_name(info.name)
        training = dict(info.training)
        if params.get("identity"):  # converted for this GGUF: a switch onto another model is refused by name
            training["gguf_base"] = params["identity"]
            writer.add_string("general.base_model.0.name", params["identity"]["name"] or params["identity"]["file"])
        elif info.base_model:
            writer.add_string("general.base_model.0.name", info.base_model)
        meta_file = Path(peft_dir) / METADATA_NAME
        if meta_file.is_file() or training:
            writer.add_string("pocketpack.training", json.dumps(training, sort_keys=True))
        for name, arr in tensors.items():
            writer.add_tensor(name, arr.astype(dtype))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return out_path
