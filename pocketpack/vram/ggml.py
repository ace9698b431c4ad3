"""GGUF storage: bytes per ggml type and the tensor types llama-quantize picks for a file type.

The block sizes come from the ``gguf`` package (``GGML_QUANT_SIZES``) when it is installed,
else from the same published table below. The per-tensor type choice re-states the rules of
llama.cpp's ``src/llama-quant.cpp`` (``llama_tensor_get_type_impl``, ``tensor_type_fallback``,
``tensor_allows_quantization``; read at ggml-org/llama.cpp 007dbbf, 2026) for the file types a
TGWUI user meets: the ``_S/_M/_L`` K-quant mixes give more bits to attn_v, ffn_down and the
output tensor on chosen layers, and a tensor whose row length is not a multiple of the
block size falls back to a 32-wide type. Predicting a quantised file's size from a
config.json therefore lands within a fraction of a percent of the real file.

The mixes changed over time, and files on the Hub were made by the llama.cpp of their day, so
``rules`` picks a rule set: ``"current"`` (today's llama-quantize, the default: what a file made
now will be) or ``"2023"``: ``get_k_quant_type`` as it stood from autumn 2023 until the January
2024 rework (read at llama.cpp's ``llama.cpp`` of 2023-11, e.g. the Cebtenzzre/llama.cpp fork at
08ef054). Two differences matter for sizes. Q2_K then put attn_v, attn_output, ffn_down, ffn_gate and
ffn_up in Q3_K (today only attn_v/attn_output/ffn_down get more bits). And the rules matched
exact names (``"ffn_down.weight"``), while Mixtral's experts were stored then as
``blk.N.ffn_down.E.weight``: they matched nothing, so an MoE file of that era has no ffn_down
upgrade at all -- which is why TheBloke's Mixtral-8x7B Q4_K_M (llama.cpp 8a7b2fa, 2023-12) is as
large as its Q4_0 (both 26.4 GB), where today's rules (experts as one ``ffn_down_exps`` tensor,
layer parsed from the name, Q6_K in the "more bits" layers) give 28.4 GB.
"""

from __future__ import annotations

from pocketpack.vram.arch import Tensor

# (elements per block, bytes per block) for each ggml type
_SIZES = {
    "F32": (1, 4), "F16": (1, 2), "BF16": (1, 2), "F64": (1, 8), "I8": (1, 1), "I16": (1, 2),
    "I32": (1, 4), "I64": (1, 8), "Q4_0": (32, 18), "Q4_1": (32, 20), "Q5_0": (32, 22), "Q5_1": (32, 24),
    "Q8_0": (32, 34), "Q8_1": (32, 40), "Q2_K": (256, 84), "Q3_K": (256, 110), "Q4_K": (256, 144),
    "Q5_K": (256, 176), "Q6_K": (256, 210), "Q8_K": (256, 292), "IQ2_XXS": (256, 66), "IQ2_XS": (256, 74),
    "IQ3_XXS": (256, 98), "IQ1_S": (256, 50), "IQ4_NL": (32, 18), "IQ3_S": (256, 110), "IQ2_S": (256, 82),
    "IQ4_XS": (256, 136), "IQ1_M": (256, 56), "TQ1_0": (256, 54), "TQ2_0": (256, 66), "MXFP4": (32, 17),
}
try:  # the package is the reference; the table above is its copy for installs without it
    import gguf as _gguf

    _SIZES.update({t.name: tuple(v) for t, v in _gguf.GGML_QUANT_SIZES.items()})
except Exception:  # noqa: BLE001 - gguf is optional (and may fail to import) for config-only estimates  # pragma: no cover
    pass

# llama.cpp file types (general.file_type) by number, and the base tensor type of each
FTYPE_NAMES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
    12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
    19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL",
    26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16",
    36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE",
}
BASE_TYPE = {
    "F32": "F32", "F16": "F16", "BF16": "BF16", "Q4_0": "Q4_0", "Q4_1": "Q4_1", "Q5_0": "Q5_0",
    "Q5_1": "Q5_1", "Q8_0": "Q8_0", "Q2_K": "Q2_K", "Q2_K_S": "Q2_K", "Q3_K_S": "Q3_K", "Q3_K_M": "Q3_K",
    "Q3_K_L": "Q3_K", "Q4_K_S": "Q4_K", "Q4_K_M": "Q4_K", "Q5_K_S": "Q5_K", "Q5_K_M": "Q5_K",
    "Q6_K": "Q6_K", "IQ2_XXS": "IQ2_XXS", "IQ2_XS": "IQ2_XS", "IQ2_S": "IQ2_XS", "IQ2_M": "IQ2_S",
    "IQ3_XXS": "IQ3_XXS", "IQ3_XS": "IQ3_S", "IQ3_S": "IQ3_S", "IQ3_M": "IQ3_S", "IQ1_S": "IQ1_S",
    "IQ1_M": "IQ1_M", "IQ4_NL": "IQ4_NL", "IQ4_XS": "IQ4_XS", "TQ1_0": "TQ1_0", "TQ2_0": "TQ2_0",
    "MXFP4_MOE": "MXFP4",
}
# llama-quantize accepts these short names for the _M mixes
ALIASES = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M", "FP16": "F16", "FP32": "F32"}
FILE_TYPES = tuple(BASE_TYPE)
RULE_SETS = ("current", "2023")

_IQ_LOW = {"IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ1_S", "IQ1_M"}
_FLOAT = {"F32", "F16", "BF16"}


def normalise_ftype(name: str) -> str | None:
    """``q4_k_m`` → ``Q4_K_M``; None when llama.cpp has no such file type."""
    key = name.strip().upper().replace("-", "_")
    key = ALIASES.get(key, key)
    return key if key in BASE_TYPE else None


def type_bytes(ggml_type: str, n_elements: int) -> int:
    """Bytes ``n_elements`` take in ``ggml_type`` (whole blocks)."""
    block, size = _SIZES[ggml_type]
    return -(-n_elements // block) * size


def block_size(ggml_type: str) -> int:
    return _SIZES[ggml_type][0]


def _more_bits(i: int, n: int) -> bool:
    """The layers the _M mixes upgrade: the first and last eighth and every third between."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def _quantizable(t: Tensor) -> bool:
    name = t.name
    return (len(t.shape) >= 2 and name.endswith("weight") and "_norm.weight" not in name
            and "ffn_gate_inp.weight" not in name and "altup" not in name and "laurel" not in name
            and "per_layer_model_proj" not in name and "position_embd" not in name
            and "token_types" not in name and "ssm_conv1d" not in name and "attn_rel_b" not in name)


def _fallback(t: Tensor, new: str, rules: str = "current") -> str:
    """A type whose block does not divide the row length falls back as llama.cpp does."""
    ncols = int(t.shape[0])
    if ncols % block_size(new) == 0:
        return new
    if rules == "2023":  # the 2023 table: Q3_K fell back to Q4_1, not Q4_0
        new = {"Q2_K": "Q4_0", "Q3_K": "Q4_1", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}.get(new, "F16")
        return new if ncols % block_size(new) == 0 else "F16"
    table = {"IQ1_S": "IQ4_NL", "IQ1_M": "IQ4_NL", "IQ2_XXS": "IQ4_NL", "IQ2_XS": "IQ4_NL",
             "IQ2_S": "IQ4_NL", "IQ3_XXS": "IQ4_NL", "IQ3_S": "IQ4_NL", "IQ4_XS": "IQ4_NL",
             "Q2_K": "Q4_0", "Q3_K": "Q4_0", "TQ1_0": "Q4_0", "TQ2_0": "Q4_0",
             "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}
    new = table.get(new, "F16")
    return new if ncols % block_size(new) == 0 else "F16"


class QuantPlan:
    """Chooses each tensor's type for one file type, walking the tensors as llama-quantize does."""

    def __init__(self, ftype: str, tensors: list[Tensor], n_layers: int, n_gqa: int, n_expert: int = 0,
                 model_type: str = "", source_float: str = "F16", rules: str = "current"):
        if rules not in RULE_SETS:
            raise ValueError(f"unknown llama.cpp rule set {rules!r}; use one of {RULE_SETS}")
        # the 2023 rules knew no IQ types: files of those types follow today's rules
        self.rules = "current" if ftype.startswith(("IQ", "TQ", "MXFP")) else rules
        self.ftype = ftype
        self.base = BASE_TYPE[ftype]
        self.n_layers = max(1, n_layers)
        self.n_gqa = n_gqa
        self.n_expert = n_expert
        self.falcon = model_type == "falcon"
        self.is_70b = model_type == "llama" and n_layers == 80
        self.source_float = source_float  # what unquantisable 2D tensors stay as
        self.tied = not any(t.category == "output" for t in tensors)
        self.n_attn_v = sum(1 for t in tensors if t.category in ("attn_v", "attn_qkv"))
        self.i_attn_v = 0
        # 2023: counters over the tensors whose names matched exactly (dense layers only)
        self.n_ffn_down_2023 = sum(1 for t in tensors if t.category == "ffn_down" and len(t.shape) == 2)
        self.n_attn_v_2023 = sum(1 for t in tensors if t.category == "attn_v")
        self.i_ffn_down_2023 = 0

    def type_for(self, t: Tensor) -> str:
        if len(t.shape) < 2:
            return "F32"
        if self.base in _FLOAT:
            return self.base
        if not _quantizable(t):
            return "F32" if "ffn_gate_inp" in t.name else self.source_float
        if self.rules == "2023":
            return _fallback(t, self._mix_2023(t), "2023")
        return _fallback(t, self._mix(t))

    def _mix_2023(self, t: Tensor) -> str:
        """``get_k_quant_type`` of late 2023: exact-name rules for output, attn_v, ffn_down, attn_output,
        attn_qkv, ffn_gate/ffn_up; MoE expert tensors (then ``ffn_*.E.weight``) matched none of them."""
        f, new, cat = self.ftype, self.base, t.category
        expert = len(t.shape) > 2 and int(t.shape[2]) > 1
        if cat == "output":  # only output.weight: tied embeddings kept the base type
            if self.falcon or int(t.shape[0]) % 256 != 0:
                return "Q8_0"
            return new if new == "Q8_0" else "Q6_K"
        if expert:
            return new
        if cat == "attn_v":
            i, n = self.i_attn_v, self.n_attn_v_2023
            self.i_attn_v += 1
            if f == "Q2_K":
                new = "Q3_K"
            elif f == "Q3_K_M":
                new = "Q5_K" if i < 2 else "Q4_K"
            elif f == "Q3_K_L":
                new = "Q5_K"
            elif f in ("Q4_K_M", "Q5_K_M") and _more_bits(i, n):
                new = "Q6_K"
            elif f == "Q4_K_S" and i < 4:
                new = "Q5_K"
            if self.is_70b and new in ("Q3_K", "Q4_K"):
                new = "Q5_K"
            return new
        if cat == "ffn_down":
            i, n = self.i_ffn_down_2023, self.n_ffn_down_2023
            self.i_ffn_down_2023 += 1
            if f == "Q2_K":
                return "Q3_K"
            if f == "Q3_K_M":
                return "Q5_K" if i < 2 else ("Q4_K" if not self.falcon or _more_bits(i, n) else "Q3_K")
            if f == "Q3_K_L":
                return "Q4_K" if self.falcon else "Q5_K"
            if f == "Q4_K_M":
                if self.falcon:
                    return "Q6_K" if i < 2 else ("Q5_K" if _more_bits(i, n) else "Q4_K")
                return "Q6_K" if _more_bits(i, n) else new
            if f == "Q5_K_M" and _more_bits(i, n):
                return "Q6_K"
            if f == "Q4_K_S" and not self.falcon and i < 4:
                return "Q5_K"
            return new
        if cat == "attn_output":
            if self.falcon:
                return "Q4_K" if f == "Q3_K_L" else new
            return {"Q2_K": "Q3_K", "Q3_K_M": "Q4_K", "Q3_K_L": "Q5_K"}.get(f, new)
        if cat == "attn_qkv":
            return {"Q3_K_M": "Q4_K", "Q3_K_L": "Q4_K", "Q4_K_M": "Q5_K", "Q5_K_M": "Q6_K"}.get(f, new)
        if cat in ("ffn_gate", "ffn_up") and f == "Q2_K":
            return "Q3_K"
        return new

    def _mix(self, t: Tensor) -> str:
        f, new, cat = self.ftype, self.base, t.category
        i = t.layer if t.layer is not None else 0
        n = self.n_layers
        if cat == "output" or (self.tied and cat == "token_embd"):
            if self.falcon or int(t.shape[0]) % block_size(new) != 0:
                return "Q8_0"
            if f in ("IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M"):
                return "Q5_K"
            return new if new == "Q8_0" else "Q6_K"
        if f == "MXFP4_MOE":
            return "MXFP4" if len(t.shape) > 2 and t.shape[2] > 1 else "Q8_0"
        if cat == "token_embd":
            if f in ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ1_M"):
                return "Q2_K"
            if f in ("IQ2_S", "IQ2_M", "IQ3_XXS"):
                return "IQ3_S"
            if f in ("TQ1_0", "TQ2_0"):
                return "Q4_K"
            return new
        if f in _IQ_LOW:
            return self._mix_iq_low(t, new, cat, i, n)
        if cat in ("attn_v", "attn_qkv", "attn_kv_b"):  # llama.cpp treats fused qkv like attn_v
            return self._mix_attn_v(new, f)
        if cat == "attn_k":
            if self.n_expert == 8:
                return "Q8_0"
            return {"IQ3_XS": "IQ3_XXS", "IQ3_XXS": "IQ2_S"}.get(f, new)
        if cat == "attn_q":
            return {"IQ3_XS": "IQ3_XXS", "IQ3_XXS": "IQ2_S"}.get(f, new)
        if cat == "ffn_down":
            return self._mix_ffn_down(new, f, i, n)
        if cat == "attn_output":
            if self.falcon:
                return "Q4_K" if f == "Q3_K_L" else new
            if self.n_expert == 8:
                heavy = {"Q2_K", "IQ3_XS", "IQ3_XXS", "Q3_K_S", "Q3_K_M", "IQ4_NL", "Q4_K_S", "Q4_K_M",
                         "IQ3_S", "IQ3_M", "IQ4_XS"}
                return "Q5_K" if f in heavy else new
            return {"Q2_K": "Q3_K", "IQ3_XXS": "IQ3_S", "Q3_K_M": "Q4_K", "Q3_K_L": "Q5_K",
                    "IQ3_M": "Q4_K"}.get(f, new)
        if cat in ("ffn_gate", "ffn_up"):
            if f == "IQ3_XS" and n // 8 <= i < 7 * n // 8:
                return "IQ3_XXS"
            return new
        return new

    def _mix_iq_low(self, t: Tensor, new: str, cat: str, i: int, n: int) -> str:
        f = self.ftype
        s_or_m = f in ("IQ2_S", "IQ2_M")
        if cat in ("attn_v", "attn_qkv"):
            self.i_attn_v += 1
            if self.n_gqa >= 4 or self.n_expert >= 4:
                return "Q4_K"
            return "IQ3_S" if s_or_m else "Q2_K"
        if self.n_expert == 8 and cat == "attn_k":
            return "Q4_K"
        if cat == "ffn_down":
            return ("IQ3_S" if s_or_m else "Q2_K") if i < n // 8 else new
        if cat == "attn_output":
            if self.n_expert == 8:
                return "Q5_K"
            if f in ("IQ1_S", "IQ1_M"):
                return "IQ2_XXS"
            if s_or_m:
                return "IQ3_S"
        return new

    def _mix_attn_v(self, new: str, f: str) -> str:
        i, gqa = self.i_attn_v, self.n_gqa
        self.i_attn_v += 1
        if f == "Q2_K":
            new = "Q4_K" if gqa >= 4 else "Q3_K"
        elif f == "Q2_K_S" and gqa >= 4:
            new = "Q4_K"
        elif f == "IQ3_XXS":
            new = "Q4_K" if gqa >= 4 else "IQ3_S"
        elif f in ("IQ3_XS", "IQ3_S") and gqa >= 4:
            new = "Q4_K"
        elif f == "IQ3_M":
            new = "Q4_K"
        elif f == "Q3_K_M":
            new = "Q5_K" if i < 2 else "Q4_K"
        elif f == "Q3_K_L":
            new = "Q5_K"
        elif f in ("IQ4_NL", "IQ4_XS") and gqa >= 4:
            new = "Q5_K"
        elif f in ("Q4_K_M", "Q5_K_M") and _more_bits(i, self.n_attn_v):
            new = "Q6_K"
        elif f == "Q4_K_S" and i < 4:
            new = "Q5_K"
        if self.is_70b and new in ("Q3_K", "Q4_K"):
            new = "Q5_K"
        if self.n_expert == 8:
            new = "Q8_0"
        return new

    def _mix_ffn_down(self, new: str, f: str, i: int, n: int) -> str:
        if f == "Q2_K":
            return "Q3_K"
        if f == "Q2_K_S":
            return "Q4_K" if i < n // 8 else new
        if f == "IQ3_XXS":  # without an importance matrix
            return "Q4_K" if i < n // 8 else "Q3_K"
        if f == "Q3_K_M":
            if i < n // 16:
                return "Q5_K"
            return "Q4_K" if (not self.falcon or _more_bits(i, n)) else "Q3_K"
        if f == "IQ3_M" and (i < n // 8 or (self.n_expert == 8 and _more_bits(i, n))):
            return "Q4_K"
        if f == "Q3_K_L":
            return "Q4_K" if self.falcon else "Q5_K"
        if f == "Q4_K_M":
            if self.falcon:
                return "Q6_K" if i < n // 16 else ("Q5_K" if _more_bits(i, n) else "Q4_K")
            return "Q6_K" if _more_bits(i, n) else new
        if f in ("IQ4_NL", "IQ4_XS") and i < n // 8:
            return "Q5_K"
        if f == "Q5_K_M" and _more_bits(i, n):
            return "Q6_K"
        if f == "Q4_K_S" and not self.falcon and i < n // 8:
            return "Q5_K"
        return new


def plan_types(ftype: str, tensors: list[Tensor], n_layers: int, n_gqa: int, n_expert: int = 0,
               model_type: str = "", rules: str = "current") -> list[str]:
    """The ggml type of each tensor in a llama-quantize'd file of ``ftype``, in tensor order."""
    plan = QuantPlan(ftype, tensors, n_layers, n_gqa, n_expert, model_type, rules=rules)
    order = sorted(range(len(tensors)), key=lambda k: (tensors[k].layer if tensors[k].layer is not None else -1, k))
    types = [""] * len(tensors)
    for k in order:
        types[k] = plan.type_for(tensors[k])
    return types


def metadata_bytes(vocab_size: int, n_tensors: int) -> int:
    """Header bytes of a GGUF: the tokenizer (~25 bytes a token: string, score, type) and tensor infos."""
    return 25 * vocab_size + 96 * n_tensors + 4096
