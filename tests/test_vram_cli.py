"""`pocketpack vram ...` as scripts call it: exact flags, --json fields, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pocketpack.cli import main

DATA = Path(__file__).parent / "data" / "vram"


def run(capsys, *argv):
    """`pocketpack vram ...` through the one CLI entry point (its errors print there)."""
    code = main(["vram", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_estimate_json_fields(capsys):
    code, out, _ = run(capsys, "estimate", str(DATA / "meta-llama-3-8b.json"), "--format", "gguf-Q4_K_M",
                       "--ctx", "8192", "--batch", "1", "--cache-type", "q8_0", "--gpu-layers", "20", "--json")
    assert code == 0
    data = json.loads(out)
    for key in ("total_gib", "weights_gib", "kv_cache_gib", "overhead_gib", "cuda_context_gib", "file_gib"):
        assert isinstance(data[key], float)
    assert data["gpu_layers"] == 20 and data["cache_type"] == "q8_0" and "adapter_gib" not in data
    assert data["total_gib"] == pytest.approx(data["weights_gib"] + data["kv_cache_gib"] + data["compute_gib"]
                                              + data["overhead_gib"], abs=0.01)


def test_training_json_fields(capsys):
    code, out, _ = run(capsys, "estimate", str(DATA / "llama-2-7b.json"), "--format", "nf4-dq", "--mode", "training",
                       "--lora-rank", "16", "--lora-targets", "q_proj,v_proj", "--no-grad-checkpointing",
                       "--optimizer", "paged_adamw8bit", "--json")
    assert code == 0
    data = json.loads(out)
    for key in ("total_gib", "weights_gib", "adapter_gib", "gradients_gib", "optimizer_gib", "activations_gib",
                "overhead_gib", "cuda_context_gib", "file_gib"):
        assert isinstance(data[key], float)
    assert data["mode"] == "training"


def test_human_output_names_the_parts(capsys):
    code, out, _ = run(capsys, "estimate", str(DATA / "mistral-7b-v0.1.json"), "--format", "nf4")
    assert code == 0
    for word in ("weights", "kv_cache", "overhead", "cuda context", "VRAM total", "file on disk"):
        assert word in out


@pytest.mark.parametrize("argv,message", [
    (["estimate", "MISSING", "--format", "fp16"], "no local file or catalogue entry named 'MISSING'"),
    (["estimate", str(DATA / "llama-2-7b.json"), "--format", "q4"], "unknown format 'q4'"),
])
def test_errors_are_one_line(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_empty_folder_error(capsys, tmp_path):
    code, _, err = run(capsys, "estimate", str(tmp_path), "--format", "fp16")
    assert code == 2 and "neither config.json nor a .gguf" in err


def test_advise_json_for_a_given_machine(capsys):
    code, out, _ = run(capsys, "advise", str(DATA / "meta-llama-3-8b.json"), "--vram", "8", "--ram", "32", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["machine"]["vram_gib"] == 8 and data["machine"]["source"] == "given"
    first = data["options"][0]
    assert first["placement"] == "gpu" and first["total_gib"] <= 8
    losses = [o["quality_loss_pct"] for o in data["options"] if o["placement"] == "gpu"]
    assert losses == sorted(losses)
    assert "fp16" in data["rejected"] or "bf16" in data["rejected"]


def test_advise_cpu_only_offers_gguf(capsys):
    code, out, _ = run(capsys, "advise", str(DATA / "mistral-7b-v0.1.json"), "--vram", "0", "--ram", "16", "--json")
    data = json.loads(out)
    assert code == 0 and data["options"]
    assert all(o["format"].startswith("gguf-") and o["placement"] == "cpu" for o in data["options"])
    assert all(o["ram_gib"] <= 16 for o in data["options"])
