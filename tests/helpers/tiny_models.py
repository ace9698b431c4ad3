"""Tiny Llama-architecture models built on the spot, so backend tests load real checkpoints.

Nothing is downloaded: the tokenizer is a byte-level BPE trained here with the ``tokenizers``
library on a few sentences, and the model is a 2-layer ``LlamaConfig`` trained for a few
hundred steps on the same sentences, so that greedy decoding says something predictable
("the cat sat on the mat ...") and tests can assert on words (a stop string, a banned token)
rather than on noise. A GPTQ copy is quantised for real with gptqmodel on the CPU.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

# The story the tiny model learns by heart; greedy decoding after "the cat" recites it.
STORY = (
    "the cat sat on the mat and the dog ran to the park . "
    "the bird sang in the tree and the fish swam in the pond . "
)
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
HIDDEN = 128        # multiple of 128 so GPTQ --groupsize 128 fits every linear layer
INTERMEDIATE = 256


def build_tokenizer(folder: Path, *, chat_template: bool = True):
    """A byte-level BPE tokenizer trained on STORY, saved as a Hugging Face fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<pad>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([STORY] * 4 + ["User: Assistant: hello hi"], trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    if chat_template:
        hf_tok.chat_template = CHAT_TEMPLATE
    folder.mkdir(parents=True, exist_ok=True)
    hf_tok.save_pretrained(folder)
    return hf_tok


def build_tiny_llama(folder: Path, *, chat_template: bool = True, train_steps: int = 100,
                     seed: int = 0) -> Path:
    """Build, briefly train and save (safetensors) a 2-layer Llama with its tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    tok = build_tokenizer(folder, chat_template=chat_template)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=HIDDEN, intermediate_size=INTERMEDIATE,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=512, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False, dtype="float32",
    )
    model = LlamaForCausalLM(config)
    if train_steps:
        ids = tok(STORY * 3, return_tensors="pt").input_ids
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        model.train()
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny matrices: one thread is 5x faster on a busy 2-core box
        try:
            for _ in range(train_steps):
                # random windows so the model continues the story from any point
                start = int(torch.randint(0, ids.shape[1] - 48, (1,)))
                batch = torch.cat([ids[:, :1], ids[:, start:start + 47]], dim=1)
                loss = model(input_ids=batch, labels=batch).loss
                loss.backward()
                opt.step()
                opt.zero_grad()
        finally:
            torch.set_num_threads(threads)
        model.eval()
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def quantize_gptq(src: Path, dst: Path, *, bits: int = 4, group_size: int = 128) -> Path:
    """Quantise ``src`` with gptqmodel on the CPU and save a GPTQ checkpoint to ``dst``.

    gptqmodel's CPU thread pool is sized from GPTQMODEL_CPU_WORKERS at first use; 2 keeps it
    to this machine's cores.
    """
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", "2")
    from gptqmodel import GPTQModel, QuantizeConfig
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(src, local_files_only=True)
    calibration = [STORY, STORY[40:] + STORY, "the dog ran to the park and the cat sat on the mat ."]
    model = GPTQModel.load(str(src), QuantizeConfig(bits=bits, group_size=group_size, offload_to_disk=False),
                           device="cpu")
    model.quantize(calibration, tokenizer=tok, batch_size=1)
    model.save(str(dst))
    tok.save_pretrained(dst)
    return Path(dst)


def set_quantize_config(folder: Path, **values) -> None:
    """Rewrite fields of a GPTQ checkpoint's quantize_config.json (to fake a mismatch)."""
    path = Path(folder) / "quantize_config.json"
    data = json.loads(path.read_text())
    data.update(values)
    path.write_text(json.dumps(data))


_BUILT: dict[str, Path] = {}
_ROOT: Path | None = None


def tiny_model(kind: str = "chat") -> Path:
    """A tiny model built once per test process: 'chat' (with a chat template), 'plain'
    (no template) or 'gptq' (the 'chat' model quantised to 4 bits, group size 128).

    Test files share it through this cache rather than a conftest fixture, so each file
    still runs alone. The folders are removed when the process exits.
    """
    global _ROOT
    if kind in _BUILT:
        return _BUILT[kind]
    if _ROOT is None:
        import atexit
        import shutil
        import tempfile

        _ROOT = Path(tempfile.mkdtemp(prefix="pocketpack-tiny-"))
        atexit.register(shutil.rmtree, _ROOT, True)
    if kind == "chat":
        path = build_tiny_llama(_ROOT / "tiny-llama")
    elif kind == "plain":
        path = build_tiny_llama(_ROOT / "tiny-llama-plain", chat_template=False, train_steps=0)
    elif kind == "gptq":
        path = quantize_gptq(tiny_model("chat"), _ROOT / "tiny-llama-gptq-4bit-128g")
    else:
        raise ValueError(f"unknown tiny model kind: {kind}")
    _BUILT[kind] = path
    return path
