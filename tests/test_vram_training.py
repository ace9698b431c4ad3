"""Training estimates on every base people train on (issue 15): GPTQ and AWQ checkpoints, LoRA on
lm_head and the embeddings, modules trained whole, DoRA, and the optimizers people use; bad names
answered with the list of valid ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pocketpack.vram import VramError, inspect_model
from pocketpack.vram.estimate import OPTIMIZERS, estimate

DATA = Path(__file__).parent / "data" / "vram"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def llama2():
    return inspect_model(DATA / "llama-2-7b.json")


def train(info, fmt="bf16", **kw):
    kw.setdefault("ctx", 512)
    return estimate(info, fmt, mode="training", **kw)


def test_lora_on_lm_head_and_embeddings_is_sized_not_refused(llama2):
    """'LoRA that also targets lm_head (litgpt's defaults, "unknown LoRA target(s) lm_head")' was refused."""
    base = train(llama2, lora_rank=8, lora_targets="q_proj,v_proj")
    head = train(llama2, lora_rank=8, lora_targets="q_proj,v_proj,lm_head")
    emb = train(llama2, lora_rank=8, lora_targets="q_proj,v_proj,embed_tokens")
    # Llama-2-7B: lm_head is 4096 x 32000, so its adapter adds 8 x (4096 + 32000) parameters; so does the embedding's
    assert head.lora_params_m * 1e6 == pytest.approx(base.lora_params_m * 1e6 + 8 * (4096 + 32000))
    assert emb.lora_params_m * 1e6 == pytest.approx(base.lora_params_m * 1e6 + 8 * (4096 + 32000))
    assert head.total_gib > base.total_gib
    assert train(llama2, lora_targets="all-linear,lm_head,wte").total_gib > train(llama2).total_gib


def test_training_embeddings_whole_costs_their_copy_gradient_and_adam_states(llama2):
    """Qwen's 'LoRA (emb)': wte and lm_head trained whole (modules_to_save) beside the adapters."""
    plain = train(llama2, lora_rank=64)
    whole = train(llama2, lora_rank=64, modules_to_save="embed_tokens,lm_head")
    n = 2 * 4096 * 32000  # both untied matrices
    # a bf16 copy, its bf16 gradient and AdamW's two bf16 states: 8 bytes a parameter (plus the step's temporaries)
    assert (whole.adapter_gib + whole.gradients_gib + whole.optimizer_gib) \
        - (plain.adapter_gib + plain.gradients_gib + plain.optimizer_gib) == pytest.approx(n * 8 / 1024 ** 3, rel=0.01)
    with pytest.raises(VramError, match="valid: embed_in, embed_out, embed_tokens, lm_head"):
        train(llama2, modules_to_save="q_proj")


def test_gptq_and_awq_bases_train(llama2):
    """'QLoRA on a GPTQ base (Qwen's official Q-LoRA recipe on Int4 checkpoints)' was refused."""
    bf16 = train(llama2, ctx=1024)
    for fmt in ("gptq-4bit-g128", "gptq-8bit-g128", "awq-4bit-g128"):
        e = train(llama2, fmt, ctx=1024)
        assert e.weights_gib < bf16.weights_gib / 1.8 and e.total_gib < bf16.total_gib
        assert e.activations_gib > 0 and e.loader == "Transformers"
    # without checkpointing every layer's dequantised fp16 weights are kept for the backward pass
    assert train(llama2, "gptq-4bit-g128", grad_checkpointing=False).activations_gib > 12


def test_a_gptq_checkpoint_trains_as_itself_only(tmp_path):
    cfg = json.loads((DATA / "llama-2-7b.json").read_text())
    cfg["quantization_config"] = {"quant_method": "gptq", "bits": 4, "group_size": 128}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    info = inspect_model(tmp_path / "config.json")
    assert train(info, "gptq-4bit-g128").total_gib > 0
    with pytest.raises(VramError, match="GPTQ checkpoint"):
        train(info, "nf4-dq")


def test_gguf_and_exl2_bases_name_what_trains(llama2):
    for fmt in ("gguf-Q4_K_M", "exl2-4.0bpw"):
        with pytest.raises(VramError, match="GPTQ or AWQ checkpoint"):
            train(llama2, fmt)


def test_dora_keeps_more_than_lora(llama2):
    lora = train(llama2, lora_targets="all-linear")
    dora = train(llama2, lora_targets="all-linear", dora=True)
    assert dora.activations_gib > lora.activations_gib
    # one magnitude per output feature of each adapted layer (32 layers of q,k,v,o,gate,up,down)
    per_layer = 4096 * 4 + 11008 * 2 + 4096
    assert (dora.lora_params_m - lora.lora_params_m) * 1e6 == pytest.approx(32 * per_layer)


def test_every_optimizer_people_use(llama2):
    states = {name: train(llama2, optimizer=name, lora_targets="all-linear").optimizer_gib for name in OPTIMIZERS}
    assert states["sgd"] == 0
    assert states["adamw8bit"] == states["paged_adamw8bit"] < states["lion"] < states["adamw"]
    assert states["adamw"] == pytest.approx(2 * states["lion"])
    assert train(llama2, optimizer="adamw_torch").optimizer_gib == train(llama2, optimizer="adamw").optimizer_gib


@pytest.mark.parametrize("kw,listed", [({"optimizer": "adam"}, "valid optimizers: adamw, adamw8bit, paged_adamw8bit, sgd, lion"),
                                       ({"lora_targets": "q_proj,qq_proj"}, "valid targets: all-linear, ")])
def test_bad_names_list_the_valid_ones(llama2, kw, listed):
    with pytest.raises(VramError, match=listed):
        train(llama2, **kw)


def test_kbit_preparation_keeps_unquantised_tensors_in_fp32(llama2):
    """TGWUI's and pocketpack's QLoRA call prepare_model_for_kbit_training; LitGPT does not."""
    prepared = train(llama2, "nf4-dq")
    plain = train(llama2, "nf4-dq", kbit_prep=False)
    assert prepared.weights_gib - plain.weights_gib == pytest.approx(2 * 2 * 4096 * 32000 / 1024 ** 3, rel=0.01)
    assert train(llama2, "gptq-4bit-g128").weights_gib == train(llama2, "gptq-4bit-g128", kbit_prep=False).weights_gib


def test_cli_one_line_for_a_bad_optimizer_and_target():
    for flags, text in ((["--optimizer", "adam"], "valid optimizers"), (["--lora-targets", "lm_haed"], "valid targets")):
        run = subprocess.run([sys.executable, "-m", "pocketpack", "vram", "estimate", str(DATA / "llama-2-7b.json"),
                              "--format", "bf16", "--mode", "training", *flags], capture_output=True, text=True, check=False)
        assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1 and text in run.stderr
        assert "Traceback" not in run.stderr


def test_cli_trains_lm_head_with_dora_on_gptq():
    run = subprocess.run([sys.executable, "-m", "pocketpack", "vram", "estimate", str(DATA / "llama-2-7b.json"),
                          "--format", "gptq-4bit-g128", "--mode", "training", "--lora-targets", "all-linear,lm_head",
                          "--dora", "--optimizer", "paged_adamw8bit", "--json"], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["format"] == "gptq-4bit-g128" and out["optimizer_gib"] > 0 and out["total_gib"] < 12


def test_gpu_split_offloads_transformers_layers_to_ram(llama2):
    full = estimate(llama2, "fp16", ctx=2048)
    split = estimate(llama2, "fp16", ctx=2048, gpu_split_gib=6)
    assert split.total_gib < full.total_gib - 5 and split.ram_gib > full.ram_gib + 5
    # bitsandbytes keeps what it offloads in fp32: RAM grows by 4 bytes a parameter offloaded
    nf4 = estimate(llama2, "nf4-dq", ctx=2048, gpu_split_gib=2)
    assert nf4.ram_gib > 5 and any("fp32" in n for n in nf4.notes)
    with pytest.raises(VramError, match="--gpu-layers for llama.cpp"):
        estimate(llama2, "gguf-Q4_K_M", gpu_split_gib=4)


def test_adapters_train_plan_sizes_a_gptq_base(tmp_path):
    """`adapters train --plan` on a GPTQ folder: the estimator sizes it instead of falling back."""
    from pocketpack.adapters.train import TrainConfig, plan

    base = tmp_path / "Mistral-7B-GPTQ"
    base.mkdir()
    cfg = json.loads((DATA / "mistral-7b-v0.1.json").read_text())
    cfg["quantization_config"] = {"quant_method": "gptq", "bits": 4, "group_size": 128}
    (base / "config.json").write_text(json.dumps(cfg))
    p = plan(TrainConfig(base=str(base), data="x.txt", output=str(tmp_path / "out"), device="cpu"))
    assert p.source == "pocketpack.vram" and any("gptq-4bit-g128" in n for n in p.notes)
