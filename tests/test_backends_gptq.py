"""GPTQ checkpoints: quantised for real with gptqmodel on the CPU, loaded with TGWUI's
pre-2025 flags (``--wbits 4 --groupsize 128``), and refused in one line when the flags
contradict the checkpoint's quantize_config.json.

Quantising uses ``GPTQMODEL_CPU_WORKERS=2`` (set by the helper before gptqmodel is
imported); loading on a CPU uses gptqmodel's pure-torch kernel (``TorchLinear``).
"""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest

from pocketpack.host.backends import FlagConflict, GenerationParams, LoadSettings, ModelLoadError, load_model
from pocketpack.host.flags import infer_loader
from tests.helpers.tiny_adapters import logits
from tests.helpers.tiny_models import set_quantize_config, tiny_model

GREEDY = dict(temperature=0, max_new_tokens=16)


@pytest.fixture(scope="module")
def gptq_dir():
    return tiny_model("gptq")


@pytest.fixture(scope="module")
def gptq(gptq_dir):
    backend = load_model(gptq_dir, LoadSettings(wbits=4, groupsize=128, threads=1))
    yield backend
    backend.close()


@pytest.mark.slow
def test_checkpoint_was_really_quantised_to_4_bits(gptq_dir):
    qc = json.loads((gptq_dir / "quantize_config.json").read_text())
    assert (qc["bits"], qc["group_size"], qc["quant_method"]) == (4, 128, "gptq")
    assert "gptqmodel" in " ".join(qc["meta"]["quantizer"])
    assert infer_loader(gptq_dir) == "GPTQ"  # as TGWUI before 2025: quantize_config.json


@pytest.mark.slow
def test_wbits_groupsize_load_gptq_layers_that_generate(gptq):
    import torch
    from gptqmodel.nn_modules.qlinear import BaseQuantLinear

    assert (gptq.loader, gptq.engine) == ("GPTQ", "gptqmodel")
    layer = gptq.model.model.layers[0].mlp.down_proj
    assert isinstance(layer, BaseQuantLinear)
    assert layer.bits == 4 and layer.group_size == 128 and layer.qweight.dtype == torch.int32
    outs = list(gptq.stream("the cat", GenerationParams(**GREEDY)))
    assert all(b.startswith(a) and len(b) > len(a) for a, b in zip(outs, outs[1:]))
    assert outs[-1].startswith(" sat on the mat")


@pytest.mark.slow
def test_hooks_and_stop_strings_work_on_gptq_too(gptq):
    tok = gptq.tokenizer
    banned = [i for i in range(len(tok)) if "dog" in tok.decode([i])]

    def ban(input_ids, scores):
        scores[:, banned] = -float("inf")
        return scores

    text = list(gptq.stream("the cat", GenerationParams(**GREEDY),
                            logits_hook=lambda procs, ids: procs.append(ban)))[-1]
    assert "dog" not in text and "mat" in text
    stopped = list(gptq.stream("the cat", GenerationParams(**GREEDY, stop=["mat"])))[-1]
    assert stopped.rstrip() == " sat on the"


@pytest.mark.slow
@pytest.mark.parametrize("flags,expected", [
    (dict(wbits=8), "--wbits 8 but the checkpoint's quantize_config.json says bits=4"),
    (dict(wbits=4, groupsize=32), "--groupsize 32 but the checkpoint's quantize_config.json says group_size=128"),
    (dict(load_in_4bit=True), "--load-in-4bit: a GPTQ checkpoint is already quantised"),
])
def test_flags_that_contradict_the_checkpoint_are_one_line(gptq_dir, flags, expected):
    with pytest.raises(FlagConflict) as err:
        load_model(gptq_dir, LoadSettings(**flags))
    assert str(err.value) == expected or str(err.value).startswith(expected)
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_checkpoint_that_says_8_bits_refuses_wbits_4(gptq_dir, tmp_path):
    relabelled = tmp_path / "relabelled"
    shutil.copytree(gptq_dir, relabelled)
    set_quantize_config(relabelled, bits=8)
    with pytest.raises(FlagConflict) as err:
        load_model(relabelled, LoadSettings(wbits=4, groupsize=128))
    assert str(err.value) == "--wbits 4 but the checkpoint's quantize_config.json says bits=8"


@pytest.mark.slow
def test_wbits_on_a_folder_without_quantize_config_says_what_to_add(tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(tiny_model("plain"), plain)
    with pytest.raises(ModelLoadError) as err:
        load_model(plain, LoadSettings(wbits=4, groupsize=128))
    assert "has no quantize_config.json" in str(err.value)
    assert '{"bits": 4, "group_size": 128' in str(err.value)


@pytest.mark.skipif(importlib.util.find_spec("auto_gptq") is not None, reason="auto-gptq is installed")
def test_legacy_autogptq_loader_without_auto_gptq_is_one_line(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    (folder / "quantize_config.json").write_text('{"bits": 4, "group_size": 128}')
    with pytest.raises(ModelLoadError) as err:
        load_model(folder, LoadSettings(loader="AutoGPTQ"))
    assert str(err.value).startswith("--loader AutoGPTQ needs auto-gptq, which does not import here")
    assert "\n" not in str(err.value)


def _legacy_copy(gptq_dir, tmp_path):
    """The same checkpoint as an AutoGPTQ-era export: settings in quantize_config.json only."""
    legacy = tmp_path / "legacy-gptq"
    shutil.copytree(gptq_dir, legacy)
    cfg = json.loads((legacy / "config.json").read_text())
    cfg.pop("quantization_config")
    (legacy / "config.json").write_text(json.dumps(cfg))
    return legacy


@pytest.mark.slow
@pytest.mark.parametrize("legacy", [False, True], ids=["quantization_config", "quantize_config.json-only"])
def test_qlora_on_a_gptq_base_trains_over_its_4_bit_layers_and_switches_live(gptq_dir, tmp_path, legacy):
    """Issue 15: "QLoRA on a GPTQ base (Qwen's official Q-LoRA recipe on Int4 checkpoints)" was
    refused; `adapters train` with its default --quant nf4 now trains the LoRA over the checkpoint's
    own GPTQ layers, says --quant does not apply, and the adapter switches on the GPTQ-loaded model."""
    from peft.tuners.lora.gptq import GPTQLoraLinear

    from pocketpack.adapters import AdapterManager, inspect_adapter
    from pocketpack.adapters.train import TrainConfig, train

    base = _legacy_copy(gptq_dir, tmp_path) if legacy else gptq_dir
    data = tmp_path / "voice.txt"
    data.write_text("the cat sat on the mat, arr, and the dog sat on the log, arr.\n" * 40, encoding="utf-8")
    out = tmp_path / "loras" / "gptq-voice"
    meta = train(TrainConfig(base=str(base), data=str(data), output=str(out), rank=4, alpha=8, seq_len=32,
                             batch_size=2, max_steps=6, save_every=3, lr=5e-3))
    assert meta["quant"] == "gptq" and meta["steps"] == 6
    assert any("--quant nf4 does not apply" in n for n in meta["notes"])
    assert meta["losses"][-1] < meta["losses"][0]
    info = inspect_adapter(out)
    assert info.rank == 4 and info.target_modules == ["q_proj", "v_proj"]

    backend = load_model(base, LoadSettings(wbits=4, groupsize=128, threads=1))  # as TGWUI's GPTQ flags load it
    try:
        plain = logits(backend.model)
        mgr = AdapterManager(backend.model, [out.parent])
        mgr.switch("gptq-voice")
        layer = mgr.model.base_model.model.model.layers[0].self_attn.q_proj
        assert isinstance(layer, GPTQLoraLinear)  # LoRA beside the 4-bit kernel, never a dequantised copy
        voiced = logits(mgr.model)
        mgr.switch(None)
        back = logits(mgr.model)
    finally:
        backend.close()
    assert (voiced - plain).abs().max() > 1e-3
    assert (back - plain).abs().max() < 1e-5  # switched off in place: the base again, no reload
