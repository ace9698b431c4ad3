"""Hot switching: PEFT (fp32/fp16/bf16, bitsandbytes 8/4-bit) and llama.cpp, blends, LRU, failures."""

from __future__ import annotations

import copy
import shutil

import pytest
import torch

from pocketpack.adapters import AdapterError, AdapterManager
from tests.helpers.tiny_adapters import logits, make_adapter, tiny_llama


@pytest.fixture(scope="module")
def base():
    return tiny_llama()


@pytest.fixture(scope="module")
def loras(tmp_path_factory, base):
    d = tmp_path_factory.mktemp("loras")
    make_adapter(base, d / "a", r=4, seed=1)
    make_adapter(base, d / "b", r=8, seed=2, targets=("q_proj", "k_proj", "v_proj", "o_proj"))
    make_adapter(base, d / "c", r=4, seed=3, targets=("gate_proj", "up_proj", "down_proj"))
    return d


def reference(base, folder):
    """Logits of a fresh PeftModel with only this adapter: what a switch must reproduce."""
    from peft import PeftModel

    return logits(PeftModel.from_pretrained(copy.deepcopy(base), str(folder)))


def close(x, y, tol=1e-4):
    return torch.allclose(x, y, atol=tol)


def test_switch_changes_logits_and_base_gives_base_logits(base, loras):
    plain = logits(base)
    mgr = AdapterManager(copy.deepcopy(base), loras)
    assert mgr.lora_names == [] and close(logits(mgr.model), plain)
    assert mgr.switch("a") == ["a"]
    assert close(logits(mgr.model), reference(base, loras / "a")) and not close(logits(mgr.model), plain, 1e-2)
    assert mgr.switch("b") == ["b"]
    assert close(logits(mgr.model), reference(base, loras / "b"))
    assert mgr.switch(None) == [] and close(logits(mgr.model), plain)
    assert mgr.switch("a") == ["a"] and close(logits(mgr.model), reference(base, loras / "a"))
    assert mgr.stats["adapter_loads"] == 2  # each adapter loaded once, however often it is switched to
    assert {r.name for r in mgr.resident()} == {"a", "b"}


def test_weighted_blend_of_different_ranks(base, loras):
    mgr = AdapterManager(copy.deepcopy(base), loras)
    plain = logits(mgr.model)
    mgr.switch({"a": 0.7, "b": 0.3})
    live = logits(mgr.model)
    assert mgr.lora_names == ["a", "b"] and mgr.active == {"a": 0.7, "b": 0.3}
    # the blend's effect is the weighted sum of each adapter's own effect (different targets: no overlap
    # in how they interact, but LoRA deltas add inside every layer) -- compare with PEFT's exact 'cat' merge
    mgr.switch({"a": 0.7, "b": 0.3}, combination="cat")
    assert close(logits(mgr.model), live)
    assert mgr.lora_names == ["a", "b"]
    mgr.switch({"a": 0.7, "b": 0.3}, combination="svd")  # rank-8 approximation of a rank-12 sum
    svd = logits(mgr.model)
    assert not close(svd, plain, 1e-2) and (svd - live).abs().max() < (live - plain).abs().max()
    # weight 1.0 alone after a blend: the scale is reset
    mgr.switch("a")
    assert close(logits(mgr.model), reference(base, loras / "a"))


def test_failed_switch_keeps_the_adapters_the_model_had(base, loras, tmp_path):
    lib = tmp_path / "lib"
    shutil.copytree(loras, lib)
    shutil.copytree(loras / "a", lib / "broken")
    st = lib / "broken" / "adapter_model.safetensors"
    st.write_bytes(st.read_bytes()[:-64])
    make_adapter(tiny_llama(hidden_size=96), lib / "other", r=4)

    mgr = AdapterManager(copy.deepcopy(base), lib)
    mgr.switch({"a": 1.0, "c": 0.5})
    before = logits(mgr.model)
    with pytest.raises(AdapterError, match="truncated"):
        mgr.switch("broken")
    with pytest.raises(AdapterError, match=r"other: lora_A of .* is \[4, 96\]"):
        mgr.switch(["a", "other"])
    with pytest.raises(AdapterError, match="ranks differ"):
        mgr.switch({"a": 0.5, "b": 0.5}, combination="linear")
    with pytest.raises(AdapterError, match="no adapter named 'ghost'"):
        mgr.switch("ghost")
    assert mgr.lora_names == ["a", "c"] and mgr.active == {"a": 1.0, "c": 0.5}
    assert close(logits(mgr.model), before)
    assert "broken" not in {r.name for r in mgr.resident()}


def test_lru_eviction_within_budget(base, loras):
    one = AdapterManager(copy.deepcopy(base), loras)
    one.load("a")
    size_a = one.resident()[0].nbytes
    one.load("c")
    size_c = [r for r in one.resident() if r.name == "c"][0].nbytes
    # room for the active adapter and one more
    mgr = AdapterManager(copy.deepcopy(base), loras, budget_bytes=size_a + size_c + 1)
    mgr.switch("a")
    mgr.load("c")
    mgr.switch("a")                      # a used more recently than c
    mgr.load("b")                        # b is bigger: c (least recently used, inactive) goes
    names = {r.name for r in mgr.resident()}
    assert "c" not in names and "a" in names and mgr.stats["evictions"] >= 1
    assert mgr.lora_names == ["a"]       # the active adapter is never evicted
    assert close(logits(mgr.model), reference(base, loras / "a"))
    mgr.switch("c")                      # evicted adapters load again on demand
    assert close(logits(mgr.model), reference(base, loras / "c"))
    assert mgr.resident_bytes() <= mgr.budget_bytes or len(mgr.resident()) == 1


def test_unload_deactivates_and_frees(base, loras):
    mgr = AdapterManager(copy.deepcopy(base), loras)
    mgr.switch({"a": 1.0, "b": 1.0})
    mgr.unload("b")
    assert mgr.lora_names == ["a"] and [r.name for r in mgr.resident()] == ["a"]
    assert close(logits(mgr.model), reference(base, loras / "a"))
    mgr.unload()
    assert mgr.lora_names == [] and mgr.resident() == [] and close(logits(mgr.model), logits(base))
    with pytest.raises(AdapterError, match="not loaded"):
        mgr.unload("a")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_bases(base, loras, dtype):
    model = copy.deepcopy(base).to(dtype)
    plain = logits(model)
    mgr = AdapterManager(model, loras)
    mgr.switch("a")
    la = logits(mgr.model)
    ref = reference(base, loras / "a")
    assert (la - ref).abs().max() < 0.05 and (la - plain).abs().max() > 0.1
    mgr.switch({"a": 0.5, "b": 0.5}, combination="cat")
    mgr.switch(None)
    assert close(logits(mgr.model), plain, 1e-3)


@pytest.mark.parametrize("bits", [4, 8])
def test_bitsandbytes_bases_switch_without_reload(base, loras, tmp_path, bits):
    from transformers import BitsAndBytesConfig, LlamaForCausalLM

    base.save_pretrained(tmp_path / "m")
    q = (BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                            bnb_4bit_compute_dtype=torch.float32) if bits == 4 else BitsAndBytesConfig(load_in_8bit=True))
    model = LlamaForCausalLM.from_pretrained(tmp_path / "m", quantization_config=q, device_map="cpu")
    first = logits(model)
    mgr = AdapterManager(model, loras)
    for name in ("a", "b", "c"):
        mgr.load(name)
    # bitsandbytes' CPU kernels may take another path once PEFT wraps the layer: ~1e-3 apart
    plain = logits(mgr.model)
    assert close(plain, first, 1e-2)
    mgr.switch("a")
    la = logits(mgr.model)
    mgr.switch("b")
    lb = logits(mgr.model)
    mgr.switch({"a": 0.5, "c": 1.0}, combination="svd")
    mgr.switch(None)
    assert close(logits(mgr.model), plain, 1e-5)
    # each adapter's effect on the quantised base matches its effect on the full-precision one
    for got, name in ((la, "a"), (lb, "b")):
        want = reference(base, loras / name) - logits(base)
        assert torch.allclose(got - plain, want, atol=0.1 if bits == 4 else 0.05)
        assert want.abs().max() > 0.3


def test_adapters_loaded_by_tgwui_are_adopted(base, loras):
    """TGWUI's own LoRA menu wraps the model in a PeftModel: the manager starts from what is there."""
    from peft import PeftModel

    pm = PeftModel.from_pretrained(copy.deepcopy(base), str(loras / "a"), adapter_name="a")
    mgr = AdapterManager(pm, loras)
    assert mgr.lora_names == ["a"] and mgr.model is pm
    mgr.switch("b")
    assert close(logits(pm), reference(base, loras / "b"))
