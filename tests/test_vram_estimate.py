"""The estimator against published sizes and against its own invariants."""

from __future__ import annotations

from pathlib import Path

import pytest

from pocketpack.vram import VramError, inspect_model
from pocketpack.vram.estimate import estimate, kv_cache_bytes
from pocketpack.vram.formats import parse_format

DATA = Path(__file__).parent / "data" / "vram"
GIB = 1024 ** 3


def model(name):
    return inspect_model(DATA / f"{name}.json")


@pytest.fixture(scope="module")
def gemma_gguf(default_model) -> Path:
    """The real Gemma 3 270M Q4_K_M file (the embedded model, assembled and checked once)."""
    return default_model


def test_real_gguf_size_predicted_from_its_shape_within_1pct(gemma_gguf):
    """Rebuild the file's tensor list from its hyper-parameters alone and apply Q4_K_M's mix."""
    real = inspect_model(gemma_gguf)
    from pocketpack.vram.inspect import ModelInfo

    shape_only = ModelInfo(real.path, "shape only", "config", real.arch, real.arch.tensors(), False, None)
    predicted = estimate(shape_only, "gguf-Q4_K_M").file_gib * GIB
    assert abs(predicted / gemma_gguf.stat().st_size - 1) < 0.01


def test_quant_mix_reproduces_every_tensor_type(gemma_gguf):
    from pocketpack.vram.formats import gguf_types

    real = inspect_model(gemma_gguf)
    planned = gguf_types(real.arch.tensors(), parse_format("gguf-Q4_K_M"), real.arch)
    synth = {t.name: p for t, p in zip(real.arch.tensors(), planned)}
    assert {t.name: t.dtype for t in real.tensors} == synth


# file sizes llama.cpp prints for Llama-3-8B in tools/quantize/quantize.cpp (GiB)
LLAMA3_8B_SIZES = {"Q2_K": 2.96, "Q3_K_S": 3.41, "Q3_K_M": 3.74, "Q3_K_L": 4.03, "Q4_0": 4.34, "Q4_1": 4.78,
                   "Q4_K_S": 4.37, "Q4_K_M": 4.58, "Q5_0": 5.21, "Q5_1": 5.65, "Q5_K_S": 5.21, "Q5_K_M": 5.33,
                   "Q6_K": 6.14, "Q8_0": 7.96}


@pytest.mark.parametrize("ftype,published", sorted(LLAMA3_8B_SIZES.items()))
def test_llama3_8b_gguf_sizes_match_llama_cpp_table(ftype, published):
    got = estimate(model("meta-llama-3-8b"), f"gguf-{ftype}").file_gib
    assert abs(got / published - 1) < 0.02, (ftype, got, published)


def test_config_only_70b_sizes():
    info = model("llama-2-70b")
    # TheBloke/Llama-2-70B-GGUF: llama-2-70b.Q4_K_M.gguf is 41.42 GB
    assert estimate(info, "gguf-Q4_K_M").file_gib * GIB / 1e9 == pytest.approx(41.42, rel=0.02)
    # TheBloke/Llama-2-7B-GPTQ main branch (4-bit, g128, act-order): 3.90 GB
    assert estimate(model("llama-2-7b"), "gptq-4bit-g128").file_gib * GIB / 1e9 == pytest.approx(3.90, rel=0.02)


def test_kv_cache_grouped_query_attention():
    f16 = parse_format("fp16")
    # Llama-2-7B (32 KV heads): 2 x 32 layers x 4096 x 4096 tokens x 2 bytes = 2 GiB
    assert kv_cache_bytes(model("llama-2-7b"), f16, 4096, 1, "fp16") == 2 * GIB
    # Llama-3-8B has 8 KV heads: a quarter of that
    assert kv_cache_bytes(model("meta-llama-3-8b"), f16, 4096, 1, "fp16") == GIB / 2
    e16 = estimate(model("meta-llama-3-8b"), "gguf-Q4_K_M", ctx=8192)
    e8 = estimate(model("meta-llama-3-8b"), "gguf-Q4_K_M", ctx=8192, cache_type="q8_0")
    e4 = estimate(model("meta-llama-3-8b"), "gguf-Q4_K_M", ctx=8192, cache_type="q4_0")
    assert e8.kv_cache_gib == pytest.approx(e16.kv_cache_gib * 34 / 64)
    assert e4.kv_cache_gib == pytest.approx(e16.kv_cache_gib * 18 / 64)
    assert estimate(model("meta-llama-3-8b"), "fp16", ctx=4096, batch=4).kv_cache_gib == pytest.approx(2.0)


def test_sliding_window_caps_the_cache():
    gemma = model("gemma-3-270m")
    full = 2 * gemma.arch.kv_dim * 2 * 32768 * gemma.arch.num_layers / GIB
    e = estimate(gemma, "gguf-Q8_0", ctx=32768)
    assert e.kv_cache_gib < full / 3  # 15 of 18 layers keep only window + ubatch cells
    mistral = estimate(model("mistral-7b-v0.1"), "fp16", ctx=16384)  # Transformers: 4096-token window
    assert mistral.kv_cache_gib == pytest.approx(0.5)


def test_partial_offload_moves_layers_between_vram_and_ram():
    info = model("meta-llama-3-8b")
    rows = [estimate(info, "gguf-Q4_K_M", ctx=4096, gpu_layers=n) for n in (0, 8, 16, 32, 33)]
    vram = [r.total_gib for r in rows]
    ram = [r.ram_gib for r in rows]
    assert vram == sorted(vram) and ram == sorted(ram, reverse=True)
    assert rows[0].weights_gib == 0
    assert rows[-1].kv_cache_gib == pytest.approx(0.5, rel=0.01)
    assert rows[2].kv_cache_gib == pytest.approx(0.25, rel=0.01)
    # the output layer goes to the GPU only past n_layers (llama.cpp counts it as layer n+1)
    assert rows[4].weights_gib > rows[3].weights_gib + 0.3


def test_bitsandbytes_keeps_embeddings_and_head_in_16_bit():
    info = model("meta-llama-3-8b")
    w = {f: estimate(info, f).weights_gib for f in ("fp16", "int8", "nf4", "nf4-dq", "fp4")}
    assert w["fp16"] > w["int8"] > w["nf4"] > w["nf4-dq"]
    assert w["nf4"] == w["fp4"]
    embed_and_head = 2 * 2 * 128256 * 4096 / GIB  # two fp16 vocab x hidden matrices
    linear_fp16 = w["fp16"] - embed_and_head
    assert w["nf4"] == pytest.approx(embed_and_head + linear_fp16 * 4.5 / 16, rel=0.01)
    assert w["nf4-dq"] == pytest.approx(embed_and_head + linear_fp16 * 4.127 / 16, rel=0.01)
    # bitsandbytes quantises at load: the download is the 16-bit checkpoint
    assert estimate(info, "nf4").file_gib == pytest.approx(w["fp16"])


def test_gptq_group_size_costs_scales():
    info = model("llama-2-7b")
    g128, g32, none = (estimate(info, f).weights_gib for f in ("gptq-4bit-g128", "gptq-4bit-g32", "gptq-4bit-g-1"))
    assert g32 > g128 > none
    assert estimate(info, "awq-4bit-g128").weights_gib < g128  # no g_idx


def test_training_breakdown():
    info = model("llama-2-7b")
    qv = estimate(info, "nf4", mode="training", lora_rank=8, lora_targets="q_proj,v_proj")
    assert qv.lora_params_m * 1e6 == 4_194_304  # PEFT prints this for Llama-2-7B, r=8, q_proj+v_proj
    full = estimate(info, "nf4", mode="training", lora_rank=8, lora_targets="all-linear")
    r16 = estimate(info, "nf4", mode="training", lora_rank=16, lora_targets="all-linear")
    assert r16.adapter_gib == pytest.approx(2 * full.adapter_gib)
    assert full.optimizer_gib == pytest.approx(2 * full.adapter_gib)  # two fp32 Adam states
    bnb8 = estimate(info, "nf4", mode="training", optimizer="paged_adamw8bit")
    assert bnb8.optimizer_gib == pytest.approx(full.optimizer_gib / 4)
    no_gc = estimate(info, "nf4", mode="training", grad_checkpointing=False, ctx=1024)
    gc = estimate(info, "nf4", mode="training", grad_checkpointing=True, ctx=1024)
    assert no_gc.activations_gib > 3 * gc.activations_gib
    assert gc.total_gib == pytest.approx(gc.weights_gib + gc.adapter_gib + gc.gradients_gib + gc.optimizer_gib
                                         + gc.activations_gib + gc.overhead_gib)


@pytest.mark.parametrize("kwargs,message", [
    ({"fmt": "gguf-Q4_K_M", "mode": "training"}, "training takes a Transformers base"),
    ({"fmt": "fp16", "cache_type": "q8_0"}, "cache type q8_0 is for"),
    ({"fmt": "fp16", "gpu_layers": 10}, "--gpu-layers applies to gguf"),
    ({"fmt": "nf4", "mode": "training", "lora_targets": "wq,wv"}, "unknown LoRA target"),
    ({"fmt": "gguf-Q4_K_Q"}, "unknown llama.cpp type"),
    ({"fmt": "gptq-5bit-g128"}, "GPTQ takes"),
    ({"fmt": "fp16", "cache_type": "q5"}, "cache type 'q5'"),
])
def test_impossible_configurations_say_why(kwargs, message):
    fmt = kwargs.pop("fmt")
    with pytest.raises(VramError, match=message):
        estimate(model("llama-2-7b"), fmt, **kwargs)


def test_every_part_adds_up():
    for fmt in ("fp16", "int8", "nf4-dq", "gptq-4bit-g128", "awq-4bit-g128", "gguf-Q4_K_M", "exl2-4.65bpw"):
        e = estimate(model("mistral-7b-v0.1"), fmt, ctx=8192)
        assert e.total_gib == pytest.approx(sum(e.parts().values()))
        assert 0 < e.cuda_context_gib <= e.overhead_gib


# --------------------------------------------------------------------------- llama.cpp rule history

def test_2023_rules_explain_thebloke_mixtral_sizes():
    """TheBloke's Mixtral GGUFs (llama.cpp 8a7b2fa, 2023-12): Q4_K_M is as large as Q4_0 (26.4 GB)."""
    info = model("mixtral-8x7b")
    gb = {r: {f: estimate(info, f"gguf-{f}", quant_rules=r).file_gib * GIB / 1e9 for f in ("Q4_0", "Q4_K_M", "Q2_K")}
          for r in ("2023", "current")}
    # 2023: experts were blk.N.ffn_down.E.weight, which the exact-name rules never matched
    assert gb["2023"]["Q4_K_M"] == pytest.approx(26.4, rel=0.01)
    assert gb["2023"]["Q4_K_M"] == pytest.approx(gb["2023"]["Q4_0"], rel=0.01)
    assert gb["2023"]["Q2_K"] == pytest.approx(15.6, rel=0.02)
    # today's llama-quantize gives the experts' ffn_down Q6_K in the "more bits" layers
    assert gb["current"]["Q4_K_M"] > gb["current"]["Q4_0"] + 1.5
    assert gb["current"]["Q4_0"] == pytest.approx(gb["2023"]["Q4_0"], rel=0.01)  # + attn_k/attn_v in Q8_0 today


def test_2023_q2_k_put_the_mlp_in_q3_k():
    # TheBloke/LLaMA-7b-GGUF llama-7b.Q2_K.gguf (llama.cpp d119c04, 2023-08): 2.83 GB
    info = model("llama-7b")
    old = estimate(info, "gguf-Q2_K", quant_rules="2023").file_gib * GIB / 1e9
    new = estimate(info, "gguf-Q2_K").file_gib * GIB / 1e9
    assert old == pytest.approx(2.83, rel=0.01) and new < old - 0.2
    with pytest.raises(VramError, match="quant rules"):
        estimate(info, "gguf-Q4_K_M", quant_rules="1999")


def test_llama_cpp_without_flash_attention_holds_the_score_matrix():
    """llama.cpp b2961 log, issue #7450: Mistral-7B-Instruct-v0.2 Q2_K, 33/33 layers, n_ctx 32000,
    n_ubatch 512, flash_attn 0: model 2898.55 + KV 4000.00 + compute 2094.50 MiB on CUDA0."""
    info = model("mistral-7b-instruct-v0.2")
    e = estimate(info, "gguf-Q2_K", ctx=32000, ubatch=512, flash_attn=False, quant_rules="2023")
    assert e.kv_cache_gib * 1024 == pytest.approx(4000.0)
    assert e.compute_gib * 1024 == pytest.approx(2094.5, rel=0.03)
    assert e.allocated_gib * 1024 == pytest.approx(2898.55 + 4000.0 + 2094.5, rel=0.01)
    fa = estimate(info, "gguf-Q2_K", ctx=32000, ubatch=512, quant_rules="2023")
    assert fa.compute_gib < e.compute_gib / 10  # flash attention never builds the n_kv x n_ubatch x n_head scores
    assert e.allocated_gib == pytest.approx(e.total_gib - e.overhead_gib)


def test_eager_attention_and_full_logits_cost_what_they_materialise():
    info = model("mistral-7b-v0.1")
    sdpa = estimate(info, "awq-4bit-g128", ctx=2048, batch=8)
    eager = estimate(info, "awq-4bit-g128", ctx=2048, batch=8, attn_implementation="eager")
    scores = 8 * 32 * 2048 * 2048 * (2 + 4 + 2)  # fp16 scores, fp32 softmax, fp16 copy
    assert (eager.compute_gib - sdpa.compute_gib) * GIB == pytest.approx(scores, rel=0.02)
    tiny = model("gemma-3-270m")  # 262k vocabulary: every position's logits dwarf one layer
    last = estimate(tiny, "bf16", ctx=2048)
    every = estimate(tiny, "bf16", ctx=2048, logits="all")
    assert every.compute_gib * GIB > 2048 * tiny.arch.vocab_size * 6
    assert last.compute_gib < every.compute_gib / 4
    with pytest.raises(VramError, match="attention implementation"):
        estimate(info, "fp16", attn_implementation="flash")


def test_qlora_keeps_the_input_of_every_quantised_linear():
    """bitsandbytes' MatMul4Bit saves its input for backward; a frozen 16-bit Linear does not."""
    info = model("llama-2-7b")
    kw = dict(mode="training", ctx=1024, lora_targets="q_proj,v_proj", grad_checkpointing=False)
    lora = estimate(info, "bf16", **kw)
    qlora = estimate(info, "nf4", **kw)
    a = info.arch
    extra = 32 * 1024 * 2 * (a.hidden_size + a.intermediate_size)  # MLP input and down_proj input, 16-bit
    dequant = 2 * 2 * a.hidden_size * a.intermediate_size  # two dequantised 16-bit copies of the largest weight
    assert (qlora.activations_gib - lora.activations_gib) * GIB == pytest.approx(extra + dequant, rel=0.01)
    all_linear = estimate(info, "bf16", **{**kw, "lora_targets": "all-linear"})
    assert all_linear.activations_gib > lora.activations_gib  # adapted MLP layers keep their inputs too
    no_dropout = estimate(info, "bf16", **kw, lora_dropout=0.0)
    assert no_dropout.activations_gib < lora.activations_gib
