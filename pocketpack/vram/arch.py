"""A decoder's shape, read from config.json or GGUF metadata, and the tensors it implies.

Every estimate starts here. A config.json alone must be enough, so the tensor list of an
architecture is synthesised from its shape (GGUF tensor names, ggml order: ``shape[0]`` is
the row length, i.e. a linear layer's input features); when real headers are present the
inspector replaces the synthesised list by the real one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pocketpack.fileformats import FormatError, int_field
from pocketpack.vram.errors import VramError

# model_type values whose MLP has no gate projection (fc1/fc2 or c_fc/c_proj)
UNGATED = {"gpt2", "gpt_neox", "gptj", "falcon", "phi", "opt", "bloom", "starcoder2", "mpt",
           "gpt_bigcode", "codegen"}
# model_types whose q/k/v projections carry a bias
QKV_BIAS = {"qwen2", "qwen2_moe", "qwen2_vl", "qwen2_5_vl", "gpt2", "gpt_neox", "phi",
            "starcoder2", "gpt_bigcode", "bloom", "opt", "codegen"}
# model_types with per-head RMS norms on q and k
QK_NORM = {"qwen3", "qwen3_moe", "gemma3", "gemma3_text", "olmo2", "olmoe"}
# stored with one qkv and one gate_up projection (in HF and in llama.cpp)
FUSED = {"phi3"}
# Gemma 2/3 norm the outputs of attention and MLP too
POST_NORMS = {"gemma2", "gemma3", "gemma3_text"}
# llama.cpp architectures that keep a small sliding-window (SWA) cache for local layers;
# elsewhere llama.cpp ignores sliding_window and caches the full context in every layer
LLAMACPP_SWA = {"gemma2", "gemma3", "gemma3_text", "gemma3n", "cohere2", "llama4", "gpt_oss"}

_ALIASES = {
    "hidden_size": ("hidden_size", "n_embd", "d_model", "dim", "model_dim"),
    "num_layers": ("num_hidden_layers", "n_layer", "num_layers", "n_layers"),
    "num_heads": ("num_attention_heads", "n_head", "num_heads", "n_heads"),
    "num_kv_heads": ("num_key_value_heads", "num_kv_heads", "n_head_kv", "num_kv_heads_per_layer"),
    "intermediate_size": ("intermediate_size", "ffn_dim", "n_inner", "ffn_hidden_size",
                          "ffn_intermediate_size"),
    "vocab_size": ("vocab_size", "n_vocab", "padded_vocab_size"),
    "max_context": ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length",
                    "max_sequence_length"),
}


@dataclass
class Tensor:
    """One weight tensor: enough to size it in any format without its data."""

    name: str
    shape: tuple[int, ...]   # ggml order: shape[0] = row length (input features)
    dtype: str = "F16"       # "F32", "F16", "BF16", a ggml type name, or "I32"/"U8" for packed ints
    nbytes: int | None = None  # exact bytes when read from a header
    category: str = "other"  # token_embd, output, attn_q/k/v/qkv/output, ffn_gate/up/down, norm, other
    layer: int | None = None

    @property
    def n_params(self) -> int:
        n = 1
        for dim in self.shape:
            n *= int(dim)
        return n

    @property
    def is_matrix(self) -> bool:
        return len(self.shape) >= 2


@dataclass
class Arch:
    """The shape of a decoder-only transformer, in the units every estimate needs."""

    model_type: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_embeddings: bool = False
    max_context: int = 4096
    sliding_window: int | None = None
    sliding_layers: int = 0          # how many layers use the sliding window
    num_experts: int = 0
    experts_per_token: int = 0
    moe_intermediate_size: int = 0
    gated_ffn: bool = True
    qkv_bias: bool = False
    qk_norm: bool = False
    post_norms: bool = False
    torch_dtype: str = "float16"
    fused: bool = False              # one qkv and one gate_up tensor (Phi-3), as llama.cpp stores them
    extra: dict = field(default_factory=dict)

    @property
    def n_gqa(self) -> int:
        return max(1, self.num_heads // max(1, self.num_kv_heads))

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    def tensors(self) -> list[Tensor]:
        """The tensors a checkpoint of this shape holds, named as llama.cpp names them."""
        h, inter, q_dim, kv = self.hidden_size, self.intermediate_size, self.num_heads * self.head_dim, self.kv_dim
        out = [Tensor("token_embd.weight", (h, self.vocab_size), category="token_embd"),
               Tensor("output_norm.weight", (h,), "F32", category="norm")]
        if not self.tie_embeddings:
            out.append(Tensor("output.weight", (h, self.vocab_size), category="output"))
        for i in range(self.num_layers):
            p = f"blk.{i}."
            layer = [Tensor(p + "attn_norm.weight", (h,), "F32", category="norm", layer=i)]
            if self.fused:
                layer.append(Tensor(p + "attn_qkv.weight", (h, q_dim + 2 * kv), category="attn_qkv", layer=i))
            else:
                layer += [Tensor(p + "attn_q.weight", (h, q_dim), category="attn_q", layer=i),
                          Tensor(p + "attn_k.weight", (h, kv), category="attn_k", layer=i),
                          Tensor(p + "attn_v.weight", (h, kv), category="attn_v", layer=i)]
            layer += [Tensor(p + "attn_output.weight", (q_dim, h), category="attn_output", layer=i),
                      Tensor(p + "ffn_norm.weight", (h,), "F32", category="norm", layer=i)]
            if self.qkv_bias:
                layer += [Tensor(p + f"attn_{x}.bias", (d,), "F32", category="norm", layer=i)
                          for x, d in (("q", q_dim), ("k", kv), ("v", kv))]
            if self.qk_norm:
                layer += [Tensor(p + f"attn_{x}_norm.weight", (self.head_dim,), "F32", category="norm", layer=i)
                          for x in ("q", "k")]
            if self.post_norms:
                layer += [Tensor(p + x, (h,), "F32", category="norm", layer=i)
                          for x in ("post_attention_norm.weight", "post_ffw_norm.weight")]
            if self.num_experts > 1:
                e, mi = self.num_experts, self.moe_intermediate_size or inter
                layer += [
                    Tensor(p + "ffn_gate_inp.weight", (h, e), "F32", category="other", layer=i),
                    Tensor(p + "ffn_gate_exps.weight", (h, mi, e), category="ffn_gate", layer=i),
                    Tensor(p + "ffn_up_exps.weight", (h, mi, e), category="ffn_up", layer=i),
                    Tensor(p + "ffn_down_exps.weight", (mi, h, e), category="ffn_down", layer=i),
                ]
            elif self.fused:
                layer += [Tensor(p + "ffn_up.weight", (h, 2 * inter), category="ffn_up", layer=i),
                          Tensor(p + "ffn_down.weight", (inter, h), category="ffn_down", layer=i)]
            else:
                if self.gated_ffn:
                    layer.append(Tensor(p + "ffn_gate.weight", (h, inter), category="ffn_gate", layer=i))
                layer += [Tensor(p + "ffn_up.weight", (h, inter), category="ffn_up", layer=i),
                          Tensor(p + "ffn_down.weight", (inter, h), category="ffn_down", layer=i)]
            out += layer
        return out

    def n_params(self) -> int:
        return sum(t.n_params for t in self.tensors())


# The range each size may take. Far beyond any real model, yet small enough that the tensor list
# (one entry per layer) and the arithmetic stay cheap for any file.
_LIMITS = {"hidden_size": 1 << 24, "num_layers": 1 << 12, "num_heads": 1 << 16, "num_kv_heads": 1 << 16,
           "intermediate_size": 1 << 26, "vocab_size": 1 << 26, "max_context": 1 << 40}
_DIM = 1 << 26


def _int(data: dict, key: str, where: str, *, default=None, lo: int = 1, hi: int = _DIM):
    """``data[key]`` as an int in range (lists: their largest), ``default`` when absent;
    a wrong type or an out-of-range value is a VramError naming the field."""
    value = data.get(key)
    try:
        if isinstance(value, list):  # per-layer values: the largest counts
            if not value:
                return default
            if any(isinstance(v, (list, dict)) for v in value):
                raise FormatError(where, f"{key} must be a whole number or a list of them")
            data = {key: max(int_field({key: v}, key, where, default=0, lo=min(lo, 0), hi=hi) for v in value)}
        return int_field(data, key, where, default=default, lo=lo, hi=hi)
    except FormatError as exc:
        raise VramError(str(exc)) from None


def _pick(cfg: dict, key: str, where: str):
    """The first of a field's names that the config sets (checked), or None."""
    for name in _ALIASES[key]:
        if cfg.get(name) is not None:
            return _int(cfg, name, where, hi=_LIMITS[key])
    return None


def from_hf_config(config: dict, where: str = "config.json") -> Arch:
    """Read an :class:`Arch` from a Transformers config.json (text part of multimodal ones)."""
    cfg = dict(config)
    text = cfg.get("text_config") or cfg.get("llm_config")
    if isinstance(text, dict):
        merged = {k: v for k, v in cfg.items() if k != "text_config"}
        merged.update(text)
        cfg = merged
    archs = cfg.get("architectures")
    model_type = cfg.get("model_type") or (archs[0] if isinstance(archs, list) and archs else "unknown")
    if not isinstance(model_type, str):
        raise VramError(f"{where}: model_type must be a string (got {type(model_type).__name__})")
    model_type = model_type.lower()
    values = {key: _pick(cfg, key, where) for key in _ALIASES}
    missing = [key for key in ("hidden_size", "num_layers", "num_heads", "vocab_size") if not values[key]]
    if missing:
        names = ", ".join(f"{k} (or {'/'.join(_ALIASES[k][1:3])})" for k in missing)
        raise VramError(f"{where}: unknown architecture fields, cannot size the model: no {names}")
    h, heads = values["hidden_size"], values["num_heads"]
    kv_heads = values["num_kv_heads"]
    if kv_heads is None:
        if cfg.get("multi_query") or model_type == "gpt_bigcode":
            kv_heads = 1
        else:
            kv_heads = heads
    if heads > h:
        raise VramError(f"{where}: {heads} attention heads for a hidden size of {h}: not a real model")
    head_dim = _int(cfg, "head_dim", where, lo=0, hi=1 << 20) or h // heads
    gated = model_type not in UNGATED
    inter = values["intermediate_size"]
    if inter is None:
        if gated:
            raise VramError(f"{where}: unknown architecture fields, cannot size the model: no intermediate_size")
        inter = 4 * h
    layers = values["num_layers"]
    window = None if cfg.get("sliding_window") is False else _int(cfg, "sliding_window", where, lo=0, hi=1 << 40)
    if cfg.get("use_sliding_window") is False:
        window = None
    sliding_layers = 0
    if window:
        layer_types = cfg.get("layer_types")
        if isinstance(layer_types, list) and layer_types:
            sliding_layers = sum(1 for t in layer_types if "sliding" in str(t))
        elif model_type == "gemma2":
            sliding_layers = layers // 2 + layers % 2
        elif model_type in ("gemma3", "gemma3_text"):
            pattern = _int(cfg, "sliding_window_pattern", where, lo=0, hi=1 << 12) or 6
            sliding_layers = layers - layers // pattern
        else:
            sliding_layers = layers
    experts = next((n for n in (_int(cfg, k, where, lo=0, hi=1 << 16)
                                for k in ("num_local_experts", "num_experts", "n_routed_experts")) if n), 0)
    tie = cfg.get("tie_word_embeddings")
    if tie is None:  # transformers' PretrainedConfig default
        tie = True
    return Arch(
        model_type=model_type, hidden_size=h, num_layers=layers, num_heads=heads, num_kv_heads=int(kv_heads),
        head_dim=int(head_dim), intermediate_size=int(inter), vocab_size=values["vocab_size"],
        tie_embeddings=bool(tie), max_context=values["max_context"] or 4096,
        sliding_window=window if sliding_layers else None, sliding_layers=sliding_layers,
        num_experts=experts if experts > 1 else 0,
        experts_per_token=_int(cfg, "num_experts_per_tok", where, default=0, lo=0, hi=1 << 16),
        moe_intermediate_size=_int(cfg, "moe_intermediate_size", where, default=0, lo=0),
        gated_ffn=gated, qkv_bias=bool(cfg.get("attention_bias")) or model_type in QKV_BIAS,
        qk_norm=model_type in QK_NORM, post_norms=model_type in POST_NORMS, fused=model_type in FUSED,
        torch_dtype=str(cfg.get("torch_dtype") or cfg.get("dtype") or "float16"),
    )


def from_gguf_metadata(meta: dict, vocab_size: int | None, where: str) -> Arch:
    """Read an :class:`Arch` from GGUF key/values (``{arch}.block_count`` and friends)."""
    arch = meta.get("general.architecture") or ""
    if not isinstance(arch, str):
        raise VramError(f"{where}: general.architecture must be a string")
    if not arch:
        raise VramError(f"{where}: GGUF has no general.architecture key")

    def get(key, default=None, lo=1, hi=_DIM):
        return _int(meta, f"{arch}.{key}", where, default=default, lo=lo, hi=hi)

    h, layers = get("embedding_length", hi=_LIMITS["hidden_size"]), get("block_count", hi=_LIMITS["num_layers"])
    heads = get("attention.head_count", lo=0, hi=_LIMITS["num_heads"])
    missing = [k for k, v in (("embedding_length", h), ("block_count", layers),
                              ("attention.head_count", heads)) if not v]
    if missing:
        raise VramError(f"{where}: unknown architecture fields in GGUF: no {', '.join(arch + '.' + m for m in missing)}")
    if heads > h:
        raise VramError(f"{where}: {heads} attention heads for an embedding length of {h}: not a real model")
    kv_heads = get("attention.head_count_kv", lo=0, hi=_LIMITS["num_kv_heads"]) or heads
    head_dim = get("attention.key_length", lo=0, hi=1 << 20) or h // heads
    window = get("attention.sliding_window", lo=0, hi=1 << 40)
    model_type = {"gemma3": "gemma3", "gemma2": "gemma2"}.get(arch, arch)
    sliding_layers = 0
    if window and arch in ("gemma2",):
        sliding_layers = layers // 2 + layers % 2
    elif window and arch in ("gemma3", "gemma3n", "cohere2"):
        sliding_layers = layers - layers // 6
    elif window:
        sliding_layers = layers
    experts = get("expert_count", 0, lo=0, hi=1 << 16)
    return Arch(
        model_type=model_type, hidden_size=int(h), num_layers=int(layers), num_heads=int(heads),
        num_kv_heads=int(kv_heads), head_dim=int(head_dim),
        intermediate_size=get("feed_forward_length", lo=0) or 4 * h,
        vocab_size=int(vocab_size or get("vocab_size", hi=_LIMITS["vocab_size"]) or 32000),
        tie_embeddings=False, max_context=get("context_length", lo=0, hi=_LIMITS["max_context"]) or 4096,
        sliding_window=int(window) if window and sliding_layers else None, sliding_layers=sliding_layers,
        num_experts=experts if experts > 1 else 0, experts_per_token=get("expert_used_count", 0, lo=0, hi=1 << 16),
        moe_intermediate_size=get("expert_feed_forward_length", 0, lo=0),
        qk_norm=model_type in QK_NORM, post_norms=model_type in POST_NORMS,
    )
