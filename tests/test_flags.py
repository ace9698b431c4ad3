"""Model-loading flags: TGWUI's names and aliases, its loader inference, and one-line conflicts.

Flag spellings and ``dest`` names are TGWUI's ``modules/shared.py`` at 1dcde41 (plus
``--wbits``/``--groupsize`` from before commit 7157257c, 2025-01); loader inference is
``modules/models_settings.py:infer_loader`` (and its pre-2025 GPTQ branch).
No model is loaded here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from pocketpack.host.backends import ModelLoadError, load_model
from pocketpack.host.flags import FlagConflict, LoadSettings, add_model_flags, check_flags, infer_loader, normalize_loader


def parse(*argv: str) -> argparse.Namespace:
    return add_model_flags(argparse.ArgumentParser()).parse_args(list(argv))


# option string -> (dest, value given, parsed value): as TGWUI's parser defines them
TGWUI_OPTIONS = [
    ("--loader", "loader", "llama.cpp", "llama.cpp"),
    ("--gpu-layers", "gpu_layers", "12", 12),
    ("--n-gpu-layers", "gpu_layers", "12", 12),
    ("--ctx-size", "ctx_size", "4096", 4096),
    ("--n_ctx", "ctx_size", "4096", 4096),
    ("--max_seq_len", "ctx_size", "4096", 4096),
    ("--cache-type", "cache_type", "q8_0", "q8_0"),
    ("--cache_type", "cache_type", "q4_0", "q4_0"),
    ("--threads", "threads", "3", 3),
    ("--batch-size", "batch_size", "256", 256),
    ("--compute_dtype", "compute_dtype", "bfloat16", "bfloat16"),
    ("--quant_type", "quant_type", "fp4", "fp4"),
    ("--wbits", "wbits", "4", 4),
    ("--groupsize", "groupsize", "128", 128),
]
TGWUI_SWITCHES = [
    ("--no-mmap", "no_mmap"), ("--mlock", "mlock"), ("--cpu", "cpu"),
    ("--load-in-8bit", "load_in_8bit"), ("--load-in-4bit", "load_in_4bit"),
    ("--use_double_quant", "use_double_quant"), ("--bf16", "bf16"),
    ("--trust-remote-code", "trust_remote_code"),
]


@pytest.mark.parametrize("option,dest,raw,value", TGWUI_OPTIONS)
def test_option_spelling_and_dest_match_tgwui(option, dest, raw, value):
    assert getattr(parse(option, raw), dest) == value


@pytest.mark.parametrize("option,dest", TGWUI_SWITCHES)
def test_switch_spelling_and_dest_match_tgwui(option, dest):
    assert getattr(parse(option), dest) is True
    assert getattr(parse(), dest) is False


def test_settings_from_args_carry_every_flag():
    args = parse("--gpu-layers", "5", "--ctx-size", "2048", "--cache-type", "q4_0", "--threads", "1",
                 "--load-in-4bit", "--quant_type", "fp4", "--use_double_quant",
                 "--compute_dtype", "float32", "--cpu")
    s = LoadSettings.from_args(args)
    assert (s.gpu_layers, s.ctx_size, s.cache_type, s.threads) == (5, 2048, "q4_0", 1)
    assert (s.load_in_4bit, s.quant_type, s.use_double_quant, s.compute_dtype, s.cpu) == (
        True, "fp4", True, "float32", True)
    assert LoadSettings.from_args(parse()) == LoadSettings()


# --- loader inference ------------------------------------------------------------------

def _folder(tmp_path: Path, name: str, files: dict[str, str]) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for fname, text in files.items():
        (folder / fname).write_text(text)
    return folder


def test_infer_loader_as_tgwui(tmp_path):
    gguf_file = tmp_path / "model.Q4_K_M.gguf"
    gguf_file.write_bytes(b"GGUF")
    assert infer_loader(gguf_file) == "llama.cpp"
    assert infer_loader(_folder(tmp_path, "gguf-dir", {"m.gguf": "x", "config.json": "{}"})) == "llama.cpp"
    assert infer_loader(_folder(tmp_path, "autogptq", {"config.json": "{}",
                                                       "quantize_config.json": '{"bits": 4}'})) == "GPTQ"
    gptq_cfg = {"quantization_config": {"quant_method": "gptq", "bits": 4}}
    assert infer_loader(_folder(tmp_path, "hf-gptq", {"config.json": json.dumps(gptq_cfg)})) == "GPTQ"
    bnb_cfg = {"quantization_config": {"quant_method": "bitsandbytes"}}
    assert infer_loader(_folder(tmp_path, "hf-bnb", {"config.json": json.dumps(bnb_cfg)})) == "Transformers"
    plain = _folder(tmp_path, "plain", {"config.json": "{}"})
    assert infer_loader(plain) == "Transformers"
    # before 2025, --wbits > 0 alone selected the GPTQ loader
    assert infer_loader(plain, LoadSettings(wbits=4)) == "GPTQ"
    # an explicit --loader wins, in any of TGWUI's spellings
    assert infer_loader(gguf_file, LoadSettings(loader="llamacpp")) == "llama.cpp"
    assert infer_loader(plain, LoadSettings(loader="auto-gptq")) == "AutoGPTQ"


def test_unknown_or_foreign_loader_is_one_line():
    with pytest.raises(FlagConflict, match="unknown loader; valid options: llama.cpp, Transformers"):
        normalize_loader("magic")
    with pytest.raises(FlagConflict, match="does not run that TGWUI loader") as err:
        normalize_loader("ExLlamav3_HF")
    assert "\n" not in str(err.value)


# --- conflicts -------------------------------------------------------------------------

CONFLICTS = [
    ("Transformers", dict(load_in_8bit=True, load_in_4bit=True), "--load-in-8bit and --load-in-4bit"),
    ("llama.cpp", dict(wbits=4), "--wbits is a GPTQ flag and a GGUF model is llama.cpp"),
    ("llama.cpp", dict(wbits=4, groupsize=128), "--wbits/--groupsize are GPTQ flags"),
    ("llama.cpp", dict(load_in_4bit=True), "--load-in-4bit: bitsandbytes flags"),
    ("llama.cpp", dict(load_in_8bit=True), "--load-in-8bit: bitsandbytes flags"),
    ("llama.cpp", dict(bf16=True), "--bf16 is a Transformers flag"),
    ("llama.cpp", dict(cpu=True, gpu_layers=20), "--cpu with --gpu-layers 20"),
    ("Transformers", dict(gpu_layers=20), "--gpu-layers: llama.cpp-only flag"),
    ("Transformers", dict(cache_type="q8_0"), "--cache-type: llama.cpp-only flag"),
    ("Transformers", dict(no_mmap=True, mlock=True), "--no-mmap, --mlock: llama.cpp-only flags"),
    ("Transformers", dict(quant_type="fp4"), "--quant_type only applies with --load-in-4bit"),
    ("Transformers", dict(use_double_quant=True), "--use_double_quant only applies with --load-in-4bit"),
    ("Transformers", dict(compute_dtype="bfloat16"), "--compute_dtype only applies with --load-in-4bit"),
    ("Transformers", dict(wbits=4), "--wbits needs a GPTQ checkpoint"),
    ("GPTQ", dict(load_in_4bit=True), "a GPTQ checkpoint is already quantised"),
    ("GPTQ", dict(wbits=5), "--wbits 5: GPTQ supports 2, 3, 4, 8 bits"),
    ("GPTQ", dict(wbits=4, groupsize=0), "--groupsize 0: must be -1"),
    ("Transformers", dict(load_in_4bit=True, quant_type="nf8"), "--quant_type nf8: valid options are nf4, fp4"),
    ("Transformers", dict(load_in_4bit=True, compute_dtype="float8"), "--compute_dtype float8"),
    ("llama.cpp", dict(cache_type="q5_1"), "--cache-type q5_1: valid options are fp16, q8_0, q4_0"),
    ("llama.cpp", dict(gpu_layers=-2), "--gpu-layers -2"),
    ("llama.cpp", dict(ctx_size=-1), "--ctx-size -1: must not be negative"),
]


@pytest.mark.parametrize("loader,flags,expected", CONFLICTS)
def test_each_impossible_combination_is_one_line(loader, flags, expected):
    with pytest.raises(FlagConflict) as err:
        check_flags(LoadSettings(**flags), loader)
    message = str(err.value)
    assert expected in message
    assert "\n" not in message
    assert isinstance(err.value, ValueError)


def test_several_conflicts_are_named_together_on_one_line():
    with pytest.raises(FlagConflict) as err:
        check_flags(parse("--load-in-8bit", "--load-in-4bit", "--wbits", "4"), "llama.cpp")
    message = str(err.value)
    assert "\n" not in message
    for part in ("--load-in-8bit and --load-in-4bit", "--wbits is a GPTQ flag", "bitsandbytes flags"):
        assert part in message


VALID = [
    ("llama.cpp", ["--gpu-layers", "10", "--ctx-size", "2048", "--cache-type", "q4_0", "--threads", "2",
                   "--batch-size", "128", "--no-mmap", "--mlock"]),
    ("llama.cpp", ["--cpu", "--trust-remote-code"]),
    ("Transformers", ["--load-in-4bit", "--quant_type", "fp4", "--use_double_quant",
                      "--compute_dtype", "bfloat16", "--cpu", "--bf16", "--threads", "2"]),
    ("Transformers", ["--load-in-8bit", "--ctx-size", "1024"]),
    ("GPTQ", ["--wbits", "4", "--groupsize", "128", "--cpu"]),
    ("AutoGPTQ", ["--wbits", "8", "--groupsize", "-1"]),
]


@pytest.mark.parametrize("loader,argv", VALID)
def test_possible_combinations_pass(loader, argv):
    check_flags(parse(*argv), loader)


def test_tgwui_defaults_never_count_as_a_conflict():
    # what TGWUI's own args / a UI form carry when the user touched nothing
    tgwui_defaults = LoadSettings(gpu_layers=-1, cache_type="fp16", quant_type="nf4",
                                  compute_dtype="float16", batch_size=1024, wbits=0, groupsize=-1)
    for loader in ("llama.cpp", "Transformers", "GPTQ"):
        check_flags(tgwui_defaults, loader)


# --- load_model refuses before loading anything --------------------------------------

def test_missing_model_is_one_line(tmp_path):
    with pytest.raises(ModelLoadError, match="model not found: .*nope.gguf"):
        load_model(tmp_path / "nope.gguf")


def test_flags_are_checked_before_the_file_is_read(tmp_path):
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"not even a gguf")
    with pytest.raises(FlagConflict, match="--wbits is a GPTQ flag"):
        load_model(bogus, LoadSettings(wbits=4))
    with pytest.raises(FlagConflict, match="is a GGUF file: it loads with llama.cpp, not with --loader Transformers"):
        load_model(bogus, LoadSettings(loader="Transformers"))


@pytest.mark.parametrize("files,expected", [
    ({}, "is empty: no model in it"),
    ({"notes.txt": "hi"}, "has no config.json: not a Transformers model folder"),
    ({"config.json": "{}"}, "has config.json but no .safetensors weights"),
    ({"config.json": "{}", "pytorch_model.bin": "x"}, "holds only pickle weights"),
])
def test_folder_without_a_loadable_model_is_one_line(tmp_path, files, expected):
    folder = _folder(tmp_path, "model", files)
    with pytest.raises(ModelLoadError) as err:
        load_model(folder)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_llamacpp_loader_on_a_folder_without_gguf(tmp_path):
    folder = _folder(tmp_path, "model", {"config.json": "{}"})
    with pytest.raises(ModelLoadError, match="no .gguf file in"):
        load_model(folder, LoadSettings(loader="llama.cpp"))
