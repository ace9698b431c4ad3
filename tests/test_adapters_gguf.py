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
from tests.helpers.tiny_adapters import (
    llama_cpp_logits,
    logits,
    make_adapter,
    tiny_gemma3,
    tiny_llama,
    write_gemma3_gguf,
    write_llama_gguf,
    write_peft_files,
)

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


def test_gemma3_conversion_reproduces_peft_in_llama_cpp(tmp_path):
    """Gemma 3 for real: a tiny Gemma3ForCausalLM, its GGUF, a PEFT LoRA on all seven
    projections converted with the CLI, both loaded in llama.cpp, logits against PEFT's."""
    base = tiny_gemma3()
    write_gemma3_gguf(base, tmp_path / "gemma3.gguf")
    make_adapter(base, tmp_path / "peft" / "g", r=4, seed=1, targets=ALL, base_name="tiny-gemma3")
    make_adapter(base, tmp_path / "peft" / "h", r=8, alpha=4, seed=2)
    (tmp_path / "loras").mkdir()
    for name in ("g", "h"):
        assert main(["adapters", "to-gguf", str(tmp_path / "peft" / name), str(tmp_path / "loras" / f"{name}.gguf"),
                     "--base", str(tmp_path / "gemma3.gguf")]) == 0
    assert inspect_adapter(tmp_path / "loras" / "g.gguf").architecture == "gemma3"
    llm = llama_cpp.Llama(str(tmp_path / "gemma3.gguf"), n_ctx=64, n_threads=1, logits_all=True, verbose=False)
    try:
        plain = llama_cpp_logits(llm)
        assert np.abs(plain - logits(base)[0, -1].numpy()).max() < 2e-3  # the GGUF is the same model
        mgr = AdapterManager(llm, tmp_path / "loras")
        mgr.switch("g")
        want = peft_logits(base, tmp_path / "peft" / "g")
        got = llama_cpp_logits(llm)
        assert np.abs(got - want).max() < 3e-3 and np.abs(want - plain).max() > 0.1
        mgr.switch({"g": 0.5, "h": 1.0})
        want = peft_logits(base, tmp_path / "peft" / "g", weights={"g": 0.5, "h": 1.0})
        assert np.abs(llama_cpp_logits(llm) - want).max() < 3e-3
        mgr.unload()
    finally:
        llm.close()


@pytest.mark.slow
def test_gemma3_lora_fits_the_real_gemma_3_270m_gguf(default_model, tmp_path):
    """The names and shapes the converter writes for Gemma 3 are those of a GGUF made by
    llama.cpp's own converter (the embedded Gemma 3 270M): the conversion checks every pair
    against it, and llama.cpp loads the LoRA on it and applies it. (No HF weights of that model
    are here, so its logits cannot be compared with PEFT's; the tiny Gemma 3 test does that.)"""
    from pocketpack.adapters.compat import gguf_model_header

    meta, tensors = gguf_model_header(default_model)
    assert meta["general.architecture"] == "gemma3"
    hf = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
          "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
          "ffn_down": "mlp.down_proj"}
    shapes = {f"model.layers.{i}.{module}": tuple(tensors[f"blk.{i}.{g}.weight"][:2])
              for i in range(meta["gemma3.block_count"]) for g, module in hf.items()}
    write_peft_files(tmp_path / "peft" / "real", shapes, r=8, alpha=16, base_name="google/gemma-3-270m")
    (tmp_path / "loras").mkdir()
    assert main(["adapters", "to-gguf", str(tmp_path / "peft" / "real"), str(tmp_path / "loras" / "real.gguf"),
                 "--base", str(default_model)]) == 0
    llm = llama_cpp.Llama(str(default_model), n_ctx=64, n_threads=1, logits_all=True, verbose=False)
    try:
        plain = llama_cpp_logits(llm, [[2, 9259, 1902, 236888]])
        mgr = AdapterManager(llm, tmp_path / "loras")
        assert mgr.fits("real") is None and mgr.switch("real") == ["real"]
        adapted = llama_cpp_logits(llm, [[2, 9259, 1902, 236888]])
        assert np.isfinite(adapted).all() and np.abs(adapted - plain).max() > 0.1
        mgr.switch(None)
        assert np.abs(llama_cpp_logits(llm, [[2, 9259, 1902, 236888]]) - plain).max() == 0.0
        mgr.unload()
    finally:
        llm.close()
