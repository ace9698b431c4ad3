"""Weight formats a TGWUI user meets, and the exact bytes each tensor takes in them.

Storage rules, per format (sources in the comments):
- fp32/fp16/bf16: 4/2/2 bytes a parameter.
- ``int8`` (bitsandbytes LLM.int8, ``--load-in-8bit``): each Linear weight as int8 plus one fp32
  scale per output row (``Int8Params.SCB``). Transformers leaves ``lm_head`` (its
  ``get_keys_to_not_convert``), the embeddings (not Linear) and the norms in the compute dtype.
- ``nf4``/``fp4`` (``--load-in-4bit``): two weights a byte plus one fp32 absmax per block of 64
  (bitsandbytes ``blocksize=64``): 4.5 bits. ``nf4-dq`` (``--use_double_quant``) stores the absmax
  as 8 bits with an fp32 absmax per 256 blocks: ~4.127 bits. Same unquantised layers as int8.
- ``gptq-<b>bit-g<g>``: AutoGPTQ/GPTQModel packing: ``qweight`` b/8 bytes a weight, per group of g
  input rows an fp16 scale and a b-bit zero per output column, ``g_idx`` one int32 per input
  row; g=-1 is one group. Embeddings and lm_head stay fp16 (GPTQ does not quantise them).
- ``awq-4bit-g128``: AutoAWQ GEMM packing: as GPTQ without ``g_idx``.
- ``exl2-<bpw>bpw``: ExLlamaV2's average bits per weight over the decoder's linear layers (the
  scales are inside the bpw), lm_head at ``head_bits`` 6 (convert.py's default), embeddings fp16
  kept in system RAM (ExLlamaV2 never moves them to the GPU).
- ``gguf-<TYPE>``: per-tensor ggml types from :mod:`pocketpack.vram.ggml`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pocketpack.vram import ggml
from pocketpack.vram.arch import Tensor
from pocketpack.vram.errors import VramError

FLOAT_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}
SIMPLE = ("fp32", "fp16", "bf16", "int8", "nf4", "nf4-dq", "fp4")
FORMAT_HELP = ("fp32 fp16 bf16 int8 nf4 nf4-dq fp4, gptq-<bits>bit-g<group> (g-1: no grouping), "
               "awq-4bit-g128, gguf-<TYPE> (e.g. gguf-Q4_K_M), exl2-<bpw>bpw")
EXL2_HEAD_BITS = 6


@dataclass(frozen=True)
class Format:
    """A parsed ``--format`` value."""

    name: str            # canonical spelling, e.g. "gptq-4bit-g128"
    kind: str            # float, int8, bnb4, gptq, awq, gguf, exl2
    loader: str          # the TGWUI loader that runs it
    bits: float = 16.0   # nominal bits a weight of the quantised layers
    group: int = 0       # gptq/awq group size (-1: one group)
    ftype: str = ""      # gguf file type, e.g. "Q4_K_M"
    double_quant: bool = False

    @property
    def quantises_at_load(self) -> bool:
        """bitsandbytes formats are made from an fp16/bf16 checkpoint while loading."""
        return self.kind in ("int8", "bnb4")


def parse_format(text: str) -> Format:
    """Parse a format name; a VramError names the accepted forms."""
    raw = (text or "").strip()
    low = raw.lower()
    if low in FLOAT_BYTES:
        return Format(low, "float", "Transformers", bits=FLOAT_BYTES[low] * 8)
    if low == "int8":
        return Format("int8", "int8", "Transformers", bits=8)
    if low in ("nf4", "fp4", "nf4-dq", "fp4-dq"):
        return Format(low, "bnb4", "Transformers", bits=4, double_quant=low.endswith("-dq"))
    m = re.fullmatch(r"gptq-(\d)bit-g(-?\d+)", low)
    if m:
        bits, group = int(m.group(1)), int(m.group(2))
        if bits not in (2, 3, 4, 8) or (group != -1 and group <= 0):
            raise VramError(f"format {raw!r}: GPTQ takes 2, 3, 4 or 8 bits and a group size > 0 or -1")
        return Format(low, "gptq", "Transformers", bits=bits, group=group)
    m = re.fullmatch(r"awq-(\d)bit-g(\d+)", low)
    if m:
        if m.group(1) != "4":
            raise VramError(f"format {raw!r}: AWQ checkpoints are 4-bit (awq-4bit-g128)")
        return Format(low, "awq", "Transformers", bits=4, group=int(m.group(2)))
    m = re.fullmatch(r"gguf-(.+)", raw, flags=re.I)
    if m:
        ftype = ggml.normalise_ftype(m.group(1))
        if ftype is None:
            raise VramError(f"format {raw!r}: unknown llama.cpp type; known: {' '.join(ggml.FILE_TYPES)}")
        return Format(f"gguf-{ftype}", "gguf", "llama.cpp", bits=_gguf_nominal_bits(ftype), ftype=ftype)
    m = re.fullmatch(r"exl2-(\d+(?:\.\d+)?)bpw", low)
    if m:
        bpw = float(m.group(1))
        if not 2.0 <= bpw <= 8.5:
            raise VramError(f"format {raw!r}: EXL2 bits per weight run from 2.0 to 8.5")
        return Format(f"exl2-{bpw:g}bpw", "exl2", "ExLlamav2", bits=bpw)
    raise VramError(f"unknown format {raw!r}; use one of: {FORMAT_HELP}")


def _gguf_nominal_bits(ftype: str) -> float:
    base = ggml.BASE_TYPE[ftype]
    block, size = ggml._SIZES[base]
    return size * 8 / block


def _is_linear(t: Tensor) -> bool:
    """A decoder Linear weight: what int8/4-bit/GPTQ/AWQ/EXL2 quantise."""
    return t.is_matrix and t.category not in ("token_embd", "output", "norm") and not t.name.endswith("bias") \
        and "gate_inp" not in t.name and "router" not in t.name


def _in_out(t: Tensor) -> tuple[int, int, int]:
    """(input features, output features, copies) of a linear weight in ggml order."""
    copies = 1
    for dim in t.shape[2:]:
        copies *= int(dim)
    return int(t.shape[0]), int(t.shape[1]), copies


def tensor_bytes(t: Tensor, fmt: Format, compute_bytes: int = 2) -> int:
    """Bytes ``t`` takes in memory once loaded in ``fmt`` (gguf handled by :func:`gguf_types`)."""
    n = t.n_params
    if fmt.kind == "float":
        return n * FLOAT_BYTES[fmt.name]
    if not _is_linear(t):
        return n * compute_bytes
    k, o, copies = _in_out(t)
    if fmt.kind == "int8":
        return n + 4 * o * copies
    if fmt.kind == "bnb4":
        blocks = -(-n // 64)
        if fmt.double_quant:
            return n // 2 + blocks + 4 * -(-blocks // 256) + 16
        return n // 2 + 4 * blocks
    if fmt.kind in ("gptq", "awq"):
        groups = 1 if fmt.group == -1 else -(-k // fmt.group)
        packed = int(n * fmt.bits / 8)
        scales = groups * o * 2 * copies
        zeros = int(groups * o * fmt.bits / 8) * copies
        g_idx = 4 * k * copies if fmt.kind == "gptq" else 0
        return packed + scales + zeros + g_idx
    if fmt.kind == "exl2":
        return int(n * fmt.bits / 8)
    raise ValueError(fmt.kind)


def gguf_types(tensors: list[Tensor], fmt: Format, arch, rules: str = "current") -> list[str]:
    return ggml.plan_types(fmt.ftype, tensors, arch.num_layers, arch.n_gqa, arch.num_experts, arch.model_type,
                           rules=rules)


@dataclass
class WeightPlan:
    """Where a format's weights go: per layer, plus the parts outside the layers."""

    per_layer: dict[int, int]      # bytes of each decoder layer
    input_bytes: int               # token embeddings (llama.cpp and ExLlamaV2 keep them in RAM)
    output_bytes: int              # lm_head / output (tied: a copy of the embeddings on the GPU)
    other_bytes: int               # final norm and anything unplaced
    file_bytes: int                # size on disk in this format
    largest_linear_fp16: int       # bytes of the largest linear weight dequantised to fp16
    input_on_gpu: bool = True

    @property
    def total(self) -> int:
        return sum(self.per_layer.values()) + self.input_bytes + self.output_bytes + self.other_bytes


def weight_plan(tensors: list[Tensor], fmt: Format, arch, compute_bytes: int = 2, rules: str = "current"
                ) -> WeightPlan:
    """Size every tensor in ``fmt`` and group the bytes by where the loader places them.

    ``rules`` is the llama.cpp quant-mix rule set for gguf formats (:mod:`pocketpack.vram.ggml`)."""
    per_layer: dict[int, int] = {i: 0 for i in range(arch.num_layers)}
    inp = out = other = 0
    file_bytes = 0
    largest = 0
    tied = not any(t.category == "output" for t in tensors)
    types = gguf_types(tensors, fmt, arch, rules) if fmt.kind == "gguf" else None
    for idx, t in enumerate(tensors):
        if types is not None:
            size = ggml.type_bytes(types[idx], t.n_params)
            disk = size
        elif fmt.kind == "exl2" and t.category == "output":
            size = disk = int(t.n_params * EXL2_HEAD_BITS / 8)
        else:
            size = tensor_bytes(t, fmt, compute_bytes)
            disk = size if not fmt.quantises_at_load else t.n_params * compute_bytes
        if _is_linear(t):
            largest = max(largest, 2 * t.n_params)
        file_bytes += disk
        if t.category == "token_embd":
            inp += size
            if tied and fmt.kind in ("exl2",):
                out += int(t.n_params * EXL2_HEAD_BITS / 8)
        elif t.category == "output":
            out += size
        elif t.layer is not None and t.layer in per_layer:
            per_layer[t.layer] += size
        else:
            other += size
    if tied and fmt.kind == "gguf":
        # llama.cpp keeps the input embeddings in host memory and puts a copy on the GPU as output
        out += inp
    if fmt.kind == "gguf":
        file_bytes += ggml.metadata_bytes(arch.vocab_size, len(tensors))
    return WeightPlan(per_layer, inp, out, other, file_bytes, largest,
                      input_on_gpu=fmt.kind not in ("gguf", "exl2"))
