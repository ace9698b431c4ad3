"""The adapter library: headers only, pickle refused, clear messages for bad files, compatibility."""

from __future__ import annotations

import json
import logging

import pytest

from pocketpack.adapters import AdapterError, check_compatible, inspect_adapter, scan
from pocketpack.cli import main
from tests.helpers.tiny_adapters import make_adapter, tiny_llama, write_llama_gguf


@pytest.fixture(scope="module")
def model():
    return tiny_llama()


@pytest.fixture(scope="module")
def loras(tmp_path_factory, model):
    d = tmp_path_factory.mktemp("loras")
    make_adapter(model, d / "pirate", r=4, alpha=8)
    make_adapter(model, d / "formal", r=8, alpha=32, targets=("q_proj", "k_proj", "v_proj", "o_proj"))
    (d / "formal" / "training_metadata.json").write_text(json.dumps({"model_type": "llama", "steps": 12}))
    return d


def test_scan_reads_rank_alpha_targets_and_size_from_headers(loras):
    infos = {i.name: i for i in scan(loras)}
    assert set(infos) == {"formal", "pirate"}
    p, f = infos["pirate"], infos["formal"]
    assert (p.format, p.rank, p.ranks, p.alpha, p.target_modules) == ("peft", 4, [4], 8.0, ["q_proj", "v_proj"])
    assert f.ranks == [8] and f.alpha == 32.0 and f.target_modules == ["k_proj", "o_proj", "q_proj", "v_proj"]
    assert p.n_layers == 2 and p.base_model == "tiny-llama"
    assert p.size_bytes == (loras / "pirate" / "adapter_model.safetensors").stat().st_size
    # lora_A of q_proj is [r, hidden]: read from the safetensors header
    assert p.tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"] == [4, 64]
    assert f.training == {"model_type": "llama", "steps": 12} and f.architecture == "llama"


def test_gguf_lora_is_listed_and_a_gguf_model_is_not(tmp_path, model, loras):
    from pocketpack.adapters.gguf_convert import peft_to_gguf

    write_llama_gguf(model, tmp_path / "tiny-model.gguf")
    peft_to_gguf(loras / "formal", tmp_path / "formal.gguf", base=tmp_path / "tiny-model.gguf")
    infos = scan(tmp_path)
    assert [i.name for i in infos] == ["formal"]
    g = infos[0]
    assert (g.format, g.architecture, g.rank, g.alpha) == ("gguf", "llama", 8, 32.0)
    assert g.target_modules == ["attn_k", "attn_output", "attn_q", "attn_v"]
    assert g.tensors["blk.0.attn_q.weight.lora_a"] == [64, 8]  # ggml order: [n_in, r]
    # carried over by the conversion, with the model it was converted for (checked on switch)
    assert g.training == {"model_type": "llama", "steps": 12,
                          "gguf_base": {"file": "tiny-model.gguf", "name": "tiny-llama", "architecture": "llama",
                                        "size_label": ""}}


def test_pickle_weights_are_refused_unless_opted_in(tmp_path, loras, caplog):
    import shutil

    d = tmp_path / "old"
    shutil.copytree(loras / "pirate", d)
    (d / "adapter_model.safetensors").rename(d / "adapter_model.bin")
    with pytest.raises(AdapterError, match="pickle"):
        inspect_adapter(d)
    [listed] = scan(tmp_path)
    assert "pickle" in listed.problem
    with caplog.at_level(logging.WARNING, logger="pocketpack.adapters"):
        info = inspect_adapter(d, allow_pickle=True)
    assert info.format == "pickle" and info.rank == 4
    assert "allow_pickle" in caplog.text


def test_corrupt_and_missing_files_give_one_line(tmp_path, loras):
    import shutil

    bad = tmp_path / "truncated"
    shutil.copytree(loras / "pirate", bad)
    st = bad / "adapter_model.safetensors"
    st.write_bytes(st.read_bytes()[:-100])
    with pytest.raises(AdapterError) as err:
        inspect_adapter(bad)
    assert "truncated" in str(err.value) and "\n" not in str(err.value)

    garbage = tmp_path / "garbage"
    shutil.copytree(loras / "pirate", garbage)
    (garbage / "adapter_model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(AdapterError, match="corrupt safetensors header"):
        inspect_adapter(garbage)

    missing = tmp_path / "missing"
    shutil.copytree(loras / "pirate", missing)
    (missing / "adapter_model.safetensors").unlink()
    with pytest.raises(AdapterError, match="missing adapter_model.safetensors"):
        inspect_adapter(missing)

    (tmp_path / "broken.gguf").write_bytes(b"GGUF\x03\x00\x00\x00garbage")
    with pytest.raises(AdapterError, match="broken.gguf"):
        inspect_adapter(tmp_path / "broken.gguf")
    problems = {i.name: i.problem for i in scan(tmp_path)}
    assert problems.keys() == {"broken", "garbage", "missing", "truncated"}
    assert all(problems.values())


def test_compatibility_names_the_reason(tmp_path, model, loras):
    assert check_compatible(inspect_adapter(loras / "pirate"), model) is None
    wider = tiny_llama(hidden_size=96, num_attention_heads=4, num_key_value_heads=2)
    reason = check_compatible(inspect_adapter(loras / "pirate"), wider)
    assert "lora_A of model.layers.0.self_attn.q_proj is [4, 64]" in reason and "[r, 96]" in reason
    deeper = make_adapter(tiny_llama(num_hidden_layers=4), tmp_path / "deep", r=4)
    assert "model.layers.2.self_attn.q_proj, which this llama does not have" in check_compatible(
        inspect_adapter(deeper), model)

    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=260))
    reason = check_compatible(inspect_adapter(loras / "formal"), gpt2)
    assert reason == "formal: made for a llama model; the loaded model is gpt2"
    reason = check_compatible(inspect_adapter(loras / "pirate"), gpt2)
    assert "which this gpt2 does not have" in reason


def test_names_cannot_escape_the_library(loras):
    from pocketpack.adapters.library import find

    with pytest.raises(AdapterError, match="path separators"):
        find(loras, "../pirate")
    with pytest.raises(AdapterError, match="no adapter named 'nobody'"):
        find(loras, "nobody")


def test_cli_list_and_inspect(loras, capsys, tmp_path):
    assert main(["adapters", "list", str(loras), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [x["name"] for x in listed] == ["formal", "pirate"] and "tensors" not in listed[0]
    assert main(["adapters", "list", str(loras)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:4] == ["NAME", "FORMAT", "RANK", "ALPHA"] and "pirate" in out
    assert main(["adapters", "inspect", str(loras / "pirate"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rank"] == 4
    assert main(["adapters", "inspect", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pocketpack: ") and "no such file" in err and err.count("\n") == 1
