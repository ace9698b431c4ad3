"""The Model tab's form becomes flags the model's loader accepts (never a false conflict)."""

from __future__ import annotations

import pytest

from pocketpack.host.flags import FlagConflict, check_flags, infer_loader
from pocketpack.host.webui import load_settings_from_form

DEFAULTS = dict(layers=-1, ctx=2048, cache="fp16", nthreads=0, in8=False, in4=False, qtype="nf4", dq=False,
                dtype="float32", on_cpu=False)


@pytest.fixture
def hf_folder(tmp_path):
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "config.json").write_text('{"model_type": "llama"}')
    return tmp_path / "tiny"


def test_form_defaults_pass_for_a_gguf(default_model):
    settings = load_settings_from_form(default_model, **DEFAULTS)
    check_flags(settings, infer_loader(default_model))
    assert settings.gpu_layers == -1 and settings.cache_type == "fp16" and not settings.load_in_4bit


def test_cpu_box_means_no_gpu_layers_for_a_gguf(default_model):
    settings = load_settings_from_form(default_model, **{**DEFAULTS, "on_cpu": True})
    assert settings.gpu_layers == 0


def test_form_defaults_pass_for_transformers_and_4bit_options_only_when_ticked(hf_folder):
    plain = load_settings_from_form(hf_folder, **DEFAULTS)
    check_flags(plain, "Transformers")
    assert plain.compute_dtype is None and plain.cache_type is None
    four = load_settings_from_form(hf_folder, **{**DEFAULTS, "in4": True, "dq": True})
    check_flags(four, "Transformers")
    assert four.load_in_4bit and four.use_double_quant and four.quant_type == "nf4"


def test_a_real_conflict_from_the_form_is_still_refused(hf_folder):
    both = load_settings_from_form(hf_folder, **{**DEFAULTS, "in4": True, "in8": True})
    with pytest.raises(FlagConflict, match="--load-in-8bit and --load-in-4bit"):
        check_flags(both, "Transformers")


def test_a_bitsandbytes_box_ticked_for_a_gguf_is_refused_as_the_cli_refuses_it(default_model):
    """Ticking load-in-8bit on a GGUF used to load it anyway with "Loaded …"."""
    settings = load_settings_from_form(default_model, **{**DEFAULTS, "in8": True})
    with pytest.raises(FlagConflict, match="--load-in-8bit: bitsandbytes flags are for the Transformers loader"):
        check_flags(settings, infer_loader(default_model))


def test_a_4bit_option_changed_without_4bit_is_named(hf_folder):
    settings = load_settings_from_form(hf_folder, **{**DEFAULTS, "dtype": "bfloat16"})
    with pytest.raises(FlagConflict, match="--compute_dtype only applies with --load-in-4bit"):
        check_flags(settings, "Transformers")


def test_a_llama_cpp_field_set_for_a_transformers_model_is_named(hf_folder):
    settings = load_settings_from_form(hf_folder, **{**DEFAULTS, "cache": "q8_0"})
    with pytest.raises(FlagConflict, match="--cache-type: llama.cpp-only flag"):
        check_flags(settings, "Transformers")


def test_a_model_name_that_is_not_in_the_models_folder_says_so(tmp_path):
    from pocketpack.host.webui import _resolve_model

    (tmp_path / "a.gguf").write_bytes(b"GGUF")
    with pytest.raises(ValueError, match=r"no model named '/nowhere/x.gguf' in .*listed: a.gguf"):
        _resolve_model(tmp_path, "/nowhere/x.gguf")


def test_the_embedded_model_is_called_a_270m_base_model_where_it_is_shown(monkeypatch):
    from pocketpack.host import shared, webui
    from pocketpack.host.default_model import DEFAULT_MODEL_FILENAME

    class Loaded:
        loader = "llama.cpp"

    monkeypatch.setattr(shared, "backend", Loaded())
    monkeypatch.setattr(shared, "model_name", DEFAULT_MODEL_FILENAME)
    assert "270M *base* model" in webui._model_banner()
    assert "base* model** (not instruction-tuned)" in webui._model_status()
    assert "instruction-tuned GGUF" in webui._model_status()
    monkeypatch.setattr(shared, "model_name", "qwen2.5-7b-instruct-q4_k_m.gguf")
    assert "base" not in webui._model_banner() and "base" not in webui._model_status()
