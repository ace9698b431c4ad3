"""Byte-level builders for the model files the header readers take: GGUF, safetensors, config.json.

Written by hand (struct + json), not with the ``gguf`` or ``safetensors`` writers, so the
hardening and fuzz tests can produce what no writer would: wrong counts, nests, lengths.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

# GGUF value types (gguf.GGUFValueType)
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
_PACK = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<?",
         U64: "<Q", I64: "<q", F64: "<d"}

LLAMA_CONFIG = {
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 260,
    "max_position_embeddings": 256, "torch_dtype": "float16", "tie_word_embeddings": False,
}

# a tiny llama as GGUF: embedding 16, one block, 2 heads (1 kv head), vocabulary 32
TINY_GGUF_META = {
    "general.architecture": "llama", "general.name": "tiny", "general.file_type": (U32, 0),
    "llama.embedding_length": (U32, 16), "llama.block_count": (U32, 1), "llama.attention.head_count": (U32, 2),
    "llama.attention.head_count_kv": (U32, 1), "llama.feed_forward_length": (U32, 32),
    "llama.context_length": (U32, 256), "tokenizer.ggml.tokens": [f"t{i}" for i in range(32)],
}
TINY_GGUF_TENSORS = [
    ("token_embd.weight", (16, 32)), ("output_norm.weight", (16,)), ("output.weight", (16, 32)),
    ("blk.0.attn_norm.weight", (16,)), ("blk.0.attn_q.weight", (16, 16)), ("blk.0.attn_k.weight", (16, 8)),
    ("blk.0.attn_v.weight", (16, 8)), ("blk.0.attn_output.weight", (16, 16)), ("blk.0.ffn_norm.weight", (16,)),
    ("blk.0.ffn_gate.weight", (16, 32)), ("blk.0.ffn_up.weight", (16, 32)), ("blk.0.ffn_down.weight", (32, 16)),
]


def gguf_string(text: str | bytes, length: int | None = None) -> bytes:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return struct.pack("<Q", len(data) if length is None else length) + data


def gguf_value(value) -> tuple[int, bytes]:
    """``(type, payload)``; ``value`` is a Python value or an explicit ``(type, value)`` pair."""
    if isinstance(value, tuple):
        vtype, v = value
        if vtype == STR:
            return STR, gguf_string(v)
        if vtype == ARR:
            itype, items = v
            return ARR, struct.pack("<IQ", itype, len(items)) + b"".join(gguf_value((itype, i))[1] for i in items)
        return vtype, struct.pack(_PACK[vtype], v)
    if isinstance(value, bool):
        return BOOL, struct.pack("<?", value)
    if isinstance(value, int):
        return (U32, struct.pack("<I", value)) if 0 <= value < 1 << 32 else (I64, struct.pack("<q", value))
    if isinstance(value, float):
        return F32, struct.pack("<f", value)
    if isinstance(value, str):
        return STR, gguf_string(value)
    if isinstance(value, list):
        itype = gguf_value(value[0])[0] if value else U32
        return ARR, struct.pack("<IQ", itype, len(value)) + b"".join(gguf_value(v)[1] for v in value)
    raise TypeError(value)


def gguf_kv(key: str, value) -> bytes:
    vtype, payload = gguf_value(value)
    return gguf_string(key) + struct.pack("<I", vtype) + payload


def nested_array(depth: int) -> bytes:
    """A GGUF array value nested ``depth`` arrays deep (each holding the next), payload only."""
    return struct.pack("<IQ", ARR, 1) * (depth - 1) + struct.pack("<IQ", U32, 0)


def gguf_bytes(meta: dict | None = None, tensors=None, *, raw_kv: bytes = b"", raw_count: int | None = None,
               n_kv: int | None = None, n_tensors: int | None = None, version: int = 3) -> bytes:
    """A GGUF file: header, key/values (``meta`` then ``raw_kv``: ``raw_count`` pairs already
    encoded, 1 by default), F32 tensor infos and zeroed tensor data aligned to 32 bytes.
    ``n_kv`` / ``n_tensors`` override the counts written in the header."""
    raw_count = (1 if raw_kv else 0) if raw_count is None else raw_count
    meta = TINY_GGUF_META if meta is None else meta
    tensors = TINY_GGUF_TENSORS if tensors is None else tensors
    kvs = b"".join(gguf_kv(k, v) for k, v in meta.items()) + raw_kv
    count = len(meta) + raw_count
    infos, offset = b"", 0
    for name, shape in tensors:
        infos += gguf_string(name) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", d) for d in shape)
        infos += struct.pack("<IQ", 0, offset % (1 << 64))  # F32
        size = 4
        for d in shape:
            size *= d
        offset += -(-size // 32) * 32
    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors) if n_tensors is None else n_tensors,
                                 count if n_kv is None else n_kv)
    body = head + kvs + infos
    body += b"\0" * (-len(body) % 32)
    return body + b"\0" * min(offset, 1 << 20)  # shapes too big for that are cut short, as a lie would be


def safetensors_bytes(header, data: bytes = b"", length: int | None = None) -> bytes:
    """A safetensors file: 8-byte length, the header (a dict, or raw bytes/str as given), data."""
    raw = header if isinstance(header, bytes) else (
        header.encode("utf-8") if isinstance(header, str) else json.dumps(header).encode("utf-8"))
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def tiny_safetensors() -> bytes:
    """One F32 tensor of 4 elements, valid."""
    return safetensors_bytes({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}, b"\0" * 16)


def write(path: Path, data: bytes | str | dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, dict):
        data = json.dumps(data)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def peft_adapter(folder: Path, config: dict | str | bytes | None = None, *, r: int = 4,
                 weights: bytes | None = None) -> Path:
    """A PEFT LoRA folder for a 16-wide llama (q_proj, v_proj of 2 layers), written directly.
    ``config`` replaces the adapter_config.json (a dict is merged over the valid one);
    ``weights`` replaces adapter_model.safetensors."""
    import numpy as np
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": 2 * r, "lora_dropout": 0.0,
           "target_modules": ["q_proj", "v_proj"], "bias": "none", "base_model_name_or_path": "tiny"}
    if isinstance(config, dict):
        cfg.update(config)
        write(folder / "adapter_config.json", cfg)
    else:
        write(folder / "adapter_config.json", cfg if config is None else config)
    if weights is None:
        tensors = {}
        for layer in range(2):
            for proj in ("q_proj", "v_proj"):
                key = f"base_model.model.model.layers.{layer}.self_attn.{proj}"
                tensors[f"{key}.lora_A.weight"] = np.zeros((r, 16), np.float32)
                tensors[f"{key}.lora_B.weight"] = np.zeros((16, r), np.float32)
        save_file(tensors, str(folder / "adapter_model.safetensors"))
    else:
        write(folder / "adapter_model.safetensors", weights)
    return folder
