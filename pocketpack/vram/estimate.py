"""One configuration's memory, part by part: weights, KV cache, compute buffers, overhead.

Models of each loader as TGWUI runs it:
- llama.cpp (gguf-*): llama-server with ``--flash-attn on``, ``--ubatch-size 1024`` (TGWUI's
  defaults, modules/llama_cpp_server.py). The token embeddings stay in host memory; the last
  ``gpu_layers`` layers go to the GPU and the output tensor too when ``gpu_layers > n_layers``
  (llama.cpp's ``i_gpu_start = n_layer - n_gpu_layers``). KV cache for offloaded layers on the
  GPU, its length padded to 256; Gemma-style sliding-window layers keep ``window + ubatch``
  cells. The compute buffer is reserved for a full ubatch of outputs (``graph_reserve(n_tokens,
  n_seqs, n_tokens)``), so the logits buffer ``n_vocab × ubatch × 4`` dominates it.
- Transformers (fp*/int8/nf4/fp4/gptq/awq): KV cache in the compute dtype (DynamicCache; sliding
  layers hold the window), SDPA attention (no seq² matrix), prompt activations for the whole
  context, last-token logits in fp32, a dequantisation buffer for 4-bit/GPTQ/AWQ kernels, and
  the caching allocator's slack.
- ExLlamaV2 (exl2-*): embeddings in RAM, FP16/Q8/Q4 cache, a fixed scratch for attention.

``cuda_context_gib`` is the part of the overhead that the CUDA runtime takes before any tensor
exists (and that torch's allocator counters never see); it shows up in nvidia-smi only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from pocketpack.vram.arch import LLAMACPP_SWA
from pocketpack.vram.errors import VramError
from pocketpack.vram.formats import (
    FLOAT_BYTES,
    Format,
    _is_linear,
    parse_format,
    weight_plan,
)
from pocketpack.vram.ggml import RULE_SETS
from pocketpack.vram.inspect import ModelInfo

GIB = 1024 ** 3
MIB = 1024 ** 2
# What nvidia-smi shows for a process beyond its tensors: the CUDA context and the libraries'
# handles. llama.cpp's is larger (cuBLAS plus ggml-cuda's kernels): 0.74 GiB is what
# oobabooga's published GGUF measurements leave after weights, KV cache and compute buffers
# (https://oobabooga.github.io/blog/posts/gguf-vram-formula/, granite-3.3-8b rows: 87.3 MiB
# per layer on top of ~890 MiB at 0 layers; see bench/vram_accuracy.py).
CUDA_CONTEXT_GIB = {"Transformers": 0.38, "llama.cpp": 0.74, "ExLlamav2": 0.38}
LLAMACPP_UBATCH = 1024         # TGWUI's --ubatch-size default
TRANSFORMERS_ALLOC_SLACK = 0.04  # torch caching allocator: reserved beyond allocated
LLAMACPP_RAM_RUNTIME_GIB = 0.15  # llama.cpp's own RAM beyond weights, cache and compute buffers
TRANSFORMERS_LOAD_RAM_GIB = 1.0  # loading reads the checkpoint through RAM
CACHE_BYTES = {"fp16": 2.0, "f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}
CACHE_TYPES = ("fp16", "q8_0", "q4_0")
# Optimizer state a trainable parameter keeps, in bytes per byte of parameter precision kind:
# (bytes for an fp32 parameter, states in the parameter's own dtype?, step temporaries in parameters)
# - adamw (torch.optim.AdamW, Trainer's adamw_torch): exp_avg and exp_avg_sq like the parameter;
#   its foreach step allocates one more parameter-sized tensor (the sqrt of exp_avg_sq);
# - adamw8bit / paged_adamw8bit (bitsandbytes AdamW8bit / PagedAdamW8bit): two 1-byte states
#   (block-wise quantised), fused kernel, no temporaries; paged states can spill to RAM;
# - sgd (torch.optim.SGD, Trainer's "sgd": momentum 0): no state;
# - lion (bitsandbytes Lion, Trainer's lion_32bit): one momentum state like the parameter.
OPTIMIZERS = {"adamw": (2, 1), "adamw8bit": (0, 0), "paged_adamw8bit": (0, 0), "sgd": (0, 0), "lion": (1, 0)}
OPTIMIZER_8BIT_STATES = {"adamw8bit": 2, "paged_adamw8bit": 2}
OPTIMIZER_ALIASES = {"adamw_torch": "adamw", "adamw_torch_fused": "adamw", "adamw_hf": "adamw",
                     "adamw_bnb_8bit": "adamw8bit", "adamw_8bit": "adamw8bit", "paged_adamw_8bit": "paged_adamw8bit",
                     "lion_32bit": "lion"}
# kept for callers that read the old table: bytes of state per fp32 trainable parameter
OPTIMIZER_BYTES = {name: float(4 * n + OPTIMIZER_8BIT_STATES.get(name, 0)) for name, (n, _) in OPTIMIZERS.items()}
LORA_MODULES = {
    "q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
    "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down",
    "qkv_proj": "attn_qkv", "query_key_value": "attn_qkv", "dense": "attn_output",
    "fc1": "ffn_up", "fc2": "ffn_down", "gate_up_proj": "ffn_up",
    # the output layer and the input embeddings (PEFT wraps nn.Embedding in a LoRA Embedding)
    "lm_head": "output", "embed_out": "output",
    "embed_tokens": "token_embd", "wte": "token_embd", "word_embeddings": "token_embd", "embed_in": "token_embd",
}
# modules a run can train whole (PEFT's modules_to_save): the embeddings and the output layer
WHOLE_MODULES = {"lm_head": "output", "embed_out": "output", "embed_tokens": "token_embd", "wte": "token_embd",
                 "word_embeddings": "token_embd", "embed_in": "token_embd"}
LINEAR_CATEGORIES = {"attn_q", "attn_k", "attn_v", "attn_qkv", "attn_output", "ffn_gate", "ffn_up", "ffn_down"}
TRAINABLE_BASES = ("fp32", "fp16", "bf16", "int8", "nf4", "nf4-dq", "fp4", "fp4-dq")
TRAINABLE_HELP = ("LoRA on fp16/bf16/fp32/int8, QLoRA on nf4/nf4-dq/fp4/fp4-dq, or on a GPTQ or AWQ checkpoint "
                  "(gptq-<bits>bit-g<group>, awq-4bit-g<group>)")
ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2")


@dataclass
class Estimate:
    """A memory estimate with its breakdown; every *_gib is GiB (1024³ bytes)."""

    model: str
    format: str
    loader: str
    mode: str
    ctx: int
    batch: int
    cache_type: str
    gpu_layers: int
    n_layers: int
    params_b: float
    total_gib: float = 0.0
    weights_gib: float = 0.0
    kv_cache_gib: float = 0.0
    compute_gib: float = 0.0
    overhead_gib: float = 0.0
    cuda_context_gib: float = 0.0
    ram_gib: float = 0.0
    file_gib: float = 0.0
    device: str = "gpu"      # "gpu": a CUDA machine; "cpu": no GPU at all (no VRAM, no CUDA context)
    ram_parts_gib: dict[str, float] = field(default_factory=dict)  # what ram_gib is made of
    adapter_gib: float | None = None
    gradients_gib: float | None = None
    optimizer_gib: float | None = None
    activations_gib: float | None = None
    lora_params_m: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def allocated_gib(self) -> float:
        """What the runtime's own counters report: torch's ``max_memory_allocated`` or llama.cpp's
        logged buffers. The CUDA context and the caching allocator's slack (the overhead) are not in it."""
        return self.total_gib - self.overhead_gib

    def parts(self) -> dict[str, float]:
        """The stacked parts of ``total_gib``, in drawing order."""
        names = ["weights_gib", "kv_cache_gib", "compute_gib", "adapter_gib", "gradients_gib",
                 "optimizer_gib", "activations_gib", "overhead_gib"]
        if self.mode == "training":
            names.remove("compute_gib")
        if self.device == "cpu":
            return {}
        return {n[:-4]: getattr(self, n) for n in names if getattr(self, n) is not None}

    def ram_parts(self) -> dict[str, float]:
        """The parts of ``ram_gib`` (system RAM), in drawing order; they sum to it."""
        return dict(self.ram_parts_gib) if self.ram_parts_gib else {"other": self.ram_gib}

    def memory_parts(self) -> dict[str, float]:
        """The parts of the memory that runs the model: VRAM on a GPU, system RAM without one."""
        return self.ram_parts() if self.device == "cpu" else self.parts()

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.mode != "training":
            for key in ("adapter_gib", "gradients_gib", "optimizer_gib", "activations_gib", "lora_params_m"):
                d.pop(key)
        d["allocated_gib"] = self.allocated_gib
        for key, value in d.items():
            if isinstance(value, float):
                d[key] = round(value, 3)
        return d


def _check_format(info: ModelInfo, fmt: Format) -> None:
    """A pre-quantised checkpoint takes only its own format."""
    native = info.native
    if native is None:
        return
    if fmt.name == native or (native.startswith("gguf-") and fmt.kind == "gguf" and fmt.name == native):
        return
    what = {"gguf": "a GGUF file", "gptq": "a GPTQ checkpoint", "awq": "an AWQ checkpoint",
            "exl2": "an EXL2 checkpoint"}.get(native.split("-")[0], "a pre-quantised checkpoint")
    if native in ("int8", "nf4", "nf4-dq", "fp4", "fp4-dq"):
        what = "a bitsandbytes checkpoint"
    raise VramError(f"{info.name} is {what} stored as {native}; it cannot be loaded as {fmt.name} "
                    f"(use --format {native}, or estimate the original model's config.json)")


def _compute_dtype_bytes(info: ModelInfo, fmt: Format) -> int:
    if fmt.kind == "float":
        return FLOAT_BYTES[fmt.name]
    return 2


def kv_cache_bytes(info: ModelInfo, fmt: Format, ctx: int, batch: int, cache_type: str,
                   layers: int | None = None) -> float:
    """Bytes of K and V for ``layers`` layers (all by default)."""
    a = info.arch
    n_layers = a.num_layers if layers is None else layers
    per_elem = CACHE_BYTES[cache_type] if fmt.kind in ("gguf", "exl2") else _compute_dtype_bytes(info, fmt)
    if fmt.kind == "gguf":
        cells = _kv_cells(ctx)
        swa = a.model_type in LLAMACPP_SWA and a.sliding_window
        swa_cells = min(cells, -(-(a.sliding_window + LLAMACPP_UBATCH) // 256) * 256) if swa else cells
    else:
        cells = ctx
        swa_cells = min(ctx, a.sliding_window) if a.sliding_window else ctx
    sliding = min(a.sliding_layers, n_layers) if a.sliding_window else 0
    # llama.cpp offloads the last layers; which of them are sliding does not change the count much
    full = n_layers - sliding
    per_cell = 2 * a.kv_dim * per_elem  # K and V
    return batch * per_cell * (full * cells + sliding * swa_cells)


def _kv_cells(ctx: int) -> int:
    """llama.cpp pads the cache to a multiple of 256 cells."""
    return -(-ctx // 256) * 256


def _bytes_gib(n: float) -> float:
    return n / GIB


def estimate(info: ModelInfo, fmt: Format | str, ctx: int | None = None, batch: int = 1,
             cache_type: str = "fp16", gpu_layers: int | None = None, mode: str = "inference",
             lora_rank: int = 8, lora_targets: str | list[str] = "all-linear",
             grad_checkpointing: bool = True, optimizer: str = "adamw", *,
             ubatch: int = LLAMACPP_UBATCH, flash_attn: bool = True, quant_rules: str = "current",
             attn_implementation: str = "sdpa", logits: str = "last", lora_dropout: float = 0.05,
             device: str = "gpu", dora: bool = False, modules_to_save: str | list[str] | None = None,
             kbit_prep: bool = True, gpu_split_gib: float | None = None) -> Estimate:
    """Estimate one configuration. Raises VramError for combinations that cannot run.

    ``device="cpu"`` is a machine without a GPU: llama.cpp (gguf-*) only, everything in system
    RAM, no VRAM and no CUDA context (``ram_parts()`` says what the RAM holds).

    The keyword-only knobs describe a runtime other than TGWUI's defaults: for llama.cpp ``ubatch``
    and ``flash_attn`` (older TGWUI and plain llama-server runs used ``-ub 512`` without flash
    attention) and ``quant_rules`` for a GGUF made by an older llama-quantize (see
    :mod:`pocketpack.vram.ggml`); for Transformers ``attn_implementation`` (TGWUI's
    ``--attn-implementation``: sdpa, eager, flash_attention_2) and ``logits`` ("last": generate() since
    transformers 4.45 computes the last position only; "all": older versions and plain forward calls
    compute every prompt position); for training ``lora_dropout`` (TGWUI's default 0.05), ``dora``
    (PEFT's ``use_dora``), ``modules_to_save`` (embed_tokens/wte/lm_head trained whole) and
    ``kbit_prep`` (a bitsandbytes base went through PEFT's ``prepare_model_for_kbit_training``, as
    TGWUI's Training tab and ``pocketpack adapters train`` do: its unquantised tensors -- embeddings,
    lm_head, norms -- are cast to fp32; LitGPT and ms-swift do not).

    ``gpu_split_gib`` is TGWUI's ``--gpu-split`` (``--gpu-memory`` before 2025-04-20) for the
    Transformers loader: accelerate places whole modules on the GPU up to that many GiB of weights
    and offloads the rest to system RAM (see :func:`_offload`).
    """
    fmt = parse_format(fmt) if isinstance(fmt, str) else fmt
    _check_format(info, fmt)
    a = info.arch
    ctx = int(ctx or min(a.max_context, 4096 if mode == "inference" else 512))
    if ctx <= 0 or batch <= 0:
        raise VramError("--ctx and --batch must be positive")
    cache_type = {"f16": "fp16", "fp8": "q8_0"}.get(cache_type, cache_type)
    if cache_type not in CACHE_TYPES:
        raise VramError(f"cache type {cache_type!r}: use one of {', '.join(CACHE_TYPES)}")
    if cache_type != "fp16" and fmt.kind not in ("gguf", "exl2"):
        raise VramError(f"cache type {cache_type} is for gguf-* (llama.cpp) and exl2-* (ExLlama) formats; "
                        f"Transformers keeps the cache in fp16/bf16")
    if gpu_layers is not None and fmt.kind != "gguf":
        raise VramError("--gpu-layers applies to gguf-* formats (llama.cpp); Transformers formats load all "
                        "layers on the GPU")
    if mode not in ("inference", "training"):
        raise VramError(f"mode {mode!r}: use inference or training")
    if attn_implementation not in ATTN_IMPLEMENTATIONS:
        raise VramError(f"attention implementation {attn_implementation!r}: use one of "
                        f"{', '.join(ATTN_IMPLEMENTATIONS)}")
    if logits not in ("last", "all"):
        raise VramError(f"logits {logits!r}: use last or all")
    if device not in ("gpu", "cpu"):
        raise VramError(f"device {device!r}: use gpu or cpu")
    if device == "cpu":
        if mode != "inference" or fmt.kind != "gguf":
            raise VramError(f"{fmt.name} {mode} needs a GPU: without one, only llama.cpp (gguf-*) formats run")
        if gpu_layers:
            raise VramError("--gpu-layers needs a GPU; without one every layer runs on the CPU")
        if ubatch <= 0:
            raise VramError("--ubatch-size must be positive")
        if quant_rules not in RULE_SETS:
            raise VramError(f"llama.cpp quant rules {quant_rules!r}: use one of {', '.join(RULE_SETS)}")
        return _on_cpu(_llamacpp(info, fmt, ctx, batch, cache_type, 0, ubatch, flash_attn, quant_rules))
    if mode == "training":
        return _training(info, fmt, ctx, batch, lora_rank, lora_targets, grad_checkpointing, optimizer,
                         lora_dropout, dora=dora, modules_to_save=modules_to_save, kbit_prep=kbit_prep)
    if gpu_split_gib is not None:
        if fmt.kind not in ("float", "int8", "bnb4"):
            raise VramError(f"--gpu-split offloads Transformers formats (fp16/bf16/fp32, int8, nf4/fp4), not {fmt.name}"
                            + ("; use --gpu-layers for llama.cpp" if fmt.kind == "gguf" else ""))
        if gpu_split_gib <= 0:
            raise VramError("--gpu-split must be a positive number of GiB")
    if fmt.kind == "gguf":
        if ubatch <= 0:
            raise VramError("--ubatch-size must be positive")
        if quant_rules not in RULE_SETS:
            raise VramError(f"llama.cpp quant rules {quant_rules!r}: use one of {', '.join(RULE_SETS)}")
        return _llamacpp(info, fmt, ctx, batch, cache_type, gpu_layers, ubatch, flash_attn, quant_rules)
    est = _transformers(info, fmt, ctx, batch, cache_type, attn_implementation, logits)
    return _offload(info, fmt, est, gpu_split_gib) if gpu_split_gib is not None else est


def _offload(info: ModelInfo, fmt: Format, est: Estimate, gpu_split_gib: float) -> Estimate:
    """Transformers with ``max_memory`` (TGWUI's --gpu-split / --cpu-memory): accelerate's
    ``infer_auto_device_map`` puts modules on the GPU in order (embeddings, layers, norm, lm_head)
    while they fit in ``gpu_split_gib`` less the largest layer, which it keeps free to run an
    offloaded layer: offloaded modules stay in RAM and are copied to the GPU for their forward
    (the KV cache and the compute stay on the GPU). bitsandbytes keeps offloaded modules
    unquantised in fp32 (``llm_int8_enable_fp32_cpu_offload``, which TGWUI sets)."""
    plan = _transformers_weights(info, fmt)
    b = _compute_dtype_bytes(info, fmt)
    params = _cached(info, ("module-params",), lambda: _module_params(info))
    ram_bytes_per_param = 4 if fmt.kind in ("int8", "bnb4") else b
    order = [("embed", plan.input_bytes, params["embed"])] + \
            [(f"layer{i}", plan.per_layer.get(i, 0), params["layer"]) for i in range(info.arch.num_layers)] + \
            [("norm", plan.other_bytes, 0), ("lm_head", plan.output_bytes, params["output"])]
    largest = max(size for _, size, _ in order)
    budget = gpu_split_gib * GIB - largest
    on_gpu = 0
    offloaded_params = 0
    streamed = 0
    full = False
    for _name, size, n in order:
        if not full and on_gpu + size <= budget:
            on_gpu += size
        else:
            full = True
            offloaded_params += n
            streamed = max(streamed, n * ram_bytes_per_param)
    if offloaded_params == 0:
        est.notes.append(f"--gpu-split {gpu_split_gib:g}: every module fits on the GPU")
        return est
    old_weights = est.weights_gib
    est.weights_gib = _bytes_gib(on_gpu + streamed)
    est.total_gib += est.weights_gib - old_weights
    parts = dict(est.ram_parts_gib)
    parts["weights"] = parts.get("weights", 0.0) + _bytes_gib(offloaded_params * ram_bytes_per_param)
    est.ram_parts_gib = parts
    est.ram_gib = sum(est.ram_parts_gib.values())
    est.notes.append(f"--gpu-split {gpu_split_gib:g}: {offloaded_params / 1e9:.2f} B parameters offloaded to RAM"
                     + (" in fp32 (bitsandbytes keeps offloaded modules unquantised)" if ram_bytes_per_param == 4 else "")
                     + "; each token copies them to the GPU: far slower than a model that fits")
    return est


def _module_params(info: ModelInfo) -> dict:
    tensors = info.arch.tensors()
    layer = sum(t.n_params for t in tensors if t.layer == 0)
    embed = sum(t.n_params for t in tensors if t.category == "token_embd")
    output = sum(t.n_params for t in tensors if t.category == "output")
    return {"layer": layer, "embed": embed, "output": output}


def _base(info: ModelInfo, fmt: Format, mode: str, ctx: int, batch: int, cache_type: str, gpu_layers: int
          ) -> Estimate:
    return Estimate(model=info.name, format=fmt.name, loader=fmt.loader, mode=mode, ctx=ctx, batch=batch,
                    cache_type=cache_type, gpu_layers=gpu_layers, n_layers=info.arch.num_layers,
                    params_b=round(info.n_params / 1e9, 3), notes=list(info.notes))


def _file_bytes(info: ModelInfo, fmt: Format, planned: int) -> int:
    if info.file_bytes and info.exact_tensors and (info.native == fmt.name or
                                                   (info.native is None and fmt.kind == "float"
                                                    and _native_float(info) == fmt.name)):
        return info.file_bytes
    if info.file_bytes and fmt.quantises_at_load and info.native is None and info.exact_tensors:
        return info.file_bytes  # bitsandbytes quantises the checkpoint on disk while loading
    return planned


def _native_float(info: ModelInfo) -> str:
    dtypes = {t.dtype for t in info.tensors if t.is_matrix}
    return {"F32": "fp32", "BF16": "bf16", "F16": "fp16"}.get(next(iter(dtypes)) if len(dtypes) == 1 else "", "")


def _tensors_for(info: ModelInfo, fmt: Format):
    """Real header tensors when they are unquantised (exact in any format) or already this GGUF."""
    if info.exact_tensors and (info.native is None or (fmt.kind == "gguf" and info.native == fmt.name)):
        return info.tensors
    return _cached(info, ("synth",), info.arch.tensors)


def _cached(info: ModelInfo, key: tuple, make):
    """Weight plans do not depend on context or batch: compute them once per model and format."""
    cache = info.__dict__.setdefault("_cache", {})
    if key not in cache:
        cache[key] = make()
    return cache[key]


def _llamacpp(info: ModelInfo, fmt: Format, ctx: int, batch: int, cache_type: str, gpu_layers: int | None,
              ubatch: int = LLAMACPP_UBATCH, flash_attn: bool = True, rules: str = "current") -> Estimate:
    a = info.arch
    n = a.num_layers
    ngl = n + 1 if gpu_layers is None or gpu_layers < 0 else min(int(gpu_layers), n + 1)
    est = _base(info, fmt, "inference", ctx, batch, cache_type, ngl)
    tensors = _tensors_for(info, fmt)
    if info.native == fmt.name and info.exact_tensors:
        plan = _cached(info, ("exact",), lambda: _plan_from_exact(tensors, a))
        plan.file_bytes = info.file_bytes or plan.file_bytes
    else:
        plan = _cached(info, ("plan", fmt.name, rules), lambda: weight_plan(tensors, fmt, a, rules=rules))
    layers_on_gpu = min(ngl, n)
    gpu_layer_ids = range(n - layers_on_gpu, n)
    output_on_gpu = ngl > n
    w_gpu = sum(plan.per_layer.get(i, 0) for i in gpu_layer_ids) + (plan.output_bytes + plan.other_bytes
                                                                     if output_on_gpu else 0)
    w_all = plan.total
    kv_gpu = kv_cache_bytes(info, fmt, ctx, batch, cache_type, layers_on_gpu)
    kv_all = kv_cache_bytes(info, fmt, ctx, batch, cache_type)
    ub = min(ctx, ubatch)
    logits = 4 * ub * (a.vocab_size + a.hidden_size)
    # an MoE token goes through experts_per_token experts (Mixtral's config calls their width intermediate_size)
    ffn_width = ((a.moe_intermediate_size or a.intermediate_size) * max(1, a.experts_per_token) if a.num_experts
                 else a.intermediate_size)
    ffn = 4 * ub * (2 * ffn_width + 3 * a.hidden_size)
    attn = 4 * ub * (a.num_heads * a.head_dim * 2 + 2 * a.kv_dim)
    if not flash_attn:
        # without flash attention llama.cpp materialises the f32 score matrix KQ of every head
        # against the whole cache (n_kv x n_ubatch x n_head); softmax runs in place on it
        attn += 4 * ub * _kv_cells(ctx) * a.num_heads
    # A CUDA build uses the GPU even with no layers there: it creates the context and runs a
    # prompt's large matrix products on the GPU, so the compute buffer is reserved too.
    compute_gpu = max(logits if output_on_gpu else 0, ffn + attn) + 16 * MIB
    compute_cpu = 4 * ub * (a.hidden_size * 4) + (0 if output_on_gpu else logits)
    ctx_gib = CUDA_CONTEXT_GIB["llama.cpp"]
    est.weights_gib = _bytes_gib(w_gpu)
    est.kv_cache_gib = _bytes_gib(kv_gpu)
    est.compute_gib = _bytes_gib(compute_gpu)
    est.cuda_context_gib = ctx_gib
    est.overhead_gib = ctx_gib + _bytes_gib(8 * MIB)
    est.total_gib = est.weights_gib + est.kv_cache_gib + est.compute_gib + est.overhead_gib
    est.ram_parts_gib = {"weights": _bytes_gib(w_all - w_gpu), "kv_cache": _bytes_gib(kv_all - kv_gpu),
                         "compute": _bytes_gib(compute_cpu), "runtime": LLAMACPP_RAM_RUNTIME_GIB}
    est.ram_gib = sum(est.ram_parts_gib.values())
    est.file_gib = _bytes_gib(_file_bytes(info, fmt, plan.file_bytes))
    if a.num_experts and rules == "current" and not (info.native == fmt.name and info.exact_tensors) \
            and fmt.ftype.endswith(("_S", "_M", "_L")):
        est.notes.append("file size follows today's llama-quantize; MoE GGUFs made before 2024 (e.g. TheBloke's) "
                         "gave the experts no extra bits and are up to ~7% smaller")
    if ngl <= n:
        est.notes.append(f"{layers_on_gpu}/{n} layers on the GPU; output layer on the CPU")
    est.notes.append("RAM: the file is memory-mapped; weights not on the GPU are read from it")
    return est


def _on_cpu(est: Estimate) -> Estimate:
    """A llama.cpp estimate with no layer on the GPU, for a machine without one: the weights,
    cache and compute buffers are in RAM and no CUDA context or GPU buffer exists."""
    est.device = "cpu"
    est.gpu_layers = 0
    est.total_gib = est.weights_gib = est.kv_cache_gib = est.compute_gib = 0.0
    est.overhead_gib = est.cuda_context_gib = 0.0
    est.notes = [n for n in est.notes if "layers on the GPU" not in n]
    est.notes.insert(0, "no GPU: every layer, the KV cache and the compute buffers are in system RAM")
    return est


def _plan_from_exact(tensors, arch):
    from pocketpack.vram.formats import WeightPlan

    per_layer = {i: 0 for i in range(arch.num_layers)}
    inp = out = other = 0
    for t in tensors:
        size = t.nbytes or 0
        if t.category == "token_embd":
            inp += size
        elif t.category == "output":
            out += size
        elif t.layer is not None and t.layer in per_layer:
            per_layer[t.layer] += size
        else:
            other += size
    if not any(t.category == "output" for t in tensors):
        out += inp
    return WeightPlan(per_layer, inp, out, other, sum(t.nbytes or 0 for t in tensors), 0, input_on_gpu=False)


def _transformers_weights(info: ModelInfo, fmt: Format):
    return _cached(info, ("plan", fmt.name), lambda: _transformers_weights_uncached(info, fmt))


def _transformers_weights_uncached(info: ModelInfo, fmt: Format):
    tensors = _tensors_for(info, fmt)
    if info.native == fmt.name and info.exact_tensors and fmt.kind in ("gptq", "awq", "exl2"):
        plan = _plan_from_exact(tensors, info.arch)
        plan.input_on_gpu = fmt.kind != "exl2"
        if plan.output_bytes and not any(t.category == "output" for t in tensors):
            plan.output_bytes = 0 if fmt.kind != "exl2" else plan.output_bytes
        synth = weight_plan(info.arch.tensors(), fmt, info.arch)
        plan.largest_linear_fp16 = synth.largest_linear_fp16
        return plan
    return weight_plan(tensors, fmt, info.arch, _compute_dtype_bytes(info, fmt))


def _transformers(info: ModelInfo, fmt: Format, ctx: int, batch: int, cache_type: str,
                  attn_implementation: str = "sdpa", logits: str = "last") -> Estimate:
    a = info.arch
    est = _base(info, fmt, "inference", ctx, batch, cache_type, a.num_layers)
    plan = _transformers_weights(info, fmt)
    w_gpu = plan.total - (0 if plan.input_on_gpu else plan.input_bytes)
    kv = kv_cache_bytes(info, fmt, ctx, batch, cache_type)
    b = _compute_dtype_bytes(info, fmt)
    if fmt.kind == "exl2":
        # ExLlamaV2 processes the prompt in chunks of max_input_len (2048) with a fixed scratch
        chunk = min(ctx, 2048)
        act = batch * chunk * (a.intermediate_size * 2 + a.hidden_size * 6) * 2 + batch * a.vocab_size * 4 * 2
    else:
        # the prompt runs in one forward pass: the peak is inside one layer (hidden states, q/k/v,
        # gate/up/act of the MLP) or at the end (logits), whichever is larger
        tokens = batch * ctx
        layer = tokens * (a.hidden_size * 4 + (a.num_heads * a.head_dim + 2 * a.kv_dim) + a.intermediate_size * 3) * b
        if attn_implementation == "eager":
            # eager attention materialises the scores of every head: 16-bit scores, their fp32
            # softmax and its 16-bit copy are alive together (transformers' eager_attention_forward)
            layer += batch * a.num_heads * ctx * ctx * (b + 4 + b)
        if logits == "all":  # lm_head output for every prompt position, upcast to fp32
            out = tokens * a.vocab_size * (b + 4) + tokens * a.hidden_size * b
        else:  # last-token logits in fp32, and their softmax
            out = batch * a.vocab_size * 4 * 2
        act = max(layer, out)
    dequant = plan.largest_linear_fp16 if fmt.kind in ("bnb4", "gptq", "awq") else 0
    if fmt.kind == "int8":
        dequant = plan.largest_linear_fp16  # int8 matmul keeps an fp16 copy of outlier columns + CxB
    est.weights_gib = _bytes_gib(w_gpu)
    est.kv_cache_gib = _bytes_gib(kv)
    est.compute_gib = _bytes_gib(act + dequant)
    est.cuda_context_gib = CUDA_CONTEXT_GIB[fmt.loader]
    slack = TRANSFORMERS_ALLOC_SLACK * (w_gpu + kv + act)
    est.overhead_gib = est.cuda_context_gib + _bytes_gib(slack)
    est.total_gib = est.weights_gib + est.kv_cache_gib + est.compute_gib + est.overhead_gib
    planned_file = plan.file_bytes
    est.file_gib = _bytes_gib(_file_bytes(info, fmt, planned_file))
    # loading reads the checkpoint through RAM; embeddings of EXL2 live there
    est.ram_parts_gib = {"weights": _bytes_gib(0 if plan.input_on_gpu else plan.input_bytes),
                         "loading": TRANSFORMERS_LOAD_RAM_GIB}
    est.ram_gib = sum(est.ram_parts_gib.values())
    if fmt.quantises_at_load:
        est.notes.append("bitsandbytes quantises the fp16/bf16 checkpoint while loading: download is file_gib")
    return est


def _names(value: str | list[str] | tuple[str, ...] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    return [str(t).strip() for t in value if str(t).strip()]


def lora_targets(arch, targets: str | list[str]) -> set[str]:
    """Tensor categories that LoRA adapts, from PEFT module names, ``all-linear`` (PEFT's: every
    linear layer of the decoder, not the output layer) or both ("all-linear,lm_head")."""
    names = _names(targets)
    if not names:
        return set(LINEAR_CATEGORIES)
    out: set[str] = set()
    unknown = []
    for name in names:
        if name == "all-linear":
            out |= LINEAR_CATEGORIES
        elif name in LORA_MODULES:
            out.add(LORA_MODULES[name])
        else:
            unknown.append(name)
    if unknown:
        raise VramError(f"unknown LoRA target(s) {', '.join(unknown)}; valid targets: all-linear, "
                        f"{', '.join(sorted(LORA_MODULES))}")
    return out


def whole_modules(modules: str | list[str] | None) -> set[str]:
    """Categories trained whole beside the adapters (PEFT's ``modules_to_save``)."""
    out: set[str] = set()
    unknown = []
    for name in _names(modules):
        if name in WHOLE_MODULES:
            out.add(WHOLE_MODULES[name])
        else:
            unknown.append(name)
    if unknown:
        raise VramError(f"unknown module(s) to train whole {', '.join(unknown)}; valid: "
                        f"{', '.join(sorted(WHOLE_MODULES))}")
    return out


def normalise_optimizer(name: str) -> str:
    """An optimizer name (Trainer's spellings accepted) as one of OPTIMIZERS; else the valid list."""
    key = str(name or "").strip().lower()
    key = OPTIMIZER_ALIASES.get(key, key)
    if key not in OPTIMIZERS:
        raise VramError(f"unknown optimizer {str(name)[:40]!r}; valid optimizers: {', '.join(OPTIMIZERS)} "
                        f"(also Trainer's names: {', '.join(OPTIMIZER_ALIASES)})")
    return key


def _out_width(arch, cat: str) -> int:
    h, ff = arch.hidden_size, arch.intermediate_size
    q, kv = arch.num_heads * arch.head_dim, arch.kv_dim
    return {"attn_q": q, "attn_k": kv, "attn_v": kv, "attn_qkv": q + 2 * kv, "attn_output": h,
            "ffn_gate": ff, "ffn_up": 2 * ff if arch.fused else ff, "ffn_down": h}.get(cat, 0)


def saved_per_token(arch, cats: set[str], b: int, quantized_base: bool, rank: int, dropout: float,
                    dora: bool = False) -> int:
    """Bytes autograd keeps for the backward pass, per token and decoder layer, under LoRA.

    - SDPA/flash attention keeps q, k, v and its output (o_proj's input, so nothing more for it);
    - RMSNorm/LayerNorm upcast their input to fp32 and keep it (two norms a layer);
    - the MLP keeps the activation's input and output and the up projection (gated), or the
      activation's input (fc1/fc2 models);
    - a frozen 16-bit Linear keeps no input (its weight needs no gradient), but the input of an
      adapted one is kept for its LoRA A matrix; bitsandbytes' MatMul4Bit and MatMul8bitLt keep the
      input of every quantised Linear (``ctx.tensors = (A, B)``), and so does AutoAWQ's
      WQLinearMMFunction (``save_for_backward(x, ...)``), so such a base keeps them all;
    - LoRA dropout (PEFT applies one per adapted module) keeps its output and a byte mask, and
      each adapter keeps its rank-wide A output;
    - DoRA (``use_dora``) scales the base output and the adapter output by the magnitude vector,
      so both outputs of every adapted module are kept (PEFT's DoraLinearLayer.forward).
    """
    h, ff = arch.hidden_size, arch.intermediate_size
    q, kv = arch.num_heads * arch.head_dim, arch.kv_dim
    n = b * (2 * q + 2 * kv) + 2 * 4 * h + b * (3 if arch.gated_ffn else 1) * ff
    attn_in = {"attn_q", "attn_k", "attn_v", "attn_qkv"}
    if quantized_base or cats & attn_in:
        n += b * h
    if quantized_base or cats & {"ffn_gate", "ffn_up"}:
        n += b * h
    if quantized_base or "ffn_down" in cats:
        n += b * ff
    width = {"attn_q": h, "attn_k": h, "attn_v": h, "attn_qkv": h, "attn_output": q, "ffn_gate": h,
             "ffn_up": h, "ffn_down": ff}
    for cat in cats:
        if cat in width and (cat != "ffn_gate" or arch.gated_ffn):
            n += b * rank + ((b + 1) * width[cat] if dropout > 0 else 0)
            if dora:
                n += 2 * b * _out_width(arch, cat)
    return n


def _copies(t) -> int:
    n = 1
    for d in t.shape[2:]:
        n *= int(d)
    return n


def _training(info: ModelInfo, fmt: Format, seq: int, batch: int, rank: int, targets, checkpointing: bool,
              optimizer: str, dropout: float = 0.05, dora: bool = False, modules_to_save=None,
              kbit_prep: bool = True) -> Estimate:
    """LoRA/DoRA fine-tuning as PEFT + Trainer run it: on a 16-bit or LLM.int8 base (LoRA), on a
    bitsandbytes 4-bit base (QLoRA), or on a GPTQ/AWQ checkpoint (PEFT over their quantised layers).

    Adapters, their gradients and optimizer states are fp32 (PEFT's ``autocast_adapter_dtype``);
    modules trained whole (``modules_to_save``: embeddings, lm_head) are a second copy in the
    compute dtype with their gradient and optimizer states in that dtype (torch optimizers keep
    states like the parameter). Activations are what autograd saves for the backward pass, per token
    and layer (see :func:`saved_per_token`); with gradient checkpointing only each layer's input is
    kept and one layer is recomputed at a time. The loss upcasts the logits to fp32. The peak is the
    backward pass, or the optimizer step when its temporaries outgrow the activations (AdamW's
    foreach step holds one more copy of the trainable parameters).
    """
    if fmt.kind not in ("float", "int8", "bnb4", "gptq", "awq"):
        if fmt.kind == "gguf":
            raise VramError(f"training takes a Transformers base: {TRAINABLE_HELP}; a GGUF ({fmt.name}) is "
                            "trained through its fp16/bf16 original (`pocketpack adapters to-gguf` converts the adapter)")
        raise VramError(f"training takes a Transformers base: {TRAINABLE_HELP} (not {fmt.name})")
    optimizer = normalise_optimizer(optimizer)
    if rank <= 0:
        raise VramError("--lora-rank must be positive")
    if not 0 <= dropout < 1:
        raise VramError("LoRA dropout must be in [0, 1)")
    a = info.arch
    est = _base(info, fmt, "training", seq, batch, "fp16", a.num_layers)
    plan = _transformers_weights(info, fmt)
    cats = lora_targets(a, targets)
    whole = whole_modules(modules_to_save)
    tensors = a.tensors()
    tied = not any(t.category == "output" for t in tensors)
    lora_params = dora_params = whole_params = 0
    largest_adapted = 0
    for t in tensors:
        if not t.is_matrix:
            continue
        k, o, copies = int(t.shape[0]), int(t.shape[1]), _copies(t)
        if t.category in cats:
            lora_params += rank * (k + o) * copies
            if dora and t.category != "token_embd":
                dora_params += o * copies
            if t.category in LINEAR_CATEGORIES:
                largest_adapted = max(largest_adapted, t.n_params)
        if t.category in whole:
            whole_params += t.n_params
    embd = next((t for t in tensors if t.category == "token_embd"), None)
    if tied and embd is not None:  # lm_head is the embedding matrix: adapted or trained as a Linear
        if "output" in cats:
            lora_params += rank * (int(embd.shape[0]) + int(embd.shape[1]))
            dora_params += a.vocab_size if dora else 0
        if "output" in whole and "token_embd" not in whole:
            whole_params += embd.n_params
    if lora_params == 0 and whole_params == 0:
        raise VramError(f"no module of this {a.model_type} model matches the LoRA targets {targets}")
    b = _compute_dtype_bytes(info, fmt)
    tokens = batch * seq
    h, ff = a.hidden_size, a.intermediate_size
    keeps_inputs = fmt.kind in ("bnb4", "int8", "awq")
    per_layer_token = saved_per_token(a, cats & LINEAR_CATEGORIES, b, quantized_base=keeps_inputs, rank=rank,
                                      dropout=dropout, dora=dora)
    # the backward pass of one layer holds the gradients of its largest activations at once
    backward_work = tokens * (3 * ff + 2 * h) * b
    logits = tokens * a.vocab_size * (b + 4 + 4)  # 16-bit logits, fp32 upcast, fp32 grad
    head = 0
    if "output" in cats:  # LoRA on lm_head: its dropout, A output and B output beside the logits
        head = tokens * (((b + 1) * h if dropout > 0 else 0) + rank * b + a.vocab_size * b)
    if "token_embd" in cats:
        head += tokens * rank * b
    if checkpointing:
        act = tokens * (a.num_layers * h * b + per_layer_token) + backward_work + logits + head
    else:
        act = tokens * a.num_layers * per_layer_token + backward_work + logits + head
    # dequantised copies of the frozen weights:
    # - 4-bit (bitsandbytes) and AWQ: a 16-bit copy of one weight in the forward and one in the backward;
    # - LLM.int8: the fp16 outlier columns and the int8 row-major copy of one weight;
    # - GPTQ (auto-gptq's cuda-old/triton and gptqmodel's torch kernels for a long input): the weight is
    #   dequantised to fp16 and multiplied with torch.matmul, which keeps it for the input's gradient:
    #   every linear weight of the layers being differentiated (one layer under checkpointing, all without)
    linear = plan.largest_linear_fp16
    if fmt.kind == "gptq":
        layer_linear = 2 * sum(t.n_params for t in tensors if t.layer == 0 and t.category in LINEAR_CATEGORIES)
        dequant = (layer_linear if checkpointing else layer_linear * a.num_layers) + linear
    else:
        dequant = {"bnb4": 2 * linear, "awq": 2 * linear, "int8": linear}.get(fmt.kind, 0)
    if dora and largest_adapted:
        # DoRA's weight norm: B@A in fp32, W + s*BA in fp32 (and W dequantised on a quantised base)
        dequant += largest_adapted * (8 + (2 if fmt.kind != "float" else 0))
    states, temp_copies = OPTIMIZERS[optimizer]
    trainable_fp32 = lora_params + dora_params
    eight_bit = OPTIMIZER_8BIT_STATES.get(optimizer, 0)
    optim_bytes = trainable_fp32 * (4 * states + eight_bit) + whole_params * (b * states + eight_bit)
    step_temps = temp_copies * (4 * trainable_fp32 + b * whole_params)
    weights = plan.total
    if kbit_prep and fmt.kind in ("bnb4", "int8"):
        # prepare_model_for_kbit_training casts every fp16/bf16 parameter that is not quantised to fp32
        unquantised = sum(t.n_params for t in tensors if not _is_linear(t))
        weights += unquantised * (4 - b)
        est.notes.append("prepare_model_for_kbit_training keeps the embeddings, lm_head and norms in fp32 "
                         f"(+{_bytes_gib(unquantised * (4 - b)):.2f} GiB)")
    est.weights_gib = _bytes_gib(weights)
    est.adapter_gib = _bytes_gib(4 * trainable_fp32 + b * whole_params)
    est.gradients_gib = _bytes_gib(4 * trainable_fp32 + b * whole_params)
    est.optimizer_gib = _bytes_gib(optim_bytes)
    backward = act + dequant
    est.activations_gib = _bytes_gib(max(backward, step_temps))
    est.compute_gib = est.activations_gib
    est.lora_params_m = (trainable_fp32 + whole_params) / 1e6
    est.cuda_context_gib = CUDA_CONTEXT_GIB["Transformers"]
    slack = 0.08 * (act + plan.total * 0.1)
    est.overhead_gib = est.cuda_context_gib + _bytes_gib(slack)
    est.total_gib = (est.weights_gib + est.adapter_gib + est.gradients_gib + est.optimizer_gib
                     + est.activations_gib + est.overhead_gib)
    est.file_gib = _bytes_gib(_file_bytes(info, fmt, plan.file_bytes))
    est.ram_parts_gib = {"loading": TRANSFORMERS_LOAD_RAM_GIB}
    est.ram_gib = TRANSFORMERS_LOAD_RAM_GIB
    if step_temps > backward:
        est.notes.append(f"the optimizer step's temporaries ({_bytes_gib(step_temps):.2f} GiB) outgrow the "
                         "activations: the peak is at the step")
    if optimizer == "paged_adamw8bit":
        est.notes.append("paged optimizer states can spill to RAM under memory pressure")
    if fmt.kind == "gptq":
        est.notes.append("GPTQ base: PEFT trains adapters over the quantised layers (gptqmodel or auto-gptq, "
                         "exllama kernels off); each weight is dequantised to fp16 for its matmul")
    if whole:
        est.notes.append(f"trained whole beside the adapters: {', '.join(sorted(whole))} "
                         f"({whole_params / 1e6:.0f} M parameters)")
    return est
