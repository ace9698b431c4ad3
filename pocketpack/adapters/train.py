"""QLoRA training on this machine: a LoRA on a base loaded in 4-bit NF4, resumable.

The base is loaded with bitsandbytes NF4 + double quantisation and bf16/fp16 compute (on a
CPU where those fail, float32 compute, and the run says so); LoRA targets q_proj and v_proj
unless told otherwise. Data: a plain text file (cut into blocks), a JSONL of chats
(``{"messages": [{"role", "content"}]}``, ShareGPT ``conversations``, TGWUI ``internal``
rows, or ``{"text": ...}``), or ``memory:CHARACTER`` — that character's conversations as
the memory extension stored them (``pocketpack.memory``), one chat sample per chat. Every
``save_every`` steps a checkpoint (adapter, AdamW state — safetensors, never pickle — and
the step) lands in ``OUTPUT/checkpoint``; running again with the same output and the same
examples resumes from it, and since the batch order and dropout are seeded per step a
resumed run ends where an uninterrupted one would. The result is a normal PEFT
folder: ``adapter_model.safetensors``, ``adapter_config.json``, ``training_metadata.json``
and ``loss.png``. Before loading anything, :func:`plan` sizes the run (with
``pocketpack.vram``'s training estimate) and :func:`train` refuses a run that will not fit.
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from pocketpack.adapters.library import CONFIG_NAME, METADATA_NAME, SAFETENSORS_NAME, AdapterError
from pocketpack.jsonl import read_jsonl

log = logging.getLogger("pocketpack.adapters")
GIB = 1024 ** 3
QUANTS = ("nf4", "int8", "none")


@dataclass
class TrainConfig:
    base: str                          # Hugging Face model folder (config.json + weights + tokenizer)
    data: str                          # .txt or .jsonl
    output: str                        # adapter folder to write
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    targets: list = field(default_factory=lambda: ["q_proj", "v_proj"])
    quant: str = "nf4"                 # nf4 (QLoRA, double quant) | int8 | none
    compute_dtype: str = "auto"        # auto | bf16 | fp16 | fp32
    seq_len: int = 256
    batch_size: int = 1
    grad_accum: int = 1
    lr: float = 2e-4
    epochs: float = 1.0
    max_steps: int | None = None
    save_every: int = 50
    seed: int = 0
    grad_checkpointing: bool = True
    device: str = "auto"               # auto | cpu | cuda
    memory_limit_gib: float | None = None  # refuse runs needing more than this (default: what is free)
    memory_dir: str | None = None      # the memory store, for data "memory:CHARACTER"
    # prior preservation: text (files like ``data``) on which the base model's next-token
    # predictions are kept: each step adds preserve_weight x KL(base || base+adapter) there,
    # the base's own predictions computed with the adapter switched off
    preserve: list = field(default_factory=list)
    preserve_weight: float = 1.0
    # and preserve_hinge x max(0, NLL_base - NLL_tuned) there (mean NLL a token, same forwards):
    # charges the adapter only for making that text likelier than the base does, the very change
    # "not better on the other styles' lines" measures (the KL barely charges for raising tokens
    # the base found unlikely); being worse there costs nothing
    preserve_hinge: float = 0.0
    # with several preserve files, charge the hinge on each file's own batch (batch_size blocks of
    # each; the mean of the per-file max(0, gain)): on one batch mixing them, a voice could make one
    # preserved kind of text likelier as long as it made another less likely by more
    preserve_each: bool = False
    # the hinge's margin m, nats a token: H x max(0, gain + m) charges the adapter until the preserved
    # text is at least m nats a token *less* likely than under the base, a margin for what holds on
    # those training lines and only partly on lines of the same kind never seen
    preserve_margin: float = 0.0


@dataclass
class TrainPlan:
    """What a run needs and has, shown before it starts."""

    device: str
    need_gib: float
    have_gib: float | None
    source: str                        # "pocketpack.vram" or "parameter count"
    breakdown: dict
    n_examples: int = 0
    steps: int = 0
    notes: list = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return self.have_gib is None or self.need_gib <= self.have_gib

    def describe(self) -> str:
        where = "GPU memory" if self.device.startswith("cuda") else "RAM"
        have = f"{_gib(self.have_gib)} free" if self.have_gib is not None else "free memory unknown"
        parts = ", ".join(f"{k} {_gib(v)}" for k, v in self.breakdown.items() if v)
        return (f"needs about {_gib(self.need_gib)} of {where} ({have}; {parts}; estimate from {self.source}); "
                f"{self.n_examples} examples, {self.steps} steps")


def _gib(v: float) -> str:
    return f"{v:.2f} GiB" if v >= 1 else f"{v * 1024:.1f} MiB"


@dataclass
class Progress:
    step: int
    total: int
    loss: float
    lr: float
    elapsed_s: float
    tokens: int

    @property
    def steps_per_s(self) -> float:
        return self.step / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the pace so far (None before the first step is timed)."""
        rate = self.steps_per_s
        return (self.total - self.step) / rate if rate > 0 else None

    def describe(self) -> str:
        """``step 12/100  0.41 steps/s  eta 3m35s  loss 2.3140``"""
        eta = self.eta_s
        return (f"step {self.step}/{self.total}  {self.steps_per_s:.2f} steps/s  "
                f"eta {_duration(eta) if eta is not None else '?'}  loss {self.loss:.4f}")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


# --------------------------------------------------------------------------- data

def _render(messages: list[dict], tokenizer) -> str:
    if getattr(tokenizer, "chat_template", None):
        try:
            return tokenizer.apply_chat_template(messages, tokenize=False)
        except Exception:  # noqa: BLE001 - a template that cannot render these turns: plain role lines instead
            pass
    return "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in messages)


def _chat_of(row, where: str) -> list[dict] | str:
    if isinstance(row, dict):
        if isinstance(row.get("text"), str):
            return row["text"]
        if isinstance(row.get("messages"), list):
            return [{"role": str(m.get("role", "user")), "content": str(m.get("content", ""))} for m in row["messages"]]
        if isinstance(row.get("conversations"), list):
            roles = {"human": "user", "gpt": "assistant", "system": "system"}
            return [{"role": roles.get(m.get("from"), str(m.get("from", "user"))), "content": str(m.get("value", ""))}
                    for m in row["conversations"]]
        if isinstance(row.get("internal"), list):
            out = []
            for turn in row["internal"]:  # rows may hold more than [user, assistant]
                if len(turn) > 0 and turn[0]:
                    out.append({"role": "user", "content": str(turn[0])})
                if len(turn) > 1 and turn[1]:
                    out.append({"role": "assistant", "content": str(turn[1])})
            return out
    raise AdapterError(f"{where}: expected messages, conversations, internal or text")


MEMORY_PREFIX = "memory:"


def memory_chats(directory: str | Path | None, character: str) -> list[list[dict]]:
    """A character's stored conversations from the memory store, oldest chat first: one list
    of ``{"role", "content"}`` messages per chat, in row order (user before assistant).
    Manual notes are not conversation and are left out; messages stored without a chat id
    (imported ones) make one chat of their own, in time order."""
    from pocketpack.retrieval.store import DB_NAME

    if not directory:
        raise AdapterError(f"{MEMORY_PREFIX}{character}: say where the memory store is (memory_dir)")
    directory = Path(directory)
    if not (directory / DB_NAME).is_file():
        raise AdapterError(f"{directory}: no memory store here (the memory extension keeps it in "
                           "user_data/pocketpack/memory)")
    from pocketpack.memory import MemoryStore

    store = MemoryStore(directory)
    try:
        if character not in store.characters():
            known = ", ".join(store.characters()) or "none"
            raise AdapterError(f"{directory}: no memories of {character!r} (characters stored: {known})")
        memories = store.list(character, kind="message")
    finally:
        store.close()
    chats: dict[str | None, list] = {}
    for m in memories:
        chats.setdefault(m.chat, []).append(m)
    order = {"user": 0, "assistant": 1}
    out = []
    for chat in sorted(chats, key=lambda c: min(m.time for m in chats[c])):
        rows = sorted(chats[chat], key=lambda m: (m.row if m.row is not None and chat is not None else -1, m.time,
                                                  order.get(m.role, 2)))
        messages = [{"role": m.role, "content": m.text} for m in rows if m.text.strip()]
        if messages:
            out.append(messages)
    return out


def load_examples(path: str | Path, tokenizer, seq_len: int, *,
                  memory_dir: str | Path | None = None) -> list[list[int]]:
    """Token blocks of at most ``seq_len`` from a text file, a JSONL of chats, or
    ``memory:CHARACTER`` (a character's conversations in the memory store at ``memory_dir``)."""
    if str(path).startswith(MEMORY_PREFIX):
        character = str(path)[len(MEMORY_PREFIX):].strip()
        if not character:
            raise AdapterError(f"{path}: name the character (memory:NAME)")
        docs = [_render(chat, tokenizer) for chat in memory_chats(memory_dir, character)]
        return _blocks(docs, tokenizer, seq_len, eos=True, where=str(path))
    path = Path(path)
    if not path.is_file():
        raise AdapterError(f"{path}: no such data file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AdapterError(f"{path}: cannot read ({exc})") from None
    docs: list[str] = []
    if path.suffix.lower() in (".jsonl", ".json"):
        for i, row in read_jsonl(path, error=AdapterError, where=lambda n: f"{path}:{n}", objects=False):
            chat = _chat_of(row, f"{path}:{i}")
            docs.append(chat if isinstance(chat, str) else _render(chat, tokenizer))
    else:
        docs = [text]
    plain = path.suffix.lower() not in (".jsonl", ".json")
    return _blocks(docs, tokenizer, seq_len, eos=not plain, where=str(path), lines=plain)


def _blocks(docs: list[str], tokenizer, seq_len: int, *, eos: bool, where: str,
            lines: bool = False) -> list[list[int]]:
    """Blocks of at most ``seq_len`` tokens, each starting with the BOS token (as every prompt
    does at inference: Gemma's loss on a block without it is about twice as high). ``lines``: a
    text file's lines are packed whole into blocks, so a block starts where a line starts."""
    bos = tokenizer.bos_token_id
    room = max(seq_len - (1 if bos is not None else 0), 1)
    blocks: list[list[int]] = []

    def emit(ids: list[int]) -> None:
        block = ([bos] if bos is not None else []) + ids
        if len(block) >= 2:
            blocks.append(block)

    for doc in docs:
        if lines:
            pieces = [tokenizer(ln + "\n", add_special_tokens=False)["input_ids"]
                      for ln in doc.splitlines() if ln.strip()]
        else:
            ids = tokenizer(doc, add_special_tokens=False)["input_ids"]
            if tokenizer.eos_token_id is not None and eos:
                ids = ids + [tokenizer.eos_token_id]
            pieces = [ids]
        current: list[int] = []
        for piece in pieces:
            if current and len(current) + len(piece) > room:
                emit(current)
                current = []
            while len(piece) > room:  # longer than a block: cut
                emit(piece[:room])
                piece = piece[room:]
            current = current + piece
        if current:
            emit(current)
    if not blocks:
        raise AdapterError(f"{where}: no training text in it")
    return blocks


# --------------------------------------------------------------------------- memory

def _device(cfg: TrainConfig) -> str:
    if cfg.device != "auto":
        return cfg.device
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def lora_need_bytes(n_params: int, lora_params: int, weight_bytes: float, seq_tokens: int, hidden: int,
                    n_layers: int, vocab: int) -> dict:
    """Own fallback estimate from parameter counts: base weights, fp32 LoRA + grads + AdamW
    states (16 bytes a parameter), activations (checkpointed layer inputs, one layer's worth of
    intermediates and fp32 logits), 10% slack."""
    weights = n_params * weight_bytes
    lora = lora_params * 16
    acts = seq_tokens * (n_layers * hidden * 2 + 16 * hidden * 2 + vocab * 10)
    return {"weights": weights / GIB, "lora+optimizer": lora / GIB, "activations": acts / GIB,
            "overhead": 0.1 * (weights + lora + acts) / GIB}


def base_folder(base: str | Path) -> Path:
    """The local Hugging Face model folder ``base`` names, or AdapterError with one line.

    A ``.gguf`` file stands for its Transformers weights (``pocketpack.adapters.gguf_base``:
    dequantised on first use, then read from the cache beside it).
    Only a path on this machine is a base: a bare name ("gemma-3-270m-q4_k_m.gguf",
    "google/gemma-3-270m") that is no file or folder here is "not found". It is never handed
    to ``from_pretrained``, which would look it up on huggingface.co.
    """
    text = str(base).strip()
    if not text:
        raise AdapterError("name the base model: a local Hugging Face model folder (config.json + weights)")
    path = Path(text).expanduser()
    if not path.exists():
        raise AdapterError(f"{text}: base model not found: give the path of a local Hugging Face model folder "
                           "(names are not looked up online)")
    if path.is_file() and path.suffix.lower() == ".gguf":
        from pocketpack.adapters.gguf_base import hf_base_from_gguf

        return hf_base_from_gguf(path)  # its Transformers weights, dequantised once and cached beside it
    if path.is_dir() and any(path.glob("*.gguf")) and not (path / "config.json").is_file():
        raise AdapterError(f"{path}: a folder of GGUF files; give the .gguf file itself as the base")
    if not (path / "config.json").is_file():
        raise AdapterError(f"{path}: not a Hugging Face model folder (no config.json); "
                           "QLoRA trains on Transformers checkpoints, not GGUF")
    return path


def base_tokenizer(base: str | Path):
    """The tokenizer of the local base model folder (``base_folder``), read from disk only."""
    folder = base_folder(base)
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - transformers raises many types here
        raise AdapterError(f"{folder}: cannot load its tokenizer ({str(exc).splitlines()[0]})") from None


def plan(cfg: TrainConfig, n_examples: int = 0) -> TrainPlan:
    """Memory a run needs, from ``pocketpack.vram`` when it can size this model, else from the
    model's parameter counts; and what this machine has free."""
    device = _device(cfg)
    fmt = {"nf4": "nf4-dq", "int8": "int8", "none": "fp16" if device.startswith("cuda") else "fp32"}[cfg.quant]
    steps = _total_steps(cfg, n_examples) if n_examples else 0
    notes: list[str] = []
    try:
        from pocketpack.vram import estimate as vram_estimate
        from pocketpack.vram import inspect_model
        from pocketpack.vram.machine import detect

        info = inspect_model(str(base_folder(cfg.base)))  # a GGUF base: its dequantised Transformers copy
        if info.native and info.native.startswith(("gptq-", "awq-")):
            # PEFT trains the adapters over the checkpoint's own quantised layers; --quant does not apply
            fmt = info.native
            notes.append(f"the base is a {info.native} checkpoint: sized as LoRA over its quantised layers")
        est = vram_estimate.estimate(info, fmt, ctx=cfg.seq_len, batch=cfg.batch_size, mode="training",
                                     lora_rank=cfg.rank, lora_targets=list(cfg.targets),
                                     grad_checkpointing=cfg.grad_checkpointing, optimizer="adamw")
        need = est.total_gib
        breakdown = dict(est.parts())
        if not device.startswith("cuda"):  # no CUDA context on a CPU run
            need -= est.cuda_context_gib
            breakdown["overhead"] = max(0.0, breakdown.get("overhead", 0.0) - est.cuda_context_gib)
        machine = detect(use_torch=True)
        have = machine.vram_free_gib if device.startswith("cuda") else machine.ram_free_gib
        return _limited(cfg, TrainPlan(device, need, have, "pocketpack.vram", breakdown, n_examples, steps,
                                       notes + est.notes))
    except ImportError:
        notes.append("pocketpack.vram is not available: estimated from parameter counts")
    except Exception as exc:  # noqa: BLE001 - VramError and friends: fall back, but say why
        notes.append(f"pocketpack.vram could not size this model ({str(exc).splitlines()[0]}); "
                     "estimated from parameter counts")
    breakdown = _fallback_breakdown(cfg, fmt)
    have = _free_memory(device)
    return _limited(cfg, TrainPlan(device, sum(breakdown.values()), have, "parameter count", breakdown, n_examples,
                                   steps, notes))


def _limited(cfg: TrainConfig, p: TrainPlan) -> TrainPlan:
    if cfg.memory_limit_gib is not None:
        p.have_gib = min(p.have_gib, cfg.memory_limit_gib) if p.have_gib is not None else cfg.memory_limit_gib
    return p


def _fallback_breakdown(cfg: TrainConfig, fmt: str) -> dict:
    try:
        cfg_json = json.loads((base_folder(cfg.base) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AdapterError(f"{cfg.base}: cannot read config.json ({exc})") from None
    text = cfg_json.get("text_config") or cfg_json
    h = int(text["hidden_size"])
    layers = int(text["num_hidden_layers"])
    ff = int(text.get("intermediate_size") or 4 * h)
    vocab = int(text.get("vocab_size") or 32000)
    heads = int(text.get("num_attention_heads") or 1)
    kv = int(text.get("num_key_value_heads") or heads)
    hd = int(text.get("head_dim") or h // heads)
    shapes = {"q_proj": (h, heads * hd), "k_proj": (h, kv * hd), "v_proj": (h, kv * hd), "o_proj": (heads * hd, h),
              "gate_proj": (h, ff), "up_proj": (h, ff), "down_proj": (ff, h)}
    per_layer = sum(i * o for i, o in shapes.values())
    n_params = layers * per_layer + 2 * vocab * h
    targets = list(shapes) if list(cfg.targets) == ["all-linear"] else cfg.targets
    lora = layers * sum(cfg.rank * sum(shapes[t]) for t in targets if t in shapes)
    weight_bytes = {"nf4-dq": 0.53, "int8": 1.0, "fp16": 2.0, "fp32": 4.0}[fmt]
    return lora_need_bytes(n_params, lora, weight_bytes, cfg.seq_len * cfg.batch_size, h, layers, vocab)


def _free_memory(device: str) -> float | None:
    try:
        if device.startswith("cuda"):
            import torch

            free, _ = torch.cuda.mem_get_info()
            return free / GIB
        from pocketpack.vram.machine import ram

        return ram()[1]
    except Exception:  # noqa: BLE001 - no CUDA runtime or no RAM reading here: memory unknown
        return None


def _total_steps(cfg: TrainConfig, n_examples: int) -> int:
    per_epoch = max(1, math.ceil(n_examples / (cfg.batch_size * cfg.grad_accum)))
    total = max(1, math.ceil(per_epoch * cfg.epochs))
    return min(total, cfg.max_steps) if cfg.max_steps else total


# --------------------------------------------------------------------------- model

def _compute_dtype(cfg: TrainConfig, device: str):
    import torch

    names = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    if cfg.compute_dtype != "auto":
        return [names[cfg.compute_dtype]]
    if device.startswith("cuda"):
        return [torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16]
    # CPU: bf16 only with bf16 instructions; elsewhere bitsandbytes' bf16 path runs but is ~40x
    # slower than float32 (measured: 105 s vs 2.4 s a step on an AVX2 CPU, Gemma 3 270M NF4)
    return [torch.bfloat16, torch.float32] if _cpu_has_bf16() else [torch.float32]


def _cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def native_quant(folder: Path) -> str | None:
    """The quantisation a checkpoint ships in (``gptq``, ``awq``…) from its config.json, or None.

    Such a base is already 4-bit: PEFT trains LoRA layers over its own quantised linears
    (``GPTQLoraLinear`` over gptqmodel's kernels), so ``--quant`` cannot apply to it —
    transformers refuses a BitsAndBytesConfig on a GPTQ checkpoint.
    """
    try:
        cfg_json = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    qc = cfg_json.get("quantization_config") if isinstance(cfg_json, dict) else None
    if not isinstance(qc, dict):
        qc = _legacy_gptq_config(folder)
    method = qc.get("quant_method") if isinstance(qc, dict) else None
    return str(method).lower() if method and str(method).lower() not in ("bitsandbytes",) else None


def _has_quantization_config(folder: Path) -> bool:
    try:
        cfg_json = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(cfg_json, dict) and isinstance(cfg_json.get("quantization_config"), dict)


def _legacy_gptq_config(folder: Path) -> dict | None:
    """AutoGPTQ-era checkpoints keep their settings in quantize_config.json only (TGWUI's
    ``--wbits``/``--groupsize`` era); transformers needs them handed in as a GPTQConfig."""
    try:
        qc = json.loads((folder / "quantize_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(qc, dict) or "bits" not in qc:
        return None
    return dict(qc, quant_method=str(qc.get("quant_method") or "gptq"))


def _load_model(cfg: TrainConfig, device: str, dtype):
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kwargs: dict = {"device_map": {"": device}}
    folder = base_folder(cfg.base)
    if native_quant(folder):  # its own quantisation_config decides how it loads
        kwargs["dtype"] = dtype if device.startswith("cuda") else torch.float32
        legacy = _legacy_gptq_config(folder)
        if legacy is not None and not _has_quantization_config(folder):
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
            config.quantization_config = {k: legacy[k] for k in ("bits", "group_size", "desc_act", "sym",
                                                                  "quant_method", "checkpoint_format")
                                          if k in legacy}  # as if config.json carried it: pre-quantised
            kwargs["config"] = config
    elif cfg.quant == "nf4":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype)
        kwargs["dtype"] = dtype
    elif cfg.quant == "int8":
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    else:
        kwargs["dtype"] = dtype if device.startswith("cuda") else torch.float32
    return AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True, **kwargs)


def _probe(model, device: str) -> None:
    """One forward/backward on two tokens: fails fast when a compute dtype is unusable here."""
    import torch

    ids = torch.tensor([[1, 2]], device=device)
    out = model(input_ids=ids, labels=ids)
    if not torch.isfinite(out.loss):
        raise RuntimeError("non-finite loss")
    out.loss.backward()
    model.zero_grad(set_to_none=True)


def _peft_model(cfg: TrainConfig, device: str, notes: list[str]):
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    last_exc: Exception | None = None
    for dtype in _compute_dtype(cfg, device):
        try:
            model = _load_model(cfg, device, dtype)
            if cfg.quant in ("nf4", "int8") and not native_quant(base_folder(cfg.base)):
                model = prepare_model_for_kbit_training(
                    model, use_gradient_checkpointing=cfg.grad_checkpointing,
                    gradient_checkpointing_kwargs={"use_reentrant": False})
            elif cfg.grad_checkpointing:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
                model.enable_input_require_grads()
            lcfg = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                              target_modules=list(cfg.targets) if list(cfg.targets) != ["all-linear"] else "all-linear",
                              bias="none", task_type="CAUSAL_LM")
            torch.manual_seed(cfg.seed)  # LoRA A's random init: same seed, same adapter
            model = get_peft_model(model, lcfg)
            _probe(model, device)
            return model, dtype
        except (RuntimeError, NotImplementedError, TypeError) as exc:
            last_exc = exc
            if dtype != torch.float32 and device == "cpu" and cfg.compute_dtype == "auto":
                notes.append(f"{str(dtype).replace('torch.', '')} compute failed on this CPU "
                             f"({str(exc).splitlines()[0][:120]}); using float32 compute")
                continue
            break
        except ValueError as exc:
            raise AdapterError(f"{cfg.base}: cannot set up LoRA ({str(exc).splitlines()[0]})") from None
        except OSError as exc:
            raise AdapterError(f"{cfg.base}: cannot load the base model ({str(exc).splitlines()[0]})") from None
    raise AdapterError(f"{cfg.base}: training cannot run here ({str(last_exc).splitlines()[0]})")


# --------------------------------------------------------------------------- checkpoints

def _save_checkpoint(model, optimizer, ckpt: Path, state: dict) -> None:
    from safetensors.torch import save_file

    tmp = ckpt.with_name(ckpt.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), safe_serialization=True, save_embedding_layers=False)
    opt = optimizer.state_dict()
    tensors = {}
    for idx, st in opt["state"].items():
        for k, v in st.items():
            tensors[f"{idx}.{k}"] = v.detach().reshape(v.shape).contiguous().cpu()
    if tensors:
        save_file(tensors, str(tmp / "optimizer.safetensors"))
    state = dict(state, param_groups=[{k: v for k, v in g.items() if k != "params"} for g in opt["param_groups"]])
    (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1), encoding="utf-8")
    shutil.rmtree(ckpt, ignore_errors=True)
    tmp.replace(ckpt)


def _load_checkpoint(model, optimizer, ckpt: Path) -> dict:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = json.loads((ckpt / "trainer_state.json").read_text(encoding="utf-8"))
    weights = load_file(str(ckpt / SAFETENSORS_NAME))
    set_peft_model_state_dict(model, weights)
    opt = optimizer.state_dict()
    if (ckpt / "optimizer.safetensors").is_file():
        flat = load_file(str(ckpt / "optimizer.safetensors"))
        restored: dict = {}
        for key, t in flat.items():
            idx, name = key.split(".", 1)
            restored.setdefault(int(idx), {})[name] = t
        opt["state"] = restored
        for group, saved in zip(opt["param_groups"], state.get("param_groups", [])):
            group.update({k: v for k, v in saved.items() if k != "params"})
        optimizer.load_state_dict(opt)
    return state


# --------------------------------------------------------------------------- run

def _fingerprint(cfg: TrainConfig, examples: list[list[int]]) -> dict:
    """What a checkpoint must share with the run that resumes it, including the examples
    themselves: a memory store (or a data file) that changed since is another run."""
    import hashlib

    keys = ("base", "data", "rank", "alpha", "targets", "quant", "seq_len", "batch_size", "grad_accum", "lr", "seed")
    d = asdict(cfg)
    out = {k: d[k] for k in keys}
    out["examples_sha1"] = hashlib.sha1(json.dumps(examples).encode("ascii")).hexdigest()
    if cfg.preserve:  # only then: checkpoints of runs without it keep their fingerprint
        out.update(preserve=[str(p) for p in cfg.preserve], preserve_weight=cfg.preserve_weight)
    if cfg.preserve_hinge:  # likewise: runs without the hinge keep theirs
        out["preserve_hinge"] = cfg.preserve_hinge
    if cfg.preserve_each:
        out["preserve_each"] = True
    if cfg.preserve_margin:
        out["preserve_margin"] = cfg.preserve_margin
    return out


def _preserve_terms(model, batch: list[list[int]], pad: int, device: str, groups: list[int] | None = None):
    """On text whose predictions should stay the base's, from one forward with the adapter off
    and one with it on: the mean KL(base || base+adapter) over the batch's tokens (how far the
    adapter moves the next-token distribution) and the gain, mean NLL_base - mean NLL_tuned of
    the batch's next tokens (nats a token the adapter made that text likelier by; negative: less
    likely). ``groups``: sizes of consecutive row groups (default: the whole batch is one), each
    with its own gain in the returned list."""
    import torch

    width = max(len(b) for b in batch)
    ids = torch.tensor([b + [pad] * (width - len(b)) for b in batch], device=device)
    mask = torch.tensor([[1] * len(b) + [0] * (width - len(b)) for b in batch], device=device)
    with torch.no_grad(), model.disable_adapter():
        base = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
    tuned = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
    kl = (base.exp() * (base - tuned)).sum(-1)
    kl = (kl * mask).sum() / mask.sum()
    nxt, scored = ids[:, 1:].unsqueeze(-1), mask[:, 1:].float()  # position t predicts token t+1
    base_nll = -base[:, :-1].gather(-1, nxt).squeeze(-1)
    tuned_nll = -tuned[:, :-1].gather(-1, nxt).squeeze(-1)
    diff = (base_nll - tuned_nll) * scored
    gains, start = [], 0
    for size in groups or [len(batch)]:
        rows = slice(start, start + size)
        gains.append(diff[rows].sum() / scored[rows].sum().clamp(min=1.0))
        start += size
    return kl, gains


def check_preservation(cfg: TrainConfig) -> None:
    """The preservation settings make sense together (AdapterError, one line, otherwise); called
    before any model is loaded, and by the demo before it says what it will train."""
    if cfg.preserve_weight < 0 or not math.isfinite(cfg.preserve_weight):
        raise AdapterError(f"preserve weight {cfg.preserve_weight}: a number >= 0")
    if cfg.preserve_hinge < 0 or not math.isfinite(cfg.preserve_hinge):
        raise AdapterError(f"preserve hinge {cfg.preserve_hinge}: a number >= 0")
    if cfg.preserve_hinge > 0 and not cfg.preserve:
        raise AdapterError(f"preserve hinge {cfg.preserve_hinge:g}: name the text it keeps (--preserve FILE)")
    if cfg.preserve_each and not cfg.preserve_hinge:
        raise AdapterError("a hinge per preserved file needs the hinge itself (--preserve-hinge H)")
    if cfg.preserve_margin < 0 or not math.isfinite(cfg.preserve_margin):
        raise AdapterError(f"preserve margin {cfg.preserve_margin}: a number of nats >= 0")
    if cfg.preserve_margin and not cfg.preserve_hinge:
        raise AdapterError("a margin is the hinge's (--preserve-hinge H)")


def train(cfg: TrainConfig, progress: Callable[[Progress], object] | None = None, *,
          resume: bool = True, check_memory: bool = True) -> dict:
    """Train (or resume) and save the adapter; returns its training metadata.

    ``progress`` is called after every optimiser step; returning False stops the run after
    saving a checkpoint (the next call resumes). Raises AdapterError with one line for bad
    input or a run that will not fit in memory.
    """
    import torch

    if cfg.quant not in QUANTS:
        raise AdapterError(f"quant {cfg.quant!r}: use one of {', '.join(QUANTS)}")
    if cfg.rank <= 0 or cfg.seq_len < 2 or cfg.batch_size <= 0 or cfg.grad_accum <= 0 or cfg.save_every <= 0:
        raise AdapterError("rank, seq_len, batch_size, grad_accum and save_every must be positive")
    base = base_folder(cfg.base)
    tokenizer = base_tokenizer(base)
    examples = load_examples(cfg.data, tokenizer, cfg.seq_len, memory_dir=cfg.memory_dir)
    if len(examples) < cfg.batch_size:
        raise AdapterError(f"{cfg.data}: too little text: {len(examples)} block(s) of up to {cfg.seq_len} tokens, "
                           f"fewer than one batch of {cfg.batch_size}; add lines or lower --batch-size")
    check_preservation(cfg)
    keep_sets = [load_examples(source, tokenizer, cfg.seq_len, memory_dir=cfg.memory_dir) for source in cfg.preserve]
    keep = [block for blocks in keep_sets for block in blocks]
    the_plan = plan(cfg, len(examples))
    log.info("training %s", the_plan.describe())
    if check_memory and not the_plan.fits:
        raise AdapterError(f"this run will not fit: it {the_plan.describe()}; lower seq_len, batch_size or rank")
    device = the_plan.device
    notes = list(the_plan.notes)
    native = native_quant(base)
    if native and cfg.quant != "none":
        notes.append(f"--quant {cfg.quant} does not apply: the base is already a {native.upper()} checkpoint, "
                     "and the LoRA trains over its own quantised layers")
    model, dtype = _peft_model(cfg, device, notes)
    if cfg.quant == "nf4" and device == "cpu" and not native:
        notes.append(f"QLoRA on CPU with {str(dtype).replace('torch.', '')} compute")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    total = _total_steps(cfg, len(examples))
    out = Path(cfg.output)
    ckpt = out / "checkpoint"
    state = {"step": 0, "losses": [], "tokens": 0, "fingerprint": _fingerprint(cfg, examples), "elapsed_s": 0.0}
    if resume and (ckpt / "trainer_state.json").is_file():
        saved = json.loads((ckpt / "trainer_state.json").read_text(encoding="utf-8"))
        if saved.get("fingerprint") != state["fingerprint"]:
            raise AdapterError(f"{ckpt}: a checkpoint of a different run (other data or settings); "
                               "delete it or choose another output folder")
        state.update(_load_checkpoint(model, optimizer, ckpt))
        log.info("resuming at step %d of %d", state["step"], total)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    per_step = cfg.batch_size * cfg.grad_accum
    model.train()
    started = time.monotonic() - float(state.get("elapsed_s", 0.0))
    stopped = False
    while state["step"] < total:
        step = state["step"]
        torch.manual_seed(cfg.seed * 1_000_003 + step)  # dropout: same on a resumed run
        optimizer.zero_grad(set_to_none=True)
        loss_sum = kl_sum = 0.0
        gain_sums = [0.0] * (len(keep_sets) if cfg.preserve_each else 1)   # per preserve group, over micro-batches
        for micro in range(cfg.grad_accum):
            batch = [examples[_index(cfg.seed, len(examples), step * per_step + micro * cfg.batch_size + j)]
                     for j in range(cfg.batch_size)]
            width = max(len(b) for b in batch)
            ids = torch.tensor([b + [pad] * (width - len(b)) for b in batch], device=device)
            mask = torch.tensor([[1] * len(b) + [0] * (width - len(b)) for b in batch], device=device)
            labels = ids.masked_fill(mask == 0, -100)
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss / cfg.grad_accum
            loss_sum += float(loss.detach())
            if keep and (cfg.preserve_weight > 0 or cfg.preserve_hinge > 0):
                at = step * per_step + micro * cfg.batch_size
                pools = ([(cfg.seed + 1 + i, blocks) for i, blocks in enumerate(keep_sets)] if cfg.preserve_each
                         else [(cfg.seed + 1, keep)])
                kept = [[blocks[_index(seed, len(blocks), at + j)] for j in range(cfg.batch_size)]
                        for seed, blocks in pools]
                kl, gains = _preserve_terms(model, [b for group in kept for b in group], pad, device,
                                            [len(group) for group in kept])
                kl = kl / cfg.grad_accum
                gains = [g / cfg.grad_accum for g in gains]
                kl_sum += float(kl.detach())
                for i, g in enumerate(gains):
                    gain_sums[i] += float(g.detach())
                if cfg.preserve_weight > 0:
                    loss = loss + cfg.preserve_weight * kl
                if cfg.preserve_hinge > 0:
                    margin = cfg.preserve_margin / cfg.grad_accum   # the gains are per micro-batch too
                    loss = loss + cfg.preserve_hinge * sum(torch.relu(g + margin) for g in gains) / len(gains)
            loss.backward()
            state["tokens"] += int(mask.sum())
        optimizer.step()
        state["step"] = step + 1
        state["losses"].append(round(loss_sum, 6))
        if keep:
            state.setdefault("preserve_kl", []).append(round(kl_sum, 6))
            if cfg.preserve_hinge:
                state.setdefault("preserve_gain", []).append(round(sum(gain_sums) / len(gain_sums), 6))
            if cfg.preserve_each:
                state.setdefault("preserve_gain_each", []).append([round(g, 6) for g in gain_sums])
        state["elapsed_s"] = time.monotonic() - started
        keep_going = True
        if progress is not None:
            keep_going = progress(Progress(state["step"], total, loss_sum, cfg.lr, state["elapsed_s"],
                                           state["tokens"])) is not False
        if state["step"] % cfg.save_every == 0 or not keep_going:
            _save_checkpoint(model, optimizer, ckpt, state)
        if not keep_going:
            stopped = True
            break
    meta = {
        "format": "pocketpack-training/1", "base_model": str(base), "model_type": model.config.model_type,
        "data": str(cfg.data), "examples": len(examples), "steps": state["step"], "total_steps": total,
        "tokens": state["tokens"], "final_loss": state["losses"][-1] if state["losses"] else None,
        "losses": state["losses"], "quant": native or cfg.quant, "compute_dtype": str(dtype).replace("torch.", ""),
        "device": device, "rank": cfg.rank, "alpha": cfg.alpha, "targets": list(cfg.targets), "lr": cfg.lr,
        "seq_len": cfg.seq_len, "batch_size": cfg.batch_size, "grad_accum": cfg.grad_accum, "seed": cfg.seed,
        "elapsed_s": round(state["elapsed_s"], 2), "memory_plan": the_plan.describe(), "notes": notes,
        "finished": not stopped,
    }
    if cfg.preserve:
        meta.update(preserve=[str(p) for p in cfg.preserve], preserve_weight=cfg.preserve_weight,
                    preserve_examples=len(keep), preserve_kl=state.get("preserve_kl", []))
        if cfg.preserve_hinge:
            meta.update(preserve_hinge=cfg.preserve_hinge, preserve_gain=state.get("preserve_gain", []))
        if cfg.preserve_each:
            meta.update(preserve_each=True, preserve_gain_each=state.get("preserve_gain_each", []))
        if cfg.preserve_margin:
            meta["preserve_margin"] = cfg.preserve_margin
    gguf_src = _gguf_source(cfg.base)
    if gguf_src is not None:  # trained on a GGUF's Transformers copy: say which file, for the switch check
        from pocketpack.adapters.gguf_base import identity, sha256_of

        base = base.resolve()
        meta["base_model"] = str(base)
        meta["base_gguf"] = dict(identity(gguf_src), path=str(gguf_src.resolve()), sha256=sha256_of(gguf_src))
    if stopped:
        return meta
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True, save_embedding_layers=False)
    cfg_path = out / CONFIG_NAME
    saved_cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    saved_cfg["base_model_name_or_path"] = str(base)
    cfg_path.write_text(json.dumps(saved_cfg, indent=2), encoding="utf-8")
    (out / METADATA_NAME).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    plot_loss(state["losses"], out / "loss.png", title=out.name)
    shutil.rmtree(ckpt, ignore_errors=True)
    gguf = _to_gguf(out, gguf_src, meta)
    if gguf is not None:
        meta["gguf"] = str(gguf)
    return meta


def _gguf_source(base: str) -> Path | None:
    p = Path(str(base).strip()).expanduser()
    return p if p.is_file() and p.suffix.lower() == ".gguf" else None


def _to_gguf(out: Path, gguf_src: Path | None, meta: dict) -> Path | None:
    """The GGUF LoRA beside the PEFT files (``OUT/OUT.gguf``), checked against the GGUF the
    run was trained from; for an HF-folder base, converted by name where the architecture allows.
    A conversion that cannot be done leaves the PEFT adapter and a note."""
    from pocketpack.adapters.gguf_convert import peft_to_gguf

    target = out / f"{out.name}.gguf"
    try:
        peft_to_gguf(out, target, base=gguf_src)
    except AdapterError as exc:
        note = f"no GGUF LoRA for llama.cpp: {exc.one_line()}"
        if gguf_src is not None:
            log.warning("%s", note)
        meta["notes"].append(note)
        (out / METADATA_NAME).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        return None
    return target


def _index(seed: int, n: int, i: int) -> int:
    """Example for global position ``i``: a fresh seeded shuffle each epoch."""
    epoch, pos = divmod(i, n)
    order = list(range(n))
    random.Random(seed * 7919 + epoch).shuffle(order)
    return order[pos]


def loss_figure(losses: list[float], title: str = ""):
    """The loss-per-step figure (matplotlib, headless), or None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no loss plot")
        return None
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    ax.plot(range(1, len(losses) + 1), losses, color="#3b6ea5")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(f"training loss {title}".strip())
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_loss(losses: list[float], path: Path, title: str = "") -> Path | None:
    """Loss per step as a PNG."""
    fig = loss_figure(losses, title)
    if fig is None:
        return None
    import matplotlib.pyplot as plt

    fig.savefig(path)
    plt.close(fig)
    return Path(path)
