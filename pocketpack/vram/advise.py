"""What runs on this machine, best first: formats ranked by published quality loss.

Quality is the expected perplexity increase over the 16-bit model, in percent:
- GGUF types: llama.cpp's own table, ``tools/quantize/quantize.cpp`` QUANT_OPTIONS ("+0.1754
  ppl @ Llama-3-8B" for Q4_K_M, ...; https://github.com/ggml-org/llama.cpp/blob/master/tools/quantize/quantize.cpp),
  divided by Llama-3-8B's wikitext-2 perplexity with llama.cpp's ``llama-perplexity`` (~6.23,
  as reported in llama.cpp discussion #406 and the k-quants PR #1684 follow-ups).
- GPTQ and AWQ 4-bit g128: AWQ paper (Lin et al. 2023, arXiv:2306.00978) Table 4, Llama-2-7B
  wikitext-2: FP16 5.47, GPTQ-R 5.63 (+2.9%), AWQ 5.60 (+2.4%); INT3-g128 GPTQ-R 6.42 (+17%).
- bitsandbytes: LLM.int8() shows no perplexity loss up to 175B (Dettmers et al. 2022,
  arXiv:2208.07339, Table 1) — we charge +0.1%; NF4 beats FP4 and Int4 (QLoRA, Dettmers et al.
  2023, arXiv:2305.14314, Table 2: Pile-CC mean ppl Int4 34.34, FP4 31.07, NF4+DQ 27.41) and
  sits between AWQ-g128 and RTN-g128 (+4.8% in the AWQ paper) for blocks of 64: we use +3.5%
  for NF4 (double quant changes nothing, QLoRA §3) and +6% for FP4.
- EXL2: by its bits per weight, interpolated on the llama.cpp curve above (same bpw, similar
  error; the exllamav2 README compares them at equal bpw).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pocketpack.vram import ggml
from pocketpack.vram.arch import from_hf_config
from pocketpack.vram.errors import VramError
from pocketpack.vram.estimate import Estimate, estimate
from pocketpack.vram.formats import parse_format
from pocketpack.vram.inspect import ModelInfo
from pocketpack.vram.machine import Machine

LLAMA3_8B_PPL = 6.23
# +ppl @ Llama-3-8B from llama.cpp's quantize.cpp; IQ types from their bpw on the same curve
_GGUF_PPL = {"Q8_0": 0.0026, "Q6_K": 0.0217, "Q5_K_M": 0.0569, "Q5_K_S": 0.1049, "Q5_1": 0.1062,
             "Q5_0": 0.1316, "Q4_K_M": 0.1754, "Q4_K_S": 0.2689, "Q4_1": 0.4511, "Q4_0": 0.4685,
             "Q3_K_L": 0.5562, "Q3_K_M": 0.6569, "Q3_K_S": 1.6321, "Q2_K_S": 3.1836, "Q2_K": 3.5199,
             "F16": 0.0, "BF16": 0.0, "F32": 0.0}
QUALITY_LOSS_PCT = {"fp32": 0.0, "bf16": 0.0, "fp16": 0.0, "int8": 0.1, "nf4": 3.5, "nf4-dq": 3.5,
                    "fp4": 6.0, "fp4-dq": 6.0, "gptq-4bit-g128": 2.9, "awq-4bit-g128": 2.4,
                    "gptq-3bit-g128": 17.4, "gptq-8bit-g128": 0.1,
                    **{f"gguf-{k}": v / LLAMA3_8B_PPL * 100 for k, v in _GGUF_PPL.items()}}
# (bits per weight of Llama-3-8B's file, loss %) for interpolating by bpw
_CURVE = sorted((float(s) * 8 * 1024 ** 3 / 8.03e9, _GGUF_PPL[k] / LLAMA3_8B_PPL * 100) for k, s in
                (("Q2_K", 2.96), ("Q3_K_M", 3.74), ("Q3_K_L", 4.03), ("Q4_K_S", 4.37), ("Q4_K_M", 4.58),
                 ("Q5_K_M", 5.33), ("Q6_K", 6.14), ("Q8_0", 7.96)))

# Ranking by speed as well as quality (see :func:`rank_score`)
RAM_SLOWDOWN = 10.0        # a weight read from system RAM costs ~10x one read from VRAM: token generation
                           # is memory-bound, and dual-channel DDR4/DDR5 moves 50-90 GB/s against the
                           # 300-1000 GB/s of the GPUs the tiers cover
OFFLOAD_POINTS = 2.0       # any offload: a CPU-GPU round trip per token and CPU threads busy
PCT_PER_HALVING = 5.0      # exchange rate: halving the generation speed costs as much as +5% perplexity,
                           # i.e. about the step from Q4_K_M to Q3_K_L on Llama-3-8B in llama.cpp's table

CANDIDATE_FORMATS = ("bf16", "fp16", "int8", "gguf-Q8_0", "gguf-Q6_K", "gguf-Q5_K_M", "awq-4bit-g128",
                     "gptq-4bit-g128", "gguf-Q4_K_M", "nf4-dq", "gguf-Q4_K_S", "gguf-IQ4_XS",
                     "gguf-Q3_K_L", "gguf-Q3_K_M", "gguf-Q2_K")
CONTEXTS = (131072, 65536, 32768, 16384, 8192, 4096, 2048)
RAM_RESERVE_GIB = 2.0     # what the OS, the browser and TGWUI itself keep
VRAM_RESERVE_GIB = 0.25   # display, other processes


def quality_loss(fmt_name: str) -> float:
    """Expected perplexity increase in percent (lower is better)."""
    if fmt_name in QUALITY_LOSS_PCT:
        return QUALITY_LOSS_PCT[fmt_name]
    fmt = parse_format(fmt_name)
    bits = fmt.bits
    if fmt.kind == "gguf":
        block, size = ggml._SIZES[ggml.BASE_TYPE[fmt.ftype]]
        bits = size * 8 / block + 0.3  # the mixes add ~0.3 bpw (output and attn_v in Q6_K)
    if fmt.kind == "gptq":
        bits = fmt.bits + 0.25
    if bits >= _CURVE[-1][0]:
        return _CURVE[-1][1]
    if bits <= _CURVE[0][0]:
        return _CURVE[0][1] * (_CURVE[0][0] / bits) ** 3
    for (b0, q0), (b1, q1) in zip(_CURVE, _CURVE[1:]):
        if b0 <= bits <= b1:
            return q0 + (q1 - q0) * (bits - b0) / (b1 - b0)
    return 100.0


@dataclass
class Option:
    """One configuration that fits, with its estimate."""

    format: str
    ctx: int
    cache_type: str
    gpu_layers: int | None
    quality_loss_pct: float
    estimate: Estimate
    placement: str            # "gpu", "partial", "cpu"
    ram_share: float = 0.0    # share of the weight bytes read from system RAM for every token

    @property
    def slowdown(self) -> float:
        """Expected time per generated token relative to the same format fully on the GPU."""
        share = 1.0 if self.placement == "cpu" else self.ram_share
        return (1.0 - share) + share * RAM_SLOWDOWN

    @property
    def score(self) -> float:
        return rank_score(self.quality_loss_pct, self.slowdown, offloaded=self.placement != "gpu")

    def to_dict(self) -> dict:
        return {"format": self.format, "ctx": self.ctx, "cache_type": self.cache_type,
                "gpu_layers": self.gpu_layers, "quality_loss_pct": round(self.quality_loss_pct, 2),
                "placement": self.placement, "loader": self.estimate.loader,
                "expected_slowdown": round(self.slowdown, 2), "rank_score": round(self.score, 2),
                "total_gib": round(self.estimate.total_gib, 2), "ram_gib": round(self.estimate.ram_gib, 2),
                "file_gib": round(self.estimate.file_gib, 2)}


@dataclass
class Advice:
    model: str
    machine: Machine
    options: list[Option] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)

    @property
    def best(self) -> Option | None:
        return self.options[0] if self.options else None


def rank_score(quality_loss_pct: float, slowdown: float = 1.0, offloaded: bool = False) -> float:
    """The number the advisor sorts by (lower is better): quality loss plus a price for speed.

    Rule, in points of expected perplexity loss (%):
    - a configuration fully on the GPU pays nothing for speed;
    - one that keeps weights in system RAM pays ``OFFLOAD_POINTS`` (2) for the CPU-GPU round trip every
      token makes, plus ``PCT_PER_HALVING`` (5) for each halving of the expected generation speed,
      where a share f of the weight bytes in RAM makes a token ``(1 - f) + 10 f`` times slower
      (``RAM_SLOWDOWN``); CPU-only is 10x slower: 2 + 16.6 points.
    So a format fully on the GPU beats a partially offloaded one of slightly better quality
    (Q4_K_M on the GPU, +2.8%, beats Q5_K_M with its output layer in RAM: 0.9 + 2 + 3.8), while a
    much better format with a few layers in RAM still beats a badly degraded one that fits
    (Q4_K_M with 5% of its weights in RAM, 2.8 + 2 + 2.6, beats Q2_K on the GPU, +56%).
    """
    price = PCT_PER_HALVING * math.log2(max(slowdown, 1.0))
    return quality_loss_pct + price + (OFFLOAD_POINTS if offloaded else 0.0)


TIME_NOTE = ("time/token: the time to generate one token relative to the 16-bit (fp16/bf16) model held "
             "entirely in this machine's fastest memory (the GPU, or RAM without one). Generating a token "
             "reads every weight once, so the time follows the bytes read; a byte from system RAM costs "
             f"~{RAM_SLOWDOWN:g}x one from VRAM. A bandwidth estimate: bitsandbytes int8/NF4 kernels run "
             "slower than it.")


def weight_bytes_per_token(info: ModelInfo, fmt_name: str) -> int:
    """Bytes of weights one generated token reads in ``fmt_name``: every decoder layer and the
    output layer (the tied embeddings when there is none); an embedding row is negligible."""
    from pocketpack.vram.estimate import _cached
    from pocketpack.vram.formats import weight_plan

    fmt = parse_format(fmt_name)
    tensors = _cached(info, ("synth",), info.arch.tensors)
    plan = _cached(info, ("per-token", fmt.name), lambda: weight_plan(tensors, fmt, info.arch))
    tied = not any(t.category == "output" for t in tensors)
    lm_head = plan.output_bytes or (plan.input_bytes if tied else 0)
    return sum(plan.per_layer.values()) + plan.other_bytes + lm_head


def relative_time(info: ModelInfo, fmt_name: str, ram_share: float, machine: Machine) -> float:
    """Time per generated token relative to the 16-bit model in the machine's fastest memory
    (see TIME_NOTE): ``ram_share`` of the weight bytes are read from system RAM."""
    ref = weight_bytes_per_token(info, "fp16")
    here = weight_bytes_per_token(info, fmt_name) * ((1.0 - ram_share) + ram_share * RAM_SLOWDOWN)
    return here / (ref * (1.0 if machine.has_gpu else RAM_SLOWDOWN)) if ref else 1.0


def _fits_gpu(e: Estimate, m: Machine) -> bool:
    return e.total_gib <= m.vram_gib - VRAM_RESERVE_GIB and e.ram_gib <= m.ram_gib - RAM_RESERVE_GIB


def _cpu_fits(e: Estimate, m: Machine) -> bool:
    return e.ram_gib <= m.ram_gib - RAM_RESERVE_GIB


def _cpu_estimate(info: ModelInfo, fmt_name: str, ctx: int, cache: str) -> Estimate:
    """llama.cpp on a machine without a GPU: everything in RAM (the mmapped file, KV cache,
    compute buffers) and no CUDA context."""
    return estimate(info, fmt_name, ctx=ctx, cache_type=cache, device="cpu")


# Perplexity cost of a quantised KV cache, in the same points as the formats' quality loss
# (llama.cpp reports a q8_0 KV cache as near-lossless and q4_0 as measurably worse; the
# constants are the ones this advisor used before, kept so that rankings stay comparable).
CACHE_LOSS = {"fp16": 0.0, "q8_0": 0.1, "q4_0": 1.0}
COMFORTABLE_CTX = 8192


def _pick_cache(caches, contexts, estimate_for, fits):
    """(ctx, cache, estimate): the best KV cache type that still reaches a comfortable context.

    For each cache type, best first, the largest context that fits. The first cache type whose
    context reaches ``COMFORTABLE_CTX`` (or the model's own limit) wins; a cache is quantised
    only to reach that, never to stretch an already comfortable context further. When none
    reaches it, the largest context wins (ties to the better cache).
    """
    comfortable = min(COMFORTABLE_CTX, max(contexts))
    best = None
    for cache in caches:
        for ctx in contexts:  # largest first
            e = estimate_for(ctx, cache)
            if fits(e):
                if ctx >= comfortable:
                    return ctx, cache, e
                if best is None or ctx > best[0]:
                    best = (ctx, cache, e)
                break
    return best


def _best_for_format(info: ModelInfo, fmt_name: str, m: Machine, min_ctx: int, ctx_cap: int | None = None
                     ) -> Option | str:
    fmt = parse_format(fmt_name)
    max_ctx = min(info.arch.max_context, ctx_cap or info.arch.max_context)
    contexts = [c for c in CONTEXTS if c <= max_ctx] or [max_ctx]
    contexts = [c for c in contexts if c >= min(min_ctx, max_ctx)] or [min(min_ctx, max_ctx)]
    caches = ("fp16", "q8_0", "q4_0") if fmt.kind == "gguf" else ("fp16",)
    loss = quality_loss(fmt.name)
    if m.has_gpu:
        picked = _pick_cache(caches, contexts, lambda ctx, cache: estimate(info, fmt, ctx=ctx, cache_type=cache),
                             lambda e: _fits_gpu(e, m))
        if picked:
            ctx, cache, e = picked
            return Option(fmt.name, ctx, cache, e.gpu_layers if fmt.kind == "gguf" else None,
                          loss + CACHE_LOSS[cache], e, "gpu")
        if fmt.kind == "gguf":  # partial offload at a working context: as many layers as fit
            ctx = min(max(min_ctx, 4096), max_ctx)
            lo, hi = -1, info.arch.num_layers
            while lo < hi:  # VRAM grows with the layer count: bisect for the largest that fits
                mid = (lo + hi + 1) // 2
                if _fits_gpu(estimate(info, fmt, ctx=ctx, gpu_layers=mid), m):
                    lo = mid
                else:
                    hi = mid - 1
            if lo >= 0:
                e = estimate(info, fmt, ctx=ctx, gpu_layers=lo)
                full = estimate(info, fmt, ctx=ctx)  # the same weights all on the GPU
                share = 1.0 - e.weights_gib / full.weights_gib if full.weights_gib else 1.0
                return Option(fmt.name, ctx, "fp16", lo, loss, e, "partial" if lo else "cpu", ram_share=share)
        return "does not fit in VRAM" if fmt.kind != "gguf" else "does not fit in VRAM + RAM"
    if fmt.kind != "gguf":
        return "needs a GPU (Transformers quantised formats run on CUDA)"
    picked = _pick_cache(caches, contexts, lambda ctx, cache: _cpu_estimate(info, fmt.name, ctx, cache),
                         lambda e: _cpu_fits(e, m))
    if picked:
        ctx, cache, e = picked
        return Option(fmt.name, ctx, cache, 0, loss + CACHE_LOSS[cache], e, "cpu", ram_share=1.0)
    return "does not fit in RAM"


def native_float_format(info: ModelInfo) -> str:
    """"bf16" for a checkpoint stored in bfloat16 (torch_dtype "bfloat16"), else "fp16"."""
    dtype = str(info.arch.torch_dtype).lower()
    return "bf16" if "bf16" in dtype or "bfloat16" in dtype else "fp16"


def advise(info: ModelInfo, machine: Machine, min_ctx: int = 2048, formats: tuple[str, ...] | None = None,
           max_ctx: int | None = None) -> Advice:
    """Every candidate format that fits, each with its largest context (up to ``max_ctx``), best first.

    Ranked by :func:`rank_score` -- expected quality loss plus a price for the speed lost to layers
    left in system RAM -- then by the larger context."""
    advice = Advice(info.name, machine)
    if info.native:
        formats = (info.native,)
    else:
        formats = formats or CANDIDATE_FORMATS
        native_float = native_float_format(info)
        formats = tuple(dict.fromkeys(native_float if f in ("bf16", "fp16") else f for f in formats))
    for name in formats:
        try:
            result = _best_for_format(info, name, machine, min_ctx, max_ctx)
        except VramError as exc:
            result = str(exc)
        if isinstance(result, Option):
            advice.options.append(result)
        else:
            advice.rejected[name] = result
    advice.options.sort(key=lambda o: (round(o.score, 6), -o.ctx))
    return advice


# Reference shapes for "which model sizes fit this budget" (public config.json values)
MODEL_CLASSES = {
    "3B": {"model_type": "llama", "hidden_size": 3072, "intermediate_size": 8192, "num_attention_heads": 24,
           "num_key_value_heads": 8, "head_dim": 128, "num_hidden_layers": 28, "vocab_size": 128256,
           "max_position_embeddings": 131072, "tie_word_embeddings": True,
           "torch_dtype": "bfloat16"},  # Llama-3.2-3B
    "7-8B": {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32,
             "num_key_value_heads": 8, "num_hidden_layers": 32, "vocab_size": 128256,
             "max_position_embeddings": 131072, "tie_word_embeddings": False, "torch_dtype": "bfloat16"},  # Llama-3.1-8B
    "13-14B": {"model_type": "qwen2", "hidden_size": 5120, "intermediate_size": 13824, "num_attention_heads": 40,
               "num_key_value_heads": 8, "num_hidden_layers": 48, "vocab_size": 152064,
               "max_position_embeddings": 32768, "tie_word_embeddings": False, "torch_dtype": "bfloat16"},  # Qwen2.5-14B
    "30-34B": {"model_type": "qwen2", "hidden_size": 5120, "intermediate_size": 27648, "num_attention_heads": 40,
               "num_key_value_heads": 8, "num_hidden_layers": 64, "vocab_size": 152064,
               "max_position_embeddings": 32768, "tie_word_embeddings": False, "torch_dtype": "bfloat16"},  # Qwen2.5-32B
    "70B": {"model_type": "llama", "hidden_size": 8192, "intermediate_size": 28672, "num_attention_heads": 64,
            "num_key_value_heads": 8, "num_hidden_layers": 80, "vocab_size": 128256,
            "max_position_embeddings": 131072, "tie_word_embeddings": False, "torch_dtype": "bfloat16"},  # Llama-3.1-70B
}


def class_info(name: str) -> ModelInfo:
    """A config-only ModelInfo for a model class ("3B", "7-8B", ... "70B")."""
    from pathlib import Path

    arch = from_hf_config(MODEL_CLASSES[name], name)
    return ModelInfo(Path(name), name, "config", arch, arch.tensors(), False, None)


def sizes_that_fit(machine: Machine, min_ctx: int = 4096) -> dict[str, Option | None]:
    """For a budget: the best configuration of each model class, or None when nothing fits."""
    out = {}
    for name in MODEL_CLASSES:
        adv = advise(class_info(name), machine, min_ctx=min_ctx)
        out[name] = adv.best
    return out
