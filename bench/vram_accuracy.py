"""How close is pocketpack's VRAM advisor to published numbers, beside the estimators people use?

    python bench/vram_accuracy.py

Every row is a number someone published (URL beside it); nothing here is invented or measured
by us yet. Model shapes come from the public config.json values in bench/configs/. Peers:
- TGWUI ``models_settings.estimate_vram`` (GGUF inference only), its formula re-stated below;
- accelerate ``estimate-memory``: parameters x bytes of the dtype, weights only, int4 = fp32/8.
gpu_poor is not re-implemented yet (its method is in its JavaScript, not in a formula we could
cite line by line); its column prints n/a.
No training rows yet: we have not found a published peak-memory figure with every setting
(rank, targets, batch, sequence, checkpointing) stated. Our own GPU measurements, when a
device is lent, go in OWN_MEASUREMENTS with date and device.
"""

from __future__ import annotations

import statistics
import sys
from math import floor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pocketpack.vram import inspect_model  # noqa: E402
from pocketpack.vram.estimate import estimate  # noqa: E402

CONFIGS = ROOT / "bench" / "configs"
GB, GIB = 1e9, 1024 ** 3
LLAMA_CPP_QUANT = "https://github.com/ggml-org/llama.cpp/blob/master/tools/quantize/quantize.cpp"
BLOKE_LLAMA7B = "https://huggingface.co/TheBloke/LLaMA-7b-GGUF/tree/main"
BLOKE_LLAMA2_7B = "https://huggingface.co/TheBloke/Llama-2-7B-GGUF"
JETSON_EXLLAMA = "https://github.com/dusty-nv/jetson-containers/blob/master/packages/llm/exllama/docs.md"

# (kind, model config, format, settings, published value in GiB, source, what was published)
ROWS = []
# llama.cpp's own quantize table: file sizes of Llama-3-8B ("4.58G" = GiB, matching 4.92 GB files)
for ftype, size in {"Q2_K": 2.96, "Q3_K_S": 3.41, "Q3_K_M": 3.74, "Q3_K_L": 4.03, "Q4_0": 4.34, "Q4_1": 4.78,
                    "Q4_K_S": 4.37, "Q4_K_M": 4.58, "Q5_0": 5.21, "Q5_1": 5.65, "Q5_K_S": 5.21, "Q5_K_M": 5.33,
                    "Q6_K": 6.14, "Q8_0": 7.96}.items():
    ROWS.append(("file size", "meta-llama-3-8b", f"gguf-{ftype}", {}, size, LLAMA_CPP_QUANT, f"{size}G"))
# TheBloke's LLaMA-7B GGUF files (llama.cpp d119c04, 2023-08), sizes as listed by Hugging Face (GB)
for ftype, size in {"Q2_K": 2.83, "Q3_K_S": 2.95, "Q3_K_M": 3.3, "Q3_K_L": 3.6, "Q4_0": 3.83, "Q4_K_S": 3.86,
                    "Q4_K_M": 4.08, "Q5_0": 4.65, "Q5_K_S": 4.65, "Q5_K_M": 4.78}.items():
    ROWS.append(("file size", "llama-7b", f"gguf-{ftype}", {}, size * GB / GIB, BLOKE_LLAMA7B, f"{size} GB"))
ROWS.append(("file size", "llama-2-7b", "gguf-Q8_0", {}, 7.16 * GB / GIB, BLOKE_LLAMA2_7B, "7.16 GB"))
# jetson-containers: ExLlama (v1) test_benchmark_inference --perf (max_seq_len 2048) on TheBloke GPTQ repos;
# ExLlama reports torch's peak allocation, which leaves out the CUDA context ("measure": "torch").
# The repos' main branches are taken as 4-bit g128 (the group size of each main branch is not re-checked).
for cfg, gb in (("llama-7b", 5.2), ("saiga-13b", 9.2), ("llama-33b", 20.2), ("llama-2-7b", 5.2),
                ("llama-2-13b", 9.2), ("llama-2-70b", 35.5)):
    ROWS.append(("inference VRAM", cfg, "gptq-4bit-g128", {"ctx": 2048, "measure": "torch"}, gb * GB / GIB, JETSON_EXLLAMA,
                 f"{gb} GB VRAM"))
OWN_MEASUREMENTS: list = []  # (kind, config, format, settings, GiB, "own: <date> <device>", note)


def tgwui_estimate_vram(info, fmt, settings) -> float | None:
    """TGWUI's fitted GGUF formula (modules/models_settings.py estimate_vram), in GiB; GGUF only."""
    if not fmt.startswith("gguf-"):
        return None
    e = estimate(info, fmt, ctx=settings.get("ctx", 4096))
    # (the formula counts the CUDA context: it was fitted on nvidia-smi readings)
    size_mb = e.file_gib * 1024
    a = info.arch
    cache = {"q4_0": 4, "q8_0": 8}.get(settings.get("cache_type", "fp16"), 16)
    ctx = settings.get("ctx", 4096)
    layers = settings.get("gpu_layers", a.num_layers)
    per_layer = size_mb / max(a.num_layers, 1e-6)
    kv_factor = a.num_kv_heads * cache * ctx
    emb_per_ctx = a.hidden_size / ctx
    mib = ((per_layer - 17.99552795246051 + 3.148552680382576e-05 * kv_factor)
           * (layers + max(0.9690636483914102, cache - (floor(50.77817218646521 * emb_per_ctx) + 9.987899908205632)))
           + 1516.522943869404)
    return mib / 1024


def accelerate_estimate(info, fmt, settings) -> float:
    """accelerate estimate-memory: parameters x dtype bytes (int8 = fp32/4, int4 = fp32/8), weights only."""
    n = info.arch.n_params()
    bits = 16
    if fmt in ("fp32",):
        bits = 32
    elif fmt == "int8" or fmt.endswith("Q8_0"):
        bits = 8
    elif fmt in ("nf4", "nf4-dq", "fp4") or "4bit" in fmt or "Q4" in fmt or "Q3" in fmt or "Q2" in fmt \
            or "Q5" in fmt or "Q6" in fmt:
        bits = 4
    return n * bits / 8 / GIB


def ours(info, kind, fmt, settings) -> float:
    settings = dict(settings)
    measure = settings.pop("measure", "nvidia-smi")
    e = estimate(info, fmt, **settings)
    if kind == "file size":
        return e.file_gib
    return e.total_gib - (e.cuda_context_gib if measure == "torch" else 0.0)


def main() -> int:
    results: dict[str, dict[str, list[float]]] = {}
    print(f"{'kind':<15} {'model':<16} {'format':<16} {'published':>9} {'pocketpack':>10} {'TGWUI':>7} "
          f"{'accel.':>7}  source")
    for kind, cfg, fmt, settings, value, source, said in ROWS + OWN_MEASUREMENTS:
        info = inspect_model(CONFIGS / f"{cfg}.json")
        mine = ours(info, kind, fmt, settings)
        tg = tgwui_estimate_vram(info, fmt, settings) if kind == "inference VRAM" else None
        acc = accelerate_estimate(info, fmt, settings)
        per = results.setdefault(kind, {"pocketpack": [], "TGWUI": [], "gpu_poor": [], "accelerate": []})
        per["pocketpack"].append(abs(mine / value - 1) * 100)
        per["accelerate"].append(abs(acc / value - 1) * 100)
        if tg is not None:
            per["TGWUI"].append(abs(tg / value - 1) * 100)
        tg_s = f"{tg:7.2f}" if tg is not None else "    n/a"
        print(f"{kind:<15} {cfg:<16} {fmt:<16} {value:9.2f} {mine:10.2f} {tg_s} {acc:7.2f}  {said}, {source}")
    print("\nabsolute % error: median / worst (n rows)")
    print(f"{'kind':<15} " + " ".join(f"{p:>20}" for p in ("pocketpack", "TGWUI", "gpu_poor", "accelerate")))
    for kind, per in results.items():
        cells = []
        for peer in ("pocketpack", "TGWUI", "gpu_poor", "accelerate"):
            errs = per[peer]
            cells.append(f"{statistics.median(errs):6.1f} / {max(errs):6.1f} ({len(errs):2})" if errs else
                         f"{'n/a':>20}")
        print(f"{kind:<15} " + " ".join(f"{c:>20}" for c in cells))
    print(f"{'training VRAM':<15} no published rows yet")
    print("\nREADME table: total VRAM (GiB) at 2048 tokens, batch 1, Transformers loader; file size in brackets")
    print(f"{'model':<12} {'fp16':>16} {'8-bit (int8)':>16} {'4-bit (nf4)':>16} {'4-bit GGUF Q4_K_M':>18}")
    for label, cfg in (("LLaMA 7B", "llama-7b"), ("Mistral 7B", "mistral-7b-v0.1"), ("Saiga 13B", "saiga-13b")):
        info = inspect_model(CONFIGS / f"{cfg}.json")
        cells = []
        for fmt in ("fp16", "int8", "nf4", "gguf-Q4_K_M"):
            e = estimate(info, fmt, ctx=2048)
            cells.append(f"{e.total_gib:6.1f} [{e.file_gib:5.1f}]")
        print(f"{label:<12} {cells[0]:>16} {cells[1]:>16} {cells[2]:>16} {cells[3]:>18}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
