"""QLoRA training on CPU with a tiny model: output files, resume, memory refusal, data formats."""

from __future__ import annotations

import json

import pytest
import torch

from pocketpack.adapters import AdapterError, AdapterManager, inspect_adapter
from pocketpack.adapters.train import TrainConfig, plan, train
from tests.helpers.tiny_adapters import logits, save_tiny_llama


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return save_tiny_llama(tmp_path_factory.mktemp("base") / "tiny")


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    p = tmp_path_factory.mktemp("data") / "pirate.txt"
    p.write_text("Arr, matey! The sea be wide and the rum be sweet. " * 30, encoding="utf-8")
    return p


def cfg(base, data, out, **kw):
    kw = {"rank": 4, "alpha": 8, "seq_len": 32, "max_steps": 4, "save_every": 2, **kw}
    return TrainConfig(base=str(base), data=str(data), output=str(out), **kw)


def test_qlora_training_writes_a_loadable_adapter(base, text, tmp_path):
    seen = []
    meta = train(cfg(base, text, tmp_path / "pirate"), progress=seen.append)
    out = tmp_path / "pirate"
    assert {p.name for p in out.iterdir()} >= {"adapter_model.safetensors", "adapter_config.json",
                                               "training_metadata.json", "loss.png"}
    assert not (out / "checkpoint").exists()
    assert [p.step for p in seen] == [1, 2, 3, 4] and all(p.total == 4 for p in seen)
    assert meta["quant"] == "nf4" and meta["steps"] == 4 and len(meta["losses"]) == 4
    assert "estimate from pocketpack.vram" in meta["memory_plan"]
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    info = inspect_adapter(out)
    assert info.rank == 4 and info.target_modules == ["q_proj", "v_proj"] and info.training["steps"] == 4
    assert info.architecture == "llama" and info.base_model == str(base)
    # the trained adapter switches on a full-precision copy of the same base
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base))
    plain = logits(model)
    mgr = AdapterManager(model, [tmp_path])
    mgr.switch("pirate")
    assert (logits(mgr.model) - plain).abs().max() > 1e-4


def test_interrupted_run_resumes_to_the_same_weights(base, text, tmp_path):
    from safetensors.torch import load_file

    # float32 compute: bitsandbytes' bf16 CPU kernels are not bit-reproducible from run to run
    straight = train(cfg(base, text, tmp_path / "straight", compute_dtype="fp32"))
    meta = train(cfg(base, text, tmp_path / "resumed", compute_dtype="fp32"), progress=lambda p: p.step < 3)
    assert meta["finished"] is False and meta["steps"] == 3
    assert (tmp_path / "resumed" / "checkpoint" / "optimizer.safetensors").is_file()
    assert not (tmp_path / "resumed" / "adapter_model.safetensors").exists()
    steps = []
    meta = train(cfg(base, text, tmp_path / "resumed", compute_dtype="fp32"), progress=lambda p: steps.append(p.step))
    assert steps == [4] and meta["finished"] and meta["losses"] == straight["losses"]
    a = load_file(str(tmp_path / "straight" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-7) for k in a)
    # a checkpoint of other settings is not silently continued
    train(cfg(base, text, tmp_path / "other", compute_dtype="fp32"), progress=lambda p: False)
    with pytest.raises(AdapterError, match="different run"):
        train(cfg(base, text, tmp_path / "other", compute_dtype="fp32", rank=8))


def test_a_run_that_does_not_fit_is_refused_before_loading(base, text, tmp_path):
    c = cfg(base, text, tmp_path / "big", memory_limit_gib=1e-6)
    p = plan(c, 10)
    assert not p.fits and p.need_gib > 0 and "needs about" in p.describe()
    with pytest.raises(AdapterError, match="will not fit"):
        train(c)
    assert not (tmp_path / "big").exists()


def test_jsonl_chats_and_bad_data(base, tmp_path):
    chats = tmp_path / "chats.jsonl"
    rows = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Ahoy!"}]},
            {"conversations": [{"from": "human", "value": "who?"}, {"from": "gpt", "value": "A pirate."}]},
            {"internal": [["hello", "Arr", "", {}]]}, {"text": "plain text row"}]
    chats.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    meta = train(cfg(base, chats, tmp_path / "chat", max_steps=2, quant="none", seq_len=128))
    assert meta["examples"] == 4 and meta["steps"] == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": []}\nnot json\n', encoding="utf-8")
    with pytest.raises(AdapterError, match="bad.jsonl:2: not valid JSON"):
        train(cfg(base, bad, tmp_path / "x"))
    with pytest.raises(AdapterError, match="not a Hugging Face model folder"):
        train(cfg(tmp_path, chats, tmp_path / "y"))


@pytest.fixture(scope="module")
def memory_dir(tmp_path_factory):
    """A real memory store (the memory extension's, with its embedding model): Flint's two
    chats, a manual note, and another character's chat."""
    from pocketpack.memory import MemoryStore

    d = tmp_path_factory.mktemp("memory") / "store"
    store = MemoryStore(d)
    store.record_exchange("Flint", "chat-1", 0, "Where is the treasure?", "Buried on Skeleton Island, matey.",
                          time="2025-05-01T10:00:00")
    store.record_exchange("Flint", "chat-1", 1, "Who guards it?", "Only the ghosts of my old crew.",
                          time="2025-05-01T10:01:00")
    store.record_exchange("Flint", "chat-2", 0, "Any rum left?", "Not a drop, the parrot drank it.",
                          time="2025-06-01T09:00:00")
    store.add_manual("Flint", "Flint hates the Royal Navy.")
    store.record_exchange("Ada", "chat-3", 0, "Hello", "Good morning.", time="2025-05-02T10:00:00")
    store.close()
    return d


def test_memory_source_turns_a_characters_exchanges_into_chats(base, memory_dir, tmp_path):
    from transformers import AutoTokenizer

    from pocketpack.adapters.train import load_examples, memory_chats

    chats = memory_chats(memory_dir, "Flint")
    assert chats == [
        [{"role": "user", "content": "Where is the treasure?"},
         {"role": "assistant", "content": "Buried on Skeleton Island, matey."},
         {"role": "user", "content": "Who guards it?"},
         {"role": "assistant", "content": "Only the ghosts of my old crew."}],
        [{"role": "user", "content": "Any rum left?"},
         {"role": "assistant", "content": "Not a drop, the parrot drank it."}],
    ]  # the manual note and Ada's chat are not Flint's conversations
    tok = AutoTokenizer.from_pretrained(str(base))
    blocks = load_examples("memory:Flint", tok, 512, memory_dir=memory_dir)
    assert len(blocks) == 2 and "Skeleton Island" in tok.decode(blocks[0]) and "parrot" in tok.decode(blocks[1])
    meta = train(cfg(base, "memory:Flint", tmp_path / "flint", quant="none", max_steps=2, seq_len=128,
                     memory_dir=str(memory_dir)))
    assert meta["data"] == "memory:Flint" and meta["finished"]
    assert meta["examples"] == len(load_examples("memory:Flint", tok, 128, memory_dir=memory_dir)) == 3  # 2 + 1 blocks
    assert inspect_adapter(tmp_path / "flint").training["data"] == "memory:Flint"


def test_memory_source_errors_are_one_line(base, memory_dir, tmp_path):
    with pytest.raises(AdapterError, match=r"no memories of 'Nobody' \(characters stored: Ada, Flint\)"):
        train(cfg(base, "memory:Nobody", tmp_path / "x", memory_dir=str(memory_dir)))
    with pytest.raises(AdapterError, match="no memory store here"):
        train(cfg(base, "memory:Flint", tmp_path / "y", memory_dir=str(tmp_path)))
    from pocketpack.retrieval.store import DB_NAME

    assert not (tmp_path / DB_NAME).exists()  # a wrong folder is not turned into a store


def test_cli_can_turn_gradient_checkpointing_off_and_the_plan_says_what_it_costs(base, text, tmp_path, capsys):
    """The demo trains without gradient checkpointing because it is faster on a small model; the CLI
    offers the same choice, and --plan shows the activation memory each way."""
    from pocketpack.cli import main

    needs = {}
    for flag in ("--grad-checkpointing", "--no-grad-checkpointing"):
        rc = main(["adapters", "train", "--base", str(base), "--data", str(text), "--output", str(tmp_path / "o"),
                   "--seq-len", "32", "--plan", "--json", flag])
        assert rc == 0
        needs[flag] = json.loads(capsys.readouterr().out)["breakdown"]["activations"]
    assert needs["--no-grad-checkpointing"] > needs["--grad-checkpointing"]
