"""Presets by source format (issue 15) and applied presets that match the model's own files
(issues 15 and 14.3): a .gguf, a GPTQ checkpoint, fp16/bf16 safetensors, AWQ and EXL2, in the flags
of each TGWUI version and of the standalone host."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest
import yaml

from pocketpack.presets import (
    MODEL_CLASSES,
    PRESET_DIR,
    TIERS,
    Entry,
    check_preset,
    load_preset,
)
from pocketpack.presets.apply import apply_preset
from pocketpack.presets.tgwui import (
    SOURCES,
    CannotLoad,
    detect_version,
    load_settings,
    source_of_format,
    standalone,
)
from pocketpack.vram import VramError

DATA = Path(__file__).parent / "data" / "vram"


def checkout(root: Path, flags: list[str], loaders: list[str] | None, user_data: bool = True) -> Path:
    """A TGWUI-shaped tree: modules/shared.py with these flags, modules/loaders.py with these loaders."""
    (root / "modules").mkdir(parents=True)
    (root / ("user_data/models" if user_data else "models")).mkdir(parents=True)
    (root / "modules" / "shared.py").write_text("".join(f"parser.add_argument('{f}')\n" for f in flags))
    if loaders is not None:
        body = "".join(f"    '{name}': [\n        'x',\n    ],\n" for name in loaders)
        (root / "modules" / "loaders.py").write_text("loaders_and_params = OrderedDict({\n" + body + "})\n")
    return root


# the checkouts of the history in pocketpack/presets/tgwui.py, read from TGWUI's git log
V2024_05 = (["--n-gpu-layers", "--n_ctx", "--max_seq_len", "--cache_8bit", "--wbits", "--groupsize", "--gpu-memory",
             "--cpu-memory", "--load-in-4bit"],
            ["Transformers", "llama.cpp", "llamacpp_HF", "ExLlamav2_HF", "ExLlamav2", "AutoGPTQ", "AutoAWQ", "HQQ"])
V2025_02 = (["--n-gpu-layers", "--n_ctx", "--max_seq_len", "--cache_type", "--wbits", "--groupsize", "--gpu-memory",
             "--cpu-memory"], ["Transformers", "llama.cpp", "llamacpp_HF", "ExLlamav2_HF", "ExLlamav2", "HQQ"])
V2025_06 = (["--gpu-layers", "--n-gpu-layers", "--ctx-size", "--cache-type", "--gpu-split", "--cpu-memory"],
            ["llama.cpp", "Transformers", "ExLlamav3_HF", "ExLlamav2_HF", "ExLlamav2", "TensorRT-LLM"])
V2026 = (["--gpu-layers", "--n-gpu-layers", "--ctx-size", "--cache-type", "--gpu-split", "--cpu-memory"],
         ["llama.cpp", "Transformers", "ExLlamav3_HF", "ExLlamav3", "TensorRT-LLM"])


def entry(fmt, ctx=4096, cache="fp16", gpu_split=None, layers=None):
    return Entry("7-8B", fmt, "x", ctx, cache, layers, 6.0, 1.0, 0.0, "partial" if gpu_split else "gpu",
                 gpu_split=gpu_split)


# ------------------------------------------------------------------------------------------- tier files

@pytest.mark.parametrize("tier", list(TIERS))
def test_every_source_has_an_entry_per_class_that_fits_and_is_of_that_source(tier):
    preset = load_preset(tier)
    assert set(preset.sources) == set(SOURCES) and not preset.sources_generated
    for source, per_class in preset.sources.items():
        assert set(per_class) == set(MODEL_CLASSES)
        for e in per_class.values():
            assert e is None or source_of_format(e.format) == source
    assert check_preset(preset) == []  # every per-source entry re-estimated, as the best-format ones


def test_hf_entries_follow_16bit_then_8bit_then_4bit():
    """'fp16 if it fits, else --load-in-8bit, else --load-in-4bit --use_double_quant --quant_type nf4'."""
    hf = {t: load_preset(t).sources["hf"] for t in ("gpu-6gb", "gpu-8gb", "gpu-12gb", "gpu-24gb")}
    assert hf["gpu-24gb"]["7-8B"].format == "bf16"
    assert hf["gpu-12gb"]["7-8B"].format == "int8"
    assert hf["gpu-8gb"]["7-8B"].format == "nf4-dq" and hf["gpu-8gb"]["7-8B"].compute_dtype == "bfloat16"
    assert hf["gpu-6gb"]["7-8B"] is None


def test_cpu_tiers_have_gguf_entries_only():
    for tier in ("cpu-8gb", "cpu-16gb", "cpu-32gb"):
        preset = load_preset(tier)
        assert all(e is None for s in ("gptq", "hf", "awq", "exl2") for e in preset.sources[s].values())
        assert preset.sources["gguf"]["7-8B"].gpu_layers == 0


def test_a_version_1_preset_file_gets_its_source_entries_generated(tmp_path):
    data = yaml.safe_load((PRESET_DIR / "gpu-8gb.yaml").read_text())
    data["version"] = 1
    del data["sources"]
    (tmp_path / "gpu-8gb.yaml").write_text(yaml.safe_dump(data))
    preset = load_preset("gpu-8gb", tmp_path)
    assert preset.sources_generated and preset.sources["gptq"]["7-8B"].format == "gptq-4bit-g128"


# ------------------------------------------------------------------------------------- flags by version

def test_gptq_flags_per_version(tmp_path):
    e = entry("gptq-4bit-g128")
    flags = {name: load_settings(e, detect_version(checkout(tmp_path / name, *v)), "gptq")[0]
             for name, v in (("2024", V2024_05), ("2025-02", V2025_02), ("2025-06", V2025_06), ("2026", V2026))}
    assert flags["2024"] == ["--loader", "AutoGPTQ", "--wbits", "4", "--groupsize", "128"]
    assert flags["2025-02"] == ["--loader", "ExLlamav2_HF", "--max_seq_len", "4096"]  # AutoGPTQ gone, --wbits a no-op
    assert flags["2025-06"] == ["--loader", "ExLlamav2_HF", "--ctx-size", "4096"]
    assert flags["2026"] == ["--loader", "Transformers"]  # gptqmodel, through the model's quantization_config
    host_flags, host_settings, _ = load_settings(e, standalone(), "gptq")
    assert host_flags[:2] == ["--loader", "GPTQ"] and host_settings["wbits"] == 4


def test_exl2_loads_only_where_exllamav2_exists(tmp_path):
    e = entry("exl2-6.0bpw", ctx=8192, cache="q8_0")
    old = load_settings(e, detect_version(checkout(tmp_path / "2024", *V2024_05)), "exl2")[0]
    assert old == ["--loader", "ExLlamav2_HF", "--max_seq_len", "8192", "--cache_8bit"]
    mid = load_settings(e, detect_version(checkout(tmp_path / "2025", *V2025_06)), "exl2")[0]
    assert mid == ["--loader", "ExLlamav2_HF", "--ctx-size", "8192", "--cache-type", "q8"]
    with pytest.raises(CannotLoad, match="ExLlamaV2 was removed from TGWUI on 2026-03-05"):
        load_settings(e, detect_version(checkout(tmp_path / "2026", *V2026)), "exl2")
    with pytest.raises(CannotLoad, match="standalone host"):
        load_settings(e, standalone(), "exl2")


def test_awq_loader_per_version(tmp_path):
    e = entry("awq-4bit-g128")
    assert load_settings(e, detect_version(checkout(tmp_path / "a", *V2024_05)), "awq")[0] == ["--loader", "AutoAWQ"]
    assert load_settings(e, detect_version(checkout(tmp_path / "b", *V2026)), "awq")[0] == ["--loader", "Transformers"]
    with pytest.raises(CannotLoad, match="no AWQ loader"):
        load_settings(e, standalone(), "awq")


def test_hf_offload_uses_the_versions_split_flags(tmp_path):
    e = entry("nf4-dq", gpu_split=5.5)
    old_flags, old_settings, _ = load_settings(e, detect_version(checkout(tmp_path / "a", *V2024_05)), "hf", ram_gib=14)
    assert old_flags[-4:] == ["--gpu-memory", "5.5", "--cpu-memory", "14"] and old_settings["gpu_memory_0"] == "5.5"
    new_flags, new_settings, _ = load_settings(e, detect_version(checkout(tmp_path / "b", *V2026)), "hf", ram_gib=14)
    assert new_flags[-4:] == ["--gpu-split", "5.5", "--cpu-memory", "14"] and new_settings["gpu_split"] == "5.5"
    assert "--load-in-4bit" in new_flags and "--use_double_quant" in new_flags
    with pytest.raises(CannotLoad, match="no --gpu-split"):
        load_settings(e, standalone(), "hf")


# ------------------------------------------------------------------------------------------------ CLI

def run(capsys, *argv):
    """`pocketpack presets ...` through the one CLI entry point (its errors print there)."""
    from pocketpack.cli import main

    code = main(["presets", *argv])
    return code, capsys.readouterr()


def test_show_by_source(capsys):
    code, out = run(capsys, "show", "gpu-8gb", "--source", "hf")
    assert code == 0 and "hf files" in out.out and "--load-in-4bit --quant_type nf4" in out.out
    code, out = run(capsys, "show", "gpu-8gb", "--source", "gptq", "--json")
    shown = json.loads(out.out)
    assert shown["source_format"] == "gptq" and shown["models"]["7-8B"]["format"] == "gptq-4bit-g128"
    code, out = run(capsys, "show", "gpu-8gb", "--json")  # without --source: v1's fields unchanged, sources beside
    shown = json.loads(out.out)
    assert shown["models"]["7-8B"]["flags"][:2] == ["--loader", "llama.cpp"] and set(shown["sources"]) == set(SOURCES)
    code, out = run(capsys, "show", "gpu-8gb", "--source", "ggml")
    assert code == 2 and out.err.strip().splitlines() == [
        "pocketpack: unknown source 'ggml'; sources: gguf, gptq, hf, awq, exl2"]


def test_show_takes_the_source_from_a_models_files(capsys, tmp_path):
    folder = tmp_path / "Mistral-7B-GPTQ"
    folder.mkdir()
    cfg = json.loads((DATA / "mistral-7b-v0.1.json").read_text())
    cfg["quantization_config"] = {"quant_method": "gptq", "bits": 4, "group_size": 128}
    (folder / "config.json").write_text(json.dumps(cfg))
    code, out = run(capsys, "show", "gpu-8gb", "--model", folder.name, "--model-dir", str(tmp_path))
    assert code == 0 and "gptq files (Mistral-7B-GPTQ)" in out.out and "gptq-4bit-g128" in out.out
    code, out = run(capsys, "show", "gpu-8gb", "--model", folder.name, "--model-dir", str(tmp_path), "--source", "gguf")
    assert code == 2 and len(out.err.strip().splitlines()) == 1 and "Mistral-7B-GPTQ has gptq" in out.err


# -------------------------------------------------------------------------------- applying to real files

def hf_folder(models: Path, name: str, config: str, **changes) -> Path:
    folder = models / name
    folder.mkdir(parents=True)
    cfg = json.loads((DATA / config).read_text())
    cfg.update(changes)
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def test_a_transformers_folder_never_gets_a_gguf_entry_and_ctx_stays_within_the_model(tmp_path):
    """The reported failure: 'loader: llama.cpp, ctx_size: 8192 for a 2,048-context model', then
    'No .gguf models found in the directory'."""
    root = checkout(tmp_path / "tg", *V2026)
    models = root / "user_data" / "models"
    hf_folder(models, "llama-7b-hf", "llama-7b.json")  # LLaMA 7B: max_position_embeddings 2048
    done = apply_preset("gpu-12gb", "llama-7b-hf", tgwui=root)
    written = yaml.safe_load((models / "config-user.yaml").read_text())["llama-7b-hf$"]
    assert done.source == "hf" and written["loader"] == "Transformers" and "gpu_layers" not in written
    assert written["truncation_length"] == 2048 and any("max_position_embeddings" in n for n in done.notes)


def test_a_gguf_file_asked_for_as_gptq_names_its_sources(tmp_path):
    root = checkout(tmp_path / "tg", *V2026)
    (root / "user_data" / "models" / "mistral.Q4_K_M.gguf").write_bytes(b"")
    with pytest.raises(VramError, match=r"mistral\.Q4_K_M\.gguf has gguf \(a llama\.cpp \.gguf file\): "
                                        r"it cannot give --source gptq; use --source gguf"):
        apply_preset("gpu-8gb", "mistral.Q4_K_M.gguf", "7-8B", root, source="gptq")


def test_a_gptq_checkpoint_gets_its_own_bits_and_the_versions_loader(tmp_path):
    old = checkout(tmp_path / "old", *V2024_05, user_data=False)
    hf_folder(old / "models", "mistral-gptq-8bit", "mistral-7b-v0.1.json",
              quantization_config={"quant_method": "gptq", "bits": 8, "group_size": 32})
    done = apply_preset("gpu-12gb", "mistral-gptq-8bit", tgwui=old)
    assert done.flags[:6] == ["--loader", "AutoGPTQ", "--wbits", "8", "--groupsize", "32"]
    assert done.entry.format == "gptq-8bit-g32"
    with pytest.raises(VramError, match=r"mistral-gptq-8bit \(gptq-8bit-g32\) does not fit the gpu-6gb tier"):
        apply_preset("gpu-6gb", "mistral-gptq-8bit", tgwui=old)


def test_a_model_that_fits_where_its_class_reference_does_not_is_applied(tmp_path):
    """The 7-8B reference (Llama-3.1-8B, 128K vocabulary) has no 4-bit GPTQ entry on 6 GB; Mistral 7B does fit."""
    root = checkout(tmp_path / "tg", *V2026)
    hf_folder(root / "user_data" / "models", "mistral-gptq", "mistral-7b-v0.1.json",
              quantization_config={"quant_method": "gptq", "bits": 4, "group_size": 128})
    assert load_preset("gpu-6gb").sources["gptq"]["7-8B"] is None
    done = apply_preset("gpu-6gb", "mistral-gptq", tgwui=root)
    assert done.entry.format == "gptq-4bit-g128" and done.settings["loader"] == "Transformers"
    assert any("reference does not fit" in n for n in done.notes)


def test_exl2_on_todays_tgwui_is_refused_with_a_line(tmp_path):
    root = checkout(tmp_path / "tg", *V2026)
    hf_folder(root / "user_data" / "models", "mistral-exl2", "mistral-7b-v0.1.json",
              quantization_config={"quant_method": "exl2", "bits": 4.0})
    with pytest.raises(VramError, match="cannot load EXL2"):
        apply_preset("gpu-8gb", "mistral-exl2", tgwui=root)
    assert not (root / "user_data" / "models" / "config-user.yaml").exists()


def test_cli_apply_in_the_standalone_host_and_serve_loads_with_it(tmp_path, capsys):
    """Issue 14.3: Apply preset writes the host's own settings, and the next load uses them
    (a flag given on the command line wins, as in TGWUI)."""
    from pocketpack.host.cli import _load, register
    from pocketpack.host.default_model import ensure_default_model
    from pocketpack.host.runtime import Runtime

    models, user_data = tmp_path / "models", tmp_path / "user_data"
    model = ensure_default_model(models)  # the embedded Gemma 3 270M Q4_K_M
    code, out = run(capsys, "apply", "cpu-8gb", model.name, "--host", "--model-dir", str(models),
                    "--user-data-dir", str(user_data), "--json")
    done = json.loads(out.out)
    assert code == 0 and Path(done["written"]) == user_data / "pocketpack" / "model-settings.yaml"
    assert done["settings"]["loader"] == "llama.cpp" and done["settings"]["gpu_layers"] == 0
    ctx = done["settings"]["ctx_size"]

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    runtime = Runtime(root=tmp_path, user_data_dir=user_data, extensions=[], model_dir=models)
    try:
        _load(runtime, parser.parse_args(["chat", "hi", "--model", model.name, "--model-dir", str(models)]))
        assert runtime.backend.n_ctx == ctx and f"ctx_size={ctx}" in capsys.readouterr().err
        _load(runtime, parser.parse_args(["chat", "hi", "--model", model.name, "--model-dir", str(models),
                                          "--ctx-size", "1024"]))
        assert runtime.backend.n_ctx == 1024
    finally:
        runtime.unload_model()


def test_a_broken_host_settings_file_is_one_line(tmp_path):
    from pocketpack.host.model_settings import save_model_settings, saved_settings
    from pocketpack.host.settings import SettingsError

    save_model_settings(tmp_path, "m.gguf", {"loader": "llama.cpp", "gpu_layers": 10})
    assert saved_settings(tmp_path, "m.gguf") == {"loader": "llama.cpp", "gpu_layers": 10}
    path = tmp_path / "pocketpack" / "model-settings.yaml"
    path.write_text(path.read_text().replace("gpu_layers: 10", "gpu_layerz: 10"))
    with pytest.raises(SettingsError, match="unknown setting"):
        saved_settings(tmp_path, "m.gguf")


def test_the_tier_a_model_does_not_fit_is_refused(tmp_path):
    root = checkout(tmp_path / "tg", *V2026)
    hf_folder(root / "user_data" / "models", "llama2-70b", "llama-2-70b.json")
    with pytest.raises(VramError, match=r"llama2-70b \(hf\) does not fit the gpu-8gb tier"):
        apply_preset("gpu-8gb", "llama2-70b", tgwui=root)
    shutil.rmtree(root / "user_data" / "models" / "llama2-70b")
