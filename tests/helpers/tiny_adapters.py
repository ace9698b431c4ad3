"""Tiny Llama and Gemma 3 models, tokenizers and real PEFT adapters, built locally for the
adapter tests.

Nothing is downloaded: the models come from small ``LlamaConfig`` / ``Gemma3TextConfig``
objects, the tokenizer is a
byte-level BPE with no merges built with the ``tokenizers`` library, and adapters are made
with PEFT and saved with ``save_pretrained`` (lora_B initialised randomly, so that an
adapter visibly changes the logits).
"""

from __future__ import annotations

from pathlib import Path

IDS = [[1, 5, 9, 17, 33, 65, 100, 7]]


def tiny_config(**overrides):
    from transformers import LlamaConfig

    kwargs = dict(vocab_size=260, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  bos_token_id=256, eos_token_id=257, pad_token_id=258, tie_word_embeddings=False,
                  rms_norm_eps=1e-5)
    kwargs.update(overrides)
    return LlamaConfig(**kwargs)


def tiny_llama(seed: int = 0, **overrides):
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_config(**overrides))
    model.eval()
    return model


def tiny_tokenizer():
    """A byte-level tokenizer: 256 byte tokens + <s>, </s>, <pad>, <unk> (ids 256..259)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    for i, special in enumerate(["<s>", "</s>", "<pad>", "<unk>"]):
        vocab[special] = 256 + i
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", unk_token="<unk>")


def save_tiny_llama(folder: Path, seed: int = 0, **overrides) -> Path:
    """A tiny model + tokenizer folder that ``from_pretrained`` (and training) can load."""
    folder = Path(folder)
    tiny_llama(seed, **overrides).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


def make_adapter(model, folder: Path, *, r: int = 4, alpha: int = 8, targets=("q_proj", "v_proj"),
                 seed: int = 1, scale: float = 1.0, base_name: str = "tiny-llama") -> Path:
    """Save a real PEFT LoRA for ``model`` (left unmodified) in ``folder``."""
    import copy

    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    cfg = LoraConfig(r=r, lora_alpha=alpha, target_modules=list(targets), init_lora_weights=False,
                     lora_dropout=0.0, bias="none", task_type="CAUSAL_LM")
    peft_model = get_peft_model(copy.deepcopy(model), cfg)
    if scale != 1.0:
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                if "lora_B" in name:
                    p.mul_(scale)
    peft_model.peft_config["default"].base_model_name_or_path = base_name
    peft_model.save_pretrained(folder, save_embedding_layers=False)
    return Path(folder)


def write_peft_files(folder: Path, shapes: dict, *, r: int = 4, alpha: int = 8, seed: int = 0,
                     base_name: str = "") -> Path:
    """A PEFT LoRA folder written directly (adapter_config.json + adapter_model.safetensors, as
    ``save_pretrained`` lays them out) for a model we only know by its layer shapes:
    ``shapes`` maps HF module names (``model.layers.0.self_attn.q_proj``) to ``(in, out)``."""
    import json

    import numpy as np
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    tensors = {}
    for module, (n_in, n_out) in shapes.items():
        tensors[f"base_model.model.{module}.lora_A.weight"] = rng.normal(0, 0.05, (r, n_in)).astype(np.float32)
        tensors[f"base_model.model.{module}.lora_B.weight"] = rng.normal(0, 0.05, (n_out, r)).astype(np.float32)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    targets = sorted({m.rsplit(".", 1)[-1] for m in shapes})
    (folder / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": alpha, "lora_dropout": 0.0,
        "target_modules": targets, "bias": "none", "base_model_name_or_path": base_name, "use_dora": False,
        "use_rslora": False, "modules_to_save": None, "fan_in_fan_out": False}), encoding="utf-8")
    return folder


def logits(model, ids=None):
    import torch

    with torch.no_grad():
        return model(torch.tensor(ids or IDS)).logits.float()


def write_llama_gguf(model, path: Path, *, dtype: str = "f32") -> Path:
    """The tiny HF Llama as an F32 GGUF llama.cpp can load (q/k permuted as llama.cpp expects).

    The vocabulary is SentencePiece-style byte tokens ``<0x00>``..``<0xFF>`` plus the four
    specials, so ids mean the same in both runtimes; tests feed token ids, not text.
    """
    import gguf
    import numpy as np

    from pocketpack.adapters.gguf_convert import _permute

    cfg = model.config
    n_head, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    head_dim = cfg.hidden_size // n_head
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-llama")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(float(getattr(cfg, "rope_theta", None) or (cfg.rope_parameters or {}).get("rope_theta", 10000.0)))
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_file_type(0)
    _byte_vocab(w, cfg.vocab_size)
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
    out = {"token_embd.weight": sd["model.embed_tokens.weight"], "output_norm.weight": sd["model.norm.weight"],
           "output.weight": sd["lm_head.weight"]}
    for i in range(cfg.num_hidden_layers):
        for hf, g in names.items():
            t = sd[f"model.layers.{i}.{hf}.weight"]
            if g == "attn_q":
                t = _permute(t, n_head, n_head)
            elif g == "attn_k":
                t = _permute(t, n_head, n_kv)
            out[f"blk.{i}.{g}.weight"] = t
    np_dtype = np.float16 if dtype == "f16" else np.float32
    for name, t in out.items():
        w.add_tensor(name, np.ascontiguousarray(t.astype(np_dtype if t.ndim > 1 else np.float32)))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return Path(path)


def tiny_gemma3(seed: int = 0, **overrides):
    """A 6-layer Gemma 3 text model: five sliding-window layers (rope base 10k) and one global
    (rope base 1M), q/k norms, head_dim 32 != hidden / heads; norms made non-trivial."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    kwargs = dict(vocab_size=260, hidden_size=64, intermediate_size=128, num_hidden_layers=6,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=32, query_pre_attn_scalar=32,
                  sliding_window=512, max_position_embeddings=256, bos_token_id=256, eos_token_id=257,
                  pad_token_id=258, initializer_range=0.05)
    kwargs.update(overrides)
    torch.manual_seed(seed)
    model = Gemma3ForCausalLM(Gemma3TextConfig(**kwargs))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.normal_(0.0, 0.3)  # Gemma norms scale by (1 + w): w = 0 would hide a missed +1
    model.eval()
    return model


def _byte_vocab(w, vocab_size: int) -> None:
    import gguf

    tokens = [f"<0x{i:02X}>".encode() for i in range(256)] + [b"<s>", b"</s>", b"<pad>", b"<unk>"]
    types = [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.CONTROL] * 3 + [gguf.TokenType.UNKNOWN]
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens[:vocab_size])
    w.add_token_scores([0.0] * vocab_size)
    w.add_token_types(types[:vocab_size])
    w.add_bos_token_id(256)
    w.add_eos_token_id(257)
    w.add_pad_token_id(258)
    w.add_unk_token_id(259)


def write_gemma3_gguf(model, path: Path, name: str = "tiny-gemma3") -> Path:
    """The tiny HF Gemma 3 as an F32 GGUF, written the way llama.cpp's convert_hf_to_gguf
    writes Gemma 3: tensor names from gguf's TensorNameMap, 1 added to every RMSNorm weight
    (Gemma scales by 1 + w, llama.cpp by w), tied output (no output.weight), head_dim as
    key/value length, the global rope base and the sliding window in the header (llama.cpp
    fixes the sliding layers' base at 10k and their pattern at 5 sliding : 1 global)."""
    import gguf
    import numpy as np

    cfg = model.config
    rope = getattr(cfg, "rope_parameters", None) or {}
    theta = (rope.get("full_attention") or {}).get("rope_theta") or getattr(cfg, "rope_theta", 1_000_000.0)
    w = gguf.GGUFWriter(str(path), "gemma3")
    w.add_name(name)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_key_length(cfg.head_dim)
    w.add_value_length(cfg.head_dim)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(float(theta))
    w.add_sliding_window(cfg.sliding_window)
    w.add_file_type(0)
    _byte_vocab(w, cfg.vocab_size)
    tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GEMMA3, cfg.num_hidden_layers)
    for name, t in model.state_dict().items():
        if name == "lm_head.weight":
            continue  # tied to token_embd
        gname = tmap.get_name(name[: -len(".weight")])
        a = t.detach().float().numpy()
        if name.endswith("norm.weight"):
            a = a + 1.0
        w.add_tensor(f"{gname}.weight", np.ascontiguousarray(a.astype(np.float32)))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return Path(path)


def llama_cpp_logits(llm, ids=None):
    """Last-position logits after evaluating ``ids`` from scratch (needs logits_all=True)."""
    import numpy as np

    ids = (ids or IDS)[0]
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[len(ids) - 1], dtype=np.float32)
