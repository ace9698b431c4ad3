"""PEFT -> GGUF conversion, checked for real: the converted LoRA in llama.cpp gives PEFT's logits."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest

from pocketpack.adapters import AdapterError, AdapterManager, check_compatible, inspect_adapter
from pocketpack.adapters.gguf_convert import peft_to_gguf
from pocketpack.cli import main
from tests.helpers.tiny_adapters import llama_cpp_logits, logits, make_adapter, tiny_llama, write_llama_gguf

llama_cpp = pytest.importorskip("llama_cpp")
ALL = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("gguf")
    base = tiny_llama()
    write_llama_gguf(base, d / "tiny.gguf")
    peft_dir = d / "peft"
    make_adapter(base, peft_dir / "a", r=4, seed=1, targets=ALL)
    make_adapter(base, peft_dir / "b", r=8, seed=2)
    loras = d / "loras"
    loras.mkdir()
    for name in ("a", "b"):
        assert main(["adapters", "to-gguf", str(peft_dir / name), str(loras / f"{name}.gguf"),
                     "--base", str(d / "tiny.gguf")]) == 0
    llm = llama_cpp.Llama(str(d / "tiny.gguf"), n_ctx=64, n_threads=1, logits_all=True, verbose=False)
    yield d, base, llm
    llm.close()


def peft_logits(base, *adapters, weights=None):
    mgr = AdapterManager(copy.deepcopy(base), [adapters[0].parent])
    mgr.switch(weights or adapters[0].name)
    return logits(mgr.model)[0, -1].numpy()


def test_converted_adapter_reproduces_peft_in_llama_cpp(setup):
    d, base, llm = setup
    plain = llama_cpp_logits(llm)
    assert np.abs(plain - logits(base)[0, -1].numpy()).max() < 1e-3  # the tiny GGUF is the same model
    mgr = AdapterManager(llm, d / "loras")
    assert mgr.switch("a") == ["a"]
    got = llama_cpp_logits(llm)
    want = peft_logits(base, d / "peft" / "a")
    assert np.abs(got - want).max() < 2e-3 and np.abs(got - plain).max() > 0.1
    mgr.switch({"a": 0.5, "b": 1.5})  # ranks 4 and 8, with weights
    got = llama_cpp_logits(llm)
    want = peft_logits(base, d / "peft" / "a", weights={"a": 0.5, "b": 1.5})
    assert np.abs(got - want).max() < 2e-3
    assert mgr.switch(None) == [] and np.abs(llama_cpp_logits(llm) - plain).max() == 0.0
    mgr.unload()


def test_switch_resets_cached_tokens(setup):
    d, _, llm = setup
    mgr = AdapterManager(llm, d / "loras")
    llm.reset()
    llm.eval([1, 2, 3])
    assert llm.n_tokens == 3
    mgr.switch("b")
    assert llm.n_tokens == 0  # the next prompt is evaluated again with the new weights
    mgr.unload()


def test_peft_adapter_on_llama_cpp_is_converted_or_explained(setup, tmp_path):
    d, base, llm = setup
    info = inspect_adapter(d / "peft" / "a")
    assert "needs a GGUF LoRA" in check_compatible(info, llm)
    mgr = AdapterManager(llm, d / "peft", convert_dir=tmp_path / "cache")
    mgr.switch("a")
    assert np.abs(llama_cpp_logits(llm) - peft_logits(base, d / "peft" / "a")).max() < 2e-3
    assert len(list((tmp_path / "cache").glob("a-*.gguf"))) == 1
    mgr.unload()


def test_wrong_model_and_unconvertible_adapters(setup, tmp_path):
    d, _, llm = setup
    other = tiny_llama(hidden_size=96)
    make_adapter(other, tmp_path / "wide", r=4)
    write_llama_gguf(other, tmp_path / "wide-model.gguf")
    with pytest.raises(AdapterError, match="attn_q.*adapter made for a different model"):
        peft_to_gguf(tmp_path / "wide", tmp_path / "x.gguf", base=d / "tiny.gguf")
    peft_to_gguf(tmp_path / "wide", tmp_path / "wide.gguf", base=tmp_path / "wide-model.gguf")
    mgr = AdapterManager(llm, tmp_path)
    with pytest.raises(AdapterError, match="blk.0.attn_q.weight is \\[64, 64\\] in the model"):
        mgr.switch("wide")
    assert mgr.lora_names == []

    cfg = tmp_path / "gpt2.json"
    cfg.write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "n_head": 4}))
    with pytest.raises(AdapterError, match="cannot convert adapters for GPT2LMHeadModel"):
        peft_to_gguf(d / "peft" / "a", tmp_path / "y.gguf", base=cfg)
    dora = tmp_path / "dora"
    shutil.copytree(d / "peft" / "a", dora)
    c = json.loads((dora / "adapter_config.json").read_text())
    c["use_dora"] = True
    (dora / "adapter_config.json").write_text(json.dumps(c))
    with pytest.raises(AdapterError, match="DoRA"):
        peft_to_gguf(dora, tmp_path / "z.gguf", base=d / "tiny.gguf")
    assert main(["adapters", "to-gguf", str(dora), str(tmp_path / "z.gguf"), "--base", str(d / "tiny.gguf")]) == 2
